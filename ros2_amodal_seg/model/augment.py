"""Training augmentation at the internal resolution, occlusion-aware.

Works on one sample held as numpy arrays (see :class:`SampleArrays`): flips, scale
jitter, colour jitter, and occlusion augmentation: pasting extra occluders (objects
cut from other samples, with their class, that were unoccluded there) and pole-like
strips over objects. After a paste the visible masks of the objects below shrink,
amodal masks stay, and occlusion rates / occluded_by are recomputed from the masks
(world.md: i is occluded by j when amodal_i meets visible_j).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    hflip_prob: float = 0.5
    scale_range: tuple[float, float] = (0.8, 1.25)
    scale_prob: float = 0.5
    color_jitter: float = 0.25        # brightness / contrast / saturation amplitude
    paste_prob: float = 0.5           # probability of pasting 1-2 object occluders
    strip_prob: float = 0.3           # probability of pasting 1-2 pole-like strips
    min_visible_px: int = 4           # drop objects whose visible mask gets smaller (internal res)


@dataclass
class SampleArrays:
    """One training sample at the internal resolution.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB. amodal, visible: ``[N, H, W]`` bool.
        labels: ``[N]`` int64 class ids (dataset category ids).
    """

    image: np.ndarray
    amodal: np.ndarray
    visible: np.ndarray
    labels: np.ndarray

    def occlusion_rates(self) -> np.ndarray:
        """``[N]`` float32, ``1 - |visible| / |amodal|``."""
        a = self.amodal.reshape(len(self.labels), -1).sum(1).astype(np.float32)
        v = (self.visible & self.amodal).reshape(len(self.labels), -1).sum(1).astype(np.float32)
        return np.clip(1.0 - v / np.maximum(a, 1.0), 0.0, 1.0)

    def occluded_by(self) -> list[list[int]]:
        """Per object the indices j whose visible mask meets its amodal mask (j != i)."""
        n = len(self.labels)
        if n == 0:
            return []
        a = self.amodal.reshape(n, -1).astype(np.float32)
        v = self.visible.reshape(n, -1).astype(np.float32)
        inter = a @ v.T  # [N, N] |amodal_i & visible_j|
        np.fill_diagonal(inter, 0)
        return [list(np.nonzero(inter[i] > 0)[0].astype(int)) for i in range(n)]

    def keep(self, idx: np.ndarray) -> "SampleArrays":
        return SampleArrays(self.image, self.amodal[idx], self.visible[idx], self.labels[idx])


def hflip(s: SampleArrays) -> SampleArrays:
    return SampleArrays(s.image[:, ::-1].copy(), s.amodal[:, :, ::-1].copy(), s.visible[:, :, ::-1].copy(), s.labels)


def scale_jitter(s: SampleArrays, scale: float, rng: np.random.Generator) -> SampleArrays:
    """Zoom by ``scale`` about a random centre, keeping the image size (pad with mean grey)."""
    h, w = s.image.shape[:2]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    img = cv2.resize(s.image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    n = len(s.labels)

    def rs(m: np.ndarray) -> np.ndarray:
        if n == 0:
            return np.zeros((0, nh, nw), bool)
        return np.stack([cv2.resize(x.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) for x in m]).astype(bool)

    am, vi = rs(s.amodal), rs(s.visible)
    out_img = np.full((h, w, 3), 114, np.uint8)
    out_a = np.zeros((n, h, w), bool)
    out_v = np.zeros((n, h, w), bool)
    # offset of the resized image in the output (may be negative = crop)
    oy = int(rng.integers(min(0, h - nh), max(0, h - nh) + 1))
    ox = int(rng.integers(min(0, w - nw), max(0, w - nw) + 1))
    ys, xs = max(0, oy), max(0, ox)
    ye, xe = min(h, oy + nh), min(w, ox + nw)
    out_img[ys:ye, xs:xe] = img[ys - oy:ye - oy, xs - ox:xe - ox]
    out_a[:, ys:ye, xs:xe] = am[:, ys - oy:ye - oy, xs - ox:xe - ox]
    out_v[:, ys:ye, xs:xe] = vi[:, ys - oy:ye - oy, xs - ox:xe - ox]
    return SampleArrays(out_img, out_a, out_v, s.labels)


def color_jitter(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and per-channel gain. ``[H, W, 3]`` uint8 -> same."""
    x = img.astype(np.float32)
    x = x * (1 + rng.uniform(-amount, amount))                                   # brightness
    mean = x.mean()
    x = (x - mean) * (1 + rng.uniform(-amount, amount)) + mean                   # contrast
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * (1 + rng.uniform(-amount, amount)) + grey                   # saturation
    x = x * (1 + rng.uniform(-amount / 3, amount / 3, size=3))[None, None]       # colour cast
    return np.clip(x, 0, 255).astype(np.uint8)


