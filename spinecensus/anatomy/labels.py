"""Anatomical label schema of the thesis, as data.

Structures run cranio-caudally from C2 to S1 with vertebrae and intervertebral discs
interleaved: class 1 = C2, 2 = C2-C3, 3 = C3, ... (odd = vertebra, even = disc),
class 0 = background.  Three variants differ only at the lumbosacral junction:

* ``"sacralization"`` (45 classes incl. background): L1-L4, L4-S1, S1 — L5 is fused
  into the sacrum, four free lumbar vertebrae.
* ``"normal"`` (47 classes): L1-L5, L5-S1, S1.
* ``"lumbarization"`` (49 classes): L1-L6, L6-S1, S1 — an extra free lumbar vertebra.

Thoracic count is fixed at 12 (T1-T12) and cervical at 7 (C1 has no body and is not
a class).  A transitional status is therefore read off the number of free lumbar
vertebrae between T12 and S1; thoracic-count variants (11 or 13 rib-bearing levels)
are not modelled, as in the thesis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Literal

Variant = Literal["sacralization", "normal", "lumbarization"]
TransitionalStatus = Literal["normal", "lumbarization", "sacralization", "undetermined"]

VARIANTS: tuple[Variant, ...] = ("sacralization", "normal", "lumbarization")
LUMBAR_COUNT: dict[Variant, int] = {"sacralization": 4, "normal": 5, "lumbarization": 6}
VARIANT_BY_LUMBAR_COUNT: dict[int, Variant] = {v: k for k, v in LUMBAR_COUNT.items()}
#: number of structure classes per variant, background not counted (thesis: 45 / 47 / 49);
#: a model predicting them has one more output channel for background (class 0)
N_CLASSES: dict[Variant, int] = {"sacralization": 45, "normal": 47, "lumbarization": 49}

CERVICAL = tuple(f"C{i}" for i in range(2, 8))
THORACIC = tuple(f"T{i}" for i in range(1, 13))
SACRUM = "S1"


@cache
def vertebrae(variant: Variant = "normal") -> tuple[str, ...]:
    """Vertebra names from C2 down to S1 for ``variant`` (cranial first)."""
    lumbar = tuple(f"L{i}" for i in range(1, LUMBAR_COUNT[variant] + 1))
    return CERVICAL + THORACIC + lumbar + (SACRUM,)


@cache
def structures(variant: Variant = "normal") -> tuple[str, ...]:
    """All structure names, vertebrae and discs interleaved, cranial first.

    Index ``i`` of the tuple is class id ``i + 1`` (class 0 is background).
    """
    verts = vertebrae(variant)
    out: list[str] = []
    for upper, lower in zip(verts[:-1], verts[1:], strict=True):
        out += [upper, f"{upper}-{lower}"]
    out.append(verts[-1])
    return tuple(out)


@cache
def _name_to_id(variant: Variant) -> dict[str, int]:
    return {name: i + 1 for i, name in enumerate(structures(variant))}


def class_id(name: str, variant: Variant = "normal") -> int:
    """Class id (1-based, 0 = background) of structure ``name`` in ``variant``.

    Raises ``KeyError`` naming the structure and the variant when it does not exist there
    (e.g. ``"L5"`` under sacralization).
    """
    try:
        return _name_to_id(variant)[name]
    except KeyError:
        raise KeyError(f"structure {name!r} does not exist in the {variant!r} schema") from None


def class_name(cid: int, variant: Variant = "normal") -> str:
    """Structure name of class id ``cid`` (1-based) in ``variant``."""
    names = structures(variant)
    if not 1 <= cid <= len(names):
        raise KeyError(f"class id {cid} is outside 1..{len(names)} of the {variant!r} schema")
    return names[cid - 1]


def n_classes(variant: Variant = "normal") -> int:
    """Number of structure classes, background not counted (45 / 47 / 49 as in the thesis)."""
    return len(structures(variant))


def is_disc(name: str) -> bool:
    """True for an intervertebral disc name such as ``"L5-S1"``."""
    return "-" in name


def is_vertebra(name: str) -> bool:
    """True for a vertebra name such as ``"T12"`` or ``"S1"``."""
    return not is_disc(name) and name[:1] in "CTLS" and name[1:].isdigit()


def region(name: str) -> str:
    """Spinal region of a structure: cervical, thoracic, lumbar or sacral.

    A disc belongs to the region of its upper vertebra (``"C7-T1"`` is cervical,
    ``"L5-S1"`` lumbar), the usual convention for disc levels.
    """
    head = name.split("-")[0]
    return {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}[head[0]]


def kind(name: str) -> str:
    """``"disc"`` or ``"vertebra"``."""
    return "disc" if is_disc(name) else "vertebra"


def all_names() -> tuple[str, ...]:
    """Union of all variants' structure names in cranio-caudal order (49-class order)."""
    return structures("lumbarization")


