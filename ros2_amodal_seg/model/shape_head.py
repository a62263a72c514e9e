"""Mask-crop shape classifier: the final layer's shape class from each query's own crop.

Why: the 5 classes differ only in shape (colours are random per object). The query
features of the transformer decoder learn masks long before they learn shape
(see docs/model.md), so the final class decision is made by a small CNN that looks
at each query's predicted object: the image crop around its amodal mask plus the
amodal and visible mask probabilities in that crop, together with the query
feature (which carries objectness) and the crop's aspect ratio and size. This is a
second-stage head in the spirit of Mask R-CNN's RoI heads, but the crop comes from
the query's mask (moments of its probability map), not from a box regressor.

The head answers "which shape is this?" (K logits). "Is this query an object at
all?" stays with the query's own class head, whose no-object probability is what
suppresses duplicate queries (identical crops could not tell them apart). The two
are combined by :func:`combine_class_logits`.

Everything is ONNX-exportable (plain arithmetic and ``grid_sample``); the crop
geometry is computed without gradients, and the mask probabilities are detached,
so the classification loss never pulls the masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.model.layers import MLP


@dataclass(frozen=True)
class ShapeHeadConfig:
    enabled: bool = True
    crop_size: int = 32                                # S: crops are S x S
    channels: tuple[int, ...] = (32, 64, 96, 128)      # conv widths; every one after the first halves S
    context: float = 1.25                              # crop half-size = context * 2 * std of the mask
    min_half_size_px: float = 4.0                      # at the internal input resolution


def crop_boxes(amodal_prob: torch.Tensor, context: float, min_half: tuple[float, float]) -> torch.Tensor:
    """Crop boxes from mask moments.

    Args:
        amodal_prob: ``[N, h, w]`` float amodal mask probabilities (grid = internal size / 4).
        context: half-size = context * 2 * std (2 * std is the half-extent of a disk).
        min_half: minimum half-size ``(x, y)`` in normalised [-1, 1] units.

    Returns:
        ``[N, 4]`` float ``(cx, cy, half_w, half_h)`` in normalised image coordinates
        (``align_corners=False`` convention: -1 / +1 are the outer image edges).
    """
    n, h, w = amodal_prob.shape
    dev, dt = amodal_prob.device, amodal_prob.dtype
    xs = (torch.arange(w, device=dev, dtype=dt) * 2 + 1) / w - 1   # [w] pixel centres
    ys = (torch.arange(h, device=dev, dtype=dt) * 2 + 1) / h - 1   # [h]
    # weight: the binary mask (p > 0.5); a faint mask still gets a box from its soft weights
    wgt = torch.where(amodal_prob > 0.5, amodal_prob, amodal_prob * 1e-3) + 1e-12  # [N, h, w]
    tot = wgt.sum((1, 2))                                                     # [N]
    wx = wgt.sum(1) / tot[:, None]                                           # [N, w]
    wy = wgt.sum(2) / tot[:, None]                                           # [N, h]
    cx = (wx * xs).sum(1)
    cy = (wy * ys).sum(1)
    sx = ((wx * (xs[None] - cx[:, None]) ** 2).sum(1)).clamp_min(0).sqrt()
    sy = ((wy * (ys[None] - cy[:, None]) ** 2).sum(1)).clamp_min(0).sqrt()
    hx = torch.maximum(sx * 2 * context, torch.full_like(sx, min_half[0]))
    hy = torch.maximum(sy * 2 * context, torch.full_like(sy, min_half[1]))
    return torch.stack([cx, cy, hx, hy], 1)


def crop_grid(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 4]`` boxes (cx, cy, hx, hy) -> ``[N, S, S, 2]`` ``grid_sample`` grid (x, y)."""
    g = (torch.arange(size, device=boxes.device, dtype=boxes.dtype) * 2 + 1) / size - 1  # [S]
    gx = boxes[:, None, None, 0] + boxes[:, None, None, 2] * g[None, None, :]             # [N, 1, S]
    gy = boxes[:, None, None, 1] + boxes[:, None, None, 3] * g[None, :, None]             # [N, S, 1]
    return torch.stack([gx.expand(-1, size, size), gy.expand(-1, size, size)], -1)


