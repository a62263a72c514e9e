"""Scene composition of the realistic presets ``tabletop`` and ``street`` (world.md version 2).

A scene depends only on ``(preset, split, seed)`` (and the camera rig on ``rig_seed``).
Occlusion comes from how objects are grouped, as in real scenes:

* ``tabletop``: one or two clusters on a table of random size; objects rest upright or
  lying (the asset's pose hint), random yaw, often placed right against an object already
  on the table (touching allowed, no interpenetration of footprints); floor, walls and
  furniture behind the table.
* ``street``: a road along the viewing direction with sidewalks and curbs; rows of parked
  cars, moving vehicles along their lane, groups of people, bikes beside cars or in racks,
  lines of cones and barriers, street things on the sidewalk; buildings (textured boxes),
  trees and hedges, sky with clouds or a photo backdrop.

Models come from :class:`~ros2_amodal_seg.world.assets.AssetLibrary` (``--split test`` scenes
use only test models and test textures, ``--split train`` never one); a model that cannot
be loaded is skipped with a counted warning (``extras["skipped_assets"]``). No ROS imports.
"""
from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ros2_amodal_seg.errors import AssetError, ConfigError, InvalidInputError
from ros2_amodal_seg.world._blas import single_thread_blas
from ros2_amodal_seg.world.imaging import draw_imaging, kelvin_to_rgb
from ros2_amodal_seg.world.lod import LEVEL_TRIANGLES, LodCache, level_for
from ros2_amodal_seg.world.presets import REF_WIDTH, PresetConfig, get_preset
from ros2_amodal_seg.world.scene import (_check_seed, camera_T_base, convex_hull_2d, lidar_T_camera,
                                         polygons_overlap, rot_x, rot_y, rot_z)
from ros2_amodal_seg.world.surfaces import (SurfaceMesh, box_surface, cylinder_surface, ellipsoid_surface,
                                            merge_surfaces, plain_material, quad_surface)
from ros2_amodal_seg.world.textured import Material, TexturedMesh
from ros2_amodal_seg.world.world_scene import Lighting, Structure, WorldObject, WorldScene

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

# ----------------------------------------------------------------------------- asset access


class AssetSource:
    """The models and textures a scene generator draws from, with in-process caches.

    Args:
        library: an :class:`~ros2_amodal_seg.world.assets.AssetLibrary` (or an object with its
            ``models``, ``background_models``, ``load``, ``pose_hint`` methods); None = the
            default library, made on first use.
        texture_pools: ``{split: Mapping name -> image}`` with a ``names(kind)`` method
            (:func:`ros2_amodal_seg.world.textures.texture_pool`); None = the default pools.
        max_cached_mb: memory bound of the cache of loaded models [MiB].
        max_texture_mb: memory bound of the cache of pool textures [MiB].
    """

    def __init__(self, library=None, texture_pools: dict | None = None, max_cached_mb: float = 600.0,
                 max_texture_mb: float = 400.0):
        self._lib = library
        self._pools = dict(texture_pools or {})
        self._meshes: OrderedDict[str, TexturedMesh] = OrderedDict()
        self._prepared: OrderedDict[tuple, "_Prepared"] = OrderedDict()
        self._bytes = 0
        self._max_bytes = int(max_cached_mb * 2 ** 20)
        self._models: dict[tuple, list[str]] = {}
        self._lods: LodCache | None = None
        self._textures: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._tex_bytes = 0
        self._max_tex_bytes = int(max_texture_mb * 2 ** 20)
        #: asset id -> how many times a scene had to skip it (missing or corrupt model).
        self.skipped: dict[str, int] = {}

    @property
    def library(self):
        if self._lib is None:
            from ros2_amodal_seg.world.assets import AssetLibrary

            try:
                self._lib = AssetLibrary()
            except AssetError as exc:
                raise ConfigError(f"the realistic presets need the asset library ({exc}); run "
                                  "`amodal-seg assets --build-cache` after installing sweethome3d-furniture, "
                                  "or use the shapes-tabletop / shapes-street presets") from exc
        return self._lib

    def pool(self, split: str):
        if split not in self._pools:
            from ros2_amodal_seg.world.textures import texture_pool

            self._pools[split] = texture_pool(split, lib=self.library)
        return self._pools[split]

    def models(self, class_id: int, split: str, preset: str) -> list[str]:
        key = (class_id, split, preset)
        if key not in self._models:
            self._models[key] = list(self.library.models(class_id, split=split, preset=preset))
        return self._models[key]

    def background_models(self, kind: str, split: str, preset: str) -> list[str]:
        key = ("bg", kind, split, preset)
        if key not in self._models:
            try:
                self._models[key] = list(self.library.background_models(kind, split=split, preset=preset))
            except InvalidInputError:
                self._models[key] = []
        return self._models[key]

    def texture_names(self, split: str, kinds: tuple[str, ...]) -> list[str]:
        key = ("tex", split, kinds)
        if key not in self._models:
            pool = self.pool(split)
            self._models[key] = sorted({n for k in kinds for n in pool.names(k)})
        return self._models[key]

    def texture(self, split: str, name: str) -> np.ndarray | None:
        """A texture of the split's pool (kept in memory once read), or None (counted warning)
        when it cannot be read."""
        key = (split, name)
        img = self._textures.get(key)
        if img is not None:
            self._textures.move_to_end(key)
            return img
        try:
            img = np.ascontiguousarray(self.pool(split)[name], dtype=np.uint8)
        except (AssetError, KeyError) as exc:
            self._skip(name, exc)
            return None
        self._textures[key] = img
        self._tex_bytes += img.nbytes
        while self._tex_bytes > self._max_tex_bytes and len(self._textures) > 1:
            _, old = self._textures.popitem(last=False)
            self._tex_bytes -= old.nbytes
        return img

    def _skip(self, asset_id: str, exc: Exception) -> None:
        n = self.skipped.get(asset_id, 0)
        self.skipped[asset_id] = n + 1
        if n == 0:
            log.warning("skipping asset %s: %s (%d asset(s) skipped so far)", asset_id, exc, len(self.skipped))

    def load(self, asset_id: str) -> TexturedMesh | None:
        """The model (cached), or None with a counted warning when it is missing or corrupt."""
        if asset_id in self._meshes:
            self._meshes.move_to_end(asset_id)
            return self._meshes[asset_id]
        try:
            m = self.library.load(asset_id)
            if len(m.triangles) == 0 or not np.isfinite(np.asarray(m.vertices)).all():
                raise AssetError(asset_id, "empty or non-finite mesh")
        except (AssetError, OSError, ValueError) as exc:
            self._skip(asset_id, exc)
            return None
        self._meshes[asset_id] = m
        self._bytes += _mesh_bytes(m)
        while self._bytes > self._max_bytes and len(self._meshes) > 1:
            _, old = self._meshes.popitem(last=False)
            self._bytes -= _mesh_bytes(old)
            for key in [k for k in self._prepared if k[0] == old.asset]:
                del self._prepared[key]
        return m

    def pose_hint(self, asset_id: str) -> str:
        try:
            return self.library.pose_hint(asset_id)
        except AssetError:
            return "upright"

    def _lod_cache(self) -> LodCache:
        if self._lods is None:
            cfg = getattr(self.library, "config", None)
            folder = getattr(cfg, "cache_dir", None)
            self._lods = LodCache(Path(folder) / "lod" if folder is not None else None)
        return self._lods

    def _stamp(self, asset_id: str) -> str:
        entries = getattr(self.library, "entries", {})
        if asset_id in entries and hasattr(self.library, "cache_path"):
            return self.library.cache_path(asset_id).parent.name
        return "generated"

    def prepared(self, asset_id: str, pose: str, level: int = 0) -> "_Prepared | None":
        """The model in a rest pose at a level of detail (:mod:`ros2_amodal_seg.world.lod`), or
        None (counted warning) when it cannot be loaded."""
        key = (asset_id, pose, level)
        if key in self._prepared:
            self._prepared.move_to_end(key)
            return self._prepared[key]
        m = self.load(asset_id)
        if m is None:
            return None
        if level:
            try:
                m = self._lod_cache().get(m, self._stamp(asset_id), level)
            except (AssetError, ValueError) as exc:
                self._skip(asset_id, exc)
                return None
        p = _Prepared.make(m, pose)
        self._prepared[key] = p
        while len(self._prepared) > 512:
            self._prepared.popitem(last=False)
        return p


