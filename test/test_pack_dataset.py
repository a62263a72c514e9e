"""scripts/pack_dataset.py: rendered datasets packed as JPEG + RLE at the network's input size,
read back by the project's loader, within a size budget."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "pack_dataset", Path(__file__).resolve().parent.parent / "scripts" / "pack_dataset.py")
pack_dataset = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pack_dataset)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    from ros2_amodal_seg.world.cli import generate

    root = tmp_path_factory.mktemp("pack_src")
    generate("shapes-tabletop", 3, 5100, root / "a", width=160, height=120, lidar=False, progress=False)
    generate("shapes-street", 2, 5200, root / "b", width=160, height=120, lidar=False, progress=False)
    return root


def test_packed_dataset_loads_with_scaled_masks_and_intrinsics(rendered, tmp_path):
    from ros2_amodal_seg.model.data import load_amodal_dataset, resize_masks

    s = pack_dataset.pack([rendered / "a", rendered / "b"], tmp_path, 80, 60, 90, 2**30, progress=False)
    assert not s["cut_by_budget"]
    assert {k: v["frames"] for k, v in s["datasets"].items()} == {"a": 3, "b": 2}
    src = load_amodal_dataset(rendered / "a" / "annotations.json")
    got = load_amodal_dataset(tmp_path / "a" / "annotations.json")
    assert len(got.samples) == 3 and got.categories == src.categories
    for a, b in zip(src.samples, got.samples):
        assert b.file_name.suffix == ".jpg" and b.load_image().shape == (60, 80, 3)
        assert (b.width, b.height) == (80, 60)
        # K: focal lengths and principal point halved (160 -> 80, 120 -> 60); the rest unchanged
        assert np.allclose(b.K[:2], a.K[:2] / 2) and np.allclose(b.K[2], [0, 0, 1])
        assert np.allclose(b.T_base_camera, a.T_base_camera)
        kept = [x for x in a.annotations if resize_masks(x.amodal[None], 60, 80).any()]
        assert [x.id for x in b.annotations] == [x.id for x in kept]
        for x, y in zip(kept, b.annotations):
            assert np.array_equal(y.amodal, resize_masks(x.amodal[None], 60, 80)[0])   # the loader's resize
            assert not (y.visible & ~y.amodal).any()
            assert y.occlude_rate == x.occlude_rate and y.occluded_by == x.occluded_by
            assert y.category_id == x.category_id


def test_the_budget_cuts_frames_in_turn_from_each_dataset(rendered, tmp_path):
    full = pack_dataset.pack([rendered / "a", rendered / "b"], tmp_path / "full", 80, 60, 90, 2**30,
                             progress=False)
    per_frame = full["total_bytes"] / 5
    s = pack_dataset.pack([rendered / "a", rendered / "b"], tmp_path / "cut", 80, 60, 90,
                          int(2.5 * per_frame), progress=False)

    assert s["cut_by_budget"]
    frames = {k: v["frames"] for k, v in s["datasets"].items()}
    assert sum(frames.values()) in (2, 3) and abs(frames["a"] - frames["b"]) <= 1     # a, b, (a)
    assert s["total_bytes"] <= int(2.5 * per_frame)                                 # within the budget
    json.loads((tmp_path / "cut" / "a" / "annotations.json").read_text())


def test_bad_input_is_refused_clearly(rendered, tmp_path):
    from ros2_amodal_seg.errors import DatasetError

    with pytest.raises(DatasetError, match="annotations.json"):
        pack_dataset.pack([tmp_path], tmp_path / "o", 80, 60, 90, 2**20, progress=False)
    with pytest.raises(DatasetError, match="two datasets named"):
        pack_dataset.pack([rendered / "a", rendered / "a"], tmp_path / "o", 80, 60, 90, 2**20, progress=False)
    assert pack_dataset.main(["--data", str(rendered / "a"), "--out", str(tmp_path / "o"),
                              "--no-progress", "--max-mib", "1"]) == 0
    with pytest.raises(SystemExit):
        pack_dataset.main(["--data", str(rendered / "a"), "--out", str(tmp_path / "o"), "--size", "big"])
