"""Square crops around instances, shared by the second-stage networks (hidden-part completion
and class re-reading) at run time and in their training.

Each kept instance gets a square crop around its final amodal mask, grown by ``context`` on
every side, resampled to ``S x S``. The planes of a crop are resampled with OpenCV's area
averaging (``INTER_AREA``), the mask-grid logits bilinearly, and the network's output is
pasted back bilinearly (``INTER_LINEAR``).

Two implementations with the same results (tested to float rounding):

* numpy + OpenCV, for arrays on the host (the CPU path: fastest there);
* torch, for tensors on a GPU: area resampling as two matrix products with OpenCV's own
  weights (:func:`area_weights`), bilinear sampling with ``grid_sample`` / ``interpolate``.

The public functions take either and dispatch on the type: numpy arrays -> numpy, torch
tensors -> torch on their device (CPU tensors are viewed as numpy arrays, zero copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropSpec:
    """How crops are cut (the ``context`` and ``min_side_px`` of a second-stage network's config).

    Attributes:
        size: S, crops are S x S. context: the crop is the amodal mask's bounding square grown by
            this fraction of its side on every side. min_side_px: smallest crop side [px].
    """

    size: int
    context: float
    min_side_px: int


def crop_boxes(amodal, spec: CropSpec):
    """``[N, H, W]`` bool amodal masks -> ``[N, 3]`` int64 square crops ``(x0, y0, side)`` [px].

    The square is centred on the mask's bounding box, its side ``(1 + 2 context)`` times the
    box's longer side (at least ``min_side_px``); it may run past the image. An empty mask gets
    ``(0, 0, min_side_px)``. numpy in -> numpy out; a tensor in -> a tensor on its device.
    """
    if isinstance(amodal, np.ndarray):
        return crop_boxes(torch.from_numpy(amodal), spec).numpy()
    n = len(amodal)
    rows, cols = amodal.any(2), amodal.any(1)                               # [N, H], [N, W]
    h, w = rows.shape[1], cols.shape[1]
    y0 = rows.float().argmax(1)
    y1 = h - rows.flip(1).float().argmax(1)
    x0 = cols.float().argmax(1)
    x1 = w - cols.flip(1).float().argmax(1)
    longest = torch.maximum(y1 - y0, x1 - x0).double()
    side = torch.ceil(longest * (1 + 2 * spec.context)).long().clamp_min(spec.min_side_px)
    # np.round / torch.round: half to even, as the crops were always cut
    bx = torch.round((x0 + x1 - side).double() / 2).long()
    by = torch.round((y0 + y1 - side).double() / 2).long()
    out = torch.stack([bx, by, side], 1)
    empty = ~rows.any(1)
    if n and empty.any():
        out[empty] = torch.tensor([0, 0, spec.min_side_px], device=amodal.device)
    return out


def window(box, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part ``(xa, ya, xb, yb)`` of a crop box ``(x0, y0, side)`` that lies in the image (may be empty)."""
    x0, y0, side = (int(v) for v in box)
    height, width = image_size
    return max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)


# ----------------------------------------------------------------------------------- numpy kernels
def cut(plane: np.ndarray, box, dtype=np.float32) -> np.ndarray:
    """``[H, W, ...]`` -> ``[side, side, ...]`` window at ``(x0, y0)``, zero outside the image."""
    x0, y0, side = (int(v) for v in box)
    buf = np.zeros((side, side) + plane.shape[2:], dtype)
    xa, ya, xb, yb = window(box, plane.shape[:2])
    if xb > xa and yb > ya:
        buf[ya - y0:yb - y0, xa - x0:xb - x0] = plane[ya:yb, xa:xb]
    return buf


def crop_plane(plane: np.ndarray, box, size: int) -> np.ndarray:
    """``[H, W]`` bool/float plane -> ``[size, size]`` float32 crop (area average; 0 outside the image)."""
    return cv2.resize(cut(plane, box), (size, size), interpolation=cv2.INTER_AREA)


