"""Misclassification-corrected prevalence: Rogan–Gladen from an expert-validated subset.

The pipeline's calls are not perfect.  Where the sample sheet carries ``expert_status`` for a
validated subset, the calls of that subset against the expert's reading give each status's
sensitivity ``Se`` and specificity ``Sp`` (:func:`accuracy`), and the apparent prevalence
``p_obs`` of a stratum becomes the Rogan–Gladen estimate (:func:`rogan_gladen`)::

    p = (p_obs + Sp - 1) / (Se + Sp - 1),   clipped to [0, 1]

Its 95 % interval (:func:`corrected_prevalence`) carries the uncertainty of all three
proportions: :data:`DRAWS` Monte Carlo draws (seed :data:`SEED`) of ``Se``, ``Sp`` and
``p_obs`` from their Jeffreys distributions ``Beta(x + 1/2, m - x + 1/2)`` (``x`` successes of
``m``), a Rogan–Gladen estimate per draw clipped to [0, 1], and the 2.5th and 97.5th
percentiles (:data:`METHOD`).  Jeffreys rather than a binomial resampling of ``Se``: a small
validated subset often has every positive called right (``Se = 1``), where a binomial
resampling would have no spread at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Monte Carlo draws of the corrected prevalence's interval
DRAWS = 2000
#: seed of the draws (every stratum uses the same stream, so the table is reproducible)
SEED = 20230
#: the method, as stored in the prevalence table's metadata (``spinecensus.correction``)
METHOD = (
    "Rogan-Gladen p = (p_obs + Sp - 1) / (Se + Sp - 1) clipped to [0, 1]; Se and Sp of each "
    "status from the subjects with an expert_status (pooled over strata, assumed the same in "
    f"every stratum); 95 % interval: {DRAWS} Monte Carlo draws (seed {SEED}) of Se, Sp and "
    "p_obs from Jeffreys Beta(x + 1/2, m - x + 1/2), the Rogan-Gladen estimate of each draw "
    "clipped to [0, 1] (draws with Se + Sp - 1 <= 0 dropped), 2.5th-97.5th percentiles"
)


@dataclass(frozen=True)
class Accuracy:
    """A status's calls against the expert's reading on the validated subset.

    Attributes:
        true_positive: expert says the status, the pipeline too.
        n_positive: validated subjects the expert gives the status.
        true_negative: expert says another status, the pipeline too.
        n_negative: validated subjects the expert gives another status.
    """

    true_positive: int
    n_positive: int
    true_negative: int
    n_negative: int

    @property
    def sensitivity(self) -> float:
        """``true_positive / n_positive`` (NaN without expert positives)."""
        return self.true_positive / self.n_positive if self.n_positive else math.nan

    @property
    def specificity(self) -> float:
        """``true_negative / n_negative`` (NaN without expert negatives)."""
        return self.true_negative / self.n_negative if self.n_negative else math.nan


def accuracy(called: np.ndarray, expert: np.ndarray) -> Accuracy:
    """Counts of :class:`Accuracy` from two boolean arrays over the validated subjects.

    Args:
        called: bool, shape (m,): the pipeline calls the status.
        expert: bool, shape (m,): the expert gives the status.
    """
    c = np.asarray(called, dtype=bool)
    e = np.asarray(expert, dtype=bool)
    return Accuracy(
        true_positive=int(np.count_nonzero(c & e)),
        n_positive=int(np.count_nonzero(e)),
        true_negative=int(np.count_nonzero(~c & ~e)),
        n_negative=int(np.count_nonzero(~e)),
    )


def rogan_gladen(p_obs: np.ndarray | float, se: np.ndarray | float, sp: np.ndarray | float):
    """Rogan–Gladen prevalence ``(p_obs + sp - 1) / (se + sp - 1)``, clipped to [0, 1].

    Vectorised; NaN where ``se + sp - 1 <= 0`` (the calls carry no information).
    """
    p_obs, se, sp = (np.asarray(v, dtype=float) for v in (p_obs, se, sp))
    youden = se + sp - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.clip((p_obs + sp - 1.0) / youden, 0.0, 1.0)
    out = np.where(youden > 0, p, np.nan)
    return float(out) if out.ndim == 0 else out


def corrected_prevalence(
    n: int, denominator: int, acc: Accuracy, status: str = "the status", draws: int = DRAWS
) -> tuple[float, float, float, str | None]:
    """Rogan–Gladen prevalence of ``n / denominator`` with its Monte Carlo 95 % interval.

    Returns ``(prevalence, ci_low, ci_high, note)``: fractions 0-1, and ``note`` None or the
    reason why the estimate (then NaN) or its interval cannot be given: no determinable
    subject in the stratum, no validated expert positive (``Se`` not estimable) or negative
    (``Sp`` not estimable), or ``Se + Sp - 1 <= 0``.
    """
    nan = (math.nan, math.nan, math.nan)
    if denominator <= 0:
        return (*nan, "no determinable subject in the stratum")
    if acc.n_positive == 0:
        return (*nan, f"no validated subject with expert status {status}: Se not estimable")
    if acc.n_negative == 0:
        return (*nan, f"every validated subject has expert status {status}: Sp not estimable")
    se, sp = acc.sensitivity, acc.specificity
    if se + sp - 1.0 <= 0:
        return (*nan, f"Se + Sp - 1 = {se + sp - 1:.3f} <= 0: the calls carry no information")
    p = rogan_gladen(n / denominator, se, sp)
    rng = np.random.default_rng(SEED)
    se_d = rng.beta(acc.true_positive + 0.5, acc.n_positive - acc.true_positive + 0.5, draws)
    sp_d = rng.beta(acc.true_negative + 0.5, acc.n_negative - acc.true_negative + 0.5, draws)
    po_d = rng.beta(n + 0.5, denominator - n + 0.5, draws)
    est = rogan_gladen(po_d, se_d, sp_d)
    kept = est[np.isfinite(est)]
    note = None
    if len(kept) < draws:
        note = f"{draws - len(kept)} of {draws} draws had Se + Sp - 1 <= 0 (dropped)"
    if len(kept) < draws // 2:
        return (p, math.nan, math.nan, note)
    low, high = np.percentile(kept, [2.5, 97.5])
    return (p, float(low), float(high), note)
