"""Depth image -> points in the camera frame (an RGB-D camera as the 3-D source, no ROS import).

A depth image aligned to the colour camera (REP 118: ``16UC1`` in millimetres or ``32FC1`` in
metres, decoded to metres by :func:`ros2_amodal_seg.runtime.inputs.depth_msg_to_metres`) is
back-projected with the colour camera's K (and D) into camera-frame points. The fusion then
runs on them unchanged, with ``T_camera_lidar = identity`` (the "LiDAR" is the camera itself).

Pixel ``(u, v)`` with depth ``z`` (camera-optical z, i.e. the distance along the optical axis,
not along the ray) becomes ``(x, y, z) = (x_n z, y_n z, z)`` where ``(x_n, y_n)`` is the pixel's
normalised image coordinate: ``((u - cx - s y_n) / fx, (v - cy) / fy)`` for a pinhole camera,
the undistorted coordinate when D is not zero, so that projecting the point with ``(K, D)``
gives back the pixel. Pixel coordinates follow OpenCV (and the depth SDKs, and the synthetic
world's renderer): the centre of column ``c`` is ``u = c``. The fusion assigns a point to pixel
``floor(u), floor(v)``, so each pixel is taken at ``u = c + 1/64``, ``v = r + 1/64``
(:data:`PIXEL_NUDGE`): far more than float32 round-off, so every point lands back in its own
pixel, and a 64th of a pixel off the ray (0.03 mm at 1 m with a 500 px focal length).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ros2_amodal_seg.errors import ConfigError, InvalidInputError
from ros2_amodal_seg.fusion.projection import check_distortion, check_intrinsics

#: offset of the sampled position inside each pixel [px] (see the module docstring).
PIXEL_NUDGE = 1.0 / 64.0
#: sources of 3-D the node can fuse (node parameter ``geometry_source``).
GEOMETRY_SOURCES: tuple[str, ...] = ("lidar", "depth", "none")


@dataclass(frozen=True)
class DepthConfig:
    """How a depth image becomes points (node parameters ``depth_*``).

    Attributes:
        stride: use every ``stride``-th pixel in both directions [px] (1 = all): bounds the
            point count (640 x 480 at stride 2: at most 76 800 points, about a 64-beam LiDAR's).
        min_depth_m, max_depth_m: depths outside ``[min, max]`` count as no return [m]
            (a depth camera's valid range; beyond it its error grows with z squared).
    """

    stride: int = 2
    min_depth_m: float = 0.1
    max_depth_m: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= int(self.stride) <= 64:
            raise ConfigError(f"depth stride must be in 1..64 px, got {self.stride}")
        if not 0.0 <= self.min_depth_m < self.max_depth_m:
            raise ConfigError(f"depth range must satisfy 0 <= min < max, got [{self.min_depth_m}, "
                              f"{self.max_depth_m}] m")


def _undistort(xd: np.ndarray, yd: np.ndarray, D: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Invert plumb_bob: distorted normalised coordinates (any shape, float64) -> undistorted ones
    (fixed-point iteration as OpenCV's ``undistortPoints``, with more iterations)."""
    k1, k2, p1, p2, k3 = (float(v) for v in D[:5])
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return x, y


@lru_cache(maxsize=8)
def _rays(K_bytes: bytes, D_bytes: bytes, height: int, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised coordinates ``(x_n, y_n)``, each ``[h', w']`` float32, of the strided pixels."""
    K = np.frombuffer(K_bytes, np.float64).reshape(3, 3)
    D = np.frombuffer(D_bytes, np.float64)
    v = np.arange(0, height, stride, dtype=np.float64) + PIXEL_NUDGE
    u = np.arange(0, width, stride, dtype=np.float64) + PIXEL_NUDGE
    uu, vv = np.meshgrid(u, v)
    yn = (vv - K[1, 2]) / K[1, 1]
    xn = (uu - K[0, 2] - K[0, 1] * yn) / K[0, 0]
    if np.any(D != 0):
        xn, yn = _undistort(xn, yn, D)
    return xn.astype(np.float32), yn.astype(np.float32)


def depth_to_points(depth: np.ndarray, K: np.ndarray, stride: int = 1, D: np.ndarray | None = None, *,
                    min_depth_m: float = 0.0, max_depth_m: float = float("inf")) -> np.ndarray:
    """Back-project a depth image into camera-frame points.

    Args:
        depth: ``[H, W]`` float32 (or float64) camera-optical z per pixel [m], aligned to the
            camera of ``K``; 0, NaN, +-inf and values outside ``[min_depth_m, max_depth_m]``
            are no return and give no point.
        K: ``[3, 3]`` float64 intrinsics of the (colour) camera [px], for an image of
            ``[H, W]`` pixels.
        stride: keep every ``stride``-th row and column (pixels ``(stride*i, stride*j)``) [px].
        D: ``[5]`` float64 plumb_bob coefficients (k1, k2, p1, p2, k3) of that camera, or None
            (no distortion).
        min_depth_m, max_depth_m: valid depth range [m] (inclusive).

    Returns:
        ``[N, 4]`` float32 points ``x, y, z, intensity`` in the camera optical frame
        (x right, y down, z forward) [m]; intensity is 0. Row-major pixel order.

    Raises:
        InvalidInputError: ``depth`` is not a 2-D float array, or the stride is < 1.
        GeometryError: invalid K or D.
    """
    if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind != "f":
        raise InvalidInputError(f"depth must be a [H, W] float array in metres, got "
                                f"{getattr(depth, 'shape', None)} {getattr(depth, 'dtype', None)}")
    if int(stride) < 1:
        raise InvalidInputError(f"stride must be >= 1, got {stride}")
    K = check_intrinsics(K)
    D = check_distortion(D)
    H, W = depth.shape
    xn, yn = _rays(np.ascontiguousarray(K).tobytes(), np.ascontiguousarray(D).tobytes(), H, W, int(stride))
    z = depth[::stride, ::stride]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(z) & (z > 0) & (z >= min_depth_m) & (z <= max_depth_m)
    zk = z[ok].astype(np.float32)
    out = np.zeros((zk.size, 4), np.float32)
    out[:, 0] = xn[ok] * zk
    out[:, 1] = yn[ok] * zk
    out[:, 2] = zk
    return out


def depth_pixel_ids(depth: np.ndarray, ids: np.ndarray, stride: int = 1, *, min_depth_m: float = 0.0,
                    max_depth_m: float = float("inf")) -> np.ndarray:
    """The per-pixel labels of the points :func:`depth_to_points` returns, in the same order.

    Args:
        depth: ``[H, W]`` float depth [m] (as given to :func:`depth_to_points`).
        ids: ``[H, W]`` int labels (e.g. the world's ``visible_ids``).

    Returns:
        ``[N]`` labels of ``ids`` at the pixels that gave a point.
    """
    z = depth[::stride, ::stride]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(z) & (z > 0) & (z >= min_depth_m) & (z <= max_depth_m)
    return np.asarray(ids)[::stride, ::stride][ok]
