"""``amodal-seg doctor``: listen to the node's input topics for a few seconds and say why it would get
nothing (or that all is well), for a running robot, a bag being played, or a bag it plays itself
(``--bag``).

It subscribes exactly as the node does (:class:`~ros2_amodal_seg.ros.sensors.SensorSubscriptions`
with the node's parameters: topics, remaps, QoS, ``geometry_source``), checks every message with the
node's receipt checks, pairs images with clouds / depth images with the node's synchroniser,
assembles the frames (intrinsics, depth back-projection, extrinsics) without running the model,
and diagnoses the result with the node's rules (:func:`ros2_amodal_seg.runtime.doctor.diagnose`).

Exit status: 0 when nothing is wrong, 1 when it found a problem (or on an error).
"""
from __future__ import annotations

import argparse
import json
import textwrap
import threading
import time
from pathlib import Path

from ros2_amodal_seg.errors import ConfigError

#: topics the node subscribes to, by the option that remaps each.
REMAP_OPTIONS: dict[str, str] = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                                 "points": "/lidar/points", "depth": "/camera/depth/image_raw"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="listen to the node's input topics and say why it would get nothing",
        description=textwrap.fill(
            "Listen to the amodal_seg node's input topics for --duration seconds, exactly as the node subscribes "
            "(topics, remaps, QoS and 3-D source from its parameters), and print a diagnosis: no publisher on a "
            "topic (with the topics that carry its type); publishers with incompatible QoS (named, with the "
            "policy); a type mismatch; publishers that send nothing; an unsupported encoding (named) or another "
            "refusal of the node's input checks; no usable CameraInfo; no cloud / depth image within "
            "sync_tolerance_s of the images (with the measured stamp offset); missing extrinsics (T_base_camera, "
            "T_camera_lidar from the parameters or tf2).", 100) + "\n\n" + (
            "Run it next to a robot's drivers or a bag being played (or give --bag), with the node's parameters "
            "file, e.g.\n"
            "  amodal-seg doctor --params-file config/amodal_seg.yaml --image /front/image_raw --points /velodyne_points\n"
            "  amodal-seg doctor -p geometry_source:=depth --depth /camera/aligned_depth_to_color/image_raw\n"
            "It uses this shell's ROS environment (ROS_DOMAIN_ID, RMW, discovery range). "
            "Exit status 0: no problem found; 1: problems found."))
    p.add_argument("--duration", type=float, default=5.0, help="seconds to listen (default 5)")
    p.add_argument("--discovery", type=float, default=2.0,
                   help="before listening, wait up to this many seconds for DDS discovery (until every input has a "
                        "publisher matched; default 2)")
    p.add_argument("--params-file", type=Path, default=None,
                   help="the node's parameters file (config/amodal_seg.yaml layout; its '/**', 'amodal_seg' or "
                        "'/amodal_seg' section): topics' QoS, geometry_source, sync tolerance, extrinsics")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="override one node parameter (repeatable), e.g. -p qos_reliability:=reliable")
    for opt, topic in REMAP_OPTIONS.items():
        p.add_argument(f"--{opt.replace('_', '-')}", default=None, metavar="TOPIC",
                       help=f"the topic the node's {topic} is remapped to")
    p.add_argument("-r", "--remap", action="append", default=[], metavar="FROM:=TO",
                   help="any other remap, as the node's --ros-args -r (repeatable)")
    p.add_argument("--bag", type=Path, default=None,
                   help="play this rosbag2 (its image, camera_info, LiDAR / depth topics with their recorded QoS) "
                        "while listening, instead of listening to a running robot")
    p.add_argument("--rate", type=float, default=1.0, help="--bag: playback speed factor")
    p.add_argument("--node-name", default="amodal_seg", help="the node's name (selects its section of the params file)")
    p.add_argument("--json", type=Path, default=None, help="also write the findings and per-topic counts as JSON")
    p.set_defaults(func=_run)


def _parse_value(text: str):
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse parameter value {text!r}: {exc}") from exc


