"""Malformed and odd input messages, one :class:`Case` per kind, for the fuzz script
(``scripts/fuzz_node.py``) and the tests.

Each case builds a message from a valid frame (:class:`GoodFrame`) and says what the node
must do with it: which counter counts it (a refusal kind of
:mod:`ros2_amodal_seg.runtime.inputs`, a lenient note, or a per-frame counter), and whether
an image case is a frame the node must still answer.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ros2_amodal_seg.ros import conversions as conv

#: points in the oversized cloud of the ``cloud_2m_points`` case.
HUGE_CLOUD_POINTS = 2_000_000


@dataclass
class GoodFrame:
    """A valid frame to derive cases from.

    Attributes:
        rgb: ``[H, W, 3]`` uint8. K: ``[3, 3]`` float64 [px]. D: ``[5]`` float64.
        points: ``[N, 4]`` float32 x y z intensity in the LiDAR frame [m].
        camera_frame, lidar_frame: header frame ids.
        organised: ``(rows, cols)``: publish the cloud as a spinning LiDAR does, ``rows x cols``
            points with NaN where there is no return (``points`` padded or cut); None = ``1 x N``.
    """

    rgb: np.ndarray
    K: np.ndarray
    D: np.ndarray
    points: np.ndarray
    camera_frame: str = "camera_optical_frame"
    lidar_frame: str = "lidar"
    organised: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.organised is not None:
            rows, cols = self.organised
            pts = np.full((rows * cols, 4), np.nan, np.float32)
            n = min(len(self.points), rows * cols)
            pts[:n] = self.points[:n]
            self.points = pts

    def image(self, stamp_ns: int) -> Image:
        return conv.rgb_to_image_msg(self.rgb, stamp_ns, self.camera_frame)

    def info(self, stamp_ns: int) -> CameraInfo:
        return conv.KD_to_camera_info(self.K, self.D, self.rgb.shape[:2], stamp_ns, self.camera_frame)

    def cloud(self, stamp_ns: int) -> PointCloud2:
        m = conv.xyzi_to_pointcloud2(self.points, stamp_ns, self.lidar_frame)
        if self.organised is not None:
            m.height, m.width = self.organised
            m.row_step = m.width * m.point_step
        return m


@dataclass(frozen=True)
class Case:
    """One kind of message.

    Attributes:
        name: the kind. topic: ``"image"``, ``"camera_info"`` or ``"cloud"``.
        counter: the node's counter that must count it (one per message), or None for an
            odd but valid message that no counter names.
        answered: an image the node must still answer with an output (lenient or odd sizes).
        make: ``make(good, stamp_ns) -> message``.
    """

    name: str
    topic: str
    counter: str | None
    make: Callable[[GoodFrame, int], object]
    answered: bool = False


def _neg_stamp(msg):
    msg.header.stamp.sec = -5
    return msg


def _image(g: GoodFrame, stamp: int, **fields) -> Image:
    m = g.image(stamp)
    for k, v in fields.items():
        setattr(m, k, v)
    return m


def _resized(g: GoodFrame, stamp: int, h: int, w: int, enc: str = "rgb8") -> Image:
    import cv2  # noqa: PLC0415

    rgb = cv2.resize(g.rgb, (w, h), interpolation=cv2.INTER_AREA)
    if enc == "mono8":
        gray = rgb.mean(axis=2).astype(np.uint8)
        return Image(header=conv.make_header(stamp, g.camera_frame), height=h, width=w, encoding="mono8",
                     step=w, data=gray.tobytes())
    return conv.rgb_to_image_msg(rgb, stamp, g.camera_frame)


def _info(g: GoodFrame, stamp: int, *, K=None, D=None, model: str | None = None, size=None) -> CameraInfo:
    m = g.info(stamp)
    if K is not None:
        m.k = [float(v) for v in np.asarray(K, np.float64).ravel()]
    if D is not None:
        m.d = [float(v) for v in np.asarray(D, np.float64).ravel()]
    if model is not None:
        m.distortion_model = model
    if size is not None:
        m.height, m.width = size
    return m


def _K(g: GoodFrame, **set_) -> np.ndarray:
    K = g.K.astype(np.float64).copy()
    for (r, c), v in set_.get("at", {}).items():
        K[r, c] = v
    return K


def _cloud(g: GoodFrame, stamp: int, **fields) -> PointCloud2:
    m = g.cloud(stamp)
    for k, v in fields.items():
        setattr(m, k, v)
    return m


def _cloud_field(g: GoodFrame, stamp: int, index: int, **attrs) -> PointCloud2:
    m = g.cloud(stamp)
    f = copy.copy(m.fields[index])
    for k, v in attrs.items():
        setattr(f, k, v)
    m.fields = [f if i == index else x for i, x in enumerate(m.fields)]
    return m


def _nan_cloud(g: GoodFrame, stamp: int) -> PointCloud2:
    pts = g.points.copy()
    pts[: max(1, len(pts) // 10), 0] = np.nan
    return conv.xyzi_to_pointcloud2(pts, stamp, g.lidar_frame)


def _huge_cloud(g: GoodFrame, stamp: int) -> PointCloud2:
    reps = -(-HUGE_CLOUD_POINTS // max(1, len(g.points)))
    pts = np.tile(g.points, (reps, 1))[:HUGE_CLOUD_POINTS]
    return conv.xyzi_to_pointcloud2(pts, stamp, g.lidar_frame)


def _data(m, extra: int):
    m.data = bytes(m.data) + bytes(extra)
    return m


F = PointField
CASES: tuple[Case, ...] = (
    # ---------------------------------------------------------------- images (refused at receipt)
    Case("image_16uc1", "image", "image_encoding",
         lambda g, s: _image(g, s, encoding="16UC1", step=g.rgb.shape[1] * 2,
                             data=bytes(g.rgb.shape[0] * g.rgb.shape[1] * 2))),
    Case("image_no_encoding", "image", "image_encoding", lambda g, s: _image(g, s, encoding="")),
    Case("image_yuv422", "image", "image_encoding", lambda g, s: _image(g, s, encoding="yuv422")),
    Case("image_zero_width", "image", "image_size", lambda g, s: _image(g, s, width=0, step=0, data=b"")),
    Case("image_zero_height", "image", "image_size", lambda g, s: _image(g, s, height=0, data=b"")),
    Case("image_4x4", "image", "image_size", lambda g, s: conv.rgb_to_image_msg(g.rgb[:4, :4], s, g.camera_frame)),
    Case("image_1x640", "image", "image_size", lambda g, s: _resized(g, s, 1, 640)),
    Case("image_huge_dims", "image", "image_size",
         lambda g, s: _image(g, s, height=100_000, width=100_000, step=300_000)),
    Case("image_small_step", "image", "image_step", lambda g, s: _image(g, s, step=g.rgb.shape[1] * 3 - 1)),
    Case("image_truncated", "image", "image_truncated", lambda g, s: _image(g, s, data=bytes(1000))),
    Case("image_empty_data", "image", "image_truncated", lambda g, s: _image(g, s, data=b"")),
    Case("image_negative_stamp", "image", "image_stamp", lambda g, s: _neg_stamp(g.image(s))),
    # ---------------------------------------------------------------- images the node must answer
    Case("image_data_long", "image", "image_data_long", lambda g, s: _data(g.image(s), 4099), answered=True),
    Case("image_8x8", "image", "camera_info_size_mismatch", lambda g, s: _resized(g, s, 8, 8), answered=True),
    Case("image_10x10", "image", "camera_info_size_mismatch", lambda g, s: _resized(g, s, 10, 10), answered=True),
    Case("image_640x8", "image", "camera_info_size_mismatch", lambda g, s: _resized(g, s, 8, 640), answered=True),
    Case("image_8x640", "image", "camera_info_size_mismatch", lambda g, s: _resized(g, s, 640, 8), answered=True),
    Case("image_mono8", "image", None,
         lambda g, s: _resized(g, s, g.rgb.shape[0], g.rgb.shape[1], "mono8"), answered=True),
    # ---------------------------------------------------------------- camera info
    Case("info_zero_k", "camera_info", "camera_info_k", lambda g, s: _info(g, s, K=np.zeros((3, 3)))),
    Case("info_nan_k", "camera_info", "camera_info_k", lambda g, s: _info(g, s, K=_K(g, at={(0, 0): np.nan}))),
    Case("info_negative_focal", "camera_info", "camera_info_k",
         lambda g, s: _info(g, s, K=_K(g, at={(0, 0): -g.K[0, 0]}))),
    Case("info_bad_last_row", "camera_info", "camera_info_k", lambda g, s: _info(g, s, K=_K(g, at={(2, 0): 0.5}))),
    Case("info_principal_1e20", "camera_info", "camera_info_k", lambda g, s: _info(g, s, K=_K(g, at={(0, 2): 1e20}))),
    Case("info_nan_d", "camera_info", "camera_info_d", lambda g, s: _info(g, s, D=[np.nan, 0, 0, 0, 0])),
    Case("info_inf_d", "camera_info", "camera_info_d", lambda g, s: _info(g, s, D=[0, np.inf, 0, 0, 0])),
    Case("info_d_2", "camera_info", "camera_info_d", lambda g, s: _info(g, s, D=[0.1, 0.01])),
    Case("info_rational_k4", "camera_info", "camera_info_d",
         lambda g, s: _info(g, s, D=[0.1, 0.01, 0, 0, 0, 0.2, 0, 0], model="rational_polynomial")),
    Case("info_d_100", "camera_info", "camera_info_d", lambda g, s: _info(g, s, D=np.full(100, 0.01))),
    Case("info_equidistant", "camera_info", "camera_info_d",
         lambda g, s: _info(g, s, D=[0.1, 0.01, 0.001, 0.0], model="equidistant")),
    Case("info_zero_size", "camera_info", "camera_info_size", lambda g, s: _info(g, s, size=(0, 0))),
    Case("info_negative_stamp", "camera_info", "camera_info_stamp", lambda g, s: _neg_stamp(g.info(s))),
    Case("info_d_4", "camera_info", "camera_info_d_padded", lambda g, s: _info(g, s, D=[0.0, 0.0, 0.0, 0.0])),
    Case("info_d_12_zeros", "camera_info", "camera_info_d_trimmed", lambda g, s: _info(g, s, D=np.zeros(12))),
    Case("info_d_empty", "camera_info", "camera_info_d_empty", lambda g, s: _info(g, s, D=[])),
    # ---------------------------------------------------------------- clouds
    Case("cloud_no_x", "cloud", "cloud_fields", lambda g, s: _cloud_field(g, s, 0, name="q")),
    Case("cloud_x_float64", "cloud", "cloud_fields", lambda g, s: _cloud_field(g, s, 0, datatype=F.FLOAT64)),
    Case("cloud_intensity_bad_type", "cloud", "cloud_fields", lambda g, s: _cloud_field(g, s, 3, datatype=0)),
    Case("cloud_point_step_10", "cloud", "cloud_fields",
         lambda g, s: _cloud(g, s, point_step=10, row_step=10 * len(g.points))),
    Case("cloud_big_endian", "cloud", "cloud_endian", lambda g, s: _cloud(g, s, is_bigendian=True)),
    Case("cloud_small_row_step", "cloud", "cloud_step", lambda g, s: _cloud(g, s, row_step=16 * len(g.points) - 1)),
    Case("cloud_truncated", "cloud", "cloud_truncated", lambda g, s: _cloud(g, s, data=bytes(160))),
    Case("cloud_negative_stamp", "cloud", "cloud_stamp", lambda g, s: _neg_stamp(g.cloud(s))),
    Case("cloud_2m_points", "cloud", "cloud_too_large", _huge_cloud),
    Case("cloud_data_not_multiple", "cloud", "cloud_data_long", lambda g, s: _data(g.cloud(s), 5)),
    Case("cloud_width_short", "cloud", "cloud_data_long",
         lambda g, s: _cloud(g, s, width=len(g.points) // 2, row_step=16 * (len(g.points) // 2))),
    Case("cloud_nan_points", "cloud", "clouds_with_nans", _nan_cloud),
)

CASE_BY_NAME: dict[str, Case] = {c.name: c for c in CASES}
