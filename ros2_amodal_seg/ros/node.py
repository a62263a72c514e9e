"""``amodal_seg`` lifecycle node: camera + LiDAR in, amodal instances, occlusion graph,
BEV grid, costmap, markers, overlay and diagnostics out.

The node is thin: callbacks only store raw messages in a latest-message cache
(:class:`~ros2_amodal_seg.runtime.sync.FrameSync`); one worker thread takes the newest
synchronised frame, converts it (``conversions``), runs
:class:`~ros2_amodal_seg.runtime.processor.FrameProcessor` and publishes.

Run::

    ros2 run ros2_amodal_seg amodal_seg_node --ros-args --params-file config/amodal_seg.yaml
    amodal_seg_node --ros-args -p device:=cpu -r /camera/image_raw:=/my/image   # from the venv

Lifecycle: the model is loaded on configure (and re-loaded on activate after a
deactivate), freed (incl. the CUDA cache) on deactivate / cleanup / shutdown. With
``autostart`` (default true) the node configures and activates itself.
"""
from __future__ import annotations

import queue
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from rosbags.serde import SerdeError

from ros2_amodal_seg.data.bag import get_typestore
from ros2_amodal_seg.errors import AmodalSegError, InvalidInputError
from ros2_amodal_seg.msg import AmodalInstanceArray, BevGrid, OcclusionGraph
from ros2_amodal_seg.ros import conversions as conv
from ros2_amodal_seg.ros.diagnostics import build_diagnostics, diagnostic_level
from ros2_amodal_seg.ros.markers import build_markers
from ros2_amodal_seg.runtime.overlay import instance_color, render_overlay
from ros2_amodal_seg.runtime.inputs import InputGate, InputLimits
from ros2_amodal_seg.runtime.inputs import counter_names as input_counter_names
from ros2_amodal_seg.runtime.params import PARAMS, check_transform, check_value
from ros2_amodal_seg.runtime.processor import (FrameInput, FrameProcessor, ProcessorConfig,
                                               fusion_config_from_params)
from ros2_amodal_seg.runtime.stats import EventCounters, LatencyStats, RateMeter, Throttle
from ros2_amodal_seg.runtime.sync import FrameSync, SyncConfig

try:  # always present on a robot; not installable in the pip-only dev environment
    import tf2_ros  # noqa: F401
    HAVE_TF2 = True
except ImportError:
    HAVE_TF2 = False

NODE_NAME = "amodal_seg"
#: parameters that change the predictor's thresholds at run time, with their types
THRESHOLDS: dict[str, type] = {"score_threshold": float, "max_instances": int, "nms_iou": float,
                               "final_nms_sigma": float}
TOPIC_IMAGE = "/camera/image_raw"
TOPIC_IMAGE_COMPRESSED = "/camera/image_raw/compressed"
TOPIC_CAMERA_INFO = "/camera/camera_info"
TOPIC_POINTS = "/lidar/points"

#: output topic name (in the node's namespace) -> message type.
OUTPUTS: dict[str, type] = {
    "~/instances": AmodalInstanceArray, "~/occlusion_graph": OcclusionGraph, "~/bev_grid": BevGrid,
    "~/occupancy": OccupancyGrid, "~/markers": MarkerArray, "~/overlay": Image, "~/instance_points": PointCloud2,
}

#: input topics by the key of their counters.
INPUTS: dict[str, str] = {"camera_info": TOPIC_CAMERA_INFO, "cloud": TOPIC_POINTS}

#: bad-input / event counters reported in diagnostics (every refusal kind of
#: :mod:`ros2_amodal_seg.runtime.inputs` included, so that a zero is reported too).
COUNTERS: tuple[str, ...] = input_counter_names() + (
    "camera_info_size_mismatch", "no_camera_info", "clouds_with_nans", "cloud_nan_points", "time_jumps",
    "processing_errors", "no_extrinsics", "tf_failures", "qos_incompatible", "messages_lost_image",
    "messages_lost_camera_info", "messages_lost_cloud", "frames_fused", "frames_2d")

_BAD_INPUT = ("camera_info_size_mismatch", "clouds_with_nans")


