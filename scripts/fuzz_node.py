#!/usr/bin/env python3
"""Fuzz the amodal_seg node with malformed input, over loopback DDS, the node as its own process.

Every cycle publishes one valid frame (image + camera_info + cloud, or an odd but valid
image: 8x8, 640x8, mono8, data longer than declared), with malformed messages of every
kind of ``ros2_amodal_seg.ros.malformed.CASES`` interleaved in random order (the valid image
after its cloud): bad images, bad CameraInfos in place of the good one, bad clouds in place
of the good one. The cycle then waits for the node's output for the valid frame.

At the end it prints, per counter, the malformed messages sent and the node's count (from
``/diagnostics``), the valid frames answered, the node's processing errors and whether it
is still alive, and the resident-memory peak while an oversized cloud (2 M points) arrived.
The sensors are published reliably (the node is started with ``qos_reliability:
reliable``) so that every message sent is also received; the node's ``messages_lost_*``
counters say otherwise.

    .venv/bin/python scripts/fuzz_node.py                          # 10 000 malformed messages, shipped model
    .venv/bin/python scripts/fuzz_node.py --messages 1000 --checkpoint tiny.safetensors --width 160 --height 120
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter

from ros2_amodal_seg.benchmarks import add_output_args, checkpoint_label, save_outputs

T0 = 1_800_000_000_000_000_000
MS = 1_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000, help="malformed messages to send (default 10000)")
    ap.add_argument("--bad-per-frame", type=int, default=8, help="malformed messages per valid frame (default 8)")
    ap.add_argument("--checkpoint", default="", help="node checkpoint (default: the shipped one)")
    ap.add_argument("--device", default="cpu", help="node device: cpu (default), cuda or auto")
    ap.add_argument("--width", type=int, default=640, help="valid frame width [px] (default 640)")
    ap.add_argument("--height", type=int, default=480, help="valid frame height [px] (default 480)")
    ap.add_argument("--huge-clouds", type=int, default=3, help="2 M-point clouds among the messages (default 3)")
    ap.add_argument("--frame-timeout", type=float, default=60.0, help="seconds to wait for a valid frame's output")
    ap.add_argument("--torch-threads", type=int, default=0, help="node torch_threads (0 = torch default)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the message order")
    ap.add_argument("--domain", type=int, default=93, help="ROS_DOMAIN_ID (loopback only; default 93)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    if args.messages < 1 or args.bad_per_frame < 1:
        ap.error("--messages and --bad-per-frame must be >= 1")
    if min(args.width, args.height) < 16:
        ap.error("--width and --height must be >= 16")
    return args


def good_frame(width: int, height: int, checkpoint: str = ""):
    """A rendered street frame of the checkpoint's world as the valid frame, and its node parameters."""
    import numpy as np  # noqa: PLC0415

    from ros2_amodal_seg.model.checkpoint import world_preset  # noqa: PLC0415
    from ros2_amodal_seg.ros.malformed import GoodFrame  # noqa: PLC0415
    from ros2_amodal_seg.world import render_frame  # noqa: PLC0415

    f = render_frame(world_preset(checkpoint, "street"), 3, width, height)
    params = {"T_camera_lidar": [float(v) for v in np.asarray(f.T_camera_lidar).ravel()],
              "T_base_camera": [float(v) for v in np.asarray(f.T_base_camera).ravel()]}
    return GoodFrame(rgb=f.rgb, K=f.K, D=f.D, points=f.lidar_points), params


