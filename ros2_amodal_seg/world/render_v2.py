"""Render a realistic scene (world.md version 2) with Open3D's RaycastingScene (CPU, headless).

Per pixel: one camera ray; the hit triangle's corner UVs are interpolated with the hit's
barycentric coordinates, its material's texture is sampled bilinearly (repeat addressing)
and multiplied by the diffuse colour ``Kd``. Shading is Lambert + ambient + Blinn-Phong
specular (``Ks``, ``Ns``) under one key light of a colour temperature, with a cast-shadow
ray towards it, and an optional fill light; misses see the sky. :mod:`.imaging` then
applies white balance, exposure, gamma, blur, noise and JPEG.

The ground truth is exact as in version 1: visible ids from the first hits, amodal masks
from each object alone (only the rays inside its projected box whose first hit is nearer
than the object's far end can hit it while hidden), LiDAR with per-point ids and an
intensity of texture luminance x |cos(incidence)|. No ROS imports.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from ros2_amodal_seg.classes import WORLD_CLASSES, class_name
from ros2_amodal_seg.data.types import AmodalAnnotation
from ros2_amodal_seg.errors import InvalidInputError
from ros2_amodal_seg.world._blas import single_thread_blas
from ros2_amodal_seg.world.imaging import DECODE_GAMMA, develop, to_linear
from ros2_amodal_seg.world.lidar import simulate_lidar
from ros2_amodal_seg.world.render import MIN_VISIBLE_PIXELS, Frame, _camera_rays, _ray_dirs, _worker_pool

#: Rec. 709 luminance weights (LiDAR intensity from the texture).
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
#: columns of the 2-D maps handed to cv2.remap.
_REMAP_COLS = 1024


def sample_texture_fast(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup with repeat addressing (same convention as
    :func:`ros2_amodal_seg.world.textured.sample_texture`: texel centres at
    ``((c + 0.5) / w, 1 - (r + 0.5) / h)``), through ``cv2.remap``.

    Args:
        image: ``[h, w, 3]`` uint8 RGB texture.
        uv: ``[N, 2]`` float32 texture coordinates (u right, v up), finite.

    Returns:
        ``[N, 3]`` uint8 RGB (bilinear blend rounded to integers: within 1 of the float result).
    """
    import cv2

    h, w = image.shape[:2]
    n = len(uv)
    if n == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    rows = -(-n // _REMAP_COLS)
    mx = np.zeros(rows * _REMAP_COLS, dtype=np.float32)
    my = np.zeros(rows * _REMAP_COLS, dtype=np.float32)
    np.multiply(uv[:, 0], np.float32(w), out=mx[:n])
    mx[:n] -= np.float32(0.5)
    np.subtract(np.float32(1.0), uv[:, 1], out=my[:n])
    my[:n] *= np.float32(h)
    my[:n] -= np.float32(0.5)
    # cv2.remap keeps coordinates in 16-bit fixed point: wrap them into the image first
    np.mod(mx, np.float32(w), out=mx)
    np.mod(my, np.float32(h), out=my)
    out = cv2.remap(image, mx.reshape(rows, _REMAP_COLS), my.reshape(rows, _REMAP_COLS), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1, 3)[:n]


@functools.lru_cache(maxsize=1)
def _texel_lut() -> np.ndarray:
    """``[256]`` float32: texel value (display, 0..255) -> linear reflectance factor."""
    lut = ((np.arange(256, dtype=np.float64) / 255.0) ** DECODE_GAMMA).astype(np.float32)
    lut.flags.writeable = False
    return lut


def _put_rows(dst: np.ndarray, idx: np.ndarray, src: np.ndarray) -> None:
    """``dst[idx] = src`` for C-contiguous ``[N, k]`` arrays, each row moved as one opaque item."""
    item = np.dtype((np.void, dst.dtype.itemsize * dst.shape[1]))
    np.put(dst.view(item).reshape(-1), idx, np.ascontiguousarray(src, dtype=dst.dtype).view(item).reshape(-1))


def _take_rows(src: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``src[idx]`` for a C-contiguous ``[N, k]`` array, each row gathered as one opaque item."""
    item = np.dtype((np.void, src.dtype.itemsize * src.shape[1]))
    return np.take(src.view(item).reshape(-1), idx).view(src.dtype).reshape(len(idx), src.shape[1])


@dataclass
class _Tables:
    """The scene's triangles and materials as flat arrays (index = Open3D geometry order).

    Attributes:
        tri_off: ``[G + 1]`` int64 first global triangle of each geometry.
        uvs: ``[T, 6]`` float32 corner UVs (u0 v0 u1 v1 u2 v2). mat: ``[T]`` int32 global material id.
        kd_lin: ``[Mg, 3]`` float32 linear diffuse colours; ks: ``[Mg, 3]`` float32 specular
        colours; ns: ``[Mg]`` float32 shininess; tex: ``[Mg]`` int16 global texture id or -1.
        textures: the images.
    """

    tri_off: np.ndarray
    uvs: np.ndarray
    mat: np.ndarray
    kd_lin: np.ndarray
    ks: np.ndarray
    ns: np.ndarray
    tex: np.ndarray
    textures: list

    @classmethod
    def build(cls, meshes: list) -> "_Tables":
        tex_index: dict[int, int] = {}
        textures: list = []
        kd, ks, ns, tx, mats, uvs = [], [], [], [], [], []
        counts = [0]
        for m in meshes:
            local = []
            for img in m.textures:
                k = tex_index.get(id(img))
                if k is None:
                    k = tex_index[id(img)] = len(textures)
                    textures.append(np.ascontiguousarray(img, dtype=np.uint8))
                local.append(k)
            base = len(kd)
            for mt in m.materials:
                kd.append(np.asarray(mt.diffuse, dtype=np.float32).reshape(3))
                ks.append(np.asarray(mt.specular, dtype=np.float32).reshape(3))
                ns.append(float(mt.shininess))
                tx.append(local[mt.texture] if mt.texture >= 0 else -1)
            mats.append(np.asarray(m.material_ids, dtype=np.int32) + np.int32(base))
            uvs.append(np.asarray(m.uvs, dtype=np.float32).reshape(-1, 6))
            counts.append(len(m.triangles))
        kd_lin = np.clip(np.array(kd, dtype=np.float64), 0, 1) ** DECODE_GAMMA
        return cls(tri_off=np.cumsum(counts).astype(np.int64), uvs=np.ascontiguousarray(np.concatenate(uvs)),
                   mat=np.concatenate(mats), kd_lin=kd_lin.astype(np.float32),
                   ks=np.clip(np.array(ks, dtype=np.float32), 0, 1),
                   ns=np.clip(np.array(ns, dtype=np.float32), 1.0, 1000.0), tex=np.array(tx, dtype=np.int16),
                   textures=textures)

    def albedo(self, g: np.ndarray, pid: np.ndarray, puv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear albedo (``Kd`` x texture, both decoded from display values) at ray hits.

        Args:
            g: ``[n]`` int64 geometry ids; pid: ``[n]`` int64 triangle ids within the geometry;
            puv: ``[n, 2]`` float32 barycentric (u, v) of the hit (p = (1-u-v) a + u b + v c).

        Returns:
            ``[n, 3]`` float32 linear albedo in [0, 1], ``[n]`` int32 global material ids.
        """
        tri = np.take(self.tri_off, g)
        tri += pid
        mat = np.take(self.mat, tri)
        tex = np.take(self.tex, mat)
        # hits sorted by texture: each texture's hits are one contiguous run (untextured first)
        order = np.argsort(tex, kind="stable")
        st = np.take(tex, order)
        first = int(np.searchsorted(st, 0))
        alb_s = np.take(self.kd_lin, np.take(mat, order), axis=0)              # [n, 3] sorted order
        if first < len(st):
            ts = np.take(tri, order[first:])
            c = _take_rows(self.uvs, ts)                                        # [n', 6]
            b = _take_rows(np.ascontiguousarray(puv, dtype=np.float32), order[first:])
            uv = c[:, 0:2].copy()
            uv += b[:, 0:1] * (c[:, 2:4] - c[:, 0:2])
            uv += b[:, 1:2] * (c[:, 4:6] - c[:, 0:2])
            np.nan_to_num(uv, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            sub = st[first:]
            cuts = np.flatnonzero(sub[1:] != sub[:-1]) + 1
            lut = _texel_lut()
            for a, e in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(sub)]])):
                texel = sample_texture_fast(self.textures[int(sub[a])], uv[a:e])
                alb_s[first + a:first + e] *= np.take(lut, texel)
        alb = np.empty_like(alb_s)
        _put_rows(alb, order, alb_s)
        return alb, mat