def _mesh_bytes(m: TexturedMesh) -> int:
    return int(np.asarray(m.vertices).nbytes + np.asarray(m.triangles).nbytes + np.asarray(m.uvs).nbytes
               + sum(np.asarray(t).nbytes for t in m.textures))


_SOURCE: AssetSource | None = None


def default_source() -> AssetSource:
    """The process-wide :class:`AssetSource` (default library and texture pools)."""
    global _SOURCE
    if _SOURCE is None:
        _SOURCE = AssetSource()
    return _SOURCE


def set_default_source(source: AssetSource | None) -> None:
    """Replace the process-wide source (tests; None resets to the default library)."""
    global _SOURCE
    _SOURCE = source


# pose codes: rotation of the catalogue pose before resting on z = 0
_POSE_R = {"up": np.eye(3), "x+": rot_x(np.pi / 2), "x-": rot_x(-np.pi / 2),
           "y+": rot_y(np.pi / 2), "y-": rot_y(-np.pi / 2)}


@dataclass
class _Prepared:
    """A model in a rest pose: ``vertices`` ``[V, 3]`` float64 object frame (bbox centred on
    x = y = 0, resting on z = 0), ``hull`` ``[K, 2]`` xy convex hull, ``radius`` of the hull,
    ``size`` ``[3]`` bbox extents [m]."""

    mesh: TexturedMesh
    vertices: np.ndarray
    hull: np.ndarray
    radius: float
    size: np.ndarray

    @property
    def num_triangles(self) -> int:
        return int(len(self.mesh.triangles))

    @classmethod
    def make(cls, m: TexturedMesh, pose: str) -> "_Prepared":
        v = np.asarray(m.vertices, dtype=np.float64) @ _POSE_R[pose].T
        lo, hi = v.min(0), v.max(0)
        v = v - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
        hull = convex_hull_2d(v[:, :2])
        return cls(mesh=m, vertices=v, hull=hull, radius=float(np.sqrt((hull ** 2).sum(1).max())),
                   size=hi - lo)


@dataclass
class _View:
    """Chooses an object's level of detail from its projected size.

    Attributes:
        src: the asset source. cam: ``[3]`` camera position in base_link [m].
        fx_ref: focal length [px] at 640 px width. T_camera_base: ``[4, 4]`` base_link -> camera_optical_frame.
        per_px2, max_background_triangles: the preset's level-of-detail settings.
    """

    src: AssetSource
    cam: np.ndarray
    fx_ref: float
    T_camera_base: np.ndarray | None = None
    per_px2: float = 0.04
    max_background_triangles: int = 3000
    boxes: dict = field(default_factory=dict)      # instance id -> projected box of a placed object

    def box(self, fp: np.ndarray, z0: float, height: float) -> np.ndarray | None:
        """Projected bounding box ``[4]`` (x0, y0, x1, y1) [px at 640 px width, relative to the
        principal point] of a prism (footprint ``fp`` ``[K, 2]``, from ``z0`` up ``height`` m),
        or None when part of it is behind the camera."""
        pts = np.concatenate([np.c_[fp, np.full(len(fp), z0)], np.c_[fp, np.full(len(fp), z0 + height)]])
        pc = pts @ self.T_camera_base[:3, :3].T + self.T_camera_base[:3, 3]
        if (pc[:, 2] <= 1e-3).any():
            return None
        uv = pc[:, :2] / pc[:, 2:3] * self.fx_ref
        return np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])

    def at(self, aid: str, pose: str, prep0: _Prepared, xy: np.ndarray, z0: float = 0.0) -> _Prepared:
        """The level of ``aid`` fit for an object at ``xy`` resting on ``z0`` (``prep0``: level 0)."""
        sz = prep0.size
        r = 0.5 * math.sqrt(sz[0] * sz[0] + sz[1] * sz[1] + sz[2] * sz[2])
        dist = math.sqrt((xy[0] - self.cam[0]) ** 2 + (xy[1] - self.cam[1]) ** 2
                         + (z0 + sz[2] / 2 - self.cam[2]) ** 2)
        if dist <= r:
            return prep0
        level = level_for(self.fx_ref * 2.0 * r / dist, prep0.num_triangles, self.per_px2)
        if level == 0:
            return prep0
        return self.src.prepared(aid, pose, level) or prep0


# ----------------------------------------------------------------------------- placement

def _unit_normals(poly: np.ndarray) -> np.ndarray:
    """``[K', 2]`` unit normals of a polygon's edges (zero-length edges dropped)."""
    e = np.roll(poly, -1, axis=0) - poly
    n = np.stack([-e[:, 1], e[:, 0]], axis=1)
    ln = np.hypot(n[:, 0], n[:, 1])
    keep = ln > 1e-12
    return n[keep] / ln[keep, None]