def crop_image(image: np.ndarray, box, size: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[3, size, size]`` float32 in [0, 1] (area average; 0 outside)."""
    rgb = cv2.resize(cut(image, box, np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    return rgb.transpose(2, 0, 1) / np.float32(255.0)


def inside_fraction(box, image_size: tuple[int, int], size: int) -> np.ndarray:
    """``[size, size]`` float32: the share of each crop pixel that lies inside the image (what
    :func:`crop_plane` gives for a plane of ones, computed from the box alone)."""
    x0, y0, side = (float(v) for v in box)
    edges = np.arange(size + 1) * (side / size)

    def axis(origin: float, extent: int) -> np.ndarray:
        lo, hi = origin + edges[:-1], origin + edges[1:]
        return (np.clip(hi, 0, extent) - np.clip(lo, 0, extent)) / (hi - lo)

    height, width = image_size
    return np.outer(axis(y0, height), axis(x0, width)).astype(np.float32)


def _logit_affine(logit_shape: tuple[int, int], box, image_size: tuple[int, int], size: int) -> np.ndarray:
    """``[2, 3]`` map from crop pixel ``(u, v)`` to mask-grid coordinates (pixel centres)."""
    h, w = logit_shape
    height, width = image_size
    x0, y0, side = (float(v) for v in box)
    step = side / size                                   # image pixels per crop pixel
    sx, sy = w / width, h / height                       # grid cells per image pixel
    return np.array([[step * sx, 0.0, (x0 + 0.5 * step) * sx - 0.5],
                     [0.0, step * sy, (y0 + 0.5 * step) * sy - 0.5]], np.float64)


def crop_logits(logits: np.ndarray, box, image_size: tuple[int, int], size: int) -> np.ndarray:
    """``[h, w]`` mask-grid logits -> ``[size, size]`` float32 logits on the crop ``box`` of an
    ``image_size`` ``(H, W)`` image (bilinear, pixel centres; edge values outside the grid)."""
    M = _logit_affine(logits.shape, box, image_size, size)
    return cv2.warpAffine(logits.astype(np.float32), M, (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def occluders_in_window(visible_count, visible_i, win: tuple[int, int, int, int]):
    """Instance i's occluder region inside ``win`` ``(xa, ya, xb, yb)``: the pixels that another
    kept instance sees, from the ``[H, W]`` count of kept instances seeing each pixel and i's own
    ``[H, W]`` visible mask (numpy or torch)."""
    xa, ya, xb, yb = win
    return (visible_count[ya:yb, xa:xb] - visible_i[ya:yb, xa:xb].to(visible_count.dtype)
            if isinstance(visible_count, torch.Tensor)
            else visible_count[ya:yb, xa:xb] - visible_i[ya:yb, xa:xb]) > 0


def mask_planes(amodal_i: np.ndarray, visible_i: np.ndarray, visible_count: np.ndarray, box,
                size: int) -> np.ndarray:
    """``[3, size, size]`` float32 crop planes of one instance (area average, 0 outside the image):
    its ``[H, W]`` bool amodal and visible masks and its occluder region."""
    x0, y0, side = (int(v) for v in box)
    xa, ya, xb, yb = win = window(box, amodal_i.shape)
    # the three planes as one 3-channel uint8 image: one area resize
    buf = np.zeros((side, side, 3), np.uint8)
    if xb > xa and yb > ya:
        sub = buf[ya - y0:yb - y0, xa - x0:xb - x0]
        sub[..., 0] = amodal_i[ya:yb, xa:xb]
        sub[..., 1] = visible_i[ya:yb, xa:xb]
        sub[..., 2] = occluders_in_window(visible_count, visible_i, win)
        buf *= 255
    small = cv2.resize(buf, (size, size), interpolation=cv2.INTER_AREA)
    return small.transpose(2, 0, 1) / np.float32(255.0)


def resize_part(small: np.ndarray, side: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Rows ``r0:r1`` and columns ``c0:c1`` of ``cv2.resize(small, (side, side), INTER_LINEAR)``
    without computing the rest (same pixel-centre mapping)."""
    size = small.shape[0]
    scale = size / side
    M = np.array([[scale, 0.0, (c0 + 0.5) * scale - 0.5], [0.0, scale, (r0 + 0.5) * scale - 0.5]], np.float64)
    return cv2.warpAffine(small, M, (c1 - c0, r1 - r0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


# ----------------------------------------------------------------------------------- torch kernels
@lru_cache(maxsize=512)
def _area_weights_np(side: int, size: int) -> np.ndarray:
    eye = np.eye(side, dtype=np.float32)
    return cv2.resize(eye, (side, size), interpolation=cv2.INTER_AREA)   # [size, side]


def area_weights(side: int, size: int, device) -> torch.Tensor:
    """``[size, side]`` float32: OpenCV's ``INTER_AREA`` weights along one axis (the resampling of
    an identity), so that ``W @ X @ W.T`` is ``cv2.resize(X, (size, size), INTER_AREA)`` of a
    ``side x side`` X (the kernel is separable)."""
    return torch.from_numpy(_area_weights_np(int(side), int(size))).to(device)


def cut_t(plane: torch.Tensor, box) -> torch.Tensor:
    """``[C, H, W]`` tensor -> ``[C, side, side]`` float32 window at ``(x0, y0)``, zero outside the image."""
    x0, y0, side = (int(v) for v in box)
    buf = torch.zeros((plane.shape[0], side, side), dtype=torch.float32, device=plane.device)
    xa, ya, xb, yb = window(box, plane.shape[1:])
    if xb > xa and yb > ya:
        buf[:, ya - y0:yb - y0, xa - x0:xb - x0] = plane[:, ya:yb, xa:xb]
    return buf


def area_resize_t(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[C, side, side]`` -> ``[C, size, size]`` float32, as ``cv2.resize(INTER_AREA)``."""
    wts = area_weights(x.shape[-1], size, x.device)                     # [size, side]
    return wts @ x.float() @ wts.T


def crop_logits_t(logits: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], size: int) -> torch.Tensor:
    """``[N, h, w]`` mask-grid logits and ``[N, 3]`` boxes -> ``[N, size, size]`` float32 logits on the
    crops (bilinear, pixel centres, edge values outside the grid: :func:`crop_logits`, batched)."""
    n, h, w = logits.shape
    height, width = image_size
    b = boxes.double()
    step = b[:, 2] / size
    u = torch.arange(size, device=logits.device, dtype=torch.float64) + 0.5          # crop pixel centres
    gx = (b[:, 0:1] + u[None] * step[:, None]) * (w / width)                          # [N, S] grid coords + 0.5
    gy = (b[:, 1:2] + u[None] * step[:, None]) * (h / height)
    # grid_sample(align_corners=False): x_norm = 2 * (coord + 0.5) / size - 1 with coord the cell index
    nx = (2 * gx / w - 1).float()
    ny = (2 * gy / h - 1).float()
    grid = torch.stack([nx[:, None, :].expand(n, size, size), ny[:, :, None].expand(n, size, size)], -1)
    return F.grid_sample(logits[:, None].float(), grid, mode="bilinear", padding_mode="border",
                         align_corners=False)[:, 0]


def inside_fraction_t(boxes: torch.Tensor, image_size: tuple[int, int], size: int) -> torch.Tensor:
    """``[N, 3]`` boxes -> ``[N, size, size]`` float32 share of each crop pixel inside the image."""
    b = boxes.double()
    edges = torch.arange(size + 1, device=boxes.device, dtype=torch.float64)[None] * (b[:, 2:3] / size)

    def axis(origin: torch.Tensor, extent: int) -> torch.Tensor:
        lo, hi = origin[:, None] + edges[:, :-1], origin[:, None] + edges[:, 1:]
        return (hi.clamp(0, extent) - lo.clamp(0, extent)) / (hi - lo)

    height, width = image_size
    return (axis(b[:, 1], height)[:, :, None] * axis(b[:, 0], width)[:, None, :]).float()


def resize_part_t(small: torch.Tensor, side: int, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """:func:`resize_part` for a ``[S, S]`` tensor (bilinear upsampling to ``side``, then the part)."""
    full = F.interpolate(small[None, None].float(), size=(side, side), mode="bilinear", align_corners=False)
    return full[0, 0, r0:r1, c0:c1]


def mask_planes_t(amodal_i: torch.Tensor, visible_i: torch.Tensor, visible_count: torch.Tensor, box,
                  size: int) -> torch.Tensor:
    """:func:`mask_planes` in torch: ``[3, size, size]`` float32, rounded to 1/255 steps as the
    uint8 OpenCV path is."""
    stack = torch.stack([amodal_i.float(), visible_i.float(), ((visible_count - visible_i.int()) > 0).float()])
    return torch.round(area_resize_t(cut_t(stack * 255.0, box), size)) / 255.0
