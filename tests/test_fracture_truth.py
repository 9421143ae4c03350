"""Planted fractures, disc narrowing and ``truth.json`` (spinecensus.synthetic.fracture,
drawn_geometry, truth).

Every test here runs on synthetic data: subjects of the generator (tiny preset, one of
them default), whose planted geometry is compared with the generator's own truth, with
the same subject drawn without the variant, and with the measurement
(``spinecensus.measure``) applied to the ground-truth masks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from spinecensus import cli
from spinecensus import synthetic as syn
from spinecensus.anatomy import labels
from spinecensus.measure import genant, heights
from spinecensus.measure.morphometrics import measure_subject
from spinecensus.synthetic import drawn_geometry, truth
from spinecensus.synthetic.drawn_geometry import gradable
from spinecensus.synthetic.truth import truth_json

TINY = syn.SyntheticConfig.tiny()
H = ("height_anterior_mm", "height_middle_mm", "height_posterior_mm")


def _truth(sub: syn.SyntheticSubject) -> dict:
    return truth_json(sub.instances, sub.id_to_name, sub.truth)


def _rule_grades(tj: dict, names: list[str]) -> dict[str, int]:
    """Genant grades of truth.json's bodies by the measurement's own rule
    (``spinecensus.measure.genant``), neighbours = adjacent vertebrae listed in it."""
    verts = [n for n in names if labels.is_vertebra(n)]
    listed = tj["vertebrae"]
    out = {}
    for j, n in enumerate(verts):
        if n not in listed:
            continue
        near = [verts[k] for k in (j - 1, j + 1) if 0 <= k < len(verts) and verts[k] in listed]
        ref = np.mean([listed[m]["height_posterior_mm"] for m in near]) if near else np.nan
        ha, hm, hp = (np.array([listed[n][h]]) for h in H)
        out[n] = int(genant.height_ratios(ha, hm, hp, np.array([ref]))["genant_grade"][0])
    return out


@pytest.mark.parametrize(
    ("seed", "level", "deformity", "grade"),
    [
        (1, "T11", "wedge", 2),
        (12, "T12", "wedge", 3),
        (2, "T12", "biconcave", 1),
        (7, "L1", "biconcave", 3),
        (3, "L3", "crush", 1),
        (25, "L1", "crush", 2),
    ],
)
def test_fracture_plants_the_declared_grade(seed, level, deformity, grade):
    """Synthetic: the drawn fracture has its declared Genant grade and reduction in
    truth.json, which agree with truth.json's heights by the measurement's Genant rule;
    every other body is grade 0; the deformity is the declared shape (against the same
    subject drawn without it)."""
    sub = syn.generate_subject(seed, "normal", TINY, variants=("fracture",))
    planted = sub.truth.fractures[0]
    assert (planted["level"], planted["deformity"], planted["grade"]) == (level, deformity, grade)
    tj = _truth(sub)
    got = tj["vertebrae"][level]
    assert got["genant_grade"] == grade
    assert abs(got["height_reduction"] - planted["reduction"]) <= 0.002
    names = [sub.id_to_name[i] for i in sorted(sub.id_to_name)]
    rule = _rule_grades(tj, names)
    assert rule == {n: v["genant_grade"] for n, v in tj["vertebrae"].items()}
    assert {n for n, g in rule.items() if g} == {level}
    plain = _truth(syn.generate_subject(seed, "normal", TINY))["vertebrae"]
    ha, hm, hp = (got[h] for h in H)
    ha0, hm0, hp0 = (plain[level][h] for h in H)
    if deformity == "wedge":  # anterior wall shortened, posterior wall kept (its corners
        # move apart a little: the bend curves the wall the corner lines are fitted to)
        assert abs(hp - hp0) < 0.03 * hp0 and ha < ha0 - 2.0
    elif deformity == "biconcave":  # the middle sinks, the rims stay
        assert abs(ha - ha0) < 0.3 and abs(hp - hp0) < 0.3 and hm < hm0 - 2.0
    else:  # the whole body lower, its shape kept
        assert abs(ha / hp - ha0 / hp0) < 0.02 and hp < hp0 - 3.0
    for other in set(plain) - {level}:
        assert np.allclose([tj["vertebrae"][other][h] for h in H],
                           [plain[other][h] for h in H], atol=0.3)  # fmt: skip


def _whole_in_view(sub: syn.SyntheticSubject) -> set[str]:
    """Instances whose voxels touch no superior/inferior or anterior/posterior border."""
    out = set()
    _, ny, nz = sub.instances.shape
    for i, n in sub.id_to_name.items():
        _, r, c = np.nonzero(sub.instances == i)
        if r.size and r.min() > 0 and r.max() < ny - 1 and c.min() > 0 and c.max() < nz - 1:
            out.add(n)
    return out


@pytest.mark.parametrize("variants", [(), ("c2_cut", "sacrum_cut", "fracture"), ("t11",)])
def test_truth_lists_only_levels_in_view(variants):
    """Synthetic: truth.json lists exactly the free bodies and discs wholly in view (no C2,
    no sacrum, no structure cut by the field of view); the lordosis is null without the
    sacrum, the kyphosis without T12."""
    sub = syn.generate_subject(6, "normal", TINY, variants=variants)
    tj = _truth(sub)
    seen = _whole_in_view(sub)
    assert set(tj["vertebrae"]) == {n for n in seen if gradable(n)}
    assert set(tj["discs"]) == {n for n in seen if labels.is_disc(n)}
    assert "C2" not in tj["vertebrae"] and "S1" not in tj["vertebrae"]
    if not variants:
        verts = [n for n in labels.structures("normal") if labels.is_vertebra(n)]
        assert list(tj["vertebrae"]) == verts[1:-1]  # C3 .. L5
    names = set(sub.id_to_name.values())
    assert (tj["lordosis_deg"] is None) == ("S1" not in names)
    assert (tj["kyphosis_deg"] is None) == ("T12" not in names or "T4" not in seen)
    if "sacrum_cut" in variants:
        assert sub.image.shape[1] < syn.generate_subject(6, "normal", TINY).image.shape[1]
    for v in tj["vertebrae"].values():
        assert v["height_posterior_mm"] > 5.0 and v["genant_grade"] in (0, 1, 2, 3)


def test_lordosis_is_the_drawn_curve():
    """Synthetic: truth.json's lordosis is the turn of the drawn column between the top of
    L1 and the top of the sacrum (endplates are normal to it), to within 0.5 deg; it
    differs between subjects (the curve is drawn per subject)."""
    lordoses = []
    for seed in (4, 5):
        sub = syn.generate_subject(seed, "normal", TINY)
        plan, cl = sub.drawn.plan, sub.drawn.cl
        turn = np.interp([plan.extent_s["S1"][0], plan.extent_s["L1"][0]], cl.s, cl.theta)
        lordosis = _truth(sub)["lordosis_deg"]
        assert abs(lordosis - np.degrees(turn[0] - turn[1])) < 0.5
        lordoses.append(lordosis)
    assert abs(lordoses[0] - lordoses[1]) > 1.0


def test_disc_narrowing_lowers_one_lumbar_disc():
    """Synthetic: a narrowed disc's drawn heights each drop by 0.7-1.1 x its planted
    fraction (of its height along the column; the six-point heights also span the
    endplates' concavities, which stay); the other discs keep theirs."""
    sub = syn.generate_subject(3, "normal", TINY, variants=("disc_narrowing",))
    ((disc, fraction),) = sub.truth.narrowed.items()
    assert disc == "L3-L4" and 0.25 <= fraction <= 0.5
    tj = _truth(sub)["discs"]
    plain = _truth(syn.generate_subject(3, "normal", TINY))["discs"]
    assert tj[disc]["narrowing"] == fraction
    for h in H:
        drop = 1.0 - tj[disc][h] / plain[disc][h]
        assert 0.7 * fraction < drop < 1.1 * fraction, (h, drop, fraction)
    for other in set(plain) - {disc}:
        assert tj[other]["narrowing"] == 0.0
        assert np.allclose([tj[other][h] for h in H], [plain[other][h] for h in H], atol=0.3)


def test_zero_rates_and_the_truth_change_no_array(tmp_path: Path):
    """Synthetic: with fracture and disc_narrowing at 0 the written cohort is the cohort
    without them, byte for byte (truth.json included); at 0.5 the subjects that drew
    neither are bit-identical to those of the cohort without; computing the truth changes
    no array."""
    zero = {"fracture": 0.0, "disc_narrowing": 0.0}
    syn.write_cohort(tmp_path / "a", 3, 2023, 0.3, 0.3, TINY)
    syn.write_cohort(tmp_path / "b", 3, 2023, 0.3, 0.3, TINY, zero)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert any(p.name == "truth.json" for p in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    half = {"fracture": 0.5, "disc_narrowing": 0.5}
    plain = list(syn.generate_cohort(6, 2023, 0.3, 0.3, TINY))
    drawn = list(syn.generate_cohort(6, 2023, 0.3, 0.3, TINY, half))
    assert {v for s in drawn for v in s.variants} == {"fracture", "disc_narrowing"}
    assert any(not s.variants for s in drawn)
    for s, t in zip(plain, drawn, strict=True):
        same = np.array_equal(s.image, t.image) and np.array_equal(s.instances, t.instances)
        assert same == (t.variants == ()), t.variants
        assert (s.sex, s.age, s.anomaly) == (t.sex, t.age, t.anomaly)
    sub = syn.generate_subject(9, "normal", TINY, variants=("fracture",))
    arrays = [a.copy() for a in (sub.image, sub.instances, sub.semantic, sub.tissue)]
    assert sub.truth is not None and sub.truth.fractures
    after = (sub.image, sub.instances, sub.semantic, sub.tissue)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, after, strict=True))


