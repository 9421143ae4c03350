"""Count labeling from C2, the consistent-sequence search and the model/count combination."""

from __future__ import annotations

import numpy as np
import pytest
from spine_phantom import make_phantom

from spinecensus.anatomy import labels
from spinecensus.naming.counting import count_labels
from spinecensus.naming.labeler import label_split, label_with_model
from spinecensus.naming.sacrum import (
    SMALL_FOV_SACRUM_MIN_RATIO,
    last_is_sacrum,
    names_up_from_sacrum,
    sacral_tail,
)
from spinecensus.naming.sequence import consistent_sequence
from spinecensus.naming.vote import COLUMN_ALIASES, to_union_columns, vote_log_probs
from spinecensus.split.instances import SplitResult, split_instances

NAMES = labels.all_names()


def fake_split(kinds: list[str], counts: list[int] | None = None, valid: bool = True):
    """A SplitResult carrying only kinds / voxel counts (labeling needs nothing else)."""
    if counts is None:
        counts = [100] * len(kinds)
    return SplitResult(
        instances=np.zeros((1, 1, 1), dtype=np.uint16),
        kinds=list(kinds),
        valid=valid,
        invalid_reason=None if valid else "test: invalid",
        voxel_counts=list(counts),
    )


def whole_spine_split(variant: str, sacrum_voxels: int = 1000):
    names = labels.structures(variant)
    counts = [500] * len(names)
    counts[-1] = sacrum_voxels
    return fake_split([labels.kind(n) for n in names], counts), names


def truth_log_probs(names: list[str], p_true: float = 0.6, rng=None) -> np.ndarray:
    """Log-probs with mass ``p_true`` on each instance's true union column, noise elsewhere."""
    rng = rng or np.random.default_rng(0)
    probs = rng.random((len(names), len(NAMES))) * 0.02 + 0.001
    for i, nm in enumerate(names):
        cols = COLUMN_ALIASES.get(nm, (nm,))
        probs[i, NAMES.index(cols[0])] = p_true
    probs /= probs.sum(1, keepdims=True)
    return np.log(probs)


@pytest.mark.parametrize("variant", labels.VARIANTS)
def test_count_labels_recovers_names_and_anomaly(variant):
    """Synthetic phantom (GT semantic mask) -> split -> count: every name and the anomaly."""
    p = make_phantom(variant)
    lab = count_labels(split_instances(p.semantic, p.spacing_mm))
    assert lab.id_to_name == p.id_to_name
    assert lab.transitional_status == variant
    assert lab.lumbar_count == labels.LUMBAR_COUNT[variant]
    assert lab.decided_by == "count" and lab.qc_flags == []
    assert lab.sacrum_id == max(p.id_to_name)


def test_count_labels_without_sacrum_is_undetermined():
    """Synthetic phantom of C2..T10 only: names from C2, status undetermined, flagged."""
    p = make_phantom("normal", n_vertebrae=15)
    lab = count_labels(split_instances(p.semantic, p.spacing_mm))
    assert lab.id_to_name == p.id_to_name
    assert lab.transitional_status == "undetermined" and lab.lumbar_count is None
    assert any(f.startswith("sacrum_not_recognised") for f in lab.qc_flags)


@pytest.mark.parametrize("n_lumbar", [3, 7])
def test_count_labels_lumbar_count_out_of_range(n_lumbar):
    """18 + n_lumbar free vertebrae + sacrum: flagged, undetermined, sacrum still named."""
    n_vert = 18 + n_lumbar + 1
    kinds = ["vertebra", "disc"] * (n_vert - 1) + ["vertebra"]
    counts = [100] * len(kinds)
    counts[-1] = 900
    lab = count_labels(fake_split(kinds, counts))
    assert lab.transitional_status == "undetermined"
    assert lab.lumbar_count == n_lumbar
    assert lab.id_to_name[1] == "C2" and lab.id_to_name[len(kinds)] == "S1"
    assert any(f.startswith("lumbar_count_out_of_range") for f in lab.qc_flags)


