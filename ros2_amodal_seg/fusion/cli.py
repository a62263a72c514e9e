"""``amodal-seg fusion-bench`` and ``amodal-seg fusion-eval`` (heavy imports inside handlers)."""
from __future__ import annotations

import argparse
from pathlib import Path


def _seeds(text: str) -> list[int]:
    """``"A:B"`` -> ``range(A, B)``; ``"1,5,9"`` -> that list."""
    try:
        if ":" in text:
            a, b = text.split(":")
            out = list(range(int(a), int(b)))
        else:
            out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"seeds must be A:B or a comma list, got {text!r}") from exc
    if not out:
        raise argparse.ArgumentTypeError(f"empty seed set {text!r}")
    return out


def _load_config(args: argparse.Namespace):
    from ros2_amodal_seg.fusion.pipeline import FusionConfig

    if args.config:
        import yaml

        from ros2_amodal_seg.errors import ConfigError

        try:
            presets = (yaml.safe_load(Path(args.config).read_text()) or {}).get("presets", {}) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read fusion config {args.config}: {exc}") from exc
        # the file's top level holds the street settings; apply its preset block when it has one
        # (with --source depth the family's depth block, e.g. tabletop_depth, when there is one)
        fam = _family(args.preset)
        source = getattr(args, "source", "lidar")
        if source == "depth" and f"{fam}_depth" in presets:
            fam = f"{fam}_depth"
        return FusionConfig.from_yaml(args.config, preset=fam if fam in presets else None)
    return FusionConfig.for_preset(_family(args.preset), source=getattr(args, "source", "lidar"))


def _family(preset: str) -> str:
    """Fusion settings name (street / tabletop) of a world preset name (shapes-street -> street)."""
    from ros2_amodal_seg.world.presets import get_preset

    return get_preset(preset).family


def synthetic_bench_input(beams: int = 64, azimuth_steps: int = 1024, n_instances: int = 15, width: int = 640,
                          height: int = 480, seed: int = 0):
    """A self-contained benchmark frame: a spinning-LiDAR cloud (``beams x azimuth_steps``
    returns, all valid: ground plane, a ring of walls, boxes in front of the camera) and
    ``n_instances`` elliptic amodal/visible masks. Returns a dict of ``run`` arguments."""
    import numpy as np

    from ros2_amodal_seg.types import Instances2D

    rng = np.random.default_rng(seed)
    el = np.deg2rad(np.linspace(-25.0, 15.0, beams))
    az = np.linspace(-np.pi, np.pi, azimuth_steps, endpoint=False)
    E, A = np.meshgrid(el, az, indexing="ij")
    d = np.stack([np.cos(E) * np.cos(A), np.cos(E) * np.sin(A), np.sin(E)], -1).reshape(-1, 3)  # lidar frame
    h = 1.8                                              # lidar height over ground [m]
    t_ground = np.where(d[:, 2] < -1e-6, h / np.maximum(-d[:, 2], 1e-6), np.inf)
    t_wall = 30.0 / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-6)
    t = np.minimum(t_ground, t_wall)
    # a few obstacles ahead: clip rays that enter their boxes' front face
    for _ in range(n_instances):
        x0, y0 = rng.uniform(5, 25), rng.uniform(-6, 6)
        face = (d[:, 0] > 0) & (np.abs(d[:, 1] / d[:, 0] * x0 - y0) < 0.8)
        tz = x0 / np.maximum(d[:, 0], 1e-6)
        face &= (d[:, 2] * tz + h) < 1.5
        t = np.where(face & (tz < t), tz, t)
    pts = (d * t[:, None]).astype(np.float32)
    pts = np.concatenate([pts, rng.uniform(0, 1, (len(pts), 1)).astype(np.float32)], axis=1)  # [P, 4]
    f = 550.0
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    # camera optical frame: x right = -y_lidar, y down = -z_lidar, z forward = x_lidar; lidar 0.3 m above
    R_cl = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)
    T_camera_lidar = np.eye(4)
    T_camera_lidar[:3, :3] = R_cl
    T_camera_lidar[:3, 3] = R_cl @ np.array([0.2, 0.0, 0.3])
    T_base_camera = np.eye(4)
    T_base_camera[:3, :3] = R_cl.T
    T_base_camera[:3, 3] = [0.0, 0.0, 1.5]
    yy, xx = np.mgrid[0:height, 0:width]
    amodal = np.zeros((n_instances, height, width), bool)
    for k in range(n_instances):
        cx, cy = rng.uniform(40, width - 40), rng.uniform(height / 2, height - 40)
        ax, ay = rng.uniform(15, 60), rng.uniform(15, 50)
        amodal[k] = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
    visible = amodal.copy()
    taken = np.zeros((height, width), bool)
    for k in range(n_instances):               # earlier instances are in front
        visible[k] &= ~taken
        taken |= amodal[k]
    inst = Instances2D(amodal, visible, rng.integers(1, 6, n_instances), np.ones(n_instances, np.float32),
                       np.zeros(n_instances, np.float32), np.arange(n_instances, dtype=np.float32))
    return {"instances": inst, "points_lidar": pts, "K": K, "D": np.zeros(5), "T_camera_lidar": T_camera_lidar,
            "T_base_camera": T_base_camera}


