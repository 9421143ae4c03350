"""Counting that survives real anatomy: sacral remnant discs, L6, L4-only, thoracic count
variants, a verified count origin (C2 with its dens), stray blobs, block vertebrae and
invalid splits (issue 19 item 2).

All on synthetic, hand-made straight columns: a semantic mask of elliptic cross-sections
whose sizes (mm) are given per segment, on a grid of known, anisotropic spacing, split by
``split_instances`` and named by ``count_labels`` as the pipeline does.  Sizes are adult
approximations (``spinecensus.synthetic.morphometry``): C3 13 mm, lumbar bodies 26 mm,
lumbar discs 10 mm, S2-S5 66 mm tapering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from spinecensus.anatomy import labels
from spinecensus.naming.counting import count_labels
from spinecensus.naming.labeler import label_with_model
from spinecensus.naming.labeling import withholds
from spinecensus.naming.shape import ShapeReader
from spinecensus.naming.vote import COLUMN_ALIASES
from spinecensus.split.instances import split_instances

#: sagittal slices 4 mm, in-plane 2 mm (canonical order: lateral, S->I, A->P)
SPACING = (4.0, 2.0, 2.0)


@dataclass(frozen=True)
class Seg:
    """One segment of the column, top to bottom: a body or a disc, height and radii (mm);
    radii ``rx1``/``rz1`` at its lower end make it taper."""

    kind: str
    h: float
    rx: float
    rz: float
    rx1: float | None = None
    rz1: float | None = None


def body(h: float, rx: float, rz: float, **kw: float) -> Seg:
    return Seg("vertebra", h, rx, rz, **kw)  # type: ignore[arg-type]


def disc(h: float, rx: float, rz: float) -> Seg:
    return Seg("disc", h, rx, rz)


def column(segs: list[Seg], spacing=SPACING, margin: float = 12.0) -> np.ndarray:
    """Semantic mask (0 / 1 vertebra / 2 disc) of a straight column along axis 1."""
    sp = np.asarray(spacing, dtype=float)
    h = np.array([s.h for s in segs])
    top = np.concatenate([[0.0], np.cumsum(h)])
    ny = int(np.ceil((top[-1] + 2 * margin) / sp[1]))
    y = (np.arange(ny) + 0.5) * sp[1] - margin
    k = np.clip(np.searchsorted(top, y, side="right") - 1, 0, len(segs) - 1)
    inside = (y >= 0) & (y < top[-1])
    f = np.clip((y - top[k]) / h[k], 0.0, 1.0)
    rx0, rz0 = np.array([s.rx for s in segs]), np.array([s.rz for s in segs])
    rx1 = np.array([s.rx if s.rx1 is None else s.rx1 for s in segs])
    rz1 = np.array([s.rz if s.rz1 is None else s.rz1 for s in segs])
    rx = np.where(inside, rx0[k] + (rx1[k] - rx0[k]) * f, 1e-9)
    rz = np.where(inside, rz0[k] + (rz1[k] - rz0[k]) * f, 1e-9)
    code = np.where(inside, np.array([1 if s.kind == "vertebra" else 2 for s in segs])[k], 0)
    nx = int(np.ceil(2 * (rx0.max() + 4) / sp[0]))
    nz = int(np.ceil(2 * (rz0.max() + 4) / sp[2]))
    x = (np.arange(nx) - (nx - 1) / 2) * sp[0]
    z = (np.arange(nz) - (nz - 1) / 2) * sp[2]
    ell = (x[:, None, None] / rx[None, :, None]) ** 2 + (z[None, None, :] / rz[None, :, None]) ** 2
    return np.where(ell <= 1.0, code[None, :, None], 0).astype(np.uint8)


def spine(
    thoracic: int = 12,
    lumbar: int = 5,
    start: str = "C2",
    dens: bool = True,
    c2_bodies: int = 1,
    sacral_disc: Seg | None = None,
    lumbosacral: Seg | None = None,
    sacralized: bool = False,
    stray: bool = False,
) -> list[Seg]:
    """Segments of a whole spine, top to bottom (see the module docstring for the sizes).

    ``start="C3"``: the scan starts below C2.  ``c2_bodies``: C2 fused with the next
    ``c2_bodies - 1`` bodies (a congenital block: thin bony rudiments, no discs).
    ``sacral_disc``: a disc between S1 and S2-S5 (else they are fused).  ``lumbosacral``:
    the disc above the sacrum (default a full 10 mm disc).  ``sacralized``: the last lumbar
    body fused to S1 (no disc).  ``stray``: a small blob and a disc-labelled blob above C2.
    """
    segs: list[Seg] = []
    if stray:
        segs += [body(5.0, 4.0, 4.0), disc(2.0, 8.0, 7.0)]
    if start == "C2":
        if dens:
            segs.append(body(14.0, 4.0, 4.0))
        segs.append(body(14.0, 9.0, 8.0))
        for _ in range(c2_bodies - 1):
            segs += [body(1.5, 9.0, 6.5), body(13.0, 9.0, 8.0)]
        segs.append(disc(5.0, 9.0, 8.0))
    cervical = 6 - c2_bodies if start == "C2" else 5
    for _ in range(cervical):
        segs += [body(13.0, 10.0, 8.0), disc(5.0, 10.0, 8.0)]
    for i in range(thoracic):
        segs += [body(18.0 + 4.0 * i / 11, 14.0, 12.0), disc(5.0, 14.0, 12.0)]
    for i in range(lumbar):
        last = i == lumbar - 1
        segs.append(body(26.0, 20.0, 15.0))
        if last and sacralized:
            segs.append(body(4.0, 20.0, 15.0))  # the fused L5: a bony rudiment, no disc
        elif last:
            segs.append(lumbosacral or disc(10.0, 20.0, 15.0))
        else:
            segs.append(disc(10.0, 20.0, 15.0))
    segs.append(body(28.0, 24.0, 16.0))  # S1
    segs.append(sacral_disc or body(2.5, 22.0, 14.0))  # a fused rudiment unless a disc
    segs.append(body(66.0, 21.0, 14.0, rx1=8.0, rz1=5.0))  # S2-S5, tapering
    return segs


def count(segs: list[Seg], spacing=SPACING):
    split = split_instances(column(segs, spacing), spacing)
    return split, count_labels(split)


def codes(lab) -> set[str]:
    return {f.split(":", 1)[0] for f in lab.qc_flags}


REMNANT = disc(3.0, 21.0, 14.0)


# --- the sacrum: remnant discs, L6, L4-only ------------------------------------------


def test_whole_spine_with_a_remnant_s1_s2_disc_is_normal():
    """A normal spine whose sacrum is split at a remnant S1-S2 disc into an S1 and an S2-S5
    piece: normal (not lumbarization), flagged; S1 is the piece above the disc and the
    pieces below stay unnamed."""
    split, lab = count(spine(sacral_disc=REMNANT))
    assert split.valid
    assert lab.transitional_status == "normal" and lab.lumbar_count == 5
    assert codes(lab) == {"sacral_remnant_disc"}
    n = split.n_instances
    assert lab.sacrum_id == n - 2 and lab.id_to_name[n - 2] == "S1"
    assert n - 1 not in lab.id_to_name and n not in lab.id_to_name
    assert lab.id_to_name[n - 3] == "L5-S1" and lab.id_to_name[1] == "C2"
    assert not withholds(lab.qc_flags)


def test_without_the_remnant_rule_the_same_spine_would_read_as_lumbarization():
    """The failure the rule fixes: counting the S2-S5 piece as the sacrum gives 6 lumbar."""
    split, lab = count(spine(sacral_disc=REMNANT))
    assert split.n_vertebrae == 25  # C2..C7, T1..T12, L1..L5, S1, S2-S5
    naive_lumbar = split.n_vertebrae - 1 - 18  # all but the last piece, less C2..T12
    assert naive_lumbar == 6 and lab.lumbar_count == 5


@pytest.mark.parametrize("remnant", [False, True])
def test_real_l6_with_a_full_size_disc_stays_lumbarization(remnant):
    """An L6 on a full-size (10 mm) L6-S1 disc is lumbarization, with or without a remnant
    S1-S2 disc further down."""
    split, lab = count(spine(lumbar=6, sacral_disc=REMNANT if remnant else None))
    assert lab.transitional_status == "lumbarization" and lab.lumbar_count == 6
    assert lab.id_to_name[lab.sacrum_id] == "S1"
    assert lab.id_to_name[lab.sacrum_id - 1] == "L6-S1"
    assert ("sacral_remnant_disc" in codes(lab)) == remnant


def test_a_full_size_disc_above_s2_s5_is_lumbarization_the_hard_boundary():
    """A lumbarised S1 (a free S1 on a full-size disc above the S2-S5 piece) is an L6 by
    count: the disc's size alone keeps it lumbar, whatever the piece below looks like."""
    split, lab = count(spine(sacral_disc=disc(10.0, 21.0, 14.0)))
    assert lab.transitional_status == "lumbarization"
    assert "sacral_remnant_disc" not in codes(lab)