def run(args: argparse.Namespace, log=print) -> dict:
    from ros2_amodal_seg.ros.drive import NodeProcess, Peer  # noqa: PLC0415
    from ros2_amodal_seg.ros.malformed import CASES  # noqa: PLC0415

    rng = random.Random(args.seed)
    good, extr = good_frame(args.width, args.height, args.checkpoint)
    params = {"checkpoint": args.checkpoint, "device": args.device, "torch_threads": args.torch_threads,
              "qos_reliability": "reliable", "qos_depth": 100, "sync_cloud_wait_s": 1.0,
              "sync_max_frame_age_s": 30.0, "diagnostics_period_s": 0.5, "publish_overlay": False, **extr}
    by_topic = {t: [c for c in CASES if c.topic == t and c.counter is not None and not c.answered]
                for t in ("image", "camera_info", "cloud")}
    by_topic["cloud"] = [c for c in by_topic["cloud"] if c.name != "cloud_2m_points"]
    huge = next(c for c in CASES if c.name == "cloud_2m_points")
    answered = [c for c in CASES if c.answered]
    sent_case: Counter = Counter()
    expected: Counter = Counter()            # counter -> messages that must be counted there
    received_sent: Counter = Counter()       # topic -> messages sent
    valid_sent = valid_answered = 0
    missed: list[str] = []
    memory: dict = {}
    huge_left = args.huge_clouds
    malformed = 0
    node = NodeProcess(params, domain_id=args.domain)
    with Peer(domain_id=args.domain, reliable=True, depth=100) as peer:
        node.start()
        try:
            log(f"node up after {node.wait_ready(peer):.1f} s (pid {node.pid}); sending {args.messages} malformed "
                f"messages, {args.bad_per_frame} per valid {args.width}x{args.height} frame")
            base = peer.settled_diag_values(("images_received",), reports=2)
            t_start, cycle = time.monotonic(), 0
            while malformed < args.messages:
                cycle += 1
                stamp = T0 + cycle * 200 * MS
                out: list[tuple[str, object]] = []
                case = rng.choice(answered) if rng.random() < 0.25 else None
                out.append(("image", case.make(good, stamp) if case else good.image(stamp)))
                if case is not None and case.counter is not None:
                    expected[case.counter] += 1
                    sent_case[case.name] += 1
                    malformed += 1
                bad_info = rng.random() < 0.5
                info_case = rng.choice(by_topic["camera_info"]) if bad_info else None
                out.append(("camera_info", info_case.make(good, stamp) if info_case else good.info(stamp)))
                if huge_left > 0 and cycle % 7 == 3:
                    cloud_case, huge_left = huge, huge_left - 1
                else:
                    cloud_case = rng.choice(by_topic["cloud"]) if rng.random() < 0.5 else None
                cstamp = stamp + rng.choice((-2, 2, 15)) * MS
                out.append(("cloud", cloud_case.make(good, cstamp) if cloud_case else good.cloud(cstamp)))
                for c in (info_case, cloud_case):
                    if c is not None:
                        expected[c.counter] += 1
                        sent_case[c.name] += 1
                        malformed += 1
                for k in range(max(0, min(args.bad_per_frame - (info_case is not None) - (cloud_case is not None),
                                          args.messages - malformed))):
                    c = rng.choice(by_topic["image"])
                    out.append(("image", c.make(good, stamp + (k + 1) * MS)))
                    expected[c.counter] += 1
                    sent_case[c.name] += 1
                    malformed += 1
                # random order, except that the valid image comes after the cycle's cloud: a fuzz cycle
                # can take over 1 s, after which the node rightly stops waiting for a silent LiDAR
                first, rest = out[0], out[1:]
                rng.shuffle(rest)
                after_cloud = next(k for k, (t, _) in enumerate(rest) if t == "cloud") + 1
                rest.insert(rng.randrange(after_cloud, len(rest) + 1), first)
                if cloud_case is huge:
                    node.reset_peak_rss()
                    rss0 = node.rss_kb()
                for topic, msg in rest:
                    peer.pub[topic].publish(msg)
                    received_sent[topic] += 1
                valid_sent += 1
                if peer.wait_for(lambda: peer.has_output(stamp), args.frame_timeout):
                    valid_answered += 1
                else:
                    missed.append(case.name if case else "good")
                if cloud_case is huge:
                    peak = node.peak_rss_kb()
                    memory = {"rss_before_mb": rss0 / 1024, "peak_mb": peak / 1024,
                              "peak_increase_mb": max(memory.get("peak_increase_mb", 0.0), (peak - rss0) / 1024)}
                if cycle % 50 == 0:
                    log(f"  {malformed} malformed sent, {valid_answered}/{valid_sent} valid frames answered, "
                        f"{time.monotonic() - t_start:.0f} s")
                if not node.alive:
                    break
            keys = ("images_received", "camera_infos_received", "clouds_received", "frames_processed",
                    "processing_errors") + tuple(expected)
            final = peer.settled_diag_values(keys, reports=3, timeout_s=120.0) if node.alive else {}
            wall = time.monotonic() - t_start
        finally:
            alive = node.alive
            rc = node.stop()
    delta = {k: int(final.get(k, "0")) - int(base.get(k, "0")) for k in set(final) | set(base)
             if str(final.get(k, "0")).lstrip("-").isdigit() and str(base.get(k, "0")).lstrip("-").isdigit()}
    received = {t: delta.get(f"{n}_received", 0) for t, n in (("image", "images"), ("camera_info", "camera_infos"),
                                                              ("cloud", "clouds"))}
    counted = {k: min(delta.get(k, 0), n) for k, n in expected.items()}
    lost = sum(delta.get(f"messages_lost_{t}", 0) for t in ("image", "camera_info", "cloud"))
    unreceived = sum(received_sent.values()) - sum(received.values())
    malformed_received = malformed - max(0, unreceived)
    res = {
        "malformed_sent": malformed, "malformed_received": malformed_received,
        "malformed_counted": sum(counted.values()),
        "counted_share": sum(counted.values()) / max(1, malformed_received),
        "per_counter": {k: {"sent": n, "counted": delta.get(k, 0)} for k, n in sorted(expected.items())},
        "per_case": dict(sorted(sent_case.items())), "messages_sent": dict(received_sent), "received": received,
        "messages_lost": lost, "valid_frames": valid_sent, "valid_answered": valid_answered, "missed": missed,
        "processing_errors": delta.get("processing_errors", 0), "node_alive_at_end": alive, "node_exit_code": rc,
        "crashes": int(not alive), "huge_cloud_memory": memory, "wall_s": wall, "seconds_per_frame": wall / valid_sent,
        "width": args.width, "height": args.height, "checkpoint": checkpoint_label(args.checkpoint),
    }
    return res