def _cmd_bench(args: argparse.Namespace) -> int:
    import os
    import time

    import numpy as np

    from ros2_amodal_seg.fusion.pipeline import FusionPipeline

    cfg = _load_config(args)
    inp = synthetic_bench_input(args.beams, args.azimuth_steps, args.instances, args.width, args.height)
    fp = FusionPipeline(config=cfg)
    for _ in range(args.warmup):
        fp.run(**inp)
    times: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for _ in range(args.repeat):
        times.append(fp.run(**inp).timings_ms)
    wall = (time.perf_counter() - t0) / args.repeat * 1e3
    n_pts = len(inp["points_lidar"])
    print(f"fusion-bench: {n_pts} points ({args.beams} x {args.azimuth_steps}), {args.instances} instances, "
          f"{args.width}x{args.height}, BEV {fp.grid.shape[0]}x{fp.grid.shape[1]} @ {cfg.bev.resolution} m, "
          f"{args.repeat} runs, CPUs available {len(os.sched_getaffinity(0))}")
    for k in times[0]:
        v = np.array([t[k] for t in times])
        print(f"  {k:11s} median {np.median(v):7.2f} ms   p90 {np.percentile(v, 90):7.2f} ms")
    print(f"  wall/run    mean   {wall:7.2f} ms")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ros2_amodal_seg.fusion.evaluate import evaluate, format_summary

    from ros2_amodal_seg.fusion.depth import DepthConfig

    cfg = _load_config(args)
    depth = DepthConfig(stride=args.depth_stride)
    summary = evaluate(args.preset, args.seeds, config=cfg, min_hits=args.min_hits, width=args.width,
                       height=args.height, progress=True, source=args.source, depth=depth)
    print(format_summary(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")
    if args.png:
        from ros2_amodal_seg.fusion.bev import render_bev_png
        import cv2

        from ros2_amodal_seg.fusion.evaluate import render_overview, run_on_frame, sensor_input
        from ros2_amodal_seg.fusion.pipeline import FusionPipeline
        from ros2_amodal_seg.world import render_frame

        frame = render_frame(args.preset, args.seeds[0], args.width, args.height)
        res, _ = run_on_frame(FusionPipeline(config=cfg), frame, sensor_input(frame, args.source, depth))
        print(f"wrote {render_bev_png(res.bev, args.png)} (seed {args.seeds[0]})")
        over = Path(args.png).with_name(Path(args.png).stem + "_overview.png")
        cv2.imwrite(str(over), cv2.cvtColor(render_overview(frame, res), cv2.COLOR_RGB2BGR))
        print(f"wrote {over} (camera view with instance points | BEV with GT footprints in blue)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fusion-bench`` and ``fusion-eval``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None,
                        help="fusion YAML (config/fusion.yaml layout; its presets: block for --preset is applied); "
                             "default: built-in settings for --preset")
    common.add_argument("--width", type=int, default=640, help="image width [px]")
    common.add_argument("--height", type=int, default=480, help="image height [px]")

    b = subparsers.add_parser(
        "fusion-bench", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="time projection, per-instance 3-D, order and BEV on a synthetic 64x1024 cloud",
        description="Benchmark the LiDAR-camera fusion on a self-contained synthetic frame (every beam returns: "
                    "beams x azimuth_steps points) and N elliptic instances; prints per-stage median/p90 times.")
    b.add_argument("--preset", default="street", choices=["street", "tabletop"], help="built-in config")
    b.add_argument("--beams", type=int, default=64, help="LiDAR beams")
    b.add_argument("--azimuth-steps", type=int, default=1024, help="LiDAR azimuth steps per turn")
    b.add_argument("--instances", type=int, default=15, help="number of instances")
    b.add_argument("--repeat", type=int, default=50, help="timed runs")
    b.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    b.set_defaults(func=_cmd_bench)

    e = subparsers.add_parser(
        "fusion-eval", parents=[common], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="accuracy of order / 3-D centroids / BEV against the synthetic world's ground truth",
        description="Render synthetic frames, run the fusion on their GROUND-TRUTH masks and report pairwise "
                    "order accuracy, centroid error (relative to range) and BEV IoU / recall vs GT footprints.")
    e.add_argument("--preset", required=True, choices=["shapes-street", "shapes-tabletop", "street", "tabletop"],
                   help="world preset (its family picks the built-in fusion settings)")
    e.add_argument("--seeds", type=_seeds, default="0:20", help="seed range A:B (B exclusive) or comma list")
    e.add_argument("--min-hits", type=int, default=20,
                   help="LiDAR hits (depth returns) an object needs for the centroid error")
    e.add_argument("--source", choices=["lidar", "depth"], default="lidar",
                   help="3-D source: the simulated LiDAR, or a simulated depth camera aligned to the colour camera "
                        "(the renderer's depth with noise, missing returns on edges and dark surfaces, 1 mm steps; "
                        "ros2_amodal_seg/world/depth_camera.py) back-projected with K, fused with the preset's "
                        "depth settings (config/fusion.yaml <family>_depth)")
    e.add_argument("--depth-stride", type=int, default=2, help="--source depth: use every N-th pixel [px]")
    e.add_argument("--json", default=None, help="also write the summary as JSON here")
    e.add_argument("--png", default=None, help="write the BEV of the first seed as a PNG here (and an "
                                               "<name>_overview.png: camera view | BEV with GT footprints)")
    e.set_defaults(func=_cmd_eval)


__all__ = ["register", "synthetic_bench_input"]
