#!/usr/bin/env python3
"""Benchmark the amodal_seg node end to end, the node as its own process over loopback DDS.

1. Closed loop: one 640x480 image + camera_info + a 64x1024 organised PointCloud2 at a time,
   each after the previous output: the round trip (publish -> ~/instances received) and the
   node's own latency (image callback -> outputs published), p50 / p95.
2. Open loop: image, camera_info and cloud at ``--rate-hz`` for ``--duration`` seconds (the
   cloud stamped 2 ms before its image): the sustained output rate, the node's latency p50 /
   p95 and per-stage p50 / p95 (from its /diagnostics), and the frames it dropped (it always
   processes the newest frame).

    .venv/bin/python scripts/bench_node.py                                   # shipped checkpoint, CPU
    .venv/bin/python scripts/bench_node.py --rate-hz 10 --duration 60 --record node_cpu_10hz
    .venv/bin/python scripts/bench_node.py --set complete_hidden=false       # any inference setting
"""
from __future__ import annotations

import argparse
import sys
import time

from ros2_amodal_seg.benchmarks import add_output_args, checkpoint_label, save_outputs

T0 = 1_800_000_000_000_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="", help="checkpoint (default: the shipped one)")
    ap.add_argument("--device", default="cpu", help="node device: cpu (default), cuda or auto")
    ap.add_argument("--preset", default="street", help="street or tabletop: the test frame, from the checkpoint's world (default street)")
    ap.add_argument("--frames", type=int, default=20, help="closed-loop frames (default 20)")
    ap.add_argument("--rate-hz", type=float, default=10.0, help="open-loop input rate (default 10)")
    ap.add_argument("--duration", type=float, default=30.0, help="open-loop seconds (default 30)")
    ap.add_argument("--torch-threads", type=int, default=0, help="node torch_threads (0 = torch default)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                    help="an inference setting of the node (inference.KEY), repeatable: config/inference.yaml")
    ap.add_argument("--domain", type=int, default=95, help="ROS_DOMAIN_ID (loopback only; default 95)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    if args.frames < 3 or args.rate_hz <= 0 or args.duration <= 0:
        ap.error("--frames must be >= 3, --rate-hz and --duration > 0")
    return args


def run(args: argparse.Namespace, log=print) -> dict:
    import numpy as np  # noqa: PLC0415

    from ros2_amodal_seg.model.inference_config import parse_override  # noqa: PLC0415
    from ros2_amodal_seg.ros.conversions import ns_to_time  # noqa: PLC0415
    from ros2_amodal_seg.ros.drive import NodeProcess, Peer  # noqa: PLC0415
    from ros2_amodal_seg.ros.malformed import GoodFrame  # noqa: PLC0415
    from ros2_amodal_seg.ros.session import latency_from_diagnostics  # noqa: PLC0415
    from ros2_amodal_seg.runtime.stats import percentile  # noqa: PLC0415
    from ros2_amodal_seg.model.checkpoint import world_preset  # noqa: PLC0415
    from ros2_amodal_seg.world import render_frame  # noqa: PLC0415

    preset = world_preset(args.checkpoint, args.preset)
    log(f"rendering a 640x480 {preset} frame ...")
    f = render_frame(preset, 7, 640, 480)
    good = GoodFrame(rgb=f.rgb, K=f.K, D=f.D, points=f.lidar_points, organised=(64, 1024))
    params = {"checkpoint": args.checkpoint, "device": args.device, "torch_threads": args.torch_threads,
              "publish_overlay": False, "diagnostics_period_s": 1.0,
              "T_camera_lidar": [float(v) for v in np.asarray(f.T_camera_lidar).ravel()],
              "T_base_camera": [float(v) for v in np.asarray(f.T_base_camera).ravel()],
              **{f"inference.{k}": v for k, v in map(parse_override, args.overrides)}}
    img, info, cloud = good.image(0), good.info(0), good.cloud(0)

    def send(peer, stamp: int) -> float:
        info.header.stamp = img.header.stamp = ns_to_time(stamp)
        cloud.header.stamp = ns_to_time(stamp - 2_000_000)
        t = time.monotonic()
        for key, m in (("camera_info", info), ("cloud", cloud), ("image", img)):
            peer.pub[key].publish(m)
        return t

    node = NodeProcess(params, domain_id=args.domain)
    with Peer(domain_id=args.domain, keep_messages=True) as peer:
        node.start()
        try:
            log(f"node up after {node.wait_ready(peer):.1f} s; closed loop: {args.frames} frames")
            stamp, rtt = T0, []
            for k in range(args.frames + 2):
                stamp += 100_000_000
                t_sent = send(peer, stamp)
                if peer.wait_for(lambda s=stamp: peer.has_output(s), 60.0) and k >= 2:   # two warm-up frames
                    t_out = next(t for t, s in peer.output_stamps() if s == stamp)
                    rtt.append(1e3 * (t_out - t_sent))
            time.sleep(1.5)
            with peer.lock:
                lat_closed = latency_from_diagnostics(list(peer.diagnostics))
                n_inst = [len(m.instances) for m in peer.messages["instances"]]
            base = peer.settled_diag_values(("frames_processed",), reports=2)
            n0 = peer.output_count()
            log(f"open loop: {args.rate_hz:g} Hz for {args.duration:g} s")
            sent, t_start = 0, time.monotonic()
            while time.monotonic() - t_start < args.duration:
                stamp += int(1e9 / args.rate_hz)
                send(peer, stamp)
                sent += 1
                time.sleep(max(0.0, t_start + sent / args.rate_hz - time.monotonic()))
            time.sleep(2.0)
            final = peer.settled_diag_values(("frames_processed",), reports=2)
            with peer.lock:
                lat_open = latency_from_diagnostics(list(peer.diagnostics))
            outs = peer.output_stamps()[n0:]
        finally:
            node.stop()
    times = [t for t, _ in outs]
    sustained = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    dropped = {k: int(final.get(k, "0")) - int(base.get(k, "0")) for k in final if k.startswith("dropped_")}
    res = {"device": final.get("device"), "image": "640x480", "cloud": "64x1024 organised",
           "preset": preset, "checkpoint": checkpoint_label(args.checkpoint), "overrides": args.overrides,
           "instances_per_frame": float(np.mean(n_inst)) if n_inst else 0.0,
           "closed_loop": {"round_trip_ms": {"p50": percentile(rtt, 50), "p95": percentile(rtt, 95), "n": len(rtt)},
                           "node_ms": lat_closed},
           "open_loop": {"input_hz": args.rate_hz, "seconds": args.duration, "sent": sent, "outputs": len(outs),
                         "sustained_hz": sustained, "dropped": dropped, "node_ms": lat_open}}
    return res


def report(res: dict, log=print) -> None:
    c, o = res["closed_loop"], res["open_loop"]
    e2e_c, e2e_o = c["node_ms"].get("end_to_end", {}), o["node_ms"].get("end_to_end", {})
    log(f"\ndevice {res['device']}; {res['image']} + {res['cloud']}; {res['instances_per_frame']:.1f} instances per frame")
    log(f"closed loop: round trip p50 {c['round_trip_ms']['p50']:.0f} ms, p95 {c['round_trip_ms']['p95']:.0f} ms; "
        f"node p50 {e2e_c.get('p50', float('nan')):.0f} ms, p95 {e2e_c.get('p95', float('nan')):.0f} ms")
    log(f"open loop at {o['input_hz']:g} Hz: {o['sustained_hz']:.2f} outputs/s sustained ({o['outputs']} of "
        f"{o['sent']} frames), node p50 {e2e_o.get('p50', float('nan')):.0f} ms, "
        f"p95 {e2e_o.get('p95', float('nan')):.0f} ms; dropped {o['dropped']}")
    log("per stage (open loop), p50 / p95 ms:")
    for k, v in o["node_ms"].items():
        log(f"  {k:28s} {v.get('p50', float('nan')):7.1f} {v.get('p95', float('nan')):7.1f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    report(res)
    save_outputs(res, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
