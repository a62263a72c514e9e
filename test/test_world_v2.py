"""The realistic world (shared/spec/world.md version 2): presets ``tabletop`` and ``street``.

Ground truth (amodal, visible, occlusion rate, occluded_by, footprints, LiDAR ids) on both
presets, both splits and several seeds; exact amodal masks against each object cast alone
over the whole image; occlusion share; the held-out rule; determinism to the byte; skipped
bad assets; textured shading and LiDAR intensity on hand-made scenes; the CLI.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from ros2_amodal_seg.classes import WORLD_CLASSES
from ros2_amodal_seg.errors import AssetError, ConfigError, DatasetError, InvalidInputError
from ros2_amodal_seg.world import render_frame, render_scene
from ros2_amodal_seg.world.compose import AssetSource, build_world_scene, default_source
from ros2_amodal_seg.world.imaging import Imaging, kelvin_to_rgb
from ros2_amodal_seg.world.presets import get_preset
from ros2_amodal_seg.world.scene import build_scene, camera_T_base, lidar_T_camera, points_in_polygon
from ros2_amodal_seg.world.surfaces import box_surface, plain_material, quad_surface
from ros2_amodal_seg.world.world_scene import Lighting, Structure, WorldObject, WorldScene

W, H = 320, 240
CASES = ([(p, "train", s) for p in ("tabletop", "street") for s in range(4)]
         + [(p, "test", s) for p in ("tabletop", "street") for s in (0, 1)])


def _frame(preset, split, seed, w=W, h=H, lidar=True, cache={}):
    key = (preset, split, seed, w, h, lidar)
    if key not in cache:
        cache[key] = render_frame(preset, seed, w, h, lidar=lidar, split=split)
    return cache[key]


def _cast_alone(mesh, K, T_base_camera, us, vs):
    """Camera-z depth of one mesh alone at pixels (us, vs), inf where missed (independent ray set-up)."""
    import open3d as o3d

    d = np.stack([(us - K[0, 2]) / K[0, 0], (vs - K[1, 2]) / K[1, 1], np.ones_like(us, dtype=float)], -1)
    rays = np.concatenate([np.broadcast_to(T_base_camera[:3, 3], d.shape), d @ T_base_camera[:3, :3].T], 1)
    sc = o3d.t.geometry.RaycastingScene()
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32))
    tm.triangle.indices = o3d.core.Tensor(np.asarray(mesh.triangles, dtype=np.int32))
    sc.add_triangles(tm)
    return sc.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()


# ---------------------------------------------------------------- ground truth over presets, splits, seeds

@pytest.mark.parametrize("preset,split,seed", CASES)
def test_ground_truth_invariants(preset, split, seed):
    f = _frame(preset, split, seed)
    cfg = get_preset(preset)
    M = len(f.object_ids)
    assert cfg.num_objects[0] <= M <= cfg.num_objects[1]
    assert f.preset == preset and f.split == split and len(f.assets) == M
    assert f.object_ids.tolist() == list(range(1, M + 1))
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.amodal_masks.shape == (M, H, W) and f.amodal_masks.dtype == bool
    assert set(f.category_ids.tolist()) <= set(cfg.class_ids)
    assert np.isfinite(f.depth[f.visible_ids > 0]).all()
    lo, hi = cfg.size_range
    assert (f.sizes.max(1) >= lo * 0.97).all() and (f.sizes.max(1) <= hi * 1.03).all()
    assert np.abs(f.centers_base[:, 2] - f.sizes[:, 2] / 2).max() < 1e-6        # resting on z = 0
    if preset == "street":
        assert ((f.centers_base[:, 0] >= 3 - 1e-9) & (f.centers_base[:, 0] <= 40 + 1e-9)).all()
        assert (np.abs(np.arctan2(f.centers_base[:, 1], f.centers_base[:, 0])) < np.arctan(W / 2 / f.K[0, 0])).all()
    by_id = {a.id: a for a in f.annotations}
    for k, iid in enumerate(f.object_ids):
        vis = f.visible_ids == iid
        assert not (vis & ~f.amodal_masks[k]).any(), "visible must be a subset of amodal"
        vis_n, am_n = int(vis.sum()), int(f.amodal_masks[k].sum())
        if vis_n < 16 or am_n == 0:
            assert iid not in by_id
            continue
        a = by_id[int(iid)]
        assert a.category_id == f.category_ids[k] and a.category_name == WORLD_CLASSES[a.category_id]
        assert a.asset == f.assets[k]
        np.testing.assert_array_equal(a.amodal, f.amodal_masks[k])
        np.testing.assert_array_equal(a.visible, vis)
        assert a.occlude_rate == pytest.approx(1 - vis_n / am_n)
        expected = sorted(int(j) for j in np.unique(f.visible_ids[f.amodal_masks[k]])
                          if j not in (0, iid) and int(j) in by_id)
        assert sorted(a.occluded_by) == expected
        np.testing.assert_allclose(a.footprint, f.footprints[k])


@pytest.mark.parametrize("preset,seed", [("tabletop", 1), ("street", 2)])
def test_amodal_masks_are_the_object_rendered_alone(preset, seed):
    """The renderer casts only the rays that can hit a hidden object; cast every pixel instead."""
    f = _frame(preset, "train", seed)
    spec = build_scene(preset, seed)
    vs, us = np.mgrid[0:H, 0:W]
    us, vs = us.reshape(-1).astype(float), vs.reshape(-1).astype(float)
    hidden = 0
    for k, o in enumerate(spec.objects):
        alone = np.isfinite(_cast_alone(o.mesh, f.K, f.T_base_camera, us, vs)).reshape(H, W)
        np.testing.assert_array_equal(f.amodal_masks[k], alone, err_msg=f"object {o.instance_id} {o.asset}")
        hidden += int((alone & (f.visible_ids != o.instance_id)).sum())
    assert hidden > 0                                 # the scene has hidden parts to find


@pytest.mark.parametrize("preset,seed", [("tabletop", 0), ("tabletop", 3), ("street", 1), ("street", 3)])
def test_occluders_are_nearer(preset, seed):
    f = _frame(preset, "train", seed)
    spec = build_scene(preset, seed)
    checked = 0
    for a in f.annotations:
        for j in a.occluded_by:
            vs, us = np.nonzero(a.amodal & (f.visible_ids == j))
            z_alone = _cast_alone(spec.objects[a.id - 1].mesh, f.K, f.T_base_camera, us.astype(float), vs.astype(float))
            assert np.isfinite(z_alone).all()
            assert (f.depth[vs, us] < z_alone + 1e-5).all(), f"occluder {j} not nearer than {a.id}"
            checked += 1
    assert checked > 0


def test_occlusion_share_per_preset():
    """world.md: at least 30 % of the annotated objects of each preset are more than 15 % occluded."""
    for preset in ("tabletop", "street"):
        rates = [a.occlude_rate for s in range(100, 124)
                 for a in _frame(preset, "train", s, lidar=False).annotations]
        share = float(np.mean(np.array(rates) > 0.15))
        assert len(rates) > 100 and share >= 0.30, f"{preset}: {share:.3f} of {len(rates)} objects"


@pytest.mark.parametrize("preset,seed", [("tabletop", 2), ("street", 0)])
def test_lidar_ids_agree_with_camera(preset, seed):
    f = _frame(preset, "train", seed)
    cfg = get_preset(preset)
    pts = f.lidar_points
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and len(pts) > 1000
    r = np.linalg.norm(pts[:, :3], axis=1)
    assert (r >= cfg.lidar_range[0] - 1e-4).all() and (r <= cfg.lidar_range[1] + 1e-4).all()
    assert ((pts[:, 3] >= 0) & (pts[:, 3] <= 1)).all() and pts[:, 3].std() > 0.01
    pc = pts[:, :3].astype(np.float64) @ f.T_camera_lidar[:3, :3].T + f.T_camera_lidar[:3, 3]
    z = pc[:, 2]
    front = z > 0.05
    u = np.rint(f.K[0, 0] * pc[:, 0] / np.where(front, z, 1) + f.K[0, 2]).astype(int)
    v = np.rint(f.K[1, 1] * pc[:, 1] / np.where(front, z, 1) + f.K[1, 2]).astype(int)
    inside = front & (u >= 1) & (u < W - 1) & (v >= 1) & (v < H - 1)
    idx = np.flatnonzero(inside)
    seen = np.abs(f.depth[v[idx], u[idx]] - z[idx]) < 4 * cfg.lidar_range_noise + 0.01 * z[idx]
    idx = idx[seen]
    assert len(idx) > 200
    pid = f.lidar_ids[idx]
    nb = np.zeros(len(idx), dtype=bool)
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            nb |= f.visible_ids[v[idx] + dv, u[idx] + du] == pid
    assert nb.mean() > 0.99, f"only {nb.mean():.4f} of seen points agree within 1 px"
    assert (f.visible_ids[v[idx], u[idx]] == pid).mean() > 0.95
    assert (pid > 0).sum() > 10


@pytest.mark.parametrize("preset,split,seed", [("tabletop", "train", 1), ("street", "train", 3),
                                               ("street", "test", 1)])
def test_footprints_contain_lidar_hits(preset, split, seed):
    f = _frame(preset, split, seed)
    cfg = get_preset(preset)
    pb = f.lidar_points[:, :3].astype(np.float64) @ f.T_base_lidar[:3, :3].T + f.T_base_lidar[:3, 3]
    tol = 5 * cfg.lidar_range_noise + 1e-4
    checked = 0
    for k, iid in enumerate(f.object_ids):
        sel = f.lidar_ids == iid
        if not sel.any():
            continue
        checked += 1
        assert points_in_polygon(pb[sel, :2], f.footprints[k], tol=tol).all()
        assert (pb[sel, 2] > -tol).all() and (pb[sel, 2] < f.sizes[k, 2] + tol).all()
    assert checked > 0


def test_determinism_to_the_byte():
    def blob(f):
        ann = [(a.id, a.category_id, a.occlude_rate, a.occluded_by, a.asset, np.asarray(a.footprint).tolist())
               for a in f.annotations]
        return (f.rgb.tobytes(), f.depth.tobytes(), f.lidar_points.tobytes(), f.lidar_ids.tobytes(),
                f.amodal_masks.tobytes(), json.dumps(ann).encode())

    for preset in ("tabletop", "street"):
        a = render_frame(preset, 42, 160, 120)
        b = render_frame(preset, 42, 160, 120)
        assert blob(a) == blob(b)
        assert a.rgb.tobytes() != render_frame(preset, 43, 160, 120).rgb.tobytes()
        assert render_frame(preset, 42, 160, 120, lidar=False).rgb.tobytes() == a.rgb.tobytes()
        big = render_frame(preset, 42, 320, 240, lidar=False)             # same scene at any size
        np.testing.assert_allclose(big.centers_base, a.centers_base)
        assert big.assets == a.assets and np.allclose(big.K[0, 0], 2 * a.K[0, 0])
        test = build_scene(preset, 42, split="test")
        assert [o.asset for o in test.objects] != a.assets


def test_held_out_rule():
    """No test model or texture in --split train scenes; --split test scenes only test ones."""
    src = default_source()
    lib = src.library
    pools = {s: set(src.pool(s)) for s in ("train", "test")}
    assert not pools["train"] & pools["test"]
    seen = {"train": 0, "test": 0}
    for preset in ("tabletop", "street"):
        for split in ("train", "test"):
            for seed in range(6):
                sc = build_scene(preset, seed, split=split)
                models = [o.asset for o in sc.objects] + list(sc.extras["background_assets"])
                assert models and all(lib.split_of(m) == split for m in models), (preset, split, seed)
                assert set(sc.extras["textures"]) <= pools[split]
                seen[split] += len(models) + len(sc.extras["textures"])
    assert seen["train"] > 50 and seen["test"] > 50


# ---------------------------------------------------------------- bad assets

class _FlakyLibrary:
    """The real library, except that some models are missing and some are corrupt."""

    def __init__(self, lib):
        self.lib = lib
        self.config = None

    def __getattr__(self, name):
        return getattr(self.lib, name)

    def load(self, asset_id):
        h = sum(asset_id.encode()) % 3
        if h == 0:
            raise AssetError(asset_id, "model file is not in the library (test)")
        m = self.lib.load(asset_id)
        if h == 1:
            v = np.array(m.vertices, dtype=np.float32)
            v[0] = np.nan                                   # a corrupt mesh
            object.__setattr__(m, "vertices", v)
        return m


def test_missing_or_corrupt_assets_are_skipped(caplog):
    src = AssetSource(_FlakyLibrary(default_source().library), {s: default_source().pool(s) for s in ("train", "test")})
    with caplog.at_level(logging.WARNING, logger="ros2_amodal_seg.world.compose"):
        for preset in ("tabletop", "street"):
            sc = build_world_scene(preset, 5, source=src)
            assert sc.objects and sc.extras["skipped_assets"] > 0
            assert all(sum(o.asset.encode()) % 3 == 2 for o in sc.objects)
            f = render_scene(sc, 96, 72)
            assert f.skipped_assets == sc.extras["skipped_assets"]
    warned = [r for r in caplog.records if "skipping asset" in r.getMessage()]
    assert warned and len(warned) == len(src.skipped)          # one warning per bad asset, then counted
    assert sum(src.skipped.values()) >= len(src.skipped)


def test_bad_input():
    with pytest.raises(InvalidInputError, match="split"):
        render_frame("tabletop", 0, 64, 48, split="validation")
    with pytest.raises(InvalidInputError, match="seed"):
        render_frame("street", -1)
    with pytest.raises(InvalidInputError, match="image size"):
        render_frame("tabletop", 0, 4, 4)
    with pytest.raises(ConfigError, match="version-1"):
        build_world_scene("shapes-street", 0)


# ---------------------------------------------------------------- renderer on hand-made scenes

def _hand_scene(structures, objects=(), *, key_dir=(0.0, 0.0, 1.0), preset="street", height=3.0, pitch=90.0):
    """A camera ``height`` m above the origin pitched ``pitch`` degrees down, white key light."""
    cfg = get_preset(preset)
    light = Lighting(key_dir=np.asarray(key_dir, float) / np.linalg.norm(key_dir), key_kelvin=6500.0,
                     key_rgb=np.ones(3), fill_dir=np.array([0.0, 0.0, 1.0]), fill_rgb=np.zeros(3),
                     ambient_rgb=np.full(3, 0.1), sky_horizon=np.full(3, 0.5), sky_zenith=np.full(3, 0.5),
                     clouds=0.0, cloud_seed=0)
    imaging = Imaging(exposure_target=0.18, gamma=2.2, wb_gains=(1.0, 1.0, 1.0), noise_sigma=0.0,
                      blur_sigma=0.0, jpeg_quality=0)
    return WorldScene(preset=preset, split="train", seed=0, cfg=cfg, objects=list(objects),
                      structures=list(structures), fx_ref=500.0, pp_offset=np.zeros(2),
                      T_base_camera=camera_T_base(height, np.deg2rad(pitch) - 1e-9),
                      T_camera_lidar=lidar_T_camera(cfg), lighting=light, imaging=imaging)


def test_texture_specular_and_shadow_on_a_hand_made_scene():
    # ground: a 2 x 2 texel texture, dark on image-left half (base_link +y), bright on the other
    tex = np.array([[[30, 30, 30], [220, 220, 220]], [[30, 30, 30], [220, 220, 220]]], dtype=np.uint8)
    mat, texs = plain_material("ground", (1.0, 1.0, 1.0), tex)
    corners = np.array([[-4.0, 4.0, 0.0], [-4.0, -4.0, 0.0], [4.0, -4.0, 0.0], [4.0, 4.0, 0.0]])
    ground = Structure("ground", quad_surface("ground", corners, mat, texs, tile=8.0))
    sc = _hand_scene([ground])
    f = render_scene(sc, 160, 120, lidar=False)
    g = f.rgb.astype(float).mean(2)
    assert g[:, :60].mean() < 0.5 * g[:, 100:].mean()                # texture u runs along -y: left dark
    # a box between the light and the ground casts a shadow; a shiny box has a highlight
    box_m, _ = plain_material("box", (0.5, 0.5, 0.5))
    box = Structure("box", box_surface("box", (0.6, 0.6, 0.6), np.eye(3), [0.0, 0.0, 0.3], box_m, []))
    f2 = render_scene(_hand_scene([ground, box], key_dir=(1.0, 0.0, 1.0)), 160, 120, lidar=False)
    T_cb = np.linalg.inv(f2.T_base_camera)
    p = T_cb[:3, :3] @ np.array([-0.5, 0.0, 0.0]) + T_cb[:3, 3]       # ground point in the box's shadow
    q = T_cb[:3, :3] @ np.array([-0.5, 1.2, 0.0]) + T_cb[:3, 3]       # same texel column, lit
    uv = lambda x: (int(round(f2.K[0, 0] * x[0] / x[2] + f2.K[0, 2])), int(round(f2.K[1, 1] * x[1] / x[2] + f2.K[1, 2])))  # noqa: E731
    (us, vs), (ul, vl) = uv(p), uv(q)
    ref = render_scene(_hand_scene([ground], key_dir=(1.0, 0.0, 1.0)), 160, 120, lidar=False)
    assert f2.rgb[vs, us].mean() < 0.6 * ref.rgb[vs, us].mean()         # shadowed
    assert abs(float(f2.rgb[vl, ul].mean()) - float(ref.rgb[vl, ul].mean())) < 0.2 * ref.rgb[vl, ul].mean() + 3
    shiny_m, _ = plain_material("shiny", (0.5, 0.5, 0.5), specular=1.0, shininess=30.0)
    dull = render_scene(_hand_scene([ground, box], key_dir=(0.0, 0.0, 1.0)), 160, 120, lidar=False)
    shiny_box = Structure("box", box_surface("box", (0.6, 0.6, 0.6), np.eye(3), [0.0, 0.0, 0.3], shiny_m, []))
    shiny = render_scene(_hand_scene([ground, shiny_box], key_dir=(0.0, 0.0, 1.0)), 160, 120, lidar=False)
    top = dull.depth < 2.75                                             # the box's top face (2.4 m away)
    assert top.sum() > 50
    assert shiny.rgb[top].mean() > dull.rgb[top].mean() + 20


def test_lidar_intensity_is_texture_luminance_times_cos():
    colour = np.array([200, 120, 40], dtype=np.uint8)
    tex = np.broadcast_to(colour, (4, 4, 3)).copy()
    mat, texs = plain_material("ground", (1.0, 1.0, 1.0), tex)
    corners = np.array([[-30.0, 30.0, 0.0], [-30.0, -30.0, 0.0], [30.0, -30.0, 0.0], [30.0, 30.0, 0.0]])
    sc = _hand_scene([Structure("ground", quad_surface("ground", corners, mat, texs, tile=1.0))], pitch=5.0,
                     height=1.5)
    f = render_scene(sc, 64, 48)
    pts = f.lidar_points
    assert len(pts) > 1000
    pb = pts[:, :3].astype(np.float64) @ f.T_base_lidar[:3, :3].T + f.T_base_lidar[:3, 3]
    origin = f.T_base_lidar[:3, 3]
    d = pb - origin
    cos = np.abs(d[:, 2]) / np.linalg.norm(d, axis=1)                   # ground normal is z
    lin = (colour / 255.0) ** 2.2
    lum = float(np.array([0.2126, 0.7152, 0.0722]) @ lin)
    np.testing.assert_allclose(pts[:, 3], lum * cos, atol=0.01)


# ---------------------------------------------------------------- helpers and CLI

def test_kelvin_and_texture_sampling():
    from ros2_amodal_seg.world.render_v2 import sample_texture_fast
    from ros2_amodal_seg.world.textured import sample_texture

    warm, cold = kelvin_to_rgb(3000), kelvin_to_rgb(7500)
    assert warm[0] == 1.0 and warm[0] > warm[1] > warm[2] and cold[2] == 1.0 and cold[2] > cold[0]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    uv = rng.uniform(-3, 4, (5000, 2)).astype(np.float32)
    ref = sample_texture(img, uv) * 255.0
    assert np.abs(sample_texture_fast(img, uv).astype(float) - ref).max() <= 1.0


def test_level_of_detail_keeps_the_shape():
    from ros2_amodal_seg.world.lod import level_for, simplify

    lib = default_source().library
    cars = [a for a in lib.models(2, "train", "street") if not a.startswith("procedural:")]
    m = lib.load(cars[0])
    s = simplify(m, 1200)
    assert len(s.triangles) < 0.25 * len(m.triangles)
    np.testing.assert_allclose(s.extents, m.extents, atol=0.05 * m.extents.max())
    assert s.uvs.shape == (len(s.triangles), 3, 2) and len(s.materials) == len(m.materials)
    assert level_for(20, 30000) > level_for(600, 30000) == 0


def test_generate_cli_writes_realistic_dataset(tmp_path, capsys):
    from ros2_amodal_seg.cli import main
    from ros2_amodal_seg.data.dataset import load_dataset

    out = tmp_path / "d"
    assert main(["generate", "--preset", "tabletop", "--split", "test", "--num", "2", "--seed", "3", "--width", "96",
                 "--height", "72", "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "occlusion statistics (tabletop, split test, 2 frames)" in printed and "more than 15 % occluded" in printed
    doc = json.loads((out / "annotations.json").read_text())
    assert {c["id"]: c["name"] for c in doc["categories"]} == WORLD_CLASSES
    assert doc["info"]["presets"] == ["tabletop"] and doc["info"]["splits"] == ["test"]
    assert all(im["preset"] == "tabletop" and im["split"] == "test" for im in doc["images"])
    lib = default_source().library
    assert doc["annotations"] and all(lib.split_of(a["asset"]) == "test" for a in doc["annotations"])
    ds = load_dataset(out)
    assert ds.categories == WORLD_CLASSES and ds.samples[0].split == "test"
    assert ds.samples[0].annotations[0].asset == doc["annotations"][0]["asset"]


def test_generate_bag_and_workers_give_the_same_bytes(tmp_path):
    from ros2_amodal_seg.data.bag import TOPIC_IMAGE, TOPIC_POINTS, bag_topics
    from ros2_amodal_seg.world.cli import generate

    stats: dict = {}
    generate("street", 3, 11, tmp_path / "a", width=64, height=48, bag=True, progress=False, stats=stats)
    topics = bag_topics(tmp_path / "a" / "bag")
    assert topics[TOPIC_IMAGE]["count"] == 3 and topics[TOPIC_POINTS]["count"] == 3
    assert stats["frames"] == 3 and stats["objects"] > 0 and 0.0 <= stats["occluded_share"] <= 1.0
    generate("street", 3, 11, tmp_path / "b", width=64, height=48, bag=True, progress=False, workers=2)
    for rel in ("annotations.json", "images/000001.png", "images/000003.png", "lidar/000002.npy",
                "lidar/000003_ids.npy"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_one_dataset_holds_one_class_list(tmp_path):
    from ros2_amodal_seg.data.writer import DatasetWriter

    w = DatasetWriter(tmp_path, write_lidar=False)
    w.add_frame(render_frame("shapes-street", 0, 32, 24, lidar=False))
    with pytest.raises(DatasetError, match="class list"):
        w.add_frame(render_frame("street", 0, 32, 24, lidar=False))


def test_world_object_fields_of_a_scene():
    sc = build_scene("street", 7)
    assert sc.objects and all(isinstance(o, WorldObject) for o in sc.objects)
    for o in sc.objects:
        assert o.mesh.vertices.dtype == np.float64 and o.mesh.uvs.shape == (len(o.mesh.triangles), 3, 2)
        assert abs(o.mesh.vertices[:, 2].min()) < 1e-9
