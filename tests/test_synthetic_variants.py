"""Tests of the generator's variants and their truth (all on synthetic data, tiny preset)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cc3d
import numpy as np
import pytest
import yaml

from spinecensus import cli
from spinecensus import synthetic as syn
from spinecensus.anatomy import labels
from spinecensus.census.jobs import build_parser
from spinecensus.census.sheet import OUTPUT_COLUMNS, check_columns
from spinecensus.synthetic import variants as var

TINY = syn.SyntheticConfig.tiny()
REPO = Path(__file__).resolve().parents[1]


def _names(sub: syn.SyntheticSubject) -> list[str]:
    return [sub.id_to_name[i] for i in sorted(sub.id_to_name)]


def _id(sub: syn.SyntheticSubject, name: str) -> int:
    return next(i for i, n in sub.id_to_name.items() if n == name)


def _rows_mm(sub: syn.SyntheticSubject, name: str) -> tuple[float, float]:
    """(first, last) SI position (mm from the top row) of a structure's voxels."""
    rows = np.nonzero((sub.instances == _id(sub, name)).any(axis=(0, 2)))[0]
    return rows.min() * sub.spacing_mm[1], rows.max() * sub.spacing_mm[1]


def _check_masks(sub: syn.SyntheticSubject) -> None:
    """Masks agree with the names: one component per instance, semantic = kind of name."""
    ids = np.unique(sub.instances)
    assert set(ids[ids > 0].tolist()) == set(sub.id_to_name)
    assert sorted(sub.id_to_name) == list(range(1, len(sub.id_to_name) + 1))
    for i, name in sub.id_to_name.items():
        m = sub.instances == i
        assert set(np.unique(sub.semantic[m]).tolist()) == {2 if labels.is_disc(name) else 1}
        assert int(cc3d.connected_components(m.astype(np.uint8), connectivity=26).max()) == 1


@pytest.mark.parametrize("anomaly", syn.ANOMALIES)
def test_thoracic_variants_have_11_or_13_thoracic_labels(anomaly):
    """Synthetic: t11 / t13 subjects carry T1..T11 / T1..T13 in the masks; the lumbar part
    is the anomaly's."""
    for variant, n in (("t11", 11), ("t13", 13)):
        sub = syn.generate_subject(3, anomaly, TINY, variants=(variant,))
        names = _names(sub)
        thoracic = [x for x in names if labels.is_vertebra(x) and x[0] == "T"]
        assert thoracic == [f"T{i}" for i in range(1, n + 1)]
        assert f"T{n}-L1" in names
        assert labels.lumbar_count(names) == var.LUMBAR_OF_ANOMALY[anomaly]
        _check_masks(sub)


def test_sacral_disc_is_a_labelled_disc_between_s1_and_s2():
    """Synthetic: sacral_disc splits the sacrum into S1 and S2 with an IVD-labelled remnant
    disc between them, thinner than the L5-S1 disc."""
    sub = syn.generate_subject(4, "normal", TINY, variants=("sacral_disc",))
    names = _names(sub)
    assert names[-3:] == ["S1", "S1-S2", "S2"]
    _check_masks(sub)
    s1, disc, s2 = (_rows_mm(sub, n) for n in ("S1", "S1-S2", "S2"))
    assert s1[0] < disc[0] < s2[0] and s1[1] < disc[1] < s2[1]
    assert (sub.semantic[sub.instances == _id(sub, "S1-S2")] == 2).all()
    # thinner than the lumbosacral disc: fewer voxels per slice
    n_remnant = int((sub.instances == _id(sub, "S1-S2")).sum())
    n_l5s1 = int((sub.instances == _id(sub, "L5-S1")).sum())
    assert 0 < n_remnant < n_l5s1


def test_sacral_disc_in_sacralization_lies_below_the_fused_l5_and_s1():
    """Synthetic: with L5 fused into the sacrum, the remnant disc is S1-S2, below both."""
    sub = syn.generate_subject(4, "sacralization", TINY, variants=("sacral_disc",))
    normal = syn.generate_subject(4, "sacralization", TINY)
    assert _names(sub)[-3:] == ["S1", "S1-S2", "S2"]
    s1_height = np.subtract(*_rows_mm(sub, "S1")[::-1])
    whole = np.subtract(*_rows_mm(normal, "S1")[::-1])
    assert 0.3 * whole < s1_height < 0.6 * whole  # fused L5 + S1 of a ~5-piece sacrum


