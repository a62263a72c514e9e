#!/usr/bin/env python3
"""Evaluate a checkpoint on held-out scenes it never trained on.

World version 2 (default; shared/spec/world.md): four sets, rendered into ``--data-root`` when missing
(``amodal-seg generate --no-lidar``, 640x480, ``--num`` frames each):

* ``unseen_tabletop``, ``unseen_street``: ``--split test`` scenes (seeds 950000.., 960000..): only the
  held-out models and textures, never in training data;
* ``seen_tabletop``, ``seen_street``: ``--split train`` scenes with new seeds (900000.., 910000..):
  training models in new scenes. The difference is the gap between seen and unseen models.

``--world shapes`` evaluates the version-1 world instead (shapes-tabletop / shapes-street, seeds
900000.., the old held-out split).

Printed and written to ``OUT/metrics.json``: amodal AP / AP50 / AP75, occluded AP (objects > 15 %
hidden), visible AP, occlusion MAE, pairwise order accuracy and PQ for every set and both presets
together, the "visible mask used as amodal" baseline, amodal AP per class on the unseen scenes, and
the seen - unseen gap. AP uses every prediction scoring at least 0.05 (runner-up classes included,
as Mask2Former is scored); the other metrics use ``--score-threshold``.

    .venv/bin/python scripts/eval_heldout.py --checkpoint runs/v2/last.safetensors --out runs/eval_v2
    .venv/bin/python scripts/eval_heldout.py --world shapes --out runs/eval_shapes --set reclassify=false
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: (name, preset, split, first seed) of the held-out sets of each world
SETS = {
    "v2": (("unseen_tabletop", "tabletop", "test", 950_000), ("unseen_street", "street", "test", 960_000),
           ("seen_tabletop", "tabletop", "train", 900_000), ("seen_street", "street", "train", 910_000)),
    "shapes": (("tabletop", "shapes-tabletop", "train", 900_000), ("street", "shapes-street", "train", 900_000)),
}
#: groups of sets reported together (both presets)
GROUPS = {"v2": {"unseen (both presets)": ("unseen_tabletop", "unseen_street"),
                 "seen (both presets)": ("seen_tabletop", "seen_street")},
          "shapes": {"both presets": ("tabletop", "street")}}
COLUMNS = ("amodal_AP", "amodal_AP50", "amodal_AP75", "agnostic_amodal_AP", "occluded_AP", "visible_AP",
           "occlusion_mae", "order_accuracy", "order_pairs", "PQ", "num_gt", "num_occluded_gt")
OFFSET = 1_000_000


def ensure_set(root: Path, name: str, preset: str, split: str, seed: int, num: int) -> Path:
    """The set's folder, rendered first when it has no annotations.json."""
    folder = root / name
    if not (folder / "annotations.json").is_file():
        from ros2_amodal_seg.world.cli import generate  # noqa: PLC0415

        print(f"rendering {name}: {num} frames of {preset} ({split} split), seeds {seed}..", flush=True)
        generate(preset, num, seed, folder, lidar=False, split=split, progress=True, workers=0)
    return folder


def merged(root: Path, name: str, folders: list[Path]) -> Path:
    """One dataset of several (image ids offset by OFFSET per folder), written as ``root/name``."""
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    doc: dict = {"categories": None, "images": [], "annotations": []}
    for k, f in enumerate(folders):
        d = json.loads((f / "annotations.json").read_text())
        doc["categories"] = d["categories"]
        off = k * OFFSET
        for im in d["images"]:
            doc["images"].append(dict(im, id=im["id"] + off, file_name=str((f / im["file_name"]).resolve())))
        for a in d["annotations"]:
            doc["annotations"].append(dict(a, id=a["id"] + off, image_id=a["image_id"] + off,
                                           occluded_by=[j + off for j in a.get("occluded_by", [])]))
    (out / "annotations.json").write_text(json.dumps(doc))
    return out


