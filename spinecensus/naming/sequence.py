"""The most likely schema-consistent name sequence for ordered instances, from their
per-instance log-probabilities over the union columns (an exact search over schema
variant and start offset)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.naming.vote import COLUMN_ALIASES


def position_scores(log_probs: np.ndarray, names: Sequence[str]) -> np.ndarray:
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
        scores = position_scores(lp, names)
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
