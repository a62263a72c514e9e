#!/usr/bin/env python3
"""Benchmark the amodal_seg node end to end (the node runs as its own process).

Phase 1 (latency, closed loop): publish one 640x480 image + camera_info + a 64x1024
organised PointCloud2, wait for ~/instances, repeat. Reports the round trip measured
here (publish -> ~/instances received, includes DDS both ways) and the node's own
image-callback -> ~/instances-published latency, p50/p95, plus per-stage p50/p95 from
the node's /diagnostics.

Phase 2 (throughput, open loop): publish at --rate-hz for --duration seconds; reports
the sustained output rate and the frames the node dropped (it always processes the
newest frame).

    .venv/bin/python scripts/bench_node.py                       # shipped checkpoint, device auto
    .venv/bin/python scripts/bench_node.py --device cpu --frames 20 --duration 20 --json out.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DOMAIN = 95


def organised_cloud(frame, rows: int = 64, cols: int = 1024) -> np.ndarray:
    """The frame's LiDAR returns in a ``[rows * cols, 4]`` organised layout (NaN = no return)."""
    pts = frame.lidar_points
    out = np.full((rows * cols, 4), np.nan, np.float32)
    n = min(len(pts), rows * cols)
    out[:n] = pts[:n]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="", help="checkpoint (default: the shipped one)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--frames", type=int, default=20, help="closed-loop frames for the latency phase")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of the throughput phase")
    ap.add_argument("--rate-hz", type=float, default=30.0, help="input rate of the throughput phase")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch CPU threads in the node (0 = default)")
    ap.add_argument("--score-threshold", type=float, default=0.5, help="node score_threshold")
    ap.add_argument("--max-instances", type=int, default=50, help="node max_instances")
    ap.add_argument("--no-refine", action="store_true", help="node refine_masks false (plain bilinear masks)")
    ap.add_argument("--no-completion", action="store_true", help="node complete_hidden false")
    ap.add_argument("--completion-flip", action="store_true", help="node completion_flip true (default false)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)


    import rclpy
    import yaml
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from ros2_amodal_seg.msg import AmodalInstanceArray
    from ros2_amodal_seg.ros import conversions as conv
    from ros2_amodal_seg.ros.rosenv import apply_loopback_ros_env, loopback_ros_env
    from ros2_amodal_seg.ros.drive import node_command
    from ros2_amodal_seg.ros.session import latency_from_diagnostics, pipeline_values_from_diagnostics
    from ros2_amodal_seg.runtime.stats import percentile
    from ros2_amodal_seg.world import render_frame

    print("rendering a 640x480 street frame ...", flush=True)
    f = render_frame("shapes-street", 7, 640, 480)
    cloud = organised_cloud(f)
    params = {"checkpoint": args.checkpoint, "device": args.device, "torch_threads": args.torch_threads,
              "score_threshold": args.score_threshold, "max_instances": args.max_instances,
              "refine_masks": not args.no_refine, "complete_hidden": not args.no_completion,
              "completion_flip": args.completion_flip,
              "T_camera_lidar": [float(v) for v in f.T_camera_lidar.ravel()],
              "T_base_camera": [float(v) for v in f.T_base_camera.ravel()],
              "sync_cloud_wait_s": 0.5, "diagnostics_period_s": 1.0, "publish_overlay": False}
    tmp = Path(tempfile.mkdtemp(prefix="bench_node_"))
    pf = tmp / "params.yaml"
    pf.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    env = loopback_ros_env(DOMAIN)
    apply_loopback_ros_env(DOMAIN)  # this process speaks ROS too
    log = open(tmp / "node.log", "w")
    proc = subprocess.Popen(node_command(pf), env=env, stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    node = rclpy.create_node("bench_node_client")
    lock = threading.Lock()
    got: dict[int, float] = {}
    n_inst: list[int] = []
    diags: list = []

    def on_out(m):
        with lock:
            got[conv.time_to_ns(m.header.stamp)] = time.monotonic()
            n_inst.append(len(m.instances))

    node.create_subscription(AmodalInstanceArray, "/amodal_seg/instances", on_out,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    pub_img = node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
    pub_pts = node.create_publisher(PointCloud2, "/lidar/points", qos_profile_sensor_data)
    running = [True]

    def spin():
        while running[0] and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)

    th = threading.Thread(target=spin, daemon=True)
    th.start()
    img_msg = conv.rgb_to_image_msg(f.rgb, 0, "camera_optical_frame")
    info_msg = conv.KD_to_camera_info(f.K, f.D, (480, 640), 0, "camera_optical_frame")
    pts_msg = conv.xyzi_to_pointcloud2(cloud, 0, "lidar")
    pts_msg.height, pts_msg.width = 64, 1024
    pts_msg.row_step = 1024 * pts_msg.point_step
    pts_msg.is_dense = False

    def send(stamp: int) -> float:
        for m, s in ((info_msg, stamp), (img_msg, stamp), (pts_msg, stamp + 20_000_000)):
            m.header.stamp = conv.ns_to_time(s)
        t = time.monotonic()
        pub_info.publish(info_msg)
        pub_img.publish(img_msg)
        pub_pts.publish(pts_msg)
        return t

    try:
        print("starting the node ...", flush=True)
        t0 = time.monotonic()
        while pub_img.get_subscription_count() < 1 or "active:" not in (tmp / "node.log").read_text():
            if proc.poll() is not None or time.monotonic() - t0 > 180:
                print((tmp / "node.log").read_text()[-3000:])
                return 1
            time.sleep(0.1)
        time.sleep(1.0)
        print(f"node up in {time.monotonic() - t0:.1f} s; latency phase: {args.frames} closed-loop frames",
              flush=True)
        stamp = 1_700_000_000_000_000_000
        rtt = []
        for k in range(args.frames + 2):
            stamp += 100_000_000
            ts = send(stamp)
            t_wait = time.monotonic()
            while stamp not in got and time.monotonic() - t_wait < 30:
                time.sleep(0.001)
            if stamp in got and k >= 2:          # the first two are warm-up
                rtt.append(1e3 * (got[stamp] - ts))
        lat_closed = latency_from_diagnostics(diags)
        print(f"throughput phase: {args.rate_hz:.0f} Hz input for {args.duration:.0f} s", flush=True)
        time.sleep(1.5)
        n_before = len(got)
        vals0 = pipeline_values_from_diagnostics(diags)
        t_start = time.monotonic()
        sent = 0
        while time.monotonic() - t_start < args.duration:
            stamp += 100_000_000
            send(stamp)
            sent += 1
            time.sleep(max(0.0, t_start + sent / args.rate_hz - time.monotonic()))
        time.sleep(2.0)
        outs = len(got) - n_before
        with lock:
            times = sorted(got.values())[-outs:] if outs else []
        sustained = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        time.sleep(1.2)
        vals = pipeline_values_from_diagnostics(diags)
        lat = latency_from_diagnostics(diags)
    finally:
        running[0] = False
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        th.join(timeout=2)
        node.destroy_node()
        rclpy.try_shutdown()
    res = {
        "device": vals.get("device"), "image": "640x480", "cloud": "64x1024 organised (NaN = no return)",
        "instances_per_frame": float(np.mean(n_inst)) if n_inst else 0.0,
        "round_trip_ms": {"p50": percentile(rtt, 50), "p95": percentile(rtt, 95), "n": len(rtt)},
        "node_latency_ms_closed_loop": lat_closed,
        "throughput": {"input_hz": args.rate_hz, "sent": sent, "outputs": outs, "sustained_hz": sustained,
                       "dropped_superseded": int(vals.get("dropped_superseded", 0))
                       - int(vals0.get("dropped_superseded", 0))},
        "node_latency_ms_open_loop": lat,
    }
    print(f"\ndevice {res['device']}; image 640x480, cloud 64x1024; "
          f"{res['instances_per_frame']:.1f} instances per frame")
    print(f"closed loop: round trip p50 {res['round_trip_ms']['p50']:.0f} ms, p95 {res['round_trip_ms']['p95']:.0f} ms")
    e2e = lat_closed.get("end_to_end", {})
    print(f"closed loop: node image-callback -> ~/instances publish p50 {e2e.get('p50', float('nan')):.0f} ms, "
          f"p95 {e2e.get('p95', float('nan')):.0f} ms")
    print(f"open loop at {args.rate_hz:.0f} Hz: sustained {sustained:.2f} outputs/s "
          f"({outs} of {sent} frames; the rest superseded by newer frames)")
    print("per stage (closed loop) p50 / p95 ms:")
    for stage, v in lat_closed.items():
        print(f"  {stage:22s} {v.get('p50', float('nan')):8.1f} {v.get('p95', float('nan')):8.1f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
