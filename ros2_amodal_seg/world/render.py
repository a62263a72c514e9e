"""Render a scene of the synthetic world with Open3D's RaycastingScene (CPU, headless).

``render_frame(preset, seed)`` gives RGB, depth, visible instance ids, per-object
amodal masks, LiDAR returns with per-point ids, all transforms, and the
ground-truth annotations defined in ``shared/spec/world.md``. No ROS imports.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.classes import SHAPES_CLASSES, class_name
from ros2_amodal_seg.data.types import AmodalAnnotation
from ros2_amodal_seg.errors import InvalidInputError
from ros2_amodal_seg.world._blas import single_thread_blas
from ros2_amodal_seg.world.lidar import simulate_lidar
from ros2_amodal_seg.world.scene import SceneSpec, build_scene

#: objects with fewer visible pixels than this get no annotation (world.md).
MIN_VISIBLE_PIXELS = 16


@dataclass
class Frame:
    """One rendered frame and its exact ground truth (see the field comments for shapes)."""

    preset: str
    seed: int
    rgb: np.ndarray            # [H, W, 3] uint8 RGB
    depth: np.ndarray          # [H, W] float32, camera-z depth [m], inf where no surface
    visible_ids: np.ndarray    # [H, W] int32, instance id of first surface hit, 0 = background
    object_ids: np.ndarray     # [M] int32 instance ids (>=1) of ALL objects in the scene
    amodal_masks: np.ndarray   # [M, H, W] bool, object rendered alone, clipped to image
    category_ids: np.ndarray   # [M] int32 class ids of classes_for_preset(preset) (shapes: 1 box .. 5 torus)
    footprints: list           # M x [K, 2] float64 base_link ground outline [m] (CCW convex hull)
    centers_base: np.ndarray   # [M, 3] float64 object bbox centre in base_link [m]
    sizes: np.ndarray          # [M, 3] float64 object-frame extents [m]
    yaws: np.ndarray           # [M] float64 yaw in base_link [rad]
    K: np.ndarray              # [3, 3] float64
    D: np.ndarray              # [5] float64 zeros (plumb_bob)
    T_base_camera: np.ndarray  # [4, 4] float64, camera_optical_frame -> base_link
    T_camera_lidar: np.ndarray  # [4, 4] float64, lidar -> camera_optical_frame
    T_base_lidar: np.ndarray   # [4, 4] float64, lidar -> base_link
    lidar_points: np.ndarray   # [N, 4] float32 x y z [m] intensity [0, 1], lidar frame
    lidar_ids: np.ndarray      # [N] int32 per-point instance id, 0 = background
    annotations: list = field(default_factory=list)  # list[AmodalAnnotation], id == instance id
    assets: list = field(default_factory=list)       # M x str model of each object (version 2), else empty
    split: str | None = None                         # "train" / "test" (version 2), None for shapes-*
    timings: dict = field(default_factory=dict)      # stage -> seconds (version 2 renderer; --bench)
    skipped_assets: int = 0                          # models/textures the scene skipped (missing or corrupt)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _texture(bg, p: np.ndarray) -> np.ndarray:
    """Procedural tiles of a background surface: a checker of two colours with a random
    brightness per tile (integer hash of the tile index) and a finer grain.

    Args:
        bg: a :class:`~ros2_amodal_seg.world.scene.Background`.
        p: ``[N, 3]`` float32/64 hit points in base_link [m].

    Returns:
        ``[N, 3]`` float32 albedo in [0, 1].
    """
    c, s = np.cos(-bg.tex_yaw), np.sin(-bg.tex_yaw)
    qx = p[:, 0] - np.float32(bg.tex_origin[0])
    qy = p[:, 1] - np.float32(bg.tex_origin[1])
    inv = np.float32(1.0 / bg.tile)
    u = np.float32(c) * qx
    u -= np.float32(s) * qy
    u *= inv
    v = np.float32(s) * qx
    v += np.float32(c) * qy
    v *= inv
    # Tile indices and their hashes. Only the low bits of the products are used (& 1, & 1023,
    # & 255), and those are the same in int32 (wrapping) as in int64, so int32 is used whenever
    # the indices fit (always, for the preset geometry); 2654435761 is -1640531535 mod 2**32.
    small = bool(np.abs(u).max() < 2.0 ** 27) and bool(np.abs(v).max() < 2.0 ** 27)
    it, k4 = (np.int32, np.int32(-1640531535)) if small else (np.int64, 2654435761)
    cu = np.floor(u).astype(it)
    cv = np.floor(v).astype(it)
    checker = cu + cv
    checker &= 1                                             # 0: color, 1: color2
    cu *= 73856093
    cv *= 19349663
    cu ^= cv
    cu &= 1023                                               # per-tile brightness index h * 1023
    u *= 8
    v *= 8
    fu = np.floor(u).astype(it)
    fv = np.floor(v).astype(it)
    fu *= 83492791
    fv *= k4
    fu ^= fv
    fu &= 255                                                # grain index fine * 255
    g = np.float32(bg.grain)
    # the float32 factors take 1024 and 256 values: tabulate them with the same arithmetic
    h = np.arange(1024).astype(np.float32) / np.float32(1023.0)
    fine = np.arange(256).astype(np.float32) / np.float32(255.0)
    f_tile = 1 + g * (2 * h - 1)
    f_fine = 1 + np.float32(0.5) * g * (2 * fine - 1)
    factor = np.take(f_tile, cu)
    factor *= np.take(f_fine, fu)
    # color * (1 - checker) + color2 * checker is exactly color or color2 (checker is 0 or 1)
    c1, c2 = bg.color.astype(np.float32), bg.color2.astype(np.float32)
    alb = np.empty((len(factor), 3), dtype=np.float32)
    for k in range(3):
        col = alb[:, k]
        np.multiply(np.take(np.array([c1[k], c2[k]], dtype=np.float32), checker), factor, out=col)
        np.clip(col, 0.0, 1.0, out=col)
    return alb


def _ray_dirs(rays: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``rays[idx, 3:]`` (``rays``: C-contiguous ``[N, 6]`` float32) as a contiguous ``[len(idx), 3]``
    array, each direction gathered as one 12-byte item."""
    item = np.dtype((np.void, 3 * rays.dtype.itemsize))
    return np.take(rays.view(item).reshape(-1, 2)[:, 1], idx).view(rays.dtype).reshape(-1, 3)


