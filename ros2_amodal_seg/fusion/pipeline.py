"""The fusion pipeline: 2-D amodal instances + LiDAR -> 3-D instances, occlusion graph, BEV.

Usage::

    from ros2_amodal_seg.fusion.pipeline import FusionPipeline, FusionConfig
    fp = FusionPipeline(config=FusionConfig.from_yaml("config/fusion.yaml"))
    res = fp.run(instances, points_lidar, K, D, T_camera_lidar, T_base_camera, stamp_ns=t)

No ROS import; the node only converts ``res`` to messages.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ros2_amodal_seg.classes import CLASSES
from ros2_amodal_seg.errors import ConfigError, EmptyInputError, InvalidInputError
from ros2_amodal_seg.fusion.bev import BevConfig, BevGrid, BevInstance, build_bev
from ros2_amodal_seg.fusion.instances3d import Instance3D, Instance3DConfig, extract_instances, mask_boxes
from ros2_amodal_seg.fusion.order import OrderConfig, build_occlusion_graph
from ros2_amodal_seg.fusion.projection import (ProjectionConfig, check_distortion, check_intrinsics, check_rigid,
                                               project_lidar, transform_points)
from ros2_amodal_seg.types import (AmodalInstanceArrayData, AmodalInstanceData, BevGridData, Instances2D,
                                   OcclusionGraphData)

_SECTIONS = {"projection": ProjectionConfig, "instances": Instance3DConfig, "order": OrderConfig, "bev": BevConfig}


@dataclass(frozen=True)
class FusionConfig:
    """Everything the fusion needs; ``config/fusion.yaml`` mirrors it section by section.

    Attributes:
        projection, instances, order, bev: component configs.
        base_frame: frame of the 3-D outputs (centroids, boxes, footprints).
    """

    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    instances: Instance3DConfig = field(default_factory=Instance3DConfig)
    order: OrderConfig = field(default_factory=OrderConfig)
    bev: BevConfig = field(default_factory=BevConfig)
    base_frame: str = "base_link"

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "FusionConfig":
        """Build from a nested dict (``{"bev": {"resolution": 0.1}, ...}``); missing keys
        keep their defaults.

        Raises:
            ConfigError: unknown section or field, or invalid values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"fusion config must be a mapping, got {type(data).__name__}")
        kw: dict[str, Any] = {}
        for key, value in data.items():
            if key == "base_frame":
                kw[key] = str(value)
                continue
            if key not in _SECTIONS:
                raise ConfigError(f"unknown fusion config section {key!r}; known: {sorted(_SECTIONS)} + base_frame")
            cls = _SECTIONS[key]
            known = {f.name for f in fields(cls)}
            bad = set(value or {}) - known
            if bad:
                raise ConfigError(f"fusion config section {key!r} has unknown fields {sorted(bad)}")
            vals = {k: tuple(v) if isinstance(v, list) else v for k, v in (value or {}).items()}
            try:
                kw[key] = cls(**vals)
            except TypeError as exc:
                raise ConfigError(f"fusion config section {key!r}: {exc}") from exc
        return FusionConfig(**kw)

    @staticmethod
    def from_yaml(path: str | Path, preset: str | None = None) -> "FusionConfig":
        """Read ``config/fusion.yaml``: top-level sections, plus optional
        ``presets: {name: {section: {field: value}}}`` overrides applied when ``preset`` is given.

        Raises:
            ConfigError: unreadable file, unknown preset / section / field.
        """
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read fusion config {path}: {exc}") from exc
        presets = data.pop("presets", {}) or {}
        if preset is not None:
            if preset not in presets:
                raise ConfigError(f"{path}: unknown preset {preset!r}; known: {sorted(presets)}")
            for sec, vals in (presets[preset] or {}).items():
                if isinstance(vals, dict):
                    data.setdefault(sec, {}).update(vals)
                else:
                    data[sec] = vals
        return FusionConfig.from_dict(data)

    @staticmethod
    def for_preset(name: str, source: str = "lidar") -> "FusionConfig":
        """Built-in settings for the synthetic world's presets (``"street"`` = the defaults,
        ``"tabletop"``: 1 cm cells over the table, finer gates), for a LiDAR or, with
        ``source="depth"``, a depth camera (:data:`DEPTH_OVERRIDES` on top; ``"none"`` = LiDAR's)."""
        cfg = FusionConfig._lidar_preset(name)
        if source == "depth":
            return cfg.replace(**{sec: dict(v) for sec, v in DEPTH_OVERRIDES[name].items()})
        if source not in ("lidar", "none"):
            raise ConfigError(f"unknown 3-D source {source!r}; choose lidar, depth or none")
        return cfg

    @staticmethod
    def _lidar_preset(name: str) -> "FusionConfig":
        if name == "street":
            return FusionConfig()
        if name == "tabletop":
            return FusionConfig(
                projection=ProjectionConfig(min_depth_m=0.02, max_range_m=10.0),
                instances=Instance3DConfig(ground_clearance_m=0.008, mode_window_abs_m=0.01,
                                           mode_window_rel=0.01, gate_abs_m=0.02, gate_rel=0.02),
                order=OrderConfig(lidar_scale_abs_m=0.01, lidar_scale_rel=0.02),
                bev=BevConfig(x_range=(0.0, 2.0), y_range=(-1.0, 1.0), resolution=0.01, ground_clearance_m=0.008,
                              max_obstacle_height_m=0.5, ransac_distance_m=0.004, ransac_candidate_height_m=0.03,
                              azimuth_bins=1024))
        raise ConfigError(f"unknown preset {name!r}; choose street or tabletop")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples as lists), as written to YAML."""
        def plain(d: dict) -> dict:
            return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {"base_frame": self.base_frame, **{s: plain(asdict(getattr(self, s))) for s in _SECTIONS}}

    def replace(self, **sections: Any) -> "FusionConfig":
        """Copy with whole sections or section fields replaced
        (``cfg.replace(bev={"resolution": 0.1})``)."""
        kw = {}
        for k, v in sections.items():
            kw[k] = replace(getattr(self, k), **v) if isinstance(v, dict) else v
        return replace(self, **kw)


#: the depth-camera variant of each preset: overrides per section on top of the preset
#: (``config/fusion.yaml`` ``presets: street_depth / tabletop_depth`` mirror them). A depth camera
#: gives every pixel of a mask a point (thousands per object instead of tens): the gated points of
#: an instance are thinned to ``max_points`` before the outlier removal. Its noise grows with the
#: square of the depth (0.2 m at 10 m): on the street the BEV's ground clearance rises from 5 to
#: 20 cm, or the noisy ground becomes obstacles. See docs/fusion.md, "Depth camera".
DEPTH_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "street": {"instances": {"max_points": 2000}, "bev": {"ground_clearance_m": 0.2}},
    "tabletop": {"instances": {"max_points": 2000}},
}


@dataclass
class FusionResult:
    """Output of :meth:`FusionPipeline.run` (see the module docstring of each part).

    Attributes:
        instances: 3-D instances (ids 1..N in input order; base_link geometry).
        graph: acyclic occlusion graph + front-to-back order.
        bev: BEV layers; occupancy: ``[rows, cols]`` int8 costmap values.
        instance_points: ``[P', 3]`` float32 clean per-instance points (base_link) [m];
            instance_point_ids: ``[P']`` int32 instance id of each.
        timings_ms: per-stage wall time [ms]; warnings: non-fatal problems.
        estimates: the raw per-instance :class:`Instance3D` (incl. surface centroids).
        grid: the :class:`BevGrid` used.
    """

    instances: AmodalInstanceArrayData
    graph: OcclusionGraphData
    bev: BevGridData
    occupancy: np.ndarray
    instance_points: np.ndarray
    instance_point_ids: np.ndarray
    timings_ms: dict[str, float]
    warnings: list[str]
    estimates: list[Instance3D]
    grid: BevGrid


def _check_instances(instances: Instances2D, K: np.ndarray, image_size: tuple[int, int] | None) -> tuple[int, int]:
    if not isinstance(instances, Instances2D):
        raise InvalidInputError(f"instances must be an Instances2D, got {type(instances).__name__}")
    H, W = instances.image_size
    if image_size is not None and (int(image_size[0]), int(image_size[1])) != (H, W):
        raise InvalidInputError(f"masks are {H}x{W} but the image is {image_size[0]}x{image_size[1]}")
    if not (0 <= K[0, 2] <= W and 0 <= K[1, 2] <= H):
        raise InvalidInputError(f"masks are {H}x{W} (HxW) but K's principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) "
                                "lies outside such an image: wrong mask size or wrong K")
    return H, W


class FusionPipeline:
    """Stateless per frame (only the BEV grid and its polar cache persist).

    Args:
        config: :class:`FusionConfig`.
    """

    def __init__(self, *, config: FusionConfig = FusionConfig()) -> None:
        self.config = config
        self.grid = config.bev.make_grid()

    def run(self, instances: Instances2D, points_lidar: np.ndarray | None, K: np.ndarray, D: np.ndarray | None,
            T_camera_lidar: np.ndarray, T_base_camera: np.ndarray, *, stamp_ns: int = 0,
            camera_frame: str = "camera_optical_frame", class_names: dict[int, str] | None = None,
            image_size: tuple[int, int] | None = None, T_grid_base: np.ndarray | None = None) -> FusionResult:
        """Fuse one frame.

        Args:
            instances: ``Instances2D``, masks ``[N, H, W]`` bool in the camera image.
            points_lidar: ``[P, >=3]`` float32 (x, y, z[, intensity]) in the lidar frame [m],
                or None (2-D only: no depth, no 3-D, unknown BEV).
            K: ``[3, 3]`` float64 intrinsics [px]. D: ``[5]`` float64 plumb_bob, or None.
            T_camera_lidar: ``[4, 4]`` float64, ``p_camera = T @ p_lidar``.
            T_base_camera: ``[4, 4]`` float64, ``p_base = T @ p_camera`` (ground is z = 0 of base).
            stamp_ns: header stamp [ns]. camera_frame: frame id of the image.
            class_names: id -> name (default: the synthetic world's classes).
            image_size: optional ``(H, W)`` the masks must have.
            T_grid_base: optional ``[4, 4]`` rigid, ``p_grid = T @ p_base`` when the grid
                frame (``config.bev.frame_id``) is not base_link (default identity).

        Returns:
            :class:`FusionResult`.

        Raises:
            GeometryError: zero focal length / bad K, bad D, non-rigid transform.
            InvalidInputError: wrong mask size or malformed cloud.
        """
        cfg = self.config
        warns: list[str] = []
        timings: dict[str, float] = {}
        K = check_intrinsics(K)
        D = check_distortion(D)
        T_cl = check_rigid(T_camera_lidar, "T_camera_lidar", cfg.projection.rigid_atol)
        T_bc = check_rigid(T_base_camera, "T_base_camera", cfg.projection.rigid_atol)
        T_gb = np.eye(4) if T_grid_base is None else check_rigid(T_grid_base, "T_grid_base",
                                                                  cfg.projection.rigid_atol)
        H, W = _check_instances(instances, K, image_size)
        n = len(instances)
        names = dict(CLASSES if class_names is None else class_names)

        # --- projection ---
        t0 = time.perf_counter()
        amodal = instances.amodal_masks.astype(bool, copy=False)
        visible = instances.visible_masks.astype(bool, copy=False)
        proj = None
        if points_lidar is None:
            warns.append("no LiDAR cloud: 2-D only (no depth, no 3-D geometry, BEV unknown)")
        else:
            try:
                proj, w = project_lidar(points_lidar, K, D, T_cl, (H, W), cfg.projection)
                warns += w
            except EmptyInputError as exc:
                warns.append(f"LiDAR cloud unusable ({exc}): 2-D only")
        # every finite point in base_link, once (the instances and the BEV share it)
        T_bl = T_bc @ T_cl
        pts_base_all = transform_points(T_bl, proj.cloud_xyz) if proj is not None else None
        t1 = time.perf_counter()
        timings["projection"] = 1e3 * (t1 - t0)

        # --- per-instance 3-D ---
        aboxes = mask_boxes(amodal)
        if proj is not None and n:
            est, pts_base_proj, w = extract_instances(proj, instances, K, D, T_bc, cfg.instances, amodal_boxes=aboxes,
                                                      vis_boxes=mask_boxes(visible),
                                                      points_base=pts_base_all[proj.kept])
            warns += w
        else:
            est = [Instance3D() for _ in range(n)]
            pts_base_proj = np.zeros((0, 3))
        t2 = time.perf_counter()
        timings["instances"] = 1e3 * (t2 - t1)

        # --- order ---
        depths = np.array([e.depth_m for e in est], np.float64)
        order = build_occlusion_graph(amodal, visible, instances.order_scores, depths, cfg.order,
                                      amodal_boxes=aboxes)
        if order.dropped:
            warns.append(f"occlusion graph: dropped {len(order.dropped)} edge(s) to break cycles")
        t3 = time.perf_counter()
        timings["order"] = 1e3 * (t3 - t2)

        # --- BEV ---
        T_gl = T_gb @ T_bl
        pts_grid = None
        if pts_base_all is not None:
            pts_grid = pts_base_all if T_grid_base is None else transform_points(T_gb, pts_base_all)
            pts_grid = pts_grid.astype(np.float32)
        sensor_xy = T_gl[:2, 3]
        bev_inst = []
        for k, e in enumerate(est):
            fp = e.footprint
            if len(fp) and T_grid_base is not None:
                fp = transform_points(T_gb, np.c_[fp, np.zeros(len(fp))])[:, :2]
            pts = transform_points(T_gb, pts_base_proj[e.point_index]) if e.num_points else np.zeros((0, 3))
            bev_inst.append(BevInstance(id=k + 1, class_id=int(instances.class_ids[k]), footprint=fp,
                                        height=e.height, rank=int(order.rank[k]), points=pts))
        bev, occ, w = build_bev(self.grid, pts_grid, sensor_xy, bev_inst, cfg.bev, stamp_ns)
        warns += w
        t4 = time.perf_counter()
        timings["bev"] = 1e3 * (t4 - t3)
        timings["total"] = 1e3 * (t4 - t0)

        # --- assemble ---
        occluders: list[list[int]] = [[] for _ in range(n)]
        for e in order.edges:
            occluders[e.occludee_id - 1].append(e.occluder_id)
        out = []
        for k, e in enumerate(est):
            cid = int(instances.class_ids[k])
            out.append(AmodalInstanceData(
                id=k + 1, class_id=cid, class_name=names.get(cid, f"unknown_{cid}"),
                score=float(instances.scores[k]), occlusion_rate=float(instances.occlusion_rates[k]),
                amodal_mask=amodal[k], visible_mask=visible[k], depth_rank=int(order.rank[k]),
                depth_m=float(e.depth_m), order_score=float(instances.order_scores[k]), frame_id=cfg.base_frame,
                centroid=np.asarray(e.centroid, np.float64), box_size=np.asarray(e.box_size, np.float64),
                box_orientation=np.asarray(e.box_quat, np.float64), num_points=e.num_points,
                footprint=np.asarray(e.footprint, np.float64), occluded_by=sorted(occluders[k])))
        if proj is not None and n:
            ids = np.concatenate([np.full(e.num_points, k + 1, np.int32) for k, e in enumerate(est)])
            idx = np.concatenate([e.point_index for e in est]).astype(np.int64)
            ipts = pts_base_proj[idx].astype(np.float32)
        else:
            ids, ipts = np.zeros(0, np.int32), np.zeros((0, 3), np.float32)
        return FusionResult(
            instances=AmodalInstanceArrayData(stamp_ns=int(stamp_ns), frame_id=camera_frame, image_height=H,
                                              image_width=W, instances=out),
            graph=OcclusionGraphData(stamp_ns=int(stamp_ns), frame_id=camera_frame, edges=order.edges,
                                     order=order.order),
            bev=bev, occupancy=occ, instance_points=ipts, instance_point_ids=ids, timings_ms=timings,
            warnings=warns, estimates=est, grid=self.grid)
