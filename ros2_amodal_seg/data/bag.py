"""rosbag2 writing/reading helpers built on ``rosbags`` (pure Python, no rclpy).

A sensor bag written here holds, with CDR serialization and ROS 2 Jazzy/Kilted type
names and definitions:

* ``/camera/image_raw``   ``sensor_msgs/msg/Image`` (rgb8, frame ``camera_optical_frame``)
* ``/camera/camera_info`` ``sensor_msgs/msg/CameraInfo`` (plumb_bob, K, R, P)
* ``/lidar/points``       ``sensor_msgs/msg/PointCloud2`` (x y z intensity float32, frame ``lidar``)
* ``/camera/depth/image_raw`` ``sensor_msgs/msg/Image`` (optional, ``--depth``): depth aligned to the
  colour camera (REP 118: ``16UC1`` millimetres or ``32FC1`` metres, 0 / NaN = no return), stamped
  and framed like the colour image, from the renderer's exact depth with a depth camera's errors
  (:mod:`ros2_amodal_seg.world.depth_camera`)
* ``/tf_static``          ``tf2_msgs/msg/TFMessage`` (base_link -> camera_optical_frame -> lidar)

Offered QoS profiles are stored in the metadata: best-effort / volatile for the
sensors (sensor-data profile), reliable / transient-local depth 1 for ``/tf_static``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ros2_amodal_seg.errors import DatasetError, InvalidInputError
from ros2_amodal_seg.transforms import rotation_to_quaternion

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_INFO = "/camera/camera_info"
TOPIC_POINTS = "/lidar/points"
TOPIC_DEPTH = "/camera/depth/image_raw"
TOPIC_TF_STATIC = "/tf_static"
FRAME_BASE = "base_link"
FRAME_CAMERA = "camera_optical_frame"
FRAME_LIDAR = "lidar"

#: sensor_msgs/PointField datatype FLOAT32.
POINTFIELD_FLOAT32 = 7


@dataclass(frozen=True)
class BagTimingConfig:
    """How frames are stamped in a bag (a robot driving past one scene per frame).

    Attributes:
        start_ns: stamp of the first camera frame [ns since epoch].
        camera_period_ns: camera period [ns] (10 Hz: every image gets its own sweep).
        lidar_offset_ns: nominal LiDAR stamp after the paired image [ns].
        camera_jitter_ns, lidar_jitter_ns: uniform stamp jitter half-widths [ns].
        camera_latency_ns, lidar_latency_ns: receive (bag log time) delay after the stamp [ns].
    """

    start_ns: int = 1_700_000_000_000_000_000
    camera_period_ns: int = 100_000_000
    lidar_offset_ns: int = 20_000_000
    camera_jitter_ns: int = 2_000_000
    lidar_jitter_ns: int = 3_000_000
    camera_latency_ns: int = 5_000_000
    lidar_latency_ns: int = 8_000_000


def frame_stamps(n: int, seed: int, timing: BagTimingConfig = BagTimingConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Camera and LiDAR header stamps of ``n`` frames (deterministic for ``seed``).

    Returns:
        ``([n] int64 camera stamps [ns], [n] int64 lidar stamps [ns])``.
    """
    rng = np.random.default_rng([int(seed), 99])
    k = np.arange(n, dtype=np.int64)
    nominal = timing.start_ns + k * timing.camera_period_ns
    cam = nominal + rng.integers(-timing.camera_jitter_ns, timing.camera_jitter_ns + 1, n)
    lid = nominal + timing.lidar_offset_ns + rng.integers(-timing.lidar_jitter_ns, timing.lidar_jitter_ns + 1, n)
    return cam.astype(np.int64), lid.astype(np.int64)


def get_typestore():
    """The rosbags typestore of ROS 2 Jazzy (type names/definitions identical in Kilted)."""
    from rosbags.typesys import Stores, get_typestore as _get

    return _get(Stores.ROS2_JAZZY)


