"""Naming with the labeler (small-FOV scans): its most likely consistent name sequence,
checked against the count; and :func:`label_split`, the count then the labeler, as the
pipeline names a split.

Per-instance log-probabilities over the 49 union names come from the labeler's mean
log-softmax (``SegmentationModel.instance_log_probs``) or from its per-voxel majority vote
(``naming.vote.vote_log_probs``, what the cohort workflow stores);
``naming.sequence.consistent_sequence`` picks the most likely name sequence that follows
one schema variant with vertebra/disc alternating and no gaps.  When the model sees both
C2 and the sacrum, the count must agree; a disagreement is a QC flag and ``decided_by``
records who decided.
"""

from __future__ import annotations

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.naming.counting import TOP, count_labels
from spinecensus.naming.labeling import Labeling, check_field_of_view, withholds
from spinecensus.naming.sequence import consistent_sequence, position_scores
from spinecensus.split.instances import SplitResult


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

    Whoever names the levels, a flag of ``labeling.WITHHOLDING_FLAGS`` (an invalid split, a
    top instance that is not C2 by shape, an ambiguous sacral junction, a missed disc)
    withholds the status.
    """
    check_field_of_view(field_of_view)
    model_map, conf, flags = _model_names(split, log_probs, count)
    model_whole = TOP in model_map.values() and labels.SACRUM in model_map.values()
    count_whole = _count_is_whole(count)
    # lumbar field of view: the instance the count recognised as the sacrum, if any
    sacrum = count.sacrum_id if field_of_view == "lumbar" and count is not None else None
    if count is not None and sacrum is not None and not (model_whole or count_whole):
        decided, chosen = _check_sacrum(count, sacrum, model_map, flags)
    elif count is not None and (model_whole or count_whole):
        decided, chosen = _check_count(split, count, count_whole, model_map, flags)
    else:
        decided, chosen = "model", model_map
    status = labels.transitional_status(chosen.values())
    if field_of_view == "lumbar":
        # the variant is read from appearance, not counted from C2; no real transitional
        # spine with known levels validates that reading (docs/real_mri.md), so a lumbar
        # scan's status stays out of the prevalence
        status = "undetermined"
    if withholds(flags):
        # an invalid split, a top that is not C2, an ambiguous sacral junction or a merged
        # vertebra shift any gap-free sequence, the model's included
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


def _model_names(
    split: SplitResult, log_probs: np.ndarray, count: Labeling | None
) -> tuple[dict[int, str], dict[int, float], list[str]]:
    """The model's consistent sequence as instance id -> name, each name's probability
    under the model, and the QC flags so far (the count's, then the model's)."""
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
        sc = position_scores(np.asarray(log_probs, dtype=float), list(model_map.values()))
        conf = {i: float(np.exp(sc[i - 1, i - 1])) for i in model_map}
    return model_map, conf, flags


def _count_is_whole(count: Labeling | None) -> bool:
    """Whether the count is trusted: only when it produced a status itself (sacrum found,
    4-6 free lumbar vertebrae, no suspected missed disc)."""
    return (
        count is not None
        and count.sacrum_id is not None
        and count.lumbar_count in labels.VARIANT_BY_LUMBAR_COUNT
        and count.transitional_status != "undetermined"
    )


def _check_sacrum(
    count: Labeling, sacrum: int, model_map: dict[int, str], flags: list[str]
) -> tuple[str, dict[int, str]]:
    """Lumbar field of view: the model's names stand when its S1 is the count's sacrum
    (``"count+model"``), else the names counted up from the sacrum decide (``"count"``,
    flagged).  Returns who decided and the chosen names; appends to ``flags``."""
    if model_map.get(sacrum) == labels.SACRUM:
        return "count+model", model_map
    model_s1 = next((i for i, nm in model_map.items() if nm == labels.SACRUM), None)
    flags.append(
        f"count_model_disagree: the sacrum is instance {sacrum}, the model's "
        f"S1 is {model_s1}; named upward from the sacrum"
    )
    return "count", count.id_to_name


def _check_count(
    split: SplitResult,
    count: Labeling,
    count_whole: bool,
    model_map: dict[int, str],
    flags: list[str],
) -> tuple[str, dict[int, str]]:
    """A whole spine (seen by the model or counted self-consistently): count and model
    must name every instance the same.  On a disagreement (flagged) the count decides when
    it is self-consistent (``count_whole``) and the split valid, the model otherwise.
    Returns who decided and the chosen names; appends to ``flags``."""
    if count.id_to_name == model_map:
        return "count+model", model_map
    diff = sorted(
        i
        for i in set(count.id_to_name) | set(model_map)
        if count.id_to_name.get(i) != model_map.get(i)
    )
    show = ", ".join(f"{i}: {count.id_to_name.get(i)} vs {model_map.get(i)}" for i in diff[:5])
    flags.append(f"count_model_disagree: {len(diff)} instance(s) differ (count vs model) {show}")
    if count_whole and split.valid:
        return "count", count.id_to_name
    return "model", model_map


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