class _Layout:
    """Footprints placed so far (objects and structure) and the checks a new one must pass.

    Overlap is the separating-axis test of convex polygons (as
    :func:`~ros2_amodal_seg.world.scene.polygons_overlap`): two footprints overlap unless, along
    some edge normal of either, they are at least ``gap`` apart (touching is not overlapping at
    gap 0). Each placed footprint keeps its normals and extents along them.

    Args:
        gap: default clearance between object footprints [m] (0: they may touch).
    """

    #: clearance kept from structure footprints (curbs, buildings, trunks) [m].
    STRUCTURE_GAP = 0.02

    def __init__(self, gap: float):
        self.gap = gap
        self.objects: list[WorldObject] = []
        self._polys: list[tuple] = []          # (poly, normals, min, max along its own normals)
        self._is_obj: list[bool] = []
        self._c = np.zeros((0, 2))
        self._r = np.zeros(0)

    def _register(self, fp: np.ndarray, is_obj: bool) -> None:
        c = fp.mean(0)
        n = _unit_normals(fp)
        proj = fp @ n.T
        self._polys.append((fp, n, proj.min(0), proj.max(0)))
        self._is_obj.append(is_obj)
        self._c = np.vstack([self._c, c[None]])
        self._r = np.append(self._r, np.sqrt(((fp - c) ** 2).sum(1).max()))

    def free(self, fp: np.ndarray, gap: float | None = None) -> bool:
        """True when ``fp`` ``[K, 2]`` (CCW convex) clears every placed footprint (``gap`` for
        objects, :attr:`STRUCTURE_GAP` for structure)."""
        gap = self.gap if gap is None else gap
        if not self._polys:
            return True
        c = fp.mean(0)
        r = np.sqrt(((fp - c) ** 2).sum(1).max())
        d = np.hypot(self._c[:, 0] - c[0], self._c[:, 1] - c[1])
        cand = np.flatnonzero(d < self._r + r + max(gap, self.STRUCTURE_GAP) + 1e-6)
        if not len(cand):
            return True
        nf = _unit_normals(fp)
        pf = fp @ nf.T
        f_lo, f_hi = pf.min(0), pf.max(0)
        for i in cand:
            g = gap if self._is_obj[i] else self.STRUCTURE_GAP
            poly, ni, i_lo, i_hi = self._polys[i]
            q = poly @ nf.T                                   # the placed polygon on the new normals
            if (np.maximum(q.min(0) - f_hi, f_lo - q.max(0)) - g > -1e-9).any():
                continue
            q = fp @ ni.T                                     # the new polygon on the placed normals
            if (np.maximum(i_lo - q.max(0), q.min(0) - i_hi) - g > -1e-9).any():
                continue
            return False                                      # no separating axis
        return True

    def add(self, o: WorldObject) -> None:
        self.objects.append(o)
        self._register(o.footprint, True)

    def block(self, fp: np.ndarray) -> None:
        self._register(fp, False)


def _footprint(prep: _Prepared, xy: np.ndarray, yaw: float) -> np.ndarray:
    """``[K, 2]`` CCW convex footprint in base_link: the rest pose's hull turned by ``yaw`` and
    moved to ``xy`` (a rotation keeps a CCW convex polygon CCW and convex)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return prep.hull @ np.array([[c, s], [-s, c]]) + xy


def _make_object(prep: _Prepared, asset: str, cid: int, iid: int, xy: np.ndarray, yaw: float, z0: float,
                 pose: str, rng: np.random.Generator, fp: np.ndarray) -> WorldObject:
    R = rot_z(yaw)
    t = np.array([xy[0], xy[1], z0])
    m = prep.mesh
    mats = m.materials
    if cid == 13 and rng.random() < 0.3:                 # class 13 may get random colours (world.md)
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        mats = [Material(x.name, np.clip(np.asarray(x.diffuse) * tint, 0, 1).astype(np.float32), x.specular,
                         x.shininess, x.texture, x.opacity) for x in mats]
    v = prep.vertices @ R.T + t
    surf = SurfaceMesh(name=asset, vertices=v, triangles=np.asarray(m.triangles, dtype=np.int32),
                       uvs=np.asarray(m.uvs, dtype=np.float32), material_ids=np.asarray(m.material_ids, np.int32),
                       materials=list(mats), textures=list(m.textures))
    center = R @ np.array([0.0, 0.0, prep.size[2] / 2]) + t
    return WorldObject(instance_id=iid, category_id=cid, asset=asset, mesh=surf, center_base=center,
                       size=prep.size.copy(), yaw=float(np.arctan2(np.sin(yaw), np.cos(yaw))), footprint=fp,
                       pose="upright" if pose == "up" else "lying")


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


# ----------------------------------------------------------------------------- textures

@dataclass
class _Tex:
    """Texture helper of one scene: random pool textures of the scene's split, as materials."""

    src: AssetSource
    split: str
    rng: np.random.Generator
    used: list = None          # pool names of the textures this scene uses

    def __post_init__(self) -> None:
        self.used = []

    def image(self, kinds: tuple[str, ...], prefer: tuple[str, ...] = ()) -> np.ndarray | None:
        """A random texture of the given pool kinds; with ``prefer``, only names containing one
        of those words (all of the kinds when none does)."""
        names = self.src.texture_names(self.split, kinds)
        if prefer:
            names = [n for n in names if any(w in n for w in prefer)] or names
        for _ in range(3):
            if not names:
                return None
            name = _pick(self.rng, names)
            img = self.src.texture(self.split, name)
            if img is not None:
                self.used.append(name)
                return img
        return None

    def material(self, name: str, kinds: tuple[str, ...], tint=(0.75, 1.1), base=None, p_plain: float = 0.1,
                 specular: float = 0.0, shininess: float = 10.0,
                 prefer: tuple[str, ...] = ()) -> tuple[Material, list[np.ndarray]]:
        """A material: a pool texture (kinds, preferred words) times a tint, or a plain colour
        (``base`` jittered, or random) with probability ``p_plain``."""
        rng = self.rng
        img = None if rng.random() < p_plain else self.image(kinds, prefer)
        if img is None:
            if base is not None:
                rgb = np.asarray(base, dtype=np.float64)
            else:                                           # muted colours: grey plus a tint
                rgb = rng.uniform(0.3, 0.85) * (1.0 + rng.uniform(-0.25, 0.25, 3))
            rgb = np.clip(rgb * rng.uniform(0.85, 1.15, 3), 0, 1)
        else:
            rgb = np.clip(rng.uniform(*tint) * rng.uniform(0.9, 1.1, 3), 0, 1)
        return plain_material(name, rgb, img, specular=specular, shininess=shininess)


# ----------------------------------------------------------------------------- common

