"""Overview pictures of rendered frames (RGB, amodal overlay, LiDAR on image, BEV).

    python -m ros2_amodal_seg.world.viz --out docs/images [--seed 3] [--presets tabletop street]

writes ``world_v2_<preset>.png`` per realistic preset and ``world_<family>.png`` per shapes
preset (the version-1 pictures keep their names). No ROS imports.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _palette(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 distinct RGB colours."""
    import cv2

    hsv = np.stack([(np.arange(n) * 37) % 180, np.full(n, 220), np.full(n, 255)], -1).astype(np.uint8)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def amodal_overlay(frame) -> np.ndarray:
    """``[H, W, 3]`` uint8: visible parts tinted, amodal outlines (hidden parts dashed in white)."""
    import cv2

    img = (frame.rgb.astype(np.float32) * 0.55).astype(np.uint8)
    pal = _palette(len(frame.object_ids) + 1)
    for a in frame.annotations:
        col = pal[a.id].astype(np.float32)
        img[a.visible] = (0.45 * img[a.visible] + 0.55 * col).astype(np.uint8)
    for a in frame.annotations:
        cs, _ = cv2.findContours(a.amodal.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, cs, -1, tuple(int(c) for c in pal[a.id]), 1)
        hidden = a.amodal & ~a.visible
        if hidden.any():
            hid = np.zeros_like(hidden)
            yy, xx = np.nonzero(hidden)
            keep = ((yy + xx) % 6) < 2                       # hatch the hidden part
            hid[yy[keep], xx[keep]] = True
            img[hid] = 255
    return img


def lidar_on_image(frame) -> np.ndarray:
    """``[H, W, 3]`` uint8: LiDAR points projected with K and T_camera_lidar, coloured by range."""
    import cv2

    img = (frame.rgb.astype(np.float32) * 0.35).astype(np.uint8)
    pts = frame.lidar_points[:, :3].astype(np.float64)
    pc = pts @ frame.T_camera_lidar[:3, :3].T + frame.T_camera_lidar[:3, 3]
    z = pc[:, 2]
    ok = z > 0.05
    u = np.rint(frame.K[0, 0] * pc[ok, 0] / z[ok] + frame.K[0, 2]).astype(int)
    v = np.rint(frame.K[1, 1] * pc[ok, 1] / z[ok] + frame.K[1, 2]).astype(int)
    H, W = img.shape[:2]
    ins = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    r = np.linalg.norm(pts[ok][ins], axis=1)
    val = np.clip(255 * (np.log(r) - np.log(r.min() + 1e-6)) / (np.log(r.max() + 1e-6) - np.log(r.min() + 1e-6)
                                                                 + 1e-9), 0, 255).astype(np.uint8)
    cols = cv2.applyColorMap(val[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    for uu, vv, c in zip(u[ins], v[ins], cols):
        cv2.circle(img, (int(uu), int(vv)), 1, tuple(int(x) for x in c), -1)
    return img


def bev_image(frame, size: tuple[int, int] = (480, 480)) -> np.ndarray:
    """Top-down view in base_link (x up, y left): LiDAR points (grey, objects coloured) and footprints."""
    import cv2

    Hh, Ww = size
    img = np.full((Hh, Ww, 3), 255, np.uint8)
    fps = frame.footprints
    allp = np.concatenate(fps) if fps else np.zeros((1, 2))
    lo, hi = allp.min(0), allp.max(0)
    span = max(hi[0] - lo[0], hi[1] - lo[1]) * 1.25 + 1e-3
    cx, cy = (lo + hi) / 2
    scale = min(Hh, Ww) / span

    def to_px(xy):
        return np.stack([(Ww / 2 - (xy[:, 1] - cy) * scale), (Hh / 2 - (xy[:, 0] - cx) * scale)], -1)

    pb = frame.lidar_points[:, :3].astype(np.float64) @ frame.T_base_lidar[:3, :3].T + frame.T_base_lidar[:3, 3]
    px = np.rint(to_px(pb[:, :2])).astype(int)
    ok = (px[:, 0] >= 0) & (px[:, 0] < Ww) & (px[:, 1] >= 0) & (px[:, 1] < Hh)
    pal = _palette(len(frame.object_ids) + 1)
    ids = frame.lidar_ids
    img[px[ok & (ids == 0), 1], px[ok & (ids == 0), 0]] = (170, 170, 170)
    for k, fp in enumerate(fps):
        col = tuple(int(c) for c in pal[frame.object_ids[k]])
        cv2.polylines(img, [np.rint(to_px(fp)).astype(np.int32)], True, col, 2)
    sel = ok & (ids > 0)
    img[px[sel, 1], px[sel, 0]] = pal[ids[sel]] // 2
    cam = to_px(frame.T_base_camera[None, :2, 3])[0]
    cv2.circle(img, (int(cam[0]), int(cam[1])), 5, (0, 0, 0), -1)
    cv2.putText(img, f"BEV {span:.1f} m", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return img


def overview(frame, panel: tuple[int, int] = (320, 240)) -> np.ndarray:
    """2 x 2 panel ``[2*h, 2*w, 3]`` uint8 RGB: RGB | amodal overlay / LiDAR on image | BEV."""
    import cv2

    w, h = panel
    rs = lambda im: cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)  # noqa: E731
    bev = bev_image(frame, (h, w))
    top = np.concatenate([rs(frame.rgb), rs(amodal_overlay(frame))], 1)
    bot = np.concatenate([rs(lidar_on_image(frame)), bev], 1)
    return np.concatenate([top, bot], 0)


def picture_name(preset: str) -> str:
    """File name of a preset's overview picture."""
    if preset.startswith("shapes-"):
        return f"world_{preset[len('shapes-'):]}.png"
    return f"world_v2_{preset}.png"


def main(argv=None) -> int:
    import cv2

    from ros2_amodal_seg.world import render_frame
    from ros2_amodal_seg.world.presets import PRESETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    ap.add_argument("--presets", nargs="+", default=["tabletop", "street"], choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=None,
                    help="scene seed (default: the most occluded of seeds 0..19 per preset)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        if args.seed is None:
            score = lambda fr: sum(a.occlude_rate > 0.1 for a in fr.annotations)  # noqa: E731
            seed = max(range(20), key=lambda s: score(render_frame(preset, s, 320, 240, lidar=False)))
        else:
            seed = args.seed
        f = render_frame(preset, seed)
        p = args.out / picture_name(preset)
        cv2.imwrite(str(p), cv2.cvtColor(overview(f), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(p, f"seed {seed}", p.stat().st_size // 1024, "KB")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