@cache
def _canonical_rank() -> dict[str, float]:
    """Cranio-caudal rank of every name of every variant, for sorting mixed lists."""
    rank = {name: float(i) for i, name in enumerate(structures("lumbarization"))}
    rank["L4-S1"] = rank["L4-L5"] + 0.5
    rank["L5-S1"] = rank["L5-L6"] + 0.5
    return rank


def sort_key(name: str) -> float:
    """Sort key placing any structure name of any variant in cranio-caudal order."""
    return _canonical_rank()[name]


def transitional_status(names: Iterable[str]) -> TransitionalStatus:
    """Lumbosacral transitional status from the structure names visible in a scan.

    The status is determinable only when the count origin (T12, from which the free
    lumbar vertebrae are counted; a whole-spine scan that shows C2 counts from C2 and
    therefore names T12) and the lumbosacral junction (S1) are both in view:

    * 5 free lumbar vertebrae between T12 and S1 -> ``"normal"``
    * 6 -> ``"lumbarization"``, 4 -> ``"sacralization"``
    * anything else, or T12/S1 missing -> ``"undetermined"``
    """
    present = set(names)
    if "T12" not in present or SACRUM not in present:
        return "undetermined"
    n_lumbar = lumbar_count(present)
    variant = VARIANT_BY_LUMBAR_COUNT.get(n_lumbar)
    return variant if variant is not None else "undetermined"


def lumbar_count(names: Iterable[str]) -> int:
    """Number of distinct lumbar vertebrae (L1..L6) among ``names``."""
    return sum(1 for n in set(names) if is_vertebra(n) and n.startswith("L"))


def variant_for_lumbar_count(n_lumbar: int) -> Variant:
    """Schema variant for a number of free lumbar vertebrae (4, 5 or 6)."""
    try:
        return VARIANT_BY_LUMBAR_COUNT[n_lumbar]
    except KeyError:
        raise ValueError(f"{n_lumbar} free lumbar vertebrae is outside the schema (4-6)") from None


def name_sequence(n_vertebrae: int, lumbar: int = 5) -> tuple[str, ...]:
    """Names of ``n_vertebrae`` vertebrae and the discs between them, counted from C2.

    The last vertebra is the sacrum when the count reaches it: with ``lumbar`` free lumbar
    vertebrae a complete spine has ``6 + 12 + lumbar + 1`` vertebrae.
    """
    variant = variant_for_lumbar_count(lumbar)
    full = structures(variant)
    n = 2 * n_vertebrae - 1
    if n > len(full):
        raise ValueError(
            f"{n_vertebrae} vertebrae exceed the {variant!r} schema ({len(vertebrae(variant))})"
        )
    return full[:n]


def check_order(names: Sequence[str]) -> bool:
    """True if ``names`` are strictly cranio-caudal and alternate vertebra/disc."""
    if any(n not in _canonical_rank() for n in names):
        return False
    ranks = [sort_key(n) for n in names]
    if any(b <= a for a, b in zip(ranks[:-1], ranks[1:], strict=False)):
        return False
    kinds = [is_disc(n) for n in names]
    return all(a != b for a, b in zip(kinds[:-1], kinds[1:], strict=False))