def _lighting(rng: np.random.Generator, family: str) -> Lighting:
    kelvin = float(rng.uniform(3000.0, 7500.0))
    if family == "tabletop":
        el = np.deg2rad(rng.uniform(35, 80))
        az = np.deg2rad(rng.uniform(110, 250))              # from the camera's side: walls behind stay lit
        overcast = False
    else:
        el = np.deg2rad(rng.uniform(12, 75))
        az = rng.uniform(0, 2 * np.pi)
        overcast = rng.random() < 0.2
    key_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    key_int = rng.uniform(0.3, 0.5) if overcast else rng.uniform(0.8, 1.3)
    amb_int = rng.uniform(0.45, 0.7) if overcast else rng.uniform(0.12, 0.4)
    amb_col = kelvin_to_rgb(rng.uniform(5500, 10000)) if family == "street" else kelvin_to_rgb(rng.uniform(3500, 7000))
    if rng.random() < 0.6:
        fel = np.deg2rad(rng.uniform(10, 60))
        faz = rng.uniform(0, 2 * np.pi)
        fill_dir = np.array([np.cos(fel) * np.cos(faz), np.cos(fel) * np.sin(faz), np.sin(fel)])
        fill_rgb = kelvin_to_rgb(rng.uniform(3000, 9000)) * rng.uniform(0.08, 0.3)
    else:
        fill_dir, fill_rgb = np.array([0.0, 0.0, 1.0]), np.zeros(3)
    if family == "street":
        if overcast:
            g = rng.uniform(0.6, 0.85)
            hor, zen, clouds = np.full(3, g) + rng.normal(0, 0.02, 3), np.full(3, g * 0.9), 0.0
        else:
            hor = np.array([0.78, 0.84, 0.92]) * rng.uniform(0.85, 1.05) + rng.normal(0, 0.03, 3)
            zen = np.array([0.30, 0.50, 0.85]) * rng.uniform(0.75, 1.1) + rng.normal(0, 0.03, 3)
            clouds = float(rng.uniform(0.1, 0.8)) if rng.random() < 0.6 else 0.0
    else:
        wall = rng.uniform(0.35, 0.8, 3)
        hor, zen, clouds = wall, wall * 0.8, 0.0
    return Lighting(key_dir=key_dir, key_kelvin=kelvin, key_rgb=kelvin_to_rgb(kelvin) * key_int,
                    fill_dir=fill_dir, fill_rgb=fill_rgb, ambient_rgb=amb_col * amb_int,
                    sky_horizon=np.clip(hor, 0, 1), sky_zenith=np.clip(zen, 0, 1), clouds=clouds,
                    cloud_seed=int(rng.integers(2 ** 31)))


def _rig(cfg: PresetConfig, rig: np.random.Generator):
    fx_ref = float(rig.uniform(*cfg.fx_range))
    ang = rig.uniform(0, 2 * np.pi)
    pp_offset = np.array([np.cos(ang), np.sin(ang)]) * cfg.principal_jitter_px * np.sqrt(rig.random())
    height = float(rig.uniform(*cfg.camera_height))
    pitch = float(np.deg2rad(rig.uniform(*cfg.camera_pitch_deg)))
    return fx_ref, pp_offset, height, pitch


def _class_plan(rng: np.random.Generator, class_ids: list[int], n: int) -> list[int]:
    return [int(c) for c in rng.choice(class_ids, size=n)]


# ----------------------------------------------------------------------------- tabletop

_TABLE_TEX = ("table", "material")
_WALL_TEX = ("wall", "photo", "material")
_FLOOR_TEX = ("ground", "table", "material")
_GROUND_TEX = ("ground",)
_BUILDING_TEX = ("wall", "material", "photo")


def _tabletop(cfg: PresetConfig, split: str, rng: np.random.Generator, view: _View, height: float,
              pitch: float, structures: list, layout: _Layout) -> dict:
    src = view.src
    tex = _Tex(src, split, rng)
    look = np.array([height / np.tan(pitch), 0.0])
    cluster = look + rng.normal(0.0, 0.03, 2)
    L = float(rng.uniform(*cfg.table_length_range))
    Wd = float(rng.uniform(*cfg.table_width_range))
    tyaw = float(rng.uniform(-0.5, 0.5))
    Rt = rot_z(tyaw)[:2, :2]
    off = rng.uniform(-0.6, 0.6, 2) * np.array([max(L / 2 - 0.15, 0.0), max(Wd / 2 - 0.15, 0.0)])
    table_c = cluster - Rt @ off
    corners = np.array([[-L / 2, -Wd / 2], [L / 2, -Wd / 2], [L / 2, Wd / 2], [-L / 2, Wd / 2]]) @ Rt.T + table_c
    thick = float(rng.uniform(0.025, 0.05))
    depth = cfg.floor_depth
    mat, texs = tex.material("table", _TABLE_TEX, specular=float(rng.uniform(0.0, 0.3)),
                             shininess=float(rng.uniform(10, 80)))
    parts = [box_surface("table_top", (L, Wd, thick), rot_z(tyaw), [table_c[0], table_c[1], -thick / 2], mat, texs,
                         tile=float(rng.uniform(0.3, 1.2)))]
    leg = float(rng.uniform(0.04, 0.07))
    for sx in (-1, 1):
        for sy in (-1, 1):
            c = table_c + Rt @ np.array([sx * (L / 2 - leg), sy * (Wd / 2 - leg)])
            parts.append(box_surface("table_leg", (leg, leg, depth - thick), rot_z(tyaw),
                                     [c[0], c[1], -thick - (depth - thick) / 2], mat, texs, tile=0.5))
    structures.append(Structure("table", merge_surfaces(parts, "table"), footprint=None))
    # floor, walls
    fm, ft = tex.material("floor", _FLOOR_TEX)
    fx0, fx1 = -4.0, table_c[0] + 8.0
    structures.append(Structure("floor", quad_surface(
        "floor", np.array([[fx0, -8, -depth], [fx1, -8, -depth], [fx1, 8, -depth], [fx0, 8, -depth]]), fm, ft,
        tile=float(rng.uniform(0.4, 2.0)))))
    far = float(corners[:, 0].max())
    wall_x = far + float(rng.uniform(0.5, 2.2))
    top = float(rng.uniform(2.4, 3.0)) - depth
    wm, wt = tex.material("wall", _WALL_TEX, p_plain=0.25)
    wyaw = float(rng.uniform(-0.3, 0.3))
    wc = np.array([wall_x, table_c[1]])
    e = rot_z(wyaw)[:2, 1] * 8.0
    structures.append(Structure("wall", quad_surface(
        "wall", np.array([[*(wc - e), -depth], [*(wc + e), -depth], [*(wc + e), top], [*(wc - e), top]]), wm, wt,
        tile=float(rng.uniform(0.6, 3.0)))))
    wall_fp = convex_hull_2d(np.array([wc - e, wc + e, wc + e + rot_z(wyaw)[:2, 0] * 0.1,
                                       wc - e + rot_z(wyaw)[:2, 0] * 0.1]))
    side_fp = None
    if rng.random() < 0.5:
        side = 1.0 if rng.random() < 0.5 else -1.0
        ys = float(side * (np.abs(corners[:, 1]).max() + rng.uniform(0.6, 2.0)))
        sm, st = tex.material("side_wall", _WALL_TEX, p_plain=0.25)
        structures.append(Structure("wall", quad_surface(
            "side_wall", np.array([[-3, ys, -depth], [wall_x, ys, -depth], [wall_x, ys, top], [-3, ys, top]]),
            sm, st, tile=float(rng.uniform(0.6, 3.0)))))
        side_fp = convex_hull_2d(np.array([[-3, ys], [wall_x, ys], [wall_x, ys + 0.1 * side], [-3, ys + 0.1 * side]]))
    # furniture behind / beside the table (never annotated)
    table_fp = convex_hull_2d(corners)
    placed_bg = [table_fp, wall_fp] + ([side_fp] if side_fp is not None else [])
    kinds = ("furniture", "plant", "appliance")
    bg_assets: list[str] = []
    for _ in range(int(rng.integers(0, 4))):
        ids = src.background_models(_pick(rng, kinds), split, "tabletop")
        if not ids:
            continue
        aid = _pick(rng, ids)
        prep0 = src.prepared(aid, "up")
        if prep0 is None:
            continue
        for _attempt in range(8):
            yaw = -np.pi / 2 + wyaw + rng.normal(0, 0.2)          # front (-y) towards the camera
            x = wall_x - prep0.size[1] / 2 - rng.uniform(0.02, 0.3)
            y = float(table_c[1] + rng.uniform(-3.0, 3.0))
            prep = view.at(aid, "up", prep0, np.array([x, y]), -depth)
            fp = _footprint(prep, np.array([x, y]), yaw)
            if any(polygons_overlap(fp, b, 0.05) for b in placed_bg):
                continue
            placed_bg.append(fp)
            o = _make_object(prep, aid, 0, 0, np.array([x, y]), yaw, -depth, "up", rng, fp)
            structures.append(Structure("furniture", o.mesh, footprint=fp))
            bg_assets.append(aid)
            break
    # objects on the table
    lo_n, hi_n = cfg.num_objects                  # more scenes with many objects: clusters are crowded
    n = lo_n + int(np.floor((hi_n - lo_n + 1) * np.sqrt(rng.random())))
    n = min(n, hi_n)
    centres = [cluster]
    if n >= 9 and rng.random() < 0.25:
        centres.append(table_c + Rt @ (rng.uniform(-0.35, 0.35, 2) * np.array([L, Wd])))
    classes = [c for c in cfg.class_ids if src.models(c, split, "tabletop")]
    if not classes:
        raise ConfigError(f"no {split} models for the tabletop classes {cfg.class_ids}")
    inner = np.array([L / 2 - 0.01, Wd / 2 - 0.01])
    # the models first, then placed tallest first: shorter things end up behind taller ones
    plan = [m for m in (_tabletop_model(cfg, rng, src, split, cid) for cid in _class_plan(rng, classes, n)) if m]
    plan.sort(key=lambda m: -float(m[3].size[2]))
    for cid, aid, pose, prep0 in plan:
        if not _place_tabletop_object(cfg, rng, view, split, cid, centres, table_c, Rt, inner, layout,
                                      first=(aid, pose, prep0)):
            _place_tabletop_object(cfg, rng, view, split, cid, centres, table_c, Rt, inner, layout)
    for _ in range(8):                                      # a crowded table: top up to the minimum
        if len(layout.objects) >= cfg.num_objects[0]:
            break
        _place_tabletop_object(cfg, rng, view, split, _class_plan(rng, classes, 1)[0], centres, table_c, Rt,
                               inner, layout)
    return {"table": [float(L), float(Wd)], "clusters": len(centres), "background_assets": bg_assets,
            "textures": tex.used}


