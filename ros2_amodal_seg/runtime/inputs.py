"""Cheap checks of the raw input messages, run where they arrive (no ROS import).

Each subscription callback of the node asks :class:`InputGate` about its message before
the message enters the synchroniser. A check reads only the header and the metadata
(sizes, steps, fields, K, D): never the pixels or the points, so it costs microseconds.
Its :class:`Verdict` is one of:

* **refused** with a *kind* (``image_encoding``, ``cloud_truncated``, ...): the message is
  counted under ``bad_<topic>`` and under its kind, a throttled warning names the kind, and
  the message goes no further. A refused image never replaces a good pending one; a refused
  CameraInfo never replaces the last good intrinsics.
* **accepted with notes** (the lenient cases below): the message is used as documented,
  and each note is counted.
* **accepted**.

The lenient cases, decided once:

=============================  ==========================================================
case                           outcome
=============================  ==========================================================
image data longer than         accepted, ``image_data_long`` counted; the first
``step * height``              ``step * height`` bytes are read
cloud data longer than         accepted, ``cloud_data_long`` counted (covers data that is
``row_step * height``          not a multiple of ``point_step`` and ``width * height``
                               smaller than the data); the declared points are read
plumb_bob D with 4 values      accepted as (k1, k2, p1, p2), k3 = 0; ``camera_info_d_padded``
D longer than 5, extras zero   accepted, ``camera_info_d_trimmed`` (rational_polynomial
                               with k4..k6 = 0, or zero-padded vectors)
empty D                        accepted as no distortion, ``camera_info_d_empty``
=============================  ==========================================================

Depth images (``sensor_msgs/Image`` aligned to the colour camera, REP 118) are checked by
:func:`check_depth`: ``16UC1`` (millimetres) or ``32FC1`` (metres), step, size; any other
encoding is refused as ``depth_encoding``. Longer data is ``depth_data_long`` (accepted).

Refused: 1-3 D values, non-zero terms beyond k3, non-finite D, unsupported distortion
models with non-zero D (the fusion projects plumb_bob only), non-finite K, zero or
negative focal lengths, a last row of K other than (0, 0, 1), a principal point more than
one image size outside the image, negative stamps, images smaller than
:data:`MIN_IMAGE_SIDE` or larger than ``max_image_pixels``, clouds with more points than
``max_cloud_points`` (the node's memory bound).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ros2_amodal_seg.errors import ConfigError, GeometryError, InvalidInputError
from ros2_amodal_seg.fusion.projection import check_distortion, check_intrinsics
from ros2_amodal_seg.runtime.stats import EventCounters

#: smallest image side the model runs on (``model.predictor.check_image``) [px].
MIN_IMAGE_SIDE = 8
#: supported raw image encodings -> channels.
IMAGE_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "mono8": 1}
#: supported depth encodings (REP 118) -> (bytes per pixel, metres per unit): 16UC1 in millimetres,
#: 32FC1 in metres.
DEPTH_ENCODINGS: dict[str, tuple[int, float]] = {"16UC1": (2, 0.001), "32FC1": (4, 1.0)}
#: sensor_msgs/PointField datatypes -> numpy format (the message constants, without importing them).
POINTFIELD_FORMATS: dict[int, str] = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
POINTFIELD_FLOAT32 = 7
#: distortion models the fusion projects (with their longest meaningful coefficient vector).
DISTORTION_MODELS: tuple[str, ...] = ("", "plumb_bob", "rational_polynomial")

#: every refusal kind, by input; the node counts each under ``bad_<input>`` and under its kind.
REFUSALS: dict[str, tuple[str, ...]] = {
    "image": ("image_cdr", "image_stamp", "image_encoding", "image_size", "image_step", "image_truncated",
              "image_compressed_empty", "image_decode"),
    "camera_info": ("camera_info_cdr", "camera_info_stamp", "camera_info_size", "camera_info_k", "camera_info_d"),
    "cloud": ("cloud_cdr", "cloud_stamp", "cloud_fields", "cloud_endian", "cloud_step", "cloud_truncated",
              "cloud_too_large"),
    "depth": ("depth_cdr", "depth_stamp", "depth_encoding", "depth_size", "depth_step", "depth_truncated"),
}
#: lenient cases: accepted and counted.
NOTES: tuple[str, ...] = ("image_data_long", "cloud_data_long", "camera_info_d_padded", "camera_info_d_trimmed",
                          "camera_info_d_empty", "depth_data_long")


@dataclass(frozen=True)
class InputLimits:
    """Bounds of the receipt checks (node parameters ``max_cloud_points``, ``max_image_pixels``).

    Attributes:
        max_cloud_points: larger clouds are refused (``cloud_too_large``): the node's memory bound.
        max_image_pixels: larger images are refused (``image_size``).
        min_image_side: images with a shorter side are refused (``image_size``); the node uses
            the model's :data:`MIN_IMAGE_SIDE`, plain message conversion 1.
    """

    max_cloud_points: int = 1_000_000
    max_image_pixels: int = 50_000_000
    min_image_side: int = MIN_IMAGE_SIDE

    def __post_init__(self) -> None:
        if self.max_cloud_points < 1:
            raise ConfigError(f"max_cloud_points must be >= 1, got {self.max_cloud_points}")
        if self.min_image_side < 1:
            raise ConfigError(f"min_image_side must be >= 1, got {self.min_image_side}")
        if self.max_image_pixels < self.min_image_side ** 2:
            raise ConfigError(f"max_image_pixels must be >= {self.min_image_side ** 2}, got {self.max_image_pixels}")


#: no size bounds: what any well-formed message passes (plain conversion, tools).
UNBOUNDED = InputLimits(max_cloud_points=2 ** 62, max_image_pixels=2 ** 62, min_image_side=1)


@dataclass(frozen=True)
class Intrinsics:
    """A CameraInfo that passed :func:`check_camera_info`.

    Attributes:
        K: ``[3, 3]`` float64 pinhole matrix [px]. D: ``[5]`` float64 plumb_bob (k1, k2, p1, p2, k3).
        height, width: image size the calibration is for [px]. stamp_ns: header stamp [ns].
    """

    K: np.ndarray
    D: np.ndarray
    height: int
    width: int
    stamp_ns: int


@dataclass(frozen=True)
class Verdict:
    """Outcome of one receipt check.

    Attributes:
        refused: the refusal kind (one of :data:`REFUSALS`), None when accepted.
        detail: why, for the warning.
        notes: lenient kinds (:data:`NOTES`) that apply to an accepted message.
        value: what the check derived (``Intrinsics`` for a CameraInfo), else None.
    """

    refused: str | None = None
    detail: str = ""
    notes: tuple[str, ...] = ()
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.refused is None


def _refuse(kind: str, detail: str) -> Verdict:
    return Verdict(refused=kind, detail=detail)


def _bad_stamp(kind: str, msg) -> Verdict:
    return _refuse(kind, f"invalid stamp {msg.header.stamp.sec} s {msg.header.stamp.nanosec} ns")


def stamp_ns_of(header) -> int | None:
    """``header.stamp`` as integer nanoseconds, None when negative or malformed."""
    sec, nsec = int(header.stamp.sec), int(header.stamp.nanosec)
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        return None
    return sec * 1_000_000_000 + nsec


def check_image(msg, limits: InputLimits = InputLimits()) -> Verdict:
    """``sensor_msgs/Image`` (duck-typed) -> :class:`Verdict` (see the module table)."""
    if stamp_ns_of(msg.header) is None:
        return _bad_stamp("image_stamp", msg)
    enc = str(msg.encoding).lower()
    if enc not in IMAGE_ENCODINGS:
        return _refuse("image_encoding", f"unsupported image encoding {msg.encoding!r} (supported: "
                                         f"{', '.join(IMAGE_ENCODINGS)})")
    h, w, ch = int(msg.height), int(msg.width), IMAGE_ENCODINGS[enc]
    if min(h, w) < limits.min_image_side or h * w > limits.max_image_pixels:
        return _refuse("image_size", f"image is {w}x{h}: sides must be >= {limits.min_image_side} px and the "
                                     f"area <= {limits.max_image_pixels} px")
    step = int(msg.step)
    if step < w * ch:
        return _refuse("image_step", f"step {step} < width*channels {w * ch} for {enc}")
    n = len(msg.data)
    if n < step * h:
        return _refuse("image_truncated", f"data is {n} B < step*height = {step * h}")
    return Verdict(notes=("image_data_long",) if n > step * h else ())


def check_compressed_image(msg) -> Verdict:
    """``sensor_msgs/CompressedImage``: stamp and non-empty data (decoding happens in the worker)."""
    if stamp_ns_of(msg.header) is None:
        return _bad_stamp("image_stamp", msg)
    if len(msg.data) == 0:
        return _refuse("image_compressed_empty", f"compressed image (format {msg.format!r}) has no data")
    return Verdict()


def check_camera_info(msg) -> Verdict:
    """``sensor_msgs/CameraInfo`` -> :class:`Verdict` whose ``value`` is :class:`Intrinsics`.

    K and D go through the same validators the fusion uses
    (:func:`~ros2_amodal_seg.fusion.projection.check_intrinsics`, ``check_distortion``), so an
    accepted CameraInfo cannot fail later in the frame.
    """
    stamp = stamp_ns_of(msg.header)
    if stamp is None:
        return _bad_stamp("camera_info_stamp", msg)
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        return _refuse("camera_info_k", f"K has {k.size} values, expected 9")
    try:
        K = check_intrinsics(k.reshape(3, 3))
    except GeometryError as exc:
        return _refuse("camera_info_k", str(exc))
    h, w = int(msg.height), int(msg.width)
    if min(h, w) < 1:
        return _refuse("camera_info_size", f"camera_info size is {w}x{h}")
    cx, cy = K[0, 2], K[1, 2]
    if not (-w <= cx <= 2 * w and -h <= cy <= 2 * h) or max(K[0, 0], K[1, 1]) > 1e3 * max(h, w):
        return _refuse("camera_info_k", f"implausible K for a {w}x{h} image (fx {K[0, 0]:.4g}, fy {K[1, 1]:.4g}, "
                                        f"cx {cx:.4g}, cy {cy:.4g})")
    model = str(msg.distortion_model)
    d = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(d)):
        return _refuse("camera_info_d", "D has NaN/inf entries")
    if model not in DISTORTION_MODELS and np.any(d != 0):
        return _refuse("camera_info_d", f"distortion model {model!r} is not supported (plumb_bob, or "
                                        "rational_polynomial with k4..k6 = 0)")
    try:
        D = check_distortion(d if np.any(d != 0) else None)
    except GeometryError as exc:
        return _refuse("camera_info_d", f"{model or 'plumb_bob'}: {exc}")
    notes = ("camera_info_d_empty",) if d.size == 0 else ("camera_info_d_padded",) if d.size == 4 else \
        ("camera_info_d_trimmed",) if d.size > 5 else ()
    return Verdict(notes=notes, value=Intrinsics(K=K, D=D, height=h, width=w, stamp_ns=stamp))


def check_cloud(msg, limits: InputLimits = InputLimits()) -> Verdict:
    """``sensor_msgs/PointCloud2`` -> :class:`Verdict` (fields, steps, sizes; points are not read)."""
    if stamp_ns_of(msg.header) is None:
        return _bad_stamp("cloud_stamp", msg)
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z"):
        f = fields.get(name)
        if f is None:
            return _refuse("cloud_fields", f"no '{name}' field (fields: {sorted(fields)})")
        if int(f.datatype) != POINTFIELD_FLOAT32:
            return _refuse("cloud_fields", f"field '{name}' must be FLOAT32, got datatype {f.datatype}")
    if msg.is_bigendian:
        return _refuse("cloud_endian", "big-endian PointCloud2 is not supported")
    step = int(msg.point_step)
    for f in msg.fields:
        fmt = POINTFIELD_FORMATS.get(int(f.datatype))
        if fmt is None:
            if f.name in ("x", "y", "z", "intensity"):
                return _refuse("cloud_fields", f"field '{f.name}' has unknown datatype {f.datatype}")
            continue
        end = int(f.offset) + np.dtype(fmt).itemsize * max(1, int(f.count))
        if end > step:
            return _refuse("cloud_fields", f"field '{f.name}' (offset {f.offset}, ending at byte {end}) exceeds "
                                           f"point_step {step}")
    w, h, row = int(msg.width), int(msg.height), int(msg.row_step)
    if row < w * step:
        return _refuse("cloud_step", f"row_step {row} < width*point_step {w * step}")
    if w * h > limits.max_cloud_points:
        return _refuse("cloud_too_large", f"{w * h} points > max_cloud_points {limits.max_cloud_points}")
    n = len(msg.data)
    if n < row * h:
        return _refuse("cloud_truncated", f"data is {n} B < row_step*height = {row * h}")
    return Verdict(notes=("cloud_data_long",) if n > row * h else ())


def check_depth(msg, limits: InputLimits = InputLimits()) -> Verdict:
    """``sensor_msgs/Image`` holding depth (duck-typed) -> :class:`Verdict`.

    Accepted: ``16UC1`` (millimetres) and ``32FC1`` (metres) per REP 118, either byte order
    (``is_bigendian``), step >= width x bytes per pixel, data >= step x height (longer data:
    ``depth_data_long``, the declared rows are read). Its size against the colour image is checked
    when the frame is assembled (``depth_size_mismatch``). The pixels are not read (0 and NaN are
    "no return", handled by the back-projection).
    """
    if stamp_ns_of(msg.header) is None:
        return _bad_stamp("depth_stamp", msg)
    enc = str(msg.encoding).upper()
    if enc not in DEPTH_ENCODINGS:
        return _refuse("depth_encoding", f"unsupported depth encoding {msg.encoding!r} (supported: 16UC1 in "
                                         "millimetres, 32FC1 in metres; REP 118)")
    h, w, nb = int(msg.height), int(msg.width), DEPTH_ENCODINGS[enc][0]
    if min(h, w) < 1 or h * w > limits.max_image_pixels:
        return _refuse("depth_size", f"depth image is {w}x{h}: sides must be >= 1 px and the area <= "
                                     f"{limits.max_image_pixels} px")
    step = int(msg.step)
    if step < w * nb:
        return _refuse("depth_step", f"step {step} < width*{nb} = {w * nb} for {enc}")
    n = len(msg.data)
    if n < step * h:
        return _refuse("depth_truncated", f"data is {n} B < step*height = {step * h}")
    return Verdict(notes=("depth_data_long",) if n > step * h else ())


def counter_names() -> tuple[str, ...]:
    """Every counter :class:`InputGate` may touch, in a stable order (for diagnostics)."""
    names: list[str] = []
    for topic, kinds in REFUSALS.items():
        names.append(f"bad_{topic}")
        names.extend(kinds)
    return tuple(names) + NOTES + ("camera_info_fallback",)


@dataclass
class InputGate:
    """Counts every checked message where it arrives, and remembers the last good intrinsics.

    Args:
        counters: where the counts go (the node's :class:`EventCounters`).
        warn: ``warn(key, text)``: a throttled warning (the node logs it).
        limits: :class:`InputLimits`.
    """

    counters: EventCounters
    warn: Callable[[str, str], None]
    limits: InputLimits = InputLimits()
    last_info_bad: bool = field(default=False, init=False)
    #: input -> (kind, detail) of its last refused message (the diagnosis names it).
    last_refusal: dict = field(default_factory=dict, init=False)

    def _count(self, topic: str, v: Verdict, what: str) -> bool:
        if v.refused is not None:
            self.last_refusal[topic] = (v.refused, v.detail)
            n = self.counters.inc(f"bad_{topic}")
            self.counters.inc(v.refused)
            self.warn(v.refused, f"{what} refused [{v.refused}]: {v.detail} (bad_{topic}: {n})")
            return False
        for note in v.notes:
            n = self.counters.inc(note)
            self.warn(note, f"{what} accepted as documented [{note}: {n}]")
        return True

    def image(self, msg, compressed: bool = False) -> bool:
        """True when the image may enter the synchroniser."""
        v = check_compressed_image(msg) if compressed else check_image(msg, self.limits)
        return self._count("image", v, "image")

    def camera_info(self, msg) -> Intrinsics | None:
        """The validated intrinsics, or None (refused: the last good ones stay in use)."""
        v = check_camera_info(msg)
        self.last_info_bad = not v.ok
        return v.value if self._count("camera_info", v, "camera_info") else None

    def cloud(self, msg) -> bool:
        """True when the cloud may enter the synchroniser."""
        return self._count("cloud", check_cloud(msg, self.limits), "cloud")

    def depth(self, msg) -> bool:
        """True when the depth image may enter the synchroniser."""
        return self._count("depth", check_depth(msg, self.limits), "depth image")

    def refuse(self, topic: str, kind: str, detail: str) -> None:
        """Count a refusal found later (e.g. a compressed image that does not decode)."""
        self._count(topic, _refuse(kind, detail), topic)

# ----------------------------------------------------------------------------------- decoding
def _bytes_view(data) -> np.ndarray:
    """A message's ``uint8[]`` field as a ``[N]`` uint8 array, without a copy where it has a buffer."""
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:   # a plain list
        return np.frombuffer(bytes(data), dtype=np.uint8)


def image_msg_to_rgb(m) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, mono8; any object with its fields) -> ``[H, W, 3]`` uint8 RGB (a copy).

    Raises:
        InvalidInputError: whatever :func:`~ros2_amodal_seg.runtime.inputs.check_image` refuses
            (unsupported encoding, zero size, a step smaller than a row, data shorter than
            ``step * height``, a negative stamp); longer data is read up to ``step * height``.
    """
    v = check_image(m, UNBOUNDED)
    if not v.ok:
        raise InvalidInputError(f"image refused [{v.refused}]: {v.detail}")
    enc = m.encoding.lower()
    h, w, ch, step = int(m.height), int(m.width), IMAGE_ENCODINGS[enc], int(m.step)
    buf = _bytes_view(m.data)
    rows = buf[:step * h].reshape(h, step)[:, :w * ch]
    img = rows.reshape(h, w, ch)
    if enc == "rgb8":
        return img.copy()
    if enc == "bgr8":
        return img[:, :, ::-1].copy()
    return np.repeat(img, 3, axis=2)


def depth_msg_to_metres(m) -> np.ndarray:
    """``sensor_msgs/Image`` 16UC1 [mm] or 32FC1 [m] (any object with its fields) -> ``[H, W]`` float32 [m].

    Pixels without a return stay 0 (16UC1) or NaN / 0 (32FC1): :func:`~ros2_amodal_seg.fusion.depth.depth_to_points`
    drops them. A big-endian image is byte-swapped.

    Raises:
        InvalidInputError: whatever :func:`check_depth` refuses.
    """
    v = check_depth(m, UNBOUNDED)
    if not v.ok:
        raise InvalidInputError(f"depth image refused [{v.refused}]: {v.detail}")
    enc = str(m.encoding).upper()
    nb, scale = DEPTH_ENCODINGS[enc]
    h, w, step = int(m.height), int(m.width), int(m.step)
    rows = _bytes_view(m.data)[:step * h].reshape(h, step)[:, :w * nb]
    dt = np.dtype("u2" if nb == 2 else "f4").newbyteorder(">" if m.is_bigendian else "<")
    raw = np.ascontiguousarray(rows).view(dt).reshape(h, w)
    out = raw.astype(np.float32)
    if scale != 1.0:
        out /= np.float32(round(1.0 / scale))      # 1500 mm / 1000 is 1.5 m exactly (* 0.001 is not)
    return out


def compressed_image_to_rgb(m) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg/png) -> ``[H, W, 3]`` uint8 RGB."""
    import cv2

    buf = np.frombuffer(bytes(m.data), dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if img is None:
        raise InvalidInputError(f"cannot decode compressed image (format {m.format!r}, {buf.size} bytes)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def pointcloud2_to_xyzi(m) -> tuple[np.ndarray, int]:
    """Any PointCloud2 (any object with its fields) with float32 x, y, z (intensity optional) -> ``[N, 4]`` float32.

    Non-finite points are dropped; the number dropped is returned so the caller can warn.
    Missing intensity is filled with 0.

    Returns:
        (points ``[N, 4]`` float32 x y z intensity in ``m.header.frame_id`` [m], n_dropped)

    Raises:
        InvalidInputError: no float32 x/y/z fields, point_step too small for its fields,
            row_step/data size inconsistent (truncated), or big-endian data.
    """
    v = check_cloud(m, UNBOUNDED)
    if not v.ok:
        raise InvalidInputError(f"PointCloud2 refused [{v.refused}]: {v.detail}")
    step = int(m.point_step)
    n = int(m.width) * int(m.height)
    names, formats, offsets = [], [], []
    for f in m.fields:
        if f.name in ("x", "y", "z", "intensity") and int(f.datatype) in POINTFIELD_FORMATS:
            names.append(f.name)
            formats.append(POINTFIELD_FORMATS[int(f.datatype)])
            offsets.append(int(f.offset))
    buf = _bytes_view(m.data)
    if n == 0:
        return np.zeros((0, 4), np.float32), 0
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    if int(m.row_step) == int(m.width) * step:
        rec = np.frombuffer(buf[:n * step].tobytes() if not buf.flags.c_contiguous else buf[:n * step], dtype=dt)
    else:  # padded rows
        rows = buf[:int(m.row_step) * int(m.height)].reshape(int(m.height), int(m.row_step))[:, :int(m.width) * step]
        rec = np.frombuffer(np.ascontiguousarray(rows).tobytes(), dtype=dt)
    out = np.empty((n, 4), np.float32)
    out[:, 0] = rec["x"]
    out[:, 1] = rec["y"]
    out[:, 2] = rec["z"]
    out[:, 3] = rec["intensity"] if "intensity" in names else 0.0
    ok = np.isfinite(out[:, :3]).all(axis=1)
    dropped = int(n - ok.sum())
    return (out[ok] if dropped else out), dropped
