"""Golden outputs: a compact, deterministic summary of what the frame processor
(model + fusion, the node's whole per-frame computation) produces on fixed synthetic
frames. ``scripts/make_golden.py`` writes it to ``test/golden/processor_golden.json``;
``test/test_golden.py`` recomputes and compares within tolerances - the regression net
for refactors of the model post-processing, the fusion and the runtime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ros2_amodal_seg import masks as mask_utils

#: (preset, seed) of the golden frames, rendered at GOLDEN_SIZE.
GOLDEN_FRAMES: tuple[tuple[str, int], ...] = (("street", 31), ("street", 32), ("tabletop", 41), ("tabletop", 42))
GOLDEN_SIZE: tuple[int, int] = (320, 240)   # width, height
#: model settings of the golden run (low threshold: the file also pins down a weak model's output).
GOLDEN_SCORE_THRESHOLD = 0.05
GOLDEN_MAX_INSTANCES = 8

#: comparison tolerances (absolute unless named rel).
TOLERANCES: dict[str, float] = {"score": 0.02, "occlusion_rate": 0.03, "area_rel": 0.05, "bbox_px": 3.0,
                                "depth_m": 0.05, "depth_rel": 0.02, "centroid_m": 0.1, "centroid_rel": 0.03,
                                "cells_rel": 0.05, "cells_abs": 5}


def _f(v) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 5)


def summarize_output(out) -> dict:
    """A JSON-able summary of a :class:`~ros2_amodal_seg.runtime.processor.FrameOutput`."""
    insts = []
    for i in out.instances.instances:
        insts.append({
            "id": int(i.id), "class_id": int(i.class_id), "score": _f(i.score),
            "occlusion_rate": _f(i.occlusion_rate), "depth_rank": int(i.depth_rank), "depth_m": _f(i.depth_m),
            "amodal_area": int(np.count_nonzero(i.amodal_mask)), "visible_area": int(np.count_nonzero(i.visible_mask)),
            "amodal_bbox": [float(v) for v in mask_utils.bbox_xywh(i.amodal_mask)],
            "centroid": [_f(v) for v in i.centroid], "num_points": int(i.num_points),
            "occluded_by": [int(v) for v in i.occluded_by]})
    occ = out.occupancy
    return {
        "mode": out.mode, "instances": insts,
        "edges": sorted([int(e.occluder_id), int(e.occludee_id)] for e in out.graph.edges),
        "order": [int(v) for v in out.graph.order],
        "grid_shape": list(occ.shape) if occ is not None else None,
        "cells": ({"occupied": int((occ == 100).sum()), "free": int((occ == 0).sum()),
                   "inferred": int(((occ > 0) & (occ < 100)).sum())} if occ is not None else None),
    }


def golden_outputs(checkpoint: str | Path | None = None, device: str = "cpu") -> dict:
    """Run the processor on :data:`GOLDEN_FRAMES` and summarise (deterministic on CPU)."""
    import torch

    from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT
    from ros2_amodal_seg.runtime.processor import (FrameInput, FrameProcessor, fusion_config_from_params,
                                                   processor_config)
    from ros2_amodal_seg.world import render_frame

    torch.manual_seed(0)
    ckpt = str(checkpoint or DEFAULT_CHECKPOINT)
    frames = {}
    procs: dict[str, FrameProcessor] = {}
    for preset, seed in GOLDEN_FRAMES:
        if preset not in procs:
            procs[preset] = FrameProcessor(config=processor_config(ckpt, device, score_threshold=GOLDEN_SCORE_THRESHOLD,
                                                                   max_instances=GOLDEN_MAX_INSTANCES),
                                           fusion_config=fusion_config_from_params(preset))
            procs[preset].load()
        f = render_frame(f"shapes-{preset}", seed, *GOLDEN_SIZE)      # the shipped model's world (v1)
        out = procs[preset].process(FrameInput(image_rgb=f.rgb, stamp_ns=seed, K=f.K, D=f.D,
                                               points_lidar=f.lidar_points, T_camera_lidar=f.T_camera_lidar,
                                               T_base_camera=f.T_base_camera))
        frames[f"{preset}_{seed}"] = summarize_output(out)
    for p in procs.values():
        p.unload()
    return {"checkpoint": Path(ckpt).name, "checkpoint_sha256": file_sha256(ckpt), "size": list(GOLDEN_SIZE),
            "tolerances": TOLERANCES, "frames": frames}


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (identifies the checkpoint a golden file was made with)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _box_iou(a, b) -> float:
    """IoU of two ``[x, y, w, h]`` boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _close(a, b, abs_tol: float, rel_tol: float = 0.0) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= max(abs_tol, rel_tol * max(abs(float(a)), abs(float(b))))