def _tabletop_model(cfg, rng, src: AssetSource, split: str, cid: int):
    """``(cid, asset, pose, level-0 _Prepared)`` of a loadable model of class ``cid`` in a rest
    pose (its pose hint), or None after 3 tries."""
    for _ in range(3):
        aid = _pick(rng, src.models(cid, split, "tabletop"))
        hint = src.pose_hint(aid)
        lying = hint == "lying" or (hint == "either" and rng.random() < 0.4)
        pose = _pick(rng, ["x+", "x-", "y+", "y-"]) if lying else "up"
        prep0 = src.prepared(aid, pose)
        if prep0 is not None and cfg.size_range[0] - 1e-9 <= prep0.size.max() <= cfg.size_range[1] + 1e-9:
            return cid, aid, pose, prep0
    return None


def _place_tabletop_object(cfg, rng, view, split, cid, centres, table_c, Rt, inner, layout, first=None) -> bool:
    """Place one object of class ``cid`` (the model ``first`` = (asset, pose, prep0), else up to 3
    drawn ones) on the table; False when no model found room."""
    for _model_try in range(1 if first is not None else 3):
        if first is not None:
            aid, pose, prep0 = first
        else:
            m = _tabletop_model(cfg, rng, view.src, split, cid)
            if m is None:
                continue
            _, aid, pose, prep0 = m
        # up to 6 valid spots; keep the one whose projection overlaps the objects already
        # placed the most (clusters "so that many overlap in view", world.md)
        best, best_score, found = None, -1.0, 0
        for attempt in range(60):
            if found >= 6 or (found and attempt >= 30):
                break
            yaw = float(rng.uniform(-np.pi, np.pi))
            if layout.objects and rng.random() < 0.75:
                # right against an object already there (touching), mostly behind it as seen
                # from the camera (objects in a cluster hide each other), else on any side
                nb = _pick(rng, layout.objects)
                if rng.random() < 0.75:
                    ang = math.atan2(nb.center_base[1] - view.cam[1], nb.center_base[0] - view.cam[0])
                    ang += rng.uniform(-0.9, 0.9)
                else:
                    ang = rng.uniform(0, 2 * np.pi)
                nb_r = float(np.sqrt(((nb.footprint - nb.center_base[:2]) ** 2).sum(1).max()))
                dist = (nb_r + prep0.radius) * rng.uniform(0.6, 0.95)
                xy = nb.center_base[:2] + dist * np.array([np.cos(ang), np.sin(ang)])
            else:
                c = centres[int(rng.integers(len(centres)))]
                xy = c + rng.normal(0.0, cfg.cluster_sigma * (1.0 + attempt / 20.0), 2)
            prep = view.at(aid, pose, prep0, xy)
            fp = _footprint(prep, xy, yaw)
            local = (fp - table_c) @ Rt
            if (np.abs(local) > inner).any():
                continue
            if not layout.free(fp):
                continue
            found += 1
            score = _overlap_score(view, fp, prep.size[2], layout.objects)
            if score > best_score:
                best, best_score = (prep, xy, yaw, fp), score
        if best is None:
            continue                                        # no room for this model: try another
        prep, xy, yaw, fp = best
        layout.add(_make_object(prep, aid, cid, len(layout.objects) + 1, xy, yaw, 0.0, pose, rng, fp))
        return True
    return False


