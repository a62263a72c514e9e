"""Random scene construction from a seed (no rendering, no ROS imports).

A :class:`SceneSpec` holds every object's triangle mesh in ``base_link``, the
background meshes (ground / table / floor), the camera and LiDAR poses and the
appearance parameters. It depends only on ``(preset, seed)``, never on the image
size, so one seed is the same scene at every resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.classes import SHAPES_CLASSES
from ros2_amodal_seg.errors import InvalidInputError
from ros2_amodal_seg.world._blas import single_thread_blas
from ros2_amodal_seg.world.presets import REF_WIDTH, PresetConfig, get_preset


@dataclass
class MeshData:
    """A triangle mesh.

    Attributes:
        vertices: ``[V, 3]`` float64 points in base_link [m].
        triangles: ``[T, 3]`` int32 vertex indices.
    """

    vertices: np.ndarray
    triangles: np.ndarray


@dataclass
class SceneObject:
    """One object instance.

    Attributes:
        instance_id: >= 1, unique in the scene.
        category_id: 1 box, 2 cylinder, 3 sphere, 4 cone, 5 torus (version 1 classes).
        mesh: the object's mesh in base_link.
        center_base: ``[3]`` float64 centre of its object-frame bounding box in base_link [m].
        size: ``[3]`` float64 object-frame extents (x, y, z) [m].
        yaw: yaw of the object frame about base_link z [rad].
        footprint: ``[K, 2]`` float64 counter-clockwise convex hull of the vertices' (x, y) [m].
        color: ``[3]`` float64 RGB albedo in [0, 1].
        reflectivity: LiDAR reflectivity in [0, 1].
    """

    instance_id: int
    category_id: int
    mesh: MeshData
    center_base: np.ndarray
    size: np.ndarray
    yaw: float
    footprint: np.ndarray
    color: np.ndarray
    reflectivity: float


@dataclass
class Background:
    """A background surface (instance id 0) with a procedural tile texture.

    Attributes:
        name: "ground", "table" or "floor".
        mesh: mesh in base_link.
        color: ``[3]`` base RGB albedo; ``color2``: second tile colour.
        tile: tile edge [m]; texture coordinates are base_link (x, y) rotated by ``tex_yaw``.
        tex_yaw: rotation of the tile grid [rad]; ``tex_origin``: ``[2]`` grid origin [m].
        grain: amplitude of per-tile brightness noise.
        reflectivity: LiDAR reflectivity.
    """

    name: str
    mesh: MeshData
    color: np.ndarray
    color2: np.ndarray
    tile: float
    tex_yaw: float
    tex_origin: np.ndarray
    grain: float
    reflectivity: float


@dataclass
class SceneSpec:
    """Everything needed to render one frame.

    Attributes:
        preset, seed: where it came from. cfg: the preset's config.
        objects: the instances (ids 1..M in order).
        backgrounds: surfaces with id 0.
        fx_ref: focal length [px] at 640 px width; pp_offset: ``[2]`` principal-point
            offset from the image centre [px] at 640 px width.
        T_base_camera: ``[4, 4]`` float64, camera_optical_frame -> base_link.
        T_camera_lidar: ``[4, 4]`` float64, lidar -> camera_optical_frame (fixed per preset).
        light_dir: ``[3]`` unit vector in base_link pointing TOWARDS the light.
        ambient: ambient share of the shading in [0, 1].
        sky_top, sky_bottom: ``[3]`` background colours (sky gradient / wall).
        noise_sigma: Gaussian pixel-noise sigma [of 255].
    """

    preset: str
    seed: int
    cfg: PresetConfig
    objects: list[SceneObject]
    backgrounds: list[Background]
    fx_ref: float
    pp_offset: np.ndarray
    T_base_camera: np.ndarray
    T_camera_lidar: np.ndarray
    light_dir: np.ndarray
    ambient: float
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    noise_sigma: float
    extras: dict = field(default_factory=dict)

    @property
    def T_base_lidar(self) -> np.ndarray:
        """``[4, 4]`` float64 lidar -> base_link."""
        return self.T_base_camera @ self.T_camera_lidar

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """``[3, 3]`` float64 K for an image of ``width`` x ``height`` px (FOV kept at any size)."""
        s = width / REF_WIDTH
        fx = self.fx_ref * s
        cx = (width - 1) / 2.0 + self.pp_offset[0] * s
        cy = (height - 1) / 2.0 + self.pp_offset[1] * s
        return np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- geometry helpers

def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``[4, 4]`` float64 from ``[3, 3]`` rotation and ``[3]`` translation."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def camera_T_base(height: float, pitch: float) -> np.ndarray:
    """``T_base_camera`` for an optical frame at (0, 0, height) looking along +x, pitched down.

    Args:
        height: camera height above z = 0 [m]. pitch: downward pitch [rad].
    """
    f = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])   # optical z (forward)
    r = np.array([0.0, -1.0, 0.0])                        # optical x (right)
    d = np.cross(f, r)                                    # optical y (down)
    return make_T(np.stack([r, d, f], axis=1), np.array([0.0, 0.0, height]))


def lidar_T_camera(cfg: PresetConfig) -> np.ndarray:
    """``T_camera_lidar``: lidar x = camera viewing axis, y = camera left, z = camera head up,
    mounted ``lidar_up`` above and ``lidar_back`` behind the camera (in the head frame)."""
    R = np.array([[0.0, -1.0, 0.0],    # columns: lidar x, y, z in camera optical coordinates
                  [0.0, 0.0, -1.0],
                  [1.0, 0.0, 0.0]])
    return make_T(R, np.array([0.0, -cfg.lidar_up, -cfg.lidar_back]))


def convex_hull_2d(pts: np.ndarray) -> np.ndarray:
    """Counter-clockwise convex hull.

    Args:
        pts: ``[N, 2]`` float64.

    Returns:
        ``[K, 2]`` float64 hull vertices, CCW, no repeated first vertex (fewer than 3
        distinct points or collinear input: the distinct points).
    """
    from scipy.spatial import ConvexHull, QhullError

    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    try:
        return p[ConvexHull(p).vertices]                    # 2-D hull vertices are CCW
    except (QhullError, ValueError):
        return np.unique(p, axis=0)


def _sat_vectorised(a: np.ndarray, b: np.ndarray, gap: float, tol: float = 1e-7) -> bool | None:
    """All separating axes of :func:`polygons_overlap` at once. Its rounding differs from the
    edge-by-edge test by ~1e-14 m, so it only answers where every axis is further than ``tol``
    from the decision threshold (then both agree); None means "too close to call"."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    e = np.concatenate([np.roll(a, -1, axis=0) - a, np.roll(b, -1, axis=0) - b])
    ax = np.stack([-e[:, 1], e[:, 0]], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ax = ax / np.sqrt((ax * ax).sum(1))[:, None]        # zero-length edges: NaN -> undecided
        pa, pb = a @ ax.T, b @ ax.T
        sep = np.maximum((pb.min(0) + 1e-9) - (pa.max(0) + gap), (pa.min(0) + 1e-9) - (pb.max(0) + gap))
    if (sep > tol).any():
        return False                                        # a clearly separating axis
    if (sep < -tol).all():
        return True                                         # clearly no separating axis
    return None


def polygons_overlap(a: np.ndarray, b: np.ndarray, gap: float = 0.0) -> bool:
    """Separating-axis test of two convex polygons ``[K, 2]``; True when they overlap by
    more than touching, or come closer than ``gap`` along every edge normal."""
    ca, cb = a.mean(0), b.mean(0)
    ra = np.sqrt(((a - ca) ** 2).sum(1).max())
    rb = np.sqrt(((b - cb) ** 2).sum(1).max())
    if np.hypot(*(ca - cb)) > ra + rb + gap:               # bounding circles apart
        return False
    quick = _sat_vectorised(a, b, gap)
    if quick is not None:
        return quick
    for poly in (a, b):
        n = len(poly)
        for i in range(n):
            e = poly[(i + 1) % n] - poly[i]
            axis = np.array([-e[1], e[0]])
            norm = np.linalg.norm(axis)
            if norm == 0:
                continue
            axis /= norm
            pa, pb = a @ axis, b @ axis
            if pa.max() + gap <= pb.min() + 1e-9 or pb.max() + gap <= pa.min() + 1e-9:
                return False
    return True


class _DeepInside:
    """Is a point deeper than ``depth`` inside any of some CCW convex polygons?

    Used to skip the convex hull of a placement attempt that must be rejected anyway: the
    mean of the attempt's points lies in its footprint, so if that mean is ``depth`` (1e-7 m)
    inside a placed footprint, the two overlap by at least ``depth`` along every direction and
    :func:`polygons_overlap` (tolerance 1e-9, ``gap >= 0``) returns True whatever the hull.
    """

    def __init__(self, depth: float = 1e-7):
        self.depth = depth
        self.n = 0

    def set_polygons(self, polys: list) -> None:
        a, e, ln, starts = [], [], [], []
        k = 0
        for poly in polys:
            poly = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if len(poly) < 3:
                continue
            ed = np.roll(poly, -1, axis=0) - poly
            lens = np.hypot(ed[:, 0], ed[:, 1])
            ok = lens > 0
            if ok.sum() < 3:
                continue
            a.append(poly[ok])
            e.append(ed[ok])
            ln.append(lens[ok])
            starts.append(k)
            k += int(ok.sum())
        self.n = len(starts)
        if self.n:
            self.a, self.e, self.ln = np.concatenate(a), np.concatenate(e), np.concatenate(ln)
            self.starts = np.array(starts)

    def any(self, q: np.ndarray) -> bool:
        if not self.n:
            return False
        d = (self.e[:, 0] * (q[1] - self.a[:, 1]) - self.e[:, 1] * (q[0] - self.a[:, 0])) / self.ln
        return bool((np.minimum.reduceat(d, self.starts) >= self.depth).any())


def points_in_polygon(pts: np.ndarray, poly: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """Which points lie inside a CCW convex polygon, allowing ``tol`` [m] outside.

    Args:
        pts: ``[N, 2]``. poly: ``[K, 2]`` CCW convex.

    Returns:
        ``[N]`` bool.
    """
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    inside = np.ones(len(pts), dtype=bool)
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        e = b - a
        ln = np.hypot(*e)
        if ln == 0:
            continue
        # signed distance to the left of edge a->b (positive inside for CCW)
        d = (e[0] * (pts[:, 1] - a[1]) - e[1] * (pts[:, 0] - a[0])) / ln
        inside &= d >= -tol
    return inside


# ----------------------------------------------------------------------------- primitive meshes

def _legacy_to_numpy(mesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles, dtype=np.int32)


def box_mesh(sx: float, sy: float, sz: float) -> tuple[np.ndarray, np.ndarray]:
    """A cuboid centred at the origin with extents (sx, sy, sz), outward-facing triangles."""
    import open3d as o3d

    v, t = _legacy_to_numpy(o3d.geometry.TriangleMesh.create_box(sx, sy, sz))
    return v - np.array([sx, sy, sz]) / 2.0, t


def primitive(category_id: int, largest: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Object-frame mesh of one class, centred on its bounding box, largest extent ``largest``.

    Args:
        category_id: 1 box, 2 cylinder, 3 sphere, 4 cone, 5 torus.
        largest: largest extent [m].
        rng: random source (shape proportions and rest pose).

    Returns:
        vertices ``[V, 3]`` float64 [m] (z up, resting pose), triangles ``[T, 3]`` int32,
        a pose label ("upright", "lying", "flat", "rim").
    """
    import open3d as o3d

    TM = o3d.geometry.TriangleMesh
    pose = "upright"
    if category_id == 1:
        dims = np.array([1.0, rng.uniform(0.25, 1.0), rng.uniform(0.25, 1.0)]) * largest
        dims = dims[rng.permutation(3)]
        v, t = box_mesh(*dims)
    elif category_id == 2:
        if rng.random() < 0.5:
            h, d = largest, largest * rng.uniform(0.3, 1.0)
        else:
            d, h = largest, largest * rng.uniform(0.3, 1.0)
        v, t = _legacy_to_numpy(TM.create_cylinder(radius=d / 2.0, height=h, resolution=32, split=1))
        if rng.random() < 0.4:
            pose = "lying"
            v = v @ rot_y(np.pi / 2).T          # axis along object x
    elif category_id == 3:
        v, t = _legacy_to_numpy(TM.create_sphere(radius=largest / 2.0, resolution=16))
    elif category_id == 4:
        if rng.random() < 0.5:
            h, d = largest, largest * rng.uniform(0.4, 1.0)
        else:
            d, h = largest, largest * rng.uniform(0.4, 1.0)
        v, t = _legacy_to_numpy(TM.create_cone(radius=d / 2.0, height=h, resolution=32, split=1))
    elif category_id == 5:
        tube_ratio = rng.uniform(0.2, 0.45)            # tube radius / ring radius
        ring = largest / (2.0 * (1.0 + tube_ratio))
        v, t = _legacy_to_numpy(TM.create_torus(torus_radius=ring, tube_radius=ring * tube_ratio,
                                                radial_resolution=32, tubular_resolution=12))
        pose = "flat"
        if rng.random() < 0.35:
            pose = "rim"
            v = v @ rot_x(np.pi / 2).T          # ring in the object x-z plane
    else:
        raise InvalidInputError(f"unknown category id {category_id}; known {sorted(SHAPES_CLASSES)}")
    lo, hi = v.min(0), v.max(0)
    v = v - (lo + hi) / 2.0
    return v, t.astype(np.int32), pose


# ----------------------------------------------------------------------------- scene sampling

def _place_object(cid: int, v_obj: np.ndarray, t: np.ndarray, xy: np.ndarray, yaw: float,
                  iid: int, rng: np.random.Generator) -> SceneObject:
    size = v_obj.max(0) - v_obj.min(0)
    R = rot_z(yaw)
    center = np.array([xy[0], xy[1], size[2] / 2.0])      # resting on z = 0
    v = v_obj @ R.T + center
    v[:, 2] -= v[:, 2].min()                               # exactly resting (bbox-centred already)
    center = np.array([xy[0], xy[1], (v[:, 2].min() + v[:, 2].max()) / 2.0])
    color = rng.uniform(0.08, 0.95, size=3)
    return SceneObject(instance_id=iid, category_id=cid, mesh=MeshData(v, t), center_base=center,
                       size=size, yaw=float(np.arctan2(np.sin(yaw), np.cos(yaw))),
                       footprint=convex_hull_2d(v[:, :2]), color=color,
                       reflectivity=float(rng.uniform(0.2, 0.95)))


def _slab(cx: float, cy: float, z_top: float, lx: float, ly: float, thick: float, yaw: float = 0.0) -> MeshData:
    v, t = box_mesh(lx, ly, thick)
    v = v @ rot_z(yaw).T + np.array([cx, cy, z_top - thick / 2.0])
    return MeshData(v, t)


def _check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"{name} must be an integer >= 0, got {seed!r}")
    return int(seed)


def build_scene(preset: str, seed: int, *, rig_seed: int | None = None, split: str = "train"):
    """Sample the scene of ``(preset, split, seed)``.

    Args:
        preset: ``"tabletop"`` / ``"street"`` (version 2: a
            :class:`~ros2_amodal_seg.world.compose.WorldScene`) or ``"shapes-tabletop"`` /
            ``"shapes-street"`` (version 1: a :class:`SceneSpec`).
        seed: scene seed (objects, light, textures, noise), integer >= 0.
        rig_seed: seed of the camera rig (intrinsics, camera height and pitch); None
            means ``seed``. A robot's bag uses one rig for every frame.
        split: ``"train"`` or ``"test"``: which held-out half of the models and textures a
            version-2 scene draws from (version 1 has no split and ignores it).

    Raises:
        ConfigError: unknown preset. InvalidInputError: a negative or non-integer seed, a bad split.
    """
    cfg = get_preset(preset)
    if cfg.version == 2:
        from ros2_amodal_seg.world.compose import build_world_scene

        return build_world_scene(preset, seed, rig_seed=rig_seed, split=split)
    if split not in ("train", "test"):
        raise InvalidInputError(f"split must be 'train' or 'test', got {split!r}")
    with single_thread_blas():
        return _build_scene(preset, seed, rig_seed)


def _build_scene(preset: str, seed: int, rig_seed: int | None) -> SceneSpec:
    cfg = get_preset(preset)
    seed = _check_seed(seed)
    rig_seed = seed if rig_seed is None else _check_seed(rig_seed, "rig_seed")
    pidx = 0 if cfg.family == "tabletop" else 1
    rng = np.random.default_rng([seed, pidx, 0])
    rig = np.random.default_rng([rig_seed, pidx, 1])

    # camera rig
    fx_ref = float(rig.uniform(*cfg.fx_range))
    ang = rig.uniform(0, 2 * np.pi)
    pp_offset = np.array([np.cos(ang), np.sin(ang)]) * cfg.principal_jitter_px * np.sqrt(rig.random())
    height = float(rig.uniform(*cfg.camera_height))
    pitch = float(np.deg2rad(rig.uniform(*cfg.camera_pitch_deg)))
    T_base_camera = camera_T_base(height, pitch)
    T_camera_lidar = lidar_T_camera(cfg)
    half_hfov = np.arctan((REF_WIDTH / 2.0) / fx_ref)

    # light, appearance
    el = np.deg2rad(rng.uniform(25, 75))
    az = rng.uniform(0, 2 * np.pi)
    light_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    ambient = float(rng.uniform(0.25, 0.45))
    noise_sigma = float(rng.uniform(0.0, cfg.noise_sigma_max))

    n_obj = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    cats = rng.integers(1, 6, size=n_obj)
    objects: list[SceneObject] = []
    backgrounds: list[Background] = []
    lo_s, hi_s = cfg.size_range

    if cfg.family == "tabletop":
        dist = height / np.tan(pitch)                      # camera looks at the table centre
        table_c = np.array([dist, 0.0])
        table_yaw = float(rng.uniform(-0.4, 0.4))
        L, W = cfg.table_size
        Rt = rot_z(table_yaw)[:2, :2]
        wood = np.array([0.55, 0.38, 0.22]) * rng.uniform(0.7, 1.3) + rng.uniform(-0.08, 0.08, 3)
        backgrounds.append(Background(
            "table", _slab(table_c[0], table_c[1], 0.0, L, W, 0.03, table_yaw),
            color=np.clip(wood, 0.05, 1.0), color2=np.clip(wood * rng.uniform(0.75, 0.9), 0.0, 1.0),
            tile=float(rng.uniform(0.04, 0.08)), tex_yaw=table_yaw, tex_origin=table_c.copy(),
            grain=0.06, reflectivity=0.5))
        floor_c = rng.uniform(0.3, 0.6, 3)
        backgrounds.append(Background(
            "floor", _slab(0.0, 0.0, -cfg.floor_depth, 40.0, 40.0, 0.05),
            color=floor_c, color2=floor_c * 0.7, tile=float(rng.uniform(0.2, 0.4)),
            tex_yaw=float(rng.uniform(0, np.pi / 2)), tex_origin=np.zeros(2), grain=0.05, reflectivity=0.3))
        wall = rng.uniform(0.55, 0.85, 3)
        sky_top, sky_bottom = wall, wall * 0.85
        cluster = table_c + Rt @ rng.uniform([-L / 4, -W / 4], [L / 4, W / 4])
        margin = 0.005
        inside = _DeepInside()
        for i in range(n_obj):
            cid = int(cats[i])
            size = float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s))))
            placed = None
            inside.set_polygons([o.footprint for o in objects])
            for attempt in range(120):
                if attempt and attempt % 30 == 0:
                    size = max(lo_s, size * 0.8)
                v_obj, t, _ = primitive(cid, size, rng) if attempt % 30 == 0 else (v_obj, t, None)
                yaw = rng.uniform(-np.pi, np.pi)
                spread = cfg.cluster_sigma * (1.0 + attempt / 40.0)
                xy = cluster + rng.normal(0.0, spread, 2)
                pts = (v_obj @ rot_z(yaw).T)[:, :2] + xy
                if inside.any(pts.mean(0)):
                    continue            # certainly overlaps a placed object (see _DeepInside): skip the hull
                fp = convex_hull_2d(pts)
                local = (fp - table_c) @ Rt                  # footprint in the table frame
                if (np.abs(local[:, 0]) > L / 2 - margin).any() or (np.abs(local[:, 1]) > W / 2 - margin).any():
                    continue
                if any(polygons_overlap(fp, o.footprint, cfg.min_gap) for o in objects):
                    continue
                placed = (v_obj, t, xy, yaw)
                break
            if placed is not None:
                objects.append(_place_object(cid, placed[0], placed[1], placed[2], placed[3],
                                             len(objects) + 1, rng))
    else:
        asphalt = rng.uniform(0.3, 0.45) * np.ones(3) + rng.uniform(-0.03, 0.03, 3)
        backgrounds.append(Background(
            "ground", _slab(100.0, 0.0, 0.0, 400.0, 400.0, 0.1),
            color=asphalt, color2=asphalt * rng.uniform(0.8, 0.92), tile=float(rng.uniform(1.0, 3.0)),
            tex_yaw=float(rng.uniform(-0.3, 0.3)), tex_origin=rng.uniform(-1, 1, 2), grain=0.08,
            reflectivity=0.2))
        sky_top = np.array([0.35, 0.55, 0.9]) * rng.uniform(0.8, 1.1)
        sky_bottom = np.array([0.8, 0.85, 0.92]) * rng.uniform(0.9, 1.05)
        xlo, xhi = cfg.place_x_range
        for i in range(n_obj):
            cid = int(cats[i])
            size = float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s))))
            placed = None
            for attempt in range(120):
                if attempt and attempt % 30 == 0:
                    size = max(lo_s, size * 0.8)
                v_obj, t, _ = primitive(cid, size, rng) if attempt % 30 == 0 else (v_obj, t, None)
                yaw = rng.uniform(-np.pi, np.pi)
                x = xlo + (xhi - xlo) * rng.random() ** 1.5      # denser near the robot
                bearing = rng.uniform(-0.9, 0.9) * half_hfov
                xy = np.array([x, x * np.tan(bearing)])
                fp = convex_hull_2d((v_obj @ rot_z(yaw).T)[:, :2] + xy)
                if fp[:, 0].min() < 1.0:                      # keep clear of the robot
                    continue
                if any(polygons_overlap(fp, o.footprint, cfg.min_gap) for o in objects):
                    continue
                placed = (v_obj, t, xy, yaw)
                break
            if placed is not None:
                objects.append(_place_object(cid, placed[0], placed[1], placed[2], placed[3],
                                             len(objects) + 1, rng))

    return SceneSpec(preset=cfg.name, seed=seed, cfg=cfg, objects=objects, backgrounds=backgrounds,
                     fx_ref=fx_ref, pp_offset=pp_offset, T_base_camera=T_base_camera,
                     T_camera_lidar=T_camera_lidar, light_dir=light_dir, ambient=ambient,
                     sky_top=np.clip(sky_top, 0, 1), sky_bottom=np.clip(sky_bottom, 0, 1),
                     noise_sigma=noise_sigma, extras={"rig_seed": rig_seed})
