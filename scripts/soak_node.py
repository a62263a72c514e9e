#!/usr/bin/env python3
"""Soak the amodal_seg node: a 30 Hz camera and a 10 Hz LiDAR for N minutes, the node as its own
process over loopback DDS, as a robot drives it.

1. Closed loop: frames are sent one at a time, each after the previous output: the
   node's closed-loop rate on this machine.
2. Open loop: images + camera_info at ``--camera-hz`` and clouds at ``--lidar-hz``, each
   cloud stamped ``--offset-ms`` from its image (drivers stamp either side). Halfway, every
   stamp jumps back to the start (a bag loop). The node's resident memory is sampled
   every second.
3. SIGINT, as Ctrl-C on a robot: the node must exit cleanly.

Printed: the open-loop output rate against the closed-loop rate, the largest gap between
consecutive outputs measured in the outputs' own stamps (the image stamps; across the bag
loop the jump is taken out), how long after the loop the first output came (in stamps),
the memory growth after the first minute, the node's drop and error counters, and the exit
code after SIGINT.

    .venv/bin/python scripts/soak_node.py --minutes 10 --offset-ms -2
    .venv/bin/python scripts/soak_node.py --minutes 1 --checkpoint tiny.safetensors --width 320 --height 240
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

from ros2_amodal_seg.benchmarks import add_output_args, checkpoint_label, save_outputs

T0 = 1_800_000_000_000_000_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="open-loop duration [min] (default 10)")
    ap.add_argument("--offset-ms", type=float, default=-2.0, help="cloud stamp minus image stamp [ms] (default -2)")
    ap.add_argument("--camera-hz", type=float, default=30.0, help="image + camera_info rate (default 30)")
    ap.add_argument("--lidar-hz", type=float, default=10.0, help="cloud rate (default 10)")
    ap.add_argument("--closed-loop-frames", type=int, default=150,
                    help="frames of the closed-loop phase, the denominator of the rate target (default 150, about "
                         "25 s on 2 CPU cores; a short closed loop makes the ratio noisy: docs/history.md)")
    ap.add_argument("--no-loop", action="store_true", help="no stamp jump back halfway")
    ap.add_argument("--checkpoint", default="", help="node checkpoint (default: the shipped one)")
    ap.add_argument("--device", default="cpu", help="node device: cpu (default), cuda or auto")
    ap.add_argument("--width", type=int, default=640, help="image width [px] (default 640)")
    ap.add_argument("--height", type=int, default=480, help="image height [px] (default 480)")
    ap.add_argument("--torch-threads", type=int, default=0, help="node torch_threads (0 = torch default)")
    ap.add_argument("--domain", type=int, default=94, help="ROS_DOMAIN_ID (loopback only; default 94)")
    add_output_args(ap)
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.camera_hz <= 0 or args.lidar_hz <= 0 or args.closed_loop_frames < 3:
        ap.error("--minutes, --camera-hz and --lidar-hz must be > 0, --closed-loop-frames >= 3")
    return args


def unwrap_loop(stamps: list[int], jump_ns: int) -> tuple[list[int], int | None]:
    """Output stamps [ns] in arrival order with the bag loop taken out: from the first stamp
    smaller than the one before on, ``jump_ns`` is added. Returns (stamps, index of that output)."""
    out, shift, first = [], 0, None
    for k, s in enumerate(stamps):
        if out and first is None and s + shift < out[-1]:
            shift, first = jump_ns, k
        out.append(s + shift)
    return out, first


def run(args: argparse.Namespace, log=print) -> dict:
    import numpy as np  # noqa: PLC0415

    from ros2_amodal_seg.ros.conversions import ns_to_time  # noqa: PLC0415
    from ros2_amodal_seg.ros.drive import NodeProcess, Peer  # noqa: PLC0415
    from ros2_amodal_seg.ros.malformed import GoodFrame  # noqa: PLC0415
    from ros2_amodal_seg.model.checkpoint import world_preset  # noqa: PLC0415
    from ros2_amodal_seg.world import render_frame  # noqa: PLC0415

    f = render_frame(world_preset(args.checkpoint, "street"), 7, args.width, args.height)
    good = GoodFrame(rgb=f.rgb, K=f.K, D=f.D, points=f.lidar_points, organised=(64, 1024))
    params = {"checkpoint": args.checkpoint, "device": args.device, "torch_threads": args.torch_threads,
              "publish_overlay": False, "diagnostics_period_s": 1.0,
              "T_camera_lidar": [float(v) for v in np.asarray(f.T_camera_lidar).ravel()],
              "T_base_camera": [float(v) for v in np.asarray(f.T_base_camera).ravel()]}
    img, info, cloud = good.image(0), good.info(0), good.cloud(0)
    offset = int(args.offset_ms * 1e6)
    node = NodeProcess(params, domain_id=args.domain)
    rss: list[tuple[float, float]] = []          # (seconds into the open loop, MB)
    stop = threading.Event()
    with Peer(domain_id=args.domain) as peer:
        node.start()
        try:
            log(f"node up after {node.wait_ready(peer):.1f} s (pid {node.pid})")

            def send(stamp: int, with_cloud: bool = True) -> None:
                info.header.stamp = img.header.stamp = ns_to_time(stamp)
                peer.pub["camera_info"].publish(info)
                peer.pub["image"].publish(img)
                if with_cloud:
                    cloud.header.stamp = ns_to_time(stamp + offset)
                    peer.pub["cloud"].publish(cloud)

            # ---- closed loop
            stamp, times = T0, []
            for k in range(args.closed_loop_frames + 2):
                stamp += 100_000_000
                send(stamp)
                peer.wait_for(lambda s=stamp: peer.has_output(s), 60.0)
                if k >= 1:                               # the first frame is warm-up
                    times.append(time.monotonic())
            closed_rate = (len(times) - 1) / (times[-1] - times[0])
            log(f"closed loop: {closed_rate:.2f} frames/s over {args.closed_loop_frames} frames")
            base = peer.settled_diag_values(("frames_processed",), reports=2)
            n_closed = peer.output_count()
            # ---- open loop
            duration = 60.0 * args.minutes
            jump_at = None if args.no_loop else duration / 2
            t_img, t_cloud = 1.0 / args.camera_hz, 1.0 / args.lidar_hz
            sampled: dict = {"images": 0, "clouds": 0, "jump_stamp": None, "max_lag_s": 0.0}
            t_start = time.monotonic()
            s0 = stamp + 1_000_000_000

            def publisher() -> None:
                k_img = k_cloud = 0
                shift = 0
                while not stop.is_set():
                    now = time.monotonic() - t_start
                    if now >= duration:
                        break
                    if jump_at is not None and shift == 0 and now >= jump_at:
                        shift = int(jump_at * 1e9)               # every stamp jumps back to the start
                    nxt_img, nxt_cloud = k_img * t_img, k_cloud * t_cloud
                    if now >= nxt_img:
                        sampled["max_lag_s"] = max(sampled["max_lag_s"], now - nxt_img)
                        stamp_i = s0 + int(nxt_img * 1e9) - shift
                        if shift and sampled["jump_stamp"] is None:
                            sampled["jump_stamp"] = stamp_i
                        send(stamp_i, with_cloud=False)
                        k_img += 1
                    if now >= nxt_cloud:
                        cloud.header.stamp = ns_to_time(s0 + int(nxt_cloud * 1e9) - shift + offset)
                        peer.pub["cloud"].publish(cloud)
                        k_cloud += 1
                    wait = min(k_img * t_img, k_cloud * t_cloud) - (time.monotonic() - t_start)
                    if wait > 0:
                        time.sleep(wait)
                sampled["images"], sampled["clouds"] = k_img, k_cloud

            th = threading.Thread(target=publisher, daemon=True)
            th.start()
            next_log = 60.0
            while th.is_alive():
                t = time.monotonic() - t_start
                rss.append((t, node.rss_kb() / 1024))
                if t >= next_log:
                    log(f"  {t / 60:.0f} min: {peer.output_count() - n_closed} outputs, RSS {rss[-1][1]:.0f} MB")
                    next_log += 60.0
                time.sleep(1.0)
            th.join()
            open_wall = time.monotonic() - t_start
            keys = ("images_received", "frames_processed", "dropped_total", "processing_errors", "frames_pending")
            final = peer.settled_diag_values(keys, reports=2, timeout_s=60.0)
            from ros2_amodal_seg.ros.session import latency_from_diagnostics  # noqa: PLC0415

            with peer.lock:
                latency = latency_from_diagnostics(list(peer.diagnostics))
        finally:
            stop.set()
            t_sig = time.monotonic()
            rc = node.stop(timeout_s=30.0)
            exit_s = time.monotonic() - t_sig
    outs = peer.output_stamps()[n_closed:]
    stamps, first_after = unwrap_loop([s for _, s in outs], int(jump_at * 1e9) if jump_at is not None else 0)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    gap = max(gaps, default=0) / 1e9
    gap_at = (stamps[gaps.index(max(gaps))] - stamps[0]) / 1e9 if gaps else None
    recovery = None
    if sampled["jump_stamp"] is not None:
        recovery = (outs[first_after][1] - sampled["jump_stamp"]) / 1e9 if first_after is not None else float("inf")
    open_rate = (len(outs) - 1) / (outs[-1][0] - outs[0][0]) if len(outs) > 1 else 0.0
    after_min = [m for t, m in rss if t >= min(60.0, duration / 2)]
    counters = {k: int(final.get(k, "0")) - int(base.get(k, "0")) for k in keys if k != "frames_pending"}
    for k in ("dropped_superseded", "dropped_stale", "dropped_time_jump", "messages_lost_image",
              "messages_lost_cloud", "messages_lost_camera_info", "frames_paired", "frames_unpaired"):
        counters[k] = int(final.get(k, "0")) - int(base.get(k, "0"))
    res = {
        "minutes": args.minutes, "camera_hz": args.camera_hz, "lidar_hz": args.lidar_hz, "offset_ms": args.offset_ms,
        "image": f"{args.width}x{args.height}", "cloud": "64x1024 organised", "checkpoint": checkpoint_label(args.checkpoint),
        "closed_loop_hz": closed_rate, "closed_loop_frames": args.closed_loop_frames, "open_loop_hz": open_rate,
        "rate_ratio": open_rate / closed_rate,
        "outputs": len(outs), "images_sent": sampled["images"], "clouds_sent": sampled["clouds"],
        "max_gap_s": gap, "max_gap_at_s": gap_at, "publisher_max_lag_s": sampled["max_lag_s"],
        "loop_recovery_s": recovery, "rss_mb_start": rss[0][1] if rss else None,
        "rss_mb_after_first_minute": after_min[0] if after_min else None, "rss_mb_end": rss[-1][1] if rss else None,
        "rss_growth_after_first_minute_mb": (max(after_min) - after_min[0]) if after_min else None,
        "counters": counters, "frames_pending_at_end": int(final.get("frames_pending", "0")),
        "node_latency_ms": latency, "sigint_exit_code": rc, "sigint_exit_s": exit_s, "open_loop_wall_s": open_wall,
    }
    return res


def report(res: dict, log=print) -> None:
    log(f"\n{res['minutes']:g} min at {res['camera_hz']:g} / {res['lidar_hz']:g} Hz, clouds {res['offset_ms']:+g} ms "
        f"from their image, {res['image']} + {res['cloud']}")
    log(f"output rate {res['open_loop_hz']:.2f}/s = {100 * res['rate_ratio']:.1f} % of the closed-loop "
        f"{res['closed_loop_hz']:.2f}/s ({res['outputs']} outputs for {res['images_sent']} images)")
    log(f"largest gap between outputs (their stamps): {res['max_gap_s']:.2f} s, {res['max_gap_at_s']:.0f} s in; "
        f"publisher lag at most {res['publisher_max_lag_s']:.2f} s; first output after the bag loop: "
        + (f"{res['loop_recovery_s']:.2f} s" if res["loop_recovery_s"] is not None else "no loop"))
    log(f"RSS {res['rss_mb_start']:.0f} MB at the start, {res['rss_mb_after_first_minute']:.0f} MB after the first "
        f"minute, {res['rss_mb_end']:.0f} MB at the end (growth after the first minute: "
        f"{res['rss_growth_after_first_minute_mb']:.1f} MB)")
    log(f"counters: {res['counters']}")
    log(f"SIGINT: exit code {res['sigint_exit_code']} after {res['sigint_exit_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = run(args)
    report(res)
    save_outputs(res, args)
    ok = (res["max_gap_s"] <= 1.0 and res["rate_ratio"] >= 0.9 and res["sigint_exit_code"] == 0
          and (res["loop_recovery_s"] is None or res["loop_recovery_s"] <= 1.0)
          and (res["rss_growth_after_first_minute_mb"] or 0.0) < 20.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
