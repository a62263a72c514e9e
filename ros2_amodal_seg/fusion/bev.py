"""Bird's-eye-view grid: the grid object, its layers and costmap / PNG output.

:class:`BevGrid` is the one owner of the grid geometry (range, resolution, shape,
cell indexing); everything else asks it. Cell ``(r, c)`` covers
``[x_min + c * res, x_min + (c + 1) * res) x [y_min + r * res, y_min + (r + 1) * res)``
(row index grows with y, column index with x, as in ``nav_msgs/OccupancyGrid``);
the grid covers the half-open box ``[x_min, x_min + cols * res) x [y_min, y_min + rows * res)``:
a point exactly on a lower edge is inside, one exactly on an upper edge is outside.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ros2_amodal_seg.errors import ConfigError, InvalidInputError
from ros2_amodal_seg.types import BEV_LAYERS, BevGridData

#: Tolerance (in cells) that snaps coordinates lying on a cell edge up to float noise.
_EDGE_EPS = 1e-9


class BevGrid:
    """Regular 2-D grid in ``frame_id`` (default ``base_link``).

    Args:
        x_range, y_range: ``(min, max)`` extent [m]; the number of cells is
            ``ceil((max - min) / resolution)`` (the last cell may reach past max).
        resolution: cell edge [m] (> 0).
        frame_id: frame of the grid.

    Raises:
        ConfigError: empty range or non-positive resolution.
    """

    def __init__(self, *, x_range: tuple[float, float], y_range: tuple[float, float], resolution: float,
                 frame_id: str = "base_link") -> None:
        x0, x1 = float(x_range[0]), float(x_range[1])
        y0, y1 = float(y_range[0]), float(y_range[1])
        if not resolution > 0 or not np.isfinite(resolution):
            raise ConfigError(f"BEV resolution must be > 0, got {resolution}")
        if not (x1 > x0 and y1 > y0) or not np.all(np.isfinite([x0, x1, y0, y1])):
            raise ConfigError(f"BEV range must satisfy min < max, got x {x_range}, y {y_range}")
        self.resolution = float(resolution)
        self.x_min, self.y_min = x0, y0
        self.cols = int(np.ceil((x1 - x0) / self.resolution - 1e-6))
        self.rows = int(np.ceil((y1 - y0) / self.resolution - 1e-6))
        self.frame_id = frame_id
        self._polar_cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    # --- geometry -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return self.rows, self.cols

    @property
    def origin_xy(self) -> np.ndarray:
        """``[2]`` lower-left corner of cell (0, 0) [m]."""
        return np.array([self.x_min, self.y_min])

    @property
    def x_max(self) -> float:
        """Exclusive upper x bound actually covered [m]."""
        return self.x_min + self.cols * self.resolution

    @property
    def y_max(self) -> float:
        """Exclusive upper y bound actually covered [m]."""
        return self.y_min + self.rows * self.resolution

    def world_to_cell(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell of each point.

        Args:
            xy: ``[P, 2]`` (or ``[P, >=2]``) float, grid frame [m].

        Returns:
            ``(rows [P] int64, cols [P] int64, inside [P] bool)``; rows/cols are
            meaningful only where ``inside``.
        """
        xy = np.asarray(xy)
        if xy.dtype != np.float32:
            xy = xy.astype(np.float64, copy=False)
        if xy.ndim != 2 or xy.shape[1] < 2:
            raise InvalidInputError(f"xy must be [P, 2], got shape {xy.shape}")
        fc = (xy[:, 0] - self.x_min) / self.resolution
        fr = (xy[:, 1] - self.y_min) / self.resolution
        c = np.floor(fc + _EDGE_EPS * np.maximum(1.0, np.abs(fc)))
        r = np.floor(fr + _EDGE_EPS * np.maximum(1.0, np.abs(fr)))
        inside = (c >= 0) & (c < self.cols) & (r >= 0) & (r < self.rows)  # NaN -> False
        c = np.where(inside, c, 0).astype(np.int64)
        r = np.where(inside, r, 0).astype(np.int64)
        return r, c, inside

    def linear_index(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(lin [P'] int64 = r * cols + c, sel [P'] int64 rows of xy inside)``."""
        r, c, inside = self.world_to_cell(xy)
        sel = np.flatnonzero(inside)
        return r[sel] * self.cols + c[sel], sel

    def cell_to_world(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Centres ``[P, 2]`` float64 [m] of cells ``(rows [P], cols [P])``."""
        rows = np.asarray(rows, dtype=np.float64)
        cols = np.asarray(cols, dtype=np.float64)
        return np.stack([self.x_min + (cols + 0.5) * self.resolution,
                         self.y_min + (rows + 0.5) * self.resolution], axis=-1)

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x [rows, cols], y [rows, cols])`` float64 cell centres [m]."""
        xs = self.x_min + (np.arange(self.cols) + 0.5) * self.resolution
        ys = self.y_min + (np.arange(self.rows) + 0.5) * self.resolution
        return np.meshgrid(xs, ys)

    def rasterize_polygon(self, polygon: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Cells covered by a polygon (cv2.fillPoly on cell centres, outline included).

        Args:
            polygon: ``[K, 2]`` float vertices in the grid frame [m] (K >= 1).
            out: optional ``[rows, cols]`` uint8 buffer to draw 1 into.

        Returns:
            ``[rows, cols]`` uint8 (0/1).
        """
        if out is None:
            out = np.zeros(self.shape, np.uint8)
        poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(poly) == 0 or not np.all(np.isfinite(poly)):
            return out
        shift = 4
        pc = (poly - self.origin_xy) / self.resolution - 0.5   # cell-centre pixel coordinates
        pts = np.round(pc * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        if len(poly) >= 3:
            cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=shift)
        cv2.polylines(out, [pts], True, 1, lineType=cv2.LINE_8, shift=shift)
        return out

    def polar(self, sensor_xy: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell ``(range [rows*cols] m, azimuth bin [rows*cols] int64)`` from ``sensor_xy``
        (cached per sensor position and bin count)."""
        key = (round(float(sensor_xy[0]), 6), round(float(sensor_xy[1]), 6), int(bins))
        hit = self._polar_cache.get(key)
        if hit is None:
            x, y = self.cell_centers()
            dx, dy = x.ravel() - sensor_xy[0], y.ravel() - sensor_xy[1]
            hit = (np.hypot(dx, dy), azimuth_bin(dx, dy, bins))
            if len(self._polar_cache) > 8:
                self._polar_cache.clear()
            self._polar_cache[key] = hit
        return hit

    def __repr__(self) -> str:
        return (f"BevGrid(frame={self.frame_id!r}, x=[{self.x_min}, {self.x_max}), y=[{self.y_min}, {self.y_max}), "
                f"res={self.resolution}, shape={self.shape})")


def azimuth_bin(dx: np.ndarray, dy: np.ndarray, bins: int) -> np.ndarray:
    """Azimuth bin ``[P]`` int64 in ``[0, bins)`` of direction vectors (dx, dy)."""
    a = (np.arctan2(dy, dx) + np.pi) * (bins / (2 * np.pi))
    return np.minimum(a.astype(np.int64), bins - 1)


@dataclass(frozen=True)
class BevConfig:
    """BEV grid and costmap parameters.

    Attributes:
        frame_id: frame of the grid (the pipeline computes in base_link and maps with
            ``T_grid_base``).
        x_range, y_range: ``(min, max)`` [m]; resolution: cell edge [m].
        ground_method: ``"height"`` (ground = below ``ground_clearance_m``) or
            ``"ransac"`` (Open3D ``segment_plane`` on the low points, then height above it).
        ground_clearance_m: obstacle points are at least this high above ground [m].
        max_obstacle_height_m: points higher than this are ignored (overhangs) [m].
        ransac_distance_m, ransac_iterations, ransac_candidate_height_m: plane fit on
            points with ``|z| <`` candidate height.
        free_space: ray-cast free space (else every non-occupied cell is unknown).
        azimuth_bins: angular bins of the ray casting (about the LiDAR's azimuth steps).
        min_hits: obstacle points needed to mark a cell occupied.
        inferred_value: costmap value of inferred (amodal) cells (1..99).
        inferred_overrides_free: inferred cells win over ray-cast free cells.
    """

    frame_id: str = "base_link"
    x_range: tuple[float, float] = (0.0, 40.0)
    y_range: tuple[float, float] = (-20.0, 20.0)
    resolution: float = 0.2
    ground_method: str = "height"
    ground_clearance_m: float = 0.05
    max_obstacle_height_m: float = 5.0
    ransac_distance_m: float = 0.03
    ransac_iterations: int = 100
    ransac_candidate_height_m: float = 0.3
    free_space: bool = True
    azimuth_bins: int = 1024
    min_hits: int = 1
    inferred_value: int = 70
    inferred_overrides_free: bool = True

    def __post_init__(self) -> None:
        if self.ground_method not in ("height", "ransac"):
            raise ConfigError(f"ground_method must be height/ransac, got {self.ground_method!r}")
        if not 0 < self.inferred_value < 100:
            raise ConfigError(f"inferred_value must be in 1..99, got {self.inferred_value}")
        if self.azimuth_bins < 8 or self.min_hits < 1:
            raise ConfigError("azimuth_bins must be >= 8 and min_hits >= 1")
        BevGrid(x_range=self.x_range, y_range=self.y_range, resolution=self.resolution)  # validates

    def make_grid(self) -> BevGrid:
        return BevGrid(x_range=self.x_range, y_range=self.y_range, resolution=self.resolution,
                       frame_id=self.frame_id)


@dataclass
class BevInstance:
    """What the BEV needs of one instance (grid frame).

    Attributes: id, class_id; footprint ``[K, 2]`` m; height m (NaN unknown);
    rank (0 nearest); points ``[n, 3]`` clean hits [m].
    """

    id: int
    class_id: int
    footprint: np.ndarray
    height: float
    rank: int
    points: np.ndarray


def split_ground(points: np.ndarray, config: BevConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Classify points.

    Args:
        points: ``[P, 3]`` float64, grid frame (z up, ground near z = 0) [m].

    Returns:
        ``(obstacle [P] bool, ground [P] bool, warnings)``; points above
        ``max_obstacle_height_m`` are neither.
    """
    z = points[:, 2]
    warns: list[str] = []
    height = z
    if config.ground_method == "ransac":
        cand = np.flatnonzero(np.abs(z) < config.ransac_candidate_height_m)
        if cand.size >= 3:
            import open3d as o3d

            pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[cand]))
            o3d.utility.random.seed(0)
            plane, inl = pcd.segment_plane(config.ransac_distance_m, 3, config.ransac_iterations)
            a, b, c, d = plane
            if c < 0:
                a, b, c, d = -a, -b, -c, -d
            if c > 0.8:  # roughly horizontal: trust it
                height = (points[:, 0] * a + points[:, 1] * b + points[:, 2] * c + d) / np.linalg.norm([a, b, c])
            else:
                warns.append("RANSAC ground plane is not horizontal; fell back to the height threshold")
        else:
            warns.append("too few low points for a RANSAC ground plane; used the height threshold")
    obstacle = (height >= config.ground_clearance_m) & (z <= config.max_obstacle_height_m)
    ground = height < config.ground_clearance_m
    return obstacle, ground, warns


