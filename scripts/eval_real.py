#!/usr/bin/env python3
"""Evaluate a checkpoint on real photographs: a small, honest check of the sim-to-real gap.

Real amodal ground truth is scarce; three public samples give some (none is in this
repository: pass their paths):

* ``--mmdet3d-demo DIR``: ``open-mmlab/mmdetection3d``'s ``demo/data`` (one KITTI frame and one
  nuScenes sample of 6 cameras, with calibration and 3-D boxes). Each 3-D box is projected into
  its image (corners behind the camera are clipped at 0.1 m depth): the 2-D hull of the projection,
  clipped to the image, is the object's amodal box. Reported: amodal box AP50 per class (pycocotools,
  bbox) against the model's amodal-mask boxes, and the recall at IoU 0.5 by KITTI's occlusion level.
* ``--cocoa DIR``: COCOA amodal annotations of five COCO photographs (``shared/data/cocoa_demo``).
  Their free-text names are mapped onto world.md's 13 classes (:data:`COCOA_CLASSES`; stuff and
  unmappable names are ignored); reported: amodal mask AP class-agnostic and with classes.

For a checkpoint of other classes (the version-1 shapes model) only the class-agnostic figures
are reported: box AP50 and recall with every object as one class, and the COCOA class-agnostic AP.

Overlay pictures (JPEG) of the model's output (dashed amodal outlines, filled visible masks, the ground-truth
amodal boxes in white) go to ``--pictures``, whatever they show.

    .venv/bin/python scripts/eval_real.py --mmdet3d-demo /path/to/mmdetection3d/demo/data \\
        --cocoa ../shared/data/cocoa_demo --out runs/real --pictures docs/images/real
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

#: KITTI labels of mmdet3d (Pedestrian, Cyclist, Car) -> world.md class ids
KITTI_CLASSES = {0: 1, 1: 4, 2: 2}
#: nuScenes labels of mmdet3d -> world.md class ids
NUSCENES_CLASSES = {"car": 2, "truck": 3, "trailer": 3, "bus": 3, "construction_vehicle": 3, "bicycle": 4,
                    "motorcycle": 4, "pedestrian": 1, "traffic_cone": 5, "barrier": 6}
#: COCOA free-text names (stripped, lower case) -> world.md class ids; names not listed are ignored
COCOA_CLASSES = {"phone": 12, "doughnut": 11, "dougnut": 11, "espresso cup": 8, "dish": 9, "wine glass": 8,
                 "shot glass": 8, "water glass": 8, "statue": 13, "silverwear": 12, "book": 10, "box": 10,
                 "candle": 13, "flower": 13, "trash bin": 13, "toilet paper": 13, "elephant": 13,
                 "cat litter box": 13, "paper": 10, "keyboard": 13, "monitor": 13, "laptop": 13, "printer": 13}


# ----------------------------------------------------------------------------------- 3-D boxes -> 2-D
def box_corners_camera(box: list[float]) -> np.ndarray:
    """mmdet3d camera box ``[x, y, z, l, h, w, yaw]`` (bottom centre, camera frame: x right, y down,
    z forward [m]; yaw about y) -> ``[8, 3]`` corners [m]."""
    x, y, z, length, h, w, yaw = (float(v) for v in box[:7])
    xs = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    ys = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    zs = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * xs + s * zs + x, ys + y, -s * xs + c * zs + z], 1)


#: the 12 edges of the box (corner index pairs)
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def amodal_box(corners: np.ndarray, P: np.ndarray, image_size: tuple[int, int], near: float = 0.1):
    """The 2-D hull ``[x0, y0, x1, y1]`` [px] of a box's projection, clipped at ``near`` depth and to
    the image, or None when nothing of it is in front of the camera and in the image.

    Args:
        corners: ``[8, 3]`` camera frame [m]. P: ``[3, 4]`` or ``[4, 4]`` projection (cam2img).
        image_size: ``(H, W)``.
    """
    pts = [c for c in corners if c[2] > near]
    for a, b in EDGES:                                    # where an edge crosses the near plane
        za, zb = corners[a][2], corners[b][2]
        if (za - near) * (zb - near) < 0:
            t = (near - za) / (zb - za)
            pts.append(corners[a] + t * (corners[b] - corners[a]))
    if not pts:
        return None
    p = np.asarray(pts)
    P = np.asarray(P, float)
    P = np.concatenate([P, np.zeros((3, 1))], 1) if P.shape == (3, 3) else P[:3]      # [3, 4]
    uvw = (P[:, :3] @ p.T).T + P[:, 3]
    uv = uvw[:, :2] / uvw[:, 2:3]
    height, width = image_size
    x0, y0 = np.clip(uv.min(0), 0, [width, height])
    x1, y1 = np.clip(uv.max(0), 0, [width, height])
    return None if x1 - x0 < 2 or y1 - y0 < 2 else [float(x0), float(y0), float(x1), float(y1)]


def kitti_frames(root: Path) -> list[dict]:
    """``[{image, gt: [{box, class_id, occluded}]}]`` of the KITTI demo frame."""
    import cv2  # noqa: PLC0415

    info = pickle.load(open(root / "kitti" / "000008.pkl", "rb"))["data_list"][0]
    cam = info["images"]["CAM2"]
    img = cv2.cvtColor(cv2.imread(str(root / "kitti" / cam["img_path"])), cv2.COLOR_BGR2RGB)
    gt = []
    for inst in info["instances"]:
        if inst["bbox_label"] not in KITTI_CLASSES:            # -1: DontCare
            continue
        b = amodal_box(box_corners_camera(inst["bbox_3d"]), np.asarray(cam["cam2img"]), img.shape[:2])
        if b is not None:
            gt.append({"box": b, "class_id": KITTI_CLASSES[inst["bbox_label"]], "occluded": int(inst["occluded"])})
    return [{"name": "kitti_000008", "image": img, "gt": gt}]


def nuscenes_frames(root: Path) -> list[dict]:
    """The 6 camera images of the nuScenes demo sample with their projected boxes."""
    import cv2  # noqa: PLC0415

    d = pickle.load(open(next((root / "nuscenes").glob("*.pkl")), "rb"))
    names = {v: k for k, v in d["metainfo"]["categories"].items()}
    info = d["data_list"][0]
    out = []
    for cam_name, cam in info["images"].items():
        img = cv2.cvtColor(cv2.imread(str(root / "nuscenes" / cam["img_path"])), cv2.COLOR_BGR2RGB)
        gt = []
        for inst in info["cam_instances"].get(cam_name, []):
            cls = NUSCENES_CLASSES.get(names.get(inst["bbox_label"]))
            box = list(inst["bbox_3d"])
            box[1] += box[4] / 2                       # nuScenes camera boxes: gravity centre -> bottom centre
            b = amodal_box(box_corners_camera(box), np.asarray(cam["cam2img"]), img.shape[:2])
            if cls is not None and b is not None:
                gt.append({"box": b, "class_id": cls, "occluded": -1})
        out.append({"name": f"nuscenes_{cam_name}", "image": img, "gt": gt})
    return out


# ----------------------------------------------------------------------------------- evaluation
def box_ap50(frames: list[dict], preds: list, class_names: dict[int, str], class_agnostic: bool = False) -> dict:
    """pycocotools bbox AP at IoU 0.5 per class (classes with ground truth); ``class_agnostic``: every
    object and detection counted as one class, "object" (for a model of other classes)."""
    if class_agnostic:
        class_names = {1: "object"}
    from pycocotools.coco import COCO  # noqa: PLC0415
    from pycocotools.cocoeval import COCOeval  # noqa: PLC0415

    images, anns, dets = [], [], []
    for i, (f, inst) in enumerate(zip(frames, preds)):
        H, W = f["image"].shape[:2]
        images.append({"id": i, "height": H, "width": W})
        for g in f["gt"]:
            x0, y0, x1, y1 = g["box"]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1 if class_agnostic else g["class_id"],
                         "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
        for k in range(len(inst)):
            ys, xs = np.nonzero(inst.amodal_masks[k])
            if len(xs):
                dets.append({"image_id": i, "category_id": 1 if class_agnostic else int(inst.class_ids[k]),
                             "score": float(inst.scores[k]),
                             "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                      float(ys.max() - ys.min() + 1)]})
    present = sorted({a["category_id"] for a in anns})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c, "name": class_names.get(c, str(c))} for c in sorted(class_names)]}
    gt.createIndex()
    res: dict = {"num_images": len(images), "num_gt": {class_names.get(c, str(c)): sum(a["category_id"] == c
                                                                                      for a in anns) for c in present}}
    if not dets:
        res["AP50"] = {class_names.get(c, str(c)): 0.0 for c in present}
        return res
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.catIds = present
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][0, :, :, 0, -1]                # [R, K] at IoU 0.5, all areas, 100 dets
    res["AP50"] = {class_names.get(c, str(c)): float(100 * np.mean(prec[:, k][prec[:, k] > -1]))
                   if (prec[:, k] > -1).any() else float("nan") for k, c in enumerate(present)}
    return res


def recall_by_occlusion(frames: list[dict], preds: list, score_threshold: float, any_class: bool = False) -> dict:
    """Per occlusion level: objects whose amodal box is matched (IoU >= 0.5, same class unless
    ``any_class``) by a detection scoring at least ``score_threshold``."""
    out: dict = {}
    for f, inst in zip(frames, preds):
        boxes = []
        for k in range(len(inst)):
            ys, xs = np.nonzero(inst.amodal_masks[k])
            if len(xs) and inst.scores[k] >= score_threshold:
                boxes.append((int(inst.class_ids[k]), [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]))
        for g in f["gt"]:
            hit = any((any_class or c == g["class_id"]) and _iou(g["box"], b) >= 0.5 for c, b in boxes)
            r = out.setdefault(str(g["occluded"]), [0, 0])
            r[0] += int(hit)
            r[1] += 1
    return {k: {"found": v[0], "objects": v[1]} for k, v in sorted(out.items())}


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cocoa(root: Path, predictor, with_classes: bool) -> tuple[dict, list, list]:
    """Amodal mask AP on the COCOA sample, class-agnostic and (``with_classes``: the predictor's classes
    are world.md's 13) with the mapped classes."""
    from ros2_amodal_seg.data.dataset import load_dataset  # noqa: PLC0415
    from ros2_amodal_seg.model.evaluate import evaluate_predictions  # noqa: PLC0415
    from ros2_amodal_seg.model.predict import instances_to_predictions  # noqa: PLC0415

    ds = load_dataset(root)
    frames, preds, agnostic = [], [], []
    names = ds.categories
    mapped = {cid: COCOA_CLASSES.get(str(n).strip().lower()) for cid, n in names.items()}
    for s in ds.samples:
        img = s.load_image()
        inst = predictor.predict(img)
        frames.append({"name": f"cocoa_{s.image_id}", "image": img,
                       "gt": [{"box": _mask_box(a.amodal), "class_id": mapped.get(a.category_id) or 0, "occluded": -1}
                              for a in s.annotations if mapped.get(a.category_id)]})
        preds.append(inst)
        p = instances_to_predictions(inst, s.image_id)
        agnostic += [dict(x, category_id=1) for x in p]
    # class-agnostic: every mapped object is one class
    keep = {cid for cid, m in mapped.items() if m}
    ds_agn = _relabel(ds, {cid: 1 for cid in keep}, {1: "object"})
    res = {"images": len(ds.samples), "objects": sum(len(f["gt"]) for f in frames),
           "class_agnostic": _ap(evaluate_predictions(ds_agn, agnostic, score_threshold=0.3))}
    if with_classes:                                                # the mapped classes are the model's
        ds_cls = _relabel(ds, {cid: m for cid, m in mapped.items() if m}, dict(predictor.class_names))
        with_cls = [x for s, inst in zip(ds.samples, preds) for x in instances_to_predictions(inst, s.image_id)]
        res["with_classes"] = _ap(evaluate_predictions(ds_cls, with_cls, score_threshold=0.3))
    return res, frames, preds


def _mask_box(m: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(m)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else [0, 0, 0, 0]


def _relabel(ds, mapping: dict[int, int], categories: dict[int, str]):
    """A copy of ``ds`` with annotations relabelled by ``mapping`` (unmapped ones dropped)."""
    import copy  # noqa: PLC0415

    out = copy.copy(ds)
    out.categories = dict(categories)
    out.samples = []
    for s in ds.samples:
        s2 = copy.copy(s)
        s2.annotations = [copy.copy(a) for a in s.annotations if a.category_id in mapping]
        for a in s2.annotations:
            a.category_id = mapping[a.category_id]
        out.samples.append(s2)
    return out


def _ap(r: dict) -> dict:
    return {k: round(float(r[k]), 1) for k in ("amodal_AP", "amodal_AP50", "visible_AP", "occluded_AP") if k in r}


def pictures(frames: list[dict], preds: list, out: Path, width: int = 960,
             class_names: dict[int, str] | None = None, jpeg_quality: int = 85) -> list[str]:
    """One overlay JPEG per frame (model output + ground-truth amodal boxes in white), ``width`` px wide
    (JPEG: small enough to keep in a repository)."""
    import cv2  # noqa: PLC0415

    from ros2_amodal_seg.model.visualize import draw_instances  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, inst in zip(frames, preds):
        img = draw_instances(f["image"], inst, class_names=class_names)
        for g in f["gt"]:
            x0, y0, x1, y1 = (int(round(v)) for v in g["box"])
            cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), 2)
        scale = width / img.shape[1]
        img = cv2.resize(img, (width, int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        p = out / f"{f['name']}.jpg"
        cv2.imwrite(str(p), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        paths.append(str(p))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="weights (.safetensors); default: the shipped model")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--mmdet3d-demo", type=Path, default=None, help="mmdetection3d's demo/data folder (KITTI, nuScenes)")
    ap.add_argument("--cocoa", type=Path, default=None, help="a COCOA sample folder (shared/data/cocoa_demo)")
    ap.add_argument("--score-threshold", type=float, default=0.3, help="for recall and the pictures (AP uses all)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the metrics JSON")
    ap.add_argument("--pictures", type=Path, default=None, help="write overlay JPEGs here")
    args = ap.parse_args(argv)
    if args.mmdet3d_demo is None and args.cocoa is None:
        ap.error("give --mmdet3d-demo and/or --cocoa")

    from ros2_amodal_seg.model.predictor import AmodalPredictor  # noqa: PLC0415

    pred = AmodalPredictor.from_checkpoint(args.checkpoint, args.device)
    pred.set_config(pred.config.replace(score_threshold=0.05))
    names = dict(pred.class_names)
    from ros2_amodal_seg.classes import WORLD_CLASSES  # noqa: PLC0415

    world = names == WORLD_CLASSES      # else the classes cannot be compared: class-agnostic figures only
    res: dict = {"checkpoint": args.checkpoint or "shipped", "classes": names, "world_classes": world}

    def boxes(frames, preds) -> dict:
        r = box_ap50(frames, preds, names) if world else {}
        agn = box_ap50(frames, preds, names, class_agnostic=True)
        r.update(num_images=agn["num_images"], AP50_any_class=agn["AP50"]["object"] if agn["num_gt"] else float("nan"))
        return r

    all_frames, all_preds = [], []
    if args.mmdet3d_demo is not None:
        for name, frames in (("kitti", kitti_frames(args.mmdet3d_demo)), ("nuscenes", nuscenes_frames(args.mmdet3d_demo))):
            preds = [pred.predict(f["image"]) for f in frames]
            res[name] = boxes(frames, preds)
            if world:
                res[name]["recall_by_occlusion"] = recall_by_occlusion(frames, preds, args.score_threshold)
            res[name]["recall_by_occlusion_any_class"] = recall_by_occlusion(frames, preds, args.score_threshold,
                                                                             any_class=True)
            all_frames += frames
            all_preds += preds
        res["street"] = boxes(all_frames, all_preds)
    if args.cocoa is not None:
        res["cocoa"], frames, preds = cocoa(args.cocoa, pred, with_classes=world)
        all_frames += frames
        all_preds += preds
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "classes"}, indent=1))
    if args.pictures is not None:
        keep = [(f, _above(p, args.score_threshold)) for f, p in zip(all_frames, all_preds)]
        print("pictures:", pictures([f for f, _ in keep], [p for _, p in keep], args.pictures, class_names=names))
    return 0


def _above(inst, thr: float):
    """The instances scoring at least ``thr``."""
    from ros2_amodal_seg.types import Instances2D  # noqa: PLC0415

    k = inst.scores >= thr
    return Instances2D(inst.amodal_masks[k], inst.visible_masks[k], inst.class_ids[k], inst.scores[k],
                       inst.occlusion_rates[k], inst.order_scores[k])


if __name__ == "__main__":
    sys.exit(main())