def test_fused_block_is_one_vertebra_without_a_c2_c3_disc():
    """Synthetic: the C2-C3 block is one vertebra instance (named C2) reaching down to where
    C3 was; no C2-C3 disc; the disc below it is C3-C4."""
    block = syn.generate_subject(5, "normal", TINY, variants=("fused_block",))
    plain = syn.generate_subject(5, "normal", TINY)
    names = _names(block)
    assert names[:3] == ["C2", "C3-C4", "C4"] and "C2-C3" not in names and "C3" not in names
    _check_masks(block)
    top, bottom = _rows_mm(block, "C2")
    assert bottom - top > (_rows_mm(plain, "C2")[1] - _rows_mm(plain, "C2")[0]) + 8.0
    # nothing of disc class between the top of the block and the C3-C4 disc
    first_disc_row = np.nonzero((block.semantic == 2).any(axis=(0, 2)))[0].min()
    assert first_disc_row * block.spacing_mm[1] >= bottom - 3 * block.spacing_mm[1]


def test_c2_cut_and_sacrum_cut_remove_c2_and_the_sacrum():
    """Synthetic: c2_cut leaves no C2 voxel, sacrum_cut no sacral voxel; ids renumbered."""
    full = syn.generate_subject(6, "normal", TINY)
    for variants, gone in (
        (("c2_cut",), {"C2"}),
        (("sacrum_cut",), {"S1"}),
        (("sacral_disc", "c2_cut", "sacrum_cut"), {"C2", "S1", "S1-S2", "S2"}),
    ):
        sub = syn.generate_subject(6, "normal", TINY, variants=variants)
        assert gone.isdisjoint(_names(sub)), variants
        assert sub.image.shape[1] < full.image.shape[1]
        assert sub.image.shape == sub.semantic.shape == sub.instances.shape
        assert sub.meta["fov_rows"][1] - sub.meta["fov_rows"][0] == sub.image.shape[1]
        _check_masks(sub)
    assert "T1" in _names(syn.generate_subject(6, "normal", TINY, variants=("c2_cut",)))
    assert "L3" in _names(syn.generate_subject(6, "normal", TINY, variants=("sacrum_cut",)))


@pytest.mark.parametrize(
    ("anomaly", "variants", "presacral", "status"),
    [
        ("normal", (), 24, "normal"),
        ("normal", ("t13",), 25, "lumbarization"),
        ("normal", ("t11",), 23, "sacralization"),
        ("sacralization", ("t13",), 24, "normal"),
        ("lumbarization", ("t11",), 24, "normal"),
        ("lumbarization", ("t13",), 26, "undetermined"),
        ("sacralization", ("t11",), 22, "undetermined"),
        ("lumbarization", ("sacral_disc",), 25, "lumbarization"),
        ("normal", ("fused_block",), 24, "normal"),
        ("sacralization", ("fused_block",), 23, "sacralization"),
        ("normal", ("c2_cut",), 24, "undetermined"),
        ("lumbarization", ("sacrum_cut",), 25, "undetermined"),
    ],
)
def test_expected_status_is_the_count_defined_status(anomaly, variants, presacral, status):
    """The truth a census is scored against: status by presacral count (T13 = L6), or
    undetermined without C2 or the sacrum in view."""
    assert var.presacral_count(anomaly, variants) == presacral
    assert var.expected_status(anomaly, variants) == status


def test_variant_rates_are_honoured_and_independent():
    """Synthetic draws: each variant's frequency is within 5 binomial SDs of its rate; t11
    and t13 never together; a variant's draw does not depend on the other rates."""
    rates = {"sacral_disc": 0.16, "t11": 0.1, "t13": 0.2, "c2_cut": 0.05, "sacrum_cut": 0.3,
             "fused_block": 0.5}  # fmt: skip
    n = 4000
    draws = [var.draw_variants(31, i, rates) for i in range(n)]
    for name, p in rates.items():
        freq = sum(name in d for d in draws) / n
        assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n), (name, freq)
    assert not any("t11" in d and "t13" in d for d in draws)
    alone = [var.draw_variants(31, i, {"sacral_disc": 0.16}) for i in range(n)]
    assert [("sacral_disc" in d) for d in alone] == [("sacral_disc" in d) for d in draws]
    assert draws == [var.draw_variants(31, i, rates) for i in range(n)]  # seeded
    assert draws != [var.draw_variants(32, i, rates) for i in range(n)]


def test_zero_rates_leave_the_cohort_unchanged():
    """Synthetic: every rate 0 draws no variant and gives the cohort without variants,
    bit for bit (the demo's planted statistic does not move)."""
    zero = dict.fromkeys(var.VARIANTS, 0.0)
    assert all(var.draw_variants(2023, i, zero) == () for i in range(50))
    a = list(syn.generate_cohort(3, 2023, 0.3, 0.3, TINY))
    b = list(syn.generate_cohort(3, 2023, 0.3, 0.3, TINY, zero))
    for s, t in zip(a, b, strict=True):
        assert np.array_equal(s.image, t.image) and np.array_equal(s.instances, t.instances)
        assert t.variants == ()