def test_count_labels_flags_invalid_split_and_handles_nothing():
    split, names = whole_spine_split("normal")
    split.valid, split.invalid_reason = False, "vertebra instance 3 is in 2 pieces"
    lab = count_labels(split)
    assert any(f.startswith("split_invalid") for f in lab.qc_flags)
    assert lab.id_to_name == {i + 1: n for i, n in enumerate(names)}
    empty = count_labels(fake_split([]))
    assert empty.id_to_name == {} and empty.transitional_status == "undetermined"
    only_discs = count_labels(fake_split(["disc"]))
    assert only_discs.id_to_name == {} and only_discs.lumbar_count is None


def test_count_labels_leading_disc_is_unnamed():
    kinds = ["disc", "vertebra", "disc", "vertebra"]
    lab = count_labels(fake_split(kinds, [10, 100, 10, 50]))
    assert lab.id_to_name == {2: "C2", 3: "C2-C3", 4: "C3"}
    assert any(f.startswith("top_not_vertebra") for f in lab.qc_flags)


def test_count_labels_small_field_of_view_names_up_from_sacrum():
    """Hand-made lumbar scan (T11..S1, 8 vertebrae) declared ``field_of_view="lumbar"``: the
    top vertebra is not called C2; levels are named upward from the sacrum, the status is
    withheld."""
    kinds = ["vertebra", "disc"] * 7 + ["vertebra"]
    counts = [10 if k == "disc" else 100 for k in kinds]
    counts[-1] = 130
    # counting from the top vertebra as C2 is what a whole-spine reading would do
    assert count_labels(fake_split(kinds, counts)).id_to_name[1] == "C2"
    lab = count_labels(fake_split(kinds, counts), field_of_view="lumbar")
    assert lab.id_to_name[1] == "T11" and lab.id_to_name[15] == "S1"
    assert lab.id_to_name[13] == "L5" and lab.sacrum_id == 15
    assert lab.transitional_status == "undetermined" and lab.lumbar_count is None
    assert any(f.startswith("small_field_of_view") for f in lab.qc_flags)
    counts[-1] = 40  # no sacrum in view: nothing is named
    unnamed = count_labels(fake_split(kinds, counts), field_of_view="lumbar")
    assert unnamed.id_to_name == {} and unnamed.sacrum_id is None
    with pytest.raises(ValueError, match="field_of_view"):
        count_labels(fake_split(kinds, counts), field_of_view="cervical")


@pytest.mark.parametrize("variant", labels.VARIANTS)
@pytest.mark.parametrize("v", [5, 8, 10, 15])
def test_consistent_sequence_recovers_windows(variant, v):
    """Windows of V vertebrae anywhere in the schema, noisy model output: exact names."""
    full = labels.structures(variant)
    rng = np.random.default_rng(v)
    for start in range(0, len(full) - (2 * v - 1) + 1, 7):
        names = list(full[start : start + 2 * v - 1])
        kinds = [labels.kind(n) for n in names]
        got, total = consistent_sequence(truth_log_probs(names, rng=rng), kinds)
        assert got == names
        assert np.isfinite(total)


def test_consistent_sequence_fixes_an_inconsistent_argmax():
    """One instance's argmax is wrong (T7 says T9): the sequence repairs it."""
    names = list(labels.structures("normal")[10:21])
    lp = truth_log_probs(names)
    lp[4, NAMES.index(names[4])] = np.log(0.2)
    lp[4, NAMES.index("T9")] = np.log(0.5)
    got, _ = consistent_sequence(lp, [labels.kind(n) for n in names])
    assert got == names


def test_consistent_sequence_matches_brute_force():
    """Random log-probs: the vectorized search equals a plain enumeration."""
    rng = np.random.default_rng(3)
    for n in (1, 2, 5, 9):
        for first in ("vertebra", "disc"):
            kinds = [
                first if i % 2 == 0 else ("disc" if first == "vertebra" else "vertebra")
                for i in range(n)
            ]
            lp = np.log(rng.dirichlet(np.ones(len(NAMES)), size=n))
            best, best_seq = -np.inf, None
            for variant in labels.VARIANTS:
                full = labels.structures(variant)
                for o in range(len(full) - n + 1):
                    seq = full[o : o + n]
                    if [labels.kind(s) for s in seq] != kinds:
                        continue
                    tot = sum(
                        lp[i, NAMES.index(COLUMN_ALIASES.get(s, (s,))[0])]
                        for i, s in enumerate(seq)
                    )
                    if tot > best:
                        best, best_seq = tot, list(seq)
            got, total = consistent_sequence(lp, kinds)
            assert got == best_seq
            assert total == pytest.approx(best)


