"""Anatomical names for split instances: counting from C2, or a model + consistent sequence.

Whole-spine scans (:func:`count_labels`): the topmost vertebral body is C2 (C1 has no
body, so the vertebra class starts at C2 in real and synthetic masks), structures are
named downward along the split's cranio-caudal order, and the sacrum is recognised as the
last vertebra instance, below the last disc and clearly larger than the bodies above it
(:func:`last_is_sacrum`, the one sacrum rule, also used upward on small-FOV scans; S1 plus
the fused segments, and a fused L5 in sacralization, form one instance).  The thoracic
count is fixed at 12 and the cervical at 6 bodies (C2-C7), as in the thesis, so the
number of free lumbar vertebrae is ``n_vertebrae - 18 - 1`` and gives the transitional
status (4 sacralization, 5 normal, 6 lumbarization).  Thoracic-count variants are not
modelled (see ``spinecensus.anatomy.labels``).  Scans declared ``field_of_view="lumbar"`` (C2 not in
view) are named upward from the sacrum where one is in view (:func:`names_up_from_sacrum`,
five lumbar vertebrae assumed) and their status is withheld.

Small-FOV scans with a labeler (:func:`label_with_model`): per-instance log-probabilities
over the 49 union names from the multiclass model, then :func:`consistent_sequence` picks the most
likely name sequence that follows one schema variant with vertebra/disc alternating and
no gaps.  The per-instance log-probabilities come from the labeler's mean log-softmax
(``SegmentationModel.instance_log_probs``) or from its per-voxel majority vote
(:func:`vote_log_probs`, what the cohort workflow stores).  When the model sees both C2
and the sacrum, the count must agree; a disagreement is a QC flag and ``decided_by``
records who decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.split.instances import SplitResult

#: number of vertebral bodies above the lumbar spine: C2..C7 (6) + T1..T12 (12)
N_ABOVE_LUMBAR = len(labels.CERVICAL) + len(labels.THORACIC)
TOP = labels.CERVICAL[0]  # "C2", the count origin

#: schema names that are no column of the 49-name union (``labels.all_names()``): the
#: lumbosacral disc of the normal / sacralization variants.  The labeler is trained with
#: every lumbosacral disc in the union's ``L6-S1`` column ("the disc above the sacrum",
#: ``union_column``), so that column scores them; with several columns listed the
#: score would be their log-sum-exp (probabilities add).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "L5-S1": ("L6-S1",),
    "L4-S1": ("L6-S1",),
}


def union_column(name: str) -> str:
    """The union column (``labels.all_names()``) a schema name is learned and voted as:
    the name itself, or for the lumbosacral discs absent from the union its
    :data:`COLUMN_ALIASES` column (``"L6-S1"``, "the disc above the sacrum")."""
    return COLUMN_ALIASES.get(name, (name,))[0]


@dataclass
class Labeling:
    """Names for the instances of one :class:`~spinecensus.split.instances.SplitResult`.

    Attributes:
        id_to_name: instance id -> structure name (ids that could not be named are absent).
        transitional_status: ``labels.transitional_status`` of the names.
        lumbar_count: free lumbar vertebrae when determinable, else None.
        decided_by: ``"count"``, ``"model"`` or ``"count+model"`` (both agreed).
        qc_flags: human-readable flags, ``"<code>: <detail>"``.
        confidence: instance id -> probability of its name under the model (model only).
        sacrum_id: instance id recognised as the sacrum (count labeling), else None.
    """

    id_to_name: dict[int, str]
    transitional_status: str
    lumbar_count: int | None
    decided_by: str
    qc_flags: list[str] = field(default_factory=list)
    confidence: dict[int, float] = field(default_factory=dict)
    sacrum_id: int | None = None


#: the most caudal vertebra is the sacrum when it holds at least this multiple of the median
#: voxel count of the (up to) three vertebrae above it: S1 plus the fused segments (and a
#: fused L5 in sacralization) form one instance, clearly larger than a lumbar body, while a
#: spine cut off in the thoracic region ends in a body of ordinary size
SACRUM_MIN_RATIO = 1.25
#: the same rule on small-field-of-view scans: the field of view's lower edge often cuts
#: the sacrum after S1-S2, so it need not out-size L5; it must still not be a small
#: fragment (0.8 x the vertebrae above; the real lumbar scans of docs/real_mri.md)
SMALL_FOV_SACRUM_MIN_RATIO = 0.8


def last_is_sacrum(
    kinds: Sequence[str], voxel_counts: Sequence[float], min_ratio: float = SACRUM_MIN_RATIO
) -> bool:
    """The one sacrum rule: is the most caudal instance the sacrum?

    It must be a vertebra lying below at least one disc, with a voxel count of at least
    ``min_ratio`` x the median of the (up to) three vertebrae above it (instances ordered
    cranio-caudally; counts in voxels of one grid, so the ratio is a volume ratio).
    """
    n = len(kinds)
    if n < 2 or kinds[-1] != "vertebra" or "disc" not in kinds[:-1]:
        return False
    counts = np.asarray(voxel_counts, dtype=float)
    above = [counts[i] for i in range(n - 1) if kinds[i] == "vertebra"][-3:]
    if not above:
        return False
    return bool(counts[n - 1] >= min_ratio * float(np.median(above)))


#: a disc with under this fraction of the median voxel count of the scan's discs, followed
#: only by vertebra pieces, may be a sacral remnant: the rudimentary S1-S2 disc that T2 MRI
#: often shows (or a stray fragment among the sacral segments).  A degenerated L5-S1 disc
#: loses height but keeps its width, so it usually stays above half of its neighbours.
SACRAL_REMNANT_DISC_RATIO = 0.5


def sacral_tail(
    kinds: Sequence[str],
    voxel_counts: Sequence[float],
    ratio: float = SACRAL_REMNANT_DISC_RATIO,
) -> int:
    """How many trailing instances are sacral segments split off below S1 (0 when none).

    A segmentation of a real scan often separates S2 (and lower segments) from S1 at the
    remnant S1-S2 disc; naming up from the last instance would then call S2 "S1" and shift
    every level by one.  The tail is a run of ``(small disc, vertebra)`` pairs at the
    caudal end, each disc under ``ratio`` x the median count of all the scan's discs, and
    it is set aside only when the vertebra above it is clearly sacrum-sized
    (:func:`last_is_sacrum` with the whole-spine ratio, ``SACRUM_MIN_RATIO``): an L5-S1
    disc that the model merely under-segmented is small too, but then the vertebra above
    it is L5, of ordinary size.
    """
    counts = np.asarray(voxel_counts, dtype=float)
    discs = [counts[i] for i, k in enumerate(kinds) if k == "disc"]
    if not discs:
        return 0
    small = ratio * float(np.median(discs))
    n = end = len(kinds)
    tail = 0
    while end >= 4 and kinds[end - 1] == "vertebra" and kinds[end - 2] == "disc":
        if counts[end - 2] >= small:
            break
        end -= 2
        if last_is_sacrum(kinds[:end], counts[:end], SACRUM_MIN_RATIO):
            tail = n - end
    return tail


def names_up_from_sacrum(
    kinds: Sequence[str],
    voxel_counts: Sequence[float],
    min_ratio: float = SMALL_FOV_SACRUM_MIN_RATIO,
) -> dict[int, str] | None:
    """Names for ordered instances (cranial first, ids ``1..N``), counted upward from S1.

    For small-field-of-view scans without C2: when :func:`last_is_sacrum` holds, naming runs
    upward through the normal schema (S1, L5-S1, L5, L4-L5, ...), i.e. it assumes five
    lumbar vertebrae - a transitional vertebra cannot be recognised from the sacrum alone
    (that needs the count origin, C2, or the learned labeler).  Sacral segments split off
    below S1 (:func:`sacral_tail`) are set aside first and stay unnamed.  Naming stops
    where vertebra/disc alternation breaks.  Returns None when no sacrum is found.
    """
    n = len(kinds) - sacral_tail(kinds, voxel_counts)
    kinds, voxel_counts = list(kinds)[:n], list(voxel_counts)[:n]
    if n < 3 or not last_is_sacrum(kinds, voxel_counts, min_ratio):
        return None
    schema = labels.structures("normal")[::-1]  # S1, L5-S1, L5, ...
    names: dict[int, str] = {}
    for pos, idx in enumerate(range(n - 1, -1, -1)):
        if pos >= len(schema) or labels.kind(schema[pos]) != kinds[idx]:
            break
        names[idx + 1] = schema[pos]
    return names


def vote_log_probs(
    instances: np.ndarray, class_map: np.ndarray, n_instances: int | None = None, alpha: float = 1.0
) -> np.ndarray:
    """Per-instance log-probabilities from a labeler's per-voxel vote (majority labeling).

    Args:
        instances: instance ids (0 = background), any shape.
        class_map: same shape; the labeler's per-voxel structure class, ``j + 1`` =
            ``labels.all_names()[j]`` (0 = no vote).
        n_instances: number of rows (default: the largest id).
        alpha: additive (Laplace) smoothing, so a name no voxel voted for is unlikely, not
            impossible, and the consistent-sequence DP can still choose it.

    Returns:
        ``(n_instances, 49)`` float64, row ``i`` = instance ``i + 1``: ``log((votes + alpha) /
        (total + 49 alpha))``; an instance without votes gets the uniform distribution.
        Vectorised with one ``bincount``.
    """
    inst = np.asarray(instances).ravel().astype(np.int64)
    cls = np.asarray(class_map).ravel().astype(np.int64)
    if inst.shape != cls.shape:
        raise ValueError(f"instances and class_map differ in size: {inst.size} vs {cls.size}")
    c = len(labels.all_names())
    n = int(inst.max(initial=0)) if n_instances is None else int(n_instances)
    keep = (inst > 0) & (inst <= n) & (cls > 0) & (cls <= c)
    votes = (
        np.bincount((inst[keep] - 1) * c + (cls[keep] - 1), minlength=n * c)
        .reshape(n, c)
        .astype(float)
    )
    return np.log((votes + alpha) / (votes.sum(axis=1, keepdims=True) + alpha * c))


#: log-probability of a union column the labeler has no channel for (a thesis 45- or
#: 47-class model has no L6, the 45-class one no L5 either): finite, so sums and ``exp`` in
#: the sequence search stay defined, and low enough that no sequence through it can win
ABSENT_COLUMN_LOG_PROB = -1.0e4


def union_indices(classes: Sequence[str]) -> np.ndarray:
    """Column of ``labels.all_names()`` that each structure class is learned and voted as
    (:func:`union_column`), -1 for a name outside the schema; int64, one per class."""
    column = {n: j for j, n in enumerate(labels.all_names())}
    return np.array([column.get(union_column(n), -1) for n in classes], dtype=np.int64)


def to_union_columns(log_probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Per-instance log-probabilities over a labeler's own structure classes, as the 49
    union columns :func:`consistent_sequence` reads.

    ``classes`` names the columns of ``log_probs`` (the model's classes without the
    background).  The union labeler passes through unchanged.  A thesis 45/47/49-class
    model's names map through :func:`union_column` (its ``L5-S1`` or ``L4-S1`` disc onto the
    union's ``L6-S1``, channels landing on one column add up), and columns it has no
    channel for get :data:`ABSENT_COLUMN_LOG_PROB`.

    Raises:
        ValueError: the widths differ, or no class is a structure of the schema (e.g. the
            ``class<k>`` placeholders of an ONNX file of unknown layout).
    """
    union = list(labels.all_names())
    lp = np.asarray(log_probs, dtype=float)
    names = list(classes)
    if lp.ndim != 2 or lp.shape[1] != len(names):
        raise ValueError(f"log_probs of shape {lp.shape} do not match {len(names)} classes")
    if names == union:
        return lp
    target = union_indices(names)
    if not (target >= 0).any():
        raise ValueError(f"no labeler class names a structure of the schema: {names[:3]}...")
    out = np.full((lp.shape[0], len(union)), ABSENT_COLUMN_LOG_PROB)
    for k in np.flatnonzero(target >= 0):  # over <= 49 classes, not voxels
        out[:, target[k]] = np.logaddexp(out[:, target[k]], lp[:, k])
    return out