@pytest.mark.parametrize("remnant", [False, True])
def test_l4_only_is_sacralization(remnant):
    """L5 fused into the sacrum (four free lumbar vertebrae): sacralization, also when a
    remnant disc splits the sacrum below the fused L5 and S1."""
    split, lab = count(spine(lumbar=5, sacralized=True, sacral_disc=REMNANT if remnant else None))
    assert lab.transitional_status == "sacralization" and lab.lumbar_count == 4
    assert lab.id_to_name[lab.sacrum_id - 1] == "L4-S1"


def test_a_thin_lumbosacral_disc_above_a_whole_sacrum_is_still_counted():
    """A degenerated (half-height) L5-S1 disc above a whole sacrum is no remnant: normal."""
    split, lab = count(spine(lumbosacral=disc(5.0, 20.0, 15.0)))
    assert lab.transitional_status == "normal"
    assert not codes(lab)


@pytest.mark.parametrize(
    "segs",
    [
        # a disc of full height but half the volume above the S2-S5 piece
        spine(sacral_disc=disc(10.0, 14.0, 10.0)),
        # a rudimentary disc above a whole sacrum: a sacralised L5 or a collapsed disc
        spine(lumbosacral=disc(3.0, 12.0, 8.0)),
    ],
    ids=["mid_size_disc_above_s2_s5", "rudiment_above_whole_sacrum"],
)
def test_an_ambiguous_sacral_junction_withholds_the_status(segs):
    split, lab = count(segs)
    assert lab.transitional_status == "undetermined" and lab.lumbar_count is None
    assert "sacral_junction_ambiguous" in codes(lab) and withholds(lab.qc_flags)
    assert lab.id_to_name[1] == "C2"  # the names stay