def main(argv: list[str] | None = None) -> int:
    from ros2_amodal_seg.model.cli import add_inference_args  # noqa: PLC0415  (no torch)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="weights (.safetensors); default: the shipped model")
    ap.add_argument("--world", choices=sorted(SETS), default="v2", help="which world's held-out sets")
    ap.add_argument("--data-root", type=Path, default=None, help="folder of the sets (default data/heldout_<world>)")
    ap.add_argument("--num", type=int, default=150, help="frames per set when rendering (default 150)")
    ap.add_argument("--out", type=Path, required=True, help="folder for predictions and metrics.json")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--score-threshold", type=float, default=0.3,
                    help="predictions used for occlusion MAE, order accuracy and PQ (AP uses all >= 0.05)")
    ap.add_argument("--plot", type=Path, default=None, help="write the PR curve of the first group here")
    add_inference_args(ap)
    args = ap.parse_args(argv)

    from ros2_amodal_seg.model.cli import PREDICT_SCORE_THRESHOLD, _checkpoint_meta, inference_config_from_args  # noqa: PLC0415
    from ros2_amodal_seg.model.evaluate import evaluate_predictions, plot_pr  # noqa: PLC0415
    from ros2_amodal_seg.model.predict import predict_to_file  # noqa: PLC0415

    root = args.data_root or Path(f"data/heldout_{args.world}")
    folders = {name: ensure_set(root, name, preset, split, seed, args.num)
               for name, preset, split, seed in SETS[args.world]}
    cfg = inference_config_from_args(args, _checkpoint_meta(args.checkpoint), score_threshold=PREDICT_SCORE_THRESHOLD,
                                     max_instances=50)
    args.out.mkdir(parents=True, exist_ok=True)
    preds = {}
    for name, folder in folders.items():
        preds[name] = predict_to_file(str(folder), str(args.out / f"preds_{name}.json"), args.checkpoint,
                                      args.device, cfg)
    table: dict = {}
    for group, names in GROUPS[args.world].items():
        data = merged(args.out, "merged_" + group.split()[0], [folders[n] for n in names])
        pr = [dict(p, image_id=p["image_id"] + k * OFFSET) for k, n in enumerate(names) for p in preds[n]]
        r = evaluate_predictions(str(data), pr, score_threshold=args.score_threshold,
                                 pr_curve=bool(args.plot) and not table)
        if args.plot and not table:
            plot_pr(r, args.plot)
        table[group] = r
        table[f"{group}: visible mask as amodal (baseline)"] = evaluate_predictions(
            str(data), [dict(p, segmentation=p["visible_mask"]) for p in pr], score_threshold=args.score_threshold)
    for name, folder in folders.items():
        table[name] = evaluate_predictions(str(folder), preds[name], score_threshold=args.score_threshold)
    table = {k: {m: v for m, v in r.items() if not m.startswith("_")} for k, r in table.items()}
    summary = {"checkpoint": args.checkpoint or "shipped", "world": args.world, "frames_per_set": args.num,
               "inference": cfg.to_dict(), "score_threshold": args.score_threshold, "metrics": table}
    if args.world == "v2":
        summary["seen_minus_unseen_amodal_AP"] = (table["seen (both presets)"]["amodal_AP"]
                                                 - table["unseen (both presets)"]["amodal_AP"])
        summary["above_visible_baseline"] = (table["unseen (both presets)"]["amodal_AP"]
                                             - table["unseen (both presets): visible mask as amodal (baseline)"]["amodal_AP"])
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=1))
    print("| set | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, r in table.items():
        print(f"| {name} | " + " | ".join(f"{r.get(c, float('nan')):.3g}" for c in COLUMNS) + " |")
    first = next(iter(GROUPS[args.world]))
    print(f"\namodal AP per class ({first}):")
    for cls, v in sorted(table[first].get("per_class_AP", {}).items(), key=lambda kv: -kv[1]):
        print(f"  {cls:14s} {v:5.1f}")
    for k in ("seen_minus_unseen_amodal_AP", "above_visible_baseline"):
        if k in summary:
            print(f"{k}: {summary[k]:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
