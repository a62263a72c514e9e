"""``amodal_seg`` lifecycle node: camera + LiDAR (or a depth camera) in, amodal instances, occlusion
graph, BEV grid, costmap, markers, overlay and diagnostics out.

The node holds declarations and conversions only; the work is the ROS-free core's:

* callbacks decode each raw message (``rosbags``: numpy views, no copy), check it where it
  arrives (:class:`~ros2_amodal_seg.runtime.inputs.InputGate`) and hand it to the
  synchroniser (:class:`~ros2_amodal_seg.runtime.sync.FrameSync`); they never block;
* one worker thread takes the newest synchronised frame, assembles its arrays
  (:class:`~ros2_amodal_seg.runtime.frames.FrameAssembler`) and runs
  :class:`~ros2_amodal_seg.runtime.processor.FrameProcessor`;
* one publisher thread turns the result into messages (:mod:`.outputs`), so that
  serialising frame k overlaps with inferring frame k+1;
* parameters map onto the core's config dataclasses (:mod:`ros2_amodal_seg.runtime.params`);
  counters, warnings and ``/diagnostics`` values live in :class:`~ros2_amodal_seg.runtime.health.Health`;
  an input that brings nothing usable for ``input_timeout_s`` is diagnosed (:mod:`.doctor`).

Run::

    ros2 run ros2_amodal_seg amodal_seg_node --ros-args --params-file config/amodal_seg.yaml
    amodal_seg_node --ros-args -p device:=cpu -p inference.score_threshold:=0.3 -r /camera/image_raw:=/my/image

Lifecycle: the model is loaded on configure (and re-loaded on activate after a
deactivate), freed (incl. the CUDA cache) on deactivate / cleanup / shutdown. With
``autostart`` (default true) the node configures and activates itself.
"""
from __future__ import annotations

import queue
import sys
import threading
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from ros2_amodal_seg.errors import AmodalSegError
from ros2_amodal_seg.ros.diagnostics import build_diagnostics
from ros2_amodal_seg.ros.doctor import InputDoctor
from ros2_amodal_seg.ros.extrinsics import ExtrinsicsProvider
from ros2_amodal_seg.ros.outputs import OutputPublishers, OutputSettings
from ros2_amodal_seg.ros.sensors import TOPIC_CAMERA_INFO, SensorSubscriptions, incompatible_qos_warning
from ros2_amodal_seg.runtime import frames as frame_assembly
from ros2_amodal_seg.runtime import params as P
from ros2_amodal_seg.runtime.frames import FrameAssembler
from ros2_amodal_seg.runtime.doctor import summary as diagnosis_summary
from ros2_amodal_seg.runtime.health import WARN, Health
from ros2_amodal_seg.runtime.inputs import InputGate, counter_names
from ros2_amodal_seg.runtime.memory import set_mmap_threshold
from ros2_amodal_seg.runtime.processor import FrameProcessor, ProcessorConfig
from ros2_amodal_seg.runtime.sync import FrameSync

NODE_NAME = "amodal_seg"

#: counters reported in /diagnostics even while zero.
COUNTERS: tuple[str, ...] = counter_names() + frame_assembly.COUNTERS + (
    "time_jumps", "processing_errors", "tf_failures", "qos_incompatible", "messages_lost_image",
    "messages_lost_camera_info", "messages_lost_cloud", "messages_lost_depth", "frames_fused", "frames_2d")


