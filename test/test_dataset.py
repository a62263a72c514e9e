"""Dataset loading: project format, COCOA regions, detectron-style JSON, and clear errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ros2_amodal_seg import masks as mask_utils
from ros2_amodal_seg.data.dataset import decode_segmentation, detect_format, load_dataset
from ros2_amodal_seg.errors import DatasetError
from ros2_amodal_seg.world import render_frame
from ros2_amodal_seg.world.cli import generate

COCOA = Path("/work/shared/data/cocoa_demo")
if not COCOA.exists():                                   # CI: shared/ beside the clone
    COCOA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cocoa_demo"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    generate("shapes-street", 3, 7, out, width=96, height=72, progress=False)
    return out


def test_project_format_round_trip(generated):
    ds = load_dataset(generated)
    assert detect_format(generated) == "coco"
    assert len(ds) == 3 and ds.categories == {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}
    for i, s in enumerate(ds.samples):
        f = render_frame("shapes-street", 7 + i, 96, 72)
        assert (s.width, s.height, s.preset) == (96, 72, "shapes-street")
        np.testing.assert_array_equal(s.load_image(), f.rgb)
        np.testing.assert_allclose(s.K, f.K)
        np.testing.assert_allclose(s.T_camera_lidar, f.T_camera_lidar)
        np.testing.assert_allclose(s.T_base_camera, f.T_base_camera)
        np.testing.assert_array_equal(s.load_lidar(), f.lidar_points)
        ids = np.load(generated / "lidar" / f"{i + 1:06d}_ids.npy")
        assert ids.dtype == np.int32
        np.testing.assert_array_equal(ids, f.lidar_ids)
        assert len(s.annotations) == len(f.annotations)
        for a, g in zip(s.annotations, f.annotations):
            assert a.id == (i + 1) * 1000 + g.id and a.category_id == g.category_id
            np.testing.assert_array_equal(a.amodal, g.amodal)
            np.testing.assert_array_equal(a.visible, g.visible)
            assert a.occlude_rate == pytest.approx(g.occlude_rate)
            assert a.occluded_by == [(i + 1) * 1000 + j for j in g.occluded_by]
            np.testing.assert_allclose(a.footprint, g.footprint)
    doc = json.loads((generated / "annotations.json").read_text())
    a0 = doc["annotations"][0]
    assert {"segmentation", "bbox", "area", "visible_mask", "visible_bbox", "occlude_rate", "occluded_by",
            "footprint", "iscrowd"} <= set(a0)
    assert doc["images"][0]["camera"]["distortion_model"] == "plumb_bob"


def test_generate_is_deterministic(generated, tmp_path):
    generate("shapes-street", 3, 7, tmp_path, width=96, height=72, progress=False)
    for rel in ["annotations.json", "images/000002.png", "lidar/000003.npy", "lidar/000001_ids.npy"]:
        assert (tmp_path / rel).read_bytes() == (generated / rel).read_bytes(), rel


def test_cocoa_sample_loads():
    ds = load_dataset(COCOA)
    assert detect_format(COCOA) == "cocoa"
    assert len(ds) == 5
    raw = {int(p.stem): json.loads(p.read_text()) for p in COCOA.glob("*.json")}
    sizes = {1: (480, 640), 2: (427, 640), 3: (480, 640), 4: (640, 480), 5: (480, 640)}
    ids = set()
    for s in ds.samples:
        regions = raw[s.image_id]["regions"]
        assert len(s.annotations) == len(regions)
        assert (s.height, s.width) == sizes[s.image_id]
        assert s.file_name.exists()
        for a, r in zip(s.annotations, regions):
            ids.add(a.id)
            assert a.category_name == r["name"].strip() and ds.categories[a.category_id] == a.category_name
            assert a.amodal.shape == a.visible.shape == (s.height, s.width)
            assert a.occlude_rate == pytest.approx(r["occlude_rate"])
            assert a.order == r["order"]
            assert abs(int(a.amodal.sum()) - r["area"]) <= 0.01 * r["area"] + 2
            if "visible_mask" in r:
                assert a.occlude_rate > 0
                assert 1 - a.visible.sum() / a.amodal.sum() == pytest.approx(r["occlude_rate"], abs=0.02)
                assert a.occluded_by, "an occluded region has occluders"
            else:
                np.testing.assert_array_equal(a.visible, a.amodal)
    assert len(ids) == sum(len(s.annotations) for s in ds.samples)
    s1 = ds.samples[0]
    assert [a.category_name for a in s1.annotations] == ["phone", "phone"]
    assert s1.annotations[1].occluded_by == [s1.annotations[0].id]
    assert load_dataset(COCOA / "2.json").samples[0].annotations[4].category_name == "dish"


def _detectron_doc(h=6, w=8):
    m = np.zeros((h, w), bool)
    m[1:5, 2:7] = True
    v = m.copy()
    v[1:5, 2:4] = False
    unc = {"size": [h, w], "counts": [int(c) for c in _uncompressed(m)]}
    return {
        "images": [{"id": 3, "file_name": "a.png", "width": w, "height": h}],
        "categories": [{"id": 1, "name": "cup"}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 1, "segmentation": [[2, 1, 7, 1, 7, 5, 2, 5]],
             "visible_mask": mask_utils.encode(v), "occlude_rate": 0.4},
            {"id": 2, "image_id": 3, "category_id": 1, "segmentation": unc,
             "occluded_mask": mask_utils.encode(m & ~v), "occluded_rate": 0.4},
            {"id": 3, "image_id": 3, "category_id": 1, "segmentation": mask_utils.encode(m)},
        ]}, m, v


def _uncompressed(m):
    flat = m.reshape(-1, order="F").astype(np.int8)
    counts, cur, run = [], 0, 0
    for x in flat:
        if x != cur:
            counts.append(run)
            cur, run = x, 0
        run += 1
    counts.append(run)
    return counts


def test_detectron_style(tmp_path):
    doc, m, v = _detectron_doc()
    p = tmp_path / "d2sa.json"
    p.write_text(json.dumps(doc))
    ds = load_dataset(p)
    a1, a2, a3 = ds.samples[0].annotations
    assert ds.samples[0].file_name == tmp_path / "a.png"
    np.testing.assert_array_equal(a2.amodal, m)                 # uncompressed RLE
    np.testing.assert_array_equal(a2.visible, v)                # amodal minus occluded_mask
    assert a2.occlude_rate == pytest.approx(0.4)
    np.testing.assert_array_equal(a1.visible, v)
    assert a1.amodal.sum() >= m.sum() * 0.8                     # polygon rasterised
    np.testing.assert_array_equal(a3.visible, a3.amodal)        # no visible mask: unoccluded
    assert a3.occlude_rate == 0.0 and a1.category_name == "cup"


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.pop("images"), "missing required key"),
    (lambda d: d["images"][0].pop("width"), r"images\[0\].*width"),
    (lambda d: d["annotations"][0].pop("segmentation"), "segmentation"),
    (lambda d: d["annotations"][2].__setitem__("segmentation", mask_utils.encode(np.zeros((5, 8), bool))),
     "does not match expected"),
    (lambda d: d["annotations"][1]["segmentation"].__setitem__("counts", [3, 4]), "sum to"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 99), "not in 'images'"),
    (lambda d: d["annotations"][0].__setitem__("segmentation", [[1, 2, "x"]]), "polygon"),
])
def test_malformed_annotation_files(tmp_path, mutate, match):
    doc, _, _ = _detectron_doc()
    mutate(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=match):
        load_dataset(p)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="JSON object"):
        load_dataset(tmp_path / "y.json")
    with pytest.raises(DatasetError):
        decode_segmentation({"size": [2, 2], "counts": "!!"}, 2, 2)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "generate", *args],
                          capture_output=True, text=True, timeout=120)


def test_generate_cli_errors(tmp_path):
    r = _cli("--preset", "kitchen", "--num", "1", "--out", str(tmp_path / "a"))
    assert r.returncode == 1 and "unknown preset 'kitchen'" in r.stderr
    r = _cli("--preset", "shapes-street", "--num", "0", "--out", str(tmp_path / "a"))
    assert r.returncode == 1 and "--num must be > 0" in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _cli("--num", "1", "--out", str(blocker / "sub"))
    assert r.returncode == 1 and "cannot create output folder" in r.stderr
    if os.geteuid() == 0:                 # root ignores permission bits: use kernel file systems
        r = _cli("--num", "1", "--out", "/proc/self/amodal_out")
        assert r.returncode == 1 and "cannot create output folder" in r.stderr
        r = _cli("--num", "1", "--out", "/proc/self")
        assert r.returncode == 1 and "not writable" in r.stderr
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            r = _cli("--num", "1", "--out", str(ro / "sub"))
            assert r.returncode == 1 and "output folder" in r.stderr
            r = _cli("--num", "1", "--out", str(ro))
            assert r.returncode == 1 and "not writable" in r.stderr
        finally:
            ro.chmod(0o700)


def test_generate_cli_writes(tmp_path):
    r = _cli("--preset", "shapes-tabletop", "--num", "2", "--seed", "4", "--width", "64", "--height", "48",
             "--out", str(tmp_path / "d"), "--no-progress")
    assert r.returncode == 0, r.stderr
    ds = load_dataset(tmp_path / "d")
    assert len(ds) == 2 and ds.samples[0].preset == "shapes-tabletop"


def test_lazy_masks_decode_to_the_same_arrays(tmp_path):
    from ros2_amodal_seg.data.dataset import LazyMask, load_dataset
    from ros2_amodal_seg.world.cli import generate

    generate("shapes-tabletop", 2, 5, tmp_path / "d", lidar=False, progress=False)
    eager, lazy = load_dataset(tmp_path / "d"), load_dataset(tmp_path / "d", lazy_masks=True)
    n = 0
    for se, sl in zip(eager.samples, lazy.samples):
        for ae, al in zip(se.annotations, sl.annotations):
            assert isinstance(al.amodal, LazyMask) and al.amodal.shape == ae.amodal.shape
            np.testing.assert_array_equal(np.asarray(al.amodal), ae.amodal)
            np.testing.assert_array_equal(np.stack([al.visible]), ae.visible[None])
            assert al.occlude_rate == ae.occlude_rate
            n += 1
    assert n >= 2
