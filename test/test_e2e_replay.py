"""End to end, as on a robot: generate a street bag and a tabletop bag with ground truth,
start the node as its own process, replay the bags into it (``amodal-seg replay``),
record its outputs here and check them against the ground truth.

Input rate: the test first runs the same frames offline through the processor (same
checkpoint, same fusion settings) on this machine, measures the processing time per
frame, and replays at ``rate = min(1, 0.1 s / max(0.5 s, 2.5 * p90 time))`` of the bag's 10 Hz, so
the node can keep up; the measured rate is printed. The offline predictions are also
the reference for the quality checks: the node must reproduce them (amodal AP and order
accuracy within a small margin), and stay above absolute floors.

Set AMODAL_SEG_TEST_CHECKPOINT to run it with another checkpoint than the shipped one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from ros2_amodal_seg.model.data import load_amodal_dataset
from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CHECKPOINT = os.environ.get("AMODAL_SEG_TEST_CHECKPOINT", str(DEFAULT_CHECKPOINT))
FRAMES = 12
#: AP is a ranking metric: evaluate with low-score detections included (offline and in the node alike).
SCORE_THRESHOLD = 0.2
MAX_INSTANCES = 20
CAMERA_PERIOD_S = 0.1
MIN_PERIOD_S = 0.5
#: the node's metrics may trail the offline ones, on the frames it output, by this much
#: (measured: equal, 2026-11-23).
AP_MARGIN = 3.0
ORDER_MARGIN = 0.1
#: floor on the shipped weights' offline amodal AP on these 12 frames (measured 63.8 street,
#: 71.0 tabletop with the GPU-trained hidden-part completion network, single pass, before the class
#: re-reading network (not re-measured with it or its mask-quality head), 2026-11-23;
#: 62.7 / 69.2 with the CPU-trained one, 60.9 / 69.5 after its first cycle; 57.9 / 63.6 with the stage-8 network
#: alone, guided mask refinement and Matrix NMS; 38.7 / 41.2 with the stage-5 weights and plain
#: upsampling): a regression guard for the checkpoint, not the target.
MIN_OFFLINE_AP = 50.0
#: at least this share of input frames must produce output.
MIN_OUTPUT_SHARE = 0.9
#: share of ground-truth footprints (inside the grid) with an occupied / inferred cell.
MIN_OCCUPANCY_RECALL = {"street": 0.6, "tabletop": 0.5}


def _offline(ds_dir: Path, preset: str):
    """Predictions of the processor on the dataset's frames + per-frame time [s]."""
    from ros2_amodal_seg.model.data import load_amodal_dataset
    from ros2_amodal_seg.ros.session import instance_array_to_predictions
    from ros2_amodal_seg.runtime.processor import (FrameInput, FrameProcessor, fusion_config_from_params,
                                                   processor_config)

    ds = load_amodal_dataset(ds_dir / "annotations.json")
    proc = FrameProcessor(config=processor_config(CHECKPOINT, "auto", score_threshold=SCORE_THRESHOLD,
                                                  max_instances=MAX_INSTANCES),
                          fusion_config=fusion_config_from_params(preset))
    proc.load()
    proc.warmup()
    preds, times = [], []
    from ros2_amodal_seg.ros import conversions as conv

    for s in ds.samples:
        rgb = s.load_image()
        t0 = time.perf_counter()
        out = proc.process(FrameInput(image_rgb=rgb, stamp_ns=0, K=s.K, D=s.D, points_lidar=s.load_lidar(),
                                      T_camera_lidar=s.T_camera_lidar, T_base_camera=s.T_base_camera))
        times.append(time.perf_counter() - t0)
        preds += instance_array_to_predictions(conv.instance_array_to_msg(out.instances), s.image_id)
    proc.unload()
    return preds, np.array(times)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    from ros2_amodal_seg.world.cli import generate

    root = tmp_path_factory.mktemp("e2e")
    out = {}
    for preset, seed in (("street", 9100), ("tabletop", 9200)):
        generate(f"shapes-{preset}", FRAMES, seed, root / preset, bag=True, progress=False)   # the shipped model's world
        out[preset] = root / preset
    return out