@pytest.mark.parametrize("spacing", [(4.0, 2.0, 2.0), (3.0, 1.0, 1.5), (5.0, 1.5, 3.0)])
def test_verdicts_do_not_depend_on_the_voxel_spacing(spacing):
    """The same anatomy (mm) on three anisotropic grids: the same verdicts."""
    assert count(spine(sacral_disc=REMNANT), spacing)[1].transitional_status == "normal"
    assert count(spine(lumbar=6), spacing)[1].transitional_status == "lumbarization"
    lab = count(spine(start="C3"), spacing)[1]
    assert "count_origin_unverified" in codes(lab)


# --- thoracic count variants: the status is by presacral count ---------------------------


@pytest.mark.parametrize(("thoracic", "status"), [(11, "sacralization"), (13, "lumbarization")])
def test_thoracic_count_variants_follow_the_presacral_count(thoracic, status):
    """11 thoracic + 5 lumbar is 23 presacral vertebrae (sacralization), 13 + 5 is 25
    (lumbarization): the status definition, not a mistake.  Levels are named by their
    position below C2: with 11 thoracic vertebrae the body named T12 is the first lumbar
    one, and every level below it (and its volume) carries the name of that position."""
    split, lab = count(spine(thoracic=thoracic))
    assert lab.transitional_status == status and not codes(lab)
    verts = split.ids_of("vertebra")
    assert lab.id_to_name[verts[17]] == "T12"  # the 18th body below C1, whatever it is
    lumbar = [n for n in lab.id_to_name.values() if labels.is_vertebra(n) and n[0] == "L"]
    assert len(lumbar) == labels.LUMBAR_COUNT[status]


