"""RGB-D end to end: a generated tabletop bag with an aligned depth image (``generate --bag --depth``)
played into the node (its own process, ``geometry_source: depth``), the instances' 3-D centroids
against the world's exact object centres, and the LiDAR path on the same frames as the reference.

The shipped checkpoint segments; each node instance is matched to the ground-truth object whose
amodal mask overlaps it most (IoU >= 0.5). The LiDAR reference runs the same processor offline on
the bag's LiDAR sweeps (the node reproduces the offline pipeline: ``test_e2e_replay.py``). Replay
rate from the measured offline time per frame (as ``test_e2e_replay.py``, with a smaller margin).

Measured (``-s`` prints it; docs/node.md, "RGB-D input"): centroid error median 6.9 mm through the
node with the depth camera, 9.9 mm for the LiDAR path (5 frames, 38 matched objects).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PRESET, SEED, FRAMES, WIDTH, HEIGHT = "shapes-tabletop", 9300, 5, 640, 480
SCORE_THRESHOLD = 0.3
MATCH_IOU = 0.5
#: the node's (depth) median centroid error may exceed the LiDAR path's by this factor plus this much [m]
#: (measured: depth below LiDAR, see the module docstring).
RATIO, SLACK_M = 1.25, 0.005
CAMERA_PERIOD_S, MIN_PERIOD_S = 0.1, 0.5


def _truth(frames):
    """Per frame: [(amodal mask [H, W] bool, centre [3] base_link [m])] of the annotated objects."""
    out = []
    for f in frames:
        oid = [int(o) for o in f.object_ids]
        out.append([(a.amodal.astype(bool), f.centers_base[oid.index(a.id)]) for a in f.annotations])
    return out


def _errors(instances, truth, camera_xyz) -> tuple[list[float], list[float], int]:
    """Absolute [m] and range-relative centroid errors of the instances matched to an object, and the
    number matched (with or without a 3-D estimate)."""
    abs_err, rel_err, matched = [], [], 0
    for inst in instances:
        ious = [np.logical_and(inst.amodal_mask, m).sum() / max(1, np.logical_or(inst.amodal_mask, m).sum())
                for m, _ in truth]
        if not ious or max(ious) < MATCH_IOU:
            continue
        matched += 1
        c_true = truth[int(np.argmax(ious))][1]
        if inst.num_points > 0 and np.all(np.isfinite(inst.centroid)):
            e = float(np.linalg.norm(np.asarray(inst.centroid) - c_true))
            abs_err.append(e)
            rel_err.append(e / float(np.linalg.norm(c_true - camera_xyz)))
    return abs_err, rel_err, matched


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory):
    from ros2_amodal_seg.world import render_frame
    from ros2_amodal_seg.world.cli import generate

    out = tmp_path_factory.mktemp("rgbd") / "tabletop"
    generate(PRESET, FRAMES, SEED, out, width=WIDTH, height=HEIGHT, bag=True, depth=True, progress=False)
    frames = [render_frame(PRESET, SEED + i, WIDTH, HEIGHT, lidar=False, rig_seed=SEED) for i in range(FRAMES)]
    return out, frames


def _offline_lidar(ds_dir):
    """The processor offline on each frame with its LiDAR sweep: (instances per frame, seconds per frame)."""
    from ros2_amodal_seg.model.data import load_amodal_dataset
    from ros2_amodal_seg.runtime.processor import (FrameInput, FrameProcessor, fusion_config_from_params,
                                                   processor_config)

    ds = load_amodal_dataset(ds_dir / "annotations.json")
    proc = FrameProcessor(config=processor_config(str(DEFAULT_CHECKPOINT), "cpu", score_threshold=SCORE_THRESHOLD),
                          fusion_config=fusion_config_from_params("tabletop"))
    proc.load()
    proc.warmup(HEIGHT, WIDTH)                                     # first-call costs out of the timing
    out, times = [], []
    for s in ds.samples:
        rgb, pts = s.load_image(), s.load_lidar()
        t0 = time.perf_counter()
        out.append(proc.process(FrameInput(image_rgb=rgb, stamp_ns=0, K=s.K, D=s.D, points_lidar=pts,
                                           T_camera_lidar=s.T_camera_lidar,
                                           T_base_camera=s.T_base_camera)).instances.instances)
        times.append(time.perf_counter() - t0)
    proc.unload()
    return out, np.array(times)


def test_rgbd_bag_through_the_node_gives_centroids_as_good_as_the_lidar_path(rgbd):
    from ros2_amodal_seg.ros import conversions as conv
    from ros2_amodal_seg.ros.session import dataset_node_params, pipeline_values_from_diagnostics, run_session

    ds_dir, frames = rgbd
    truth = _truth(frames)
    cam = frames[0].T_base_camera[:3, 3]
    t0 = time.monotonic()
    lidar, times = _offline_lidar(ds_dir)
    t_offline = time.monotonic() - t0
    # the node needs about the offline time per frame (and the shared machine's load varies): twice the
    # median, at least 0.5 s; one frame may still be superseded by the next
    period = max(MIN_PERIOD_S, 2.0 * float(np.median(times)))
    rate = min(1.0, CAMERA_PERIOD_S / period)
    params = dataset_node_params(ds_dir / "annotations.json", "tabletop", checkpoint=str(DEFAULT_CHECKPOINT),
                                 device="cpu", geometry_source="depth",
                                 **{"inference.score_threshold": SCORE_THRESHOLD})
    t0 = time.monotonic()
    res = run_session(ds_dir / "bag", params, domain_id=79, rate=rate, topics=("instances",),
                      log=lambda m: print(f"[rgbd] {time.monotonic() - t0:5.1f} s {m[:90]}"))
    print(f"[rgbd] offline {t_offline:.1f} s (median {np.median(times):.2f} s/frame), replay rate "
          f"{rate:.3f}, session {time.monotonic() - t0:.1f} s")
    assert res.replay_counts.get("/camera/depth/image_raw") == FRAMES, res.replay_log
    by_stamp = {}
    images = sorted(json.loads((ds_dir / "annotations.json").read_text())["images"], key=lambda i: i["id"])
    index = {int(im["stamp_ns"]): k for k, im in enumerate(images)}
    for m in res.instance_arrays():
        arr = conv.msg_to_instance_array(m)
        by_stamp[index[arr.stamp_ns]] = arr.instances
    assert len(by_stamp) >= FRAMES - 1, f"{len(by_stamp)}/{FRAMES} frames out\n{res.node_log[-3000:]}"
    stats = {}
    for name, per_frame in (("lidar", lidar), ("node (depth)", by_stamp)):   # on the frames the node output
        errs = [_errors(per_frame[k], truth[k], cam) for k in sorted(by_stamp)]
        stats[name] = ([e for a, _, _ in errs for e in a], [e for _, r, _ in errs for e in r],
                       sum(m for *_, m in errs))
    for name, (a, r, n) in stats.items():
        print(f"\n[rgbd] {name:12s}: centroid error median {1e3 * np.median(a):.1f} mm "
              f"(p90 {1e3 * np.percentile(a, 90):.1f}), range-relative median {np.median(r):.4f}, "
              f"{len(a)} of {n} matched instances with 3-D")
    values = pipeline_values_from_diagnostics(res.diagnostics)
    assert values.get("geometry_source") == "depth" and int(values["depth_images_received"]) == FRAMES
    assert int(values["frames_fused"]) >= FRAMES - 1 and int(values.get("depth_size_mismatch", 0)) == 0
    lidar_abs = np.median(stats["lidar"][0])
    a, _, n = stats["node (depth)"]
    assert len(a) >= 0.8 * n and len(a) >= 10, (len(a), n)           # nearly every matched object has 3-D
    assert np.median(a) <= RATIO * lidar_abs + SLACK_M, (np.median(a), lidar_abs)