@pytest.mark.parametrize("preset,domain", [("street", 81), ("tabletop", 82)])
def test_replay_through_the_node_matches_ground_truth(bags, preset, domain):
    from ros2_amodal_seg.model.evaluate import evaluate_predictions
    from ros2_amodal_seg.ros.conversions import time_to_ns
    from ros2_amodal_seg.ros.session import (dataset_node_params, latency_from_diagnostics,
                                             occupancy_object_recall, pipeline_values_from_diagnostics,
                                             predictions_from_arrays, run_session, stamp_to_image_id)

    ds_dir = bags[preset]
    ann = ds_dir / "annotations.json"
    offline_preds, times = _offline(ds_dir, preset)
    offline = evaluate_predictions(ann, offline_preds, score_threshold=SCORE_THRESHOLD)
    if CHECKPOINT == str(DEFAULT_CHECKPOINT):
        assert offline["amodal_AP"] >= MIN_OFFLINE_AP, f"shipped weights regressed: {offline['amodal_AP']:.1f} AP"
    # the node adds message conversion / publishing and the load of this shared machine varies:
    # leave a wide margin (2.5x the p90 offline time, at least 0.5 s per frame)
    period = max(MIN_PERIOD_S, 2.5 * float(np.percentile(times, 90)))
    rate = min(1.0, CAMERA_PERIOD_S / period)
    print(f"\n[{preset}] offline processing: p50 {1e3 * np.median(times):.0f} ms, p90 "
          f"{1e3 * np.percentile(times, 90):.0f} ms per frame -> {1 / np.median(times):.1f} frames/s; "
          f"replaying the 10 Hz bag at rate {rate:.3f} ({10 * rate:.2f} Hz input)")

    params = dataset_node_params(ann, preset, checkpoint=CHECKPOINT, device="auto",
                                 **{"inference.score_threshold": SCORE_THRESHOLD,
                                    "inference.max_instances": MAX_INSTANCES})
    res = run_session(ds_dir / "bag", params, domain_id=domain, rate=rate,
                      topics=("instances", "occlusion_graph", "bev_grid", "occupancy", "markers"))
    stamps = stamp_to_image_id(ann)
    arrays = res.instance_arrays()
    assert res.replay_counts.get("/camera/image_raw") == FRAMES, res.replay_log

    # every output is stamped with an input image's stamp, once per processed frame
    preds, unknown = predictions_from_arrays(arrays, stamps)
    assert unknown == [], f"outputs stamped with stamps that no input image had: {unknown}"
    out_stamps = [time_to_ns(m.header.stamp) for m in arrays]
    assert len(out_stamps) == len(set(out_stamps))
    share = len(set(out_stamps)) / FRAMES
    assert share >= MIN_OUTPUT_SHARE, (f"only {share:.0%} of frames produced output at {10 * rate:.2f} Hz input\n"
                                       f"{res.node_log[-3000:]}")
    for key in ("occlusion_graph", "bev_grid", "occupancy", "markers"):
        assert len(res.outputs[key]) >= MIN_OUTPUT_SHARE * FRAMES, key
        assert {time_to_ns(m.markers[0].header.stamp) if key == "markers" else time_to_ns(m.header.stamp)
                for m in res.outputs[key]} <= set(stamps), key

    # quality: the node reproduces the offline pipeline on the same frames (a frame the node
    # dropped, allowed above, would otherwise count as all misses)
    done = {stamps[t] for t in out_stamps}
    gt = load_amodal_dataset(ann)
    gt = dataclasses.replace(gt, samples=[x for x in gt.samples if x.image_id in done])
    online = evaluate_predictions(gt, preds, score_threshold=SCORE_THRESHOLD)
    offline = evaluate_predictions(gt, [p for p in offline_preds if p["image_id"] in done],
                                   score_threshold=SCORE_THRESHOLD)
    print(f"[{preset}] node: amodal AP {online['amodal_AP']:.1f} (offline {offline['amodal_AP']:.1f}), order "
          f"accuracy {online['order_accuracy']:.3f} (offline {offline['order_accuracy']:.3f}), "
          f"{online['num_predictions']} predictions, {len(done)}/{FRAMES} frames")
    assert online["num_predictions"] > 0, "the node found nothing"
    assert online["amodal_AP"] >= offline["amodal_AP"] - AP_MARGIN
    if not math.isnan(offline["order_accuracy"]):
        assert online["order_accuracy"] >= offline["order_accuracy"] - ORDER_MARGIN

    # the occupancy grid marks the objects
    recall, n = occupancy_object_recall(res.outputs["occupancy"], ann, stamps)
    print(f"[{preset}] occupancy marks {recall:.0%} of {n} ground-truth footprints inside the grid")
    assert n > 0 and recall >= MIN_OCCUPANCY_RECALL[preset]

    # diagnostics are published and account for every frame
    values = pipeline_values_from_diagnostics(res.diagnostics)
    assert values, "no /diagnostics received"
    assert int(values["images_received"]) == FRAMES
    assert int(values["frames_processed"]) + int(values["dropped_total"]) == FRAMES
    lat = latency_from_diagnostics(res.diagnostics)
    assert {"model", "fusion", "end_to_end"} <= set(lat)
    print(f"[{preset}] node latency end-to-end p50 {lat['end_to_end']['p50']:.0f} ms, "
          f"p95 {lat['end_to_end']['p95']:.0f} ms; device {values['device']}")
    (ds_dir / f"e2e_{preset}.json").write_text(json.dumps({"offline": offline, "online": online, "rate": rate}))