# --- the count origin -----------------------------------------------------------------------


def test_a_scan_starting_at_c3_withholds_the_status():
    """The top instance is C3 (no dens): counting from it as C2 would shift every name and
    read a normal spine as sacralization; the status is withheld and flagged."""
    split, lab = count(spine(start="C3"))
    assert lab.transitional_status == "undetermined" and lab.lumbar_count is None
    assert "count_origin_unverified" in codes(lab)
    # names stay (from the top as C2), so the QC picture shows what was counted
    assert lab.id_to_name[1] == "C2"


def test_c2_without_its_dens_is_not_verified():
    split, lab = count(spine(dens=False))
    assert "count_origin_unverified" in codes(lab)
    assert lab.transitional_status == "undetermined"


def test_a_stray_blob_above_c2_is_dropped_as_noise():
    """A small blob (250 mm3) and a thin disc-labelled blob above C2 form two instances of their
    own; the blob is dropped by volume, the count starts at C2 and the status stands."""
    split, lab = count(spine(stray=True))
    assert split.kinds[:3] == ["vertebra", "disc", "vertebra"]
    assert lab.transitional_status == "normal"
    assert "stray_top_dropped" in codes(lab) and not withholds(lab.qc_flags)
    assert 1 not in lab.id_to_name and 2 not in lab.id_to_name
    assert lab.id_to_name[3] == "C2" and lab.id_to_name[4] == "C2-C3"


def test_a_c2_c3_block_is_counted_as_two_vertebrae():
    """A congenital C2-C3 block (one instance, no C2-C3 disc, a dens on top): its body
    is two bodies long, so it is counted as C2 and C3 and the status stands."""
    split, lab = count(spine(c2_bodies=2))
    assert lab.transitional_status == "normal" and lab.lumbar_count == 5
    assert "block_vertebra_counted" in codes(lab)
    assert lab.id_to_name[1] == "C2" and lab.id_to_name[2] == "C3-C4"
    assert "C3" not in lab.id_to_name.values()


def test_a_longer_block_at_the_top_withholds_the_status():
    """C2 fused down to C5 (four bodies): neither C2 nor a C2-C3 block; withheld."""
    split, lab = count(spine(c2_bodies=4))
    assert lab.transitional_status == "undetermined"
    assert "block_vertebra_suspected" in codes(lab)


# --- invalid splits -------------------------------------------------------------------------


def _perfect_log_probs(names: list[str]) -> np.ndarray:
    """Per-instance log-probabilities with 0.9 on each instance's own union column."""
    union = labels.all_names()
    probs = np.full((len(names), len(union)), 0.1 / (len(union) - 1))
    for i, nm in enumerate(names):
        probs[i, union.index(COLUMN_ALIASES.get(nm, (nm,))[0])] = 0.9
    return np.log(probs)