def _put_rows(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> None:
    """``dst[idx] = src`` for a C-contiguous ``[N, k]`` ``dst`` (rows moved as one opaque item:
    several times faster than numpy's row-wise fancy assignment, same bytes)."""
    item = np.dtype((np.void, dst.dtype.itemsize * dst.shape[1]))
    src = np.ascontiguousarray(src, dtype=dst.dtype)
    np.put(dst.view(item).reshape(-1), idx, src.view(item).reshape(-1))


def _build_raycasting(meshes: list) -> object:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    for m in meshes:
        tm = o3d.t.geometry.TriangleMesh()
        tm.vertex.positions = o3d.core.Tensor(m.vertices.astype(np.float32))
        tm.triangle.indices = o3d.core.Tensor(m.triangles.astype(np.int32))
        scene.add_triangles(tm)
    return scene


def _camera_rays(K: np.ndarray, T_base_camera: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[H*W, 6]`` float32 rays in base_link, origin at the camera, direction with camera z = 1
    (so the parametric hit distance equals the camera-z depth)."""
    R = T_base_camera[:3, :3].astype(np.float32)
    x = ((np.arange(width) - K[0, 2]) / K[0, 0]).astype(np.float32)       # [W]
    y = ((np.arange(height) - K[1, 2]) / K[1, 1]).astype(np.float32)      # [H]
    rays = np.empty((height, width, 6), dtype=np.float32)
    for c in range(3):
        rays[..., c] = np.float32(T_base_camera[c, 3])
    # direction = (x * R[:, 0] + y * R[:, 1]) + R[:, 2] in float32, one component at a time
    # (same arithmetic, no [H, W, 3] broadcasting temporaries)
    for c in range(3):
        dc = rays[..., 3 + c]
        np.add((x * R[c, 0])[None, :], (y * R[c, 1])[:, None], out=dc)
        dc += R[c, 2]
    return rays.reshape(-1, 6)


def _amodal_masks(objs: list, rays: np.ndarray, K: np.ndarray, T_bc: np.ndarray, W: int, H: int) -> np.ndarray:
    """``[M, H, W]`` bool: each object alone, rays limited to its projected box (without the
    visible pixels, which the caller adds)."""
    import open3d as o3d

    with single_thread_blas():
        M = len(objs)
        amodal = np.zeros((M, H, W), dtype=bool)
        T_cb = np.linalg.inv(T_bc)
        for k, o in enumerate(objs):
            vc = o.mesh.vertices @ T_cb[:3, :3].T + T_cb[:3, 3]
            if (vc[:, 2] <= 1e-6).any():
                x0, y0, x1, y1 = 0, 0, W - 1, H - 1
            else:
                uv = vc[:, :2] / vc[:, 2:3] * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]
                x0 = max(int(np.floor(uv[:, 0].min())) - 1, 0)
                y0 = max(int(np.floor(uv[:, 1].min())) - 1, 0)
                x1 = min(int(np.ceil(uv[:, 0].max())) + 1, W - 1)
                y1 = min(int(np.ceil(uv[:, 1].max())) + 1, H - 1)
            if x0 > x1 or y0 > y1:
                continue
            sub = rays.reshape(H, W, 6)[y0:y1 + 1, x0:x1 + 1].reshape(-1, 6)
            alone = _build_raycasting([o.mesh])
            # any hit of the object alone (test_occlusions, tnear 0, tfar inf) == finite t_hit
            occ = alone.test_occlusions(o3d.core.Tensor.from_numpy(np.ascontiguousarray(sub))).numpy()
            amodal[k, y0:y1 + 1, x0:x1 + 1] = occ.reshape(y1 - y0 + 1, x1 - x0 + 1) != 0
        return amodal


def _pixel_noise(spec: SceneSpec, W: int, H: int) -> np.ndarray:
    """``[H, W, 3]`` float32 Gaussian pixel noise [of 255] from the image's own random stream."""
    img_rng = np.random.default_rng([spec.seed, 7, W, H])
    noise = img_rng.standard_normal((H, W, 3), dtype=np.float32)
    noise *= np.float32(spec.noise_sigma)
    return noise


def _lidar(scene, spec: SceneSpec, T_bl: np.ndarray, geom_to_inst: np.ndarray, geom_refl: np.ndarray):
    with single_thread_blas():
        lidar_rng = np.random.default_rng([spec.seed, 11])
        return simulate_lidar(scene, spec.cfg, T_bl, geom_to_inst, geom_refl, lidar_rng)


_POOL: tuple | None = None      # (pid, ThreadPoolExecutor)
#: run the side jobs on worker threads (False: in the calling thread, same bytes)
USE_WORKER_THREADS = True


class _Done:
    """An already finished job (the serial stand-in for a Future)."""

    def __init__(self, fn, *args):
        self._value = fn(*args)

    def result(self):
        return self._value


class _SerialPool:
    def submit(self, fn, *args):
        return _Done(fn, *args)


def _worker_pool():
    """A process-wide pool of 2 worker threads (recreated in a forked child, whose copy has
    no threads), or a serial stand-in when :data:`USE_WORKER_THREADS` is False."""
    global _POOL
    import os
    from concurrent.futures import ThreadPoolExecutor

    if not USE_WORKER_THREADS:
        return _SerialPool()
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="world-render"))
    return _POOL[1]