def report(res: dict, log=print) -> None:
    log(f"\n{'counter':28s} {'sent':>6s} {'counted':>8s}")
    for k, v in res["per_counter"].items():
        flag = "" if v["counted"] >= v["sent"] else "  <-- missing"
        log(f"{k:28s} {v['sent']:6d} {v['counted']:8d}{flag}")
    log(f"\nmalformed: {res['malformed_sent']} sent, {res['malformed_received']} received, "
        f"{res['malformed_counted']} counted by kind ({100 * res['counted_share']:.2f} %)")
    log(f"messages sent by topic {res['messages_sent']}, received {res['received']}, lost before the callback "
        f"{res['messages_lost']}")
    log(f"valid frames answered: {res['valid_answered']} / {res['valid_frames']}"
        + (f" (missed: {Counter(res['missed'])})" if res["missed"] else ""))
    log(f"processing errors: {res['processing_errors']}; crashes: {res['crashes']}; exit code after SIGINT: "
        f"{res['node_exit_code']}")
    if res["huge_cloud_memory"]:
        m = res["huge_cloud_memory"]
        log(f"2 M-point cloud: resident {m['rss_before_mb']:.0f} MB before, peak +{m['peak_increase_mb']:.1f} MB")
    log(f"{res['wall_s']:.0f} s, {res['seconds_per_frame']:.2f} s per cycle")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    report(res)
    save_outputs(res, args)
    ok = (res["crashes"] == 0 and res["processing_errors"] == 0 and res["valid_answered"] == res["valid_frames"]
          and res["counted_share"] >= 0.99)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