def _descriptor(spec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description + (f" (one of: {', '.join(spec.choices)})"
                                                             if spec.choices else ""),
                            read_only=spec.read_only)
    if spec.range is not None:
        lo, hi = spec.range
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


class AmodalSegNode(LifecycleNode):
    """The node (see the module docstring). ``kwargs`` go to ``LifecycleNode``
    (e.g. ``parameter_overrides`` in tests)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        for spec in PARAMS:
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            self.declare_parameter(spec.name, default, _descriptor(spec))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        self.counters = EventCounters(COUNTERS)
        self.latency = LatencyStats(window=300)
        self.rates = {k: RateMeter(5.0) for k in ("image", "camera_info", "cloud", "output")}
        self._throttle = Throttle(5.0)
        self.gate = InputGate(self.counters, self._warn, InputLimits(max_cloud_points=int(self._p("max_cloud_points"))))
        self.sync = FrameSync(config=self._sync_config())
        self._typestore = get_typestore()
        self._compressed = False
        self.processor: FrameProcessor | None = None
        self.extrinsics_source = "none"
        self._tf_buffer = None
        self._tf_listener = None
        self._pubs: dict[str, object] = {}
        self._subs: list = []
        self._worker: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._pub_queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._active = False
        self._activated_at = time.monotonic()
        self._bad_since_report = 0
        self._frames_in_since_report = 0
        self._frames_out_since_report = 0
        self._last_output: dict = {}
        self.frames_out = 0
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(float(self._p("diagnostics_period_s")), self._on_diagnostics_timer)
        if self._p("autostart"):
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ================================================================== parameters
    def _p(self, name: str):
        return self.get_parameter(name).value

    def _sync_config(self, values: dict | None = None) -> SyncConfig:
        g = (lambda n: values[n]) if values else self._p
        return SyncConfig(tolerance_s=float(g("sync_tolerance_s")), cloud_wait_s=float(g("sync_cloud_wait_s")),
                          max_frame_age_s=float(g("sync_max_frame_age_s")),
                          cloud_cache_size=int(g("sync_cloud_cache_size")), time_jump_s=float(g("sync_time_jump_s")))

    def _thresholds(self, values: dict | None = None) -> dict:
        """The :data:`THRESHOLDS` as typed keyword arguments (of ``values``, else the parameters)."""
        g = (lambda n: values[n]) if values else self._p
        return {name: kind(g(name)) for name, kind in THRESHOLDS.items()}

    def _processor_config(self) -> ProcessorConfig:
        return ProcessorConfig(checkpoint=str(self._p("checkpoint")), device=str(self._p("device")),
                               **self._thresholds(),
                               refine_masks=bool(self._p("refine_masks")), nms_method=str(self._p("nms_method")),
                               complete_hidden=bool(self._p("complete_hidden")),
                               completion_flip=bool(self._p("completion_flip")),
                               reclassify=bool(self._p("reclassify")),
                               base_frame=str(self._p("base_frame")), torch_threads=int(self._p("torch_threads")))

    def _fusion_config(self, values: dict | None = None):
        g = (lambda n: values[n]) if values else self._p
        xr, yr = list(g("bev_x_range")), list(g("bev_y_range"))
        return fusion_config_from_params(
            str(g("fusion_preset")), str(g("fusion_config")), x_range=xr if any(xr) else (),
            y_range=yr if any(yr) else (), resolution=float(g("bev_resolution")),
            inferred_value=int(g("inferred_value")), base_frame=str(g("base_frame")))

    def _current_values(self) -> dict:
        return {spec.name: self._p(spec.name) for spec in PARAMS}

    def _validate_parameters(self, params) -> SetParametersResult:
        """Refuse invalid values with a reason (ranges/read-only are also enforced by rclpy)."""
        values = self._current_values()
        try:
            for p in params:
                if p.name not in values:
                    continue
                v = p.value
                check_value(p.name, list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v)
                values[p.name] = v
            names = {p.name for p in params}
            if names & {"sync_tolerance_s", "sync_cloud_wait_s", "sync_max_frame_age_s", "sync_cloud_cache_size",
                        "sync_time_jump_s"}:
                self._sync_config(values)
            if names & {"fusion_preset", "fusion_config", "bev_x_range", "bev_y_range", "bev_resolution",
                        "inferred_value"}:
                self._fusion_config(values)
            if names & THRESHOLDS.keys():
                ProcessorConfig(**self._thresholds(values))
        except (AmodalSegError, ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        """Apply accepted run-time changes (thresholds, sync, BEV, transforms)."""
        names = {p.name for p in params}
        if names & {"sync_tolerance_s", "sync_cloud_wait_s", "sync_max_frame_age_s", "sync_cloud_cache_size",
                    "sync_time_jump_s"}:
            self.sync.set_config(self._sync_config())
        if "max_cloud_points" in names:
            self.gate.limits = InputLimits(max_cloud_points=int(self._p("max_cloud_points")))
        proc = self.processor
        if proc is None:
            return
        if names & THRESHOLDS.keys():
            t = self._thresholds()
            proc.set_thresholds(**t)
            self.get_logger().info("thresholds: " + ", ".join(f"{k} {v}" for k, v in t.items()))
        if names & {"fusion_preset", "fusion_config", "bev_x_range", "bev_y_range", "bev_resolution",
                    "inferred_value", "base_frame"}:
            proc.set_fusion_config(self._fusion_config())
            self.get_logger().info("fusion / BEV settings updated")

    # ================================================================== lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            pcfg = self._processor_config()
            fcfg = self._fusion_config()
            self.sync.set_config(self._sync_config())
            for name in ("T_camera_lidar", "T_base_camera"):
                check_transform(name, self._p(name))
            self.processor = FrameProcessor(config=pcfg, fusion_config=fcfg)
            dt = self.processor.load()
        except AmodalSegError as exc:
            log.error(f"configure failed: {exc}")
            self.processor = None
            return TransitionCallbackReturn.FAILURE
        log.info(f"model loaded on {self.processor.device} in {dt:.2f} s "
                 f"({pcfg.checkpoint or 'shipped checkpoint'})")
        try:
            log.info(f"warm-up frame: {self.processor.warmup():.2f} s")
        except AmodalSegError as exc:   # a warm-up problem is not fatal: real frames will tell
            log.warning(f"warm-up failed: {exc}")
        self._setup_extrinsics()
        self._create_publishers()
        self._create_subscriptions()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.processor is None:
            return TransitionCallbackReturn.FAILURE
        try:
            if not self.processor.loaded:
                dt = self.processor.load()
                self.get_logger().info(f"model re-loaded on {self.processor.device} in {dt:.2f} s")
        except AmodalSegError as exc:
            self.get_logger().error(f"activate failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.sync.reset("inactive")
        ret = super().on_activate(state)
        self._start_worker()
        self._activated_at = time.monotonic()
        self._active = True
        self.get_logger().info("active: waiting for images on "
                               f"{self._resolved(self._image_topic())}, clouds on {self._resolved(TOPIC_POINTS)}")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._stop_worker()
        self.sync.reset("inactive")
        if self.processor is not None:
            self.processor.unload()
            self.get_logger().info("deactivated: model freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        self._active = False
        self._stop_worker()
        if self.processor is not None:
            self.processor.unload()
            self.processor = None
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        for p in self._pubs.values():
            self.destroy_lifecycle_publisher(p)
        self._pubs = {}

    def close(self) -> None:
        """Stop the worker and free the model (before ``destroy_node``)."""
        self._teardown()

    # ================================================================== set-up
    def _image_topic(self) -> str:
        return TOPIC_IMAGE_COMPRESSED if self._p("use_compressed") else TOPIC_IMAGE

    def _resolved(self, topic: str) -> str:
        try:
            return self.resolve_topic_name(topic)
        except (AttributeError, RuntimeError):
            return topic

    def _input_qos(self) -> QoSProfile:
        rel = ReliabilityPolicy.BEST_EFFORT if self._p("qos_reliability") == "best_effort" \
            else ReliabilityPolicy.RELIABLE
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self._p("qos_depth")), reliability=rel,
                          durability=DurabilityPolicy.VOLATILE)

    def _create_subscriptions(self) -> None:
        """Raw (serialised) subscriptions: each message is decoded with ``rosbags`` into numpy
        views of its buffer (no copy of the pixels or points), checked, and only then kept."""
        qos = self._input_qos()
        self._compressed = bool(self._p("use_compressed"))
        img_type = CompressedImage if self._compressed else Image
        subs = (("image", img_type, self._image_topic(), self._on_image),
                ("camera_info", CameraInfo, TOPIC_CAMERA_INFO, self._on_camera_info),
                ("cloud", PointCloud2, TOPIC_POINTS, self._on_cloud))
        self._subs = []
        for key, mtype, topic, callback in subs:
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, t=topic: self._on_incompatible_qos("subscription", t, info),
                message_lost=lambda info, k=key, t=topic: self._on_message_lost(k, t, info))
            typename = f"sensor_msgs/msg/{mtype.__name__}"
            self._subs.append(self.create_subscription(
                mtype, topic, lambda raw, k=key, n=typename, cb=callback: self._decode(k, n, raw, cb), qos,
                event_callbacks=events, raw=True))

    def _decode(self, key: str, typename: str, raw: bytes, callback) -> None:
        self.rates[key].tick()
        if not self._active:
            return
        try:
            msg = self._typestore.deserialize_cdr(raw, typename)
        except SerdeError as exc:
            self._bad_since_report += 1
            self.gate.refuse(key, f"{key}_cdr", f"cannot decode the {typename} message: {exc}")
            return
        callback(msg)

    def _create_publishers(self) -> None:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        self._pubs = {}
        for topic, mtype in OUTPUTS.items():
            ev = PublisherEventCallbacks(
                incompatible_qos=lambda info, t=topic: self._on_incompatible_qos("publisher", t, info))
            self._pubs[topic[2:]] = self.create_lifecycle_publisher(mtype, topic, qos, event_callbacks=ev)

    def _on_message_lost(self, key: str, topic: str, info) -> None:
        """The middleware lost messages before our callback (a full history, a slow reader)."""
        n = self.counters.inc(f"messages_lost_{key}", int(info.total_count_change))
        self._warn(f"lost:{key}", f"{info.total_count_change} message(s) on {self._resolved(topic)} lost before "
                                  f"the callback ({n} in all): the node cannot keep up or qos_depth is too small")

    def _on_incompatible_qos(self, kind: str, topic: str, info) -> None:
        self.counters.inc("qos_incompatible")
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        hint = (" (inputs use best_effort by default; set qos_reliability or the publisher's QoS)"
                if kind == "subscription" else "")
        self.get_logger().warning(
            f"incompatible QoS on {kind} {self._resolved(topic)}: policy {policy} "
            f"({info.total_count} incompatible endpoint(s)){hint}")

    def _setup_extrinsics(self) -> None:
        src = self._p("extrinsics_source")
        if src == "auto":
            src = "tf" if HAVE_TF2 else "params"
        if src == "tf" and not HAVE_TF2:
            self.get_logger().warning("extrinsics_source=tf but tf2_ros is not importable: using parameters")
            src = "params"
        if src == "tf" and self._tf_buffer is None:
            import tf2_ros  # noqa: PLC0415

            self._tf_buffer = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        self.extrinsics_source = src
        have = [n for n in ("T_camera_lidar", "T_base_camera") if check_transform(n, self._p(n)) is not None]
        if src == "tf":
            self.get_logger().info("extrinsics from tf2 (camera <- lidar, base <- camera); "
                                   f"parameter fallback for: {have or 'none'}")
        else:
            self.get_logger().info(f"extrinsics from parameters (tf2_ros {'present' if HAVE_TF2 else 'absent'}); "
                                   f"set: {have or 'none'}")
            if len(have) < 2:
                self.get_logger().warning("T_camera_lidar / T_base_camera not both set: frames without them "
                                          "are fused partially (2-D only without T_base_camera)")

    def _lookup(self, target: str, source: str) -> np.ndarray | None:
        from rclpy.duration import Duration  # noqa: PLC0415
        from rclpy.time import Time  # noqa: PLC0415

        try:
            ts = self._tf_buffer.lookup_transform(target, source, Time(),
                                                  timeout=Duration(seconds=float(self._p("tf_timeout_s"))))
        except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types (Lookup/Extrapolation/...)
            self.counters.inc("tf_failures")
            self._warn("tf", f"tf2 lookup {target} <- {source} failed: {exc}")
            return None
        return conv.transform_to_matrix(ts.transform)

    def _extrinsics(self, camera_frame: str, lidar_frame: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        T_cl = check_transform("T_camera_lidar", self._p("T_camera_lidar"))
        T_bc = check_transform("T_base_camera", self._p("T_base_camera"))
        if self.extrinsics_source == "tf":
            tf_cl = self._lookup(camera_frame, lidar_frame) if lidar_frame else None
            tf_bc = self._lookup(str(self._p("base_frame")), camera_frame)
            T_cl = tf_cl if tf_cl is not None else T_cl
            T_bc = tf_bc if tf_bc is not None else T_bc
        return T_cl, T_bc

    # ================================================================== callbacks (never block)
    def _on_image(self, msg) -> None:
        self._frames_in_since_report += 1
        if not self.gate.image(msg, compressed=self._compressed):
            self._bad_since_report += 1
        elif self.sync.add_image(conv.time_to_ns(msg.header.stamp), msg):
            self._on_time_jump("image")

    def _on_camera_info(self, msg) -> None:
        intrinsics = self.gate.camera_info(msg)
        if intrinsics is None:
            self._bad_since_report += 1
        elif self.sync.add_camera_info(intrinsics.stamp_ns, intrinsics):
            self._on_time_jump("camera_info")

    def _on_cloud(self, msg) -> None:
        if not self.gate.cloud(msg):
            self._bad_since_report += 1
        elif self.sync.add_cloud(conv.time_to_ns(msg.header.stamp), msg):
            self._on_time_jump("cloud")

    def _on_time_jump(self, topic: str) -> None:
        self.counters.inc("time_jumps")
        self.get_logger().warning(f"time jumped backwards on {topic} (bag loop / sim reset): caches cleared")

    def _warn(self, key: str, text: str) -> None:
        if self._throttle.ready(key):
            self.get_logger().warning(text)

    def _bad(self, counter: str, text: str, n: int = 1) -> None:
        self.counters.inc(counter, n)
        if counter in _BAD_INPUT:
            self._bad_since_report += 1
        self._warn(counter, f"{text} [{counter}: {self.counters.get(counter)}]")

    # ================================================================== worker
    def _start_worker(self) -> None:
        """Two threads: the worker (convert + model + fusion) and the publisher (messages out),
        so that serialising frame k overlaps with inferring frame k+1."""
        self._stop.clear()
        self._pub_queue = queue.Queue(maxsize=1)
        self._worker = threading.Thread(target=self._run_worker, name="amodal_seg_worker", daemon=True)
        self._publisher = threading.Thread(target=self._run_publisher, name="amodal_seg_publisher", daemon=True)
        self._worker.start()
        self._publisher.start()

    def _stop_worker(self) -> None:
        self._stop.set()
        self.sync.wake()
        for attr in ("_worker", "_publisher"):
            t = getattr(self, attr, None)
            setattr(self, attr, None)
            if t is not None and t is not threading.current_thread():
                t.join(timeout=30.0)

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            frame = self.sync.wait_ready(0.1)
            if frame is None or self._stop.is_set():
                continue
            try:
                self._handle_frame(frame)
            except AmodalSegError as exc:
                self._bad("processing_errors", f"frame {frame.image_stamp_ns} skipped: {exc}")
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad frame
                self._bad("processing_errors", f"frame {frame.image_stamp_ns} failed unexpectedly: "
                                               f"{type(exc).__name__}: {exc}")

    def _run_publisher(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._pub_queue.get(timeout=0.1)
            except queue.Empty:
                continue
            receive_time, t_proc, inp, out = item
            try:
                t0 = time.monotonic()
                self._publish(inp, out)
                t_pub = time.monotonic()
                self.latency.add("publish_wait", 1e3 * (t0 - t_proc))
                self.latency.add("publish", 1e3 * (t_pub - t0))
                self.latency.add("end_to_end", 1e3 * (t_pub - receive_time))
                self.rates["output"].tick()
                self.frames_out += 1
                self._frames_out_since_report += 1
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad frame
                self._bad("processing_errors", f"frame {inp.stamp_ns} not published: {type(exc).__name__}: {exc}")

    def _convert_inputs(self, frame) -> FrameInput | None:
        """Raw messages -> FrameInput; counts and warns on bad input (None = skip the frame)."""
        msg = frame.image
        if self._compressed:
            try:
                rgb = conv.compressed_image_to_rgb(msg)
            except InvalidInputError as exc:
                self.gate.refuse("image", "image_decode", str(exc))
                return None
            if min(rgb.shape[:2]) < self.gate.limits.min_image_side:
                self.gate.refuse("image", "image_size", f"decoded image is {rgb.shape[1]}x{rgb.shape[0]}")
                return None
        else:
            rgb = conv.image_msg_to_rgb(msg)      # checked at receipt: cannot fail here
        H, W = rgb.shape[:2]
        camera_frame = str(self._p("camera_frame")) or msg.header.frame_id or "camera_optical_frame"
        K = D = None
        info = frame.camera_info               # the last *good* intrinsics (runtime.inputs.Intrinsics)
        if info is None:
            self.counters.inc("no_camera_info")
            self._warn("no_camera_info", f"no valid camera_info on {self._resolved(TOPIC_CAMERA_INFO)} yet: 2-D only")
        elif (info.height, info.width) != (H, W):
            self._bad("camera_info_size_mismatch",
                      f"camera_info is {info.width}x{info.height} but the image is {W}x{H}: frame fused 2-D only")
        else:
            K, D = info.K, info.D
            if self.gate.last_info_bad:
                self.counters.inc("camera_info_fallback")
        pts = None
        lidar_frame = ""
        if frame.cloud is not None:
            lidar_frame = str(self._p("lidar_frame")) or frame.cloud.header.frame_id
            try:
                pts, n_nan = conv.pointcloud2_to_xyzi(frame.cloud)
                if n_nan:
                    self.counters.inc("cloud_nan_points", n_nan)
                    self._bad("clouds_with_nans", f"cloud had {n_nan} non-finite point(s) (dropped)")
            except InvalidInputError as exc:     # checked at receipt: not expected
                self._bad("processing_errors", f"cloud ignored, frame segmented 2-D only: {exc}")
                pts = None
        T_cl, T_bc = self._extrinsics(camera_frame, lidar_frame)
        if T_bc is None or (pts is not None and T_cl is None):
            self.counters.inc("no_extrinsics")
            self._warn("no_extrinsics", "missing extrinsics (T_base_camera / T_camera_lidar): set the parameters "
                                        "or publish tf")
        return FrameInput(image_rgb=rgb, stamp_ns=frame.image_stamp_ns, camera_frame=camera_frame, K=K, D=D,
                          points_lidar=pts, T_camera_lidar=T_cl, T_base_camera=T_bc)

    def _handle_frame(self, frame) -> None:
        t_start = time.monotonic()
        self.latency.add("queue", 1e3 * (t_start - frame.receive_time))
        inp = self._convert_inputs(frame)
        if inp is None:
            return
        t_conv = time.monotonic()
        self.latency.add("convert_in", 1e3 * (t_conv - t_start))
        proc = self.processor
        if proc is None or not proc.loaded:
            return
        out = proc.process(inp)
        t_proc = time.monotonic()
        self.latency.add_many(out.timings_ms)
        self.counters.inc("frames_fused" if out.mode == "fused" else "frames_2d")
        for w in out.warnings:
            self._warn("fusion:" + w[:40], f"frame {inp.stamp_ns}: {w}")
        while not self._stop.is_set():   # hand over to the publisher thread (waits while it is busy)
            try:
                self._pub_queue.put((frame.receive_time, t_proc, inp, out), timeout=0.1)
                return
            except queue.Full:
                continue

    def _publish(self, inp: FrameInput, out) -> None:
        pubs = self._pubs
        if not pubs:
            return
        stamp, base = inp.stamp_ns, str(self._p("base_frame"))
        pubs["instances"].publish(conv.instance_array_to_msg(out.instances))
        if self._p("publish_graph"):
            pubs["occlusion_graph"].publish(conv.graph_to_msg(out.graph))
        if out.bev is not None:
            if self._p("publish_bev_grid"):
                pubs["bev_grid"].publish(conv.bev_to_msg(out.bev))
            if self._p("publish_occupancy"):
                pubs["occupancy"].publish(conv.occupancy_to_msg(out.occupancy, out.bev.resolution, out.bev.origin_xy,
                                                                stamp, out.bev.frame_id))
        if self._p("publish_markers"):
            pubs["markers"].publish(build_markers(out.instances, out.graph,
                                                  lifetime_s=float(self._p("marker_lifetime_s"))))
        if self._p("publish_instance_points") and len(out.instance_points):
            ids = np.asarray(out.instance_point_ids)
            colors = np.array([instance_color(int(i)) for i in range(int(ids.max()) + 1)], np.uint8)[ids] \
                if len(ids) else np.zeros((0, 3), np.uint8)
            pubs["instance_points"].publish(conv.xyz_rgb_to_pointcloud2(out.instance_points, colors, stamp, base,
                                                                        ids=ids))
        overlay = pubs["overlay"]
        if self._p("publish_overlay") and overlay.get_subscription_count() > 0:
            t0 = time.monotonic()
            img = render_overlay(inp.image_rgb, out.instances)
            overlay.publish(conv.rgb_to_image_msg(img, stamp, inp.camera_frame))
            self.latency.add("overlay", 1e3 * (time.monotonic() - t0))

    # ================================================================== diagnostics
    def _on_diagnostics_timer(self) -> None:
        now = time.monotonic()
        timeout = float(self._p("input_timeout_s"))
        if self._active:
            for key, topic in (("image", self._image_topic()), ("camera_info", TOPIC_CAMERA_INFO),
                               ("cloud", TOPIC_POINTS)):
                silent = min(self.rates[key].since_last(now), now - self._activated_at)
                if silent > timeout:
                    what = f"nothing for {silent:.1f} s"
                    self._warn(f"silent:{key}", f"no input on {self._resolved(topic)}: {what} "
                                                f"(check the topic name / remapping and QoS)")
        proc = self.processor
        level, message = diagnostic_level(
            active=self._active, model_loaded=bool(proc and proc.loaded),
            seconds_since_image=min(self.rates["image"].since_last(now), now - self._activated_at),
            input_timeout_s=timeout,
            frames_in=self._frames_in_since_report, frames_out=self._frames_out_since_report,
            recent_bad_input=self._bad_since_report)
        values = {
            "device": proc.device if proc else "unloaded", "active": self._active,
            "extrinsics_source": self.extrinsics_source,
            "image_rate_hz": self.rates["image"].rate(now), "camera_info_rate_hz": self.rates["camera_info"].rate(now),
            "cloud_rate_hz": self.rates["cloud"].rate(now), "output_rate_hz": self.rates["output"].rate(now),
            "images_received": self.rates["image"].total, "camera_infos_received": self.rates["camera_info"].total,
            "clouds_received": self.rates["cloud"].total, "frames_pending": self.sync.num_pending,
            "frames_processed": self.frames_out, "frames_paired": self.sync.paired,
            "frames_unpaired": self.sync.unpaired,
        }
        drops = dict(self.sync.drops)
        values.update({f"dropped_{k}": v for k, v in drops.items()})
        values["dropped_total"] = sum(drops.values())
        values.update(self.counters.snapshot())
        msg = build_diagnostics(self.get_clock().now().nanoseconds, self.get_name(), level, message, values,
                                self.latency.summary(), hardware_id=values["device"])
        self._diag_pub.publish(msg)
        self._bad_since_report = 0
        self._frames_in_since_report = 0
        self._frames_out_since_report = 0


def main(argv: list[str] | None = None) -> int:
    """``amodal_seg_node [--ros-args ...]``."""
    from rclpy.executors import ExternalShutdownException  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        node = AmodalSegNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

