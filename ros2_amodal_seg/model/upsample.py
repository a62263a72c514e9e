"""Mask upsampling: windowed bilinear, and edge-aware refinement by a colour guided filter.

The network predicts masks at stride 4 of its 320 x 240 input (80 x 60 cells). Bilinear
upsampling to a 640 x 480 image blurs every boundary over about one cell (8 px), which caps
the mask IoU: ground-truth masks pushed through 80 x 60 and back score only 72 amodal AP on
the tuning split. The colour guided filter (He, Sun and Tang, "Guided Image Filtering",
TPAMI 2013) re-fits each upsampled probability map, in every ``(2r+1)^2`` window, as a linear
function of the image's RGB, so a boundary that the image shows snaps to the image edge.
Where the image is flat (inside an object, or inside an occluder that hides part of an amodal
mask) the filter is a plain box blur, which leaves a 0.5 crossing where it was.

Cost: the fast variant (He and Sun, "Fast Guided Filter", 2015) fits the coefficients on a
``subsample``-times coarser grid. The image statistics (box means and the inverse of the
regularised 3 x 3 colour covariance) are computed once per image on that grid; each mask
then needs 8 box filters there, only inside the window its probabilities can reach, and one
bilinear upsampling of its 4 coefficient maps (see :func:`guided_upsample_masks`).

Two implementations with the same results (tested to float rounding): numpy + OpenCV for
the CPU (:class:`ColourGuide`; the fastest there), torch for a GPU (:class:`TorchColourGuide`;
the masks never leave the device). :func:`make_guide`, :func:`upsample_masks` and
:func:`guided_upsample_masks` pick one from the type and device of their inputs; on the CPU
a torch tensor is viewed as a numpy array (no copy).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ros2_amodal_seg.model import ops


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Elementwise logistic function (inputs clipped to +-50 so exp cannot overflow)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (the maximum subtracted first)."""
    z = np.asarray(logits, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def logit(p: float) -> float:
    """Inverse of :func:`sigmoid` for a probability in (0, 1)."""
    return float(np.log(p / (1.0 - p)))


class ColourGuide:
    """Per-image part of the colour guided filter, optionally the *fast* guided filter (He and Sun,
    2015): the linear coefficients are fitted on a ``subsample``-times smaller grid and upsampled
    bilinearly, only the final ``q = a . I + b`` uses the full-resolution image.

    Args:
        image_rgb: ``[H, W, 3]`` uint8 RGB (any channel order works: the filter is invariant to it).
        radius: box radius in full-resolution pixels, >= 1 (``radius / subsample`` on the coarse grid).
        eps: regulariser on the colour covariance, for RGB scaled to [0, 1]; larger = smoother.
        subsample: integer factor of the coarse grid (1 = the plain guided filter).
    """

    def __init__(self, image_rgb: np.ndarray, radius: int, eps: float, subsample: int = 1) -> None:
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"guide image must be [H, W, 3], got {image_rgb.shape}")
        if radius < 1 or eps <= 0 or subsample < 1:
            raise ValueError(f"radius and subsample must be >= 1 and eps > 0, got {radius}, {eps}, {subsample}")
        self.size = image_rgb.shape[:2]                                         # (H, W)
        self.subsample = s = int(subsample)
        self.radius = max(1, int(round(radius / s)))                            # on the coarse grid
        self.eps = float(eps)
        height, width = self.size
        img = image_rgb.astype(np.float32) * np.float32(1.0 / 255.0)           # [H, W, 3]
        pad_y, pad_x = -height % s, -width % s                                  # full grid = multiple of s
        if pad_y or pad_x:
            img = cv2.copyMakeBorder(img, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT)
        self.full = [np.ascontiguousarray(img[..., c]) for c in range(3)]      # 3 x [H', W']
        coarse = img if s == 1 else cv2.resize(img, (img.shape[1] // s, img.shape[0] // s),
                                               interpolation=cv2.INTER_AREA)   # exact s x s block means
        self.coarse = [np.ascontiguousarray(coarse[..., c]) for c in range(3)]  # 3 x [H'/s, W'/s]
        self.mean = [self.box(c) for c in self.coarse]                          # 3 x [H'/s, W'/s]
        cov = {}
        for i in range(3):
            for j in range(i, 3):
                cov[i, j] = self.box(self.coarse[i] * self.coarse[j]) - self.mean[i] * self.mean[j]
        a11, a12, a13 = cov[0, 0] + self.eps, cov[0, 1], cov[0, 2]
        a22, a23, a33 = cov[1, 1] + self.eps, cov[1, 2], cov[2, 2] + self.eps
        # inverse of the symmetric 3 x 3 (Sigma + eps I) per pixel, by cofactors
        c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
        c22, c23, c33 = a11 * a33 - a13 * a13, a13 * a12 - a11 * a23, a11 * a22 - a12 * a12
        inv_det = 1.0 / (a11 * c11 + a12 * c12 + a13 * c13)
        self.inv = [[c11 * inv_det, c12 * inv_det, c13 * inv_det],
                    [c12 * inv_det, c22 * inv_det, c23 * inv_det],
                    [c13 * inv_det, c23 * inv_det, c33 * inv_det]]              # 3 x 3 x [H'/s, W'/s]

    @property
    def coarse_size(self) -> tuple[int, int]:
        """``(H'/s, W'/s)``: the grid the coefficients live on."""
        return self.coarse[0].shape

    def box(self, x: np.ndarray) -> np.ndarray:
        """Mean over the ``(2r+1)^2`` window (reflected at the borders), same shape as ``x``."""
        k = 2 * self.radius + 1
        return cv2.boxFilter(x, -1, (k, k), normalize=True, borderType=cv2.BORDER_REFLECT)

    def coefficients(self, p: np.ndarray, ya: int = 0, xa: int = 0) -> np.ndarray:
        """Box-averaged linear coefficients ``[h, w, 4]`` (a_0, a_1, a_2, b) for ``p`` ``[h, w]``
        float32 on the coarse grid, the window at coarse rows ``ya:ya+h``, cols ``xa:xa+w``."""
        h, w = p.shape
        sl = (slice(ya, ya + h), slice(xa, xa + w))
        img = [c[sl] for c in self.coarse]
        mean = [m[sl] for m in self.mean]
        mp = self.box(p)
        cov = [self.box(img[c] * p) - mean[c] * mp for c in range(3)]
        a = [self.inv[c][0][sl] * cov[0] + self.inv[c][1][sl] * cov[1] + self.inv[c][2][sl] * cov[2]
             for c in range(3)]
        b = mp - a[0] * mean[0] - a[1] * mean[1] - a[2] * mean[2]
        return np.dstack([self.box(a[0]), self.box(a[1]), self.box(a[2]), self.box(b)])

    def apply(self, coef: np.ndarray, ya: int = 0, xa: int = 0) -> np.ndarray:
        """``q = a . I + b`` at full resolution for coarse coefficients ``[h, w, 4]`` at coarse
        rows ``ya``.., cols ``xa``..: ``[h * s, w * s]`` (rows ``ya * s``.., cols ``xa * s``..; may
        run past the image by the padding)."""
        s = self.subsample
        h, w = coef.shape[:2]
        if s > 1:  # bilinear, half-pixel centres: the same as upsampling the whole coarse grid
            coef = cv2.resize(coef, (w * s, h * s), interpolation=cv2.INTER_LINEAR)
        sl = (slice(ya * s, (ya + h) * s), slice(xa * s, (xa + w) * s))
        return (coef[..., 0] * self.full[0][sl] + coef[..., 1] * self.full[1][sl] + coef[..., 2] * self.full[2][sl]
                + coef[..., 3])

    def filter(self, p: np.ndarray) -> np.ndarray:
        """Guided filter of a whole-image map ``p`` ``[H, W]`` float32 -> ``[H, W]``."""
        s = self.subsample
        hc, wc = self.coarse_size
        pp = p.astype(np.float32)
        if pp.shape != (hc * s, wc * s):
            pp = cv2.copyMakeBorder(pp, 0, hc * s - p.shape[0], 0, wc * s - p.shape[1], cv2.BORDER_REFLECT)
        if s > 1:
            pp = cv2.resize(pp, (wc, hc), interpolation=cv2.INTER_AREA)
        return self.apply(self.coefficients(pp))[: p.shape[0], : p.shape[1]]


def _linear_taps(n_out: int, n_in: int, step: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis, as ``cv2.resize(INTER_LINEAR)`` places them (half-pixel
    centres, edges replicated): output ``i`` = ``(1 - f[i]) * in[i0[i]] + f[i] * in[i1[i]]``.
    ``step``: input cells per output cell (default ``n_in / n_out``: both span the same extent)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out if step is None else step) - 0.5
    lo = np.floor(src)
    f = (src - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    return np.clip(lo, 0, n_in - 1), np.clip(lo + 1, 0, n_in - 1), f


def bilinear_window(logits: np.ndarray, y: tuple, x: tuple, ya: int, yb: int, xa: int, xb: int) -> np.ndarray:
    """Rows ``ya:yb`` and cols ``xa:xb`` of ``cv2.resize(logits, INTER_LINEAR)``, given the taps
    ``y = (y0, y1, fy)`` and ``x = (x0, x1, fx)`` of :func:`_linear_taps`. ``logits`` ``[h, w]``."""
    lg = logits.astype(np.float32)
    cy0, cy1, cfy = y[0][ya:yb], y[1][ya:yb], y[2][ya:yb, None]
    cx0, cx1, cfx = x[0][xa:xb], x[1][xa:xb], x[2][xa:xb]
    top = lg[cy0][:, cx0] * (1 - cfx) + lg[cy0][:, cx1] * cfx
    bot = lg[cy1][:, cx0] * (1 - cfx) + lg[cy1][:, cx1] * cfx
    return top * (1 - cfy) + bot * cfy


def _windows(logits: np.ndarray, threshold: float, y: tuple, x: tuple, pad: int, height: int, width: int):
    """Per mask: the output window ``(ya, yb, xa, xb)`` where ``bilinear(logits) > threshold`` can
    hold, padded by ``pad`` px, or None when no cell passes. A bilinear value is a convex
    combination of its taps, so it exceeds the threshold only where a tap does."""
    above = logits > threshold                                   # [N, h, w]
    rows_any, cols_any = above.any(2), above.any(1)              # [N, h], [N, w]
    out = []
    for k in range(len(logits)):
        r = np.nonzero(rows_any[k])[0]
        if len(r) == 0:
            out.append(None)
            continue
        c = np.nonzero(cols_any[k])[0]
        ys = np.nonzero((y[1] >= r[0]) & (y[0] <= r[-1]))[0]
        xs = np.nonzero((x[1] >= c[0]) & (x[0] <= c[-1]))[0]
        if len(ys) == 0 or len(xs) == 0:   # an output coarser than the logits taps none of those cells
            out.append(None)
            continue
        out.append((max(0, ys[0] - pad), min(height, ys[-1] + 1 + pad),
                    max(0, xs[0] - pad), min(width, xs[-1] + 1 + pad)))
    return out


def _upsample_masks_np(logits: np.ndarray, threshold: float, height: int, width: int) -> np.ndarray:
    """``[N, h, w]`` float logits -> ``[N, height, width]`` bool ``bilinear(logits) > threshold``.

    Same result as thresholding a full ``cv2.resize(INTER_LINEAR)`` of the logits (tested), but
    each mask is interpolated only inside the window its above-threshold cells can reach.
    Masks are small next to the image, so this is several times faster than a full resize.
    """
    n, h, w = logits.shape
    out = np.zeros((n, height, width), bool)
    if n == 0:
        return out
    y, x = _linear_taps(height, h), _linear_taps(width, w)
    for k, win in enumerate(_windows(logits, threshold, y, x, 0, height, width)):
        if win is not None:
            ya, yb, xa, xb = win
            out[k, ya:yb, xa:xb] = bilinear_window(logits[k], y, x, ya, yb, xa, xb) > threshold
    return out


# Cells whose probability stays below this are treated as zero by the windowed guided filter.
SUPPORT_PROB = 0.01


def _guided_upsample_masks_np(logits: np.ndarray, threshold: float, guide: ColourGuide,
                          support_prob: float = SUPPORT_PROB) -> np.ndarray:
    """``[N, h, w]`` float logits -> ``[N, H, W]`` bool: ``guided(sigmoid(bilinear(logits))) > threshold``
    (``threshold`` a probability), with ``H, W`` the guide image's size.

    The probabilities are interpolated straight onto the guide's coarse grid (bilinear from the
    logits). Each mask is filtered inside the window where they exceed ``support_prob``, padded
    by the filter's reach (2 radii and one coarse cell); outside it they are taken as 0. Within
    float rounding and those neglected tails this equals filtering the whole image (tested).
    """
    n, h, w = logits.shape
    height, width = guide.size
    out = np.zeros((n, height, width), bool)
    if n == 0:
        return out
    hc, wc = guide.coarse_size
    s = guide.subsample
    # coarse cells are s image pixels; the coarse grid may run past the image (padding)
    y, x = _linear_taps(hc, h, s * h / height), _linear_taps(wc, w, s * w / width)
    floor = logit(support_prob)
    for k, win in enumerate(_windows(logits, floor, y, x, 2 * guide.radius + 1, hc, wc)):
        if win is not None:
            ya, yb, xa, xb = win
            lg = bilinear_window(logits[k], y, x, ya, yb, xa, xb)
            p = sigmoid(lg).astype(np.float32)
            q = guide.apply(guide.coefficients(p, ya, xa), ya, xa) > threshold
            ye, xe = min(yb * s, height), min(xb * s, width)
            out[k, ya * s:ye, xa * s:xe] = q[: ye - ya * s, : xe - xa * s]
    return out


# ----------------------------------------------------------------------------------- torch (GPU)
def _pad_bottom_right(x: torch.Tensor, pad_y: int, pad_x: int) -> torch.Tensor:
    """``[..., H, W]`` -> ``[..., H + pad_y, W + pad_x]``, mirrored (``cv2.BORDER_REFLECT``) below / right."""
    if not pad_y and not pad_x:
        return x
    r = max(pad_y, pad_x)
    h, w = x.shape[-2:]
    return ops.pad_symmetric(x, r)[..., r:r + h + pad_y, r:r + w + pad_x]


class TorchColourGuide:
    """Per-image part of the colour guided filter, optionally the *fast* guided filter (He and Sun,
    2015): the linear coefficients are fitted on a ``subsample``-times smaller grid and upsampled
    bilinearly, only the final ``q = a . I + b`` uses the full-resolution image.

    Args:
        image_rgb: ``[H, W, 3]`` uint8 RGB tensor on the device the masks live on (any channel
            order works: the filter is invariant to it).
        radius: box radius in full-resolution pixels, >= 1 (``radius / subsample`` on the coarse grid).
        eps: regulariser on the colour covariance, for RGB scaled to [0, 1]; larger = smoother.
        subsample: integer factor of the coarse grid (1 = the plain guided filter).
    """

    def __init__(self, image_rgb: torch.Tensor, radius: int, eps: float, subsample: int = 1) -> None:
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"guide image must be [H, W, 3], got {tuple(image_rgb.shape)}")
        if radius < 1 or eps <= 0 or subsample < 1:
            raise ValueError(f"radius and subsample must be >= 1 and eps > 0, got {radius}, {eps}, {subsample}")
        self.size = tuple(image_rgb.shape[:2])                                  # (H, W)
        self.subsample = s = int(subsample)
        self.radius = max(1, int(round(radius / s)))                            # on the coarse grid
        self.eps = float(eps)
        height, width = self.size
        img = image_rgb.permute(2, 0, 1).float() * (1.0 / 255.0)                # [3, H, W]
        self.full = _pad_bottom_right(img, -height % s, -width % s)             # [3, H', W'], multiples of s
        self.coarse = self.full if s == 1 else F.avg_pool2d(self.full[None], s)[0]   # [3, H'/s, W'/s] block means
        self.mean = self.box(self.coarse)                                       # [3, H'/s, W'/s]
        c = self.coarse
        prod = torch.stack([c[0] * c[0], c[0] * c[1], c[0] * c[2], c[1] * c[1], c[1] * c[2], c[2] * c[2]])
        m = self.mean
        cov = self.box(prod) - torch.stack([m[0] * m[0], m[0] * m[1], m[0] * m[2], m[1] * m[1], m[1] * m[2],
                                            m[2] * m[2]])                       # [6, H'/s, W'/s]
        a11, a12, a13 = cov[0] + self.eps, cov[1], cov[2]
        a22, a23, a33 = cov[3] + self.eps, cov[4], cov[5] + self.eps
        # inverse of the symmetric 3 x 3 (Sigma + eps I) per pixel, by cofactors
        c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
        c22, c23, c33 = a11 * a33 - a13 * a13, a13 * a12 - a11 * a23, a11 * a22 - a12 * a12
        inv_det = 1.0 / (a11 * c11 + a12 * c12 + a13 * c13)
        self.inv = torch.stack([torch.stack([c11, c12, c13]), torch.stack([c12, c22, c23]),
                                torch.stack([c13, c23, c33])]) * inv_det       # [3, 3, H'/s, W'/s]

    @property
    def coarse_size(self) -> tuple[int, int]:
        """``(H'/s, W'/s)``: the grid the coefficients live on."""
        return tuple(self.coarse.shape[1:])

    def box(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the ``(2r+1)^2`` window (reflected at the borders) of ``[..., h, w]``."""
        return ops.box_mean(x, self.radius)

    def coefficients(self, p: torch.Tensor, ya: int = 0, xa: int = 0) -> torch.Tensor:
        """Box-averaged linear coefficients ``[4, h, w]`` (a_0, a_1, a_2, b) for ``p`` ``[h, w]``
        float32 on the coarse grid, the window at coarse rows ``ya:ya+h``, cols ``xa:xa+w``."""
        h, w = p.shape
        img = self.coarse[:, ya:ya + h, xa:xa + w]                              # [3, h, w]
        mean = self.mean[:, ya:ya + h, xa:xa + w]
        inv = self.inv[:, :, ya:ya + h, xa:xa + w]                              # [3, 3, h, w]
        boxed = self.box(torch.cat([p[None], img * p[None]]))                   # [4, h, w]: mean p, mean I p
        mp = boxed[0]
        cov = boxed[1:] - mean * mp                                             # [3, h, w]
        a = (inv * cov[None]).sum(1)                                            # [3, h, w]
        b = mp - (a * mean).sum(0)
        return self.box(torch.cat([a, b[None]]))                                # [4, h, w]

    def apply(self, coef: torch.Tensor, ya: int = 0, xa: int = 0) -> torch.Tensor:
        """``q = a . I + b`` at full resolution for coarse coefficients ``[4, h, w]`` at coarse
        rows ``ya``.., cols ``xa``..: ``[h * s, w * s]`` (rows ``ya * s``.., cols ``xa * s``..; may
        run past the image by the padding)."""
        s = self.subsample
        h, w = coef.shape[1:]
        if s > 1:  # bilinear, half-pixel centres
            coef = F.interpolate(coef[None], size=(h * s, w * s), mode="bilinear", align_corners=False)[0]
        img = self.full[:, ya * s:(ya + h) * s, xa * s:(xa + w) * s]
        return (coef[:3] * img).sum(0) + coef[3]

    def filter(self, p: torch.Tensor) -> torch.Tensor:
        """Guided filter of a whole-image map ``p`` ``[H, W]`` float32 -> ``[H, W]``."""
        s = self.subsample
        hc, wc = self.coarse_size
        pp = _pad_bottom_right(p.float(), hc * s - p.shape[0], wc * s - p.shape[1])
        if s > 1:
            pp = F.avg_pool2d(pp[None, None], s)[0, 0]
        return self.apply(self.coefficients(pp))[: p.shape[0], : p.shape[1]]


def _windows_t(logits: torch.Tensor, threshold: float, y: tuple, x: tuple, pad: int, height: int,
             width: int) -> list[tuple[int, int, int, int] | None]:
    """Per mask: the output window ``(ya, yb, xa, xb)`` where ``bilinear(logits) > threshold`` can
    hold, padded by ``pad`` px, or None when no cell passes. A bilinear value is a convex
    combination of its taps, so it exceeds the threshold only where a tap does. Computed for
    all masks at once, with one transfer of ``[N, 4]`` bounds to the host."""
    above = logits > threshold                                   # [N, h, w]
    rows_any, cols_any = above.any(2), above.any(1)              # [N, h], [N, w]
    h, w = rows_any.shape[1], cols_any.shape[1]
    r0 = rows_any.float().argmax(1)                              # [N] first row with a cell above
    r1 = h - 1 - rows_any.flip(1).float().argmax(1)              # [N] last
    c0 = cols_any.float().argmax(1)
    c1 = w - 1 - cols_any.flip(1).float().argmax(1)
    # outputs i whose taps [i0, i1] meet [r0, r1]: i1[i] >= r0 and i0[i] <= r1 (taps are sorted)
    ya = torch.searchsorted(y[1], r0.contiguous())
    yb = torch.searchsorted(y[0], r1.contiguous(), right=True)
    xa = torch.searchsorted(x[1], c0.contiguous())
    xb = torch.searchsorted(x[0], c1.contiguous(), right=True)
    any_ = rows_any.any(1) & (yb > ya) & (xb > xa)
    bounds = torch.stack([ya, yb, xa, xb, any_.long()], 1).tolist()           # one host transfer
    return [(max(0, a - pad), min(height, b + pad), max(0, c - pad), min(width, d + pad)) if ok else None
            for a, b, c, d, ok in bounds]


def _upsample_masks_t(logits: torch.Tensor, threshold: float, height: int, width: int) -> torch.Tensor:
    """``[N, h, w]`` float logits -> ``[N, height, width]`` bool ``bilinear(logits) > threshold``.

    Same result as thresholding a full ``cv2.resize(INTER_LINEAR)`` of the logits (tested), but
    each mask is interpolated only inside the window its above-threshold cells can reach.
    Masks are small next to the image, so this is several times faster than a full resize.
    """
    n, h, w = logits.shape
    out = torch.zeros((n, height, width), dtype=torch.bool, device=logits.device)
    if n == 0:
        return out
    y, x = ops.linear_taps(height, h, device=logits.device), ops.linear_taps(width, w, device=logits.device)
    for k, win in enumerate(_windows_t(logits, threshold, y, x, 0, height, width)):
        if win is not None:
            ya, yb, xa, xb = win
            out[k, ya:yb, xa:xb] = ops.bilinear_window(logits[k], y, x, ya, yb, xa, xb) > threshold
    return out


def _guided_upsample_masks_t(logits: torch.Tensor, threshold: float, guide: TorchColourGuide,
                          support_prob: float = SUPPORT_PROB) -> torch.Tensor:
    """``[N, h, w]`` float logits -> ``[N, H, W]`` bool: ``guided(sigmoid(bilinear(logits))) > threshold``
    (``threshold`` a probability), with ``H, W`` the guide image's size.

    The probabilities are interpolated straight onto the guide's coarse grid (bilinear from the
    logits). Each mask is filtered inside the window where they exceed ``support_prob``, padded
    by the filter's reach (2 radii and one coarse cell); outside it they are taken as 0. Within
    float rounding and those neglected tails this equals filtering the whole image (tested).
    """
    n, h, w = logits.shape
    height, width = guide.size
    out = torch.zeros((n, height, width), dtype=torch.bool, device=logits.device)
    if n == 0:
        return out
    hc, wc = guide.coarse_size
    s = guide.subsample
    # coarse cells are s image pixels; the coarse grid may run past the image (padding)
    y = ops.linear_taps(hc, h, s * h / height, device=logits.device)
    x = ops.linear_taps(wc, w, s * w / width, device=logits.device)
    floor = ops.logit(support_prob)
    for k, win in enumerate(_windows_t(logits, floor, y, x, 2 * guide.radius + 1, hc, wc)):
        if win is not None:
            ya, yb, xa, xb = win
            p = torch.sigmoid(ops.bilinear_window(logits[k], y, x, ya, yb, xa, xb))
            q = guide.apply(guide.coefficients(p, ya, xa), ya, xa) > threshold
            ye, xe = min(yb * s, height), min(xb * s, width)
            out[k, ya * s:ye, xa * s:xe] = q[: ye - ya * s, : xe - xa * s]
    return out


# ----------------------------------------------------------------------------------- dispatch
def make_guide(image_rgb, radius: int, eps: float, subsample: int = 1):
    """The guide of the image: :class:`ColourGuide` (numpy) for a numpy array or a CPU tensor,
    :class:`TorchColourGuide` for a tensor on a GPU. ``image_rgb``: ``[H, W, 3]`` uint8 RGB."""
    if isinstance(image_rgb, torch.Tensor) and ops.torch_kernels(image_rgb):
        return TorchColourGuide(image_rgb, radius, eps, subsample)
    img = image_rgb.numpy() if isinstance(image_rgb, torch.Tensor) else image_rgb
    return ColourGuide(img, radius, eps, subsample)


def upsample_masks(logits, threshold: float, height: int, width: int):
    """``[N, h, w]`` float logits -> ``[N, height, width]`` bool ``bilinear(logits) > threshold``.

    Same result as thresholding a full ``cv2.resize(INTER_LINEAR)`` of the logits (tested), but
    each mask is interpolated only inside the window its above-threshold cells can reach.
    numpy in -> numpy out; a tensor in -> a tensor on its device."""
    if not isinstance(logits, torch.Tensor):
        return _upsample_masks_np(logits, threshold, height, width)
    if not ops.torch_kernels(logits):
        return torch.from_numpy(_upsample_masks_np(logits.float().numpy(), threshold, height, width))
    return _upsample_masks_t(logits, threshold, height, width)


def guided_upsample_masks(logits, threshold: float, guide, support_prob: float = SUPPORT_PROB):
    """``[N, h, w]`` float logits -> ``[N, H, W]`` bool: ``guided(sigmoid(bilinear(logits))) > threshold``
    (``threshold`` a probability), with ``H, W`` the guide image's size (see the implementations'
    docstrings). numpy in -> numpy out; a tensor in -> a tensor on its device."""
    if isinstance(guide, TorchColourGuide):
        return _guided_upsample_masks_t(torch.as_tensor(logits, device=guide.full.device), threshold, guide,
                                        support_prob)
    if isinstance(logits, torch.Tensor):
        return torch.from_numpy(_guided_upsample_masks_np(logits.float().numpy(), threshold, guide, support_prob))
    return _guided_upsample_masks_np(logits, threshold, guide, support_prob)