def test_an_invalid_split_never_yields_a_definite_status():
    """A thoracic body cut in two by a gap (a vertebra in two pieces): the split is invalid,
    so neither the count nor a perfect labeler gives a status; the flag is recorded."""
    segs = spine()
    sem = column(segs)
    valid = split_instances(sem, SPACING)
    names = count_labels(valid).id_to_name
    t6 = next(i for i, n in names.items() if n == "T6")
    rows = np.flatnonzero(np.any(valid.instances == t6, axis=(0, 2)))
    sem[:, rows[len(rows) // 2] - 1 : rows[len(rows) // 2] + 1, :] = 0  # a 4 mm gap
    split = split_instances(sem, SPACING)
    assert not split.valid and "pieces" in str(split.invalid_reason)
    lab = count_labels(split)
    assert lab.transitional_status == "undetermined"
    assert "split_invalid" in codes(lab) and withholds(lab.qc_flags)
    assert lab.id_to_name == names  # the names are kept
    model = label_with_model(split, _perfect_log_probs([names[i] for i in sorted(names)]), lab)
    assert model.transitional_status == "undetermined"
    assert any(f.startswith("split_invalid") for f in model.qc_flags)


# --- the measures ---------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", [(4.0, 2.0, 2.0), (2.5, 1.0, 3.0)])
def test_shape_heights_are_in_mm(spacing):
    """A 26 mm body, a 10 mm disc and C2 (14 mm dens on a 14 mm body) measured on two
    grids: heights within one voxel of the truth, the dens excluded from the body."""
    split = split_instances(column(spine(), spacing), spacing)
    shapes = ShapeReader(split)
    assert shapes.available
    c2, l5, l5_s1 = 1, split.n_instances - 4, split.n_instances - 3
    step = spacing[1]
    assert shapes.of(c2).height_mm == pytest.approx(28.0, abs=step)
    assert shapes.of(c2).body_height_mm == pytest.approx(14.0, abs=1.5 * step)
    assert shapes.of(l5).height_mm == pytest.approx(26.0, abs=step)
    assert shapes.of(l5_s1).height_mm == pytest.approx(10.0, abs=step)
    assert shapes.of(l5).taper == pytest.approx(1.0, abs=0.1)
    assert shapes.of(split.n_instances).taper < 0.5  # the sacrum tapers
    assert not shapes.of(c2).cut_cranially and not shapes.of(l5).cut_caudally


def test_a_sliver_does_not_make_a_split_invalid_but_a_second_body_does():
    """Hand-made instance map V D V D V: a 4-voxel sliver of vertebra 3 off its body (a disc
    plane shaving a neighbour's corner, under 5 % of the body) keeps the split valid; a
    second piece a third of the body's size does not."""
    from spinecensus.split.validity import check_validity

    inst = np.zeros((4, 30, 12), dtype=np.uint16)
    inst[:, 0:6, :8] = 1
    inst[:, 6:8, :8] = 2
    inst[:, 8:18, :8] = 3
    inst[:, 18:20, :8] = 4
    inst[:, 20:26, :8] = 5
    kinds = ["vertebra", "disc", "vertebra", "disc", "vertebra"]
    sliver = inst.copy()
    sliver[0, 10:12, 10:12] = 3  # 4 voxels, apart from the 320-voxel body
    assert check_validity(sliver, kinds, fragment_voxels=1, min_contact_faces=1) == []
    second = inst.copy()
    second[:, 10:18, 10:12] = 3  # 64 voxels: a second piece
    reasons = check_validity(second, kinds, fragment_voxels=1, min_contact_faces=1)
    assert reasons == ["vertebra instance 3 is in 2 pieces"]


def test_withholding_flags_withhold_under_the_labeler_too():
    """A scan starting at C3: a labeler naming it perfectly (as the count did) still gets no
    status, because the count origin is not verified."""
    split, lab = count(spine(start="C3"))
    names = [lab.id_to_name[i] for i in sorted(lab.id_to_name)]
    assert len(names) == split.n_instances
    model = label_with_model(split, _perfect_log_probs(names), lab)
    assert model.transitional_status == "undetermined"
    assert any(f.startswith("count_origin_unverified") for f in model.qc_flags)
    assert withholds(["split_invalid: x"]) and not withholds(["sacral_remnant_disc: y"])