def test_cli_synth_writes_truth_json(tmp_path: Path):
    """Synthetic: `spinecensus synth --variant-rate fracture=P` writes truth.json in every
    subject folder; a fracture subject's planted level carries its planted grade."""
    out = tmp_path / "c"
    rc = cli.main(["synth", "--n", "4", "--seed", "5", "--out", str(out), "--preset", "tiny",
                   "--variant-rate", "fracture=0.7"])  # fmt: skip
    assert rc == 0
    rows = list(csv.DictReader(open(out / "samples.tsv"), delimiter="\t"))
    assert any("fracture" in r["variants"] for r in rows)
    for r in rows:
        tj = json.loads((out / r["subject"] / "truth.json").read_text())
        assert set(tj) >= {"vertebrae", "lordosis_deg", "discs", "fractures", "definitions"}
        assert set(tj["vertebrae"]["L1"]) >= {*H, "genant_grade"}
        assert bool(tj["fractures"]) == ("fracture" in r["variants"])
        for f in tj["fractures"]:
            assert tj["vertebrae"][f["level"]]["genant_grade"] == f["grade"]


def test_truth_definitions_are_the_measurements():
    """The drawn heights use the measurement's rim and direction bands, middle band and
    first wall rows, and the grades its thresholds (docs/morphometrics.md)."""
    assert drawn_geometry.RIM_BAND == heights.RIM_BAND
    assert drawn_geometry.DIRECTION_BAND == heights.DIRECTION_BAND
    assert drawn_geometry.MIDDLE_HALF_BAND == heights.MIDDLE_HALF_BAND
    assert drawn_geometry.MARGIN_ROWS == heights.MARGIN_ROWS
    assert truth.GRADE_THRESHOLDS == genant.GRADE_THRESHOLDS
    assert truth.DEFORMITIES == genant.DEFORMITIES


def test_measurement_recovers_a_planted_severe_wedge():
    """Synthetic, default preset (the demo's grid): on the ground-truth masks of a subject
    with a grade-3 T12 wedge, every body's heights are within 1.5 mm of truth.json (median
    0.5 mm), T12 is measured grade 3, no other body grade >= 2, lordosis within 2 deg."""
    sub = syn.generate_subject(12, "normal", syn.SyntheticConfig(), variants=("fracture",))
    tj = _truth(sub)
    table, spine = measure_subject(sub.instances, sub.id_to_name, sub.spacing_mm)
    table = table.set_index("label")
    err = np.array([table.loc[n, list(H)].to_numpy(float) - [v[h] for h in H]
                    for n, v in tj["vertebrae"].items()])  # fmt: skip
    assert np.abs(err).max() < 1.5 and np.median(np.abs(err)) < 0.5
    grades = table.loc[list(tj["vertebrae"]), "genant_grade"]
    assert grades["T12"] == 3
    assert (grades.drop("T12") < 2).all()
    assert abs(spine["lordosis_deg"] - tj["lordosis_deg"]) < 2.0