def _name_from_top(kinds: Sequence[str], names: Sequence[str]) -> tuple[dict[int, str], list[str]]:
    """Walk instances (from the first vertebra) along ``names``; stop at a kind mismatch."""
    out: dict[int, str] = {}
    flags: list[str] = []
    first = next((i for i, k in enumerate(kinds) if k == "vertebra"), None)
    if first is None:
        return out, ["no_vertebrae: nothing to count from"]
    if first > 0:
        flags.append(f"top_not_vertebra: {first} disc(s) above the topmost vertebra left unnamed")
    pos = 0
    for i in range(first, len(kinds)):
        if pos >= len(names):
            flags.append(f"beyond_schema: instances {i + 1}..{len(kinds)} left unnamed")
            break
        if labels.kind(names[pos]) != kinds[i]:
            flags.append(
                f"sequence_break: instance {i + 1} is a {kinds[i]} where "
                f"{names[pos]} was expected; it and those below are unnamed"
            )
            break
        out[i + 1] = names[pos]
        pos += 1
    return out, flags


def _missed_disc_suspects(split: SplitResult, max_gap_ratio: float) -> list[tuple[int, int, float]]:
    """Consecutive disc pairs (ids) whose centroid distance is ``max_gap_ratio`` x the median
    of the neighbouring gaps (two on each side) or more, with that ratio.

    A disc the segmentation missed merges two vertebrae into one instance that is still one
    connected piece, so the split looks valid while every name below it shifts by one level
    (a normal spine then reads as sacralization).  Inter-disc distances change slowly along
    the spine (vertebral heights grow ~1 mm per level), so a gap of twice its neighbours
    gives the merge away: on synthetic ground truth the largest ratio seen was 1.18, on
    merged predictions 1.6-2.2.  (A merge of C2 with C3, above the first disc, is not seen.)
    """
    discs = split.ids_of("disc")
    if len(discs) < 3:
        return []
    cents = np.asarray(split.centroids_mm, dtype=float)
    if cents.ndim != 2 or len(cents) < max(discs):
        return []  # a split built without geometry (e.g. by hand): nothing to check
    c = cents[np.asarray(discs) - 1]
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    n = len(gaps)
    out = []
    for i in range(n):  # ~25 gaps, not voxels
        nb = np.concatenate([gaps[max(0, i - 2) : i], gaps[i + 1 : i + 3]])
        ratio = float(gaps[i] / max(np.median(nb), 1e-9))
        if ratio >= max_gap_ratio:
            out.append((discs[i], discs[i + 1], ratio))
    return out