def combine_class_logits(class_logits: torch.Tensor, shape_logits: torch.Tensor) -> torch.Tensor:
    """Objectness from the query head times the shape distribution from the crop head.

    Args:
        class_logits: ``[..., K+1]`` query-head logits (last = no object).
        shape_logits: ``[..., K]`` shape-head logits.

    Returns:
        ``[..., K+1]`` log-probabilities: ``log(1 - p_none) + log_softmax(shape)`` for the K
        classes and ``log p_none`` for no object (a softmax of them gives exactly those probabilities).
    """
    lp = torch.log_softmax(class_logits.float(), -1)
    log_none = lp[..., -1:]
    log_obj = torch.logsumexp(lp[..., :-1], -1, keepdim=True)   # log(1 - p_none), numerically stable
    return torch.cat([log_obj + torch.log_softmax(shape_logits.float(), -1), log_none], -1)


class ShapeHead(nn.Module):
    """Shape logits ``[B, Q, K]`` from mask crops + query features."""

    def __init__(self, cfg: ShapeHeadConfig, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        cin = 5  # normalised RGB + amodal prob + visible prob
        for i, c in enumerate(cfg.channels):
            layers += [nn.Conv2d(cin, c, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.GroupNorm(8 if c % 8 == 0 else 1, c), nn.ReLU(inplace=True)]
            cin = c
        self.cnn = nn.Sequential(*layers)
        s = cfg.crop_size // 2 ** (len(cfg.channels) - 1)
        if s < 1:
            raise ValueError("crop_size too small for the number of conv stages")
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * s * s, 256), nn.ReLU(inplace=True))
        self.cls = MLP(256 + hidden_dim + 2, 256, num_classes, 2)

    def forward(self, images: torch.Tensor, queries: torch.Tensor, amodal_logits: torch.Tensor,
                visible_logits: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            images: ``[B, 3, Hi, Wi]`` normalised RGB at the internal size.
            queries: ``[B, Q, C]`` final (layer-normed) query features.
            amodal_logits, visible_logits: ``[B, Q, h, w]`` mask logits (h = Hi / 4).
            keep: optional ``[B, Q]`` bool: classify only these queries (inference speed-up);
                the others get all-zero logits, i.e. a uniform shape distribution.

        Returns:
            ``[B, Q, K]`` shape logits (no no-object entry: see :func:`combine_class_logits`).
        """
        if keep is None:
            return self._logits(images, queries, amodal_logits, visible_logits)
        b, q = amodal_logits.shape[:2]
        out = queries.new_zeros(b, q, self.num_classes)
        for i in range(b):
            idx = torch.nonzero(keep[i]).flatten()                            # [Qi]
            if len(idx):
                out[i, idx] = self._logits(images[i:i + 1], queries[i:i + 1, idx], amodal_logits[i:i + 1, idx],
                                           visible_logits[i:i + 1, idx])[0].to(out.dtype)
        return out

    def _logits(self, images: torch.Tensor, queries: torch.Tensor, amodal_logits: torch.Tensor,
                visible_logits: torch.Tensor) -> torch.Tensor:
        """Shape logits ``[B, Q, K]`` of every query (arguments as :meth:`forward`)."""
        b, q, h, w = amodal_logits.shape
        hi, wi = images.shape[-2:]
        s = self.cfg.crop_size
        pa = amodal_logits.detach().float().sigmoid().reshape(b * q, h, w)   # [BQ, h, w]
        pv = visible_logits.detach().float().sigmoid().reshape(b * q, 1, h, w)
        with torch.no_grad():
            mh = self.cfg.min_half_size_px * 2 / max(1, int(wi)), self.cfg.min_half_size_px * 2 / max(1, int(hi))
            boxes = crop_boxes(pa, self.cfg.context, mh)                      # [BQ, 4]
            grid = crop_grid(boxes, s)                                        # [BQ, S, S, 2]
        # image crops: one grid per image holding all of its queries' crops stacked along y
        img = F.grid_sample(images.float(), grid.reshape(b, q * s, s, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)        # [B, 3, Q*S, S]
        img = img.reshape(b, 3, q, s, s).transpose(1, 2).reshape(b * q, 3, s, s)
        ma = F.grid_sample(pa[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mv = F.grid_sample(pv, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = torch.cat([img, ma * 2 - 1, mv * 2 - 1], 1).to(queries.dtype)    # [BQ, 5, S, S]
        f = self.fc(self.cnn(x))                                              # [BQ, 256]
        # geometry the square crop hides: aspect ratio and size (pixels of the internal image)
        half_w_px = boxes[:, 2] * wi / 2
        half_h_px = boxes[:, 3] * hi / 2
        geo = torch.stack([torch.log(half_w_px / half_h_px), torch.log(half_w_px * half_h_px) / 2 - 3], 1)
        z = torch.cat([f, queries.reshape(b * q, -1), geo.to(f.dtype)], 1)
        return self.cls(z).reshape(b, q, -1)
