"""``amodal-seg replay`` and ``amodal-seg record``: rosbag2 tools (rclpy + rosbags)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="publish a rosbag2 with its original timing (scaled by --rate)",
        description="Publish the messages of a rosbag2 (mcap or sqlite3) as serialized bytes with the "
                    "original timing. QoS from the bag's metadata (sensor-data otherwise); /tf_static is "
                    "reliable + transient-local. Types without an importable Python module (e.g. "
                    "tf2_msgs here) are skipped with a warning. Set ROS_DOMAIN_ID etc. as usual.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bag", type=Path, help="rosbag2 folder")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start over at the end")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag's log time")
    p.add_argument("--start-delay", type=float, default=0.5, help="seconds to wait for discovery first")
    p.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="wait until every topic has N subscribers before starting (0 = no wait)")
    p.add_argument("--wait-timeout", type=float, default=30.0, help="max seconds for --wait-subscribers")
    p.set_defaults(func=_replay)

    r = subparsers.add_parser(
        "record", help="record topics into an mcap rosbag2 (including ros2_amodal_seg/msg types)",
        description="Subscribe to TOPIC... (types discovered from the graph) and write the serialized "
                    "messages to a new rosbag2 with rosbags. Stops after --duration seconds, --count "
                    "messages in total, or Ctrl-C.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("topics", nargs="+", metavar="TOPIC")
    r.add_argument("--out", type=Path, required=True, help="new bag folder")
    r.add_argument("--duration", type=float, default=0.0, help="seconds to record (0 = until --count / Ctrl-C)")
    r.add_argument("--count", type=int, default=0, help="messages to record in total (0 = no limit)")
    r.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    r.add_argument("--discovery-timeout", type=float, default=10.0, help="seconds to wait for publishers")
    r.set_defaults(func=_record)


def _replay(args) -> int:
    from ros2_amodal_seg.ros.replay import ReplayConfig, replay

    cfg = ReplayConfig(rate=args.rate, loop=args.loop, topics=tuple(args.topics) if args.topics else None,
                       clock=args.clock, start_delay_s=args.start_delay,
                       wait_subscribers=args.wait_subscribers, wait_timeout_s=args.wait_timeout)
    try:
        counts = replay(args.bag, cfg)
    except KeyboardInterrupt:
        return 130
    print("published " + ", ".join(f"{t}: {n}" for t, n in counts.items()))
    return 0


def _record(args) -> int:
    from ros2_amodal_seg.ros.record import RecordConfig, record

    cfg = RecordConfig(duration_s=args.duration, count=args.count, storage=args.storage,
                       discovery_timeout_s=args.discovery_timeout)
    try:
        counts = record(args.out, args.topics, cfg)
    except KeyboardInterrupt:
        return 130
    print(f"recorded into {args.out}: " + ", ".join(f"{t}: {n}" for t, n in counts.items()))
    return 0
