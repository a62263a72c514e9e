"""Per-instance 3-D estimates from LiDAR points inside the visible masks.

For each instance:

1. take the projected LiDAR points whose pixel lies in the instance's VISIBLE
   mask, eroded by ``erode_px`` at its borders (so that background points seen
   past the silhouette do not leak in);
2. drop ground hits (``z < ground_clearance_m`` in base_link, the ground/table is
   the plane z = 0);
3. depth gating: find the dominant depth mode (densest window, nearest of the
   near-densest ones) and keep points within a gate around it whose half-width
   grows with depth and with the instance's metric width;
4. Open3D statistical outlier removal (or DBSCAN, keeping the largest cluster);
5. from the clean points: ``depth_m`` (median camera z), a surface centroid, an
   object-centre estimate (see :func:`estimate_center`), a box and a ground
   footprint, completed for the occluded part with the AMODAL mask:
   amodal-only pixels are back-projected at the instance's depth and dropped onto
   the ground plane, and the footprint is made centrally symmetric about the
   estimated centre (every class of the world -- box, cylinder, sphere, cone,
   torus -- has a point-symmetric footprint).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.fusion.projection import Projection, transform_points
from ros2_amodal_seg.transforms import rotation_to_quaternion
from ros2_amodal_seg.types import Instances2D


@dataclass(frozen=True)
class Instance3DConfig:
    """Per-instance extraction parameters.

    Attributes:
        erode_px: erosion of the visible mask [px] before point selection (0: none).
        erode_min_keep: erode less (down to not at all) when erosion would keep less than
            this share of the mask's pixels.
        ground_clearance_m: points lower than this above z = 0 of base_link are ground [m].
        mode_window_abs_m, mode_window_rel: width of the window used to find the
            dominant depth mode: ``abs + rel * depth`` [m].
        gate_abs_m, gate_rel, gate_width_factor: half-width of the depth gate
            around the mode: ``max(abs, rel * depth, factor * metric mask width)`` [m].
        near_mode_ratio: among windows holding >= this share of the densest one,
            the nearest wins (occluded background is farther than the object).
        outlier_method: ``"statistical"`` (Open3D), ``"dbscan"`` (Open3D) or ``"none"``.
        sor_neighbors, sor_std_ratio: statistical outlier removal parameters.
        dbscan_eps_rel, dbscan_eps_min_m, dbscan_min_points: DBSCAN radius
            ``max(min, rel * depth)`` [m] and core size.
        min_points: fewer clean points than this -> no 3-D estimate (NaN).
        max_points: more gated points than this are thinned to this many, evenly over the
            mask's rows, before the outlier removal (0: no limit). Bounds the per-instance cost
            for dense input (a depth camera gives every mask pixel a point: an object near the
            camera has tens of thousands); the estimates are medians, percentiles and hulls,
            which an even thinning keeps.
        use_amodal: extend the footprint / centre with the amodal mask.
        amodal_backprojection: ``"range"`` (amodal pixels cut at the instance's
            horizontal distance from the camera) or ``"depth"`` (at its camera-z depth);
            see :func:`backproject_to_ground`. Used for the footprint's amodal-only part.
        center_backprojection: the same choice for the amodal hull that widens the
            lateral extent of the centre estimate and for the amodal top row.
        footprint_lateral_extremes: add the two lateral extremes at the centre's depth
            (centre +- width / 2 across the viewing direction) to the footprint.
        perspective_gain: weight of the tangent-point correction of the centre
            (see :func:`estimate_center`); flat_ratio: its flat-face test.
        box_mode: ``"upright"`` (yaw-only box on the ground, from the footprint's
            minimum-area rectangle) or ``"open3d"`` (Open3D oriented box of the
            completed points).
    """

    erode_px: int = 2
    erode_min_keep: float = 0.5
    ground_clearance_m: float = 0.05
    mode_window_abs_m: float = 0.05
    mode_window_rel: float = 0.03
    gate_abs_m: float = 0.1
    gate_rel: float = 0.05
    gate_width_factor: float = 1.0
    near_mode_ratio: float = 0.5
    outlier_method: str = "statistical"
    sor_neighbors: int = 8
    sor_std_ratio: float = 2.5
    dbscan_eps_rel: float = 0.03
    dbscan_eps_min_m: float = 0.01
    dbscan_min_points: int = 3
    min_points: int = 3
    max_points: int = 0
    use_amodal: bool = True
    amodal_backprojection: str = "range"
    center_backprojection: str = "depth"
    footprint_lateral_extremes: bool = True
    perspective_gain: float = 1.0
    flat_ratio: float = 1.0
    box_mode: str = "upright"

    def __post_init__(self) -> None:
        if self.outlier_method not in ("statistical", "dbscan", "none"):
            raise ConfigError(f"outlier_method must be statistical/dbscan/none, got {self.outlier_method!r}")
        if self.box_mode not in ("upright", "open3d"):
            raise ConfigError(f"box_mode must be upright/open3d, got {self.box_mode!r}")
        for name in ("amodal_backprojection", "center_backprojection"):
            if getattr(self, name) not in ("range", "depth"):
                raise ConfigError(f"{name} must be range/depth, got {getattr(self, name)!r}")
        if self.erode_px < 0 or self.min_points < 1:
            raise ConfigError("erode_px must be >= 0 and min_points >= 1")
        if self.max_points != 0 and self.max_points < max(self.min_points, 20):
            raise ConfigError(f"max_points must be 0 (no limit) or >= max(min_points, 20), got {self.max_points}")


@dataclass
class Instance3D:
    """3-D estimate of one instance (all base_link, metres; NaN when unknown).

    Attributes:
        depth_m: median camera-optical z of the clean points.
        centroid: ``[3]`` estimated object centre. surface_centroid: ``[3]`` mean of
            the clean points (biased towards the sensor).
        box_center, box_size: ``[3]`` each; box_quat ``[4]`` xyzw (base_link).
        footprint: ``[K, 2]`` ground polygon incl. the amodal (hidden) extension.
        visible_footprint: ``[K', 2]`` hull of the clean points' ground projection only.
        height: top of the object above ground [m].
        point_index: ``[n]`` int64 rows of the clean points in the projection.
    """

    depth_m: float = float("nan")
    centroid: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    surface_centroid: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    box_center: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    box_size: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    box_quat: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))
    footprint: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    visible_footprint: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    height: float = float("nan")
    point_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def num_points(self) -> int:
        return int(self.point_index.size)


def dominant_depth_mode(depth: np.ndarray, window: float, near_ratio: float = 0.5) -> float:
    """Centre of the dominant depth mode.

    Args:
        depth: ``[n]`` float depths [m] (n >= 1).
        window: width of the sliding window [m].
        near_ratio: windows holding >= ``near_ratio`` x the densest count compete;
            the nearest of them wins.

    Returns:
        Median depth of the points in the winning window [m].
    """
    d = np.sort(np.asarray(depth, dtype=np.float64))
    counts = np.searchsorted(d, d + window, side="right") - np.arange(d.size)
    best = counts.max()
    k = int(np.flatnonzero(counts >= near_ratio * best)[0])
    return float(np.median(d[k:k + counts[k]]))


def _remove_outliers(pts: np.ndarray, depth: float, cfg: Instance3DConfig) -> np.ndarray:
    """Boolean keep mask ``[n]`` after Open3D outlier removal of ``pts [n, 3]``."""
    n = len(pts)
    if cfg.outlier_method == "none" or n < max(5, cfg.min_points):
        return np.ones(n, bool)
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    keep = np.zeros(n, bool)
    if cfg.outlier_method == "statistical":
        _, idx = pcd.remove_statistical_outlier(nb_neighbors=int(min(cfg.sor_neighbors, n - 1)),
                                                std_ratio=float(cfg.sor_std_ratio))
        keep[np.asarray(idx, dtype=np.int64)] = True
    else:
        eps = max(cfg.dbscan_eps_min_m, cfg.dbscan_eps_rel * depth)
        labels = np.asarray(pcd.cluster_dbscan(eps=eps, min_points=int(cfg.dbscan_min_points)))
        if (labels >= 0).any():
            keep = labels == np.bincount(labels[labels >= 0]).argmax()
    return keep


def backproject_pixels(uv: np.ndarray, depth: float, K: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Pixels ``[n, 2]`` (u, v) at camera-z ``depth`` -> ``[n, 3]`` camera-frame points [m]."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 1, 2)
    if np.any(D != 0):
        xy = cv2.undistortPoints(uv, K, D).reshape(-1, 2)
    else:
        xy = np.empty((len(uv), 2))
        xy[:, 1] = (uv[:, 0, 1] - K[1, 2]) / K[1, 1]
        xy[:, 0] = (uv[:, 0, 0] - K[0, 2] - K[0, 1] * xy[:, 1]) / K[0, 0]
    return np.concatenate([xy * depth, np.full((len(xy), 1), depth)], axis=1)


def backproject_to_ground(uv: np.ndarray, depth: float, ground_range: float, K: np.ndarray, D: np.ndarray,
                         T_base_camera: np.ndarray, mode: str = "range") -> np.ndarray:
    """Back-project pixels "at the instance's depth" into base_link.

    Args:
        uv: ``[n, 2]`` pixels (u, v). depth: camera-z depth [m] (``mode="depth"``).
        ground_range: horizontal distance from the camera [m] (``mode="range"``: each
            ray is cut where its ground-plane projection is this far from the camera,
            which is what "the instance's depth" means for a camera pitched down).
        K, D: intrinsics / plumb_bob. T_base_camera: ``[4, 4]`` ``p_base = T @ p_camera``.

    Returns:
        ``[n, 3]`` float64 base_link points [m] (rays that never reach that range are dropped).
    """
    if mode == "depth":
        return transform_points(T_base_camera, backproject_pixels(uv, depth, K, D))
    T_rot = T_base_camera.copy()
    T_rot[:3, 3] = 0.0
    rays = transform_points(T_rot, backproject_pixels(uv, 1.0, K, D))           # [n, 3] base directions
    h = np.hypot(rays[:, 0], rays[:, 1])
    ok = h > 1e-6
    return T_base_camera[:3, 3] + rays[ok] * (ground_range / h[ok])[:, None]


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Bounding boxes ``[N, 4]`` int64 ``(r0, r1, c0, c1)`` (exclusive ends) of ``[N, H, W]``
    bool masks; an empty mask gets ``(0, 0, 0, 0)``."""
    n = len(masks)
    out = np.zeros((n, 4), np.int64)
    if n == 0:
        return out
    rows_any = masks.any(axis=2)                                   # [N, H]
    cols_any = masks.any(axis=1)                                   # [N, W]
    H, W = rows_any.shape[1], cols_any.shape[1]
    has = rows_any.any(axis=1)
    out[:, 0] = np.argmax(rows_any, axis=1)
    out[:, 1] = H - np.argmax(rows_any[:, ::-1], axis=1)
    out[:, 2] = np.argmax(cols_any, axis=1)
    out[:, 3] = W - np.argmax(cols_any[:, ::-1], axis=1)
    out[~has] = 0
    return out


def mask_hull_pixels(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Convex-hull vertices ``[k, 2]`` float64 (u, v) of a bool mask, pixel corners
    included (a one-pixel mask gives its four corners); ``[0, 2]`` if empty.

    Args:
        mask: ``[h, w]`` bool (a crop is fine). offset: ``(row, col)`` of the crop's
            top-left pixel in the image.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros((0, 2))
    m = mask[rows]
    left = np.argmax(m, axis=1)
    right = m.shape[1] - np.argmax(m[:, ::-1], axis=1)           # exclusive
    r = rows.astype(np.float64)
    pts = np.concatenate([np.c_[left, r], np.c_[right, r], np.c_[left, r + 1], np.c_[right, r + 1]], axis=0)
    pts = pts + (offset[1], offset[0])
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)


def convex_hull_xy(xy: np.ndarray) -> np.ndarray:
    """Convex hull ``[K, 2]`` float64 of ground points ``[n, 2]`` (``[0, 2]`` if n == 0)."""
    if len(xy) == 0:
        return np.zeros((0, 2))
    return cv2.convexHull(np.ascontiguousarray(xy, dtype=np.float32)).reshape(-1, 2).astype(np.float64)


def estimate_center(pts_xy: np.ndarray, top: float, sensor_xy: np.ndarray,
                    amodal_xy: np.ndarray | None = None, rim_share: float = 0.15,
                    perspective_gain: float = 1.0, flat_ratio: float = 1.0, return_extent: bool = False):
    """Object centre from its visible surface points and the known ground plane.

    LiDAR only sees the surface facing the sensor, so the mean of the points is
    biased towards it. With ``v`` the horizontal viewing direction and ``u`` the
    lateral one: the centre's lateral coordinate is the middle of the lateral
    extent (visible points, widened by the amodal mask's extent when given); its
    coordinate along ``v`` is the depth of the lateral rims (the silhouette
    tangents of round objects and the side corners of a box both lie at the
    centre's depth), but at least the middle of the points' depth spread (objects
    whose top is seen), and when the points show no depth structure (a flat face
    seen head-on) the near face plus half the width. ``z = top / 2`` (resting on
    z = 0).

    Args:
        pts_xy: ``[n, 2]`` base_link ground coordinates of the clean points [m].
        top: object top height [m]. sensor_xy: ``[2]`` sensor position [m].
        amodal_xy: ``[k, 2]`` ground coordinates of the back-projected amodal hull, or None.
        rim_share: share of the lateral extent that counts as a rim.
        perspective_gain: weight of the ``r^2 / d`` tangent-point correction (1 exact
            for round objects, 0 exact for boxes).
        flat_ratio: points whose depth spread is below this share of the width show a
            flat face: the centre is then at least half the width behind the near face.

    Returns:
        ``[3]`` float64 centre in base_link [m]; with ``return_extent`` also the lateral
        unit vector ``[2]`` and the lateral width [m].
    """
    med = np.median(pts_xy, axis=0)
    vdir = med - sensor_xy
    nrm = np.linalg.norm(vdir)
    vdir = vdir / nrm if nrm > 1e-9 else np.array([1.0, 0.0])
    udir = np.array([-vdir[1], vdir[0]])
    rel = pts_xy - sensor_xy
    su = rel[:, 0] * udir[0] + rel[:, 1] * udir[1]
    sv = rel[:, 0] * vdir[0] + rel[:, 1] * vdir[1]
    u_lo, u_hi = np.percentile(su, [1, 99]) if len(su) >= 20 else (su.min(), su.max())
    v_lo, v_hi = np.percentile(sv, [2, 98]) if len(sv) >= 20 else (sv.min(), sv.max())
    w_pts = max(u_hi - u_lo, 1e-6)
    occ_lo = occ_hi = False
    a_lo, a_hi = u_lo, u_hi
    if amodal_xy is not None and len(amodal_xy):
        au = (amodal_xy[:, 0] - sensor_xy[0]) * udir[0] + (amodal_xy[:, 1] - sensor_xy[1]) * udir[1]
        tol = 0.05 * w_pts
        occ_lo = au.min() < u_lo - tol
        occ_hi = au.max() > u_hi + tol
        a_lo, a_hi = min(u_lo, au.min()), max(u_hi, au.max())
    width = a_hi - a_lo
    cu = 0.5 * (a_lo + a_hi)
    rims = []
    band = rim_share * w_pts
    if not occ_lo:
        rims.append(np.median(sv[su <= u_lo + band]))
    if not occ_hi:
        rims.append(np.median(sv[su >= u_hi - band]))
    v_sym = v_lo + 0.5 * width
    v_rim = float(np.mean(rims)) if rims else v_sym
    if rims and v_rim > 0:
        # silhouette tangents of a round object lie r^2 / d in front of its centre
        v_rim += perspective_gain * (0.5 * width) ** 2 / v_rim
    cv = max(v_rim, 0.5 * (v_lo + v_hi))
    if v_hi - v_lo < flat_ratio * width:
        cv = max(cv, v_sym)
    cv = min(cv, v_lo + width)  # at most one width behind the near face
    c = sensor_xy + cu * udir + cv * vdir
    if return_extent:
        return np.array([c[0], c[1], 0.5 * top]), udir, float(width)
    return np.array([c[0], c[1], 0.5 * top])


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])


