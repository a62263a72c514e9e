"""Accuracy of the fusion against the synthetic world's exact ground truth.

Inputs are the GROUND-TRUTH masks of each frame (``Instances2D`` built from the
frame's annotations, with uninformative occlusion rates and order scores, all 0),
so the numbers measure the geometry, not the segmentation model:

* order: pairwise accuracy over annotated pairs where exactly one occludes the
  other (``occluded_by``); the predicted relation is the graph edge between the
  two when there is one, else their front-to-back ranks. Mutual pairs are counted
  apart.
* centroid: ``|estimate - Frame.centers_base| / range`` for annotated objects with
  >= ``min_hits`` LiDAR hits (range = distance from the LiDAR to the true centre);
  also for the plain mean of the clean points (surface centroid).

``source="depth"`` replaces the LiDAR by a simulated depth camera aligned to the colour
camera (:func:`~ros2_amodal_seg.world.depth_camera.simulate_depth`: the renderer's exact depth
with noise, missing returns and 1 mm steps), back-projected with
:func:`~ros2_amodal_seg.fusion.depth.depth_to_points` into camera-frame points and fused with
``T_camera_lidar = identity`` and the depth variant of the fusion settings
(:meth:`~ros2_amodal_seg.fusion.pipeline.FusionConfig.for_source`), as the node does with
``geometry_source: depth``. Hits are then the object's pixels with a depth return (after the
stride), and the range is measured from the camera.
* BEV: cells of the union of the GT footprints of the annotated objects (those
  given to the fusion; cells of objects without annotation -- hidden or tiny in the
  image -- are left out) vs predicted occupancy (LiDAR hits only: "visible") and
  visible + amodal-inferred ("fused"); IoU (also against all objects), precision,
  recall summed over frames (micro average); recall also on the footprints of the
  annotated objects with occlusion rate >= ``occluded_rate``; and the fused grid
  without the amodal extension (footprints from the visible points only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.fusion.depth import DepthConfig, depth_pixel_ids, depth_to_points
from ros2_amodal_seg.fusion.pipeline import FusionConfig, FusionPipeline, FusionResult
from ros2_amodal_seg.types import Instances2D
from ros2_amodal_seg.world.depth_camera import DepthNoiseConfig, simulate_depth


def instances_from_frame(frame: Any) -> tuple[Instances2D, list[int]]:
    """GT masks of a world ``Frame`` as ``Instances2D`` (scores 1, occlusion rates and
    order scores 0), plus the annotation (= object) id of each instance."""
    anns = frame.annotations
    n = len(anns)
    H, W = frame.depth.shape
    if n == 0:
        return Instances2D.empty(H, W), []
    inst = Instances2D(
        amodal_masks=np.stack([a.amodal for a in anns]).astype(bool),
        visible_masks=np.stack([a.visible for a in anns]).astype(bool),
        class_ids=np.array([a.category_id for a in anns], np.int64),
        scores=np.ones(n, np.float32), occlusion_rates=np.zeros(n, np.float32),
        order_scores=np.zeros(n, np.float32))
    return inst, [int(a.id) for a in anns]


@dataclass(frozen=True)
class SensorInput:
    """The 3-D input of one frame as the fusion gets it.

    Attributes:
        points: ``[P, 4]`` float32 x y z [m] intensity in the sensor frame.
        point_ids: ``[P]`` int world instance id of each point (0 = background).
        T_camera_sensor: ``[4, 4]`` float64, ``p_camera = T @ p_sensor``.
        origin_base: ``[3]`` float64 sensor position in base_link [m].
    """

    points: np.ndarray
    point_ids: np.ndarray
    T_camera_sensor: np.ndarray
    origin_base: np.ndarray


def sensor_input(frame: Any, source: str = "lidar", depth: DepthConfig = DepthConfig(),
                 noise: DepthNoiseConfig = DepthNoiseConfig()) -> SensorInput:
    """The frame's LiDAR sweep, or its simulated depth image back-projected (``source="depth"``)."""
    if source == "lidar":
        return SensorInput(frame.lidar_points, np.asarray(frame.lidar_ids), frame.T_camera_lidar,
                           frame.T_base_lidar[:3, 3])
    if source != "depth":
        raise ConfigError(f"source must be lidar or depth, got {source!r}")
    z = simulate_depth(frame.depth, frame.rgb, int(frame.seed), noise).astype(np.float32) / np.float32(1000.0)
    kw = {"min_depth_m": depth.min_depth_m, "max_depth_m": depth.max_depth_m}
    pts = depth_to_points(z, frame.K, depth.stride, frame.D, **kw)
    ids = depth_pixel_ids(z, frame.visible_ids, depth.stride, **kw)
    return SensorInput(pts, ids, np.eye(4), frame.T_base_camera[:3, 3])


