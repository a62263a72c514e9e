"""Drive the node from outside, as a robot does: the node as its own process, and a peer
node in this process that publishes sensor messages and records outputs and diagnostics.

Used by ``scripts/fuzz_node.py``, ``scripts/soak_node.py`` and the end-to-end replay
session (:mod:`ros2_amodal_seg.ros.session`). Every process speaks loopback DDS on a
caller-chosen ``ROS_DOMAIN_ID`` (:mod:`ros2_amodal_seg.ros.rosenv`).

    with NodeProcess(params, domain_id=93) as node, Peer(domain_id=93) as peer:
        node.wait_ready(peer)
        peer.pub["image"].publish(msg)
        peer.wait_for(lambda: peer.output_count() >= 1, 30.0, "an output")
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from ros2_amodal_seg.errors import InvalidInputError
from ros2_amodal_seg.ros.rosenv import ROS_ENV_KEYS, loopback_ros_env


def node_command(params_file: Path, node_name: str = "amodal_seg") -> list[str]:
    """Command line that starts the node (same interpreter as this process)."""
    return [sys.executable, "-m", "ros2_amodal_seg.ros.node", "--ros-args", "--params-file", str(params_file),
            "-r", f"__node:={node_name}"]


def proc_status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory line in kB (``VmRSS``: resident now, ``VmHWM``: its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise InvalidInputError(f"/proc/{pid}/status has no {key}")


class NodeProcess:
    """The ``amodal_seg`` node as a child process with the given parameters.

    Args:
        params: node parameters (written to a params file).
        domain_id: ROS_DOMAIN_ID (loopback only).
        node_name: the node's name (outputs on ``/<node_name>/...``).
        log_path: where its stdout/stderr go (default: a temporary file).
    """

    def __init__(self, params: dict, *, domain_id: int, node_name: str = "amodal_seg",
                 log_path: Path | None = None) -> None:
        self.node_name = node_name
        self.env = loopback_ros_env(domain_id)
        tmp = Path(tempfile.mkdtemp(prefix="amodal_seg_node_"))
        self.params_file = tmp / "params.yaml"
        self.params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(params)}}))
        self.log_path = Path(log_path) if log_path is not None else tmp / "node.log"
        self._log = None
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "NodeProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(node_command(self.params_file, self.node_name), env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_ready(self, peer: "Peer", timeout_s: float = 120.0) -> float:
        """Wait until the node is active and matched with ``peer``; returns the seconds waited.

        Raises:
            InvalidInputError: the node exited or did not come up in time (with its log's tail).
        """
        t0 = time.monotonic()
        while True:
            if not self.alive:
                raise InvalidInputError(f"the node exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")
            if time.monotonic() - t0 > timeout_s:
                raise InvalidInputError(f"the node did not come up within {timeout_s} s:\n{self.log_text()[-3000:]}")
            if "active:" in self.log_text() and peer.matched(self.node_name):
                return time.monotonic() - t0
            time.sleep(0.1)

    def rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmRSS")

    def peak_rss_kb(self) -> int:
        return proc_status_kb(self.pid, "VmHWM")

    def reset_peak_rss(self) -> bool:
        """Reset the kernel's resident-set peak (``VmHWM``) of the node; False where not allowed."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGINT (as Ctrl-C on a robot), then kill after ``timeout_s``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.proc.returncode


class Peer:
    """Sensor publishers and output / ``/diagnostics`` subscribers in this process, spun on a thread.

    Args:
        domain_id: ROS_DOMAIN_ID (loopback only).
        reliable: publish the sensors reliably (the node must then use ``qos_reliability: reliable``);
            default best effort, as sensor drivers do.
        depth: history depth of the publishers.
        outputs: output topics (``/<node>/<name>``) to record, by name; only their arrival time
            and header stamp are kept unless ``keep_messages``.
        node_name: the node's name.
        inputs: the sensor topics to publish (``image``, ``camera_info``, ``cloud``, ``depth``: a depth
            image, for a node with ``geometry_source: depth``); :meth:`matched` waits for each.
    """

    def __init__(self, *, domain_id: int, reliable: bool = False, depth: int = 5,
                 outputs: tuple[str, ...] = ("instances",), node_name: str = "amodal_seg",
                 keep_messages: bool = False, inputs: tuple[str, ...] = ("image", "camera_info", "cloud")) -> None:
        import rclpy  # noqa: PLC0415
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: PLC0415
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: PLC0415

        from ros2_amodal_seg.ros.outputs import OUTPUTS  # noqa: PLC0415
        from ros2_amodal_seg.ros.sensors import TOPIC_CAMERA_INFO, TOPIC_DEPTH, TOPIC_IMAGE, TOPIC_POINTS  # noqa: PLC0415

        env = loopback_ros_env(domain_id)
        self._saved = {k: os.environ.get(k) for k in ROS_ENV_KEYS}
        os.environ.update({k: env[k] for k in ROS_ENV_KEYS})
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("amodal_seg_peer", context=self.ctx)
        self.lock = threading.Lock()
        # (monotonic arrival, header stamp [ns]; -1 for a message without one)
        self.received: dict[str, list[tuple[float, int]]] = {k: [] for k in outputs}
        self.messages: dict[str, list] = {k: [] for k in outputs}
        self.diagnostics: list = []        # the newest reports
        self.num_diagnostics = 0           # reports received in all
        self._keep = keep_messages
        rel = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel)
        topics = {"image": TOPIC_IMAGE, "camera_info": TOPIC_CAMERA_INFO, "cloud": TOPIC_POINTS, "depth": TOPIC_DEPTH}
        self.topics = {k: topics[k] for k in inputs}
        types = {"image": Image, "camera_info": CameraInfo, "cloud": PointCloud2, "depth": Image}
        self.pub = {k: self.node.create_publisher(types[k], t, qos) for k, t in self.topics.items()}
        out_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        out_types = {k[2:]: v for k, v in OUTPUTS.items()}
        self.node_name = node_name
        for k in outputs:
            self.node.create_subscription(out_types[k], f"/{node_name}/{k}", lambda m, k=k: self._store(k, m),
                                          out_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._store_diag, 50)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._running = True
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._spin.start()

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spin_loop(self) -> None:
        while self._running and self.ctx.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _store(self, key: str, msg) -> None:
        header = getattr(msg, "header", None)
        if header is None and getattr(msg, "markers", None):          # MarkerArray: its first marker's
            header = msg.markers[0].header
        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec) if header is not None else -1
        with self.lock:
            self.received[key].append((time.monotonic(), stamp))
            if self._keep:
                self.messages[key].append(msg)

    def _store_diag(self, msg) -> None:
        with self.lock:
            self.diagnostics.append(msg)
            self.num_diagnostics += 1
            del self.diagnostics[:-20]

    def matched(self, node_name: str) -> bool:
        """The node subscribes to every sensor topic and publishes ``instances`` to us."""
        return (all(p.get_subscription_count() >= 1 for p in self.pub.values())
                and self.node.count_publishers(f"/{node_name}/instances") >= 1)

    def output_count(self, key: str = "instances") -> int:
        with self.lock:
            return len(self.received[key])

    def output_stamps(self, key: str = "instances") -> list[tuple[float, int]]:
        with self.lock:
            return list(self.received[key])

    def has_output(self, stamp_ns: int, key: str = "instances") -> bool:
        with self.lock:
            return any(s == stamp_ns for _, s in self.received[key])

    def wait_for(self, pred, timeout_s: float, what: str = "condition") -> bool:
        """Poll ``pred`` until true (returns True) or ``timeout_s`` passed (returns False)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if pred():
                return True
            time.sleep(0.01)
        return False

    def diag_values(self) -> dict[str, str]:
        """The key/values of the node's latest ``/diagnostics`` report ({} before the first)."""
        from ros2_amodal_seg.ros.session import pipeline_values_from_diagnostics  # noqa: PLC0415

        with self.lock:
            msgs = list(self.diagnostics)
        return pipeline_values_from_diagnostics(msgs)

    def settled_diag_values(self, keys, reports: int = 3, timeout_s: float = 30.0) -> dict[str, str]:
        """The first report whose ``keys`` equal those of the ``reports - 1`` reports before it
        (all received after this call): the counters of a node that finished its work."""
        from ros2_amodal_seg.ros.session import pipeline_values_from_diagnostics  # noqa: PLC0415

        with self.lock:
            seen = self.num_diagnostics
        same, prev, t0 = 0, None, time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            with self.lock:
                fresh = self.diagnostics[len(self.diagnostics) - min(len(self.diagnostics),
                                                                     self.num_diagnostics - seen):]
                seen = self.num_diagnostics
            for m in fresh:
                vals = pipeline_values_from_diagnostics([m])
                cur = {k: vals.get(k, "0") for k in keys}
                same = same + 1 if cur == prev else 1
                prev = cur
                if same >= reports:
                    return vals
            time.sleep(0.05)
        raise InvalidInputError(f"diagnostics counters {list(keys)} never steady within {timeout_s} s")

    def close(self) -> None:
        import rclpy  # noqa: PLC0415

        self._running = False
        self._spin.join(timeout=5)
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)
        for k, v in self._saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