def sensor_qos():
    """rosbags ``Qos`` of the sensor-data profile (best effort, volatile, keep last 5)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    inf = QosTime(2147483647, 4294967295)
    return Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE, inf, inf,
               QosLiveliness.AUTOMATIC, inf, False)


def tf_static_qos():
    """rosbags ``Qos`` of ``/tf_static`` (reliable, transient local, keep last 1)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    inf = QosTime(2147483647, 4294967295)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, inf, inf,
               QosLiveliness.AUTOMATIC, inf, False)


class MessageFactory:
    """Builds rosbags message objects for our topics."""

    def __init__(self, typestore=None) -> None:
        self.ts = typestore or get_typestore()
        self.T = self.ts.types

    def time(self, stamp_ns: int):
        return self.T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000),
                                                     nanosec=int(stamp_ns % 1_000_000_000))

    def header(self, stamp_ns: int, frame_id: str):
        return self.T["std_msgs/msg/Header"](stamp=self.time(stamp_ns), frame_id=frame_id)

    def image(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = FRAME_CAMERA):
        """``rgb``: ``[H, W, 3]`` uint8 RGB -> sensor_msgs/Image rgb8."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InvalidInputError(f"image must be [H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
        H, W = rgb.shape[:2]
        return self.T["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, frame_id), height=H, width=W, encoding="rgb8", is_bigendian=0,
            step=3 * W, data=np.ascontiguousarray(rgb).reshape(-1).view(np.uint8).copy())

    def depth_image(self, depth_mm: np.ndarray, stamp_ns: int, frame_id: str = FRAME_CAMERA,
                    encoding: str = "16UC1"):
        """``depth_mm``: ``[H, W]`` uint16 depth [mm] (0 = no return) -> sensor_msgs/Image ``16UC1``, or
        ``32FC1`` in metres with NaN for no return (REP 118)."""
        if depth_mm.ndim != 2 or depth_mm.dtype != np.uint16:
            raise InvalidInputError(f"depth must be [H, W] uint16 millimetres, got {depth_mm.shape} {depth_mm.dtype}")
        if encoding == "16UC1":
            arr = np.ascontiguousarray(depth_mm, dtype="<u2")
        elif encoding == "32FC1":
            from ros2_amodal_seg.world.depth_camera import depth_image_m

            arr = np.ascontiguousarray(depth_image_m(depth_mm), dtype="<f4")
        else:
            raise InvalidInputError(f"depth encoding must be 16UC1 or 32FC1, got {encoding!r}")
        H, W = arr.shape
        return self.T["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, frame_id), height=H, width=W, encoding=encoding, is_bigendian=0,
            step=arr.itemsize * W, data=arr.reshape(-1).view(np.uint8).copy())

    def camera_info(self, K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str = FRAME_CAMERA):
        """``K``: ``[3, 3]`` float64 intrinsics [px] -> sensor_msgs/CameraInfo (plumb_bob, zero D)."""
        K = np.asarray(K, dtype=np.float64)
        P = np.zeros((3, 4))
        P[:, :3] = K
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                         do_rectify=False)
        return self.T["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id), height=int(height), width=int(width),
            distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1).copy(), r=np.eye(3).reshape(-1),
            p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)

    def pointcloud(self, points: np.ndarray, stamp_ns: int, frame_id: str = FRAME_LIDAR):
        """``points``: ``[N, 4]`` float32 x y z [m] intensity, in ``frame_id`` -> PointCloud2."""
        pts = np.ascontiguousarray(points, dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 4:
            raise InvalidInputError(f"points must be [N, 4] float32, got {pts.shape}")
        PF = self.T["sensor_msgs/msg/PointField"]
        fields = [PF(name=n, offset=4 * i, datatype=POINTFIELD_FLOAT32, count=1)
                  for i, n in enumerate(("x", "y", "z", "intensity"))]
        return self.T["sensor_msgs/msg/PointCloud2"](
            header=self.header(stamp_ns, frame_id), height=1, width=len(pts), fields=fields,
            is_bigendian=False, point_step=16, row_step=16 * len(pts),
            data=pts.reshape(-1).view(np.uint8).copy(), is_dense=True)

    def transform(self, T: np.ndarray, parent: str, child: str, stamp_ns: int):
        """``T``: ``[4, 4]`` float64 ``T_parent_child`` -> geometry_msgs/TransformStamped."""
        q = rotation_to_quaternion(T[:3, :3])
        t = T[:3, 3]
        return self.T["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, parent), child_frame_id=child,
            transform=self.T["geometry_msgs/msg/Transform"](
                translation=self.T["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
                rotation=self.T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                                w=float(q[3]))))

    def tf_static(self, T_base_camera: np.ndarray, T_camera_lidar: np.ndarray, stamp_ns: int):
        """TFMessage with base_link -> camera_optical_frame and camera_optical_frame -> lidar."""
        return self.T["tf2_msgs/msg/TFMessage"](transforms=[
            self.transform(T_base_camera, FRAME_BASE, FRAME_CAMERA, stamp_ns),
            self.transform(T_camera_lidar, FRAME_CAMERA, FRAME_LIDAR, stamp_ns)])


class SensorBagWriter:
    """Writes a camera + LiDAR + /tf_static rosbag2 (mcap or sqlite3) with rosbags.

    Use as a context manager; the bag folder must not exist yet.

    Args:
        depth: also write ``/camera/depth/image_raw`` (``write_frame``'s ``depth_mm``), in
            ``depth_encoding`` (``16UC1`` or ``32FC1``).
    """

    def __init__(self, path: str | Path, *, storage: str = "mcap",
                 timing: BagTimingConfig = BagTimingConfig(), depth: bool = False,
                 depth_encoding: str = "16UC1") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

        if storage not in ("mcap", "sqlite3"):
            raise InvalidInputError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise DatasetError(f"bag folder {self.path} already exists; remove it or choose another --out")
        self.timing = timing
        self.fac = MessageFactory()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._w = Writer(self.path, version=9, storage_plugin=plugin)
        try:
            self._w.open()
        except (OSError, WriterError) as exc:
            raise DatasetError(f"cannot create bag {self.path}: {exc}") from exc
        ts = self.fac.ts
        sq, tq = sensor_qos(), tf_static_qos()
        self.c_tf = self._w.add_connection(TOPIC_TF_STATIC, "tf2_msgs/msg/TFMessage", typestore=ts,
                                           offered_qos_profiles=[tq])
        self.c_img = self._w.add_connection(TOPIC_IMAGE, "sensor_msgs/msg/Image", typestore=ts,
                                            offered_qos_profiles=[sq])
        self.c_info = self._w.add_connection(TOPIC_INFO, "sensor_msgs/msg/CameraInfo", typestore=ts,
                                             offered_qos_profiles=[sq])
        self.c_pts = self._w.add_connection(TOPIC_POINTS, "sensor_msgs/msg/PointCloud2", typestore=ts,
                                            offered_qos_profiles=[sq])
        self.depth_encoding = depth_encoding
        self.c_depth = (self._w.add_connection(TOPIC_DEPTH, "sensor_msgs/msg/Image", typestore=ts,
                                               offered_qos_profiles=[sq]) if depth else None)
        self._tf_written = False
        self.counts = {TOPIC_TF_STATIC: 0, TOPIC_IMAGE: 0, TOPIC_INFO: 0, TOPIC_POINTS: 0}
        if depth:
            self.counts[TOPIC_DEPTH] = 0

    def __enter__(self) -> "SensorBagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _write(self, conn, topic: str, t_ns: int, msg, msgtype: str) -> None:
        self._w.write(conn, int(t_ns), self.fac.ts.serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    def write_tf_static(self, T_base_camera: np.ndarray, T_camera_lidar: np.ndarray, stamp_ns: int) -> None:
        """The static transforms (written once, before the first frame)."""
        self._write(self.c_tf, TOPIC_TF_STATIC, stamp_ns,
                    self.fac.tf_static(T_base_camera, T_camera_lidar, stamp_ns), "tf2_msgs/msg/TFMessage")
        self._tf_written = True

    def write_frame(self, frame, cam_stamp_ns: int, lidar_stamp_ns: int | None,
                    depth_mm: np.ndarray | None = None) -> None:
        """One image + camera_info at ``cam_stamp_ns``, (if given) its sweep at ``lidar_stamp_ns`` and
        (if given, ``[H, W]`` uint16 [mm]) its depth image, stamped like the image (aligned depth)."""
        if not self._tf_written:
            self.write_tf_static(frame.T_base_camera, frame.T_camera_lidar, cam_stamp_ns - 10_000_000)
        H, W = frame.rgb.shape[:2]
        t_recv = cam_stamp_ns + self.timing.camera_latency_ns
        self._write(self.c_img, TOPIC_IMAGE, t_recv, self.fac.image(frame.rgb, cam_stamp_ns),
                    "sensor_msgs/msg/Image")
        self._write(self.c_info, TOPIC_INFO, t_recv, self.fac.camera_info(frame.K, W, H, cam_stamp_ns),
                    "sensor_msgs/msg/CameraInfo")
        if depth_mm is not None:
            if self.c_depth is None:
                raise InvalidInputError("this bag was opened without depth=True")
            self._write(self.c_depth, TOPIC_DEPTH, t_recv,
                        self.fac.depth_image(depth_mm, cam_stamp_ns, encoding=self.depth_encoding),
                        "sensor_msgs/msg/Image")
        if lidar_stamp_ns is not None:
            self._write(self.c_pts, TOPIC_POINTS, lidar_stamp_ns + self.timing.lidar_latency_ns,
                        self.fac.pointcloud(frame.lidar_points, lidar_stamp_ns), "sensor_msgs/msg/PointCloud2")

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None


@dataclass
class BagMessage:
    """One message read back: topic, type name, log time [ns], deserialized message."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: object


def _open_reader(path: str | Path):
    """An opened rosbags ``Reader`` (the caller closes it); DatasetError when it cannot be opened."""
    from rosbags.rosbag2 import Reader, ReaderError

    try:
        reader = Reader(Path(path))
        reader.open()
    except (ReaderError, OSError) as exc:
        raise DatasetError(f"cannot open bag {path}: {exc}") from exc
    return reader


def read_bag(path: str | Path, topics: list[str] | None = None, typestore=None) -> Iterator[BagMessage]:
    """Iterate the messages of a rosbag2 (mcap or sqlite3) in log-time order.

    Message types not in the typestore are registered from the definitions stored in
    the bag (rosbags does this when given the connection's msgdef).

    Raises:
        DatasetError: the bag cannot be opened.
    """
    from rosbags.typesys import get_types_from_msg

    ts = typestore or get_typestore()
    reader = _open_reader(path)
    try:
        for c in reader.connections:
            if c.msgtype not in ts.types and c.msgdef and c.msgdef.data:
                ts.register(get_types_from_msg(c.msgdef.data, c.msgtype))
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t, raw in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, int(t), ts.deserialize_cdr(raw, conn.msgtype))
    finally:
        reader.close()


def bag_topics(path: str | Path) -> dict[str, dict]:
    """``{topic: {"type", "count", "qos": [rosbags Qos]}}`` from a bag's metadata."""
    reader = _open_reader(path)
    try:
        out: dict[str, dict] = {}
        for c in reader.connections:
            e = out.setdefault(c.topic, {"type": c.msgtype, "count": 0, "qos": []})
            e["count"] += c.msgcount
            e["qos"].extend(getattr(c.ext, "offered_qos_profiles", []) or [])
        return out
    finally:
        reader.close()


def pointcloud2_to_array(msg) -> np.ndarray:
    """A PointCloud2 with float32 x y z intensity fields -> ``[N, 4]`` float32."""
    names = [f.name for f in msg.fields]
    if names[:4] != ["x", "y", "z", "intensity"] or msg.point_step != 16:
        raise InvalidInputError(f"expected fields x y z intensity with point_step 16, got {names}, "
                                f"point_step {msg.point_step}")
    return np.frombuffer(bytes(msg.data), dtype=np.float32).reshape(-1, 4)
