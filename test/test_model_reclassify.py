"""Class re-reading (model/reclassify.py, reclassify_train.py): crop planes by hand, the
untrained network keeps the query's classes, post-processing shares the score mass out over
the re-read classes and puts the predicted IoU in the place of the query's mask quality, the
network learns a class the query cannot see and a mask misfit only the image shows, and the
checkpoint / predictor / command plumbing."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from ros2_amodal_seg.errors import CheckpointError, ConfigError
from ros2_amodal_seg.model.candidates import RawOutputs
from ros2_amodal_seg.model.checkpoint import load_checkpoint, save_checkpoint
from ros2_amodal_seg.model.crops import crop_boxes
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.model import AmodalSegModel
from ros2_amodal_seg.model.ops import TORCH_KERNELS_ENV
from ros2_amodal_seg.model.postprocess import PostProcessor
from ros2_amodal_seg.model.predictor import AmodalPredictor
from ros2_amodal_seg.model.reclassify import (PLANES, ReclassifierNet, ReclassifyConfig, ReclassifyStage,
                                              reclassify_inputs)
from ros2_amodal_seg.model.reclassify_train import (ClassCrops, ReclassifyTrainConfig, cache_file,
                                                    evaluate_class_crops, train_reclassifier_net)
from ros2_amodal_seg.model.upsample import softmax
from test_model_helpers import rect, scene, tiny_config

CLASSES = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}
SMALL = ReclassifyConfig(enabled=True, crop_size=16, channels=(4, 8, 8, 8), hidden=8)
SMALL_Q = dataclasses.replace(SMALL, quality=True)


def test_untrained_network_keeps_the_query_distribution_and_config_is_checked():
    net = ReclassifierNet(SMALL, 5)
    rng = np.random.default_rng(0)
    dist = rng.dirichlet(np.ones(5), 4)
    feats = torch.from_numpy(np.concatenate([dist, rng.random((4, 2))], 1).astype(np.float32))
    out = torch.softmax(net(torch.rand(4, len(PLANES), 16, 16), feats), 1)
    torch.testing.assert_close(out, torch.from_numpy(dist).float(), atol=1e-5, rtol=0)
    q = ReclassifierNet(SMALL_Q, 5)                       # the quality head adds one column, classes as before
    assert q.num_outputs == 6 and net.num_outputs == 5
    both = q(torch.rand(4, len(PLANES), 16, 16), feats)
    assert both.shape == (4, 6)
    torch.testing.assert_close(torch.softmax(both[:, :5], 1), torch.from_numpy(dist).float(), atol=1e-5, rtol=0)
    for bad in ({"crop_size": 24}, {"channels": (4, 8, 8)}, {"context": 3.0}, {"hidden": 2}):
        with pytest.raises(ConfigError):
            ReclassifyConfig(**bad)
    with pytest.raises(ConfigError, match="quality_weight"):      # the weight is an inference setting now
        InferenceConfig(quality_weight=1.5)


def test_inputs_by_hand(monkeypatch):
    """A 40 x 40 image, two squares: A (rows/cols 10..19) partly behind B (rows/cols 15..29)."""
    H = W = 40
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = np.arange(W, dtype=np.uint8)[None] * 5          # red ramp along x
    img[..., 2] = 200
    am = np.stack([rect(H, W, 10, 20, 10, 20), rect(H, W, 15, 30, 15, 30)])
    vis = np.stack([am[0] & ~am[1], am[1]])
    cfg = ReclassifyConfig(crop_size=16, context=0.3)
    x = reclassify_inputs(img, am, vis, np.array([[2.0, 0, 0, 0, 2.0], [0, 0, 0, 0, 0]]),
                          np.array([0.9, 0.4]), np.array([0.25, 0.0]), cfg)
    assert x.planes.shape == (2, len(PLANES), 16, 16) and x.features.shape == (2, 7)
    # A's box: side ceil(10 * 1.6) = 16, centred on 10..20 -> (7, 7, 16): one image pixel per crop pixel
    np.testing.assert_array_equal(x.boxes[0], (7, 7, 16))
    np.testing.assert_array_equal(x.boxes, crop_boxes(am, cfg.crops))
    np.testing.assert_allclose(x.planes[0, 0], img[7:23, 7:23, 0] / 255.0, atol=1e-6)
    np.testing.assert_allclose(x.planes[0, 2], 200 / 255.0, atol=1e-6)
    np.testing.assert_array_equal(x.planes[0, 3], am[0, 7:23, 7:23])
    np.testing.assert_array_equal(x.planes[0, 4], vis[0, 7:23, 7:23])
    np.testing.assert_array_equal(x.planes[0, 5], vis[1, 7:23, 7:23])        # B's visible mask occludes A
    assert x.planes[0, 6].min() == 1.0                                       # inside the image
    # B's crop: side 24 from 3..27 ... past nothing; its occluders are A's visible pixels
    occ = cv2.resize((vis[0] * 255).astype(np.uint8)[x.boxes[1, 1]:x.boxes[1, 1] + x.boxes[1, 2],
                                                     x.boxes[1, 0]:x.boxes[1, 0] + x.boxes[1, 2]],
                     (16, 16), interpolation=cv2.INTER_AREA) / 255.0
    np.testing.assert_allclose(x.planes[1, 5], occ, atol=1e-6)
    np.testing.assert_allclose(x.features[0], [0.5, 0, 0, 0, 0.5, 0.9, 0.25], atol=1e-6)
    np.testing.assert_allclose(x.features[1], [0.2] * 5 + [0.4, 0.0], atol=1e-6)   # zero row -> uniform
    # a crop running past the image: the in-image plane says which part is inside
    corner = rect(H, W, 0, 8, 0, 8)[None]
    edge = reclassify_inputs(img, corner, corner, np.ones((1, 5)), np.ones(1), np.zeros(1),
                             ReclassifyConfig(crop_size=16, context=1.0))
    assert 0 < edge.planes[0, 6].mean() < 1
    with pytest.raises(ValueError):
        reclassify_inputs(img[:30], am, vis, np.ones((2, 5)), np.ones(2), np.zeros(2), cfg)
    # tensors in -> tensors out; the torch kernels (the GPU path) cut the same crops
    args = [torch.from_numpy(np.asarray(a)) for a in (img, am, vis, [[2.0, 0, 0, 0, 2.0], [0, 0, 0, 0, 0]],
                                                      [0.9, 0.4], [0.25, 0.0])]
    monkeypatch.setenv(TORCH_KERNELS_ENV, "1")
    t = reclassify_inputs(*args, cfg)
    assert isinstance(t.planes, torch.Tensor)
    np.testing.assert_array_equal(t.boxes.numpy(), x.boxes)
    np.testing.assert_allclose(t.planes.numpy(), x.planes, atol=1e-5)
    np.testing.assert_allclose(t.features.numpy(), x.features, atol=1e-6)


def _two_objects() -> RawOutputs:
    """Raw outputs of two separate objects on a 16 x 16 grid: A class 0 (p 0.6) / class 1 (0.3),
    B class 1."""
    g = np.full((2, 16, 16), -8.0, np.float32)
    amodal, visible = g.copy(), g.copy()
    amodal[0, 2:7, 2:7] = visible[0, 2:7, 2:7] = 8.0
    amodal[1, 9:14, 9:14] = visible[1, 9:14, 9:14] = 8.0
    cls = np.log(np.array([[0.6, 0.3, 0.05, 0.02, 0.02, 0.01], [0.01, 0.95, 0.01, 0.01, 0.01, 0.01]], np.float32))
    return RawOutputs.from_arrays([cls, amodal, visible, np.array([0.3, 0.0], np.float32),
                                   np.array([1.0, 0.0], np.float32)])


#: a flat 64 x 64 image (the objects' masks are 4x their 16 x 16 grid)
IMAGE = torch.full((64, 64, 3), 100, dtype=torch.uint8)


def postprocess(cfg: InferenceConfig, reclassify: ReclassifyStage | None = None):
    """The two objects through the post-processing (all runner-up classes reported)."""
    post = PostProcessor(cfg.replace(runner_up_classes=4), [1, 2, 3, 4, 5], reclassify=reclassify)
    return post(_two_objects(), IMAGE)[0]


def test_postprocess_shares_the_score_mass_over_the_re_read_classes():
    cfg = InferenceConfig(score_threshold=0.1)
    plain = postprocess(cfg)
    seen = []

    def run(planes, features):                # A -> class 2 for sure; B -> split evenly over classes 1 and 4
        seen.append(features.clone())
        out = torch.full((len(planes), 5), -30.0)
        a = int(torch.argmax(features[:, 0]))
        out[a, 2] = 0.0
        out[1 - a, [1, 4]] = 0.0
        return out

    done = postprocess(cfg, ReclassifyStage(SMALL, 5, 1.0, run))
    assert len(seen) == 1 and seen[0].shape == (2, 7)
    seen = [f.numpy() for f in seen]
    np.testing.assert_allclose(seen[0][:, :5].sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(sorted(seen[0][:, 6]), [0.0, 0.3], atol=1e-6)      # occlusion rates
    ia, ib = int(np.argmax(plain.class_ids == 1)), int(np.argmax(plain.class_ids == 2))
    np.testing.assert_array_equal(done.amodal_masks, plain.amodal_masks)     # masks and order untouched
    np.testing.assert_array_equal(done.visible_masks, plain.visible_masks)
    # A: all of its mass (its score / 0.6 * 0.99) goes to class 3 (index 2)
    mass_a = plain.scores[ia] / 0.6 * 0.99
    assert done.class_ids[ia] == 3 and done.scores[ia] == pytest.approx(mass_a, rel=1e-4)
    assert done.alt_scores[ia].max() == pytest.approx(0.0, abs=1e-9)
    # B: half of its mass each to class 2 (index 1) and 5 (index 4); main + runner-up
    mass_b = plain.scores[ib] / 0.95 * 0.99
    assert done.class_ids[ib] in (2, 5) and done.scores[ib] == pytest.approx(mass_b / 2, rel=1e-4)
    assert {int(done.class_ids[ib]), int(done.alt_class_ids[ib, 0])} == {2, 5}
    assert done.alt_scores[ib, 0] == pytest.approx(mass_b / 2, rel=1e-4)
    # a threshold above B's halved score drops B (the threshold bounds the reported class's score)
    high = InferenceConfig(score_threshold=float(mass_b) * 0.6)
    kept = postprocess(high, ReclassifyStage(SMALL, 5, 1.0, run))
    assert len(postprocess(high)) == 2 and len(kept) == 1 and kept.class_ids[0] == 3
    # switched off in the configuration, the stage is not run
    seen.clear()
    off = postprocess(cfg.replace(reclassify=False), ReclassifyStage(SMALL, 5, 1.0, run))
    assert not seen and off.class_ids.tolist() == plain.class_ids.tolist()


def test_postprocess_puts_the_predicted_iou_in_place_of_the_mask_quality():
    """Two crisp separate objects (mask quality ~1, no NMS decay): with w = 1 a score is the
    re-read class share times the predicted IoU; w = 0.5 uses its square root."""
    cfg = InferenceConfig(score_threshold=0.05)

    def run(planes, features):                 # classes as the query has them; IoU 0.5 for A, 0.9 for B
        out = torch.log(features[:, :5].clamp_min(1e-9))
        iou = torch.where(features[:, 0] > 0.5, 0.5, 0.9)
        return torch.cat([out, torch.log(iou / (1 - iou))[:, None]], 1).float()

    plain = postprocess(cfg, ReclassifyStage(SMALL, 5, 1.0, lambda p, f: run(p, f)[:, :5]))
    q1 = postprocess(cfg, ReclassifyStage(SMALL_Q, 5, 1.0, run))
    q05 = postprocess(cfg, ReclassifyStage(SMALL_Q, 5, 0.5, run))
    ia = int(np.argmax(plain.class_ids == 1))
    expect = np.where(np.arange(len(plain)) == ia, 0.5, 0.9)
    np.testing.assert_allclose(q1.scores, plain.scores * expect, rtol=1e-3)            # mask quality 0.9997
    np.testing.assert_allclose(q1.alt_scores, plain.alt_scores * expect[:, None], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(q05.scores, plain.scores * np.sqrt(expect), rtol=1e-3)
    np.testing.assert_array_equal(q1.amodal_masks, plain.amodal_masks)
    high = InferenceConfig(score_threshold=float(plain.scores[ia]) * 0.7)   # A drops, B stays
    kept = postprocess(high, ReclassifyStage(SMALL_Q, 5, 1.0, run))
    assert len(kept) == 1 and kept.class_ids[0] == 2
    with pytest.raises(ValueError, match="expected"):     # a network without the head in a quality config
        postprocess(cfg, ReclassifyStage(SMALL_Q, 5, 1.0, lambda p, f: run(p, f)[:, :5]))


def _texture_crops(n: int, rng: np.random.Generator, size: int = 16) -> ClassCrops:
    """The class is in the image only: stripes (class 3) or a flat patch (class 1) under the
    visible mask; the query's distribution says class 1 for all of them."""
    planes = np.zeros((n, len(PLANES), size, size), np.uint8)
    labels = rng.integers(0, 2, n) * 2                     # class index 0 or 2
    for k in range(n):
        a = int(rng.integers(2, 6))
        m = rect(size, size, a, a + 8, a, a + 8)
        grey = np.full((size, size), int(rng.integers(60, 200)), np.uint8)
        if labels[k] == 2:
            grey[(np.arange(size) // 2) % 2 == 1] = 255 - grey[0, 0]
        planes[k, :3] = np.where(m, grey, 128)[None]
        planes[k, 3] = planes[k, 4] = m * 255
        planes[k, 6] = 255
    feats = np.tile(np.array([0.7, 0.05, 0.15, 0.05, 0.05, 0.5, 0.3], np.float32), (n, 1))
    return ClassCrops(planes, feats, labels.astype(np.int64), np.ones(n, np.float32))


def _misfit_crops(n: int, rng: np.random.Generator, size: int = 16) -> ClassCrops:
    """An 8 x 8 object in the image and an 8 x 8 amodal mask shifted right by d = 0..6 px: the
    IoU (8 - d) / (8 + d) is in the image only (the score feature is noise); a third of the crops
    match no object (label -1) and still carry their IoU."""
    planes = np.zeros((n, len(PLANES), size, size), np.uint8)
    shift = rng.integers(0, 7, n)
    for k in range(n):
        a = int(rng.integers(1, 3))
        planes[k, :3] = np.where(rect(size, size, a, a + 8, a, a + 8), 220, 30)[None]
        planes[k, 3] = planes[k, 4] = rect(size, size, a, a + 8, a + shift[k], a + 8 + shift[k]) * 255
        planes[k, 6] = 255
    feats = np.tile(np.array([0.7, 0.05, 0.15, 0.05, 0.05, 0.5, 0.3], np.float32), (n, 1))
    feats[:, 5] = rng.random(n)
    labels = np.where(rng.random(n) < 1 / 3, -1, 0)
    return ClassCrops(planes, feats, labels.astype(np.int64), ((8 - shift) / (8 + shift)).astype(np.float32))


def test_reclassifier_learns_a_class_the_query_does_not_see():
    rng = np.random.default_rng(0)
    train, val = _texture_crops(256, rng), _texture_crops(64, rng)
    torch.set_num_threads(2)
    net, hist = train_reclassifier_net(train, val, SMALL, 5, ReclassifyTrainConfig(steps=150, batch_size=32, lr=1e-2),
                                       progress=False)
    m = evaluate_class_crops(net, val)
    assert m["query_accuracy"] == pytest.approx((val.labels == 0).mean())   # the query always says index 0
    assert m["accuracy"] > 0.9, (m, hist["val_accuracy"])
    assert m["occluded_crops"] == len(val) and m["occluded_accuracy"] == m["accuracy"]   # rate 0.3 > 0.15
    assert np.mean(hist["loss"][-20:]) < 0.5 * np.mean(hist["loss"][:20])


def test_quality_head_learns_a_mask_misfit_only_the_image_shows():
    rng = np.random.default_rng(0)
    train, val = _misfit_crops(384, rng), _misfit_crops(96, rng)
    torch.set_num_threads(2)
    net, hist = train_reclassifier_net(train, val, SMALL_Q, 5,
                                       ReclassifyTrainConfig(steps=200, batch_size=32, lr=1e-2), progress=False)
    m = evaluate_class_crops(net, val)
    assert m["quality_crops"] == len(val) and m["crops"] == int((val.labels >= 0).sum()) < len(val)
    assert m["quality_corr"] > 0.8 and abs(m["score_corr"]) < 0.4, m
    assert m["quality_mae"] < 0.1 and hist["val_quality_corr"][-1] == m["quality_corr"]
    # without the head only the labelled crops train, and the class stays right (all index 0 here)
    plain, _ = train_reclassifier_net(train, None, SMALL, 5, ReclassifyTrainConfig(steps=5, batch_size=8),
                                      progress=False)
    assert "quality_corr" not in evaluate_class_crops(plain, val) and evaluate_class_crops(plain, val)["accuracy"] == 1.0


@pytest.mark.parametrize("rcfg", [SMALL, SMALL_Q], ids=["classes", "classes+quality"])
def test_checkpoint_with_reclassifier_round_trips_and_runs_in_the_predictor(tmp_path, rcfg):
    torch.manual_seed(0)
    cfg = tiny_config(reclassify=rcfg)
    model = AmodalSegModel(cfg)
    torch.nn.init.normal_(model.reclassifier.mlp[-1].weight, std=3.0)      # make the (untrained) net change classes
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, cfg, CLASSES)
    loaded, _ = load_checkpoint(ckpt)
    assert loaded.cfg.reclassify == rcfg and loaded.reclassifier is not None
    for a, b in zip(loaded.reclassifier.state_dict().values(), model.reclassifier.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt, expected_config=dataclasses.replace(cfg, reclassify=ReclassifyConfig()))
    pred = AmodalPredictor.from_checkpoint(ckpt, "cpu", config=InferenceConfig(score_threshold=0.0,
                                                                               runner_up_classes=4))
    assert pred.has_reclassifier and not pred.has_completion
    img = np.ascontiguousarray(np.kron(scene(5)[0], np.ones((3, 3, 1), np.uint8)))
    with_r = pred.predict(img)
    assert pred.last_timings_ms["post.reclassify"] > 0
    pred.set_config(pred.config.replace(reclassify=False))
    without = pred.predict(img)
    assert "post.reclassify" not in pred.last_timings_ms
    assert len(with_r) == len(without) > 1                  # threshold 0: nobody dropped
    np.testing.assert_array_equal(with_r.amodal_masks, without.amodal_masks)
    assert not np.array_equal(with_r.class_ids, without.class_ids) or not np.allclose(with_r.scores, without.scores)
    if not rcfg.quality:     # the score mass (main + runner-ups) is what it was
        np.testing.assert_allclose(with_r.scores + with_r.alt_scores.sum(1),
                                   without.scores + without.alt_scores.sum(1), rtol=1e-4)
    # old checkpoints (no reclassify entry) load with none
    plain = save_checkpoint(tmp_path / "p.safetensors", AmodalSegModel(tiny_config()), tiny_config(), CLASSES)
    assert not AmodalPredictor.from_checkpoint(plain, "cpu").has_reclassifier


def test_train_reclassifier_run_collects_per_folder_and_writes_a_checkpoint(tmp_path):
    from ros2_amodal_seg.model.reclassify_train import run
    from test_model_helpers import write_dataset

    torch.manual_seed(0)
    cfg = tiny_config()
    model = AmodalSegModel(cfg)
    src = save_checkpoint(tmp_path / "src.safetensors", model, cfg, CLASSES)
    data = write_dataset(tmp_path / "ds", n_images=3, h=96, w=128)
    tcfg = ReclassifyTrainConfig(steps=3, batch_size=4, score_threshold=0.0, min_match_iou=0.01)
    with pytest.raises(ConfigError, match="crop-cache"):
        run(src, [str(data)], [], None, SMALL, tcfg, device="cpu", progress=False, collect_only=True)
    got = run(src, [str(data)], [], None, SMALL, tcfg, device="cpu", progress=False, crop_cache=tmp_path / "c",
              collect_only=True)
    f = cache_file(tmp_path / "c", data)
    assert f.is_file() and f.name.startswith("c.ds-") and got["train_crops"] > 0 and "checkpoint" not in got
    z = np.load(f)
    assert z["planes"].dtype == np.uint8 and z["planes"].shape[1:] == (len(PLANES), 16, 16)
    assert set(np.unique(z["labels"])) <= set(range(-1, 5)) and len(z["iou"]) == len(z["labels"])
    assert z["iou"].min() >= 0 and z["iou"].max() <= 1 and np.all((z["labels"] >= 0) == (z["iou"] >= 0.01))
    summary = run(src, [str(data)], [str(data)], tmp_path / "out.safetensors", SMALL, tcfg, device="cpu",
                  progress=False, crop_cache=tmp_path / "c")
    assert summary["train_crops"] == summary["val_crops"] == got["train_crops"]
    assert summary["collect_s"] < got["collect_s"] + 5 and (tmp_path / "out.reclassify.png").is_file()
    loaded, meta = load_checkpoint(tmp_path / "out.safetensors")
    assert loaded.cfg.reclassify == SMALL and meta["reclassify_training"]["val"]["crops"] == got["train_labelled"]
    for k, v in model.state_dict().items():                  # the model's own weights are unchanged
        torch.testing.assert_close(loaded.state_dict()[k], v)
    np.savez(f, planes=z["planes"], features=z["features"], labels=z["labels"])     # a cache of an older version
    with pytest.raises(ConfigError, match="iou"):
        run(src, [str(data)], [], tmp_path / "o2.safetensors", SMALL, tcfg, device="cpu", progress=False,
            crop_cache=tmp_path / "c")


def test_train_reclassifier_cli_refuses_bad_arguments(tmp_path, capsys):
    from ros2_amodal_seg.cli import main

    with pytest.raises(SystemExit):
        main(["train-reclassifier", "--data", str(tmp_path), "--steps", "0"])
    assert "must be >= 1" in capsys.readouterr().err
    rc = main(["train-reclassifier", "--data", str(tmp_path), "--collect-only"])
    assert rc != 0 and "crop-cache" in capsys.readouterr().err


def test_softmax_rows():
    p = softmax(np.array([[0.0, 0.0], [1000.0, 0.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [1.0, 0.0]])