def build_bev(grid: BevGrid, points: np.ndarray | None, sensor_xy: np.ndarray, instances: list[BevInstance],
              config: BevConfig, stamp_ns: int = 0) -> tuple[BevGridData, np.ndarray, list[str]]:
    """Fill every layer of :data:`BEV_LAYERS` and the costmap.

    Args:
        grid: the grid. points: ``[P, 3]`` float32/float64 finite LiDAR points in the
            grid frame [m], or None. sensor_xy: ``[2]`` LiDAR origin in the grid frame [m].
        instances: per-instance footprints / hits (grid frame).
        config: thresholds; stamp_ns: header stamp.

    Returns:
        ``(bev, occupancy [rows, cols] int8, warnings)``; occupancy uses the
        ``nav_msgs/OccupancyGrid`` values -1 unknown, 0 free, 100 occupied and
        ``inferred_value`` for amodal-inferred cells.
    """
    rows, cols = grid.shape
    ncell = rows * cols
    warns: list[str] = []
    occ = np.full(ncell, np.nan, np.float32)
    height = np.full(ncell, np.nan, np.float32)
    inst_layer = np.zeros(ncell, np.float32)
    cls_layer = np.zeros(ncell, np.float32)
    occupied = np.zeros(ncell, bool)
    free = np.zeros(ncell, bool)
    if points is not None and len(points):
        obstacle, ground, w = split_ground(points, config)
        warns += w
        lin, sel = grid.linear_index(points[:, :2])
        ob = obstacle[sel]
        counts = np.bincount(lin[ob], minlength=ncell)
        occupied = counts >= config.min_hits
        zsel = points[sel[ob], 2]
        hmax = np.full(ncell, -np.inf, dtype=zsel.dtype)
        np.maximum.at(hmax, lin[ob], zsel)                 # same dtypes: numpy's fast path
        if config.free_space:
            rays = np.flatnonzero(obstacle | ground)
            d = points[rays, :2] - sensor_xy.astype(points.dtype)
            r = np.hypot(d[:, 0], d[:, 1])
            r_eff = np.where(obstacle[rays], r - grid.resolution, r + 0.5 * grid.resolution)
            b = azimuth_bin(d[:, 0], d[:, 1], config.azimuth_bins)
            free_r = np.zeros(config.azimuth_bins, dtype=r_eff.dtype)
            np.maximum.at(free_r, b, r_eff)
            cr, cb = grid.polar(sensor_xy, config.azimuth_bins)
            free = (cr <= free_r[cb]) & ~occupied
        occ[free] = 0.0
        height[free] = 0.0
        occ[occupied] = 1.0
        height[occupied] = hmax[occupied]
    inferred = np.zeros(ncell, np.uint8)
    buf = np.zeros(grid.shape, np.uint8)
    for inst in sorted(instances, key=lambda i: -i.rank):   # back to front: nearer ones overwrite
        cells = np.zeros(0, np.int64)
        if len(inst.footprint):
            buf[:] = 0
            grid.rasterize_polygon(inst.footprint, buf)
            cells = np.flatnonzero(buf.ravel())
        if len(inst.points):
            lin, _ = grid.linear_index(inst.points[:, :2])
            cells = np.union1d(cells, lin)
        if cells.size == 0:
            continue
        inst_layer[cells] = inst.id
        cls_layer[cells] = inst.class_id
        hid = cells[~occupied[cells]]
        inferred[hid] = 1
        if np.isfinite(inst.height):
            h = height[hid]
            height[hid] = np.where(np.isfinite(h), np.fmax(h, inst.height), inst.height)
    layers = {
        "occupancy": occ.reshape(rows, cols),
        "inferred_occupancy": inferred.astype(np.float32).reshape(rows, cols),
        "instance_id": inst_layer.reshape(rows, cols),
        "class_id": cls_layer.reshape(rows, cols),
        "height": height.reshape(rows, cols),
    }
    assert tuple(layers) == BEV_LAYERS
    bev = BevGridData(stamp_ns=int(stamp_ns), frame_id=grid.frame_id, resolution=grid.resolution,
                      origin_xy=grid.origin_xy, layers=layers)
    return bev, to_occupancy_grid(bev, config.inferred_value, config.inferred_overrides_free), warns


