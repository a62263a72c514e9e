"""Levels of detail of textured models, so that a frame's triangle count follows its pixels.

Open3D's ray-casting BVH costs about 1 us per triangle to build, every frame: a street of
twenty 30 000-triangle models would spend half a second on it. A model far away covers a
few hundred pixels and needs a few hundred triangles, so the scene composer picks, per
object, the coarsest level whose triangle budget covers the object's projected size
(:func:`level_for`). Every output of a frame (image, masks, LiDAR, footprint) uses the
same chosen mesh, so the ground truth stays exact. Levels are decimated once per model
(quadric decimation per material, borders and so UV seams preserved) and cached on disk.
No ROS imports.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ros2_amodal_seg.errors import AssetError, InvalidInputError
from ros2_amodal_seg.world.textured import Material, TexturedMesh

log = logging.getLogger(__name__)

#: triangle budgets of the levels (level 0 = the model as loaded).
LEVEL_TRIANGLES: tuple[int | None, ...] = (None, 12000, 4000, 1200, 400)
#: default triangles per squared pixel of an object's projected diameter
#: (``PresetConfig.lod_triangles_per_px2``).
TRIANGLES_PER_PX2 = 0.04
#: bump when the decimation changes (old cached levels are then ignored).
LOD_VERSION = 2


def level_for(diameter_px: float, n_triangles: int, per_px2: float = TRIANGLES_PER_PX2) -> int:
    """The coarsest level whose budget covers ``per_px2 * diameter_px ** 2`` triangles.

    Args:
        diameter_px: the object's projected bounding-sphere diameter [px at 640 px width].
        n_triangles: triangles of the full model.
        per_px2: triangles per squared pixel.
    """
    need = per_px2 * float(diameter_px) ** 2
    level = 0
    for k in range(1, len(LEVEL_TRIANGLES)):
        budget = LEVEL_TRIANGLES[k]
        if budget >= need and budget < n_triangles:
            level = k
    return level


def simplify(mesh: TexturedMesh, max_triangles: int) -> TexturedMesh:
    """Decimate a textured mesh to about ``max_triangles`` (per material, in proportion).

    Each material group is welded (vertices at the same place merged, so that UV seams are
    no borders), decimated with ``fast_simplification`` (quadric error; true open borders
    kept) and re-textured: every new triangle takes the UV chart of the original triangle
    nearest its centroid (its corners' barycentric coordinates in that triangle).

    Args:
        mesh: the model (object frame).
        max_triangles: wanted total triangle count.

    Returns:
        A new :class:`TexturedMesh` (the same one when it is already small enough).
    """
    import fast_simplification
    from scipy.spatial import cKDTree

    T = len(mesh.triangles)
    if T <= max_triangles:
        return mesh
    V = np.asarray(mesh.vertices, dtype=np.float64)
    tris = np.asarray(mesh.triangles, dtype=np.int64)
    uvs = np.asarray(mesh.uvs, dtype=np.float64)
    mids = np.asarray(mesh.material_ids)
    scale = max(float(np.ptp(V, axis=0).max()), 1e-9)
    out_v, out_t, out_uv, out_m = [], [], [], []
    nv = 0
    for m in np.unique(mids):
        sel = np.flatnonzero(mids == m)
        f = tris[sel]
        target = max(int(round(max_triangles * len(sel) / T)), 8)
        v_new, f_new, uv_new = None, None, None
        if len(sel) > target and len(sel) >= 64:
            key = np.round(V[f.reshape(-1)] / (scale * 1e-6)).astype(np.int64)
            _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
            wv = V[f.reshape(-1)][first]
            wf = inv.reshape(-1, 3)
            ok = (wf[:, 0] != wf[:, 1]) & (wf[:, 1] != wf[:, 2]) & (wf[:, 0] != wf[:, 2])
            if ok.sum() > target:
                v2, f2 = fast_simplification.simplify(wv, wf[ok].astype(np.int32), target_count=target)
                v2, f2 = np.asarray(v2, dtype=np.float64), np.asarray(f2, dtype=np.int64)
                if len(f2):
                    v_new, f_new = v2, f2
                    uv_new = _transfer_uvs(V[f], uvs[sel], v2[f2], cKDTree(V[f].mean(1)))
        if v_new is None:                                   # keep the group as it is
            used, local = np.unique(f, return_inverse=True)
            v_new, f_new, uv_new = V[used], local.reshape(-1, 3), uvs[sel]
        out_v.append(v_new)
        out_t.append(f_new + nv)
        out_uv.append(uv_new)
        out_m.append(np.full(len(f_new), m, dtype=np.int32))
        nv += len(v_new)
    verts = np.concatenate(out_v)
    if not np.isfinite(verts).all():
        raise AssetError(mesh.asset, "decimation produced non-finite vertices")
    return TexturedMesh(asset=mesh.asset, vertices=verts.astype(np.float32),
                        triangles=np.concatenate(out_t).astype(np.int32),
                        uvs=np.concatenate(out_uv).astype(np.float32), material_ids=np.concatenate(out_m),
                        materials=[Material(x.name, x.diffuse, x.specular, x.shininess, x.texture, x.opacity)
                                   for x in mesh.materials],
                        textures=list(mesh.textures))


def _transfer_uvs(old_tri: np.ndarray, old_uv: np.ndarray, new_tri: np.ndarray, tree) -> np.ndarray:
    """UVs of new triangles from the nearest old triangle's chart.

    Args:
        old_tri: ``[T, 3, 3]`` corner points; old_uv: ``[T, 3, 2]`` their UVs; tree: KD-tree of
            the old centroids. new_tri: ``[N, 3, 3]`` corner points.

    Returns:
        ``[N, 3, 2]`` float64: each new corner's barycentric coordinates (least squares in the
        old triangle's plane) applied to the old triangle's UVs.
    """
    _, j = tree.query(new_tri.mean(1))
    a, b, c = old_tri[j, 0], old_tri[j, 1], old_tri[j, 2]              # [N, 3]
    e1, e2 = b - a, c - a
    g11, g12, g22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    det = g11 * g22 - g12 * g12
    det = np.where(np.abs(det) > 1e-30, det, 1e-30)
    out = np.empty(new_tri.shape[:2] + (2,))
    ua, ub, uc = old_uv[j, 0], old_uv[j, 1], old_uv[j, 2]
    for k in range(3):
        d = new_tri[:, k] - a
        r1, r2 = (d * e1).sum(1), (d * e2).sum(1)
        s = (g22 * r1 - g12 * r2) / det
        t = (g11 * r2 - g12 * r1) / det
        out[:, k] = ua + s[:, None] * (ub - ua) + t[:, None] * (uc - ua)
    return out


class LodCache:
    """Decimated levels on disk: ``<folder>/<model>-<hash>.lod<k>.npz``.

    Args:
        folder: cache folder (None: no disk cache, levels are decimated in memory each time).
    """

    def __init__(self, folder: Path | None):
        self.folder = Path(folder) if folder is not None else None

    def _path(self, asset_id: str, stamp: str, level: int) -> Path | None:
        if self.folder is None:
            return None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", asset_id.split("#", 1)[-1])[:60]
        h = hashlib.sha1(f"{LOD_VERSION}:{asset_id}:{stamp}:{LEVEL_TRIANGLES[level]}".encode()).hexdigest()[:12]
        return self.folder / f"{safe}-{h}.lod{level}.npz"

    def get(self, mesh: TexturedMesh, stamp: str, level: int) -> TexturedMesh:
        """Level ``level`` of ``mesh`` (``stamp`` names the source version, e.g. its cache file)."""
        if level == 0 or LEVEL_TRIANGLES[level] is None or len(mesh.triangles) <= LEVEL_TRIANGLES[level]:
            return mesh
        path = self._path(mesh.asset, stamp, level)
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    return TexturedMesh(asset=mesh.asset, vertices=z["vertices"], triangles=z["triangles"],
                                        uvs=z["uvs"], material_ids=z["material_ids"], materials=list(mesh.materials),
                                        textures=list(mesh.textures))
            except (InvalidInputError, OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
                log.warning("rebuilding the damaged level-of-detail file %s: %s", path, exc)
        out = simplify(mesh, int(LEVEL_TRIANGLES[level]))
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as fh:               # geometry only: materials and textures are the model's
                    np.savez(fh, vertices=out.vertices, triangles=out.triangles, uvs=out.uvs,
                             material_ids=out.material_ids)
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot cache a level of detail in %s: %s", path.parent, exc)
        return out
