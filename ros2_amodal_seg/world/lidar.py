"""Spinning-LiDAR ray pattern and returns (no ROS imports)."""
from __future__ import annotations

import functools

import numpy as np

from ros2_amodal_seg.world.presets import PresetConfig


def lidar_directions(cfg: PresetConfig) -> np.ndarray:
    """Unit ray directions of one sweep in the ``lidar`` frame.

    Rows are ordered beam-major (beam 0 = lowest elevation), then azimuth from 0
    (lidar +x) counter-clockwise over 360 degrees.

    Returns:
        ``[beams * azimuth_steps, 3]`` float64 (a fresh array; the pattern is cached).
    """
    return _cached_directions(tuple(cfg.lidar_vfov_deg), int(cfg.lidar_beams), int(cfg.lidar_azimuth_steps)).copy()


@functools.lru_cache(maxsize=8)
def _cached_directions(vfov_deg: tuple, beams: int, azimuth_steps: int) -> np.ndarray:
    el = np.deg2rad(np.linspace(vfov_deg[0], vfov_deg[1], beams))
    az = np.arange(azimuth_steps) * (2.0 * np.pi / azimuth_steps)
    E, A = np.meshgrid(el, az, indexing="ij")
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)
    d.flags.writeable = False
    return d


def simulate_lidar(raycast, cfg: PresetConfig, T_base_lidar: np.ndarray, geom_to_instance: np.ndarray,
                   geom_reflectivity: np.ndarray | None, rng: np.random.Generator, *,
                   intensity_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """Cast one sweep into a scene and return noisy returns with instance ids.

    Args:
        raycast: an ``open3d.t.geometry.RaycastingScene`` in base_link coordinates.
        cfg: the preset (pattern, range limits, range noise, dropout).
        T_base_lidar: ``[4, 4]`` float64, lidar -> base_link.
        geom_to_instance: ``[G]`` int32 instance id of each Open3D geometry id (0 = background).
        geom_reflectivity: ``[G]`` float64 reflectivity of each geometry (version 1: intensity =
            reflectivity x (0.3 + 0.7 |cos(incidence)|) / (1 + 0.02 range) + noise); unused
            when ``intensity_fn`` is given.
        rng: random source for dropout, range noise and intensity noise.
        intensity_fn: version 2: ``f(geometry_ids [n] int64, primitive_ids [n] int64,
            primitive_uvs [n, 2] float32, cos_incidence [n] float64) -> [n]`` intensity in [0, 1]
            of the kept returns (world.md: texture luminance x |cos(incidence)|).

    Returns:
        points ``[N, 4]`` float32 (x, y, z [m] in the lidar frame, intensity in [0, 1]),
        ids ``[N]`` int32 instance id per point (0 = background). Points outside the
        range limits and dropped beams are absent.
    """
    import open3d as o3d

    d_l = _cached_directions(tuple(cfg.lidar_vfov_deg), int(cfg.lidar_beams),
                             int(cfg.lidar_azimuth_steps))        # [R, 3] lidar frame, unit (read-only)
    R = T_base_lidar[:3, :3]
    d_b = d_l @ R.T
    rays = np.empty((len(d_l), 6), dtype=np.float32)
    for c in range(3):
        rays[:, c] = np.float32(T_base_lidar[c, 3])
        rays[:, 3 + c] = d_b[:, c]
    ans = raycast.cast_rays(o3d.core.Tensor.from_numpy(rays))
    t = ans["t_hit"].numpy().astype(np.float64)               # [R] range [m] (unit directions)
    gid = ans["geometry_ids"].numpy()
    keep_drop = rng.random(len(t)) >= cfg.lidar_dropout       # drawn for every beam: stable stream
    noise = rng.normal(0.0, cfg.lidar_range_noise, len(t))
    inten_noise = rng.normal(0.0, 0.02, len(t))
    hit = np.isfinite(t)
    r = np.where(hit, t + noise, np.inf)
    keep = hit & keep_drop & (r >= cfg.lidar_range[0]) & (r <= cfg.lidar_range[1])
    idx = np.flatnonzero(keep)
    g = gid[idx].astype(np.int64)
    ri = r[idx]
    normals = np.take(ans["primitive_normals"].numpy(), idx, axis=0).astype(np.float64)
    cos_inc = np.abs(np.einsum("ij,ij->i", normals, np.take(d_b, idx, axis=0)))
    if intensity_fn is None:
        inten = geom_reflectivity[g] * (0.3 + 0.7 * cos_inc) / (1.0 + 0.02 * ri) + inten_noise[idx]
    else:
        inten = intensity_fn(g, ans["primitive_ids"].numpy()[idx].astype(np.int64),
                             np.take(ans["primitive_uvs"].numpy(), idx, axis=0), cos_inc)
    pts = np.empty((len(idx), 4), dtype=np.float32)
    for c in range(3):
        pts[:, c] = d_l[idx, c] * ri
    pts[:, 3] = np.clip(inten, 0.0, 1.0)
    return pts, geom_to_instance[g].astype(np.int32)
