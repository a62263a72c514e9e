"""Camera imaging of the realistic world (world.md version 2): light colours, exposure,
white balance, gamma, blur, sensor noise and JPEG compression. No ROS imports.

Radiance is computed in linear RGB; :func:`develop` turns it into the ``rgb8`` image a
camera would deliver, with the per-image randomisation drawn in :class:`Imaging`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ros2_amodal_seg.errors import InvalidInputError

#: display -> linear decoding exponent of textures and material colours (sRGB-like).
DECODE_GAMMA = 2.2
#: levels of the display -> linear lookup table of albedos.
ALBEDO_LEVELS = 1024
#: levels of the linear -> display lookup table of :func:`develop`.
TONE_LEVELS = 4096


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Colour of a black body at ``kelvin`` (1000-40000 K), Tanner Helland's fit of the CIE data.

    Returns:
        ``[3]`` float64 linear RGB scaled so that its largest channel is 1.
    """
    t = float(np.clip(kelvin, 1000.0, 40000.0)) / 100.0
    if t <= 66.0:
        r = 255.0
        g = 99.4708025861 * np.log(t) - 161.1195681661
        b = 0.0 if t <= 19.0 else 138.5177312231 * np.log(t - 10.0) - 305.0447927307
    else:
        r = 329.698727446 * (t - 60.0) ** -0.1332047592
        g = 288.1221695283 * (t - 60.0) ** -0.0755148492
        b = 255.0
    rgb = np.clip(np.array([r, g, b]), 0.0, 255.0) / 255.0
    rgb = rgb ** DECODE_GAMMA                      # the fit gives display values
    return rgb / rgb.max()


@functools.lru_cache(maxsize=1)
def albedo_lut() -> np.ndarray:
    """``[ALBEDO_LEVELS]`` float32: display value ``i / (ALBEDO_LEVELS - 1)`` -> linear."""
    x = np.arange(ALBEDO_LEVELS, dtype=np.float64) / (ALBEDO_LEVELS - 1)
    lut = (x ** DECODE_GAMMA).astype(np.float32)
    lut.flags.writeable = False
    return lut


def to_linear(display: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Display values in [0, 1] (any float array) -> linear float32 through :func:`albedo_lut`."""
    q = np.clip(display, 0.0, 1.0) * np.float32(ALBEDO_LEVELS - 1)
    np.rint(q, out=q)
    return np.take(albedo_lut(), q.astype(np.int32), out=out)


@dataclass(frozen=True)
class Imaging:
    """Per-image camera settings (drawn by the scene composer from the scene seed).

    Attributes:
        exposure_target: mean linear luminance the auto-exposure aims at.
        gamma: display encoding exponent (world.md: 1.8 to 2.4).
        wb_gains: ``(r, g, b)`` white-balance gains.
        noise_sigma: Gaussian sensor noise sigma [of 255] (0 to 4).
        blur_sigma: Gaussian blur sigma [px at 640 px width]; 0 = no blur.
        jpeg_quality: JPEG quality 60-95; 0 = no JPEG round trip.
    """

    exposure_target: float
    gamma: float
    wb_gains: tuple[float, float, float]
    noise_sigma: float
    blur_sigma: float
    jpeg_quality: int


def draw_imaging(rng: np.random.Generator, key_kelvin: float, noise_sigma_max: float) -> Imaging:
    """Draw the camera settings of one image (world.md's randomisation).

    White balance is the camera's imperfect estimate of the key light's colour temperature
    (Gaussian error, sigma 500 K) with a small per-channel error; blur on about a third of the images,
    JPEG on about half.
    """
    est = float(np.clip(key_kelvin + rng.normal(0.0, 500.0), 2500.0, 9000.0))
    wb = 1.0 / kelvin_to_rgb(est)
    wb = wb / wb[1] * rng.uniform(0.95, 1.05, 3)
    blur = float(rng.uniform(0.3, 1.5)) if rng.random() < 1.0 / 3.0 else 0.0
    jpeg = int(rng.integers(60, 96)) if rng.random() < 0.5 else 0
    return Imaging(exposure_target=float(rng.uniform(0.13, 0.26)), gamma=float(rng.uniform(1.8, 2.4)),
                   wb_gains=tuple(float(g) for g in wb), noise_sigma=float(rng.uniform(0.0, noise_sigma_max)),
                   blur_sigma=blur, jpeg_quality=jpeg)


def develop(radiance: np.ndarray, im: Imaging, noise_rng: np.random.Generator, width_scale: float = 1.0) -> np.ndarray:
    """Linear radiance -> ``rgb8`` image: white balance, auto-exposure, gamma, blur, noise, JPEG.

    Args:
        radiance: ``[H, W, 3]`` float32 linear RGB (modified in place).
        im: the image's camera settings.
        noise_rng: random source of the sensor noise (the image's own stream).
        width_scale: image width / 640 (the blur sigma is given at 640 px).

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    import cv2

    H, W = radiance.shape[:2]
    wb = np.asarray(im.wb_gains, dtype=np.float32)
    sub = radiance[::4, ::4].reshape(-1, 3)
    lum = float((sub @ (np.array([0.2126, 0.7152, 0.0722], dtype=np.float32) * wb)).mean())
    # white balance, exposure and the tone table's scale in one multiply
    radiance *= wb * np.float32(im.exposure_target / max(lum, 1e-4) * (TONE_LEVELS - 1))
    np.minimum(radiance, np.float32(TONE_LEVELS - 1), out=radiance)      # radiance >= 0
    radiance += np.float32(0.5)
    tone = (np.arange(TONE_LEVELS, dtype=np.float64) / (TONE_LEVELS - 1)) ** (1.0 / im.gamma) * 255.0
    img = np.take(tone.astype(np.float32), radiance.astype(np.int32))          # [H, W, 3] float32 0..255
    if im.blur_sigma > 0:
        s = im.blur_sigma * width_scale
        if s >= 0.2:
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT)
    if im.noise_sigma > 0:
        noise = noise_rng.standard_normal((H, W, 3), dtype=np.float32)
        noise *= np.float32(im.noise_sigma)
        img += noise
    np.rint(img, out=img)
    rgb = np.clip(img, 0, 255, out=img).astype(np.uint8)
    if im.jpeg_quality > 0:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(im.jpeg_quality)])
        if not ok:
            raise InvalidInputError(f"JPEG encoding failed for a {W} x {H} image")
        rgb = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return rgb