def to_occupancy_grid(bev: BevGridData, inferred_value: int = 70, inferred_overrides_free: bool = True
                      ) -> np.ndarray:
    """``nav_msgs/OccupancyGrid.data`` values as ``[rows, cols]`` int8 (row-major, row = y).

    -1 unknown, 0 free, 100 occupied, ``inferred_value`` for inferred cells that are
    not occupied (and not free unless ``inferred_overrides_free``).
    """
    occ = bev.layers["occupancy"]
    out = np.full(occ.shape, -1, np.int8)
    out[occ == 0] = 0
    inf = bev.layers["inferred_occupancy"] > 0
    if not inferred_overrides_free:
        inf &= ~(occ == 0)
    out[inf] = np.int8(inferred_value)
    out[occ == 1] = 100
    return out


def _instance_color(i: np.ndarray) -> np.ndarray:
    """Deterministic bright colour ``[..., 3]`` uint8 per id."""
    i = i.astype(np.int64)
    h = (i * 47) % 180
    hsv = np.stack([h, np.full_like(h, 200), np.full_like(h, 230)], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv.reshape(-1, 1, 3), cv2.COLOR_HSV2RGB).reshape(hsv.shape)


def bev_to_rgb(bev: BevGridData) -> np.ndarray:
    """Render for people: ``[cols, rows, 3]`` uint8 RGB with +x (forward) up and +y (left)
    to the left. Grey unknown, white free, black occupied, orange inferred; cells of an
    instance are tinted with its colour (dark where hit, light where inferred)."""
    occ = bev.layers["occupancy"]
    inf = bev.layers["inferred_occupancy"] > 0
    iid = bev.layers["instance_id"]
    img = np.full(occ.shape + (3,), 128, np.uint8)
    img[occ == 0] = 255
    img[inf] = (255, 160, 60)
    img[occ == 1] = 0
    has = iid > 0
    if has.any():
        col = _instance_color(iid[has]).astype(np.float32)
        base = img[has].astype(np.float32)
        hit = (occ[has] == 1)[:, None]
        img[has] = np.where(hit, 0.55 * col, 0.5 * base + 0.5 * col).astype(np.uint8)
    return np.ascontiguousarray(img.transpose(1, 0, 2)[::-1, ::-1])


def render_bev_png(bev: BevGridData, path: str | Path, min_size: int = 400) -> Path:
    """Write :func:`bev_to_rgb` as a PNG (nearest-neighbour upscaled to >= ``min_size`` px)."""
    rgb = bev_to_rgb(bev)
    scale = max(1, int(np.ceil(min_size / max(1, min(rgb.shape[:2])))))
    if scale > 1:
        rgb = cv2.resize(rgb, (rgb.shape[1] * scale, rgb.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise InvalidInputError(f"cannot write PNG {path}")
    return path