#: what the scans show: "whole_spine" (C2 to the sacrum: count from C2) or "lumbar" (a
#: lumbar / thoraco-lumbar field of view without C2: name upward from the sacrum)
FIELDS_OF_VIEW = ("whole_spine", "lumbar")


def check_field_of_view(field_of_view: str) -> str:
    """``field_of_view`` itself, or ValueError when it is not one of :data:`FIELDS_OF_VIEW`."""
    if field_of_view not in FIELDS_OF_VIEW:
        raise ValueError(f"field_of_view must be one of {FIELDS_OF_VIEW}, got {field_of_view!r}")
    return field_of_view


def _small_fov_labels(split: SplitResult, flags: list[str]) -> Labeling:
    """Names for a small-field-of-view split: upward from the sacrum where it is in view
    (:func:`names_up_from_sacrum`), otherwise none.  The status stays "undetermined": a
    transitional vertebra is counted from C2 only (a labeler's reading of one stays
    unvalidated on real scans; :func:`label_with_model`)."""
    names = names_up_from_sacrum(split.kinds, split.voxel_counts) or {}
    n_verts = len(split.ids_of("vertebra"))
    how = (
        "named upward from the sacrum, five lumbar vertebrae assumed"
        if names
        else "no sacrum recognised, left unnamed"
    )
    flags.append(
        f"small_field_of_view: {n_verts} vertebrae, lumbar field of view; {how}; status "
        "undetermined (a transitional vertebra needs the count from C2)"
    )
    sacrum_id = next((i for i, n in names.items() if n == labels.SACRUM), None)
    return Labeling(names, "undetermined", None, "count", flags, sacrum_id=sacrum_id)


