"""Drawing helpers for docs and debugging: amodal outlines over visible fills."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ros2_amodal_seg.classes import class_name
from ros2_amodal_seg.types import Instances2D


def draw_instances(image_rgb: np.ndarray, inst: Instances2D, alpha: float = 0.45,
                   class_names: dict[int, str] | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> same with visible masks filled, amodal outlines dashed-thin, labels.

    The hidden part of an amodal mask (amodal minus visible) is hatched so occlusion is visible.
    """
    out = image_rgb.copy()
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:out.shape[0], 0:out.shape[1]]
    hatch = ((yy + xx) // 4) % 2 == 0
    for i in np.argsort(-inst.order_scores):  # far first
        col = rng.integers(60, 255, 3)
        vis = inst.visible_masks[i]
        hidden = inst.amodal_masks[i] & ~vis & hatch
        out[vis] = (out[vis] * (1 - alpha) + col * alpha).astype(np.uint8)
        out[hidden] = (out[hidden] * 0.5 + col * 0.5).astype(np.uint8)
        cnts, _ = cv2.findContours(inst.amodal_masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cnts, -1, tuple(int(c) for c in col), 1)
        ys, xs = np.nonzero(inst.amodal_masks[i])
        if len(ys):
            txt = f"{class_name(inst.class_ids[i], class_names)} {inst.scores[i]:.2f} occ{inst.occlusion_rates[i]:.2f}"
            cv2.putText(out, txt, (int(xs.min()), max(10, int(ys.min()) - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (255, 255, 255), 1, cv2.LINE_AA)
    return out


def plot_training(hist: dict, path: str | Path, loss_label: str, title: str, draw_validation) -> Path:
    """A training-curve PNG: the per-step loss ``hist["loss"]`` over ``hist["step"]`` with a running
    mean (left), and whatever ``draw_validation(ax)`` draws (right)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss = np.asarray(hist["loss"])
    k = max(1, len(loss) // 100)
    a.plot(hist["step"], loss, lw=0.3, alpha=0.4, label="per step")
    if len(loss) >= k:
        a.plot(np.asarray(hist["step"])[k - 1:], np.convolve(loss, np.ones(k) / k, "valid"), label=f"mean of {k}")
    a.set(xlabel="step", ylabel=loss_label, title=title)
    a.legend()
    draw_validation(b)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