def test_variant_subject_is_deterministic_and_keeps_covariates():
    """Synthetic: variants come from streams of their own: same arrays on a second call,
    sex and age as without them."""
    a = syn.generate_subject(8, "normal", TINY, variants=("t13", "c2_cut"))
    b = syn.generate_subject(8, "normal", TINY, variants=("t13", "c2_cut"))
    plain = syn.generate_subject(8, "normal", TINY)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances)
    assert (a.sex, a.age) == (plain.sex, plain.age)
    with pytest.raises(ValueError, match="exclude"):
        syn.generate_subject(8, "normal", TINY, variants=("t11", "t13"))
    with pytest.raises(ValueError, match="scoliosis"):
        syn.generate_subject(8, "normal", TINY, variants=("scoliosis",))


def test_cli_synth_writes_the_truth_columns(tmp_path: Path):
    """Synthetic: `spinecensus synth --variant-rate` writes the truth columns, consistent
    with each subject's labels.json; the sheet's columns collide with no output column."""
    out = tmp_path / "c"
    rc = cli.main(["synth", "--n", "6", "--seed", "3", "--out", str(out), "--preset", "tiny",
                   "--variant-rate", "t13=0.5", "--variant-rate", "sacral_disc=0.5",
                   "--variant-rate", "c2_cut=0.3"])  # fmt: skip
    assert rc == 0
    rows = list(csv.DictReader(open(out / "samples.tsv"), delimiter="\t"))
    assert list(rows[0]) == list(syn.SAMPLE_COLUMNS)
    check_columns(list(rows[0]))
    assert not set(syn.SAMPLE_COLUMNS) & set(OUTPUT_COLUMNS)
    assert any(r["variants"] for r in rows)
    for r in rows:
        v = tuple(x for x in r["variants"].split(",") if x)
        names = set(json.loads((out / r["labels"]).read_text()).values())
        assert ("S1-S2" in names) == ("sacral_disc" in v)
        assert ("C2" in names) == ("c2_cut" not in v)
        assert int(r["true_thoracic_count"]) == var.thoracic_count(v)
        assert int(r["true_presacral_count"]) == var.presacral_count(r["anomaly"], v)
        assert r["expected_status"] == var.expected_status(r["anomaly"], v)
        assert r["expert_status"] in ("", r["expected_status"])
        assert not (r["expected_status"] == "undetermined" and r["expert_status"])


@pytest.mark.parametrize(
    ("arg", "says"),
    [
        ("scoliosis=0.1", "unknown variant 'scoliosis'"),
        ("t13=1.5", "outside [0, 1]"),
        ("t13=-0.1", "outside [0, 1]"),
        ("t13=abc", "not a number"),
        ("t13", "expected NAME=P"),
    ],
)
def test_cli_rejects_bad_variant_rates_naming_them(tmp_path, capsys, arg, says):
    """A bad --variant-rate is a usage error naming the argument and the problem."""
    argv = ["synth", "--n", "1", "--seed", "1", "--out", str(tmp_path), "--variant-rate", arg]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert arg in err and says in err
    with pytest.raises(SystemExit):  # the workflow's entry point parses it the same way
        build_parser().parse_args(["synth", "--out", "x", "--n", "1", "--seed", "1",
                                   "--variant-rate", arg])  # fmt: skip


def test_cli_rejects_t11_and_t13_summing_over_one(tmp_path):
    argv = ["synth", "--n", "1", "--seed", "1", "--out", str(tmp_path),
            "--variant-rate", "t11=0.6", "--variant-rate", "t13=0.6"]  # fmt: skip
    with pytest.raises(SystemExit, match="t11 and t13"):
        cli.main(argv)


def test_config_declares_no_variants_and_the_schema_names_them():
    """The shipped config draws no variant (the demo cohort); the schema knows every
    variant and rejects others."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["synthetic"]["variants"] == {}
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["synthetic"]["properties"]["variants"]["properties"]
    assert set(props) == set(var.VARIANTS)
    bad = {**config, "synthetic": {**config["synthetic"], "variants": {"scoliosis": 0.1}}}
    with pytest.raises(Exception, match="scoliosis"):
        validate(bad, str(REPO / "workflow/schemas/config.schema.yaml"))
    args = build_parser().parse_args(["synth", "--out", "x", "--n", "1", "--seed", "1",
                                      "--variant-rate", "t11=0.25"])  # fmt: skip
    assert dict(args.variant_rate) == {"t11": 0.25}
