"""Run the node against a bag, the way a robot would: the node as its own process,
``amodal-seg replay`` as another, and this process recording the outputs.

Used by the end-to-end test (``test/test_e2e_replay.py``), the demo (``scripts/demo.py``)
and the benchmark. Everything speaks loopback DDS on a caller-chosen ``ROS_DOMAIN_ID``.

    res = run_session(bag_dir, dataset_node_params("data/annotations.json", "street"), domain_id=70, rate=0.2)
    preds = predictions_from_arrays(res.instance_arrays(), stamp_to_image_id("data/annotations.json"))
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ros2_amodal_seg import masks as mask_utils
from ros2_amodal_seg.errors import DatasetError, InvalidInputError


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


def run_session(bag: str | Path, params: dict, *, domain_id: int, rate: float = 1.0,
                topics: tuple[str, ...] = ("instances", "occlusion_graph", "bev_grid", "occupancy", "markers",
                                           "instance_points", "overlay"),
                ready_timeout_s: float = 120.0, settle_s: float = 3.0, max_settle_s: float = 60.0,
                log: Callable[[str], None] = lambda s: None) -> SessionResult:
    """Start the node, replay ``bag`` into it at ``rate`` (``amodal-seg replay``), record its outputs.

    The replayed topics are the node's inputs: image, camera_info and, by its ``geometry_source``,
    ``/lidar/points`` (default) or ``/camera/depth/image_raw`` (``depth``; the bag needs
    ``generate --bag --depth``).

    Args:
        bag: rosbag2 folder. params: node parameters. domain_id: ROS_DOMAIN_ID (0..101).
        rate: replay speed factor. topics: output topics (``/amodal_seg/<name>``) to record;
            recording ``overlay`` makes the node render it.
        ready_timeout_s: wait this long for the node to come up (model load).
        settle_s: after the replay ends, wait until no output arrived for this long
            (at most ``max_settle_s``).
        log: progress callback.

    Raises:
        InvalidInputError: the node did not start or died, or the replay failed.
    """
    from ros2_amodal_seg.ros.drive import NodeProcess, Peer

    params = dict(params)
    inputs = ("image", "camera_info") + {"lidar": ("cloud",), "depth": ("depth",), "none": ()}[
        str(params.get("geometry_source", "lidar"))]
    # a slowed-down replay also delays the LiDAR sweep that follows each image (~20 ms of bag
    # time) in wall time: let the sync cache wait correspondingly longer for it
    params["sync_cloud_wait_s"] = float(min(5.0, max(float(params.get("sync_cloud_wait_s", 0.2)), 0.06 / rate)))
    params["sync_max_frame_age_s"] = float(max(float(params.get("sync_max_frame_age_s", 2.0)),
                                               3 * params["sync_cloud_wait_s"]))
    res = SessionResult()
    node = NodeProcess(params, domain_id=domain_id)
    with Peer(domain_id=domain_id, outputs=topics, keep_messages=True, inputs=inputs) as peer:
        try:
            log(f"starting the node (domain {domain_id}, params {node.params_file})")
            node.start()
            log(f"node up after {node.wait_ready(peer, ready_timeout_s):.1f} s; replaying {bag} at rate {rate}")
            t_rep = time.monotonic()
            replay_proc = subprocess.run(
                [sys.executable, "-m", "ros2_amodal_seg.cli", "replay", str(bag), "--rate", str(rate),
                 "--wait-subscribers", "1", "--topics", *(peer.topics[k] for k in inputs)],
                env=node.env, capture_output=True, text=True, timeout=3600)
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
                last = max((r[-1][0] for r in map(peer.output_stamps, topics) if r), default=t_rep)
                if time.monotonic() - max(last, t_end) > settle_s:
                    break
                time.sleep(0.1)
        finally:
            node.stop()
        with peer.lock:
            res.outputs = {k: list(v) for k, v in peer.messages.items()}
            res.receive_times = {k: [t for t, _ in v] for k, v in peer.received.items()}
            res.diagnostics = list(peer.diagnostics)
    res.node_log = node.log_text()
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
    """The node's last reported per-stage latency ``{stage: {"p50", "p95", "max", "n"}}`` [ms]."""
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