def node_parameters(params_file: Path | None, overrides: list[str], node_name: str = "amodal_seg") -> dict:
    """The node's non-inference parameter values: defaults, then the params file's sections for every
    node (``/**``) and for ``node_name``, then ``NAME:=VALUE`` overrides (each checked).

    Raises:
        ConfigError: unreadable file, unknown parameter or invalid value.
    """
    import yaml

    from ros2_amodal_seg.runtime import params as P

    values = {s.name: (list(s.default) if isinstance(s.default, tuple) else s.default) for s in P.PARAMS
              if s.group != "inference"}
    if params_file is not None:
        try:
            doc = yaml.safe_load(Path(params_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read parameters file {params_file}: {exc}") from exc
        for key in ("/**", node_name, f"/{node_name}"):
            section = (doc.get(key) or {}).get("ros__parameters", {}) if isinstance(doc.get(key), dict) else {}
            values.update({k: v for k, v in section.items() if k in values})
    for item in overrides:
        if ":=" not in item:
            raise ConfigError(f"-p wants NAME:=VALUE, got {item!r}")
        name, text = item.split(":=", 1)
        if name not in values:
            raise ConfigError(f"unknown node parameter {name!r}")
        values[name] = _parse_value(text)
    for name, v in values.items():
        P.check_value(name, v)
    return values


class Listener:
    """The node's input side without the model: subscriptions, checks, synchroniser, frame assembly.

    Args:
        node: an rclpy node with the node's parameters declared.
        values: those parameter values.
    """

    def __init__(self, node, values: dict) -> None:
        from ros2_amodal_seg.ros.extrinsics import ExtrinsicsProvider
        from ros2_amodal_seg.ros.sensors import SensorSubscriptions
        from ros2_amodal_seg.runtime import params as P
        from ros2_amodal_seg.runtime.frames import FrameAssembler
        from ros2_amodal_seg.runtime.health import Health
        from ros2_amodal_seg.runtime.inputs import InputGate
        from ros2_amodal_seg.runtime.sync import FrameSync

        self.node, self.values = node, values
        self.health = Health((), lambda text: None)
        self.gate = InputGate(self.health.counters, self.health.warn, P.input_limits(values))
        self.sync = FrameSync(config=P.sync_config(values))
        self.sensors = SensorSubscriptions(node, self.gate, self.sync, self.health)
        self.extrinsics = ExtrinsicsProvider(node, self.health)
        self.assembler = FrameAssembler(self.health, self.gate, self.extrinsics, P.geometry_config(values))
        self.frames = 0
        self.sensors.active = True
        self.health.active_since = time.monotonic()

    def step(self, timeout_s: float = 0.1) -> None:
        """Assemble the next synchronised frame, if one is ready within ``timeout_s``."""
        from ros2_amodal_seg.ros.sensors import TOPIC_CAMERA_INFO

        frame = self.sync.wait_ready(timeout_s)
        if frame is None:
            return
        v = self.values
        self.assembler(frame, compressed=self.sensors.compressed, camera_frame=str(v["camera_frame"]),
                       lidar_frame=str(v["lidar_frame"]), camera_info_topic=self.sensors.resolved(TOPIC_CAMERA_INFO))
        self.frames += 1

    def diagnose(self, window_s: float):
        """``(observations, findings)`` over the last ``window_s`` seconds. Without any assembled frame
        the extrinsics parameters are still checked (``extrinsics_source`` params: no frame ids needed)."""
        from ros2_amodal_seg.ros.doctor import observe
        from ros2_amodal_seg.runtime.doctor import diagnose

        if self.frames == 0 and self.extrinsics.source == "params":
            T_cl, T_bc = self.extrinsics("", "")
            missing = ["T_base_camera"] if T_bc is None else []
            if T_cl is None and self.sensors.geometry_source == "lidar":
                missing.append("T_camera_lidar")
            if missing:
                self.health.mark("no_extrinsics", " and ".join(missing) + " (parameters not set)")

        obs = observe(self.node, self.sensors, self.health, self.gate, self.sync, timeout_s=window_s,
                      sync_tolerance_s=self.sync.config.tolerance_s, extrinsics_source=self.extrinsics.source)
        return obs, diagnose(obs)


def _topic_lines(obs, duration: float) -> list[str]:
    lines = []
    for t in obs.topics:
        ok = "passed the checks" if t.seconds_since_accepted <= obs.timeout_s else "none passed the checks"
        lines.append(f"  {t.key:12s} {t.topic} ({t.expected_type}, {t.qos.reliability}): {t.received} message(s) "
                     f"in {duration:.1f} s, {ok}")
    return lines


def run_doctor(values: dict, remaps: list[tuple[str, str]], duration: float, node_name: str = "amodal_seg",
               discovery_s: float = 2.0, bag: Path | None = None, rate: float = 1.0):
    """Wait up to ``discovery_s`` for every input to match a publisher, then listen for ``duration``
    seconds (playing ``bag`` meanwhile, when given); returns ``(observations, findings, frames assembled)``."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ros2_amodal_seg.runtime import params as P

    args = ["amodal_seg_doctor", "--ros-args"] + [a for src, dst in remaps for a in ("-r", f"{src}:={dst}")]
    ctx = rclpy.Context()
    rclpy.init(args=args, context=ctx)
    node = executor = None
    try:
        node = rclpy.create_node(f"{node_name}_doctor", context=ctx)
        for spec in P.PARAMS:
            if spec.name in values:
                node.declare_parameter(spec.name, values[spec.name])
        listener = Listener(node, values)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set() and ctx.ok():
                executor.spin_once(timeout_sec=0.05)

        th = threading.Thread(target=spin, daemon=True)
        th.start()
        player = None
        if bag is not None:
            from ros2_amodal_seg.data.bag import bag_topics
            from ros2_amodal_seg.ros.replay import ReplayConfig, replay

            # the bag's topics among the inputs (a bag without one: "no publisher" on it)
            topics = tuple(t for t in bag_topics(bag) if t in {listener.sensors.resolved(t) for *_, t in
                                                               listener.sensors.inputs})
            if topics:
                cfg = ReplayConfig(rate=rate, topics=topics, start_delay_s=0.0, wait_subscribers=1,
                                   wait_timeout_s=max(discovery_s, 0.5))
                player = threading.Thread(target=replay, daemon=True, args=(
                    bag, cfg, rclpy.create_node(f"{node_name}_doctor_bag", context=ctx), stop))
                player.start()
        t_disc = time.monotonic() + discovery_s
        while time.monotonic() < t_disc and not all(s.get_publisher_count() for s in listener.sensors.subs):
            time.sleep(0.05)
        listener.health.active_since = time.monotonic()
        t_end = time.monotonic() + duration
        while time.monotonic() < t_end:
            listener.step(min(0.1, max(0.0, t_end - time.monotonic())))
        obs, findings = listener.diagnose(duration)
        stop.set()
        if player is not None:
            player.join(timeout=5)
        th.join(timeout=5)
        return obs, findings, listener.frames
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=2)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def _run(args) -> int:
    from ros2_amodal_seg.runtime.doctor import format_report

    if not args.duration > 0:
        raise ConfigError(f"--duration must be > 0, got {args.duration}")
    values = node_parameters(args.params_file, args.param, args.node_name)
    remaps = [(REMAP_OPTIONS[k], getattr(args, k)) for k in REMAP_OPTIONS if getattr(args, k)]
    for item in args.remap:
        if ":=" not in item:
            raise ConfigError(f"-r wants FROM:=TO, got {item!r}")
        remaps.append(tuple(item.split(":=", 1)))
    if args.bag is not None and not args.bag.exists():
        raise ConfigError(f"--bag {args.bag} does not exist")
    obs, findings, frames = run_doctor(values, remaps, args.duration, args.node_name, max(0.0, args.discovery),
                                       bag=args.bag, rate=args.rate)
    head = [f"amodal-seg doctor: listened {args.duration:g} s as {args.node_name} would "
            f"(geometry_source {values['geometry_source']}, qos_reliability {values['qos_reliability']}, "
            f"sync_tolerance_s {values['sync_tolerance_s']}); {frames} frame(s) assembled"]
    print("\n".join(head + _topic_lines(obs, args.duration)))
    print(format_report(findings))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "findings": [{"cause": f.cause, "topic": f.topic, "message": f.message, "hint": f.hint} for f in findings],
            "topics": {t.key: {"topic": t.topic, "received": t.received,
                               "accepted": t.seconds_since_accepted <= obs.timeout_s} for t in obs.topics},
            "frames": frames, "missed_offsets_ns": list(obs.missed_offsets_ns)}, indent=2))
    return 1 if findings else 0