def test_consistent_sequence_edge_cases():
    assert consistent_sequence(np.zeros((0, len(NAMES))), []) == ([], 0.0)
    lp = np.log(np.full((2, len(NAMES)), 1 / len(NAMES)))
    names, total = consistent_sequence(lp, ["disc", "disc"])
    assert names == [] and total == -np.inf
    too_many = ["vertebra", "disc"] * 30
    names, total = consistent_sequence(np.zeros((60, len(NAMES))), too_many)
    assert names == [] and total == -np.inf
    with pytest.raises(ValueError):
        consistent_sequence(np.zeros((3, 10)), ["vertebra", "disc", "vertebra"])


def test_lumbosacral_disc_scored_through_alias():
    """Sacralization window L3..S1: the L4-S1 disc is read from the union's L6-S1 column."""
    full = labels.structures("sacralization")
    names = list(full[full.index("L3") :])
    got, _ = consistent_sequence(truth_log_probs(names), [labels.kind(n) for n in names])
    assert got == names and "L4-S1" in got


@pytest.mark.parametrize("variant", labels.VARIANTS)
def test_label_with_model_agrees_with_count(variant):
    split, names = whole_spine_split(variant)
    count = count_labels(split)
    lab = label_with_model(split, truth_log_probs(list(names)), count)
    assert lab.decided_by == "count+model"
    assert lab.qc_flags == []
    assert lab.transitional_status == variant
    assert lab.id_to_name == count.id_to_name
    assert all(0 < c <= 1 for c in lab.confidence.values())


def test_label_with_model_disagreement_is_flagged_count_decides():
    """The model reads a lumbarization where the count (whole spine, valid) says normal."""
    split, names = whole_spine_split("normal")
    count = count_labels(split)
    wrong = list(labels.structures("lumbarization"))
    # same number of instances: drop C2, C2-C3 so the model's window ends at S1
    model_names = wrong[2:]
    lab = label_with_model(split, truth_log_probs(model_names), count)
    assert any(f.startswith("count_model_disagree") for f in lab.qc_flags)
    assert lab.decided_by == "count"
    assert lab.id_to_name == count.id_to_name
    assert lab.transitional_status == "normal"


def test_label_with_model_small_fov_model_decides():
    """T11..S1 window (lumbarization): the model decides, status from T12 + S1 in view."""
    full = labels.structures("lumbarization")
    names = list(full[full.index("T11") :])
    split = fake_split([labels.kind(n) for n in names])
    lab = label_with_model(split, truth_log_probs(names), count_labels(split))
    assert lab.decided_by == "model"
    assert lab.id_to_name == {i + 1: n for i, n in enumerate(names)}
    assert lab.transitional_status == "lumbarization" and lab.lumbar_count == 6


def test_label_with_model_non_alternating_split():
    split = fake_split(["vertebra", "disc", "disc", "vertebra"], valid=False)
    lab = label_with_model(split, np.log(np.full((4, len(NAMES)), 1 / len(NAMES))), None)
    assert lab.id_to_name == {} and lab.transitional_status == "undetermined"
    assert any(f.startswith("no_consistent_sequence") for f in lab.qc_flags)


def test_every_variant_end_is_reachable():
    """Windows starting at C2 and ending at S1 of every variant are produced exactly."""
    for variant in labels.VARIANTS:
        full = list(labels.structures(variant))
        for names in (full[:5], full[-5:], full):
            got, _ = consistent_sequence(truth_log_probs(names), [labels.kind(x) for x in names])
            assert got == names


def test_label_with_model_decides_when_count_misses_the_sacrum():
    """Whole spine whose sacrum is too small for the count heuristic: the model (C2..S1
    in view) decides, the disagreement is flagged."""
    split, names = whole_spine_split("normal", sacrum_voxels=400)
    count = count_labels(split)
    assert count.sacrum_id is None
    lab = label_with_model(split, truth_log_probs(list(names)), count)
    assert lab.decided_by == "model"
    assert lab.id_to_name == {i + 1: n for i, n in enumerate(names)}
    assert any(f.startswith("count_model_disagree") for f in lab.qc_flags)


