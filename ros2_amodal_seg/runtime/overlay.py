"""Overlay rendering for people (the node's ``~/overlay`` image, the demo's PNGs/GIF).

Visible masks are filled (alpha blended), amodal outlines are dashed (the hidden part
of an object is what lies between the dashed outline and the fill), visible outlines
solid, and each instance gets a label ``class score | occ NN% | D.Dm``. OpenCV only.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ros2_amodal_seg.errors import InvalidInputError
from ros2_amodal_seg.types import AmodalInstanceArrayData

#: 12 distinct RGB colours, cycled by instance id.
PALETTE: np.ndarray = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)], np.uint8)


def instance_color(instance_id: int) -> tuple[int, int, int]:
    """RGB colour of an instance id (deterministic)."""
    c = PALETTE[(int(instance_id) - 1) % len(PALETTE)]
    return int(c[0]), int(c[1]), int(c[2])


def draw_dashed_contours(img: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], thickness: int = 2,
                         dash_px: int = 8) -> int:
    """Draw the outline of ``mask`` (``[H, W]`` bool) dashed onto ``img`` (``[H, W, 3]`` uint8,
    in place): alternating ``dash_px`` drawn / skipped contour pixels. Returns the dashes drawn."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    n = 0
    for c in contours:
        pts = c.reshape(-1, 2)
        if len(pts) < 2:
            continue
        pts = np.vstack([pts, pts[:1]])  # close the loop
        for s in range(0, len(pts) - 1, 2 * dash_px):
            seg = pts[s:s + dash_px + 1]
            if len(seg) >= 2:
                cv2.polylines(img, [seg.reshape(-1, 1, 2).astype(np.int32)], False, color, thickness, cv2.LINE_AA)
                n += 1
    return n


def instance_label(class_name: str, score: float, occlusion_rate: float, depth_m: float) -> str:
    """``"cylinder 0.93 | occ 42% | 7.9m"`` (depth shown as ``?`` when unknown)."""
    depth = f"{depth_m:.1f}m" if math.isfinite(depth_m) else "?m"
    occ = f"{100 * occlusion_rate:.0f}%" if math.isfinite(occlusion_rate) else "?"
    return f"{class_name} {score:.2f} | occ {occ} | {depth}"


def render_overlay(image_rgb: np.ndarray, instances: AmodalInstanceArrayData, *, alpha: float = 0.45,
                   labels: bool = True, header: str | None = None) -> np.ndarray:
    """Draw ``instances`` over ``image_rgb``.

    Args:
        image_rgb: ``[H, W, 3]`` uint8 RGB (not modified).
        instances: masks must be ``[H, W]``.
        alpha: opacity of the visible-mask fill, [0, 1].
        labels: draw the text labels.
        header: optional text line at the top-left (e.g. stamp / latency).

    Returns:
        ``[H, W, 3]`` uint8 RGB.

    Raises:
        InvalidInputError: image not ``[H, W, 3]`` uint8 or masks of another size.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise InvalidInputError(f"overlay needs [H, W, 3] uint8, got {image_rgb.shape} {image_rgb.dtype}")
    H, W = image_rgb.shape[:2]
    if (instances.image_height, instances.image_width) != (H, W):
        raise InvalidInputError(f"instances are for {instances.image_height}x{instances.image_width}, "
                                f"image is {H}x{W}")
    out = image_rgb.astype(np.float32)
    # far first, so nearer fills stay on top
    order = sorted(instances.instances, key=lambda i: -i.depth_rank)
    for inst in order:
        m = np.asarray(inst.visible_mask, bool)
        col = np.array(instance_color(inst.id), np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * col
    img = np.clip(out, 0, 255).astype(np.uint8)
    for inst in order:
        col = instance_color(inst.id)
        draw_dashed_contours(img, np.asarray(inst.amodal_mask, bool), col, thickness=2)
        vc, _ = cv2.findContours(np.asarray(inst.visible_mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, vc, -1, col, 1, cv2.LINE_AA)
    if labels:
        font, scale, th = cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1
        for inst in sorted(instances.instances, key=lambda i: i.depth_rank):
            ys, xs = np.nonzero(np.asarray(inst.amodal_mask, bool))
            if len(xs) == 0:
                continue
            text = instance_label(inst.class_name, inst.score, inst.occlusion_rate, inst.depth_m)
            (tw, tht), base = cv2.getTextSize(text, font, scale, th)
            x = int(np.clip(xs.min(), 0, max(0, W - tw - 2)))
            y = int(np.clip(ys.min() - 3, tht + 2, H - 2))
            cv2.rectangle(img, (x, y - tht - 2), (x + tw + 2, y + base), instance_color(inst.id), -1)
            cv2.putText(img, text, (x + 1, y - 1), font, scale, (0, 0, 0), th, cv2.LINE_AA)
    if header:
        (tw, _), _ = cv2.getTextSize(header, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
        cv2.rectangle(img, (0, 0), (min(W, tw + 8), 18), (0, 0, 0), -1)
        cv2.putText(img, header, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img
