#!/usr/bin/env python3
"""Pack rendered datasets compactly for a training machine: JPEG images and RLE masks at the
network's input size, within a size budget.

A lent GPU machine takes at most 64 MiB of files and reaches no package registry, and the
rendered training sets are about 2 GB each (640x480 PNG). This script writes, for every
``--data DIR``, a dataset in the project's own format (``annotations.json`` + ``images/``,
read by the same loader, so ``amodal-seg train --data OUT/NAME`` needs nothing new):

* images resized to ``--size`` (default: the network's 320x240 input, so training sees the
  same pixels up to JPEG) and written as JPEG of ``--quality``;
* amodal and visible masks resized the way the training loader resizes them
  (``model.data.resize_masks``) and stored as COCO RLE; boxes, areas and the intrinsics K
  scaled to the new size; everything else (occlusion rates, occluders, footprints,
  extrinsics, preset, split, seed) copied unchanged.

Frames are taken from the datasets in turn (1st of each, 2nd of each, ...), so a budget cut
keeps them balanced. ``--max-mib`` stops before the packed files would exceed it (default 40:
with a 22 MB checkpoint to start from, it fits the lent GPU machine's 64 MiB); the number of
frames that fit is printed. At 320x240 and quality 90 a world-v2 frame takes about 32 KB, so
40 MiB hold about 1270 frames. On the training machine, ``--max-minutes`` of ``amodal-seg train``
fits the run to the time available::

    .venv/bin/python scripts/pack_dataset.py --data data/v2/train_tabletop --data data/v2/train_street \
        --out data/packed
    # on the GPU machine (carry data/packed and the checkpoint to continue from):
    python -m ros2_amodal_seg.cli train --data data/packed/train_tabletop --data data/packed/train_street \
        --init runs/v2_main/last.safetensors --device cuda --out runs/gpu --max-minutes 8
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import numpy as np


def _scaled_camera(camera: dict | None, sx: float, sy: float) -> dict | None:
    """The image's ``camera`` entry with K ([3, 3] row-major, px) scaled to the new size."""
    if not camera or "K" not in camera:
        return camera
    cam = copy.deepcopy(camera)
    K = np.asarray(cam["K"], float).reshape(3, 3)
    K[0] *= sx
    K[1] *= sy
    cam["K"] = K.reshape(-1).tolist()
    return cam


def _interleave(lists: list[list]) -> list[tuple[int, object]]:
    """``[(list index, item)]``: the first of each list, then the second of each, ..."""
    out = []
    for k in range(max((len(x) for x in lists), default=0)):
        out += [(i, x[k]) for i, x in enumerate(lists) if k < len(x)]
    return out