def extract_instances(proj: Projection, instances: Instances2D, K: np.ndarray, D: np.ndarray,
                      T_base_camera: np.ndarray, config: Instance3DConfig = Instance3DConfig(), *,
                      vis_boxes: np.ndarray | None = None, amodal_boxes: np.ndarray | None = None,
                      points_base: np.ndarray | None = None) -> tuple[list[Instance3D], np.ndarray, list[str]]:
    """3-D estimates for every instance.

    Args:
        proj: projection of the cloud into this image (:func:`project_lidar`).
        instances: ``Instances2D`` with ``[N, H, W]`` masks matching the image.
        K: ``[3, 3]`` float64 intrinsics [px]; D: ``[5]`` float64 plumb_bob.
        T_base_camera: ``[4, 4]`` float64, ``p_base = T @ p_camera``.
        config: extraction parameters.
        vis_boxes, amodal_boxes: optional precomputed :func:`mask_boxes` ``[N, 4]``.
        points_base: optional ``[M, 3]`` float64 projected points already in base_link.

    Returns:
        ``(estimates [N], points_base [M, 3] float64 (every projected point in
        base_link), warnings)``; ``estimates[k].point_index`` indexes ``points_base``.
    """
    H, W = instances.image_size
    warns: list[str] = []
    pts_base = transform_points(T_base_camera, proj.points_cam) if points_base is None else points_base  # [M, 3]
    sensor_xy = T_base_camera[:2, 3]
    T_camera_base = np.linalg.inv(T_base_camera)
    fx = K[0, 0]
    # candidate points (in the image, above the ground), sorted by row so that an
    # instance's bounding-box rows are one contiguous slice
    cand = np.flatnonzero(proj.in_image & (pts_base[:, 2] >= config.ground_clearance_m))
    cand = cand[np.argsort(proj.pixel_rc[cand, 0], kind="stable")]
    rr, cc = proj.pixel_rc[cand, 0], proj.pixel_rc[cand, 1]
    kernel = np.ones((3, 3), np.uint8)
    vboxes = mask_boxes(instances.visible_masks) if vis_boxes is None else vis_boxes
    aboxes = mask_boxes(instances.amodal_masks) if amodal_boxes is None else amodal_boxes
    out: list[Instance3D] = []
    for k in range(len(instances)):
        est = Instance3D()
        out.append(est)
        vis = instances.visible_masks[k]
        amodal = instances.amodal_masks[k]
        r0, r1, c0, c1 = (int(v) for v in vboxes[k])
        if r1 <= r0:
            warns.append(f"instance {k + 1}: empty visible mask, no 3-D estimate")
            continue
        m = vis[r0:r1, c0:c1].astype(np.uint8)
        if config.erode_px > 0:
            # erode, but keep at least ``erode_min_keep`` of the mask (thin / small masks)
            pad = config.erode_px
            mp = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
            area = int(m.sum())
            for it in range(config.erode_px, 0, -1):
                em = cv2.erode(mp, kernel, iterations=it)[pad:-pad, pad:-pad]
                if em.sum() >= config.erode_min_keep * area:
                    m = em
                    break
        lo, hi = np.searchsorted(rr, [r0, r1])
        c_sl = cc[lo:hi]
        idx = lo + np.flatnonzero((c_sl >= c0) & (c_sl < c1))
        idx = cand[idx[m[rr[idx] - r0, cc[idx] - c0] > 0]]
        if idx.size == 0:
            warns.append(f"instance {k + 1}: no LiDAR hits in its visible mask (depth unknown)")
            continue
        depth = proj.depth[idx]
        width_m = (c1 - c0) * float(np.median(depth)) / fx
        mode = dominant_depth_mode(depth, config.mode_window_abs_m + config.mode_window_rel * float(np.median(depth)),
                                   config.near_mode_ratio)
        gate = max(config.gate_abs_m, config.gate_rel * mode, config.gate_width_factor * width_m)
        idx = idx[np.abs(depth - mode) <= gate]
        if config.max_points and idx.size > config.max_points:
            idx = idx[np.linspace(0, idx.size - 1, config.max_points).round().astype(np.int64)]
        keep = _remove_outliers(pts_base[idx], mode, config)
        idx = idx[keep]
        if idx.size < config.min_points:
            warns.append(f"instance {k + 1}: only {idx.size} clean LiDAR hits (< {config.min_points}), "
                         "no 3-D estimate")
            continue
        est.point_index = idx
        p = pts_base[idx]
        est.depth_m = float(np.median(proj.depth[idx]))
        est.surface_centroid = p.mean(axis=0)
        top = float(np.percentile(p[:, 2], 98)) if len(p) >= 20 else float(p[:, 2].max())
        est.height = top
        amodal_xy = None
        extra_xy = np.zeros((0, 2))
        ar0, ar1, ac0, ac1 = (int(v) for v in aboxes[k])
        if config.use_amodal and ar1 > ar0:
            a_crop = amodal[ar0:ar1, ac0:ac1]
            a_hull = mask_hull_pixels(a_crop, (ar0, ac0))
            rho = float(np.median(np.hypot(p[:, 0] - T_base_camera[0, 3], p[:, 1] - T_base_camera[1, 3])))
            mode = config.amodal_backprojection
            amodal_xy = backproject_to_ground(a_hull, est.depth_m, rho, K, D, T_base_camera,
                                              config.center_backprojection)[:, :2]
            h_hull = mask_hull_pixels(a_crop & ~vis[ar0:ar1, ac0:ac1], (ar0, ac0))
            if len(h_hull):
                extra_xy = backproject_to_ground(h_hull, est.depth_m, rho, K, D, T_base_camera, mode)[:, :2]
        center, udir, width = estimate_center(p[:, :2], top, sensor_xy, amodal_xy,
                                              perspective_gain=config.perspective_gain,
                                              flat_ratio=config.flat_ratio, return_extent=True)
        if config.use_amodal and ar0 > 0 and ar1 > ar0:
            # the LiDAR's beams may miss the top: the amodal mask's top row (not cut by the
            # image border), back-projected at the centre's camera depth, bounds it too
            cols_top = np.flatnonzero(amodal[ar0])
            z_c = float(T_camera_base[2, :3] @ center + T_camera_base[2, 3])
            rho_c = float(np.hypot(*(center[:2] - T_base_camera[:2, 3])))
            if cols_top.size and z_c > 0:
                uv_top = np.array([[0.5 * (cols_top[0] + cols_top[-1] + 1), ar0 + 0.5]])
                top3 = backproject_to_ground(uv_top, z_c, rho_c, K, D, T_base_camera, config.center_backprojection)
                top_mask = float(top3[0, 2]) if len(top3) else -np.inf
                if top_mask > top:
                    top = top_mask
                    est.height = top
                    center[2] = 0.5 * top
        est.centroid = center
        est.visible_footprint = convex_hull_xy(p[:, :2])
        base = np.concatenate([est.visible_footprint, extra_xy], axis=0)
        if config.footprint_lateral_extremes:
            # the lateral extremes of a box (side corners) or a round object (silhouette
            # tangents) lie at the centre's depth: they bound the footprint too
            base = np.concatenate([base, center[:2] + np.outer([-0.5 * width, 0.5 * width], udir)], axis=0)
        sym = np.concatenate([base, 2 * center[:2] - base], axis=0)
        est.footprint = convex_hull_xy(sym)
        if config.box_mode == "upright":
            (bx, by), (bw, bh), ang = cv2.minAreaRect(est.footprint.astype(np.float32))
            est.box_center = np.array([bx, by, 0.5 * top])
            est.box_size = np.array([bw, bh, top])
            est.box_quat = _yaw_quat(np.deg2rad(ang))
        else:
            import open3d as o3d

            cloud = np.concatenate([p, np.c_[2 * center[:2] - p[:, :2], p[:, 2]],
                                    np.c_[est.footprint, np.zeros(len(est.footprint))]], axis=0)
            obb = o3d.geometry.OrientedBoundingBox.create_from_points(o3d.utility.Vector3dVector(cloud))
            est.box_center = np.asarray(obb.center, dtype=np.float64)
            est.box_size = np.asarray(obb.extent, dtype=np.float64)
            est.box_quat = rotation_to_quaternion(obb.R)
    return out, pts_base, warns
