"""Textured surfaces of a realistic scene (world.md version 2), placed in ``base_link``.

A :class:`SurfaceMesh` is a :class:`~ros2_amodal_seg.world.textured.TexturedMesh` moved
into ``base_link`` (float64 vertices), plus builders for the procedural background
structure: textured planes, boxes (tables, walls, buildings, curbs, hedges), cylinders
and ellipsoids (tree trunks and crowns). Texture coordinates of procedural surfaces are
metric (metres / tile size), so a texture repeats at a physical scale. No ROS imports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.world.textured import Material, TexturedMesh


@dataclass
class SurfaceMesh:
    """A textured triangle mesh in ``base_link``.

    Attributes:
        name: asset id (objects) or structure name.
        vertices: ``[V, 3]`` float64 points in base_link [m].
        triangles: ``[T, 3]`` int32 vertex indices.
        uvs: ``[T, 3, 2]`` float32 texture coordinates per triangle corner (OBJ convention).
        material_ids: ``[T]`` int32 index into ``materials``.
        materials: at least one :class:`Material`; ``texture`` indexes ``textures``.
        textures: ``[h, w, 3]`` uint8 RGB images.
    """

    name: str
    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    material_ids: np.ndarray
    materials: list[Material]
    textures: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def from_textured(cls, tm: TexturedMesh, R_base_obj: np.ndarray, t_base_obj: np.ndarray,
                      name: str | None = None) -> "SurfaceMesh":
        """Place an object-frame mesh: ``p_base = R_base_obj @ p_obj + t_base_obj``.

        Args:
            tm: the mesh in its object frame. R_base_obj: ``[3, 3]`` float64 rotation.
            t_base_obj: ``[3]`` float64 translation [m].
        """
        v = np.asarray(tm.vertices, dtype=np.float64) @ np.asarray(R_base_obj, dtype=np.float64).T
        v += np.asarray(t_base_obj, dtype=np.float64)
        return cls(name=name or tm.asset, vertices=v, triangles=np.asarray(tm.triangles, dtype=np.int32),
                   uvs=np.asarray(tm.uvs, dtype=np.float32), material_ids=np.asarray(tm.material_ids, dtype=np.int32),
                   materials=list(tm.materials), textures=list(tm.textures))

    @property
    def num_triangles(self) -> int:
        return int(len(self.triangles))


def merge_surfaces(parts: list[SurfaceMesh], name: str) -> SurfaceMesh:
    """One mesh from several (materials and textures concatenated, textures shared by identity)."""
    verts, tris, uvs, mids, mats, texs = [], [], [], [], [], []
    tex_index: dict[int, int] = {}
    nv = 0
    for p in parts:
        remap = []
        for img in p.textures:
            k = tex_index.get(id(img))
            if k is None:
                k = tex_index[id(img)] = len(texs)
                texs.append(img)
            remap.append(k)
        base = len(mats)
        for m in p.materials:
            mats.append(Material(m.name, m.diffuse, m.specular, m.shininess,
                                 remap[m.texture] if m.texture >= 0 else -1, m.opacity))
        verts.append(p.vertices)
        tris.append(p.triangles + nv)
        uvs.append(p.uvs)
        mids.append(p.material_ids + base)
        nv += len(p.vertices)
    return SurfaceMesh(name, np.concatenate(verts), np.concatenate(tris).astype(np.int32),
                       np.concatenate(uvs).astype(np.float32), np.concatenate(mids).astype(np.int32), mats, texs)


def plain_material(name: str, rgb, texture: np.ndarray | None = None, specular: float = 0.0,
                   shininess: float = 10.0) -> tuple[Material, list[np.ndarray]]:
    """A material (colour ``rgb`` [3] in [0, 1], optional texture image) and its texture list."""
    mat = Material(name=name, diffuse=np.asarray(rgb, dtype=np.float32),
                   specular=np.full(3, specular, dtype=np.float32), shininess=float(shininess),
                   texture=0 if texture is not None else -1)
    return mat, ([texture] if texture is not None else [])


def _single(name: str, v: np.ndarray, t: np.ndarray, uv: np.ndarray, material: Material,
            textures: list[np.ndarray]) -> SurfaceMesh:
    return SurfaceMesh(name, np.asarray(v, dtype=np.float64), np.asarray(t, dtype=np.int32),
                       np.asarray(uv, dtype=np.float32), np.zeros(len(t), dtype=np.int32), [material], list(textures))


def box_surface(name: str, size, R_base_box: np.ndarray, t_base_box, material: Material,
                textures: list[np.ndarray], tile: float = 1.0, uv_offset=(0.0, 0.0)) -> SurfaceMesh:
    """A textured cuboid, faces outward, each face's UVs metric (face coordinates / ``tile``).

    Args:
        size: ``(sx, sy, sz)`` extents [m], centred on the box frame's origin.
        R_base_box: ``[3, 3]`` rotation; t_base_box: ``[3]`` centre in base_link [m].
        tile: texture repeat length [m]. uv_offset: ``(du, dv)`` texture shift.
    """
    s = np.asarray(size, dtype=np.float64) / 2.0
    v_all, t_all, uv_all = [], [], []
    # each face: (normal axis, sign, in-plane axes a, b) with a x b = outward normal
    faces = [(0, 1, 1, 2), (0, -1, 2, 1), (1, 1, 2, 0), (1, -1, 0, 2), (2, 1, 0, 1), (2, -1, 1, 0)]
    for ax, sign, a, b in faces:
        corners = []
        for ca, cb in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            p = np.zeros(3)
            p[ax] = sign * s[ax]
            p[a] = ca * s[a]
            p[b] = cb * s[b]
            corners.append(p)
        corners = np.array(corners)
        uv = np.stack([corners[:, a] + s[a], corners[:, b] + s[b]], 1) / tile + np.asarray(uv_offset)
        k = len(v_all) * 4
        v_all.append(corners)
        t_all += [[k, k + 1, k + 2], [k, k + 2, k + 3]]
        uv_all += [uv[[0, 1, 2]], uv[[0, 2, 3]]]
    v = np.concatenate(v_all) @ np.asarray(R_base_box, dtype=np.float64).T + np.asarray(t_base_box, dtype=np.float64)
    return _single(name, v, np.array(t_all), np.array(uv_all), material, textures)


def quad_surface(name: str, corners: np.ndarray, material: Material, textures: list[np.ndarray],
                 tile: float = 1.0, uv_offset=(0.0, 0.0)) -> SurfaceMesh:
    """A planar textured quad.

    Args:
        corners: ``[4, 3]`` float64 base_link corners [m] in order around the quad; UV u runs
            along corner 0 -> 1 and v along corner 0 -> 3, metric / ``tile``.
    """
    c = np.asarray(corners, dtype=np.float64)
    eu, ev = c[1] - c[0], c[3] - c[0]
    lu, lv = np.linalg.norm(eu), np.linalg.norm(ev)
    uv = np.array([[0, 0], [lu, 0], [lu, lv], [0, lv]]) / tile + np.asarray(uv_offset)
    return _single(name, c, np.array([[0, 1, 2], [0, 2, 3]]), np.stack([uv[[0, 1, 2]], uv[[0, 2, 3]]]),
                   material, textures)


def cylinder_surface(name: str, radius: float, height: float, base_center, material: Material,
                     textures: list[np.ndarray], tile: float = 1.0, segments: int = 12) -> SurfaceMesh:
    """A vertical open-ended textured cylinder (a tree trunk, a pole) standing on ``base_center``."""
    a = np.arange(segments + 1) * (2 * np.pi / segments)
    ring = np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    lo = np.concatenate([ring, np.zeros((segments + 1, 1))], 1)
    hi = np.concatenate([ring, np.full((segments + 1, 1), height)], 1)
    v = np.concatenate([lo, hi]) + np.asarray(base_center, dtype=np.float64)
    u = a * radius / tile
    uvv = np.concatenate([np.stack([u, np.zeros_like(u)], 1), np.stack([u, np.full_like(u, height / tile)], 1)])
    n = segments + 1
    tris = []
    for i in range(segments):
        tris += [[i, i + 1, n + i + 1], [i, n + i + 1, n + i]]
    tris = np.array(tris)
    return _single(name, v, tris, uvv[tris], material, textures)


def ellipsoid_surface(name: str, radii, center, material: Material, textures: list[np.ndarray],
                      tile: float = 1.0, resolution: int = 10, bumps: np.ndarray | None = None) -> SurfaceMesh:
    """A textured ellipsoid (a tree crown, a bush), optionally with radial bumps.

    Args:
        radii: ``(rx, ry, rz)`` [m]. center: ``[3]`` base_link [m].
        bumps: ``[V]`` float64 radial scale factors of the unit sphere's vertices, or None.
    """
    import open3d as o3d

    sph = o3d.geometry.TriangleMesh.create_sphere(radius=1.0, resolution=resolution)
    u = np.asarray(sph.vertices, dtype=np.float64)
    t = np.asarray(sph.triangles, dtype=np.int32)
    if bumps is not None:
        u = u * bumps[:len(u), None]
    v = u * np.asarray(radii, dtype=np.float64) + np.asarray(center, dtype=np.float64)
    # metric texture coordinates from a cylindrical unwrap (seams only show as texture jumps)
    ang = np.arctan2(u[:, 1], u[:, 0])
    uv = np.stack([ang * max(radii[0], radii[1]) / tile, v[:, 2] / tile], 1)
    return _single(name, v, t, uv[t], material, textures)