def _amodal_masks(objs: list, depth: np.ndarray, visible: np.ndarray, rays: np.ndarray, K: np.ndarray,
                  T_base_camera: np.ndarray, W: int, H: int) -> tuple[np.ndarray, float]:
    """``[M, H, W]`` bool amodal masks (each object alone, clipped to the image) and the time taken.

    A ray can hit object k while k is hidden only if it lies inside k's projected box and its
    first hit is nearer than k's far end (camera z); only those rays are cast against k alone.
    The visible pixels of k are amodal by definition.
    """
    import open3d as o3d

    from ros2_amodal_seg.world.render import _build_raycasting

    t0 = time.perf_counter()
    with single_thread_blas():
        M = len(objs)
        amodal = np.zeros((M, H, W), dtype=bool)
        T_cb = np.linalg.inv(T_base_camera)
        r6 = rays.reshape(H, W, 6)
        for k, o in enumerate(objs):
            vc = o.mesh.vertices @ T_cb[:3, :3].T + T_cb[:3, 3]
            zmax = float(vc[:, 2].max())
            if zmax <= 0:
                continue
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
            vis = visible[y0:y1 + 1, x0:x1 + 1] == o.instance_id
            near = depth[y0:y1 + 1, x0:x1 + 1] < np.float32(zmax * (1 + 1e-4) + 1e-4)
            near &= ~vis
            cand = np.flatnonzero(near)
            block = vis.reshape(-1)                                          # a fresh contiguous array
            if len(cand):
                sub = np.take(r6[y0:y1 + 1, x0:x1 + 1].reshape(-1, 6), cand, axis=0)
                alone = _build_raycasting([o.mesh])
                occ = alone.test_occlusions(o3d.core.Tensor.from_numpy(np.ascontiguousarray(sub))).numpy()
                block[cand[occ != 0]] = True
            amodal[k, y0:y1 + 1, x0:x1 + 1] = block.reshape(y1 - y0 + 1, x1 - x0 + 1)
        return amodal, time.perf_counter() - t0