def test_count_labels_on_synthetic_subjects(synthetic_subjects):
    """Synthetic subjects (tiny preset; normal, lumbarization, sacralization): GT semantic
    mask -> split -> count labeling recovers every name and the anomaly."""
    for s in synthetic_subjects:
        lab = count_labels(split_instances(s.semantic, s.spacing_mm))
        assert lab.id_to_name == s.id_to_name, s.subject
        assert lab.transitional_status == s.anomaly, s.subject
        assert lab.lumbar_count == labels.LUMBAR_COUNT[s.anomaly]


def test_missed_disc_is_flagged_and_withholds_the_status() -> None:
    """Synthetic: erasing one thoracic disc from a ground-truth mask (what a segmentation
    that misses a thin disc produces) merges two vertebrae; the split stays valid, but the
    count labeling must not report the shifted count as a transitional status."""
    from spinecensus import synthetic
    from spinecensus.split.instances import split_instances

    subj = synthetic.generate_subject(3, "normal", synthetic.SyntheticConfig.tiny())
    r = split_instances(subj.semantic, subj.spacing_mm)
    assert count_labels(r).transitional_status == "normal"
    name_to_id = {v: k for k, v in subj.id_to_name.items()}
    sem = subj.semantic.copy()
    sem[subj.instances == name_to_id["T6-T7"]] = 1
    merged = split_instances(sem, subj.spacing_mm)
    lab = count_labels(merged)
    assert lab.transitional_status == "undetermined"
    assert any(f.startswith("missed_disc_suspected") for f in lab.qc_flags)


def test_names_up_from_sacrum() -> None:
    """Hand-made instance sequences: names run upward from a large last vertebra (S1)."""
    kinds = ["disc", "vertebra", "disc", "vertebra", "disc", "vertebra"]
    names = names_up_from_sacrum(kinds, [10, 100, 10, 100, 12, 400])
    assert names == {6: "S1", 5: "L5-S1", 4: "L5", 3: "L4-L5", 2: "L4", 1: "L3-L4"}
    # a small last vertebra (an L5 cut by the field of view) is no anchor
    assert names_up_from_sacrum(kinds, [10, 100, 10, 100, 12, 30]) is None
    # a scan ending in a disc shows no sacrum
    assert names_up_from_sacrum(kinds[:-1], [10, 100, 10, 100, 12]) is None


def test_sacral_segments_below_s1_are_set_aside() -> None:
    """Hand-made sequence of a real-scan split: S2 separated from S1 at a tiny remnant disc
    must not be taken for S1 (which would shift every level by one)."""
    kinds = ["vertebra", "disc"] * 4 + ["vertebra", "disc", "vertebra"]
    counts = [100, 10, 100, 10, 100, 12, 100, 8, 160, 1, 90]
    assert sacral_tail(kinds, counts) == 2
    names = names_up_from_sacrum(kinds, counts)
    assert names is not None and names[9] == "S1" and names[7] == "L5" and 11 not in names
    # a lumbosacral disc of ordinary size is not a remnant: nothing is set aside
    assert sacral_tail(kinds, [*counts[:-2], 6, 90]) == 0
    assert sacral_tail(["disc", "vertebra"], [1, 100]) == 0
    # a small last disc under an ordinary-sized vertebra is an under-segmented L5-S1
    assert sacral_tail(kinds, [*counts[:8], 110, 1, 90]) == 0


def test_one_sacrum_rule_two_thresholds() -> None:
    """The same rule decides for count labeling (1.25) and small-FOV naming (0.8): an S1
    cut by the field of view (as large as L5) passes only the small-FOV threshold."""
    kinds = ["vertebra", "disc", "vertebra", "disc", "vertebra", "disc", "vertebra"]
    cut = [100, 10, 100, 10, 100, 10, 100]
    assert not last_is_sacrum(kinds, cut)
    assert last_is_sacrum(kinds, cut, SMALL_FOV_SACRUM_MIN_RATIO)
    assert last_is_sacrum(kinds, [100, 10, 100, 10, 100, 10, 126])
    assert not last_is_sacrum(["vertebra"], [500])