def count_labels(
    split: SplitResult,
    sacrum_ratio: float = SACRUM_MIN_RATIO,
    max_gap_ratio: float = 1.4,
    field_of_view: str = "whole_spine",
) -> Labeling:
    """Name a whole-spine split by counting from C2 (see the module docstring).

    Args:
        split: the split (cranio-caudal ids).
        sacrum_ratio: ``min_ratio`` of :func:`last_is_sacrum` (the last instance is the
            sacrum when it is a vertebra below a disc with at least this multiple of the
            median voxel count of the three vertebrae above it; so a spine cut off in the
            thoracic region, with equal-sized bodies, has no "sacrum").
        max_gap_ratio: two consecutive discs further apart than this multiple of their
            neighbours' spacing suggest a missed disc (see :func:`_missed_disc_suspects`);
            the names are kept but the status becomes ``"undetermined"`` with a QC flag.
        field_of_view: ``"lumbar"``: C2 is not in view, so the split is named upward from
            the sacrum instead (:func:`names_up_from_sacrum`) and its status is withheld.
            Counting from the top vertebra as C2 would call a lumbar scan's T11 "C2".

    Never raises; problems become ``qc_flags`` and an ``"undetermined"`` status.
    """
    check_field_of_view(field_of_view)
    kinds = split.kinds
    flags: list[str] = []
    if not split.valid:
        flags.append(f"split_invalid: {split.invalid_reason}")
    verts = split.ids_of("vertebra")
    if not verts:
        flags.append("no_vertebrae: nothing to count from")
        return Labeling({}, "undetermined", None, "count", flags)
    if field_of_view == "lumbar":
        return _small_fov_labels(split, flags)
    last = len(kinds)
    sacrum = last_is_sacrum(kinds, split.voxel_counts, sacrum_ratio)
    n_free = len(verts) - 1 if sacrum else len(verts)
    lumbar = n_free - N_ABOVE_LUMBAR
    if sacrum and lumbar in labels.VARIANT_BY_LUMBAR_COUNT:
        schema = labels.structures(labels.variant_for_lumbar_count(lumbar))
        id_to_name, f = _name_from_top(kinds, schema)
        flags += f
    elif sacrum:
        flags.append(
            f"lumbar_count_out_of_range: {lumbar} free lumbar vertebrae counted from C2 "
            f"(schema: 4-6); only C2 downward and the sacrum are named"
        )
        top_part = [n for n in labels.all_names() if "S1" not in n][: 2 * n_free - 1]
        id_to_name, f = _name_from_top(kinds[: last - 2], top_part)
        flags += f
        id_to_name[last] = labels.SACRUM
    else:
        flags.append("sacrum_not_recognised: last structure is not the largest vertebra")
        variant = "normal" if n_free <= N_ABOVE_LUMBAR + 5 else "lumbarization"
        schema = [n for n in labels.structures(variant) if n != labels.SACRUM]
        id_to_name, f = _name_from_top(kinds, schema)
        flags += f
    in_range = sacrum and lumbar in labels.VARIANT_BY_LUMBAR_COUNT
    merged = _missed_disc_suspects(split, max_gap_ratio)
    if merged:
        flags.append(
            "missed_disc_suspected: "
            + "; ".join(
                f"discs {a} and {b} are {r:.1f}x further apart than their neighbours"
                for a, b, r in merged
            )
            + " (two vertebrae counted as one shifts every name below; status withheld)"
        )
    trusted = in_range and not merged
    status = labels.transitional_status(id_to_name.values()) if trusted else "undetermined"
    lumbar_count = lumbar if sacrum and lumbar >= 0 else None
    return Labeling(
        id_to_name,
        status,
        lumbar_count,
        "count",
        flags,
        sacrum_id=last if sacrum else None,
    )


