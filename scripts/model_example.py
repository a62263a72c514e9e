#!/usr/bin/env python3
"""Side-by-side picture of ground truth and prediction on held-out frames (docs/images/model_example.png).

Each row is one preset: left the ground truth, right the model's instances (amodal
outline, visible fill, class and score) above ``--score-threshold``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default=None, help="weights; default: the shipped model")
    ap.add_argument("--data-root", default="data/heldout", help="folder with tabletop/ and street/ datasets "
                                                                "(scripts/eval_heldout.py renders it)")
    ap.add_argument("--index", type=int, default=3, help="frame index within each preset")
    ap.add_argument("--score-threshold", type=float, default=0.3)
    ap.add_argument("--out", default="docs/images/model_example.png")
    args = ap.parse_args()

    from ros2_amodal_seg.model.data import load_amodal_dataset  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import AmodalPredictor  # noqa: PLC0415
    from ros2_amodal_seg.model.visualize import draw_instances  # noqa: PLC0415
    from ros2_amodal_seg.types import Instances2D  # noqa: PLC0415

    p = AmodalPredictor.from_checkpoint(args.checkpoint, device="cpu")
    p.set_config(p.config.replace(score_threshold=args.score_threshold))
    rows = []
    for preset in ("tabletop", "street"):
        s = load_amodal_dataset(Path(args.data_root) / preset).samples[args.index]
        img = s.load_image()
        a = s.annotations
        gt = Instances2D(np.stack([x.amodal for x in a]), np.stack([x.visible for x in a]),
                         np.array([x.category_id for x in a]), np.ones(len(a), np.float32),
                         np.array([x.occlude_rate for x in a], np.float32),
                         np.array([len(x.occluded_by) for x in a], np.float32))
        g, q = draw_instances(img, gt, class_names=p.class_names), draw_instances(img, p.predict(img), class_names=p.class_names)
        cv2.putText(g, f"ground truth ({preset})", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        cv2.putText(q, f"prediction (score >= {p.config.score_threshold:g})", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 0), 2)
        rows.append(np.concatenate([g, q], 1))
    out = np.concatenate(rows, 0)
    out = cv2.resize(out, (out.shape[1] // 2, out.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cv2.imwrite(args.out, out[:, :, ::-1])
    print(f"wrote {args.out} {out.shape[1]}x{out.shape[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