def _lidar_job(o3d_scene, scene, T_bl: np.ndarray, geom_to_inst: np.ndarray, tables: _Tables):
    t0 = time.perf_counter()

    def intensity(g, pid, puv, cos_inc):
        alb, _ = tables.albedo(g, pid, np.ascontiguousarray(puv, dtype=np.float32))   # linear reflectance
        return np.clip((alb @ LUMA).astype(np.float64) * cos_inc, 0.0, 1.0)

    with single_thread_blas():
        rng = np.random.default_rng([scene.seed, 11, 2])
        pts, ids = simulate_lidar(o3d_scene, scene.cfg, T_bl, geom_to_inst, None, rng, intensity_fn=intensity)
    return pts, ids, time.perf_counter() - t0


_CAST_KEYS = ("t_hit", "geometry_ids", "primitive_ids", "primitive_uvs", "primitive_normals")


def _cast_part(o3s, rays: np.ndarray) -> dict:
    import open3d as o3d

    ans = o3s.cast_rays(o3d.core.Tensor.from_numpy(rays))
    return {k: ans[k].numpy() for k in _CAST_KEYS}


def _cast_split(pool, o3s, rays: np.ndarray) -> dict:
    """``cast_rays`` of ``rays`` ``[N, 6]`` float32, in two halves on two threads (Open3D casts on
    one core and releases the GIL); each ray's result does not depend on the split. The first
    call builds the BVH, on one ray, before the halves run."""
    import open3d as o3d

    o3s.cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays[:1])))     # commit (BVH build)
    h = len(rays) // 2
    fut = pool.submit(_cast_part, o3s, rays[h:])
    a = _cast_part(o3s, rays[:h])
    b = fut.result()
    return {k: np.concatenate([a[k], b[k]]) for k in _CAST_KEYS}