def paste_occluder(s: SampleArrays, patch: np.ndarray, mask: np.ndarray, label: int | None,
                   top: int, left: int) -> SampleArrays:
    """Paste ``patch`` (``[h, w, 3]`` uint8) where ``mask`` (``[h, w]`` bool) at ``(top, left)``, in front of everything.

    The occluder hides the pixels it covers: every existing visible mask loses them
    (amodal masks unchanged). When ``label`` is not None the occluder becomes a new,
    unoccluded object (amodal = visible = its pasted mask).
    """
    h, w = s.image.shape[:2]
    ph, pw = mask.shape
    full = np.zeros((h, w), bool)
    ys, xs = max(0, top), max(0, left)
    ye, xe = min(h, top + ph), min(w, left + pw)
    if ye <= ys or xe <= xs:
        return s
    full[ys:ye, xs:xe] = mask[ys - top:ye - top, xs - left:xe - left]
    img = s.image.copy()
    img[ys:ye, xs:xe][full[ys:ye, xs:xe]] = patch[ys - top:ye - top, xs - left:xe - left][full[ys:ye, xs:xe]]
    vis = s.visible & ~full[None]
    am, lab = s.amodal, s.labels
    if label is not None and full.any():
        am = np.concatenate([am, full[None]])
        vis = np.concatenate([vis, full[None]])
        lab = np.concatenate([lab, np.array([label], lab.dtype)])
    return SampleArrays(img, am, vis, lab)


def strip_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A pole-like bar (``[h, w]`` bool): near-vertical, 3-10 % of the width, random length and tilt."""
    width = max(2, int(rng.uniform(0.03, 0.10) * w))
    x0 = rng.uniform(0, w)
    tilt = rng.uniform(-0.15, 0.15)
    y0, y1 = int(rng.uniform(0, 0.4) * h), int(rng.uniform(0.6, 1.0) * h)
    yy, xx = np.mgrid[0:h, 0:w]
    centre = x0 + tilt * (yy - y0)
    return (np.abs(xx - centre) <= width / 2) & (yy >= y0) & (yy <= y1)


class Augmenter:
    """Applies :class:`AugmentConfig` to :class:`SampleArrays`.

    ``donor`` returns ``(patch [h, w, 3] uint8, mask [h, w] bool, label)`` of an
    unoccluded object cut from another sample, or None.
    """

    def __init__(self, cfg: AugmentConfig, donor: Callable[[np.random.Generator], tuple | None] | None = None) -> None:
        self.cfg = cfg
        self.donor = donor

    def __call__(self, s: SampleArrays, rng: np.random.Generator) -> SampleArrays:
        c = self.cfg
        if rng.random() < c.hflip_prob:
            s = hflip(s)
        if rng.random() < c.scale_prob:
            s = scale_jitter(s, float(rng.uniform(*c.scale_range)), rng)
        h, w = s.image.shape[:2]
        if self.donor is not None and rng.random() < c.paste_prob and len(s.labels):
            for _ in range(int(rng.integers(1, 3))):
                d = self.donor(rng)
                if d is None:
                    continue
                patch, mask, label = d
                # centre the occluder on a random pixel of a random object so that it occludes
                tgt = s.amodal[int(rng.integers(len(s.labels)))]
                yy, xx = np.nonzero(tgt)
                if len(yy) == 0:
                    continue
                k = int(rng.integers(len(yy)))
                s = paste_occluder(s, patch, mask, label, int(yy[k] - mask.shape[0] // 2), int(xx[k] - mask.shape[1] // 2))
        if rng.random() < c.strip_prob:
            for _ in range(int(rng.integers(1, 3))):
                m = strip_mask(h, w, rng)
                colour = rng.integers(0, 256, size=3).astype(np.uint8)
                patch = np.empty((h, w, 3), np.uint8)
                patch[:] = colour
                shade = np.linspace(0.7, 1.1, w, dtype=np.float32)[None, :, None]
                patch = np.clip(patch * shade, 0, 255).astype(np.uint8)
                s = paste_occluder(s, patch, m, None, 0, 0)
        if c.color_jitter > 0:
            s = replace(s, image=color_jitter(s.image, c.color_jitter, rng))
        vis_px = s.visible.reshape(len(s.labels), -1).sum(1) if len(s.labels) else np.zeros(0)
        return s.keep(np.nonzero(vis_px >= c.min_visible_px)[0])
