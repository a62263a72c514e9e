"""Small torch maths shared by the post-processing stages (on the model's device).

Everything here takes and returns torch tensors on one device; nothing goes to the host.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F


#: set to 1 to run the torch (GPU) kernels on CPU tensors too: the tests check them against OpenCV's.
TORCH_KERNELS_ENV = "AMODAL_SEG_TORCH_KERNELS"


def torch_kernels(t: torch.Tensor) -> bool:
    """Whether the heavy kernels (mask upsampling, crops) of a tensor run in torch: on a GPU, or
    anywhere when :data:`TORCH_KERNELS_ENV` is 1; else they run in numpy + OpenCV (faster on a CPU)."""
    return t.device.type != "cpu" or os.environ.get(TORCH_KERNELS_ENV) == "1"


def logit(p: float) -> float:
    """Inverse of the logistic function for a probability in (0, 1)."""
    return math.log(p / (1.0 - p))


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of binary masks.

    Args:
        a: ``[N, ...]`` bool masks. b: ``[M, ...]`` bool masks of the same shape.

    Returns:
        ``[N, M]`` float32 IoU (0 where both masks are empty).
    """
    a2 = a.flatten(1).float()                                             # [N, P]
    b2 = b.flatten(1).float()                                             # [M, P]
    inter = a2 @ b2.T                                                     # [N, M]
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def duplicate_overlap(amodal: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """``[N, N]`` pairwise ``min(amodal IoU, visible IoU)`` of ``[N, h, w]`` bool masks: how much
    j duplicates i. A duplicate is high on both; two distinct overlapping objects share amodal
    area but not visible area, so they stay low."""
    return torch.minimum(iou_matrix(amodal, amodal), iou_matrix(visible, visible))


def matrix_decay(overlap: torch.Tensor, scores: torch.Tensor, sigma: float) -> torch.Tensor:
    """Matrix NMS (SOLOv2, Gaussian kernel) decay factors.

    Every j is decayed by its most overlapping higher-scored i, compensated by how much i was
    itself suppressed: ``decay_j = min_i exp(-sigma * (o_ij^2 - c_i^2))`` over higher-scored i,
    with ``c_i`` = i's largest overlap with one above it.

    Args:
        overlap: ``[N, N]`` symmetric pairwise overlap in [0, 1]. scores: ``[N]``. sigma > 0.

    Returns:
        ``[N]`` float32 factors in (0, 1] (1 for the top-scored one).
    """
    n = len(scores)
    if n == 0:
        return torch.ones(0, device=scores.device)
    order = torch.argsort(-scores, stable=True)
    ov = torch.triu(overlap[order][:, order].float(), 1)                  # [i, j]: i above j
    comp = ov.amax(0)                                                     # [N] each one's own largest overlap
    decay = torch.exp(-sigma * (ov ** 2 - comp[:, None] ** 2)).amin(0)   # row 0 (c = 0) keeps it <= 1
    out = torch.empty_like(decay)
    out[order] = decay
    return out


def linear_taps(n_out: int, n_in: int, step: float | None = None, *, device=None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps along one axis, as ``cv2.resize(INTER_LINEAR)`` and ``F.interpolate(
    align_corners=False)`` place them (half-pixel centres, edges replicated): output ``i`` =
    ``(1 - f[i]) * in[i0[i]] + f[i] * in[i1[i]]``.

    Args:
        step: input cells per output cell (default ``n_in / n_out``: both span the same extent).

    Returns:
        ``(i0 [n_out] int64, i1 [n_out] int64, f [n_out] float32)``.
    """
    src = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out if step is None else step) \
        - 0.5
    lo = torch.floor(src)
    f = (src - lo).float()
    lo = lo.long()
    return lo.clamp(0, n_in - 1), (lo + 1).clamp(0, n_in - 1), f


def bilinear_window(logits: torch.Tensor, y: tuple, x: tuple, ya: int, yb: int, xa: int, xb: int) -> torch.Tensor:
    """Rows ``ya:yb`` and cols ``xa:xb`` of the bilinear resampling of ``logits`` ``[h, w]`` with the
    taps ``y = (y0, y1, fy)`` and ``x = (x0, x1, fx)`` of :func:`linear_taps` -> ``[yb-ya, xb-xa]``."""
    lg = logits.float()
    cy0, cy1, cfy = y[0][ya:yb], y[1][ya:yb], y[2][ya:yb, None]
    cx0, cx1, cfx = x[0][xa:xb], x[1][xa:xb], x[2][xa:xb]
    r0, r1 = lg[cy0], lg[cy1]                                             # [rows, w]
    top = r0[:, cx0] * (1 - cfx) + r0[:, cx1] * cfx
    bot = r1[:, cx0] * (1 - cfx) + r1[:, cx1] * cfx
    return top * (1 - cfy) + bot * cfy


def pad_symmetric(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad the last two dims of ``x`` by ``r`` with mirrored edges that repeat the edge pixel
    (``cv2.BORDER_REFLECT``: ``fedcba|abcdef|fedcba``), for any ``r`` (mirrored again if needed)."""
    h, w = x.shape[-2:]

    def index(n: int) -> torch.Tensor:
        i = torch.arange(-r, n + r, device=x.device)
        period = 2 * n
        i = torch.remainder(i, period)
        return torch.where(i >= n, period - 1 - i, i)

    return x.index_select(-2, index(h)).index_select(-1, index(w))


def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the ``(2r+1)^2`` window of the last two dims (``cv2.BORDER_REFLECT`` borders),
    same shape as ``x`` ``[..., H, W]``: separable running sums (cumsum differences), O(H W)
    whatever the radius."""
    k = 2 * r + 1
    xp = pad_symmetric(x.float(), r)                                      # [..., H + 2r, W + 2r]
    c = F.pad(xp.cumsum(-2), (0, 0, 1, 0))                                # [..., H + 2r + 1, W + 2r]
    rows = c[..., k:, :] - c[..., :-k, :]                                 # [..., H, W + 2r]
    c = F.pad(rows.cumsum(-1), (1, 0))                                    # [..., H, W + 2r + 1]
    return (c[..., k:] - c[..., :-k]) * (1.0 / (k * k))
