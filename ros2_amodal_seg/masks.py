"""Binary mask <-> COCO RLE helpers (byte-identical to pycocotools).

All masks are ``[H, W]`` bool (or 0/1 uint8) arrays in image pixel coordinates,
row 0 at the top. RLE dicts use the COCO compressed form
``{"size": [h, w], "counts": "<str>"}`` in column-major (Fortran) order, exactly
as ``pycocotools.mask.encode`` writes them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ros2_amodal_seg.errors import MaskEncodingError

RLE = dict  # {"size": [h, w], "counts": str}


def _as_bool_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise MaskEncodingError(f"{name} must be 2-D [H, W], got shape {m.shape}")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number):
            raise MaskEncodingError(f"{name} must be bool or numeric, got dtype {m.dtype}")
        m = m != 0
    return m


def encode(mask: np.ndarray) -> RLE:
    """Encode one mask.

    Args:
        mask: ``[H, W]`` bool/uint8, image pixels.

    Returns:
        ``{"size": [H, W], "counts": str}``, identical to pycocotools' output.
    """
    m = _as_bool_mask(mask)
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_batch(masks: np.ndarray) -> list[RLE]:
    """Encode ``[N, H, W]`` masks in one pycocotools call."""
    m = np.asarray(masks)
    if m.ndim != 3:
        raise MaskEncodingError(f"masks must be [N, H, W], got shape {m.shape}")
    if m.shape[0] == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(np.moveaxis(m != 0, 0, -1).astype(np.uint8)))
    return [{"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")} for r in rles]


def _uncompressed_total(counts: list[int]) -> int:
    return int(np.sum(np.asarray(counts, dtype=np.int64)))


def validate_rle(rle: Any, expected_size: tuple[int, int] | None = None) -> dict:
    """Check an RLE dict (compressed str/bytes counts or uncompressed list counts).

    Raises:
        MaskEncodingError: missing keys, bad size, counts that do not sum to h*w,
            or a size different from ``expected_size`` ``(h, w)``.

    Returns:
        A pycocotools-ready dict with bytes counts.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise MaskEncodingError(f"RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}"
                                f"{' keys ' + str(sorted(rle)) if isinstance(rle, dict) else ''}")
    size = rle["size"]
    if len(size) != 2 or int(size[0]) < 0 or int(size[1]) < 0:
        raise MaskEncodingError(f"RLE size must be [h, w] >= 0, got {size}")
    h, w = int(size[0]), int(size[1])
    if expected_size is not None and (h, w) != tuple(int(v) for v in expected_size):
        raise MaskEncodingError(f"RLE size {[h, w]} does not match expected {list(expected_size)}")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple, np.ndarray)):
        if any(int(c) < 0 for c in counts):
            raise MaskEncodingError("RLE counts must be non-negative")
        total = _uncompressed_total(list(counts))
        if total != h * w:
            raise MaskEncodingError(f"RLE counts sum to {total}, expected h*w = {h * w}")
        return mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
    if isinstance(counts, str):
        counts_b = counts.encode("ascii")
    elif isinstance(counts, bytes):
        counts_b = counts
    else:
        raise MaskEncodingError(f"RLE counts must be str, bytes or a list of ints, got {type(counts).__name__}")
    out = {"size": [h, w], "counts": counts_b}
    total = _compressed_total(counts_b)
    if total != h * w:
        raise MaskEncodingError(f"RLE counts sum to {total}, expected h*w = {h * w}")
    return out


def _compressed_total(counts: bytes) -> int:
    """Sum of the run lengths in a COCO compressed counts string (the LEB128-like code
    of pycocotools' ``rleFrString``), without decoding the mask."""
    total = 0
    runs: list[int] = []
    p = 0
    n = len(counts)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise MaskEncodingError("RLE counts string is truncated")
            c = counts[p] - 48
            if c < 0 or c > 63:
                raise MaskEncodingError(f"RLE counts has an invalid character {chr(counts[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
        if x < 0:
            raise MaskEncodingError("RLE counts decode to a negative run length")
        total += x
    return total


def decode(rle: Any, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode an RLE dict to a ``[H, W]`` bool mask, validating it first."""
    r = validate_rle(rle, expected_size)
    return mask_utils.decode(r).astype(bool)


def area(mask: np.ndarray) -> int:
    """Number of set pixels."""
    return int(_as_bool_mask(mask).sum())


def bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight box ``[x, y, w, h]`` in pixels (COCO convention), zeros when empty."""
    m = _as_bool_mask(mask)
    ys = np.flatnonzero(m.any(axis=1))
    xs = np.flatnonzero(m.any(axis=0))
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def roi_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Integer ROI ``(x_offset, y_offset, width, height)`` of a mask, zeros when empty."""
    x, y, w, h = bbox_xywh(mask)
    return int(x), int(y), int(w), int(h)


def crop_to_roi(mask: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """``mask[y:y+h, x:x+w]`` for ``roi = (x, y, w, h)``."""
    x, y, w, h = roi
    return _as_bool_mask(mask)[y:y + h, x:x + w]


def paste_roi(crop: np.ndarray, roi: tuple[int, int, int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`crop_to_roi`: a full ``[H, W]`` mask with ``crop`` at ``roi``.

    Raises:
        MaskEncodingError: when the ROI does not lie inside the image or the crop's
            shape differs from the ROI's.
    """
    x, y, w, h = (int(v) for v in roi)
    H, W = (int(v) for v in image_size)
    c = _as_bool_mask(crop, "roi mask")
    if c.shape != (h, w):
        raise MaskEncodingError(f"ROI mask shape {c.shape} does not match ROI size (h={h}, w={w})")
    if x < 0 or y < 0 or x + w > W or y + h > H:
        raise MaskEncodingError(f"ROI {(x, y, w, h)} lies outside the {W}x{H} image")
    out = np.zeros((H, W), dtype=bool)
    out[y:y + h, x:x + w] = c
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise mask IoU.

    Args:
        a: ``[N, H, W]`` bool. b: ``[M, H, W]`` bool.

    Returns:
        ``[N, M]`` float64 IoU (0 where both are empty).
    """
    a2 = np.asarray(a, dtype=bool).reshape(len(a), -1).astype(np.float32)
    b2 = np.asarray(b, dtype=bool).reshape(len(b), -1).astype(np.float32)
    inter = a2 @ b2.T
    union = a2.sum(1)[:, None] + b2.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float64)