def _cloud_map(seed: int) -> np.ndarray:
    """``[64, 256]`` float32 smooth cloud density in [0, 1] over (elevation 0..90 deg, azimuth)."""
    import cv2

    rng = np.random.default_rng([seed, 23])
    acc = np.zeros((64, 256), dtype=np.float32)
    for cells, amp in ((4, 1.0), (8, 0.5), (16, 0.25)):
        small = rng.random((cells, cells * 4)).astype(np.float32)
        acc += amp * cv2.resize(small, (256, 64), interpolation=cv2.INTER_CUBIC)
    acc -= acc.min()
    acc /= max(float(acc.max()), 1e-6)
    return acc


def _sky(scene, d: np.ndarray) -> np.ndarray:
    """``[n, 3]`` float32 linear sky radiance along ray directions ``d`` ``[n, 3]`` (base_link)."""
    L = scene.lighting
    dn = d.astype(np.float64)
    dn /= np.linalg.norm(dn, axis=1, keepdims=True)
    el = np.arcsin(np.clip(dn[:, 2], -1.0, 1.0))
    s = np.clip(el / 0.7, 0.0, 1.0) ** 0.7
    col = L.sky_horizon[None, :] * (1 - s[:, None]) + L.sky_zenith[None, :] * s[:, None]
    if L.clouds > 0:
        cm = _cloud_map(L.cloud_seed)
        az = np.arctan2(dn[:, 1], dn[:, 0])
        r = np.clip((el / (np.pi / 2)) * 63, 0, 63).astype(np.int64)
        c = ((az + np.pi) / (2 * np.pi) * 255).astype(np.int64) % 256
        dens = np.clip((cm[r, c] - (1.0 - L.clouds)) / max(L.clouds, 1e-3) * 1.5, 0.0, 1.0)
        dens *= (el > 0)
        white = np.array([0.93, 0.93, 0.95]) * (0.85 + 0.15 * s[:, None])
        col = col * (1 - dens[:, None]) + white * dens[:, None]
    lin = to_linear(col.astype(np.float32))
    return lin * np.float32(1.6)


def render_world_scene(scene, width: int = 640, height: int = 480, *, lidar: bool = True) -> Frame:
    """Render a :class:`~ros2_amodal_seg.world.world_scene.WorldScene` (see :func:`render_frame`).

    Returns:
        :class:`~ros2_amodal_seg.world.render.Frame` with ``assets``, ``split`` and
        ``timings`` (seconds per stage: build, raycast, texture, shading, imaging, masks,
        lidar, gt, total; masks and lidar run on worker threads meanwhile).
    """
    with single_thread_blas():
        return _render(scene, width, height, lidar)