def render_scene(spec, width: int = 640, height: int = 480, *, lidar: bool = True) -> Frame:
    """Render an already sampled scene (see :func:`render_frame`): a version-1 :class:`SceneSpec`
    or a version-2 :class:`~ros2_amodal_seg.world.world_scene.WorldScene`."""
    if not isinstance(spec, SceneSpec):
        from ros2_amodal_seg.world.render_v2 import render_world_scene

        return render_world_scene(spec, width, height, lidar=lidar)
    with single_thread_blas():
        return _render_scene(spec, width, height, lidar)


def _render_scene(spec: SceneSpec, width: int, height: int, lidar: bool) -> Frame:
    import open3d as o3d

    if int(width) < 8 or int(height) < 8:
        raise InvalidInputError(f"image size must be at least 8 x 8 px, got {width} x {height}")
    W, H = int(width), int(height)
    K = spec.intrinsics(W, H)
    T_bc = spec.T_base_camera
    objs, bgs = spec.objects, spec.backgrounds
    M = len(objs)
    meshes = [b.mesh for b in bgs] + [o.mesh for o in objs]
    geom_to_inst = np.array([0] * len(bgs) + [o.instance_id for o in objs], dtype=np.int32)
    geom_refl = np.array([b.reflectivity for b in bgs] + [o.reflectivity for o in objs], dtype=np.float64)
    scene = _build_raycasting(meshes)

    # Work that does not need the camera image runs on a worker thread meanwhile (numpy and
    # Open3D release the GIL): pixel noise, amodal masks, and the LiDAR once the scene's BVH
    # exists. Each job has its own data and random stream, so the bytes do not depend on timing.
    pool = _worker_pool()
    noise_job = pool.submit(_pixel_noise, spec, W, H)
    rays = _camera_rays(K, T_bc, W, H)
    amodal_job = pool.submit(_amodal_masks, objs, rays, K, T_bc, W, H)
    ans = scene.cast_rays(o3d.core.Tensor.from_numpy(rays))            # also builds the BVH
    T_bl = spec.T_base_lidar
    if lidar:
        lidar_job = pool.submit(_lidar, scene, spec, T_bl, geom_to_inst, geom_refl)
    t = ans["t_hit"].numpy()                                     # [H*W] camera-z depth
    hit = np.isfinite(t)
    idx = np.flatnonzero(hit)
    full = len(idx) == H * W                    # every pixel hit (typical for tabletop): no gathers
    gid = ans["geometry_ids"].numpy()
    g = (gid if full else np.take(gid, idx)).astype(np.int64)             # [P] geometry ids of the hits
    depth = t.reshape(H, W).astype(np.float32)
    visible_ids = np.zeros(H * W, dtype=np.int32)
    np.put(visible_ids, idx, np.take(geom_to_inst, g))
    visible_ids = visible_ids.reshape(H, W)

    # ---- shading: Lambert + ambient, one directional light with cast shadows, tile textures
    th = t if full else t[idx]                                             # [P] hit depths
    d = np.ascontiguousarray(rays[:, 3:]) if full else _ray_dirs(rays, idx)   # [P, 3] contiguous
    p = np.empty_like(d)                                                   # [P, 3] float32 base_link
    for c in range(3):
        np.multiply(d[:, c], th, out=p[:, c])
        p[:, c] += rays[0, c]                   # + the camera position (every ray's origin)
    n = ans["primitive_normals"].numpy()
    if not full:
        n = np.take(n, idx, axis=0)
    np.negative(n, out=n, where=(np.einsum("ij,ij->i", n, d) > 0)[:, None])   # face the camera
    del d
    color_table = np.zeros((len(meshes), 3), dtype=np.float32)
    for k, o in enumerate(objs):
        color_table[len(bgs) + k] = o.color
    albedo = np.take(color_table, g, axis=0)                               # [P, 3] float32
    for k, b in enumerate(bgs):
        sel = np.flatnonzero(g == k)
        if len(sel):
            _put_rows(albedo, sel, _texture(b, np.take(p, sel, axis=0)))
    lam = np.clip(n @ spec.light_dir.astype(np.float32), 0.0, None)
    lit_idx = np.flatnonzero(lam > 0)
    lit = np.zeros(len(idx), dtype=bool)
    if len(lit_idx):
        eps = 2e-4 * th[lit_idx]
        eps += 1e-4
        nl, pl = np.take(n, lit_idx, axis=0), np.take(p, lit_idx, axis=0)
        sh = np.empty((len(lit_idx), 6), dtype=np.float32)
        for c in range(3):
            np.multiply(nl[:, c], eps, out=sh[:, c])
            sh[:, c] += pl[:, c]
            sh[:, 3 + c] = np.float32(spec.light_dir[c])
        del nl, pl
        occluded = scene.test_occlusions(o3d.core.Tensor.from_numpy(sh)).numpy()
        lit[lit_idx] = occluded == 0
    shade = spec.ambient + (1.0 - spec.ambient) * lam * lit
    for c in range(3):
        albedo[:, c] *= shade
    if full:
        img = albedo
    else:
        img = np.empty((H * W, 3), dtype=np.float32)
        _put_rows(img, idx, albedo)
    miss = np.flatnonzero(~hit)
    if len(miss):
        if spec.cfg.family == "street":
            dm = _ray_dirs(rays, miss).astype(np.float64)
            e = np.clip(3.0 * dm[:, 2] / np.linalg.norm(dm, axis=1), 0.0, 1.0)
            sky = np.empty((len(miss), 3), dtype=np.float32)
            for c in range(3):                  # sky_bottom * (1 - e) + sky_top * e, per channel
                sky[:, c] = spec.sky_bottom[c] * (1 - e) + spec.sky_top[c] * e
            _put_rows(img, miss, sky)
        else:                                   # wall: a colour per image row
            e = (1.0 - np.arange(H) / max(H - 1, 1))[:, None]
            _put_rows(img, miss, np.take((spec.sky_bottom * (1 - e) + spec.sky_top * e).astype(np.float32),
                                         miss // W, axis=0))
    img = img.reshape(H, W, 3)
    img *= np.float32(255.0)
    img += noise_job.result()
    np.rint(img, out=img)
    rgb = np.clip(img, 0, 255, out=img).astype(np.uint8)

    # ---- amodal masks (computed by the worker): a first hit is a hit of the object alone
    amodal = amodal_job.result()
    vflat = visible_ids.reshape(-1)
    vis_pix = np.flatnonzero(vflat > 0)
    amodal.reshape(M, -1)[vflat[vis_pix] - 1, vis_pix] = True   # a first hit is a hit of the object alone

    # ---- LiDAR
    if lidar:
        pts, pids = lidar_job.result()
    else:
        pts, pids = np.zeros((0, 4), np.float32), np.zeros(0, np.int32)

    # ---- ground truth
    obj_ids = np.array([o.instance_id for o in objs], dtype=np.int32)
    vis_count = np.bincount(vflat, minlength=M + 1)[1:M + 1]
    am_count = np.count_nonzero(amodal.reshape(M, -1), axis=1).astype(np.int64) if M else np.zeros(0, np.int64)
    annotated = (vis_count >= MIN_VISIBLE_PIXELS) & (am_count > 0)
    annotations = []
    for k, o in enumerate(objs):
        if not annotated[k]:
            continue
        vis = visible_ids == o.instance_id
        seen_in_amodal = np.bincount(vflat[amodal[k].reshape(-1)], minlength=M + 1)
        occluded_by = [int(j) for j in np.flatnonzero(seen_in_amodal)
                       if j != 0 and j != o.instance_id and annotated[int(j) - 1]]
        annotations.append(AmodalAnnotation(
            id=int(o.instance_id), category_id=int(o.category_id), category_name=class_name(o.category_id, SHAPES_CLASSES),
            amodal=amodal[k], visible=vis, occlude_rate=float(1.0 - vis_count[k] / am_count[k]),
            occluded_by=occluded_by, order=-1, footprint=o.footprint.copy()))

    return Frame(
        preset=spec.preset, seed=spec.seed, rgb=rgb, depth=depth, visible_ids=visible_ids,
        object_ids=obj_ids, amodal_masks=amodal,
        category_ids=np.array([o.category_id for o in objs], dtype=np.int32),
        footprints=[o.footprint.copy() for o in objs],
        centers_base=np.array([o.center_base for o in objs], dtype=np.float64).reshape(M, 3),
        sizes=np.array([o.size for o in objs], dtype=np.float64).reshape(M, 3),
        yaws=np.array([o.yaw for o in objs], dtype=np.float64),
        K=K, D=np.zeros(5), T_base_camera=T_bc.copy(), T_camera_lidar=spec.T_camera_lidar.copy(),
        T_base_lidar=T_bl, lidar_points=pts, lidar_ids=pids, annotations=annotations)


def render_frame(preset: str, seed: int, width: int = 640, height: int = 480, *, lidar: bool = True,
                 rig_seed: int | None = None, split: str = "train") -> Frame:
    """Build the scene of ``(preset, split, seed)`` and render it.

    Args:
        preset: ``"tabletop"`` / ``"street"`` (world version 2: real textured models, 13
            classes) or ``"shapes-tabletop"`` / ``"shapes-street"`` (version 1: primitives).
        seed: integer >= 0; the same seed gives the same scene at any image size and
            the same bytes at a given size.
        width, height: image size [px] (K is scaled so the field of view stays the same).
        lidar: also simulate the LiDAR sweep (else ``lidar_points`` is ``[0, 4]``).
        rig_seed: seed of the camera rig (K, camera height, pitch); None = ``seed``.
            ``generate --bag`` renders every frame with one rig, as a robot would.
        split: ``"train"`` or ``"test"``: the held-out half of models and textures a
            version-2 scene uses (version 1 ignores it).

    Returns:
        :class:`Frame`.

    Raises:
        ConfigError: unknown preset (or no asset library for a version-2 preset).
        InvalidInputError: bad seed, split or image size.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    spec = build_scene(preset, seed, rig_seed=rig_seed, split=split)
    if not isinstance(spec, SceneSpec):
        from ros2_amodal_seg.world.render_v2 import render_world_scene

        t_compose = time.perf_counter() - t0
        frame = render_world_scene(spec, width, height, lidar=lidar)
        frame.timings["compose"] = t_compose
        frame.timings["total"] = frame.timings.get("total", 0.0) + t_compose
        frame.timings["cpu"] = time.process_time() - c0       # this process, all threads
        return frame
    with single_thread_blas():
        return _render_scene(spec, width, height, lidar)
