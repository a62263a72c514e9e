"""Spinning-LiDAR ray pattern and returns (no ROS imports)."""
from __future__ import annotations

import numpy as np

from ros2_amodal_seg.world.presets import PresetConfig


def lidar_directions(cfg: PresetConfig) -> np.ndarray:
    """Unit ray directions of one sweep in the ``lidar`` frame.

    Rows are ordered beam-major (beam 0 = lowest elevation), then azimuth from 0
    (lidar +x) counter-clockwise over 360 degrees.

    Returns:
        ``[beams * azimuth_steps, 3]`` float64.
    """
    el = np.deg2rad(np.linspace(cfg.lidar_vfov_deg[0], cfg.lidar_vfov_deg[1], cfg.lidar_beams))
    az = np.arange(cfg.lidar_azimuth_steps) * (2.0 * np.pi / cfg.lidar_azimuth_steps)
    E, A = np.meshgrid(el, az, indexing="ij")
    return np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], axis=-1).reshape(-1, 3)


def simulate_lidar(raycast, cfg: PresetConfig, T_base_lidar: np.ndarray, geom_to_instance: np.ndarray,
                   geom_reflectivity: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cast one sweep into a scene and return noisy returns with instance ids.

    Args:
        raycast: an ``open3d.t.geometry.RaycastingScene`` in base_link coordinates.
        cfg: the preset (pattern, range limits, range noise, dropout).
        T_base_lidar: ``[4, 4]`` float64, lidar -> base_link.
        geom_to_instance: ``[G]`` int32 instance id of each Open3D geometry id (0 = background).
        geom_reflectivity: ``[G]`` float64 reflectivity of each geometry.
        rng: random source for dropout, range noise and intensity noise.

    Returns:
        points ``[N, 4]`` float32 (x, y, z [m] in the lidar frame, intensity in [0, 1]),
        ids ``[N]`` int32 instance id per point (0 = background). Points outside the
        range limits and dropped beams are absent.
    """
    import open3d as o3d

    d_l = lidar_directions(cfg)                               # [R, 3] lidar frame, unit
    R = T_base_lidar[:3, :3]
    d_b = d_l @ R.T
    rays = np.empty((len(d_l), 6), dtype=np.float32)
    rays[:, :3] = T_base_lidar[:3, 3]
    rays[:, 3:] = d_b
    ans = raycast.cast_rays(o3d.core.Tensor(rays))
    t = ans["t_hit"].numpy().astype(np.float64)               # [R] range [m] (unit directions)
    gid = ans["geometry_ids"].numpy()
    normals = ans["primitive_normals"].numpy().astype(np.float64)
    keep_drop = rng.random(len(t)) >= cfg.lidar_dropout       # drawn for every beam: stable stream
    noise = rng.normal(0.0, cfg.lidar_range_noise, len(t))
    inten_noise = rng.normal(0.0, 0.02, len(t))
    hit = np.isfinite(t)
    r = np.where(hit, t + noise, np.inf)
    keep = hit & keep_drop & (r >= cfg.lidar_range[0]) & (r <= cfg.lidar_range[1])
    idx = np.flatnonzero(keep)
    g = gid[idx].astype(np.int64)
    cos_inc = np.abs(np.einsum("ij,ij->i", normals[idx], d_b[idx]))
    inten = geom_reflectivity[g] * (0.3 + 0.7 * cos_inc) / (1.0 + 0.02 * r[idx]) + inten_noise[idx]
    pts = np.empty((len(idx), 4), dtype=np.float32)
    pts[:, :3] = d_l[idx] * r[idx, None]
    pts[:, 3] = np.clip(inten, 0.0, 1.0)
    return pts, geom_to_instance[g].astype(np.int32)
