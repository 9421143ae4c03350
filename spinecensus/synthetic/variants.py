"""Anatomical and field-of-view variants of synthetic subjects, and what a census should say.

Variants (names of :data:`VARIANTS`), each drawn per subject with its own rate:

* ``sacral_disc``: a visible S1-S2 remnant disc; the sacrum is two vertebra instances,
  ``S1`` and ``S2`` (the fused S2-S5), with a labelled disc ``S1-S2`` between them.
* ``t11`` / ``t13``: 11 or 13 thoracic (rib-bearing) vertebrae, ``T1..T11`` or
  ``T1..T13``; mutually exclusive (one uniform draw decides between them).
* ``c2_cut``: the field of view starts below C2 (no C2 voxel in the scan).
* ``sacrum_cut``: the field of view ends above the sacrum (no sacral voxel).
* ``fused_block``: a congenital C2-C3 block vertebra: one vertebra instance (named ``C2``,
  like the sacrum holding a fused L5 is named ``S1``) with a thin unlabelled rudiment and
  an anterior waist where the C2-C3 disc would be; no C2-C3 disc.
* ``fracture``: one free body (T4-L5, mostly the thoracolumbar junction) with a wedge,
  biconcave or crush deformity of Genant grade 1-3; ``disc_narrowing``: one lumbar disc
  25-50 % lower (:mod:`spinecensus.synthetic.fracture`; their geometry comes from a stream
  of their own, child 5 of the subject's seed).  Neither changes the count or the status;
  ``truth.json`` (:mod:`spinecensus.synthetic.truth`) holds the planted heights and grades.

The decisions come from a random stream of their own, seeded with (cohort seed +
:data:`VARIANT_SEED_OFFSET`, subject index), and the variants' geometry (cut rows, remnant
disc height) from a fifth child of the subject's seed (:func:`variant_rng`): with every rate
0 no draw of the images' streams changes, so a cohort is bit-identical to one generated
without variants.

What a correct census reports (:func:`expected_status`): the status by presacral count
(:mod:`spinecensus.census.presacral`: 24 normal, 25 lumbarization, 23 sacralization; T13
and L6 are not distinguished), or ``undetermined`` when the count origin (C2) or the
lumbosacral junction (the sacrum) is out of view, or the count is outside 23-25.  A block
vertebra is two vertebrae anatomically: a C2-C3 block does not change the presacral count.

:data:`REFERENCE_RATES` are literature figures for the anatomical variants (sources in
``docs/architecture.md``, "Synthetic variants"); the demo config uses none of them (every
rate 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: every variant, in the (fixed) order their uniforms are drawn
VARIANTS: tuple[str, ...] = (
    "sacral_disc", "t11", "t13", "c2_cut", "sacrum_cut", "fused_block", "fracture",
    "disc_narrowing",
)  # fmt: skip
#: literature rates (see the module docstring); FOV variants and blocks have none here
REFERENCE_RATES: dict[str, float] = {"sacral_disc": 0.16, "t11": 0.03, "t13": 0.04}
#: added to the cohort seed for the variant draws (a stream of their own)
VARIANT_SEED_OFFSET = 9_000_011
#: spawn-key index of the per-subject variant geometry stream (children 0-3 are the
#: generator's covariates, anatomy, grid and image streams)
VARIANT_STREAM = 4
#: the vertebrae of the ``fused_block`` variant (the instance keeps the first name)
BLOCK = ("C2", "C3")
#: presacral count -> count-defined status (C1 counted by convention)
STATUS_BY_PRESACRAL_COUNT = {23: "sacralization", 24: "normal", 25: "lumbarization"}
#: free lumbar vertebrae of each lumbosacral anomaly of the generator
LUMBAR_OF_ANOMALY = {"sacralization": 4, "normal": 5, "lumbarization": 6}


class VariantRateError(ValueError):
    """A variant rate that is not a known name with a probability in [0, 1]."""


def check_rates(rates: Mapping[str, float] | None) -> dict[str, float]:
    """``rates`` as ``{name: float}``, checked: known names (:data:`VARIANTS`), each in
    [0, 1], ``t11 + t13 <= 1``.  Raises :class:`VariantRateError` naming the bad entry."""
    out: dict[str, float] = {}
    for name, value in (rates or {}).items():
        if name not in VARIANTS:
            raise VariantRateError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
        try:
            p = float(value)
        except (TypeError, ValueError):
            raise VariantRateError(f"variant {name}: rate {value!r} is not a number") from None
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise VariantRateError(f"variant {name}: rate {value!r} is outside [0, 1]")
        out[str(name)] = p
    if out.get("t11", 0.0) + out.get("t13", 0.0) > 1.0:
        raise VariantRateError("variants t11 and t13 exclude each other: their rates sum to > 1")
    return out


def parse_rate(text: str) -> tuple[str, float]:
    """One ``NAME=P`` argument (``--variant-rate``) -> ``(name, p)``; the error names it."""
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip():
        raise VariantRateError(f"--variant-rate {text!r}: expected NAME=P, e.g. sacral_disc=0.16")
    try:
        return next(iter(check_rates({name.strip(): value.strip()}).items()))
    except VariantRateError as exc:
        raise VariantRateError(f"--variant-rate {text!r}: {exc}") from None


def parse_rates(items: Iterable[str]) -> dict[str, float]:
    """Repeated ``NAME=P`` arguments -> checked ``{name: p}`` (a repeated name: the last)."""
    rates = dict(parse_rate(t) for t in items)
    return check_rates(rates)


def draw_variants(seed: int, index: int, rates: Mapping[str, float] | None) -> tuple[str, ...]:
    """The variants of subject ``index`` of cohort ``seed`` (in :data:`VARIANTS` order).

    One uniform per variant is always drawn in a fixed order (t11 and t13 share one), so a
    subject's draw of one variant does not depend on the other rates; no rate -> ``()``
    without touching any stream.
    """
    r = check_rates(rates)
    if not any(r.values()):
        return ()
    rng = np.random.default_rng(
        np.random.SeedSequence([int(seed) + VARIANT_SEED_OFFSET, int(index)])
    )
    # sacral_disc, t11|t13, c2_cut, sacrum_cut, fused_block, fracture, disc_narrowing: the
    # first five are those of a generator without the last two (a stream's prefix)
    u = rng.random(len(VARIANTS) - 1)
    got = []
    if u[0] < r.get("sacral_disc", 0.0):
        got.append("sacral_disc")
    if u[1] < r.get("t11", 0.0):
        got.append("t11")
    elif u[1] < r.get("t11", 0.0) + r.get("t13", 0.0):
        got.append("t13")
    for k, name in enumerate(("c2_cut", "sacrum_cut", "fused_block", "fracture", "disc_narrowing")):
        if u[2 + k] < r.get(name, 0.0):
            got.append(name)
    return tuple(got)


def check_variants(variants: Sequence[str]) -> tuple[str, ...]:
    """``variants`` in :data:`VARIANTS` order; unknown names or t11 with t13 raise."""
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {bad} (known: {', '.join(VARIANTS)})")
    if "t11" in variants and "t13" in variants:
        raise ValueError("variants t11 and t13 exclude each other")
    return tuple(v for v in VARIANTS if v in variants)


def variant_rng(seed: int) -> np.random.Generator:
    """The subject's variant geometry stream: child :data:`VARIANT_STREAM` of its seed
    (the generator's four streams are children 0-3, untouched by it)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(VARIANT_STREAM,)))


def thoracic_count(variants: Sequence[str]) -> int:
    """Number of thoracic vertebrae: 11 (``t11``), 13 (``t13``) or 12."""
    return 11 if "t11" in variants else 13 if "t13" in variants else 12


def presacral_count(anomaly: str, variants: Sequence[str]) -> int:
    """Mobile vertebrae C1..L-last: C1 + C2..C7 + thoracic + free lumbar (a block vertebra
    counts as the vertebrae it fused)."""
    return 1 + 6 + thoracic_count(variants) + LUMBAR_OF_ANOMALY[anomaly]


def expected_status(anomaly: str, variants: Sequence[str]) -> str:
    """What a correct census reports: the status by presacral count, ``undetermined`` when
    C2 or the sacrum is out of view (``c2_cut``, ``sacrum_cut``) or the count is not 23-25."""
    if "c2_cut" in variants or "sacrum_cut" in variants:
        return "undetermined"
    return STATUS_BY_PRESACRAL_COUNT.get(presacral_count(anomaly, variants), "undetermined")