def test_vote_log_probs_majority_and_smoothing() -> None:
    """Hand-made maps: the majority vote wins, unvoted names stay possible, empty = uniform."""
    n_cols = len(labels.all_names())
    col = {n: j + 1 for j, n in enumerate(labels.all_names())}
    inst = np.array([[1, 1, 1, 2, 2, 0, 3]])
    votes = np.array([[col["L4"], col["L4"], col["L3"], col["L4-L5"], 0, col["S1"], 0]])
    lp = vote_log_probs(inst, votes)
    assert lp.shape == (3, n_cols)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0)
    assert int(np.argmax(lp[0])) == col["L4"] - 1
    assert lp[0, col["L4"] - 1] > lp[0, col["L3"] - 1] > lp[0, col["C2"] - 1] > -np.inf
    assert int(np.argmax(lp[1])) == col["L4-L5"] - 1
    np.testing.assert_allclose(lp[2], -np.log(n_cols))  # background votes do not count
    with pytest.raises(ValueError, match="differ in size"):
        vote_log_probs(inst, votes[:, :3])


def test_missed_disc_withholds_the_status_under_the_model_too() -> None:
    """Synthetic: a merged vertebra (one disc erased) keeps the status undetermined even when
    a perfect model names the sequence; the count's flag is carried into the result."""
    from spinecensus import synthetic

    subj = synthetic.generate_subject(3, "normal", synthetic.SyntheticConfig.tiny())
    name_to_id = {v: k for k, v in subj.id_to_name.items()}
    sem = subj.semantic.copy()
    sem[subj.instances == name_to_id["T6-T7"]] = 1
    merged = split_instances(sem, subj.spacing_mm)
    count = count_labels(merged)
    # a model that votes the ground-truth name of the largest overlap per instance
    union = {n: j + 1 for j, n in enumerate(labels.all_names())}
    truth = np.zeros(subj.instances.shape, dtype=np.uint8)
    for iid, nm in subj.id_to_name.items():
        truth[subj.instances == iid] = union.get(nm, union["L6-S1"])
    lab = label_with_model(merged, vote_log_probs(merged.instances, truth), count)
    assert lab.transitional_status == "undetermined"
    assert any(f.startswith("missed_disc_suspected") for f in lab.qc_flags)


@pytest.mark.parametrize("variant", ["sacralization", "normal"])
def test_thesis_labeler_columns_map_onto_the_union(variant):
    """Synthetic log-probs of a thesis 45/47-class labeler (its own column order, no L6):
    mapped to the union's 49 columns, the sequence search names a T11..S1 window right."""
    own = list(labels.structures(variant))
    names = own[own.index("T11") :]
    rng = np.random.default_rng(1)
    probs = rng.random((len(names), len(own))) * 0.02 + 0.001
    for i, nm in enumerate(names):
        probs[i, own.index(nm)] = 0.6
    probs /= probs.sum(1, keepdims=True)
    mapped = to_union_columns(np.log(probs), own)
    assert mapped.shape == (len(names), len(NAMES)) and np.isfinite(mapped).all()
    assert (mapped[:, NAMES.index("L6")] < -1000).all()  # no channel: (almost) impossible
    lumbosacral = names.index("L5-S1" if variant == "normal" else "L4-S1")
    assert mapped[lumbosacral, NAMES.index("L6-S1")] == pytest.approx(
        np.log(probs[lumbosacral, -2])
    )
    got, _ = consistent_sequence(mapped, [labels.kind(n) for n in names])
    assert got == names
    union_lp = truth_log_probs(["L4", "L4-L5"])
    np.testing.assert_array_equal(to_union_columns(union_lp, NAMES), union_lp)
    with pytest.raises(ValueError, match="do not match"):
        to_union_columns(np.log(probs), own[:-1])
    with pytest.raises(ValueError, match="no labeler class"):
        to_union_columns(np.zeros((1, 2)), ["class1", "class2"])


