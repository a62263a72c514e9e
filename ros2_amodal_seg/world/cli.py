"""``amodal-seg generate``: render a synthetic dataset (and optionally a rosbag2)."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ros2_amodal_seg.errors import InvalidInputError

log = logging.getLogger(__name__)

PRESET_CHOICES = ("tabletop", "street")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="render a synthetic amodal dataset (images, LiDAR, ground truth, optional rosbag2)",
        description=(
            "Render NUM scenes of a preset with Open3D raycasting and write DIR/annotations.json "
            "(COCO-style with amodal fields), DIR/images/*.png, DIR/lidar/*.npy (float32 [N,4]) and "
            "DIR/lidar/*_ids.npy (int32 ground-truth instance id per point). Frame i uses seed SEED+i. "
            "With --bag also DIR/bag/, a rosbag2 with /camera/image_raw, /camera/camera_info, "
            "/lidar/points and /tf_static (camera 10 Hz, LiDAR 10 Hz offset ~20 ms, one camera rig "
            "for the whole bag). With --bench only measure frames/s (nothing is written)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="street", help=f"scene family: {', '.join(PRESET_CHOICES)}")
    p.add_argument("--num", type=int, default=10, help="number of frames")
    p.add_argument("--seed", type=int, default=0, help="seed of the first frame (frame i uses SEED+i)")
    p.add_argument("--out", type=Path, default=None, help="output folder (created)")
    p.add_argument("--width", type=int, default=640, help="image width [px]")
    p.add_argument("--height", type=int, default=480, help="image height [px]")
    p.add_argument("--no-lidar", action="store_true", help="skip the LiDAR simulation")
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 into OUT/bag/")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    p.add_argument("--bench", action="store_true",
                   help="benchmark: render NUM frames per preset (both presets unless --preset is given "
                        "explicitly) and print frames/s; writes nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run, _preset_given=False)


def _validate(args) -> None:
    if args.preset not in PRESET_CHOICES:
        raise InvalidInputError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESET_CHOICES)}")
    if args.num <= 0:
        raise InvalidInputError(f"--num must be > 0, got {args.num}")
    if args.seed < 0:
        raise InvalidInputError(f"--seed must be >= 0, got {args.seed}")
    if args.width < 8 or args.height < 8:
        raise InvalidInputError(f"--width/--height must be >= 8, got {args.width} x {args.height}")
    if not args.bench and args.out is None:
        raise InvalidInputError("--out DIR is required (or use --bench)")
    if args.bag and args.no_lidar:
        raise InvalidInputError("--bag needs the LiDAR: drop --no-lidar")


def run_bench(presets, num: int, seed: int, width: int, height: int,
              lidar: bool = True) -> dict[str, tuple[float, float]]:
    """Per preset: (frames/s wall clock, CPU seconds per frame of this process, all threads),
    after one warm-up frame."""
    from ros2_amodal_seg.world import render_frame

    out = {}
    for preset in presets:
        render_frame(preset, seed, width, height, lidar=lidar)     # warm-up (imports, BVH code paths)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(num):
            render_frame(preset, seed + i, width, height, lidar=lidar)
        out[preset] = (num / (time.perf_counter() - t0), (time.process_time() - c0) / num)
    return out


def generate(preset: str, num: int, seed: int, out: Path, *, width: int = 640, height: int = 480,
             lidar: bool = True, bag: bool = False, storage: str = "mcap", progress: bool = True) -> Path:
    """Render and write a dataset (see ``amodal-seg generate --help``); returns annotations.json's path.

    In bag mode every frame uses the camera rig of ``seed`` (one robot), stamps from
    :func:`ros2_amodal_seg.data.bag.frame_stamps`, and each image entry records ``stamp_ns``.
    """
    from tqdm import tqdm

    from ros2_amodal_seg.data.writer import DatasetWriter, ensure_writable_dir
    from ros2_amodal_seg.world import render_frame

    out = ensure_writable_dir(out)
    writer = DatasetWriter(out, write_lidar=lidar)
    bag_w = None
    cam_st = lid_st = None
    rig_seed = None
    if bag:
        from ros2_amodal_seg.data.bag import SensorBagWriter, frame_stamps

        rig_seed = seed
        cam_st, lid_st = frame_stamps(num, seed)
        bag_w = SensorBagWriter(out / "bag", storage=storage)
    try:
        for i in tqdm(range(num), desc=f"generate {preset}", unit="frame", disable=not progress):
            f = render_frame(preset, seed + i, width, height, lidar=lidar, rig_seed=rig_seed)
            if bag_w is not None:
                bag_w.write_frame(f, int(cam_st[i]), int(lid_st[i]))
                writer.add_frame(f, stamp_ns=int(cam_st[i]), lidar_stamp_ns=int(lid_st[i]), rig_seed=rig_seed)
            else:
                writer.add_frame(f)
    finally:
        if bag_w is not None:
            bag_w.close()
    return writer.close()


def _run(args) -> int:
    _validate(args)
    if args.bench:
        import sys

        explicit = any(a == "--preset" or a.startswith("--preset=") for a in sys.argv[1:])
        presets = [args.preset] if explicit else list(PRESET_CHOICES)
        res = run_bench(presets, args.num, args.seed, args.width, args.height, lidar=not args.no_lidar)
        import os

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        for p, (fps, cpu) in res.items():
            print(f"{p}: {fps:.2f} frames/s at {args.width}x{args.height}"
                  f"{'' if args.no_lidar else ' with LiDAR'} ({args.num} frames, {cpu:.3f} CPU-s/frame, "
                  f"{os.cpu_count()} cores, load average {load:.1f})")
        return 0
    path = generate(args.preset, args.num, args.seed, args.out, width=args.width, height=args.height,
                    lidar=not args.no_lidar, bag=args.bag, storage=args.storage,
                    progress=not args.no_progress)
    print(f"wrote {args.num} frames to {path.parent} (annotations: {path})"
          + (f", bag: {path.parent / 'bag'}" if args.bag else ""))
    return 0