def _position_scores(log_probs: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(n_instances, len(names)) log-prob of each instance being each schema position."""
    col = {nm: j for j, nm in enumerate(labels.all_names())}
    out = np.empty((log_probs.shape[0], len(names)))
    for p, nm in enumerate(names):
        if nm in col:
            out[:, p] = log_probs[:, col[nm]]
        else:
            alias = [col[a] for a in COLUMN_ALIASES[nm]]
            out[:, p] = np.logaddexp.reduce(log_probs[:, alias], axis=1)
    return out


def consistent_sequence(
    log_probs: np.ndarray,
    kinds: Sequence[str],
    variants: Sequence[str] = ("sacralization", "normal", "lumbarization"),
) -> tuple[list[str], float]:
    """Most likely schema-consistent name sequence for ordered instances.

    Args:
        log_probs: ``(n_instances, 49)`` per-instance log-probabilities, cranial instance
            first, column ``j`` = ``labels.all_names()[j]``.  The lumbosacral discs absent
            from the union (``L5-S1``, ``L4-S1``) are scored through ``COLUMN_ALIASES``.
        kinds: ``"vertebra"`` / ``"disc"`` per instance (from the split).
        variants: schema variants to consider.

    Returns:
        ``(names, total_log_prob)``; ``([], 0.0)`` for no instances and ``([], -inf)``
        when no consistent sequence exists (kinds not alternating, or more instances than
        any schema holds).

    Method: a consistent sequence is a contiguous window of one variant's structure list
    (the schema already alternates vertebra/disc and has no gaps), so the search space is
    just (variant, start offset): at most 3 x 49 candidates.  The DP over ordered
    instances therefore collapses to a sum along a diagonal of the (instance x schema
    position) score matrix; all windows of a variant are scored at once with one fancy
    index, windows whose first position has the wrong kind are excluded, and the best
    (variant, offset) wins (first one on exact ties).  Exhaustive, hence exact.
    """
    lp = np.asarray(log_probs, dtype=float)
    n = len(kinds)
    if n == 0:
        return [], 0.0
    if lp.shape != (n, len(labels.all_names())):
        raise ValueError(
            f"log_probs must have shape ({n}, {len(labels.all_names())}), got {lp.shape}"
        )
    if any(a == b for a, b in zip(kinds[:-1], kinds[1:], strict=False)):
        return [], float("-inf")
    first_is_disc = kinds[0] == "disc"
    best: tuple[float, list[str]] = (float("-inf"), [])
    for variant in variants:
        names = labels.structures(variant)  # type: ignore[arg-type]
        n_off = len(names) - n + 1
        if n_off <= 0:
            continue
        scores = _position_scores(lp, names)
        offsets = np.arange(n_off)
        # schema position p is a disc iff p is odd (index 0 = C2, 1 = C2-C3, ...)
        ok = (offsets % 2 == 1) == first_is_disc
        pos = offsets[:, None] + np.arange(n)[None, :]
        total = scores[np.arange(n)[None, :], pos].sum(axis=1)
        total[~ok] = -np.inf
        o = int(np.argmax(total))
        if total[o] > best[0]:
            best = (float(total[o]), list(names[o : o + n]))
    return best[1], best[0]


def label_with_model(
    split: SplitResult,
    log_probs: np.ndarray,
    count: Labeling | None = None,
    field_of_view: str = "whole_spine",
) -> Labeling:
    """Name instances from the model's per-instance log-probabilities (small FOV).

    ``log_probs`` rows follow instance ids (row ``i`` = id ``i + 1``).  If the model's
    sequence shows both C2 and the sacrum, or the count found a sacrum with 4-6 free lumbar
    vertebrae below C2 (a self-consistent whole spine), both must name every instance the
    same: agreement -> ``decided_by="count+model"``; disagreement -> QC flag
    ``count_model_disagree``, and the count decides when it is self-consistent and the
    split valid (it depends on nothing learned; the thesis's labels came from counting),
    the model otherwise (e.g. the count's sacrum heuristic failed, or the model sees that
    the top is not C2).

    ``field_of_view="lumbar"`` (``count`` from :func:`count_labels` with the same field of
    view): where the count recognised the sacrum, that instance is S1.  The model's names
    stand when its S1 is the same instance (``"count+model"``); when the model puts S1
    elsewhere, the names counted up from the sacrum decide (``"count"``, five lumbar
    vertebrae assumed) and the disagreement is flagged.  Where no sacrum was recognised
    the model names alone.  The status of a lumbar scan is always "undetermined": a
    transitional vertebra is counted from C2, not read (the model may still name an L6,
    which then stays a name, not a status).  Why: on the real lumbar scans
    (docs/real_mri.md, seventh run) the sacrum rule never named a level wrongly where it
    fired, while a labeler fine-tuned on real scans named the scans whose sacrum the
    segmentation cut or split.
    """
    check_field_of_view(field_of_view)
    # every schema variant, on a lumbar field of view too: restricted to the normal one,
    # the sequence search could no longer absorb an extra or missing piece at the lower
    # end, and named three real scans one level off (docs/real_mri.md, seventh run)
    names, total = consistent_sequence(log_probs, split.kinds)
    # the count's own findings (missed disc, sacrum not recognised, ...) stay visible
    flags: list[str] = list(count.qc_flags) if count is not None else []
    if not split.valid and not any(f.startswith("split_invalid") for f in flags):
        flags.append(f"split_invalid: {split.invalid_reason}")
    if not names:
        flags.append("no_consistent_sequence: instances do not alternate vertebra/disc")
        model_map: dict[int, str] = {}
    else:
        model_map = {i + 1: nm for i, nm in enumerate(names)}
    conf: dict[int, float] = {}
    if model_map:
        sc = _position_scores(np.asarray(log_probs, dtype=float), list(model_map.values()))
        conf = {i: float(np.exp(sc[i - 1, i - 1])) for i in model_map}
    model_whole = TOP in model_map.values() and labels.SACRUM in model_map.values()
    # the count is trusted only when it produced a status itself (sacrum found, 4-6 free
    # lumbar vertebrae, no suspected missed disc)
    count_whole = (
        count is not None
        and count.sacrum_id is not None
        and count.lumbar_count in labels.VARIANT_BY_LUMBAR_COUNT
        and count.transitional_status != "undetermined"
    )
    decided = "model"
    chosen = model_map
    # lumbar field of view: the instance the count recognised as the sacrum, if any
    sacrum = count.sacrum_id if field_of_view == "lumbar" and count is not None else None
    if count is not None and sacrum is not None and not (model_whole or count_whole):
        if model_map.get(sacrum) == labels.SACRUM:
            decided = "count+model"
        else:
            model_s1 = next((i for i, nm in model_map.items() if nm == labels.SACRUM), None)
            flags.append(
                f"count_model_disagree: the sacrum is instance {sacrum}, the model's "
                f"S1 is {model_s1}; named upward from the sacrum"
            )
            decided, chosen = "count", count.id_to_name
    elif count is not None and (model_whole or count_whole):
        if count.id_to_name == model_map:
            decided = "count+model"
        else:
            diff = sorted(
                i
                for i in set(count.id_to_name) | set(model_map)
                if count.id_to_name.get(i) != model_map.get(i)
            )
            show = ", ".join(
                f"{i}: {count.id_to_name.get(i)} vs {model_map.get(i)}" for i in diff[:5]
            )
            flags.append(
                f"count_model_disagree: {len(diff)} instance(s) differ (count vs model) {show}"
            )
            if count_whole and split.valid:
                decided, chosen = "count", count.id_to_name
    status = labels.transitional_status(chosen.values())
    if field_of_view == "lumbar":
        # the variant is read from appearance, not counted from C2; no real transitional
        # spine with known levels validates that reading (docs/real_mri.md), so a lumbar
        # scan's status stays out of the prevalence
        status = "undetermined"
    if any(f.startswith("missed_disc_suspected") for f in flags):
        # a merged vertebra breaks any gap-free sequence, the model's included
        status = "undetermined"
    lumbar_count = labels.lumbar_count(chosen.values()) if status != "undetermined" else None
    return Labeling(
        dict(chosen),
        status,
        lumbar_count,
        decided,
        flags,
        confidence=conf,
        sacrum_id=next((i for i, nm in chosen.items() if nm == labels.SACRUM), None),
    )


def label_split(
    split: SplitResult, log_probs: np.ndarray | None = None, field_of_view: str = "whole_spine"
) -> Labeling:
    """Names for a split as the pipeline gives them: the count (:func:`count_labels`: from
    C2, or upward from the sacrum on a lumbar field of view), then, where the labeler's
    per-instance ``log_probs`` are given, :func:`label_with_model` checked against that
    count.  One place for the cohort workflow, the Python API and the real-MRI evaluation."""
    count = count_labels(split, field_of_view=field_of_view)
    if log_probs is None or not split.n_instances:
        return count
    return label_with_model(split, log_probs, count, field_of_view)
