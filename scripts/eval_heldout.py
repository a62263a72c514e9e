#!/usr/bin/env python3
"""Held-out evaluation of a checkpoint: the table in docs/model.md and the README.

Renders the held-out split when it is missing (``amodal-seg generate --preset P --num N
--seed 900000 --no-lidar`` for both presets, 640x480; the training data used seeds
0..1499), merges the two presets into one dataset (street image ids + 100000), runs
the model over it (score >= 0.05, top 50; each instance also under its runner-up class,
``--classes-per-instance 2``) and reports:

* both presets, tabletop only and street only;
* the "visible mask used as amodal" baseline (the same predictions with
  ``segmentation := visible_mask``).

Example::

    .venv/bin/python scripts/eval_heldout.py --checkpoint ros2_amodal_seg/weights/amodal_seg.safetensors \\
        --out runs/eval_shipped --plot docs/images/model_pr.png
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

OFFSET = 100_000  # street image ids in the merged set


def ensure_split(root: Path, num: int, seed: int) -> Path:
    """Render ``root/{tabletop,street}`` when missing and write the merged ``root/both``."""
    for preset in ("tabletop", "street"):
        d = root / preset
        if not (d / "annotations.json").is_file():
            print(f"rendering the held-out {preset} split into {d}", flush=True)
            subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "generate", "--preset", f"shapes-{preset}",
                            "--num", str(num), "--seed", str(seed), "--no-lidar", "--out", str(d)], check=True)
    both = root / "both"
    both.mkdir(parents=True, exist_ok=True)
    merged: dict = {"categories": None, "images": [], "annotations": []}
    for k, preset in enumerate(("tabletop", "street")):
        d = json.loads((root / preset / "annotations.json").read_text())
        merged["categories"] = d["categories"]
        off = k * OFFSET
        for im in d["images"]:
            merged["images"].append(dict(im, id=im["id"] + off, file_name=f"../{preset}/{im['file_name']}"))
        for a in d["annotations"]:
            merged["annotations"].append(dict(a, id=a["id"] + off, image_id=a["image_id"] + off,
                                              occluded_by=[j + off for j in a.get("occluded_by", [])]))
    (both / "annotations.json").write_text(json.dumps(merged))
    return both


def main() -> int:
    from ros2_amodal_seg.model.cli import non_negative_float, positive_int  # noqa: PLC0415
    from ros2_amodal_seg.model.postprocess import NMS_METHODS, PostprocessConfig  # noqa: PLC0415  (no torch)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="weights (.safetensors); default: the shipped model")
    ap.add_argument("--data-root", default="data/heldout", help="held-out split folder (rendered when missing)")
    ap.add_argument("--num", type=int, default=100, help="frames per preset")
    ap.add_argument("--seed", type=int, default=900_000, help="seed of the first held-out frame")
    ap.add_argument("--out", required=True, help="folder for predictions and metric JSON files")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--plot", default=None, help="write the PR curve of the full model here")
    ap.add_argument("--score-thresholds", type=float, nargs="+", default=[0.5, 0.2],
                    help="score thresholds for occlusion MAE, order accuracy and PQ (AP always uses every "
                         "prediction with score >= 0.05)")
    ap.add_argument("--no-completion", action="store_true",
                    help="skip the hidden-part completion network (the model's own amodal masks)")
    ap.add_argument("--no-completion-flip", action="store_true",
                    help="run the completion network once per crop, without the mirrored run (faster on a CPU)")
    ap.add_argument("--no-reclassify", action="store_true",
                    help="skip the class re-reading network (the queries' classes)")
    ap.add_argument("--no-refine", action="store_true",
                    help="plain bilinear mask upsampling, without the guided-filter refinement (ablation)")
    ap.add_argument("--classes-per-instance", type=positive_int, default=2, metavar="K",
                    help="entries per instance: its class and runner-ups (amodal-seg predict --classes-per-instance)")
    ap.add_argument("--nms-method", choices=NMS_METHODS, default=PostprocessConfig.nms_method,
                    help="matrix: Matrix NMS; hard: greedy mask NMS at the default IoU (ablation)")
    ap.add_argument("--final-nms-sigma", type=non_negative_float, default=PostprocessConfig.final_nms_sigma,
                    help="final Matrix NMS on the final amodal masks' IoU after re-scoring; 0 = off (ablation)")
    args = ap.parse_args()

    from ros2_amodal_seg.model.evaluate import evaluate_predictions, plot_pr  # noqa: PLC0415
    from ros2_amodal_seg.model.predict import predict_to_file  # noqa: PLC0415

    root = Path(args.data_root)
    both = ensure_split(root, args.num, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preds = predict_to_file(str(both), str(out / "preds.json"), args.checkpoint, args.device, 0.05, 50,
                            PostprocessConfig.nms_iou, refine_masks=not args.no_refine,
                            complete_hidden=not args.no_completion,
                            completion_flip=False if args.no_completion_flip else None,
                            nms_method=args.nms_method, classes_per_instance=args.classes_per_instance,
                            reclassify=not args.no_reclassify, final_nms_sigma=args.final_nms_sigma)
    runs = {
        "both presets": (both, preds),
        "tabletop": (root / "tabletop", [p for p in preds if p["image_id"] < OFFSET]),
        "street": (root / "street", [dict(p, image_id=p["image_id"] - OFFSET) for p in preds
                                     if p["image_id"] >= OFFSET]),
        "visible mask as amodal (baseline)": (both, [dict(p, segmentation=p["visible_mask"]) for p in preds]),
    }
    table = {}
    for thr in args.score_thresholds:
        for name, (data, pr) in runs.items():
            plot = bool(args.plot) and name == "both presets" and thr == args.score_thresholds[0]
            r = evaluate_predictions(str(data), pr, score_threshold=thr, pr_curve=plot)
            if plot:
                plot_pr(r, args.plot)
            table[f"{name} @ score {thr:g}"] = {k: v for k, v in r.items() if not k.startswith("_")}
    (out / "metrics.json").write_text(json.dumps(table, indent=1))
    cols = ["amodal_AP", "amodal_AP50", "amodal_AP75", "visible_AP", "occluded_AP", "occlusion_mae",
            "occlusion_matched", "order_accuracy", "order_pairs", "PQ", "SQ", "RQ"]
    print("| split | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, r in table.items():
        print(f"| {name} | " + " | ".join(f"{r.get(c, float('nan')):.3g}" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
