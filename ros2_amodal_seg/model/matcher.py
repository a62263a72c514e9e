"""Hungarian matching of queries to ground-truth objects (scipy ``linear_sum_assignment``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MatcherConfig:
    cost_class: float = 0.2
    cost_mask: float = 0.5        # BCE on mask points (amodal + visible)
    cost_dice: float = 0.5        # dice on mask points (amodal + visible)
    num_points: int = 0           # 0 = every pixel of the mask grid, else that many random points


def batch_bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every prediction against every target. logits ``[Q, P]``, targets ``[N, P]`` -> ``[Q, N]``."""
    p = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / p


def batch_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - dice of every prediction against every target. ``[Q, P]``, ``[N, P]`` -> ``[Q, N]``."""
    p = logits.sigmoid()
    num = 2 * p @ targets.T
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


@torch.no_grad()
def hungarian_match(class_logits: torch.Tensor, amodal_logits: torch.Tensor, visible_logits: torch.Tensor,
                    labels: torch.Tensor, amodal: torch.Tensor, visible: torch.Tensor,
                    cfg: MatcherConfig = MatcherConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Match one image.

    Args:
        class_logits: ``[Q, K+1]``; amodal_logits, visible_logits: ``[Q, h, w]`` predictions.
        labels: ``[N]`` int64 class index 0..K-1; amodal, visible: ``[N, h, w]`` float {0, 1} targets.

    Returns:
        ``(query_idx, target_idx)`` int64 arrays of length ``min(Q, N)``.
    """
    n = labels.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    prob = class_logits.float().softmax(-1)  # [Q, K+1]
    cost = -cfg.cost_class * prob[:, labels]  # [Q, N]
    qa = amodal_logits.float().flatten(1)
    qv = visible_logits.float().flatten(1)
    ta = amodal.float().flatten(1)
    tv = visible.float().flatten(1)
    if cfg.num_points and cfg.num_points < qa.shape[1]:
        idx = torch.randperm(qa.shape[1], device=qa.device)[:cfg.num_points]
        qa, qv, ta, tv = qa[:, idx], qv[:, idx], ta[:, idx], tv[:, idx]
    cost = cost + cfg.cost_mask * (batch_bce_cost(qa, ta) + batch_bce_cost(qv, tv))
    cost = cost + cfg.cost_dice * (batch_dice_cost(qa, ta) + batch_dice_cost(qv, tv))
    c = cost.cpu().numpy()
    c = np.nan_to_num(c, nan=1e6, posinf=1e6, neginf=-1e6)
    qi, ti = linear_sum_assignment(c)
    return qi.astype(np.int64), ti.astype(np.int64)