def _descriptor(spec: P.ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(description=spec.description + (f" (one of: {', '.join(spec.choices)})"
                                                             if spec.choices else ""), read_only=spec.read_only)
    if spec.range is not None and not isinstance(spec.default, bool):
        lo, hi = spec.range
        if isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


class AmodalSegNode(LifecycleNode):
    """The node (see the module docstring). ``kwargs`` go to ``LifecycleNode``
    (e.g. ``parameter_overrides`` in tests)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_parameter("checkpoint", "", _descriptor(P.PARAM_BY_NAME["checkpoint"]))
        defaults = P.inference_defaults(str(self._p("checkpoint")))
        for spec in P.PARAMS:
            if spec.name != "checkpoint":
                d = defaults.get(spec.name, spec.default)
                self.declare_parameter(spec.name, list(d) if isinstance(d, tuple) else d, _descriptor(spec))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.health = Health(COUNTERS, self.get_logger().warning)
        self.get_logger().info(set_mmap_threshold(P.memory_config(self._values())))
        self.gate = InputGate(self.health.counters, self.health.warn, P.input_limits(self._values()))
        self.sync = FrameSync(config=P.sync_config(self._values()))
        self.outputs = OutputSettings.from_values(self._values())
        self.processor: FrameProcessor | None = None
        self.extrinsics: ExtrinsicsProvider | None = None
        self._assembler: FrameAssembler | None = None
        self._pubs: OutputPublishers | None = None
        self._sensors: SensorSubscriptions | None = None
        self._doctor: InputDoctor | None = None
        self._threads: list[threading.Thread] = []
        self._pub_queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._active = False
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(float(self._p("diagnostics_period_s")), self._on_diagnostics_timer)
        if self._p("autostart") and self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # ================================================================== parameters
    def _p(self, name: str):
        return self.get_parameter(name).value

    def _values(self) -> dict:
        return {spec.name: self._p(spec.name) for spec in P.PARAMS}

    def _validate_parameters(self, params) -> SetParametersResult:
        """Refuse an invalid change with its reason: every config it touches is built and checked."""
        values = self._values()
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            P.changed_configs(values, [p.name for p in params])
        except (AmodalSegError, ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        """Apply accepted run-time changes: each touched config is rebuilt and swapped in at once."""
        names = [p.name for p in params]
        configs = P.changed_configs(self._values(), names)
        proc = self.processor
        if "sync" in configs:
            self.sync.set_config(configs["sync"])
        if "inputs" in configs:
            self.gate.limits = configs["inputs"]
        if "geometry" in configs and self._assembler is not None:
            self._assembler.geometry = configs["geometry"]
        if "outputs" in P.groups_of(names):
            self.outputs = OutputSettings.from_values(self._values())
        if proc is not None and "inference" in configs:
            proc.set_inference_config(configs["inference"])
            self.get_logger().info("inference settings: " + ", ".join(f"{n} {self._p(n)}" for n in names
                                                                       if n.startswith("inference.")))
        if proc is not None and "fusion" in configs:
            proc.set_fusion_config(configs["fusion"])
            self.get_logger().info("fusion / BEV settings updated")

    # ================================================================== lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        v = self._values()
        try:
            pcfg = ProcessorConfig(checkpoint=str(v["checkpoint"]), device=str(v["device"]),
                                   torch_threads=int(v["torch_threads"]), base_frame=str(v["base_frame"]),
                                   inference=P.inference_config(v))
            self.sync.set_config(P.sync_config(v))
            for name in ("T_camera_lidar", "T_base_camera"):
                P.check_transform(name, v[name])
            self.processor = FrameProcessor(config=pcfg, fusion_config=P.fusion_config(v))
            dt = self.processor.load()
        except AmodalSegError as exc:
            log.error(f"configure failed: {exc}")
            self.processor = None
            return TransitionCallbackReturn.FAILURE
        log.info(f"model loaded on {self.processor.device} in {dt:.2f} s ({pcfg.checkpoint or 'shipped checkpoint'})")
        try:
            log.info(f"warm-up frame: {self.processor.warmup():.2f} s")
        except AmodalSegError as exc:   # a warm-up problem is not fatal: real frames will tell
            log.warning(f"warm-up failed: {exc}")
        self.extrinsics = ExtrinsicsProvider(self, self.health)
        self._assembler = FrameAssembler(self.health, self.gate, self.extrinsics, P.geometry_config(v))
        self._pubs = OutputPublishers(self, lambda t, info: incompatible_qos_warning(
            self.health, log, "publisher", self._resolved(t), info))
        self._sensors = SensorSubscriptions(self, self.gate, self.sync, self.health)
        self._doctor = InputDoctor(self, self._sensors, self.health, self.gate, self.sync)
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.processor is None:
            return TransitionCallbackReturn.FAILURE
        try:
            if not self.processor.loaded:
                self.get_logger().info(f"model re-loaded on {self.processor.device} in {self.processor.load():.2f} s")
        except AmodalSegError as exc:
            self.get_logger().error(f"activate failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.sync.reset("inactive")
        ret = super().on_activate(state)
        self._start_threads()
        self.health.active_since = time.monotonic()
        self._active = self._sensors.active = True
        self.get_logger().info("active: waiting for " + ", ".join(f"{k} on {self._resolved(t)}"
                                                                  for k, _, t in self._sensors.inputs))
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._set_inactive()
        self._stop_threads()
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

    def _set_inactive(self) -> None:
        self._active = False
        if self._sensors is not None:
            self._sensors.active = False

    def _teardown(self) -> None:
        self._set_inactive()
        self._stop_threads()
        if self.processor is not None:
            self.processor.unload()
            self.processor = None
        if self._sensors is not None:
            self._sensors.destroy()
            self._sensors = self._doctor = None
        if self._pubs is not None:
            self._pubs.destroy()
            self._pubs = None

    def close(self) -> None:
        """Stop the threads and free the model (before ``destroy_node``)."""
        self._teardown()

    def _resolved(self, topic: str) -> str:
        try:
            return self.resolve_topic_name(topic)
        except (AttributeError, RuntimeError):
            return topic

    # ================================================================== worker and publisher threads
    def _start_threads(self) -> None:
        self._stop.clear()
        self._pub_queue = queue.Queue(maxsize=1)
        self._threads = [threading.Thread(target=f, name=n, daemon=True) for f, n in
                         ((self._run_worker, "amodal_seg_worker"), (self._run_publisher, "amodal_seg_publisher"))]
        for t in self._threads:
            t.start()

    def _stop_threads(self) -> None:
        self._stop.set()
        self.sync.wake()
        threads, self._threads = self._threads, []
        for t in threads:
            if t is not threading.current_thread():
                t.join(timeout=30.0)

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            frame = self.sync.wait_ready(0.1)
            if frame is None or self._stop.is_set():
                continue
            try:
                self._handle_frame(frame)
            except AmodalSegError as exc:
                self.health.bad("processing_errors", f"frame {frame.image_stamp_ns} skipped: {exc}")
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad frame
                self.health.bad("processing_errors", f"frame {frame.image_stamp_ns} failed unexpectedly: "
                                                     f"{type(exc).__name__}: {exc}")

    def _handle_frame(self, frame) -> None:
        t_start = time.monotonic()
        lat = self.health.latency
        lat.add("queue", 1e3 * (t_start - frame.receive_time))
        inp = self._assembler(frame, compressed=self._sensors.compressed, camera_frame=str(self._p("camera_frame")),
                              lidar_frame=str(self._p("lidar_frame")),
                              camera_info_topic=self._resolved(TOPIC_CAMERA_INFO))
        proc = self.processor
        if inp is None or proc is None or not proc.loaded:
            return
        t_conv = time.monotonic()
        lat.add("convert_in", 1e3 * (t_conv - t_start))
        out = proc.process(inp)
        t_proc = time.monotonic()
        lat.add_many(out.timings_ms)
        self.health.counters.inc("frames_fused" if out.mode == "fused" else "frames_2d")
        for w in out.warnings:
            self.health.warn("fusion:" + w[:40], f"frame {inp.stamp_ns}: {w}")
        while not self._stop.is_set():   # hand over to the publisher thread (waits while it is busy)
            try:
                self._pub_queue.put((frame.receive_time, t_proc, inp, out), timeout=0.1)
                return
            except queue.Full:
                continue

    def _run_publisher(self) -> None:
        lat = self.health.latency
        while not self._stop.is_set():
            try:
                receive_time, t_proc, inp, out = self._pub_queue.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                t0 = time.monotonic()
                overlay_ms = self._pubs.publish(inp, out, self.outputs) if self._pubs is not None else None
                t_pub = time.monotonic()
                lat.add_many({"publish_wait": 1e3 * (t0 - t_proc), "publish": 1e3 * (t_pub - t0),
                              "end_to_end": 1e3 * (t_pub - receive_time)})
                if overlay_ms is not None:
                    lat.add("overlay", overlay_ms)
                self.health.frame_out()
            except Exception as exc:  # noqa: BLE001 - the node must survive any single bad frame
                self.health.bad("processing_errors", f"frame {inp.stamp_ns} not published: {type(exc).__name__}: {exc}")

    # ================================================================== diagnostics
    def _on_diagnostics_timer(self) -> None:
        now, timeout, proc = time.monotonic(), float(self._p("input_timeout_s")), self.processor
        src = self.extrinsics.source if self.extrinsics else "none"
        findings = self._doctor(timeout_s=timeout, extrinsics_source=src, now=now) if self._active else []
        rep = self.health.report(active=self._active, model_loaded=bool(proc and proc.loaded), input_timeout_s=timeout,
                                 sync=self.sync, now=now, values={
                                     "device": proc.device if proc else "unloaded", "active": self._active,
                                     "extrinsics_source": src, "geometry_source": self._p("geometry_source"),
                                     "diagnosis": diagnosis_summary(findings)})
        if findings and rep.level <= WARN:       # say why, not only that: runtime.doctor
            rep.level, rep.message = WARN, findings[0].message
        self._diag_pub.publish(build_diagnostics(self.get_clock().now().nanoseconds, self.get_name(), rep.level,
                                                 rep.message, rep.values, rep.latency,
                                                 hardware_id=str(rep.values["device"])))


def main(argv: list[str] | None = None) -> int:
    """``amodal_seg_node [--ros-args ...]``."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: PLC0415

    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        node = AmodalSegNode()
        # one thread: the callbacks only decode, check and store (the model runs in the worker
        # thread); rclpy's MultiThreadedExecutor held the GIL for up to 2 s at a time at 30 Hz input
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