def _overlap_score(view: _View, fp: np.ndarray, height: float, objects: list) -> float:
    """Sum over placed objects of the share of the new object's projected box they overlap
    (and of theirs it overlaps): how much a placement adds to the occlusion in view."""
    b = view.box(fp, 0.0, height)
    if b is None or not objects:
        return 0.0
    area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
    score = 0.0
    for o in objects:
        ob = view.boxes.get(o.instance_id)
        if ob is None:
            ob = view.boxes[o.instance_id] = view.box(o.footprint, float(o.center_base[2] - o.size[2] / 2),
                                                      float(o.size[2]))
        if ob is None:
            continue
        w = min(b[2], ob[2]) - max(b[0], ob[0])
        h = min(b[3], ob[3]) - max(b[1], ob[1])
        if w > 0 and h > 0:
            score += w * h / area + w * h / max((ob[2] - ob[0]) * (ob[3] - ob[1]), 1e-9)
    return score


# ----------------------------------------------------------------------------- street

@dataclass
class _Road:
    """Road frame: origin ``(0, y0)``, direction ``yaw``; ``half`` road half-width, ``walk``
    sidewalk width, ``curb`` curb width [m]."""

    y0: float
    yaw: float
    half: float
    walk: float
    curb: float

    def to_base(self, s: float, d: float) -> np.ndarray:
        """base_link (x, y) of road coordinates (s along, d left of the road centre line)."""
        c, sn = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([c * s - sn * d, self.y0 + sn * s + c * d])


def _street(cfg: PresetConfig, split: str, rng: np.random.Generator, view: _View, height: float,
            half_hfov: float, structures: list, layout: _Layout) -> dict:
    src = view.src
    tex = _Tex(src, split, rng)
    road = _Road(y0=float(rng.uniform(-4.5, 4.5)), yaw=float(rng.uniform(-0.08, 0.08)),
                 half=float(rng.uniform(3.0, 6.5)), walk=float(rng.uniform(2.0, 4.5)), curb=0.15)
    s0, s1 = -30.0, 260.0

    def strip(name, d0, d1, mat_texs, tile, z=0.0):
        m, t = mat_texs
        P = [road.to_base(s0, d0), road.to_base(s1, d0), road.to_base(s1, d1), road.to_base(s0, d1)]
        return quad_surface(name, np.array([[p[0], p[1], z] for p in P]), m, t, tile=tile)

    asphalt = tex.material("asphalt", _GROUND_TEX, tint=(0.45, 0.8), base=(0.3, 0.3, 0.32),
                           prefer=("asphalt", "gravel", "concrete"))
    parts = [strip("road", -road.half, road.half, asphalt, float(rng.uniform(1.5, 4.0)))]
    walk_m = tex.material("sidewalk", _GROUND_TEX + ("wall",), tint=(0.6, 1.0), base=(0.6, 0.6, 0.58),
                          prefer=("pavers", "concrete", "brick", "tiles", "gravel"))
    verge_m = tex.material("verge", _GROUND_TEX, tint=(0.6, 1.0), base=(0.3, 0.45, 0.2),
                           prefer=("grass", "turf", "gravel"))
    curb_m = plain_material("curb", np.full(3, rng.uniform(0.5, 0.8)))
    outer = road.half + road.curb + road.walk
    for side in (-1, 1):
        a, b = road.half + road.curb, outer
        parts.append(strip("sidewalk", side * a, side * b, walk_m, float(rng.uniform(0.5, 2.0))))
        parts.append(strip("verge", side * b, side * (b + 200.0), verge_m, float(rng.uniform(1.0, 4.0))))
        parts.append(strip("gutter", side * road.half, side * a, curb_m, 1.0))
        # curb: a low box along the road edge
        mid = road.to_base((s0 + s1) / 2, side * (road.half + road.curb / 2))
        parts.append(box_surface("curb", (s1 - s0, road.curb, 0.12), rot_z(road.yaw), [mid[0], mid[1], 0.06],
                                 *curb_m, tile=1.0))
        cfp = np.array([road.to_base(s0, side * road.half), road.to_base(s1, side * road.half),
                        road.to_base(s1, side * (road.half + road.curb)), road.to_base(s0, side * (road.half + road.curb))])
        layout.block(convex_hull_2d(cfp))
    # lane markings: dashed centre line (and sometimes edge lines)
    mark_m = plain_material("marking", np.full(3, rng.uniform(0.75, 0.95)))
    dash, gap = float(rng.uniform(2.0, 4.0)), float(rng.uniform(3.0, 8.0))
    s = s0 + rng.uniform(0, dash + gap)
    marks = []
    while s < 120.0:
        P = [road.to_base(s, -0.06), road.to_base(s + dash, -0.06), road.to_base(s + dash, 0.06), road.to_base(s, 0.06)]
        marks.append(quad_surface("marking", np.array([[p[0], p[1], 0.004] for p in P]), *mark_m, tile=1.0))
        s += dash + gap
    parts += marks
    structures.append(Structure("road", merge_surfaces(parts, "road")))

    # buildings, trees and hedges beyond the sidewalks
    bg_assets: list[str] = []
    for side in (-1, 1):
        d_front = outer + float(rng.uniform(0.0, 4.0))
        if rng.random() < 0.8:
            s = float(rng.uniform(-20.0, -5.0))
            while s < 160.0:
                w = float(rng.uniform(6.0, 25.0))
                dp = float(rng.uniform(8.0, 15.0))
                h = float(rng.uniform(4.0, 28.0))
                bm, bt = tex.material("building", _BUILDING_TEX, p_plain=0.15)
                c = road.to_base(s + w / 2, side * (d_front + dp / 2 + rng.uniform(0.0, 1.5)))
                b = box_surface("building", (w, dp, h), rot_z(road.yaw), [c[0], c[1], h / 2], bm, bt,
                                tile=float(rng.uniform(1.5, 6.0)))
                fp = convex_hull_2d(b.vertices[:, :2])
                structures.append(Structure("building", b, footprint=fp))
                layout.block(fp)
                s += w + float(rng.uniform(0.0, 6.0))
        if rng.random() < 0.6:
            _trees(rng, tex, view, split, road, side, structures, layout, bg_assets)
    # a photo backdrop on the horizon instead of (part of) the sky
    if rng.random() < 0.15:
        img = tex.image(("photo",))
        if img is not None:
            pm, pt = plain_material("backdrop", np.ones(3) * rng.uniform(0.7, 1.0), img)
            x = float(rng.uniform(180.0, 240.0))
            ext, top = float(rng.uniform(150, 300)), float(rng.uniform(40, 120))
            structures.append(Structure("backdrop", quad_surface(
                "backdrop", np.array([[x, ext, -5], [x, -ext, -5], [x, -ext, top], [x, ext, top]]), pm, pt,
                tile=float(2 * ext))))

    # objects: groups that occlude each other
    n_target = int(rng.integers(cfg.num_objects[0], cfg.num_objects[1] + 1))
    ctx = _StreetCtx(cfg, rng, view, split, road, half_hfov, layout, n_target)
    groups = ("parked", "traffic", "people", "bikes", "cones", "things")
    weights = np.array([0.3, 0.12, 0.25, 0.12, 0.11, 0.10])
    for _ in range(40):
        if len(layout.objects) >= n_target:
            break
        g = groups[int(rng.choice(len(groups), p=weights / weights.sum()))]
        getattr(ctx, g)()
    return {"road_half_width": road.half, "background_assets": bg_assets, "textures": tex.used}