def _lumbar_window(variant: str, first: str, sacrum_voxels: int = 1000):
    """Synthetic split of a lumbar field of view: ``first`` .. S1 of ``variant``."""
    full = labels.structures(variant)
    names = list(full[full.index(first) :])
    counts = [500] * len(names)
    counts[-1] = sacrum_voxels
    return fake_split([labels.kind(n) for n in names], counts), names


def test_lumbar_fov_model_names_stand_when_its_s1_is_the_sacrum():
    """Synthetic T12..S1 window of a normal spine: the count recognises the sacrum and the
    model's S1 is the same instance, so the model's names stand (both agree)."""
    split, names = _lumbar_window("normal", "T12")
    count = count_labels(split, field_of_view="lumbar")
    assert count.sacrum_id == len(names)
    lab = label_with_model(split, truth_log_probs(names), count, "lumbar")
    assert lab.decided_by == "count+model"
    assert lab.id_to_name == {i + 1: n for i, n in enumerate(names)}
    assert lab.sacrum_id == len(names)
    assert lab.transitional_status == "undetermined" and lab.lumbar_count is None
    assert not any(f.startswith("count_model_disagree") for f in lab.qc_flags)


def test_lumbar_fov_a_read_l6_stays_a_name_not_a_status():
    """Synthetic T12..S1 window of a lumbarization, the model seeing L6: its S1 is the
    recognised sacrum, so its names stand (L6 included), but the status stays withheld;
    on a whole-spine field of view the same reading gives the status."""
    split, names = _lumbar_window("lumbarization", "T12")
    count = count_labels(split, field_of_view="lumbar")
    lab = label_with_model(split, truth_log_probs(names), count, "lumbar")
    assert lab.id_to_name == {i + 1: n for i, n in enumerate(names)}
    assert "L6" in lab.id_to_name.values() and lab.decided_by == "count+model"
    assert lab.transitional_status == "undetermined" and lab.lumbar_count is None
    whole = label_with_model(split, truth_log_probs(names), count_labels(split))
    assert whole.transitional_status == "lumbarization"


def test_lumbar_fov_sacrum_decides_when_the_model_puts_s1_elsewhere():
    """Synthetic T12..S1 normal window, the model's names shifted by one level (its S1 is
    not the recognised sacrum): named upward from the sacrum, flagged, status withheld."""
    split, names = _lumbar_window("normal", "T12")
    count = count_labels(split, field_of_view="lumbar")
    full = labels.structures("normal")
    shifted = list(full[full.index("T11") : full.index("T11") + len(names)])
    lab = label_with_model(split, truth_log_probs(shifted), count, "lumbar")
    assert lab.decided_by == "count"
    assert lab.id_to_name == count.id_to_name == {i + 1: n for i, n in enumerate(names)}
    assert lab.transitional_status == "undetermined"
    assert any(f.startswith("count_model_disagree: the sacrum is instance") for f in lab.qc_flags)


def test_lumbar_fov_without_a_recognised_sacrum_the_model_names():
    """Synthetic T12..S1 window whose sacrum is a small fragment (the count finds none):
    the model names every level."""
    split, names = _lumbar_window("normal", "T12", sacrum_voxels=100)
    count = count_labels(split, field_of_view="lumbar")
    assert count.sacrum_id is None and count.id_to_name == {}
    lab = label_with_model(split, truth_log_probs(names), count, "lumbar")
    assert lab.decided_by == "model"
    assert lab.id_to_name == {i + 1: n for i, n in enumerate(names)}
    with pytest.raises(ValueError, match="field_of_view"):
        label_with_model(split, truth_log_probs(names), count, "thoracic")


def test_label_split_is_the_count_then_the_model_checked_against_it():
    """Synthetic lumbar window, the model shifted by one level: without log-probabilities
    the count names; with them, label_with_model against that count (the sacrum decides)."""
    split, names = _lumbar_window("normal", "T12")
    count = count_labels(split, field_of_view="lumbar")
    assert label_split(split, None, "lumbar") == count
    full = labels.structures("normal")
    shifted = list(full[full.index("T11") : full.index("T11") + len(names)])
    lab = label_split(split, truth_log_probs(shifted), "lumbar")
    assert lab == label_with_model(split, truth_log_probs(shifted), count, "lumbar")
    assert lab.decided_by == "count"
