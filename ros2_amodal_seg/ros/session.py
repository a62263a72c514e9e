"""Run the node against a bag, the way a robot would: the node as its own process,
``amodal-seg replay`` as another, and this process recording the outputs.

Used by the end-to-end test (``test/test_e2e_replay.py``), the demo (``scripts/demo.py``)
and the benchmark. Everything speaks loopback DDS on a caller-chosen ``ROS_DOMAIN_ID``.

    res = run_session(bag_dir, dataset_node_params("data/annotations.json", "street"), domain_id=70, rate=0.2)
    preds = predictions_from_arrays(res.instance_arrays(), stamp_to_image_id("data/annotations.json"))
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from ros2_amodal_seg import masks as mask_utils
from ros2_amodal_seg.errors import DatasetError, InvalidInputError
from ros2_amodal_seg.ros.rosenv import ROS_ENV_KEYS, loopback_ros_env


def dataset_node_params(annotations_json: str | Path, preset: str, checkpoint: str = "", **overrides) -> dict:
    """Node parameters for a generated dataset/bag: its extrinsics (one rig per bag), the
    preset's fusion settings, CPU-friendly sync settings.

    Raises:
        DatasetError: no image entry with T_camera_lidar / T_base_camera.
    """
    data = json.loads(Path(annotations_json).read_text())
    img = next((i for i in data.get("images", []) if "T_camera_lidar" in i and "T_base_camera" in i), None)
    if img is None:
        raise DatasetError(f"{annotations_json} has no image with T_camera_lidar and T_base_camera")
    p = {"checkpoint": str(checkpoint), "device": "auto", "fusion_preset": preset,
         "T_camera_lidar": [float(v) for v in img["T_camera_lidar"]],
         "T_base_camera": [float(v) for v in img["T_base_camera"]],
         "sync_cloud_wait_s": 1.0, "sync_max_frame_age_s": 30.0, "diagnostics_period_s": 1.0}
    p.update(overrides)
    return p


def stamp_to_image_id(annotations_json: str | Path) -> dict[int, int]:
    """Camera stamp [ns] -> image id, from the ``stamp_ns`` of each image entry."""
    data = json.loads(Path(annotations_json).read_text())
    out = {int(i["stamp_ns"]): int(i["id"]) for i in data["images"] if "stamp_ns" in i}
    if not out:
        raise DatasetError(f"{annotations_json} has no stamp_ns per image (generate with --bag)")
    return out


@dataclass
class SessionResult:
    """What a session recorded (rclpy messages, in arrival order) and how it went.

    Attributes:
        outputs: topic suffix (``instances``, ``occupancy``, ...) -> list of messages.
        diagnostics: ``/diagnostics`` messages.
        replay_counts: messages the replay published per topic (parsed from its output).
        node_log: the node's stdout/stderr. wall_s: duration of the replay [s].
        first_output_latency: not used by everyone; per-message receive times [s] by topic.
    """

    outputs: dict[str, list] = field(default_factory=dict)
    receive_times: dict[str, list[float]] = field(default_factory=dict)
    diagnostics: list = field(default_factory=list)
    replay_counts: dict[str, int] = field(default_factory=dict)
    replay_log: str = ""
    node_log: str = ""
    wall_s: float = 0.0

    def instance_arrays(self) -> list:
        return self.outputs.get("instances", [])


def _write_params(params: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return path


def node_command(params_file: Path, node_name: str = "amodal_seg") -> list[str]:
    """Command line that starts the node (same interpreter as this process)."""
    return [sys.executable, "-m", "ros2_amodal_seg.ros.node", "--ros-args", "--params-file", str(params_file),
            "-r", f"__node:={node_name}"]


def _stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_session(bag: str | Path, params: dict, *, domain_id: int, rate: float = 1.0,
                topics: tuple[str, ...] = ("instances", "occlusion_graph", "bev_grid", "occupancy", "markers",
                                           "instance_points", "overlay"),
                ready_timeout_s: float = 120.0, settle_s: float = 3.0, max_settle_s: float = 60.0,
                log: Callable[[str], None] = lambda s: None) -> SessionResult:
    """Start the node, replay ``bag`` into it at ``rate`` (``amodal-seg replay``), record its outputs.

    Args:
        bag: rosbag2 folder. params: node parameters. domain_id: ROS_DOMAIN_ID (0..101).
        rate: replay speed factor. topics: output topics (``/amodal_seg/<name>``) to record;
            recording ``overlay`` makes the node render it.
        ready_timeout_s: wait this long for the node to come up (model load).
        settle_s: after the replay ends, wait until no output arrived for this long
            (at most ``max_settle_s``).
        log: progress callback.

    Raises:
        InvalidInputError: the node did not start or died.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from ros2_amodal_seg.ros.node import OUTPUTS

    env = loopback_ros_env(domain_id)
    params = dict(params)
    # a slowed-down replay also delays the LiDAR sweep that follows each image (~20 ms of bag
    # time) in wall time: let the sync cache wait correspondingly longer for it
    params["sync_cloud_wait_s"] = float(min(5.0, max(float(params.get("sync_cloud_wait_s", 0.2)), 0.06 / rate)))
    params["sync_max_frame_age_s"] = float(max(float(params.get("sync_max_frame_age_s", 2.0)),
                                               3 * params["sync_cloud_wait_s"]))
    tmp = Path(tempfile.mkdtemp(prefix="amodal_seg_session_"))
    params_file = _write_params(params, tmp / "params.yaml")
    node_log_path = tmp / "node.log"
    res = SessionResult(outputs={t: [] for t in topics}, receive_times={t: [] for t in topics})
    saved = {k: os.environ.get(k) for k in ROS_ENV_KEYS}
    os.environ.update({k: env[k] for k in ROS_ENV_KEYS})
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    lock = threading.Lock()
    node_proc = replay_proc = None
    executor = None
    running = [True]
    with open(node_log_path, "w") as node_log:
        try:
            rec = rclpy.create_node("amodal_seg_session_recorder", context=ctx)
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)

            def store(key, msg):
                with lock:
                    res.outputs[key].append(msg)
                    res.receive_times[key].append(time.monotonic())

            types = {k[2:]: v for k, v in OUTPUTS.items()}
            for t in topics:
                rec.create_subscription(types[t], f"/amodal_seg/{t}", lambda m, t=t: store(t, m), qos)
            rec.create_subscription(DiagnosticArray, "/diagnostics", lambda m: res.diagnostics.append(m), 10)
            executor = SingleThreadedExecutor(context=ctx)
            executor.add_node(rec)
            def spin_loop():
                while running[0] and ctx.ok():
                    executor.spin_once(timeout_sec=0.05)

            spin = threading.Thread(target=spin_loop, daemon=True)
            spin.start()
            log(f"starting the node (domain {domain_id}, params {params_file})")
            node_proc = subprocess.Popen(node_command(params_file), env=env, stdout=node_log,
                                         stderr=subprocess.STDOUT, text=True)
            t0 = time.monotonic()
            while rec.count_subscribers("/camera/image_raw") < 1 or rec.count_publishers("/amodal_seg/instances") < 1:
                if node_proc.poll() is not None:
                    raise InvalidInputError(f"the node exited ({node_proc.returncode}):\n"
                                            f"{node_log_path.read_text()[-3000:]}")
                if time.monotonic() - t0 > ready_timeout_s:
                    raise InvalidInputError(f"the node did not come up within {ready_timeout_s} s:\n"
                                            f"{node_log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            while "active:" not in node_log_path.read_text() and time.monotonic() - t0 < ready_timeout_s:
                time.sleep(0.1)
            log(f"node up after {time.monotonic() - t0:.1f} s; replaying {bag} at rate {rate}")
            t_rep = time.monotonic()
            replay_proc = subprocess.run(
                [sys.executable, "-m", "ros2_amodal_seg.cli", "replay", str(bag), "--rate", str(rate),
                 "--wait-subscribers", "1", "--topics", "/camera/image_raw", "/camera/camera_info", "/lidar/points"],
                env=env, capture_output=True, text=True, timeout=3600)
            res.wall_s = time.monotonic() - t_rep
            res.replay_log = replay_proc.stdout + replay_proc.stderr
            if replay_proc.returncode != 0:
                raise InvalidInputError(f"replay failed ({replay_proc.returncode}): {res.replay_log[-2000:]}")
            for line in replay_proc.stdout.splitlines():
                if line.startswith("published "):
                    for part in line[len("published "):].split(", "):
                        t, n = part.rsplit(": ", 1)
                        res.replay_counts[t] = int(n)
            log(f"replay done in {res.wall_s:.1f} s ({res.replay_counts}); waiting for the last outputs")
            t_end = time.monotonic()
            while time.monotonic() - t_end < max_settle_s:
                with lock:
                    last = max((ts[-1] for ts in res.receive_times.values() if ts), default=t_rep)
                if time.monotonic() - max(last, t_end) > settle_s:
                    break
                time.sleep(0.1)
        finally:
            if node_proc is not None:
                _stop(node_proc)
            running[0] = False
            time.sleep(0.1)
            if executor is not None:
                executor.shutdown(timeout_sec=2)
            rclpy.try_shutdown(context=ctx)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    res.node_log = node_log_path.read_text()
    return res


def instance_array_to_predictions(msg, image_id: int) -> list[dict]:
    """An ``AmodalInstanceArray`` message -> formats.md prediction dicts for ``image_id``."""
    from ros2_amodal_seg.ros import conversions as conv

    arr = conv.msg_to_instance_array(msg)
    idx = {inst.id: k for k, inst in enumerate(arr.instances)}
    out = []
    for inst in arr.instances:
        p = {"image_id": int(image_id), "category_id": int(inst.class_id), "score": float(inst.score),
             "segmentation": mask_utils.encode(inst.amodal_mask), "visible_mask": mask_utils.encode(inst.visible_mask),
             "occlude_rate": float(inst.occlusion_rate), "depth_rank": int(inst.depth_rank),
             "occluded_by": [idx[i] for i in inst.occluded_by if i in idx]}
        if np.isfinite(inst.depth_m):
            p["depth_m"] = float(inst.depth_m)
        out.append(p)
    return out


def predictions_from_arrays(arrays: list, stamps: dict[int, int]) -> tuple[list[dict], list[int]]:
    """Recorded instance arrays -> (predictions, stamps that match no input image)."""
    from ros2_amodal_seg.ros.conversions import time_to_ns

    preds, unknown = [], []
    for m in arrays:
        s = time_to_ns(m.header.stamp)
        if s not in stamps:
            unknown.append(s)
            continue
        preds += instance_array_to_predictions(m, stamps[s])
    return preds, unknown


def occupancy_object_recall(occ_msgs: list, annotations_json: str | Path, stamps: dict[int, int],
                            dilate_cells: int = 1, min_value: int = 50) -> tuple[float, int]:
    """Share of ground-truth objects (with a footprint inside the grid) whose footprint
    holds at least one cell of value >= ``min_value`` (occupied or inferred) in the
    OccupancyGrid published for their image. Returns ``(recall, objects counted)``."""
    import cv2

    from ros2_amodal_seg.ros.conversions import time_to_ns

    data = json.loads(Path(annotations_json).read_text())
    fps: dict[int, list[np.ndarray]] = {}
    for a in data["annotations"]:
        if a.get("footprint"):
            fps.setdefault(int(a["image_id"]), []).append(np.asarray(a["footprint"], np.float64))
    hit = total = 0
    seen = set()
    for m in occ_msgs:
        iid = stamps.get(time_to_ns(m.header.stamp))
        if iid is None or iid in seen:
            continue
        seen.add(iid)
        rows, cols, res = int(m.info.height), int(m.info.width), float(m.info.resolution)
        ox, oy = m.info.origin.position.x, m.info.origin.position.y
        grid = np.asarray(m.data, np.int16).reshape(rows, cols)
        marked = grid >= min_value
        for fp in fps.get(iid, []):
            cr = np.stack([(fp[:, 0] - ox) / res, (fp[:, 1] - oy) / res], 1)
            if (cr[:, 0] < 0).any() or (cr[:, 1] < 0).any() or (cr[:, 0] >= cols).any() or (cr[:, 1] >= rows).any():
                continue
            buf = np.zeros((rows, cols), np.uint8)
            cv2.fillPoly(buf, [np.round(cr).astype(np.int32)], 1)
            if dilate_cells:
                buf = cv2.dilate(buf, np.ones((2 * dilate_cells + 1,) * 2, np.uint8))
            total += 1
            hit += int((marked & (buf > 0)).any())
    return (hit / total if total else float("nan")), total


def latency_from_diagnostics(diags: list) -> dict[str, dict[str, float]]:
    """The node's last reported per-stage latency ``{stage: {"p50", "p95", "n"}}`` [ms]."""
    from ros2_amodal_seg.ros.diagnostics import diagnostics_to_dict

    for m in reversed(diags):
        d = diagnostics_to_dict(m)
        lat = next((v for k, v in d.items() if k.endswith(": latency")), None)
        if lat and lat["values"]:
            out: dict[str, dict[str, float]] = {}
            for key, val in lat["values"].items():
                stage, what = key.rsplit(".", 1)
                out.setdefault(stage, {})[what.replace("_ms", "")] = float(val)
            return out
    return {}


def pipeline_values_from_diagnostics(diags: list) -> dict[str, str]:
    """The last ``<node>: pipeline`` status values."""
    from ros2_amodal_seg.ros.diagnostics import diagnostics_to_dict

    for m in reversed(diags):
        for k, v in diagnostics_to_dict(m).items():
            if k.endswith(": pipeline"):
                return v["values"]
    return {}
