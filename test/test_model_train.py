"""Training CLI: a 2-process DDP smoke run (torchrun, gloo on CPU) and --resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from ros2_amodal_seg.model.checkpoint import load_checkpoint
from test_model_helpers import TINY_YAML, write_dataset


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_ddp_two_process_smoke_and_resume(tmp_path):
    data = write_dataset(tmp_path / "data", 4, seed=3)
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    run = tmp_path / "run"
    common = ["--data", str(data), "--val-data", str(data), "--out", str(run), "--batch-size", "1",
              "--model-config", str(tmp_path / "tiny.yaml"), "--threads", "1", "--device", "cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ros2_amodal_seg.cli", "train", "--steps", "2", "--val-every", "0", *common]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=_env())
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    hist = json.loads((run / "history.json").read_text())
    assert hist["world_size"] == 2 and hist["step"] == [1, 2]
    assert len(hist["val"]) == 1 and "amodal_AP" in hist["val"][0]
    model, meta = load_checkpoint(run / "last.safetensors")
    assert meta["train"]["world_size"] == 2 and meta["train"]["step"] == 2
    assert (run / "loss_curves.png").stat().st_size > 1000
    # resume in a single process: continues at step 3
    r = subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "train", "--steps", "3", "--resume",
                        "--val-every", "0", *common], capture_output=True, text=True, timeout=240, env=_env())
    assert r.returncode == 0, r.stderr[-4000:]
    hist = json.loads((run / "history.json").read_text())
    assert hist["step"] == [1, 2, 3]
    assert load_checkpoint(run / "last.safetensors")[1]["train"]["step"] == 3


def test_torch_dataset_targets_consistent_under_augmentation(tmp_path):
    import torch

    from ros2_amodal_seg.model.augment import AugmentConfig
    from ros2_amodal_seg.model.data import AmodalTorchDataset, load_amodal_dataset
    from test_model_helpers import tiny_config

    data = write_dataset(tmp_path / "data", 6, seed=7, h=64, w=64)
    cfg = tiny_config()
    aug = AugmentConfig(paste_prob=1.0, strip_prob=1.0, scale_prob=1.0)
    ds = AmodalTorchDataset([load_amodal_dataset(data)], cfg, [1, 2, 3, 4, 5], aug, seed=0)
    for i in range(len(ds)):
        for _ in range(3):
            img, t = ds[i]
            n = len(t["labels"])
            assert img.shape == (3, 64, 64) and t["amodal"].shape == (n, 16, 16)
            assert (t["visible"] <= t["amodal"] + 1e-6).all()
            assert ((t["occlusion"] >= 0) & (t["occlusion"] <= 1)).all()
            if t["occ_pairs"].numel():
                assert int(t["occ_pairs"].max()) < n and (t["occ_pairs"][:, 0] != t["occ_pairs"][:, 1]).all()
            # occlusion target equals 1 - |visible| / |amodal| at the internal resolution (up to pooling)
            a = t["amodal"].flatten(1).sum(1)
            v = t["visible"].flatten(1).sum(1)
            assert torch.allclose(t["occlusion"], 1 - v / a.clamp(min=1e-6), atol=1e-4)


def test_init_adds_a_new_head_and_refuses_other_architectures(tmp_path):
    """--init from weights without the shape head: shared tensors load, the head starts fresh."""
    data = write_dataset(tmp_path / "data", 2, seed=5)
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)   # no shape_head entry -> none
    (tmp_path / "tiny_shape.yaml").write_text(TINY_YAML + "shape_head: {enabled: true, crop_size: 16, "
                                                          "channels: [8, 16, 16]}\n")
    (tmp_path / "wide.yaml").write_text(TINY_YAML.replace("hidden_dim: 32", "hidden_dim: 64"))

    def train(run, cfg, *extra):
        return subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "train", "--data", str(data),
                               "--out", str(tmp_path / run), "--batch-size", "1", "--steps", "1", "--val-every",
                               "0", "--model-config", str(tmp_path / cfg), "--threads", "1", "--device", "cpu",
                               *extra], capture_output=True, text=True, timeout=240, env=_env())

    r = train("src", "tiny.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    src, _ = load_checkpoint(tmp_path / "src" / "last.safetensors")
    assert src.shape_head is None
    r = train("dst", "tiny_shape.yaml", "--init", str(tmp_path / "src" / "last.safetensors"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "start fresh" in r.stderr and "shape_head" in r.stderr
    dst, meta = load_checkpoint(tmp_path / "dst" / "last.safetensors")
    assert dst.shape_head is not None
    assert meta["train"]["init"]["fresh_tensors"] == len(dst.shape_head.state_dict())
    r = train("bad", "wide.yaml", "--init", str(tmp_path / "src" / "last.safetensors"))
    assert r.returncode != 0 and "do not fit" in r.stderr
