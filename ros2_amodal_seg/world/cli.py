"""``amodal-seg generate``: render a synthetic dataset (and optionally a rosbag2)."""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ros2_amodal_seg.errors import InvalidInputError

log = logging.getLogger(__name__)

#: every preset; the realistic ones (version 2) first: they are the defaults.
PRESET_CHOICES = ("tabletop", "street", "shapes-tabletop", "shapes-street")
REALISTIC_CHOICES = ("tabletop", "street")
#: per-stage timings printed by --bench (Frame.timings keys of the version-2 renderer).
BENCH_STAGES = ("compose", "build", "raycast", "texture", "shading", "imaging", "masks", "lidar", "gt", "total")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="render a synthetic amodal dataset (images, LiDAR, ground truth, optional rosbag2)",
        description=(
            "Render NUM scenes of a preset with Open3D raycasting and write DIR/annotations.json "
            "(presets tabletop and street: real textured models of 13 classes, world.md version 2; "
            "shapes-tabletop and shapes-street: the 5 geometric primitives of version 1) "
            "(COCO-style with amodal fields), DIR/images/*.png, DIR/lidar/*.npy (float32 [N,4]) and "
            "DIR/lidar/*_ids.npy (int32 ground-truth instance id per point). Frame i uses seed SEED+i. "
            "With --bag also DIR/bag/, a rosbag2 with /camera/image_raw, /camera/camera_info, "
            "/lidar/points and /tf_static (camera 10 Hz, LiDAR 10 Hz offset ~20 ms, one camera rig "
            "for the whole bag); with --bag --depth also /camera/depth/image_raw, an RGB-D camera's depth "
            "aligned to the colour image. With --bench only measure frames/s (nothing is written)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="street", help=f"scene family: {', '.join(PRESET_CHOICES)}")
    p.add_argument("--split", default="train", choices=("train", "test"),
                   help="held-out half of models and textures (realistic presets; test = only test models)")
    p.add_argument("--num", type=int, default=10, help="number of frames")
    p.add_argument("--seed", type=int, default=0, help="seed of the first frame (frame i uses SEED+i)")
    p.add_argument("--out", type=Path, default=None, help="output folder (created)")
    p.add_argument("--width", type=int, default=640, help="image width [px]")
    p.add_argument("--height", type=int, default=480, help="image height [px]")
    p.add_argument("--no-lidar", action="store_true", help="skip the LiDAR simulation")
    p.add_argument("--bag", action="store_true", help="also write a rosbag2 into OUT/bag/")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    p.add_argument("--depth", action="store_true",
                   help="with --bag: also write /camera/depth/image_raw, the depth of an RGB-D camera aligned to the "
                        "colour camera (sensor_msgs/Image, REP 118), stamped like the image: the renderer's exact "
                        "depth with a depth camera's errors (ros2_amodal_seg/world/depth_camera.py: noise growing with "
                        "depth squared, no return on depth edges, dark surfaces and beyond 10 m, 1 mm steps; "
                        "deterministic per seed); --no-lidar then makes an RGB-D-only bag")
    p.add_argument("--depth-encoding", choices=("16UC1", "32FC1"), default="16UC1",
                   help="--depth: 16UC1 in millimetres (0 = no return) or 32FC1 in metres (NaN = no return)")
    p.add_argument("--bench", action="store_true",
                   help="benchmark: render NUM frames per preset (both realistic presets unless --preset is "
                        "given explicitly) and print frames/s, the cost per stage and the peak memory; "
                        "writes nothing")
    p.add_argument("--workers", type=int, default=0,
                   help="processes rendering frames in parallel (0: one per CPU core, at most 2, for the "
                        "realistic presets; 1 for the shapes presets); the bytes do not depend on it")
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
    if args.bag and args.no_lidar and not args.depth:
        raise InvalidInputError("--bag needs the LiDAR or --depth: drop --no-lidar or add --depth")
    if args.depth and not args.bag:
        raise InvalidInputError("--depth writes the depth topic of the bag: add --bag")
    if args.workers < 0:
        raise InvalidInputError(f"--workers must be >= 0, got {args.workers}")


def default_workers(preset: str) -> int:
    """Worker processes of ``generate`` when not given: one per core (at most 2) for the
    realistic presets, 1 for the (fast) shapes presets."""
    import os

    if preset not in REALISTIC_CHOICES:
        return 1
    return max(1, min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


#: called in each worker process before it renders (tests and tools may set it); picklable.
WORKER_INITIALIZER = None


def _frame_job(job: tuple):
    preset, seed, width, height, lidar, rig_seed, split = job
    from ros2_amodal_seg.world import render_frame

    return render_frame(preset, seed, width, height, lidar=lidar, rig_seed=rig_seed, split=split)


def _warm_job(preset: str, split: str, seeds: list[int]) -> int:
    """Compose (not render) some scenes: fills a process's caches of models, levels of detail
    and textures. Returns the number of scenes."""
    from ros2_amodal_seg.world.scene import build_scene

    for s in seeds:
        build_scene(preset, int(s), split=split)
    return len(seeds)


def iter_frames(preset: str, seeds, width: int, height: int, *, lidar: bool = True, rig_seed: int | None = None,
                split: str = "train", workers: int = 1, warm_scenes: int = 0):
    """Render frames of ``seeds`` in order, in ``workers`` processes (spawned; a window of
    ``2 * workers`` frames in flight) or in this process when ``workers <= 1``. Every frame
    depends only on its arguments, so the output is the same for any ``workers``.

    Args:
        warm_scenes: first compose this many other scenes per worker (benchmarks: the in-process
            caches reach their steady state; the output does not change).

    Yields:
        :class:`~ros2_amodal_seg.world.render.Frame`.
    """
    from collections import deque

    jobs = [(preset, int(s), width, height, lidar, rig_seed, split) for s in seeds]
    warm = [[900_000 + k * warm_scenes + i for i in range(warm_scenes)] for k in range(max(workers, 1))]
    if workers <= 1 or len(jobs) <= 1:
        if warm_scenes and preset in REALISTIC_CHOICES:
            _warm_job(preset, split, warm[0])
        for j in jobs:
            yield _frame_job(j)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=WORKER_INITIALIZER) as ex:
        if warm_scenes and preset in REALISTIC_CHOICES:
            for fut in [ex.submit(_warm_job, preset, split, w) for w in warm]:
                fut.result()
        it = iter(jobs)
        window = deque(ex.submit(_frame_job, j) for _, j in zip(range(2 * workers), it))
        while window:
            f = window.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                window.append(ex.submit(_frame_job, nxt))
            yield f


def run_bench(presets, num: int, seed: int, width: int, height: int, lidar: bool = True,
              split: str = "train", workers: int | None = None, warm_scenes: int = 20) -> dict[str, dict]:
    """Per preset: ``{"fps": frames/s wall clock, "cpu": CPU seconds per frame of this process
    (all threads; with worker processes only the parent's), "workers": processes, "stages":
    {stage: mean seconds per frame}}`` (stages of the version-2 renderer; masks and LiDAR run
    on worker threads during shading, so the stages add up to more than a frame's wall time).

    Each worker first composes ``warm_scenes`` other scenes and renders one warm-up frame
    (imports and the in-process caches of models, levels of detail and textures reach their
    steady state, as in a long ``generate`` run); the asset cache on disk is assumed built
    (``amodal-seg assets --build-cache``)."""
    out = {}
    for preset in presets:
        nw = default_workers(preset) if workers is None else max(1, int(workers))
        warm = [seed + 100000 + k for k in range(nw)]
        seeds = warm + [seed + i for i in range(num)]
        stages: dict[str, float] = {}
        t0 = c0 = None
        for k, f in enumerate(iter_frames(preset, seeds, width, height, lidar=lidar, split=split, workers=nw,
                                          warm_scenes=warm_scenes)):
            if k == len(warm) - 1:
                t0, c0 = time.perf_counter(), time.process_time()
            if k >= len(warm):
                for key, v in f.timings.items():
                    stages[key] = stages.get(key, 0.0) + v / num
        out[preset] = {"fps": num / (time.perf_counter() - t0), "cpu": (time.process_time() - c0) / num,
                       "stages": stages, "workers": nw}
    return out


@dataclass(frozen=True)
class _Occ:
    """What the statistics keep of an annotation (not its masks)."""

    category_name: str
    occlude_rate: float


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory [MiB] of this process, or of its largest finished child process
    (NaN where unknown)."""
    try:
        import resource

        who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
        return resource.getrusage(who).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return float("nan")


def occlusion_stats(frames_annotations) -> dict:
    """Occlusion statistics of written frames.

    Args:
        frames_annotations: iterable of lists of annotations (objects with ``category_id``,
            ``category_name`` and ``occlude_rate``).

    Returns:
        ``{"frames", "objects", "occluded_share" (> 0.15), "mean_occlusion", "per_class":
        {name: [objects, occluded > 0.15]}}``.
    """
    n_frames, rates, per = 0, [], {}
    for anns in frames_annotations:
        n_frames += 1
        for a in anns:
            rates.append(float(a.occlude_rate))
            c = per.setdefault(a.category_name, [0, 0])
            c[0] += 1
            c[1] += int(a.occlude_rate > 0.15)
    r = np.asarray(rates)
    return {"frames": n_frames, "objects": int(len(r)),
            "occluded_share": float((r > 0.15).mean()) if len(r) else 0.0,
            "mean_occlusion": float(r.mean()) if len(r) else 0.0,
            "per_class": dict(sorted(per.items()))}


def format_stats(stats: dict, preset: str, split: str, skipped: int) -> str:
    """Human-readable occlusion statistics (printed after ``generate``)."""
    lines = [f"occlusion statistics ({preset}, split {split}, {stats['frames']} frames): "
             f"{stats['objects']} annotated objects, {100 * stats['occluded_share']:.1f} % more than 15 % occluded, "
             f"mean occlusion {stats['mean_occlusion']:.3f}; assets skipped: {skipped}"]
    for name, (n, occ) in stats["per_class"].items():
        lines.append(f"  {name:14s} {n:6d} objects, {occ:6d} occluded > 15 %")
    return "\n".join(lines)


def generate(preset: str, num: int, seed: int, out: Path, *, width: int = 640, height: int = 480,
             lidar: bool = True, bag: bool = False, storage: str = "mcap", progress: bool = True,
             split: str = "train", stats: dict | None = None, workers: int = 1, depth: bool = False,
             depth_encoding: str = "16UC1") -> Path:
    """Render and write a dataset (see ``amodal-seg generate --help``); returns annotations.json's path.

    In bag mode every frame uses the camera rig of ``seed`` (one robot), stamps from
    :func:`ros2_amodal_seg.data.bag.frame_stamps`, and each image entry records ``stamp_ns``.
    ``stats``, when given, receives the occlusion statistics (:func:`occlusion_stats`) and
    ``skipped_assets`` (models or textures skipped because they could not be loaded).
    ``workers`` > 1 renders in that many processes (:func:`iter_frames`; same bytes).
    ``depth`` (bag mode) also writes each frame's simulated depth image
    (:func:`~ros2_amodal_seg.world.depth_camera.simulate_depth`, seeded with the frame's seed).
    """
    from tqdm import tqdm

    from ros2_amodal_seg.data.writer import DatasetWriter, ensure_writable_dir

    out = ensure_writable_dir(out)
    writer = DatasetWriter(out, write_lidar=lidar)
    bag_w = None
    cam_st = lid_st = None
    rig_seed = None
    if bag:
        from ros2_amodal_seg.data.bag import SensorBagWriter, frame_stamps
        from ros2_amodal_seg.world.depth_camera import simulate_depth

        rig_seed = seed
        cam_st, lid_st = frame_stamps(num, seed)
        bag_w = SensorBagWriter(out / "bag", storage=storage, depth=depth, depth_encoding=depth_encoding)
    per_frame: list = []
    skipped = 0
    frames = iter_frames(preset, range(seed, seed + num), width, height, lidar=lidar, rig_seed=rig_seed,
                         split=split, workers=workers)
    try:
        for i, f in enumerate(tqdm(frames, total=num, desc=f"generate {preset}", unit="frame", disable=not progress)):
            per_frame.append([_Occ(a.category_name, a.occlude_rate) for a in f.annotations])
            skipped += int(f.skipped_assets)
            if bag_w is not None:
                dmm = simulate_depth(f.depth, f.rgb, int(f.seed)) if depth else None
                bag_w.write_frame(f, int(cam_st[i]), int(lid_st[i]) if lidar else None, depth_mm=dmm)
                writer.add_frame(f, stamp_ns=int(cam_st[i]), lidar_stamp_ns=int(lid_st[i]) if lidar else None,
                                 rig_seed=rig_seed)
            else:
                writer.add_frame(f)
    finally:
        if bag_w is not None:
            bag_w.close()
    path = writer.close()
    if stats is not None:
        stats.update(occlusion_stats(per_frame))
        stats["skipped_assets"] = skipped
    return path


def _run(args) -> int:
    _validate(args)
    import os

    if args.bench:
        import sys

        explicit = any(a == "--preset" or a.startswith("--preset=") for a in sys.argv[1:])
        presets = [args.preset] if explicit else list(REALISTIC_CHOICES)
        res = run_bench(presets, args.num, args.seed, args.width, args.height, lidar=not args.no_lidar,
                        split=args.split, workers=args.workers or None)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        for p, r in res.items():
            warm = " after warming the caches on 20 scenes" if p in REALISTIC_CHOICES else ""
            print(f"{p}: {r['fps']:.2f} frames/s at {args.width}x{args.height}"
                  f"{'' if args.no_lidar else ' with LiDAR'} ({args.num} frames{warm}, {r['workers']} worker process(es), "
                  f"{r['cpu']:.3f} CPU-s/frame in this process, {os.cpu_count()} cores, load average {load:.1f})")
            if r["stages"]:
                print("  ms/frame: " + ", ".join(f"{k} {1e3 * r['stages'][k]:.1f}" for k in BENCH_STAGES
                                                 if k in r["stages"])
                      + "  (wall time per stage in the worker; masks and lidar run on threads meanwhile)")
            if "cpu" in r["stages"]:
                cpu = r["stages"]["cpu"]
                cores = min(r["workers"], os.cpu_count() or 1)
                print(f"  CPU {cpu:.3f} s/frame in the workers (all threads): {cores / cpu:.1f} frames/s on "
                      f"{cores} idle core(s)")
        child = peak_rss_mb(children=True)
        print(f"peak memory {peak_rss_mb():.0f} MiB in this process"
              + (f", {child:.0f} MiB in the largest worker process" if child > 0 else ""))
        return 0
    stats: dict = {}
    path = generate(args.preset, args.num, args.seed, args.out, width=args.width, height=args.height,
                    lidar=not args.no_lidar, bag=args.bag, storage=args.storage,
                    progress=not args.no_progress, split=args.split, stats=stats,
                    workers=args.workers or default_workers(args.preset), depth=args.depth,
                    depth_encoding=args.depth_encoding)
    print(f"wrote {args.num} frames to {path.parent} (annotations: {path})"
          + (f", bag: {path.parent / 'bag'}" if args.bag else ""))
    print(format_stats(stats, args.preset, args.split, stats.get("skipped_assets", 0)))
    return 0
