"""The partial-label loss: cross-entropy over the *set* of classes a voxel may be.

Each voxel carries a code naming the set of classes it may belong to
(``real_codes.CODE_ALLOWED``); the cross-entropy term is ``-log sum_{c in set} p_c``, i.e.
the classes the mask cannot tell apart are merged (log-sum-exp of their logits) before the
log-likelihood.  Why: a body-only mask (VB*) is 0 on discs because nobody drew them, not
because they are background.  Plain cross-entropy would teach every disc voxel of those
scans as background, i.e. teach the model to erase discs (and, symmetrically, IVD scans
would teach it to erase vertebral bodies).  Merging {background, disc} into "not body" on VB
scans keeps the body supervision intact and says nothing about discs; outside the annotated
levels (``real_codes.trusted_band``) no loss at all.  A soft Dice term is computed per class
over the voxels where that class is known (known positive or known negative), so it is
masked the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from spinecensus.train.real_codes import CODE_UNKNOWN, allowed_table

if TYPE_CHECKING:
    import torch


def partial_label_loss(
    logits: torch.Tensor, codes: torch.Tensor, dice_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Partial-label cross-entropy + masked soft Dice.

    Args:
        logits: ``(B, C, H, W)``.
        codes: ``(B, H, W)`` uint8/long loss codes (``real_codes.CODE_ALLOWED``).
    Returns:
        (loss, {"ce": ..., "dice": ...}).
    """
    import torch

    n_cls = logits.shape[1]
    table = torch.from_numpy(allowed_table(n_cls)).to(logits.device)
    allowed = table[codes.long()].permute(0, 3, 1, 2)  # (B, C, H, W)
    supervised = codes != CODE_UNKNOWN
    logp = torch.log_softmax(logits.float(), dim=1)
    # -log sum_{c allowed} p_c : the merged classes share one likelihood (see module doc)
    nll = -torch.logsumexp(logp.masked_fill(~allowed, -math.inf), dim=1)
    n_sup = supervised.sum()
    ce = (nll * supervised).sum() / n_sup.clamp(min=1)
    prob = logp.exp()
    single = allowed.sum(1, keepdim=True) == 1
    pos = allowed & single  # known positive for class c
    known = pos | ~allowed  # known positive or known negative for class c
    dims = (0, 2, 3)
    inter = (prob * pos).sum(dims)
    denom = (prob * known).sum(dims) + pos.sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    has_pos = pos.sum(dims) > 0
    has_pos[0] = False  # foreground classes only
    dice_loss = (1 - dice[has_pos]).mean() if bool(has_pos.any()) else ce * 0
    loss = ce + dice_weight * dice_loss
    return loss, {"ce": float(ce.detach()), "dice": float(dice_loss.detach())}


__all__ = ["partial_label_loss"]