def compare_golden(expected: dict, got: dict, tol: dict[str, float] = TOLERANCES) -> list[str]:
    """Differences beyond tolerance, as readable strings (empty list = equal)."""
    errs: list[str] = []
    for key, e in expected["frames"].items():
        g = got["frames"].get(key)
        if g is None:
            errs.append(f"{key}: missing")
            continue
        if e["mode"] != g["mode"]:
            errs.append(f"{key}: mode {g['mode']} != {e['mode']}")
        if len(e["instances"]) != len(g["instances"]):
            errs.append(f"{key}: {len(g['instances'])} instances, expected {len(e['instances'])}")
            continue
        # match instances by class and amodal box (the order of near-equal scores may differ)
        id_map: dict[int, int] = {}
        used: set[int] = set()
        for ei in e["instances"]:
            best, best_iou = None, 0.0
            for gi in g["instances"]:
                if gi["id"] in used or gi["class_id"] != ei["class_id"]:
                    continue
                iou = _box_iou(ei["amodal_bbox"], gi["amodal_bbox"])
                if iou > best_iou:
                    best, best_iou = gi, iou
            tag = f"{key} instance {ei['id']}"
            if best is None or best_iou < 0.7:
                errs.append(f"{tag} (class {ei['class_id']}, box {ei['amodal_bbox']}): no matching instance")
                continue
            gi = best
            used.add(gi["id"])
            id_map[ei["id"]] = gi["id"]
            for k, t in (("score", tol["score"]), ("occlusion_rate", tol["occlusion_rate"])):
                if not _close(ei[k], gi[k], t):
                    errs.append(f"{tag}: {k} {gi[k]} != {ei[k]}")
            for k in ("amodal_area", "visible_area"):
                if not _close(ei[k], gi[k], 2.0, tol["area_rel"]):
                    errs.append(f"{tag}: {k} {gi[k]} != {ei[k]}")
            if any(not _close(a, b, tol["bbox_px"]) for a, b in zip(ei["amodal_bbox"], gi["amodal_bbox"])):
                errs.append(f"{tag}: amodal bbox {gi['amodal_bbox']} != {ei['amodal_bbox']}")
            if not _close(ei["depth_m"], gi["depth_m"], tol["depth_m"], tol["depth_rel"]):
                errs.append(f"{tag}: depth {gi['depth_m']} != {ei['depth_m']}")
            if any(not _close(a, b, tol["centroid_m"], tol["centroid_rel"])
                   for a, b in zip(ei["centroid"], gi["centroid"])):
                errs.append(f"{tag}: centroid {gi['centroid']} != {ei['centroid']}")
        if len(id_map) == len(e["instances"]):
            order = [id_map[i] for i in e["order"]]
            if order != g["order"]:
                errs.append(f"{key}: order {g['order']} != {order} (expected, in the new ids)")
            edges = sorted([id_map[a], id_map[b]] for a, b in e["edges"])
            if edges != g["edges"]:
                errs.append(f"{key}: edges {g['edges']} != {edges} (expected, in the new ids)")
        if e["grid_shape"] != g["grid_shape"]:
            errs.append(f"{key}: grid {g['grid_shape']} != {e['grid_shape']}")
        if e["cells"] and g["cells"]:
            for k in e["cells"]:
                if not _close(e["cells"][k], g["cells"][k], tol["cells_abs"], tol["cells_rel"]):
                    errs.append(f"{key}: {k} cells {g['cells'][k]} != {e['cells'][k]}")
    return errs
