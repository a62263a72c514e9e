"""Procedural model families that complete the classes with too few catalogue models.

Each family makes ``count`` deterministic variants (``"procedural:<family>/<index>"``): the
variant's parameters come from a random generator seeded by ``sha1("<family>/<index>")``, so
a variant is the same on every machine. Meshes are built with trimesh primitives
(revolutions, boxes, cylinders, extrusions of convex profiles) and handed over as a
:class:`~ros2_amodal_seg.world.textured.TexturedMesh` in the common object frame (x width,
y depth, z up [m], bounding box centred on x = y = 0, resting on z = 0).

Families (class ids of world.md):

* ``traffic_cone`` (5): cones 0.3-1.0 m with square rubber bases; orange, red, yellow, lime
  or blue bodies; zero to three white or silver retro-reflective bands (high specular).
* ``delineator`` (5): tall channelizer posts / drums on a base, with reflective bands.
* ``jersey_barrier`` (6): concrete or water-filled plastic road barriers, 1-3 m long, the
  New Jersey profile; plastic ones red or white.
* ``sawhorse_barrier`` (6): A-frame barricades with one to three boards striped red/white or
  orange/white (a stripe texture on the boards).
* ``crowd_barrier`` (6): metal crowd-control fences (tube frame, vertical bars, flat feet).
* ``bicycle`` (4): bicycles (diamond or step-through frame, spoked wheels, some with a basket);
  the catalogue has only four two-wheelers for training.
* ``box_truck`` (3): rigid box trucks 5.5-9 m (cab, cargo box, four or six wheels); the
  catalogue has only three large vehicles for training.
* ``package`` (10): cartons, cereal boxes, book-like flat packs with printed-label textures,
  4-35 cm; the catalogue has six boxes.

Their held-out split uses world.md's rule on the id, together with the catalogue models of
the same class (:func:`ros2_amodal_seg.world.assets.split_of`).
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ros2_amodal_seg.errors import AssetError
from ros2_amodal_seg.world.textured import Material, TexturedMesh

PREFIX = "procedural:"


@dataclass(frozen=True)
class Family:
    """A procedural family.

    Attributes:
        name: family name (the id is ``procedural:<name>/<index>``).
        class_id: world.md class id of every variant.
        count: number of variants (indices 0..count-1).
        presets: presets the variants may appear in.
        pose: pose hint (see :mod:`ros2_amodal_seg.world.assets`).
        build: ``build(rng) -> (parts, materials, textures)``; see :func:`_assemble`.
    """

    name: str
    class_id: int
    count: int
    presets: tuple[str, ...]
    pose: str
    build: Callable


# ----------------------------------------------------------------------------- helpers

def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1(name.encode()).hexdigest()[:16], 16))


def _mat(name: str, rgb, specular: float = 0.05, shininess: float = 10.0, texture: int = -1) -> Material:
    return Material(name=name, diffuse=np.clip(np.asarray(rgb, np.float32), 0, 1),
                    specular=np.full(3, specular, np.float32), shininess=float(shininess), texture=texture)


def _planar_uv(vertices: np.ndarray, faces: np.ndarray, scale: float) -> np.ndarray:
    """Per-corner box-projection UVs ``[F, 3, 2]`` (each face projected on the plane most
    facing its normal), ``scale`` metres per texture repeat."""
    tri = vertices[faces]                                      # [F, 3, 3]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    axis = np.argmax(np.abs(n), axis=1)                        # 0: x, 1: y, 2: z
    pick = np.array([[1, 2], [0, 2], [0, 1]])[axis]            # plane axes per face
    uv = np.take_along_axis(tri, pick[:, None, :].repeat(3, axis=1), axis=2)
    return (uv / scale).astype(np.float32)


def _assemble(asset: str, parts, materials: list[Material], textures: list[np.ndarray]) -> TexturedMesh:
    """Concatenate ``parts`` (list of ``(trimesh.Trimesh, material index, uv or None)``, uv as
    ``[F, 3, 2]``) into one mesh, centred on x = y = 0 and resting on z = 0."""
    vs, fs, uvs, mids = [], [], [], []
    offset = 0
    for mesh, mid, uv in parts:
        v = np.asarray(mesh.vertices, np.float64)
        f = np.asarray(mesh.faces, np.int64)
        vs.append(v)
        fs.append(f + offset)
        uvs.append(np.zeros((len(f), 3, 2), np.float32) if uv is None else np.asarray(uv, np.float32))
        mids.append(np.full(len(f), mid, np.int32))
        offset += len(v)
    v = np.concatenate(vs)
    lo, hi = v.min(axis=0), v.max(axis=0)
    v = v - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return TexturedMesh(asset=asset, vertices=v.astype(np.float32), triangles=np.concatenate(fs).astype(np.int32),
                        uvs=np.concatenate(uvs), material_ids=np.concatenate(mids), materials=materials,
                        textures=textures)


def _band_profile(r_bottom: float, r_top: float, z0: float, z1: float, h0: float, h1: float):
    """Radius of a frustum (bottom radius at z0, top at z1) at heights h0, h1."""
    def r(h):
        return r_bottom + (r_top - r_bottom) * (h - z0) / (z1 - z0)
    return r(h0), r(h1)


def _revolved_bands(r_bottom, r_top, z0, z1, bands, body_mid, band_mid, sections):
    """Side of a frustum split into body / reflective band rings; returns parts."""
    import trimesh

    cuts = sorted({z0, z1, *[b for band in bands for b in band]})
    parts = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b - a < 1e-6:
            continue
        ra, rb = _band_profile(r_bottom, r_top, z0, z1, a, b)
        ring = trimesh.creation.revolve(np.array([[ra, a], [rb, b]]), sections=sections)
        mid = band_mid if any(lo <= a and b <= hi for lo, hi in bands) else body_mid
        parts.append((ring, mid, None))
    return parts


_CONE_COLOURS = {"orange": (0.95, 0.38, 0.05), "red": (0.80, 0.08, 0.06), "yellow": (0.95, 0.80, 0.05),
                 "lime": (0.65, 0.90, 0.10), "blue": (0.10, 0.30, 0.80), "white": (0.90, 0.90, 0.88)}


def _body_colour(rng, names):
    base = np.array(_CONE_COLOURS[names[rng.integers(len(names))]])
    return np.clip(base * rng.uniform(0.85, 1.1) + rng.normal(0, 0.03, 3), 0, 1)


# ----------------------------------------------------------------------------- families

def _traffic_cone(rng: np.random.Generator):
    import trimesh

    height = rng.uniform(0.30, 1.00)
    base_w = np.clip(height * rng.uniform(0.48, 0.62), 0.18, 0.50)
    base_t = rng.uniform(0.02, 0.05)
    r_bottom = base_w * rng.uniform(0.32, 0.42)
    r_top = rng.uniform(0.015, 0.04)
    sections = 32
    body = _body_colour(rng, ["orange"] * 4 + ["red", "yellow", "lime", "blue"])
    stripe = (0.95, 0.95, 0.95) if rng.random() < 0.7 else (0.78, 0.80, 0.82)
    base_rgb = (0.08, 0.08, 0.08) if rng.random() < 0.6 else body * 0.8
    materials = [_mat("cone_body", body, 0.15, 20), _mat("reflective_band", stripe, 0.6, 60),
                 _mat("cone_base", base_rgb, 0.05, 5)]
    n_bands = int(rng.choice([0, 1, 1, 2, 2, 3]))
    z0, z1 = base_t, height
    bands = []
    if n_bands:
        top = z0 + (z1 - z0) * rng.uniform(0.70, 0.85)
        width = (z1 - z0) * rng.uniform(0.08, 0.14)
        gap = (z1 - z0) * rng.uniform(0.05, 0.10)
        for i in range(n_bands):
            hi = top - i * (width + gap)
            lo = hi - width
            if lo > z0 + 0.02:
                bands.append((lo, hi))
    parts = _revolved_bands(r_bottom, r_top, z0, z1, bands, 0, 1, sections)
    cap = trimesh.creation.revolve(np.array([[r_top, z1], [0.0, z1 + 0.004]]), sections=sections)
    parts.append((cap, 0, None))
    base = trimesh.creation.box(extents=[base_w, base_w, base_t])
    base.apply_translation([0, 0, base_t / 2])
    parts.append((base, 2, None))
    return parts, materials, []


def _delineator(rng: np.random.Generator):
    import trimesh

    drum = rng.random() < 0.4
    sections = 28
    body = _body_colour(rng, ["orange"] * 3 + ["red", "yellow"])
    materials = [_mat("post_body", body, 0.15, 20), _mat("reflective_band", (0.95, 0.95, 0.95), 0.6, 60),
                 _mat("post_base", (0.07, 0.07, 0.07), 0.05, 5)]
    if drum:  # channelizer drum
        height, radius = rng.uniform(0.8, 1.05), rng.uniform(0.22, 0.30)
        base_t = rng.uniform(0.04, 0.08)
        r_bottom, r_top = radius, radius * rng.uniform(0.85, 0.95)
        base = trimesh.creation.cylinder(radius=radius * 1.35, height=base_t, sections=sections)
    else:  # tubular post on a square base
        height, radius = rng.uniform(0.75, 1.25), rng.uniform(0.04, 0.07)
        base_t = rng.uniform(0.03, 0.06)
        r_bottom, r_top = radius * rng.uniform(1.0, 1.3), radius
        w = rng.uniform(0.28, 0.40)
        base = trimesh.creation.box(extents=[w, w, base_t])
    base.apply_translation([0, 0, base_t / 2])
    z0, z1 = base_t, height
    n = int(rng.integers(2, 5))
    pitch = (z1 - z0) / (n + 1)
    width = pitch * rng.uniform(0.35, 0.5)
    bands = [(z0 + pitch * (i + 1) - width / 2, z0 + pitch * (i + 1) + width / 2) for i in range(n)]
    parts = _revolved_bands(r_bottom, r_top, z0, z1, bands, 0, 1, sections)
    parts.append((trimesh.creation.revolve(np.array([[r_top, z1], [0.0, z1 + 0.01]]), sections=sections), 0, None))
    parts.append((base, 2, None))
    return parts, materials, []


def _prism(profile_yz: np.ndarray, length: float):
    """Extrude a convex polygon (``[K, 2]`` y, z, counter-clockwise) along x (centred)."""
    import trimesh

    k = len(profile_yz)
    x = np.array([-length / 2, length / 2])
    v = np.array([[xx, y, z] for xx in x for y, z in profile_yz])
    faces = []
    for i in range(k):
        j = (i + 1) % k
        faces += [[i, j, k + j], [i, k + j, k + i]]
    for i in range(1, k - 1):  # convex caps: fans
        faces += [[0, i + 1, i], [k, k + i, k + i + 1]]
    return trimesh.Trimesh(vertices=v, faces=np.array(faces), process=False)


def _jersey_barrier(rng: np.random.Generator):
    plastic = rng.random() < 0.4
    length = rng.uniform(1.0, 3.0) if not plastic else rng.uniform(1.0, 2.0)
    height = rng.uniform(0.8, 1.07) if not plastic else rng.uniform(0.8, 1.0)
    w_base = rng.uniform(0.55, 0.65) if not plastic else rng.uniform(0.40, 0.55)
    w_top = rng.uniform(0.15, 0.24)
    lip = rng.uniform(0.06, 0.09)
    knee = rng.uniform(0.28, 0.36)
    w_knee = w_top + (w_base - w_top) * rng.uniform(0.35, 0.5)
    half = np.array([w_base, w_base, w_knee, w_top]) / 2
    zs = np.array([0.0, lip, knee, height])
    profile = np.concatenate([np.stack([half, zs], 1), np.stack([-half[::-1], zs[::-1]], 1)])
    body = _prism(profile, length)
    if plastic:
        colour = (0.85, 0.10, 0.08) if rng.random() < 0.5 else (0.92, 0.92, 0.9)
        materials = [_mat("plastic_barrier", colour, 0.25, 30)]
        return [(body, 0, None)], materials, []
    from ros2_amodal_seg.world.textures import procedural_texture

    grey = rng.uniform(0.55, 0.8)
    tex = procedural_texture(f"concrete/{int(rng.integers(1_000_000))}", size=128)
    materials = [_mat("concrete", (grey, grey, grey * rng.uniform(0.95, 1.02)), 0.02, 4, texture=0)]
    parts = [(body, 0, _planar_uv(np.asarray(body.vertices), np.asarray(body.faces), 0.8))]
    if rng.random() < 0.5:  # painted warning band along the top
        band = _prism(np.array([[w_top / 2 + 0.003, height - 0.12], [w_top / 2 + 0.003, height - 0.02],
                                [-w_top / 2 - 0.003, height - 0.02], [-w_top / 2 - 0.003, height - 0.12]]),
                      length * 0.999)
        materials.append(_mat("paint", (0.95, 0.8, 0.05) if rng.random() < 0.5 else (0.95, 0.95, 0.95), 0.3, 30))
        parts.append((band, 1, None))
    return parts, materials, [tex]


def _stripe_texture(c1, c2, n: int = 64, stripes: int = 2) -> np.ndarray:
    """Diagonal two-colour stripes, ``[n, n, 3]`` uint8, seamless when repeated."""
    i, j = np.mgrid[0:n, 0:n]
    sel = ((i + j) * stripes // n) % 2 == 0
    img = np.where(sel[..., None], np.asarray(c1), np.asarray(c2))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _sawhorse_barrier(rng: np.random.Generator):
    import trimesh

    length = rng.uniform(1.0, 2.4)
    height = rng.uniform(0.9, 1.2)
    spread = rng.uniform(0.45, 0.7)
    leg_w = rng.uniform(0.04, 0.07)
    n_boards = int(rng.integers(1, 4))
    board_h = rng.uniform(0.15, 0.25)
    board_t = rng.uniform(0.02, 0.035)
    red = (0.85, 0.1, 0.08) if rng.random() < 0.6 else (0.95, 0.45, 0.05)
    materials = [_mat("board", (1, 1, 1), 0.4, 40, texture=0),
                 _mat("frame", (0.25, 0.25, 0.25) if rng.random() < 0.5 else (0.85, 0.85, 0.85), 0.2, 20)]
    tex = _stripe_texture(red, (0.95, 0.95, 0.95), 64, 2)
    parts = []
    for sx in (-1, 1):  # A-frame legs at both ends
        for sy in (-1, 1):
            top = np.array([sx * (length / 2 - 0.1), 0, height])
            foot = np.array([sx * (length / 2 - 0.1), sy * spread / 2, 0])
            leg = trimesh.creation.box(extents=[leg_w, leg_w, 1.0])
            vec = top - foot
            leg.apply_scale([1, 1, np.linalg.norm(vec)])
            leg.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], vec / np.linalg.norm(vec)))
            leg.apply_translation((top + foot) / 2)
            parts.append((leg, 1, None))
        foot_bar = trimesh.creation.box(extents=[leg_w, spread, leg_w])
        foot_bar.apply_translation([sx * (length / 2 - 0.1), 0, 0.15])
        parts.append((foot_bar, 1, None))
    for i in range(n_boards):
        zc = height - board_h / 2 - i * board_h * 1.6
        if zc - board_h / 2 < 0.2:
            break
        y_off = (spread / 2) * (height - zc) / height
        for sy in ((-1,) if i == 0 else (-1, 1)):
            board = trimesh.creation.box(extents=[length, board_t, board_h])
            board.apply_translation([0, sy * (y_off + board_t), zc])
            uv = _planar_uv(np.asarray(board.vertices), np.asarray(board.faces), board_h * 2)
            parts.append((board, 0, uv))
    return parts, materials, [tex]


def _crowd_barrier(rng: np.random.Generator):
    import trimesh

    length = rng.uniform(1.8, 2.5)
    height = rng.uniform(1.0, 1.15)
    clearance = rng.uniform(0.08, 0.15)
    r_frame, r_bar = rng.uniform(0.016, 0.022), rng.uniform(0.007, 0.011)
    pitch = rng.uniform(0.10, 0.18)
    colour = [(0.72, 0.74, 0.76), (0.95, 0.8, 0.05), (0.8, 0.1, 0.08), (0.15, 0.3, 0.75)][int(rng.choice(
        [0, 0, 0, 1, 2, 3]))]
    materials = [_mat("metal", colour, 0.5 if colour[0] > 0.7 and colour[2] > 0.7 else 0.25, 40),
                 _mat("feet", (0.2, 0.2, 0.2), 0.2, 20)]
    parts = []

    def tube(a, b, r):
        return trimesh.creation.cylinder(radius=r, segment=np.array([a, b], float), sections=10)

    x0, x1, z0, z1 = -length / 2, length / 2, clearance, height
    for a, b in [((x0, 0, z0), (x1, 0, z0)), ((x0, 0, z1), (x1, 0, z1)),
                 ((x0, 0, 0.02), (x0, 0, z1)), ((x1, 0, 0.02), (x1, 0, z1))]:
        parts.append((tube(a, b, r_frame), 0, None))
    n = max(2, int((length - 0.1) / pitch))
    for x in np.linspace(x0, x1, n + 2)[1:-1]:
        parts.append((tube((x, 0, z0), (x, 0, z1), r_bar), 0, None))
    if rng.random() < 0.5:  # a sign panel
        panel = trimesh.creation.box(extents=[length * 0.4, 0.005, (z1 - z0) * 0.35])
        panel.apply_translation([0, -r_frame - 0.004, z0 + (z1 - z0) * 0.55])
        materials.append(_mat("panel", (0.95, 0.95, 0.95) if rng.random() < 0.5 else (0.95, 0.75, 0.05), 0.2, 20))
        parts.append((panel, 2, None))
    foot_len = rng.uniform(0.5, 0.7)
    for x in (x0, x1):
        foot = trimesh.creation.box(extents=[0.05, foot_len, 0.02])
        foot.apply_translation([x, 0, 0.01])
        parts.append((foot, 1, None))
    return parts, materials, []


def _tube(a, b, r, sections=10):
    import trimesh

    return trimesh.creation.cylinder(radius=r, segment=np.array([a, b], float), sections=sections)


def _bicycle(rng: np.random.Generator):
    """A bicycle along y (front wheel at -y), wheels in the y-z plane."""
    import trimesh

    r_wheel = rng.uniform(0.28, 0.36)
    tyre = rng.uniform(0.014, 0.028)
    base = rng.uniform(0.95, 1.12)                       # wheel base (axle to axle) [m]
    frame_r = rng.uniform(0.012, 0.02)
    frame_rgb = _colour_any(rng)
    step_through = rng.random() < 0.3
    materials = [_mat("frame", frame_rgb, 0.4, 40), _mat("tyre", (0.05, 0.05, 0.05), 0.05, 5),
                 _mat("metal", (0.7, 0.7, 0.72), 0.6, 60), _mat("saddle", (0.08, 0.06, 0.05), 0.1, 10)]
    parts = []
    front, rear = np.array([0, -base / 2, r_wheel]), np.array([0, base / 2, r_wheel])
    for c in (front, rear):
        wheel = trimesh.creation.torus(major_radius=r_wheel - tyre, minor_radius=tyre, major_sections=32,
                                       minor_sections=8)
        wheel.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
        wheel.apply_translation(c)
        parts.append((wheel, 1, None))
        for k in range(int(rng.integers(8, 16))):       # spokes
            a = np.pi * k / 8
            d = np.array([0, np.cos(a), np.sin(a)]) * (r_wheel - 2 * tyre)
            parts.append((_tube(c - d, c + d, 0.0015, 4), 2, None))
    seat_h = r_wheel + rng.uniform(0.45, 0.6)
    bb = np.array([0, base * 0.08, r_wheel * 0.9])       # bottom bracket
    seat = np.array([0, base * 0.18, seat_h - 0.05])
    head = np.array([0, -base * 0.32, seat_h - rng.uniform(0.0, 0.12)])
    top = head + (seat - head) * 0.15
    parts += [(_tube(bb, seat, frame_r), 0, None), (_tube(bb, head if not step_through else head * [1, 1, 0.6]
                                                          + [0, 0, 0.1], frame_r), 0, None),
              (_tube(head, front, frame_r * 0.8), 0, None), (_tube(bb, rear, frame_r * 0.7), 0, None),
              (_tube(seat, rear, frame_r * 0.7), 0, None)]
    if not step_through:
        parts.append((_tube(top, seat, frame_r), 0, None))
    bar_h = head + [0, -0.04, rng.uniform(0.08, 0.18)]
    w = rng.uniform(0.22, 0.32)
    parts += [(_tube(head, bar_h, frame_r * 0.8), 2, None),
              (_tube(bar_h + [-w, 0, 0], bar_h + [w, 0, 0], frame_r * 0.7), 2, None)]
    saddle = trimesh.creation.box(extents=[0.14, 0.26, 0.05])
    saddle.apply_translation(seat + [0, 0.02, 0.07])
    parts += [(_tube(seat, seat + [0, 0, 0.06], frame_r * 0.6), 2, None), (saddle, 3, None)]
    if rng.random() < 0.3:                               # front basket
        basket = trimesh.creation.box(extents=[0.32, 0.24, 0.2])
        basket.apply_translation(bar_h + [0, -0.17, -0.05])
        materials.append(_mat("basket", (0.55, 0.4, 0.25), 0.05, 5))
        parts.append((basket, 4, None))
    return parts, materials, []


def _colour_any(rng) -> np.ndarray:
    palette = [(0.8, 0.1, 0.1), (0.1, 0.2, 0.7), (0.1, 0.1, 0.1), (0.9, 0.9, 0.9), (0.1, 0.5, 0.2),
               (0.95, 0.75, 0.1), (0.5, 0.5, 0.55), (0.9, 0.4, 0.6), (0.3, 0.7, 0.85)]
    return np.clip(np.array(palette[int(rng.integers(len(palette)))]) + rng.normal(0, 0.04, 3), 0, 1)


def _label_texture(rng, n: int = 128) -> np.ndarray:
    """A packaging print: background colour, bands and blocks of 'text' (random dark dashes)."""
    img = np.ones((n, n, 3)) * _colour_any(rng)
    for _ in range(int(rng.integers(1, 4))):             # colour bands
        a, b = sorted(rng.integers(0, n, 2))
        img[a:b + 4] = _colour_any(rng)
    for _ in range(int(rng.integers(3, 9))):             # text lines
        y, x = int(rng.integers(4, n - 8)), int(rng.integers(2, n // 2))
        length, h = int(rng.integers(n // 6, n // 2)), int(rng.integers(2, 6))
        ink = np.array([0.05, 0.05, 0.05]) if img[y, x].mean() > 0.45 else np.array([0.95, 0.95, 0.95])
        dash = (np.arange(length) // int(rng.integers(3, 9))) % 4 != 3
        img[y:y + h, x:x + length][:, dash] = ink
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _package(rng: np.random.Generator):
    """Boxes and packs for the table: cartons, cereal boxes, book-like flat packs (class 10)."""
    import trimesh

    shape = rng.choice(["cube", "tall", "flat", "long"])
    dims = {"cube": rng.uniform(0.05, 0.2, 3) * [1, 1, 1],
            "tall": [rng.uniform(0.12, 0.25), rng.uniform(0.04, 0.09), rng.uniform(0.2, 0.34)],
            "flat": [rng.uniform(0.12, 0.3), rng.uniform(0.1, 0.22), rng.uniform(0.015, 0.05)],
            "long": [rng.uniform(0.15, 0.35), rng.uniform(0.04, 0.09), rng.uniform(0.04, 0.09)]}[shape]
    box = trimesh.creation.box(extents=np.asarray(dims, float))
    box.apply_translation([0, 0, dims[2] / 2])
    if rng.random() < 0.3:                               # plain cardboard with a shipping label look
        tex = (np.clip(np.ones((64, 64, 3)) * [0.62, 0.45, 0.28] * rng.uniform(0.85, 1.1), 0, 1) * 255).astype(np.uint8)
        tex[20:40, 10:50] = 235
    else:
        tex = _label_texture(rng)
    scale = max(dims) * rng.uniform(0.8, 1.2)
    uv = _planar_uv(np.asarray(box.vertices), np.asarray(box.faces), scale)
    return [(box, 0, uv)], [_mat("print", (1, 1, 1), rng.uniform(0.05, 0.3), 20, texture=0)], [tex]


def _box_truck(rng: np.random.Generator):
    """A rigid box truck along y (cab at -y): cab, cargo box, chassis, 6 or 4 wheels (class 3)."""
    import trimesh

    length, width = rng.uniform(5.5, 9.0), rng.uniform(2.2, 2.55)
    height = rng.uniform(2.9, 3.8)
    cab_len, cab_h = rng.uniform(1.6, 2.2), rng.uniform(2.3, 2.9)
    r_wheel, clear = rng.uniform(0.42, 0.55), rng.uniform(0.35, 0.55)
    cab_rgb = _colour_any(rng)
    box_rgb = np.array([0.92, 0.92, 0.9]) if rng.random() < 0.6 else _colour_any(rng)
    materials = [_mat("cab", cab_rgb, 0.5, 60), _mat("cargo", box_rgb, 0.2, 20),
                 _mat("glass", (0.05, 0.07, 0.09), 0.8, 80),
                 _mat("tyre", (0.04, 0.04, 0.04), 0.05, 5), _mat("chassis", (0.15, 0.15, 0.15), 0.2, 10)]
    y0 = -length / 2
    cab = _prism(np.array([[0, clear + r_wheel * 0.3], [cab_len, clear + r_wheel * 0.3], [cab_len, cab_h],
                           [0.25, cab_h], [0, cab_h * 0.6]]), width)
    cab.apply_translation([0, y0, 0])                    # profile (y, z), extruded across the width
    glass = trimesh.creation.box(extents=[width * 0.86, 0.02, (cab_h - cab_h * 0.62) * 0.8])
    glass.apply_transform(trimesh.transformations.rotation_matrix(-np.arctan2(0.25, cab_h * 0.4), [1, 0, 0]))
    glass.apply_translation([0, y0 + 0.12, cab_h * 0.8])
    cargo_len = length - cab_len - 0.15
    cargo = trimesh.creation.box(extents=[width, cargo_len, height - clear - r_wheel * 0.4])
    cargo.apply_translation([0, y0 + cab_len + 0.15 + cargo_len / 2, (height + clear + r_wheel * 0.4) / 2])
    chassis = trimesh.creation.box(extents=[width * 0.8, length * 0.97, 0.25])
    chassis.apply_translation([0, 0, clear + r_wheel * 0.3 - 0.1])
    parts = [(cab, 0, None), (glass, 2, None), (cargo, 1, None), (chassis, 4, None)]
    axles = [y0 + cab_len * 0.55, length / 2 - cargo_len * 0.28]
    if rng.random() < 0.6:
        axles.append(axles[-1] - 2.2 * r_wheel - 0.1)
    for y in axles:
        for sx in (-1, 1):
            w = trimesh.creation.cylinder(radius=r_wheel, height=0.3, sections=20)
            w.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
            w.apply_translation([sx * (width / 2 - 0.15), y, r_wheel])
            parts.append((w, 3, None))
    return parts, materials, []


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("traffic_cone", 5, 24, ("street",), "upright", _traffic_cone),
    Family("delineator", 5, 12, ("street",), "upright", _delineator),
    Family("jersey_barrier", 6, 12, ("street",), "upright", _jersey_barrier),
    Family("sawhorse_barrier", 6, 12, ("street",), "upright", _sawhorse_barrier),
    Family("crowd_barrier", 6, 12, ("street",), "upright", _crowd_barrier),
    Family("bicycle", 4, 12, ("street",), "upright", _bicycle),
    Family("box_truck", 3, 10, ("street",), "upright", _box_truck),
    Family("package", 10, 16, ("tabletop",), "either", _package),
)}


def procedural_id(family: str, index: int) -> str:
    """``"procedural:<family>/<index>"``."""
    return f"{PREFIX}{family}/{int(index)}"


def parse_id(asset_id: str) -> tuple[Family, int]:
    """Family and index of a procedural id.

    Raises:
        AssetError: not a procedural id, unknown family or index out of range.
    """
    if not asset_id.startswith(PREFIX) or "/" not in asset_id:
        raise AssetError(asset_id, "not a procedural id (procedural:<family>/<index>)")
    fam, _, idx = asset_id[len(PREFIX):].partition("/")
    if fam not in FAMILIES:
        raise AssetError(asset_id, f"unknown procedural family {fam!r}; known: {sorted(FAMILIES)}")
    if not idx.isdigit() or not 0 <= int(idx) < FAMILIES[fam].count:
        raise AssetError(asset_id, f"variant index must be 0..{FAMILIES[fam].count - 1}")
    return FAMILIES[fam], int(idx)


def family_of(asset_id: str) -> Family:
    """The family of a procedural id (see :func:`parse_id`)."""
    return parse_id(asset_id)[0]


def sort_key(asset_id: str) -> tuple[str, int]:
    """Sort procedural ids by family then numeric index."""
    fam, idx = parse_id(asset_id)
    return fam.name, idx


def procedural_classes() -> dict[str, int]:
    """Every procedural id -> its class id."""
    return {procedural_id(f.name, i): f.class_id for f in FAMILIES.values() for i in range(f.count)}


@functools.lru_cache(maxsize=256)
def _generate(asset_id: str) -> TexturedMesh:
    fam, _ = parse_id(asset_id)
    parts, materials, textures = fam.build(_rng(asset_id[len(PREFIX):]))
    return _assemble(asset_id, parts, materials, textures)


def generate(asset_id: str) -> TexturedMesh:
    """Build one variant (deterministic; memoised, and each call returns its own copy).

    Raises:
        AssetError: unknown id.
    """
    m = _generate(asset_id)
    return TexturedMesh(asset=m.asset, vertices=m.vertices.copy(), triangles=m.triangles.copy(), uvs=m.uvs.copy(),
                        material_ids=m.material_ids.copy(),
                        materials=[Material(x.name, x.diffuse.copy(), x.specular.copy(), x.shininess, x.texture,
                                            x.opacity) for x in m.materials],
                        textures=[t.copy() for t in m.textures])
