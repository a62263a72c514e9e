"""Textured triangle meshes of the realistic world (world.md version 2), as plain arrays.

This is the hand-over format between the asset loader (:mod:`ros2_amodal_seg.world.assets`,
catalogue models and procedural families) and the renderer. No ROS, Open3D or trimesh
types cross it: only numpy arrays, so a mesh can be cached with ``np.savez`` and loaded
back in milliseconds.

Object frame of a :class:`TexturedMesh` (the same for every asset):

* metres; ``x`` along the catalogue *width*, ``y`` along the catalogue *depth*
  (a vehicle's length), ``z`` up along the catalogue *height*;
* the model's front faces ``-y`` (Sweet Home 3D's "front" looks at the viewer of the plan);
* the axis-aligned bounding box is centred on ``x = y = 0`` and rests on ``z = 0``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.errors import InvalidInputError


@dataclass
class Material:
    """One OBJ/MTL material (or a procedural one).

    Attributes:
        name: material name (``newmtl``).
        diffuse: ``[3]`` float32 RGB albedo in [0, 1] (MTL ``Kd``); multiplies the texture.
        specular: ``[3]`` float32 RGB specular colour in [0, 1] (MTL ``Ks``).
        shininess: Blinn-Phong exponent (MTL ``Ns``), >= 0.
        texture: index into :attr:`TexturedMesh.textures`, or -1 for no texture.
        opacity: MTL ``d`` in [0, 1] (1 = opaque); the renderer treats every surface as opaque.
    """

    name: str
    diffuse: np.ndarray
    specular: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    shininess: float = 10.0
    texture: int = -1
    opacity: float = 1.0


@dataclass
class TexturedMesh:
    """A textured triangle mesh in its object frame (see the module docstring).

    Attributes:
        asset: catalogue id (``"Blend Swap CC-0#armchair"``) or procedural family
            (``"procedural:traffic_cone/3"``).
        vertices: ``[V, 3]`` float32 object-frame points [m].
        triangles: ``[T, 3]`` int32 vertex indices (counter-clockwise seen from outside
            where the model is consistent; the renderer shades both sides).
        uvs: ``[T, 3, 2]`` float32 texture coordinates of each triangle corner (OBJ
            convention: v = 0 at the image's bottom row); zeros where untextured.
        material_ids: ``[T]`` int32 index into :attr:`materials`.
        materials: the materials (at least one).
        textures: texture images, each ``[h, w, 3]`` uint8 RGB.
    """

    asset: str
    vertices: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    material_ids: np.ndarray
    materials: list[Material]
    textures: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        v, t = np.asarray(self.vertices), np.asarray(self.triangles)
        if v.ndim != 2 or v.shape[1] != 3:
            raise InvalidInputError(f"{self.asset}: vertices must be [V, 3], got {v.shape}")
        if t.ndim != 2 or t.shape[1] != 3:
            raise InvalidInputError(f"{self.asset}: triangles must be [T, 3], got {t.shape}")
        if len(t) and (t.min() < 0 or t.max() >= len(v)):
            raise InvalidInputError(f"{self.asset}: triangle index out of range 0..{len(v) - 1}")
        if np.shape(self.uvs) != (len(t), 3, 2):
            raise InvalidInputError(f"{self.asset}: uvs must be [T, 3, 2] = {(len(t), 3, 2)}, "
                                    f"got {np.shape(self.uvs)}")
        if np.shape(self.material_ids) != (len(t),):
            raise InvalidInputError(f"{self.asset}: material_ids must be [T], got {np.shape(self.material_ids)}")
        if not self.materials:
            raise InvalidInputError(f"{self.asset}: a mesh needs at least one material")
        if len(t) and (np.min(self.material_ids) < 0 or np.max(self.material_ids) >= len(self.materials)):
            raise InvalidInputError(f"{self.asset}: material id out of range 0..{len(self.materials) - 1}")
        for m in self.materials:
            if m.texture >= len(self.textures):
                raise InvalidInputError(f"{self.asset}: material {m.name!r} names texture {m.texture} "
                                        f"of {len(self.textures)}")
        if not np.all(np.isfinite(v)):
            raise InvalidInputError(f"{self.asset}: non-finite vertices")

    @property
    def extents(self) -> np.ndarray:
        """``[3]`` float64 bounding-box size (x, y, z) [m]."""
        v = np.asarray(self.vertices, dtype=np.float64)
        return v.max(axis=0) - v.min(axis=0) if len(v) else np.zeros(3)


def sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinearly sample a texture with repeat (wrap-around) addressing, OBJ convention.

    Texel ``(row r, column c)`` of an ``h x w`` image has its centre at
    ``u = (c + 0.5) / w`` and ``v = 1 - (r + 0.5) / h`` (``v = 0`` is the image's bottom
    row, as in OBJ/MTL and OpenGL). Coordinates outside [0, 1) wrap around (``GL_REPEAT``),
    so the four texels around a point on the border blend with the opposite border.

    Args:
        image: ``[h, w, 3]`` uint8 RGB texture (``h, w >= 1``).
        uv: ``[N, 2]`` float texture coordinates (u right, v up), any real values;
            non-finite entries sample as 0.

    Returns:
        ``[N, 3]`` float32 RGB in [0, 1] (texel values / 255, bilinearly blended).

    Raises:
        InvalidInputError: wrong shapes or dtype.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1 or img.dtype != np.uint8:
        raise InvalidInputError(f"texture must be [h, w, 3] uint8, got {img.shape} {img.dtype}")
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise InvalidInputError(f"uv must be [N, 2], got {uv.shape}")
    h, w = img.shape[:2]
    uv = np.where(np.isfinite(uv), uv, 0.0)
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    c0, r0 = x0.astype(np.int64) % w, y0.astype(np.int64) % h
    c1, r1 = (c0 + 1) % w, (r0 + 1) % h
    f = img.astype(np.float32) / 255.0
    top = f[r0, c0] * (1 - fx) + f[r0, c1] * fx
    bottom = f[r1, c0] * (1 - fx) + f[r1, c1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)