def run_on_frame(pipeline: FusionPipeline, frame: Any, sensor: SensorInput | None = None
                 ) -> tuple[FusionResult, list[int]]:
    """Run the pipeline on a world frame with its GT masks (and its LiDAR, or ``sensor``)."""
    inst, ids = instances_from_frame(frame)
    sensor = sensor or sensor_input(frame)
    res = pipeline.run(inst, sensor.points, frame.K, frame.D, sensor.T_camera_sensor, frame.T_base_camera)
    return res, ids


def _order_stats(frame: Any, res: FusionResult, ids: list[int]) -> dict[str, int]:
    anns = frame.annotations
    idx = {aid: k for k, aid in enumerate(ids)}
    edges = {(e.occluder_id - 1, e.occludee_id - 1) for e in res.graph.edges}
    rank = {i.id - 1: i.depth_rank for i in res.instances.instances}
    correct = total = mutual = from_edge = 0
    for a in range(len(anns)):
        for b in range(a + 1, len(anns)):
            a_by_b = anns[b].id in anns[a].occluded_by
            b_by_a = anns[a].id in anns[b].occluded_by
            if a_by_b and b_by_a:
                mutual += 1
                continue
            if not (a_by_b or b_by_a):
                continue
            front, back = (b, a) if a_by_b else (a, b)
            front, back = idx[anns[front].id], idx[anns[back].id]
            total += 1
            if (front, back) in edges:
                correct += 1
                from_edge += 1
            elif (back, front) in edges:
                from_edge += 1
            elif rank[front] < rank[back]:
                correct += 1
    return {"order_correct": correct, "order_pairs": total, "order_mutual": mutual, "order_from_edge": from_edge}


def _centroid_stats(frame: Any, res: FusionResult, ids: list[int], min_hits: int, sensor: SensorInput
                    ) -> dict[str, list]:
    oid = [int(o) for o in frame.object_ids]
    hits = np.bincount(np.asarray(sensor.point_ids, np.int64).clip(0), minlength=max(oid) + 1)
    lidar_xyz = sensor.origin_base
    rel, rel_surf, abs_err, missing = [], [], [], 0
    for k, aid in enumerate(ids):
        if hits[aid] < min_hits:
            continue
        c = frame.centers_base[oid.index(aid)]
        est = res.estimates[k]
        if not np.all(np.isfinite(est.centroid)):
            missing += 1
            continue
        rng = float(np.linalg.norm(c - lidar_xyz))
        abs_err.append(float(np.linalg.norm(est.centroid - c)))
        rel.append(abs_err[-1] / rng)
        rel_surf.append(float(np.linalg.norm(est.surface_centroid - c)) / rng)
    return {"centroid_rel": rel, "centroid_rel_surface": rel_surf, "centroid_abs": abs_err,
            "centroid_missing": [missing]}


def _bev_stats(frame: Any, res: FusionResult, res_noamodal: FusionResult | None, occluded_rate: float
               ) -> dict[str, int]:
    grid = res.grid
    oid = [int(o) for o in frame.object_ids]
    ann_ids = {int(a.id) for a in frame.annotations}
    gt_all = np.zeros(grid.shape, np.uint8)
    gt = np.zeros(grid.shape, np.uint8)
    for o, fp in zip(oid, frame.footprints):
        grid.rasterize_polygon(np.asarray(fp), gt_all)
        if o in ann_ids:
            grid.rasterize_polygon(np.asarray(fp), gt)
    gt_all, gt = gt_all > 0, gt > 0
    # cells of objects that have no annotation (not in the image: no mask to fuse) are left out
    care = ~(gt_all & ~gt)
    occ_ann = np.zeros(grid.shape, np.uint8)
    for a in frame.annotations:
        if a.occlude_rate >= occluded_rate:
            grid.rasterize_polygon(np.asarray(frame.footprints[oid.index(a.id)]), occ_ann)
    occ_ann = occ_ann > 0
    vis = res.bev.layers["occupancy"] == 1
    fused = vis | (res.bev.layers["inferred_occupancy"] > 0)
    out = {"gt_cells": int(gt.sum()), "gt_occluded_cells": int(occ_ann.sum()), "gt_all_cells": int(gt_all.sum())}
    variants = {"visible": vis, "fused": fused}
    if res_noamodal is not None:
        variants["fused_noamodal"] = (res_noamodal.bev.layers["occupancy"] == 1) | (
            res_noamodal.bev.layers["inferred_occupancy"] > 0)
    for name, pred in variants.items():
        out[f"{name}_inter"] = int((pred & gt & care).sum())
        out[f"{name}_union"] = int(((pred | gt) & care).sum())
        out[f"{name}_pred"] = int((pred & care).sum())
        out[f"{name}_occluded_hit"] = int((pred & occ_ann).sum())
        out[f"{name}_all_inter"] = int((pred & gt_all).sum())
        out[f"{name}_all_union"] = int((pred | gt_all).sum())
    return out


