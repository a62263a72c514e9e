"""``amodal-seg``: the command-line entry point.

Each sub-command lives with its subsystem and registers itself through a
``register(subparsers)`` function; heavy imports (torch, open3d, rclpy) happen
inside the handlers so that ``amodal-seg --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ros2_amodal_seg.errors import AmodalSegError
from ros2_amodal_seg.version import __version__

#: modules that contribute sub-commands (each has ``register(subparsers)``).
COMMAND_MODULES: tuple[str, ...] = (
    "ros2_amodal_seg.world.cli",      # generate
    "ros2_amodal_seg.world.assets_cli",  # assets
    "ros2_amodal_seg.model.cli",      # train, predict, evaluate, export, bench
    "ros2_amodal_seg.fusion.cli",     # fusion-bench, fusion-eval
    "ros2_amodal_seg.ros.bag_cli",    # replay, record
    "ros2_amodal_seg.ros.doctor_cli",  # doctor
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amodal-seg",
        description="Amodal instance segmentation + LiDAR fusion for ROS 2: synthetic data, "
                    "training, evaluation, benchmarks and rosbag tools.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:  # that subsystem is not part of this build
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AmodalSegError as exc:
        print(f"amodal-seg {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