def _trees(rng, tex, view, split, road, side, structures, layout, bg_assets: list) -> None:
    src = view.src
    ids = src.background_models("tree", split, "street") + src.background_models("hedge", split, "street")
    s = float(rng.uniform(0.0, 8.0))
    d = side * (road.half + road.curb + road.walk * rng.uniform(0.6, 0.9))
    bark = tex.material("bark", ("material", "ground", "table"), tint=(0.3, 0.6), base=(0.35, 0.25, 0.18),
                        prefer=("wood", "gravel"))
    leaves = tex.material("leaves", ("ground",), tint=(0.5, 0.9), base=(0.2, 0.45, 0.15), prefer=("grass", "turf"))
    while s < 80.0:
        c = road.to_base(s, d)
        if np.hypot(*c) < 5.0:                               # never around the camera
            s += 5.0
            continue
        if ids and rng.random() < 0.5:
            aid = _pick(rng, ids)
            # background trees: the coarsest level of detail; foliage that does not decimate
            # (thousands of separate leaves) would cost more than the annotated objects
            prep = src.prepared(aid, "up", len(LEVEL_TRIANGLES) - 1)
            if prep is not None and prep.num_triangles <= view.max_background_triangles:
                yaw = float(rng.uniform(-np.pi, np.pi))
                fp = _footprint(prep, c, yaw)
                o = _make_object(prep, aid, 0, 0, c, yaw, 0.0, "up", rng, fp)
                structures.append(Structure("tree", o.mesh, footprint=fp))
                layout.block(fp)
                bg_assets.append(aid)
                s += float(rng.uniform(6.0, 15.0))
                continue
        r = float(rng.uniform(0.1, 0.25))
        h = float(rng.uniform(2.0, 4.5))
        crown = np.array([rng.uniform(1.2, 3.0), 0.0, rng.uniform(1.5, 3.5)])
        crown[1] = crown[0] * rng.uniform(0.8, 1.2)
        bumps = 1.0 + 0.12 * rng.standard_normal(300)
        trunk = cylinder_surface("trunk", r, h + crown[2] * 0.5, [c[0], c[1], 0.0], *bark, tile=1.0)
        top = ellipsoid_surface("crown", crown, [c[0], c[1], h + crown[2] * 0.7], *leaves,
                                tile=float(rng.uniform(0.8, 2.0)), bumps=bumps)
        structures.append(Structure("tree", merge_surfaces([trunk, top], "tree"),
                                    footprint=convex_hull_2d(trunk.vertices[:, :2])))
        layout.block(convex_hull_2d(trunk.vertices[:, :2]))
        s += float(rng.uniform(6.0, 15.0))


