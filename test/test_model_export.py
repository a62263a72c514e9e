"""ONNX export: ONNX Runtime gives the same outputs and masks as torch; predict CLI on the COCOA sample."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_amodal_seg import masks as M
from ros2_amodal_seg.errors import CheckpointError
from ros2_amodal_seg.model.checkpoint import save_checkpoint
from ros2_amodal_seg.model.completion import CompletionConfig
from ros2_amodal_seg.model.export import completion_onnx_path, export_onnx, onnx_predictor, reclassify_onnx_path
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.reclassify import PLANES as RECLASSIFY_PLANES
from ros2_amodal_seg.model.reclassify import ReclassifyConfig
from ros2_amodal_seg.model.model import AmodalSegModel
from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT, AmodalPredictor, onnx_cache_path
from test_model_helpers import scene, tiny_config

COCOA = Path("/work/shared/data/cocoa_demo")
CLASSES = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}


def test_onnx_matches_torch(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(completion=CompletionConfig(enabled=True, crop_size=16, channels=(4, 8, 8)),
                      reclassify=ReclassifyConfig(enabled=True, crop_size=16, channels=(4, 8, 8, 8), hidden=8,
                                                   quality=True))
    model = AmodalSegModel(cfg)
    torch.nn.init.normal_(model.completion.head.weight, std=1.0)    # an untrained one would copy its input
    torch.nn.init.normal_(model.reclassifier.mlp[-1].weight, std=3.0)   # likewise its query's classes
    inference = InferenceConfig(score_threshold=0.0, quality_weight=0.5)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, cfg, CLASSES, extra={"inference": inference.to_dict()})
    onnx_path = export_onnx(ckpt, tmp_path / "m.onnx")
    assert completion_onnx_path(onnx_path).is_file() and reclassify_onnx_path(onnx_path).is_file()
    tp = AmodalPredictor.with_torch(ckpt, device="cpu")
    op = onnx_predictor(onnx_path)
    assert tp.config == op.config.replace(backend="torch") == inference.replace(backend="torch")  # travels along
    auto = AmodalPredictor.from_checkpoint(ckpt, device="cpu")     # backend auto: ONNX Runtime on a CPU
    assert type(auto.networks).__name__ == "OnnxNetworks" and auto.config == inference
    cached = onnx_cache_path(ckpt)                                 # exported once, beside its networks
    assert cached.is_file() and completion_onnx_path(cached).is_file() and reclassify_onnx_path(cached).is_file()
    assert op.has_completion and op.has_reclassifier
    planes = torch.from_numpy(np.random.default_rng(0).random((3, cfg.completion.in_channels(5), 16, 16))).float()
    np.testing.assert_allclose(op.networks.completion_run(planes).numpy(), tp.networks.completion_run(planes).numpy(),
                               rtol=1e-3, atol=1e-4)
    rng = np.random.default_rng(1)
    crops = torch.from_numpy(rng.random((3, len(RECLASSIFY_PLANES), 16, 16))).float()
    feats = torch.from_numpy(rng.random((3, 7))).float()
    assert tp.networks.reclassify_run(crops, feats).shape == (3, 6)        # 5 classes + the IoU logit
    np.testing.assert_allclose(op.networks.reclassify_run(crops, feats).numpy(),
                               tp.networks.reclassify_run(crops, feats).numpy(), rtol=1e-3, atol=1e-4)
    assert op.class_names == CLASSES
    img = np.ascontiguousarray(np.kron(scene(5)[0], np.ones((3, 3, 1), np.uint8)))  # 144 x 192
    raw = op.raw(img)
    with torch.no_grad():
        from ros2_amodal_seg.model.predictor import preprocess

        f = tp.networks.model(torch.from_numpy(preprocess(img, 64, 64))).final
    assert f.shape_logits is not None  # the mask-crop shape head (grid_sample) is part of the export
    for a, b in zip((raw.class_logits, raw.amodal_logits, raw.visible_logits, raw.occlusion_rates, raw.order_scores),
                    (f.scored_class_logits(), f.amodal_logits, f.visible_logits, f.occlusion_rates, f.order_scores)):
        np.testing.assert_allclose(a.numpy(), b[0].numpy(), rtol=1e-3, atol=1e-4)
    it, io = tp.predict(img), op.predict(img)
    assert len(it) == len(io) > 0
    assert np.array_equal(it.class_ids, io.class_ids)
    assert np.array_equal(it.amodal_masks, io.amodal_masks)
    assert np.array_equal(it.visible_masks, io.visible_masks)
    np.testing.assert_allclose(it.scores, io.scores, atol=1e-4)
    with pytest.raises(CheckpointError):
        onnx_predictor(tmp_path / "missing.onnx")
    assert op.last_timings_ms["post.reclassify"] > 0 and op.last_timings_ms["post.completion"] > 0
    reclassify_onnx_path(onnx_path).unlink()
    with pytest.raises(CheckpointError, match="re-classifier"):
        onnx_predictor(onnx_path)
    completion_onnx_path(onnx_path).unlink()
    with pytest.raises(CheckpointError, match="completion"):
        onnx_predictor(onnx_path)


@pytest.mark.skipif(not COCOA.is_dir(), reason="COCOA sample not present")
def test_predict_cli_on_cocoa_sample(tmp_path):
    assert DEFAULT_CHECKPOINT.is_file(), "shipped checkpoint missing"
    out = tmp_path / "preds.json"
    r = subprocess.run([sys.executable, "-m", "ros2_amodal_seg.cli", "predict", str(COCOA), "--out", str(out),
                        "--device", "cpu", "--set", "score_threshold=0.05"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    preds = json.loads(out.read_text())
    assert isinstance(preds, list)
    from ros2_amodal_seg.model.data import load_amodal_dataset

    ds = load_amodal_dataset(COCOA)
    sizes = {s.image_id: (s.height, s.width) for s in ds.samples}
    by_img: dict[int, list] = {}
    for p in preds:
        assert {"image_id", "category_id", "score", "segmentation", "visible_mask", "occlude_rate", "depth_rank",
                "occluded_by"} <= set(p)
        assert p["image_id"] in sizes and p["category_id"] in CLASSES and 0 <= p["score"] <= 1
        am = M.decode(p["segmentation"], sizes[p["image_id"]])
        vi = M.decode(p["visible_mask"], sizes[p["image_id"]])
        assert am.any() and not (vi & ~am).any()
        assert 0 <= p["occlude_rate"] <= 1
        by_img.setdefault(p["image_id"], []).append(p)
    assert any("alt_of" in p for p in preds)          # the default reports runner-up classes too
    for ps in by_img.values():
        main = [p for p in ps if "alt_of" not in p]
        assert ps[:len(main)] == main                 # instances first, their runner-up classes after
        assert sorted(p["depth_rank"] for p in main) == list(range(len(main)))
        for k, p in enumerate(main):
            assert all(0 <= j < len(main) and j != k for j in p["occluded_by"])
        for p in ps[len(main):]:
            m = main[p["alt_of"]]
            assert p["category_id"] != m["category_id"] and p["score"] <= m["score"]
            assert p["segmentation"] == m["segmentation"] and p["depth_rank"] == m["depth_rank"]


@pytest.mark.skipif(not COCOA.is_dir(), reason="COCOA sample not present")
def test_bench_cli_times_a_given_image_and_rejects_a_missing_one(tmp_path):
    image = sorted(COCOA.rglob("*.jpg"))[0]
    out = tmp_path / "bench.json"
    base = [sys.executable, "-m", "ros2_amodal_seg.cli", "bench", "--device", "cpu", "--no-hf", "--iters", "1",
            "--warmup", "0"]
    settings = tmp_path / "inference.yaml"
    settings.write_text("max_instances: 7\nfinal_nms_sigma: 1.0\n")
    r = subprocess.run(base + ["--image", str(image), "--config", str(settings), "--set", "final_nms_sigma=1.5",
                               "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    import cv2

    assert res["image"] == list(cv2.imread(str(image)).shape[:2]) and res["image_file"] == str(image)
    # the checkpoint's configuration, then --config, then --set
    assert res["config"]["complete_hidden"] is True and res["config"]["max_instances"] == 7
    assert res["config"]["final_nms_sigma"] == 1.5 and res["instances"] <= 7
    assert {"preprocess", "network", "post.score", "post.completion", "post.reclassify", "total"} <= set(res["ours_ms"])
    r = subprocess.run(base + ["--image", str(tmp_path / "none.png")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "cannot read an image" in r.stderr + r.stdout
