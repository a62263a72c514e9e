"""``amodal-seg assets``: inspect the asset layer (models per class and split, contact sheets,
cache build, credits file)."""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from ros2_amodal_seg.errors import AssetError, InvalidInputError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "assets", help="list the world's 3-D models per class and split, draw contact sheets, build the cache",
        description=(
            "The asset layer of the realistic world (shared/spec/world.md version 2): Sweet Home 3D "
            "catalogue models (Debian package sweethome3d-furniture) mapped to the 13 classes by the "
            "reviewed table ros2_amodal_seg/world/asset_classes.csv, plus procedural families "
            "(traffic cones, barriers, ...). Without options: a table of models per class, split "
            "(train/test held-out rule) and preset. See docs/assets.md."),
        epilog=(
            "examples:\n"
            "  amodal-seg assets                          # counts per class / split / preset\n"
            "  amodal-seg assets --class car              # every car model with its split and size\n"
            "  amodal-seg assets --sheet traffic_cone --out cones.png\n"
            "  amodal-seg assets --sheet tree --out trees.png      # a background kind works too\n"
            "  amodal-seg assets --build-cache            # prebuild the model cache (~10 min once)\n"
            "  amodal-seg assets --credits CREDITS.md     # regenerate the credits file"),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                   help="list the models of one class (name or id 1..13) or background kind, with split, "
                        "preset, pose hint, size and note")
    p.add_argument("--sheet", default=None, metavar="CLASS",
                   help="render a contact sheet of every model of a class (name or id) or background kind "
                        "to --out (PNG); each tile is labelled with the asset id and split")
    p.add_argument("--out", type=Path, default=None, help="output PNG of --sheet")
    p.add_argument("--split", choices=("train", "test", "all"), default="all", help="models of --class/--sheet")
    p.add_argument("--tile", type=int, default=192, help="tile size of --sheet [px]")
    p.add_argument("--build-cache", action="store_true",
                   help="prebuild the model cache of every model the world uses (progress bar; failures listed)")
    p.add_argument("--credits", type=Path, default=None, metavar="PATH", help="write the credits file (Markdown)")
    p.add_argument("--furniture-dir", type=Path, default=None,
                   help="folder of the *.sh3f libraries (default: $AMODAL_SEG_FURNITURE_DIR or "
                        "/usr/share/sweethome3d/furniture)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="model cache (default: $AMODAL_SEG_ASSET_CACHE or ~/.cache/ros2_amodal_seg/assets/v<N>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _resolve_group(lib, name: str) -> tuple[str, int | str]:
    """('class', id) or ('background', kind) from a class name/id or background kind."""
    from ros2_amodal_seg.world.assets import BACKGROUND_KINDS, WORLD_CLASSES

    if name.isdigit() and int(name) in WORLD_CLASSES:
        return "class", int(name)
    by_name = {v: k for k, v in WORLD_CLASSES.items()}
    if name in by_name:
        return "class", by_name[name]
    if name in BACKGROUND_KINDS:
        return "background", name
    raise InvalidInputError(f"unknown class or background kind {name!r}; classes: "
                            f"{', '.join(WORLD_CLASSES.values())}; kinds: {', '.join(BACKGROUND_KINDS)}")


def _group_ids(lib, group, split: str) -> list[str]:
    splits = ("train", "test") if split == "all" else (split,)
    kind, key = group
    ids = []
    for s in splits:
        ids += lib.models(key, s) if kind == "class" else lib.background_models(key, split=s)
    return sorted(set(ids), key=lambda a: (lib.split_of(a), a))


def _print_table(lib) -> None:
    from ros2_amodal_seg.world.assets import BACKGROUND_KINDS, WORLD_CLASSES

    summary = lib.summary()
    head = (f"{'id':>2} {'class':<14} {'train':>5} {'test':>4}   {'catalogue':>9} {'procedural':>10}   "
            f"{'tabletop tr/te':>14} {'street tr/te':>12}")
    print(head)
    print("-" * len(head))
    tot = np.zeros(8, int)
    for cid, name in WORLD_CLASSES.items():
        tr, te = summary[cid]["train"], summary[cid]["test"]
        row = [sum(tr[k] for k in ("catalogue", "procedural")), sum(te[k] for k in ("catalogue", "procedural")),
               tr["catalogue"] + te["catalogue"], tr["procedural"] + te["procedural"],
               tr["tabletop"], te["tabletop"], tr["street"], te["street"]]
        tot += row
        print(f"{cid:>2} {name:<14} {row[0]:>5} {row[1]:>4}   {row[2]:>9} {row[3]:>10}   "
              f"{row[4]:>7}/{row[5]:<6} {row[6]:>6}/{row[7]:<5}")
    print("-" * len(head))
    print(f"{'':>2} {'all objects':<14} {tot[0]:>5} {tot[1]:>4}   {tot[2]:>9} {tot[3]:>10}   "
          f"{tot[4]:>7}/{tot[5]:<6} {tot[6]:>6}/{tot[7]:<5}")
    print("\nbackground structure (unannotated):")
    for kind in BACKGROUND_KINDS:
        tr, te = lib.background_models(kind, "train"), lib.background_models(kind, "test")
        print(f"   {kind:<17} {len(tr):>3} train {len(te):>3} test")
    roles = [lib.role_of(a) for a in lib.entries]
    print(f"\ncatalogue: {len(lib.entries)} models, {roles.count('object')} objects, "
          f"{roles.count('background')} background, {roles.count('excluded')} excluded "
          f"(ros2_amodal_seg/world/asset_classes.csv)")


def _print_group(lib, group, split: str) -> None:
    ids = _group_ids(lib, group, split)
    print(f"{len(ids)} models of {group[0]} {group[1]!r} ({split}):")
    for a in ids:
        size = lib.size_of(a)
        presets = ",".join(lib.presets_of(a))
        note = lib.class_map[a].note if a in lib.class_map else "procedural variant"
        print(f"  {lib.split_of(a):<5} {a:<48} {presets:<15} {lib.pose_hint(a):<7} "
              f"{size[0]:6.2f} x {size[1]:5.2f} x {size[2]:5.2f} m  {note}")


# ----------------------------------------------------------------------------- contact sheet

def render_thumbnail(mesh, size: int = 192, elevation_deg: float = 25.0, azimuth_deg: float = -35.0) -> np.ndarray:
    """Orthographic view of a textured mesh (front three-quarter view), Lambert-shaded with its
    textures, on white.

    Args:
        mesh: a :class:`~ros2_amodal_seg.world.textured.TexturedMesh` (object frame, front -y).
        size: image side [px].
        elevation_deg: view elevation above the horizon [deg].
        azimuth_deg: view azimuth from the front (-y), positive to the model's left [deg].

    Returns:
        ``[size, size, 3]`` uint8 RGB.
    """
    import open3d as o3d

    from ros2_amodal_seg.world.textured import sample_texture

    v = np.asarray(mesh.vertices, np.float32)
    tris = np.asarray(mesh.triangles, np.uint32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(tris))
    lo, hi = v.min(0), v.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2) * 1.02 + 1e-6
    el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    back = np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])   # towards the viewer
    fwd = -back
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    s = (np.arange(size) + 0.5) / size * 2 - 1
    gx, gy = np.meshgrid(s * radius, -s * radius)
    origins = centre + back * radius * 3 + gx[..., None] * right + gy[..., None] * up
    rays = np.concatenate([origins.reshape(-1, 3), np.broadcast_to(fwd, (size * size, 3))], 1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    hit = np.isfinite(ans["t_hit"].numpy())
    img = np.ones((size * size, 3), np.float32)
    if hit.any():
        pid = ans["primitive_ids"].numpy()[hit].astype(np.int64)
        bary = ans["primitive_uvs"].numpy()[hit]
        normals = ans["primitive_normals"].numpy()[hit]
        mids = np.asarray(mesh.material_ids)[pid]
        albedo = np.array([m.diffuse for m in mesh.materials], np.float32)[mids]
        tex_of = np.array([m.texture for m in mesh.materials])[mids]
        uv3 = np.asarray(mesh.uvs)[pid]                                  # [n, 3, 2]
        w = np.stack([1 - bary[:, 0] - bary[:, 1], bary[:, 0], bary[:, 1]], 1)
        uv = (uv3 * w[..., None]).sum(1)
        for t in np.unique(tex_of[tex_of >= 0]):
            sel = tex_of == t
            albedo[sel] *= sample_texture(mesh.textures[t], uv[sel])
        light = -fwd * 0.6 + np.array([0.3, -0.2, 0.8])
        light /= np.linalg.norm(light)
        lam = np.abs(normals @ light)
        img[hit] = albedo * (0.35 + 0.65 * lam[:, None])
    return (np.clip(img.reshape(size, size, 3), 0, 1) ** (1 / 1.2) * 255 + 0.5).astype(np.uint8)


def contact_sheet(lib, ids: list[str], tile: int = 192, columns: int = 8, progress: bool = True) -> np.ndarray:
    """Tiles of :func:`render_thumbnail` for ``ids``, each labelled with its id, split and size;
    models that fail to load get a red tile naming the error. Returns ``[H, W, 3]`` uint8."""
    from PIL import Image, ImageDraw
    from tqdm import tqdm

    cols = max(1, min(columns, len(ids)))
    rows = (len(ids) + cols - 1) // cols
    label_h = 30
    sheet = Image.new("RGB", (cols * tile, rows * (tile + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, aid in enumerate(tqdm(ids, desc="contact sheet", unit="model", disable=not progress)):
        x, y = (i % cols) * tile, (i // cols) * (tile + label_h)
        try:
            mesh = lib.load(aid)
            sheet.paste(Image.fromarray(render_thumbnail(mesh, tile)), (x, y))
            ext = mesh.extents
            size = f"{ext[0]:.2f}x{ext[1]:.2f}x{ext[2]:.2f} m"
        except AssetError as exc:
            draw.rectangle([x, y, x + tile - 1, y + tile - 1], fill=(255, 200, 200))
            draw.multiline_text((x + 4, y + 4), "\n".join(str(exc)[i:i + 30] for i in range(0, 150, 30)),
                                fill=(120, 0, 0))
            size = "failed"
        split = lib.split_of(aid)
        short = aid.split("#", 1)[-1] if "#" in aid else aid.replace("procedural:", "proc:")
        colour = (200, 0, 0) if split == "test" else (0, 0, 0)
        draw.text((x + 3, y + tile + 1), short[:34], fill=colour)
        draw.text((x + 3, y + tile + 14), f"{split}  {size}", fill=colour)
        draw.rectangle([x, y, x + tile - 1, y + tile + label_h - 1], outline=(210, 210, 210))
    return np.asarray(sheet)


def _run(args) -> int:
    from ros2_amodal_seg.world.assets import AssetLibrary, write_credits

    lib = AssetLibrary(furniture_dir=args.furniture_dir, cache_dir=args.cache_dir)
    did = False
    if args.build_cache:
        did = True
        rep = lib.ensure_cache(progress=not args.no_progress)
        print(f"cache {lib.config.cache_dir}: {rep.built} built, {rep.cached} already cached, "
              f"{len(rep.failed)} failed, {rep.bytes_on_disk / 2**20:.0f} MiB, {rep.seconds:.0f} s")
        for aid, msg in sorted(rep.failed.items()):
            print(f"  failed: {msg}")
    if args.credits is not None:
        did = True
        from ros2_amodal_seg.world.textures import SKIMAGE_TEXTURES

        names = [f"`{f}`: {origin}" for f, (_, origin) in SKIMAGE_TEXTURES.items()]
        write_credits(lib, args.credits, texture_names=names)
        print(f"wrote {args.credits}")
    if args.class_name is not None:
        did = True
        _print_group(lib, _resolve_group(lib, args.class_name), args.split)
    if args.sheet is not None:
        did = True
        if args.out is None:
            raise InvalidInputError("--sheet needs --out FILE.png")
        if args.tile < 32:
            raise InvalidInputError(f"--tile must be >= 32, got {args.tile}")
        from PIL import Image

        ids = _group_ids(lib, _resolve_group(lib, args.sheet), args.split)
        if not ids:
            raise InvalidInputError(f"no model of {args.sheet!r} in split {args.split}")
        t0 = time.perf_counter()
        img = contact_sheet(lib, ids, tile=args.tile, progress=not args.no_progress)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(args.out)
        print(f"wrote {args.out} ({len(ids)} models, {time.perf_counter() - t0:.1f} s)")
    if not did:
        _print_table(lib)
    return 0