def _render(scene, width: int, height: int, lidar: bool) -> Frame:
    import open3d as o3d

    from ros2_amodal_seg.world.render import _build_raycasting

    if int(width) < 8 or int(height) < 8:
        raise InvalidInputError(f"image size must be at least 8 x 8 px, got {width} x {height}")
    tm: dict[str, float] = {}
    t_start = clk = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clk
        now = time.perf_counter()
        tm[name] = tm.get(name, 0.0) + now - clk
        clk = now

    W, H = int(width), int(height)
    K = scene.intrinsics(W, H)
    T_bc = scene.T_base_camera
    objs, structs = scene.objects, scene.structures
    M = len(objs)
    meshes = [s.mesh for s in structs] + [o.mesh for o in objs]
    geom_to_inst = np.array([0] * len(structs) + [o.instance_id for o in objs], dtype=np.int32)
    tables = _Tables.build(meshes)
    o3s = _build_raycasting(meshes)
    rays = _camera_rays(K, T_bc, W, H)
    pool = _worker_pool()
    lap("build")

    ans = _cast_split(pool, o3s, rays)
    T_bl = scene.T_base_lidar
    if lidar:
        lidar_job = pool.submit(_lidar_job, o3s, scene, T_bl, geom_to_inst, tables)
    t = ans["t_hit"]                                                  # [H*W] camera-z depth
    hit = np.isfinite(t)
    idx = np.flatnonzero(hit)
    g = np.take(ans["geometry_ids"], idx).astype(np.int64)
    depth = t.reshape(H, W).astype(np.float32)
    visible_ids = np.zeros(H * W, dtype=np.int32)
    np.put(visible_ids, idx, np.take(geom_to_inst, g))
    visible_ids = visible_ids.reshape(H, W)
    amodal_job = pool.submit(_amodal_masks, objs, depth, visible_ids, rays, K, T_bc, W, H)
    lap("raycast")

    # ---- texture: Kd x bilinear texture sample at the interpolated UV
    full_hit = len(idx) == H * W
    pid = (ans["primitive_ids"] if full_hit else np.take(ans["primitive_ids"], idx)).astype(np.int64)
    puv = ans["primitive_uvs"] if full_hit else np.take(ans["primitive_uvs"], idx, axis=0)
    alb, mat = tables.albedo(g, pid, puv)
    del pid, puv
    lap("texture")

    # ---- shading: Lambert + ambient + Blinn-Phong under a key light with a shadow ray, fill light
    L = scene.lighting
    full = len(idx) == H * W                     # every pixel hit (tabletop): no gathers
    th = t if full else np.take(t, idx)                                # [P] camera-z depth
    d = np.ascontiguousarray(rays[:, 3:]) if full else _ray_dirs(rays, idx)     # [P, 3] (camera z = 1)
    n = ans["primitive_normals"]
    if not full:
        n = np.take(n, idx, axis=0)
    np.negative(n, out=n, where=(np.einsum("ij,ij->i", n, d) > 0)[:, None])     # face the camera
    key = L.key_dir.astype(np.float32)
    lam = n @ key                                                      # [P] cos to the key light
    lit_idx = np.flatnonzero(lam > 0)
    lap("shading")
    if len(lit_idx):
        tl = np.take(th, lit_idx)
        eps = np.float32(2e-4) * tl + np.float32(1e-4)                 # offset along the normal [m]
        sh = np.empty((len(lit_idx), 6), dtype=np.float32)
        pl = _take_rows(d, lit_idx) * tl[:, None]
        pl += rays[0, :3]
        pl += _take_rows(n, lit_idx) * eps[:, None]
        sh[:, :3] = pl
        sh[:, 3:] = key
        del pl
        blocked = o3s.test_occlusions(o3d.core.Tensor.from_numpy(sh)).numpy()
        lam[np.take(lit_idx, np.flatnonzero(blocked))] = 0.0           # in the shadow of the key light
        del sh
    lap("raycast")
    np.maximum(lam, 0.0, out=lam)                                      # direct key light factor
    light = lam[:, None] * L.key_rgb.astype(np.float32)
    light += L.ambient_rgb.astype(np.float32)
    if L.fill_rgb.any():
        fill = n @ L.fill_dir.astype(np.float32)
        np.maximum(fill, 0.0, out=fill)
        light += fill[:, None] * L.fill_rgb.astype(np.float32)
    alb *= light                                                       # [P, 3] linear radiance
    del light
    shiny_mat = tables.ks.max(1) > 0
    shiny = np.flatnonzero((lam > 0) & np.take(shiny_mat, mat)) if shiny_mat.any() else np.zeros(0, np.int64)
    if len(shiny):
        v = -_take_rows(d, shiny)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        v += key
        v /= np.linalg.norm(v, axis=1, keepdims=True)                  # half vector
        nh = np.clip(np.einsum("ij,ij->i", _take_rows(n, shiny), v), 0.0, 1.0)
        ms = np.take(mat, shiny)
        spec = nh ** np.take(tables.ns, ms)
        add = np.take(tables.ks, ms, axis=0) * (spec[:, None] * L.key_rgb.astype(np.float32))
        add += _take_rows(alb, shiny)
        _put_rows(alb, shiny, add)
    del d, n
    if full:
        img = alb
    else:
        img = np.empty((H * W, 3), dtype=np.float32)
        _put_rows(img, idx, alb)
        miss = np.flatnonzero(~hit)
        _put_rows(img, miss, _sky(scene, _ray_dirs(rays, miss)))
    lap("shading")

    noise_rng = np.random.default_rng([scene.seed, 7, W, H])
    rgb = develop(img.reshape(H, W, 3), scene.imaging, noise_rng, width_scale=W / 640.0)
    lap("imaging")

    amodal, t_masks = amodal_job.result()
    tm["masks"] = t_masks
    if lidar:
        pts, pids, t_lidar = lidar_job.result()
        tm["lidar"] = t_lidar
    else:
        pts, pids = np.zeros((0, 4), np.float32), np.zeros(0, np.int32)
    lap("wait")

    # ---- ground truth (world.md)
    vflat = visible_ids.reshape(-1)
    obj_ids = np.array([o.instance_id for o in objs], dtype=np.int32)
    vis_count = np.bincount(vflat, minlength=M + 1)[1:M + 1]
    am_count = np.count_nonzero(amodal.reshape(M, -1), axis=1).astype(np.int64) if M else np.zeros(0, np.int64)
    annotated = (vis_count >= MIN_VISIBLE_PIXELS) & (am_count > 0)
    annotations = []
    for k, o in enumerate(objs):
        if not annotated[k]:
            continue
        seen_in_amodal = np.bincount(vflat[amodal[k].reshape(-1)], minlength=M + 1)
        occluded_by = [int(j) for j in np.flatnonzero(seen_in_amodal)
                       if j != 0 and j != o.instance_id and annotated[int(j) - 1]]
        annotations.append(AmodalAnnotation(
            id=int(o.instance_id), category_id=int(o.category_id),
            category_name=class_name(o.category_id, WORLD_CLASSES), amodal=amodal[k],
            visible=visible_ids == o.instance_id, occlude_rate=float(1.0 - vis_count[k] / am_count[k]),
            occluded_by=occluded_by, order=-1, footprint=o.footprint.copy(), asset=o.asset))
    lap("gt")
    tm["total"] = time.perf_counter() - t_start

    return Frame(
        preset=scene.preset, seed=scene.seed, rgb=rgb, depth=depth, visible_ids=visible_ids,
        object_ids=obj_ids, amodal_masks=amodal,
        category_ids=np.array([o.category_id for o in objs], dtype=np.int32),
        footprints=[o.footprint.copy() for o in objs],
        centers_base=np.array([o.center_base for o in objs], dtype=np.float64).reshape(M, 3),
        sizes=np.array([o.size for o in objs], dtype=np.float64).reshape(M, 3),
        yaws=np.array([o.yaw for o in objs], dtype=np.float64),
        K=K, D=np.zeros(5), T_base_camera=T_bc.copy(), T_camera_lidar=scene.T_camera_lidar.copy(),
        T_base_lidar=T_bl, lidar_points=pts, lidar_ids=pids, annotations=annotations,
        assets=[o.asset for o in objs], split=scene.split, timings=tm,
        skipped_assets=int(scene.extras.get("skipped_assets", 0)))