def evaluate(preset: str, seeds: list[int], *, config: FusionConfig | None = None, min_hits: int = 20,
             occluded_rate: float = 0.25, width: int = 640, height: int = 480, ablation: bool = True,
             progress: bool = False, source: str = "lidar", depth: DepthConfig = DepthConfig(),
             noise: DepthNoiseConfig = DepthNoiseConfig()) -> dict[str, Any]:
    """Render ``seeds`` of ``preset`` and measure order, centroid and BEV accuracy.

    Args:
        preset: world preset (``"shapes-street"``, ``"shapes-tabletop"``, ``"street"``,
            ``"tabletop"``). seeds: world seeds.
        config: fusion config (default :meth:`FusionConfig.for_preset` of the preset's family).
        min_hits: objects with fewer LiDAR hits (depth returns) are left out of the centroid error.
        occluded_rate: objects at least this occluded form the "occluded" recall set.
        ablation: also run without the amodal footprint extension.
        source: ``"lidar"`` or ``"depth"`` (a simulated depth camera, see the module docstring).
        depth, noise: back-projection settings and error model of the depth camera.

    Returns:
        Summary dict (see the module docstring); ``timings_ms`` holds median stage times.
    """
    from ros2_amodal_seg.world import render_frame
    from ros2_amodal_seg.world.presets import get_preset

    cfg = config or FusionConfig.for_preset(get_preset(preset).family, source=source)
    fp = FusionPipeline(config=cfg)
    fp_na = FusionPipeline(config=cfg.replace(instances={"use_amodal": False})) if ablation else None
    acc: dict[str, Any] = {}
    timings: list[dict[str, float]] = []
    it = seeds
    if progress:
        from tqdm import tqdm

        it = tqdm(seeds, desc=f"fusion-eval {preset}", unit="frame")
    for seed in it:
        frame = render_frame(preset, int(seed), width, height, lidar=source == "lidar")
        sensor = sensor_input(frame, source, depth, noise)
        res, ids = run_on_frame(fp, frame, sensor)
        timings.append(res.timings_ms)
        res_na = run_on_frame(fp_na, frame, sensor)[0] if fp_na is not None else None
        for stats in (_order_stats(frame, res, ids), _centroid_stats(frame, res, ids, min_hits, sensor),
                      _bev_stats(frame, res, res_na, occluded_rate)):
            for k, v in stats.items():
                if isinstance(v, list):
                    acc.setdefault(k, []).extend(v)
                else:
                    acc[k] = acc.get(k, 0) + v
    rel = np.asarray(acc.get("centroid_rel", []))
    rel_s = np.asarray(acc.get("centroid_rel_surface", []))
    out: dict[str, Any] = {
        "preset": preset, "source": source, "seeds": [int(s) for s in seeds], "frames": len(seeds),
        "order_accuracy": acc["order_correct"] / max(1, acc["order_pairs"]),
        "order_pairs": acc["order_pairs"], "order_mutual_pairs": acc["order_mutual"],
        "order_pairs_with_edge": acc["order_from_edge"],
        "centroid_objects": int(rel.size), "centroid_missing": int(sum(acc.get("centroid_missing", [0]))),
        "centroid_rel_median": float(np.median(rel)) if rel.size else float("nan"),
        "centroid_rel_p90": float(np.percentile(rel, 90)) if rel.size else float("nan"),
        "centroid_abs_median_m": float(np.median(acc["centroid_abs"])) if rel.size else float("nan"),
        "centroid_rel_median_surface": float(np.median(rel_s)) if rel_s.size else float("nan"),
        "bev_resolution": cfg.bev.resolution,
    }
    for name in ("visible", "fused", "fused_noamodal"):
        if f"{name}_inter" not in acc:
            continue
        inter, union, pred = acc[f"{name}_inter"], acc[f"{name}_union"], acc[f"{name}_pred"]
        out[f"bev_iou_{name}"] = inter / max(1, union)
        out[f"bev_precision_{name}"] = inter / max(1, pred)
        out[f"bev_recall_{name}"] = inter / max(1, acc["gt_cells"])
        out[f"bev_recall_occluded_{name}"] = acc[f"{name}_occluded_hit"] / max(1, acc["gt_occluded_cells"])
        out[f"bev_iou_all_objects_{name}"] = acc[f"{name}_all_inter"] / max(1, acc[f"{name}_all_union"])
    out["timings_ms"] = {k: float(np.median([t[k] for t in timings])) for k in timings[0]} if timings else {}
    return out


