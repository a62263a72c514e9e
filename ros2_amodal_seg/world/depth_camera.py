"""A simulated RGB-D depth stream: the renderer's exact depth with a depth camera's errors (no ROS import).

``simulate_depth(frame.depth, frame.rgb, seed)`` turns the exact camera-z depth of a rendered
frame (``Frame.depth``, aligned to the colour image, ``inf`` = no surface) into what an
active-stereo / structured-light camera (RealSense D4xx class) aligned to the colour camera
publishes as ``16UC1``: millimetres, 0 = no return. The model, in order:

1. **range**: depths outside ``[min_depth_m, max_depth_m]`` (and no surface) are no return;
2. **noise** growing with depth, ``sigma(z) = noise_rel * z + noise_quad * z^2`` [m] (stereo
   depth error grows with z squared: 3 mm at 1 m, 10 mm at 2 m, 0.2 m at 10 m with the
   defaults), half of its variance spatially correlated over ``noise_corr_px`` pixels (stereo
   matching errors come in patches, so averaging many pixels does not remove them) and half
   per pixel;
3. **missing returns on depth edges**: pixels within ``edge_width_px`` of a depth
   discontinuity (a 4-neighbour more than ``edge_jump_rel * z`` nearer or farther, or without a
   surface) are dropped with probability ``edge_drop_prob`` (stereo matching fails where the
   two views see different surfaces);
4. **missing returns on dark surfaces**: pixels whose colour-image luminance (Rec. 601, in
   [0, 1]) is below ``dark_luma`` are dropped with probability ``dark_drop_prob`` (too little
   reflected light for the pattern / texture);
5. random dropouts with probability ``random_drop_prob``;
6. **quantisation** to ``quantum_m`` (1 mm: the unit of ``16UC1``).

The result depends only on its inputs and ``seed`` (``numpy.random.default_rng([seed, 118])``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_amodal_seg.errors import ConfigError, InvalidInputError

#: largest depth a ``16UC1`` image holds [m] (65535 mm).
MAX_16UC1_M = 65.535


@dataclass(frozen=True)
class DepthNoiseConfig:
    """Error model of :func:`simulate_depth` (see the module docstring for each step).

    Attributes:
        min_depth_m, max_depth_m: valid range of the camera [m].
        noise_rel: depth noise sigma per metre of depth (linear term) [1].
        noise_quad: depth noise sigma per squared metre (stereo term) [1/m].
        noise_corr_px: correlation length of the correlated half of the noise [px] (0: all per pixel).
        edge_jump_rel: a neighbour differing by more than this share of the depth makes an edge [1].
        edge_width_px: pixels within this distance of an edge may be dropped [px].
        edge_drop_prob: probability an edge pixel has no return.
        dark_luma: colour luminance below which a surface is dark [0..1].
        dark_drop_prob: probability a dark pixel has no return.
        random_drop_prob: probability any other pixel has no return.
        quantum_m: depth step [m] (0.001: millimetres, as ``16UC1``).
    """

    min_depth_m: float = 0.1
    max_depth_m: float = 10.0
    noise_rel: float = 0.001
    noise_quad: float = 0.002
    noise_corr_px: float = 4.0
    edge_jump_rel: float = 0.03
    edge_width_px: int = 1
    edge_drop_prob: float = 0.8
    dark_luma: float = 0.08
    dark_drop_prob: float = 0.9
    random_drop_prob: float = 0.002
    quantum_m: float = 0.001

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_depth_m < self.max_depth_m <= MAX_16UC1_M:
            raise ConfigError(f"depth range must satisfy 0 <= min < max <= {MAX_16UC1_M} m, got "
                              f"[{self.min_depth_m}, {self.max_depth_m}]")
        for name in ("noise_rel", "noise_quad", "noise_corr_px", "edge_jump_rel", "quantum_m"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("edge_drop_prob", "dark_drop_prob", "random_drop_prob", "dark_luma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.edge_width_px < 0:
            raise ConfigError(f"edge_width_px must be >= 0, got {self.edge_width_px}")


#: exact depth, no errors (for tests and as a reference): only the range and 1 mm steps.
EXACT = DepthNoiseConfig(noise_rel=0.0, noise_quad=0.0, edge_drop_prob=0.0, dark_drop_prob=0.0,
                         random_drop_prob=0.0)


def depth_edges(depth: np.ndarray, jump_rel: float) -> np.ndarray:
    """Pixels next to a depth discontinuity.

    Args:
        depth: ``[H, W]`` float camera-z depth [m]; non-finite or <= 0 = no surface.
        jump_rel: a 4-neighbour whose depth differs by more than ``jump_rel * z`` (of the nearer
            of the two) makes both pixels edge pixels; so does a neighbour without a surface.

    Returns:
        ``[H, W]`` bool.
    """
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.inf).astype(np.float64)
    edge = np.zeros(z.shape, bool)
    for a, b in (((slice(None), slice(1, None)), (slice(None), slice(None, -1))),
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None)))):
        za, zb = z[a], z[b]
        with np.errstate(invalid="ignore"):
            near = np.minimum(za, zb)
            jump = ~(np.abs(za - zb) <= jump_rel * near)      # inf - inf is NaN: no surface on both: no edge
        jump &= np.isfinite(near)
        edge[a] |= jump
        edge[b] |= jump
    return edge


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], corr_px: float) -> np.ndarray:
    """Unit-variance Gaussian noise ``[H, W]`` float32 correlated over about ``corr_px`` pixels."""
    import cv2

    white = rng.standard_normal(shape).astype(np.float32)
    if corr_px <= 0:
        return white
    sm = cv2.GaussianBlur(white, (0, 0), sigmaX=float(corr_px), borderType=cv2.BORDER_REFLECT)
    std = float(sm.std())
    return sm / std if std > 0 else white


def simulate_depth(depth: np.ndarray, rgb: np.ndarray, seed: int,
                   config: DepthNoiseConfig = DepthNoiseConfig()) -> np.ndarray:
    """A depth camera's ``16UC1`` image of a rendered frame (see the module docstring).

    Args:
        depth: ``[H, W]`` float32 exact camera-z depth [m] aligned to ``rgb`` (``Frame.depth``;
            inf = no surface).
        rgb: ``[H, W, 3]`` uint8 colour image (dark surfaces lose their returns).
        seed: noise seed (the frame's world seed: the same frame always gets the same noise).
        config: the error model.

    Returns:
        ``[H, W]`` uint16 depth in millimetres (``quantum_m`` steps), 0 = no return.

    Raises:
        InvalidInputError: shapes or dtypes do not match.
    """
    if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype.kind != "f":
        raise InvalidInputError(f"depth must be [H, W] float, got {getattr(depth, 'shape', None)}")
    if not isinstance(rgb, np.ndarray) or rgb.shape != depth.shape + (3,) or rgb.dtype != np.uint8:
        raise InvalidInputError(f"rgb must be [H, W, 3] uint8 matching depth {depth.shape}, got "
                                f"{getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', None)}")
    cfg = config
    rng = np.random.default_rng([int(seed), 118])
    z = depth.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z >= cfg.min_depth_m) & (z <= cfg.max_depth_m)
    zv = np.where(valid, z, 0.0)
    sigma = cfg.noise_rel * zv + cfg.noise_quad * zv * zv
    if np.any(sigma > 0):
        noise = np.sqrt(0.5) * rng.standard_normal(z.shape)
        noise += np.sqrt(0.5) * _smooth_noise(rng, z.shape, cfg.noise_corr_px)
        zv = zv + sigma * noise
    drop = np.zeros(z.shape, bool)
    if cfg.edge_drop_prob > 0:
        edge = depth_edges(depth, cfg.edge_jump_rel)
        if cfg.edge_width_px > 1:
            import cv2

            k = 2 * int(cfg.edge_width_px) - 1
            edge = cv2.dilate(edge.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        drop |= edge & (rng.random(z.shape) < cfg.edge_drop_prob)
    if cfg.dark_drop_prob > 0:
        luma = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
        drop |= (luma < cfg.dark_luma) & (rng.random(z.shape) < cfg.dark_drop_prob)
    if cfg.random_drop_prob > 0:
        drop |= rng.random(z.shape) < cfg.random_drop_prob
    q = cfg.quantum_m if cfg.quantum_m > 0 else 0.001
    mm = np.rint(zv / q) * (q / 0.001)
    ok = valid & ~drop & (zv > 0)
    out = np.zeros(z.shape, np.uint16)
    out[ok] = np.clip(np.rint(mm[ok]), 1, 65535).astype(np.uint16)
    return out


def depth_image_m(depth_mm: np.ndarray) -> np.ndarray:
    """``[H, W]`` uint16 millimetres (0 = no return) -> ``[H, W]`` float32 metres (NaN = no return),
    the ``32FC1`` form of the same image."""
    out = depth_mm.astype(np.float32) / np.float32(1000.0)
    out[depth_mm == 0] = np.nan
    return out