class _StreetCtx:
    """Places groups of street objects (each method tries one group)."""

    def __init__(self, cfg, rng, view: _View, split, road: _Road, half_hfov, layout: _Layout, n_target: int):
        self.cfg, self.rng, self.view, self.src, self.split, self.road = cfg, rng, view, view.src, split, road
        self.half_hfov, self.layout, self.n_target = half_hfov, layout, n_target

    # -- helpers
    def _model(self, cid: int, pose: str = "up") -> tuple[str, _Prepared] | None:
        ids = self.src.models(cid, self.split, "street")
        for _ in range(3):
            if not ids:
                return None
            aid = _pick(self.rng, ids)
            prep = self.src.prepared(aid, pose)
            if prep is not None:
                return aid, prep
        return None

    def _visible_spot(self, xy: np.ndarray) -> bool:
        x, y = xy
        lo, hi = self.cfg.place_x_range
        return lo <= x <= hi and abs(np.arctan2(y, x)) < 0.95 * self.half_hfov

    def _try(self, cid: int, model, xy: np.ndarray, yaw: float, gap: float | None = None) -> WorldObject | None:
        if len(self.layout.objects) >= self.n_target or model is None:
            return None
        aid, prep0 = model
        if not self._visible_spot(xy):
            return None
        prep = self.view.at(aid, "up", prep0, xy)
        fp = _footprint(prep, xy, yaw)
        if fp[:, 0].min() < 1.0 or not self.layout.free(fp, gap):
            return None
        o = _make_object(prep, aid, cid, len(self.layout.objects) + 1, xy, yaw, 0.0, "up", self.rng, fp)
        self.layout.add(o)
        return o

    def _s_range(self) -> tuple[float, float]:
        lo, hi = self.cfg.place_x_range
        return lo, hi

    def _side(self) -> float:
        return 1.0 if self.rng.random() < 0.5 else -1.0

    def _along(self, flip: bool) -> float:
        return self.road.yaw + (np.pi / 2 if flip else -np.pi / 2) + float(self.rng.normal(0.0, 0.04))

    # -- groups
    def parked(self) -> None:
        """A row of parked vehicles along one road edge, nose to tail."""
        rng, road = self.rng, self.road
        side = self._side()
        flip = rng.random() < 0.5
        s = float(rng.uniform(*self._s_range()) * rng.uniform(0.3, 1.0))
        for _ in range(int(rng.integers(2, 6))):
            cid = 3 if rng.random() < 0.15 else 2
            model = self._model(cid)
            if model is None:
                return
            _, prep = model
            wdt, length = prep.size[0], prep.size[1]            # object y = vehicle length
            d = side * (road.half - wdt / 2 - rng.uniform(0.15, 0.5))
            o = self._try(cid, model, road.to_base(s + length / 2, d), self._along(flip))
            if o is not None and rng.random() < 0.3:
                self._bike_beside(o, side)
            s += length + float(rng.uniform(0.3, 2.0))

    def traffic(self) -> None:
        """A vehicle (or two) in a lane."""
        rng, road = self.rng, self.road
        for _ in range(int(rng.integers(1, 3))):
            cid = 3 if rng.random() < 0.35 else 2
            model = self._model(cid)
            if model is None:
                return
            lane = float(rng.uniform(-road.half + 1.5, road.half - 1.5)) if road.half > 1.6 else 0.0
            s = float(rng.uniform(*self._s_range()))
            self._try(cid, model, road.to_base(s, lane), self._along(lane > 0))

    def people(self) -> None:
        """A group of 2-5 people close together (sidewalk or crossing the road)."""
        rng, road = self.rng, self.road
        side = self._side()
        if rng.random() < 0.7:
            d = side * (road.half + road.curb + rng.uniform(0.3, road.walk - 0.3))
        else:
            d = float(rng.uniform(-road.half + 0.5, road.half - 0.5))
        centre = road.to_base(float(rng.uniform(*self._s_range()) * rng.uniform(0.3, 1.0)), d)
        facing = float(rng.uniform(-np.pi, np.pi))
        for _ in range(int(rng.integers(2, 6))):
            model = self._model(1)
            for _attempt in range(6):
                xy = centre + rng.normal(0.0, 0.7, 2)
                if self._try(1, model, xy, facing + float(rng.normal(0, 0.8)), gap=0.05) is not None:
                    break

    def _bike_beside(self, car: WorldObject, side: float) -> None:
        model = self._model(4)
        if model is None:
            return
        _, prep = model
        # on the kerb side of the car, parallel to it
        n = np.array([-np.sin(self.road.yaw), np.cos(self.road.yaw)]) * side
        off = car.size[0] / 2 + prep.size[0] / 2 + float(self.rng.uniform(0.15, 0.5))
        along = np.array([np.cos(self.road.yaw), np.sin(self.road.yaw)]) * float(self.rng.uniform(-1.5, 1.5))
        self._try(4, model, car.center_base[:2] + n * off + along, car.yaw + float(self.rng.normal(0, 0.1)), gap=0.05)

    def bikes(self) -> None:
        """Bikes side by side (a rack on the sidewalk) or beside a parked car."""
        rng, road = self.rng, self.road
        cars = [o for o in self.layout.objects if o.category_id in (2, 3)]
        if cars and rng.random() < 0.5:
            car = _pick(rng, cars)
            d = (car.center_base[:2] - np.array([0.0, road.y0])) @ np.array([-np.sin(road.yaw), np.cos(road.yaw)])
            self._bike_beside(car, 1.0 if d > 0 else -1.0)
            return
        side = self._side()
        s = float(rng.uniform(*self._s_range()) * rng.uniform(0.3, 1.0))
        d = side * (road.half + road.curb + rng.uniform(0.5, max(road.walk - 0.5, 0.6)))
        yaw = road.yaw + float(rng.normal(0.0, 0.15))          # across the sidewalk
        for _ in range(int(rng.integers(2, 5))):
            model = self._model(4)
            self._try(4, model, road.to_base(s, d), yaw, gap=0.05)
            s += float(rng.uniform(0.45, 0.8))

    def cones(self) -> None:
        """A line of cones or barriers (road works, a closed lane)."""
        rng, road = self.rng, self.road
        cid = 5 if rng.random() < 0.6 else 6
        side = self._side()
        d = side * float(rng.uniform(0.5, road.half))
        s = float(rng.uniform(*self._s_range()) * rng.uniform(0.3, 1.0))
        model = self._model(cid)
        if model is None:
            return
        for _ in range(int(rng.integers(3, 7))):
            _, prep = model
            yaw = road.yaw + (0.0 if cid == 6 else float(rng.uniform(-np.pi, np.pi)))
            self._try(cid, model, road.to_base(s, d), yaw, gap=0.05)
            s += (prep.size[0] + float(rng.uniform(0.05, 0.4))) if cid == 6 else float(rng.uniform(0.8, 3.0))
            if rng.random() < 0.3:
                model = self._model(cid) or model

    def things(self) -> None:
        """Street things (class 13: hydrants, bins, benches...) or a lone person on the sidewalk."""
        rng, road = self.rng, self.road
        cid = 13 if rng.random() < 0.7 else 1
        model = self._model(cid)
        side = self._side()
        d = side * (road.half + road.curb + rng.uniform(0.3, max(road.walk - 0.3, 0.4)))
        for _ in range(4):
            s = float(rng.uniform(*self._s_range()) * rng.uniform(0.3, 1.0))
            if self._try(cid, model, road.to_base(s, d), road.yaw + float(rng.choice([0, np.pi / 2, np.pi, -np.pi / 2]))
                         + float(rng.normal(0, 0.1)), gap=0.05) is not None:
                break


# ----------------------------------------------------------------------------- entry point

def build_world_scene(preset: str, seed: int, *, rig_seed: int | None = None, split: str = "train",
                      source: AssetSource | None = None) -> WorldScene:
    """Compose the realistic scene of ``(preset, split, seed)``.

    Args:
        preset: ``"tabletop"`` or ``"street"`` (a version-2 preset).
        seed: scene seed, integer >= 0.
        rig_seed: seed of the camera rig (K, camera height and pitch); None = ``seed``.
        split: ``"train"`` or ``"test"``: which held-out half of the models and textures.
        source: models and textures (default :func:`default_source`).

    Returns:
        :class:`~ros2_amodal_seg.world.world_scene.WorldScene`.

    Raises:
        ConfigError: unknown or version-1 preset, no asset library. InvalidInputError: bad seed or split.
    """
    cfg = get_preset(preset)
    if cfg.version != 2:
        raise ConfigError(f"preset {preset!r} is a version-1 preset; use build_scene")
    seed = _check_seed(seed)
    rig_seed = seed if rig_seed is None else _check_seed(rig_seed, "rig_seed")
    if split not in SPLITS:
        raise InvalidInputError(f"split must be 'train' or 'test', got {split!r}")
    src = source or default_source()
    with single_thread_blas():
        fam = 0 if cfg.family == "tabletop" else 1
        sidx = SPLITS.index(split)
        rng = np.random.default_rng([seed, fam, 2, sidx])
        rig = np.random.default_rng([rig_seed, fam, 2, 101])
        fx_ref, pp_offset, height, pitch = _rig(cfg, rig)
        T_base_camera = camera_T_base(height, pitch)
        T_camera_lidar = lidar_T_camera(cfg)
        half_hfov = float(np.arctan((REF_WIDTH / 2.0) / fx_ref))
        lighting = _lighting(rng, cfg.family)
        imaging = draw_imaging(rng, lighting.key_kelvin, cfg.noise_sigma_max)
        skipped_before = sum(src.skipped.values())
        structures: list[Structure] = []
        layout = _Layout(cfg.min_gap)
        view = _View(src, T_base_camera[:3, 3].copy(), fx_ref, np.linalg.inv(T_base_camera),
                     cfg.lod_triangles_per_px2, cfg.max_background_triangles)
        if cfg.family == "tabletop":
            notes = _tabletop(cfg, split, rng, view, height, pitch, structures, layout)
        else:
            notes = _street(cfg, split, rng, view, height, half_hfov, structures, layout)
        extras = {"rig_seed": rig_seed, "skipped_assets": sum(src.skipped.values()) - skipped_before, **notes}
    return WorldScene(preset=cfg.name, split=split, seed=seed, cfg=cfg, objects=layout.objects,
                      structures=structures, fx_ref=fx_ref, pp_offset=pp_offset, T_base_camera=T_base_camera,
                      T_camera_lidar=T_camera_lidar, lighting=lighting, imaging=imaging, extras=extras)