def format_summary(s: dict[str, Any]) -> str:
    """Human-readable table of :func:`evaluate`'s summary."""
    lines = [f"fusion-eval preset={s['preset']} source={s.get('source', 'lidar')} frames={s['frames']} "
             f"seeds={s['seeds'][0]}..{s['seeds'][-1]}",
             f"  order accuracy (GT masks)      {s['order_accuracy']:.4f}  over {s['order_pairs']} pairs "
             f"({s['order_pairs_with_edge']} with an edge, {s['order_mutual_pairs']} mutual pairs left out)",
             f"  centroid rel. error median    {s['centroid_rel_median']:.4f}  (p90 {s['centroid_rel_p90']:.4f}, "
             f"median {s['centroid_abs_median_m']:.3f} m, {s['centroid_objects']} objects, "
             f"{s['centroid_missing']} without estimate)",
             f"  surface-mean rel. error median {s['centroid_rel_median_surface']:.4f}"]
    for name in ("visible", "fused", "fused_noamodal"):
        if f"bev_iou_{name}" in s:
            lines.append(f"  BEV {name:15s} IoU {s[f'bev_iou_{name}']:.3f}  precision {s[f'bev_precision_{name}']:.3f}"
                         f"  recall {s[f'bev_recall_{name}']:.3f}  recall(occluded objects) "
                         f"{s[f'bev_recall_occluded_{name}']:.3f}  "
                         f"IoU(all objects) {s[f'bev_iou_all_objects_{name}']:.3f}")
    lines.append("  median stage times [ms]: " + ", ".join(f"{k} {v:.1f}" for k, v in s["timings_ms"].items()))
    return "\n".join(lines)


def render_overview(frame: Any, res: FusionResult, bev_height: int | None = None) -> np.ndarray:
    """Side-by-side picture for people: ``[H, W', 3]`` uint8 RGB.

    Left: the camera image with amodal outlines (thin) and the clean per-instance LiDAR
    points projected back (dots), one colour per instance. Right: the BEV (see
    :func:`ros2_amodal_seg.fusion.bev.bev_to_rgb`) with the GT footprints outlined in blue.
    """
    import cv2

    from ros2_amodal_seg.fusion.bev import _instance_color, bev_to_rgb
    from ros2_amodal_seg.fusion.projection import transform_points

    img = frame.rgb.copy()
    H, W = img.shape[:2]
    cols = _instance_color(np.arange(1, len(res.instances.instances) + 1))
    for inst, col in zip(res.instances.instances, cols):
        cnts, _ = cv2.findContours(inst.amodal_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(img, cnts, -1, tuple(int(c) for c in col), 1)
    if len(res.instance_points):   # pinhole only: the world's images are undistorted
        pc = transform_points(np.linalg.inv(frame.T_base_camera), res.instance_points)
        ok = pc[:, 2] > 0
        uv = pc[ok, :2] / pc[ok, 2:3] * [frame.K[0, 0], frame.K[1, 1]] + [frame.K[0, 2], frame.K[1, 2]]
        for (u, v), i in zip(uv, res.instance_point_ids[ok]):
            cv2.circle(img, (int(u), int(v)), 2, tuple(int(c) for c in cols[i - 1]), -1)
    grid = res.grid
    scale = 4
    bev = bev_to_rgb(res.bev)                          # [cols, rows, 3], +x up, +y left
    big = cv2.resize(bev, (bev.shape[1] * scale, bev.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    for fp in frame.footprints:
        fp = np.asarray(fp)
        # image x = rows - r, image y = cols - c (r, c in cell units from the grid origin)
        c = (fp[:, 0] - grid.x_min) / grid.resolution
        r = (fp[:, 1] - grid.y_min) / grid.resolution
        pts = np.stack([grid.rows - r, grid.cols - c], axis=1) * scale
        pts = np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(big, [pts], True, (40, 90, 255), 1, lineType=cv2.LINE_AA, shift=4)
    th = bev_height or H
    big = cv2.resize(big, (int(round(big.shape[1] * th / big.shape[0])), th), interpolation=cv2.INTER_AREA)
    return np.concatenate([img, np.full((H, 8, 3), 255, np.uint8), big], axis=1)