def pack(data_dirs: list[Path], out: Path, width: int, height: int, quality: int, max_bytes: int,
         progress: bool = True) -> dict:
    """Pack the datasets (project format) into ``out / <dir name>``. Returns a summary dict
    (frames and bytes per dataset, total bytes, whether the budget cut it)."""
    import cv2  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from ros2_amodal_seg import masks as mask_utils  # noqa: PLC0415
    from ros2_amodal_seg.errors import DatasetError  # noqa: PLC0415
    from ros2_amodal_seg.model.data import resize_masks  # noqa: PLC0415

    sources = []
    for d in data_dirs:
        j = d / "annotations.json"
        if not j.is_file():
            raise DatasetError(f"{d}: no annotations.json (pack reads the project's own format)")
        coco = json.loads(j.read_text())
        by_image: dict[str, list] = {}
        for a in coco["annotations"]:
            by_image.setdefault(str(a["image_id"]), []).append(a)
        names = [d.name for d, _, _ in sources]
        if d.name in names:
            raise DatasetError(f"two datasets named {d.name!r}: pack writes OUT/<folder name>")
        sources.append((d, coco, by_image))
    outs = []
    for d, coco, _ in sources:
        (out / d.name / "images").mkdir(parents=True, exist_ok=True)
        outs.append({"info": {**coco.get("info", {}), "packed_from": str(d), "packed_size": [width, height],
                              "jpeg_quality": quality},
                     "categories": coco["categories"], "images": [], "annotations": []})
    order = _interleave([sorted(c["images"], key=lambda im: int(im["id"])) for _, c, _ in sources])
    total = sum(len(json.dumps(o)) for o in outs)           # the annotation files without frames
    cut = False
    bytes_per = [0] * len(sources)
    for i, im in tqdm(order, desc="pack", unit="frame", disable=not progress):
        d, _, by_image = sources[i]
        rgb = cv2.imread(str(d / im["file_name"]), cv2.IMREAD_COLOR)
        if rgb is None:
            raise DatasetError(f"{d / im['file_name']}: not readable")
        h0, w0 = rgb.shape[:2]
        sx, sy = width / w0, height / h0
        ok, jpg = cv2.imencode(".jpg", cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise DatasetError(f"{d / im['file_name']}: JPEG encoding failed")
        anns = []
        for a in by_image.get(str(im["id"]), []):
            am = mask_utils.decode(a["segmentation"], (h0, w0))
            vi = mask_utils.decode(a["visible_mask"], (h0, w0)) if a.get("visible_mask") else am
            am_r, vi_r = resize_masks(np.stack([am, vi]), height, width)
            vi_r &= am_r
            if not am_r.any():
                continue                                   # too small to survive the resize
            b = copy.deepcopy(a)
            b["segmentation"], b["visible_mask"] = mask_utils.encode(am_r), mask_utils.encode(vi_r)
            b["bbox"], b["area"] = mask_utils.bbox_xywh(am_r), mask_utils.area(am_r)
            b["visible_bbox"], b["visible_area"] = mask_utils.bbox_xywh(vi_r), mask_utils.area(vi_r)
            anns.append(b)
        name = f"images/{Path(im['file_name']).stem}.jpg"
        entry = {**im, "file_name": name, "width": width, "height": height}
        if "camera" in im:
            entry["camera"] = _scaled_camera(im["camera"], sx, sy)
        # bytes this frame adds: its JPEG and its JSON entries (as json.dumps writes them, + separators)
        size = len(jpg) + len(json.dumps(anns)) + len(json.dumps(entry)) + 2
        if total + size > max_bytes:
            cut = True
            break
        (out / d.name / name).write_bytes(jpg.tobytes())
        outs[i]["images"].append(entry)
        outs[i]["annotations"] += anns
        total += size
        bytes_per[i] += size
    summary = {"datasets": {}, "total_bytes": 0, "budget_bytes": max_bytes, "cut_by_budget": cut}
    for (d, coco, _), o, nb in zip(sources, outs, bytes_per):
        (out / d.name / "annotations.json").write_text(json.dumps(o))
        written = sum(f.stat().st_size for f in (out / d.name).rglob("*") if f.is_file())
        summary["datasets"][d.name] = {"frames": len(o["images"]), "of": len(coco["images"]),
                                       "objects": len(o["annotations"]), "bytes": written}
        summary["total_bytes"] += written
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, action="append", required=True,
                    help="a rendered dataset (project format; repeatable)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the packed datasets (OUT/<name>)")
    ap.add_argument("--size", default="320x240", help="WxH of the packed images (default: the network input)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality, 1-100")
    ap.add_argument("--max-mib", type=float, default=40.0,
                    help="stop before the packed files exceed this many MiB (a lent GPU takes 64 MiB in all)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size must be WxH, e.g. 320x240, not {args.size!r}")
    if width < 32 or height < 32:
        ap.error("--size must be at least 32x32")
    if not 1 <= args.quality <= 100:
        ap.error("--quality must be in 1..100")
    if args.max_mib <= 0:
        ap.error("--max-mib must be positive")
    from ros2_amodal_seg.errors import DatasetError  # noqa: PLC0415

    try:
        s = pack(args.data, args.out, width, height, args.quality, int(args.max_mib * 2**20),
                 progress=not args.no_progress)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, d in s["datasets"].items():
        print(f"{name}: {d['frames']} of {d['of']} frames, {d['objects']} objects, {d['bytes'] / 2**20:.1f} MiB")
    print(f"total {s['total_bytes'] / 2**20:.1f} MiB of {s['budget_bytes'] / 2**20:.1f}"
          + (" (cut by the budget)" if s["cut_by_budget"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
