"""Hidden-part completion (model/completion.py, completion_train.py): crop geometry by hand,
the paste touches only the occluder region, the network learns a hidden extent, and the
checkpoint / predictor plumbing."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from ros2_amodal_seg.errors import CheckpointError, ConfigError
from ros2_amodal_seg.model.checkpoint import load_checkpoint, save_checkpoint
from ros2_amodal_seg.model.candidates import Candidates, RawOutputs
from ros2_amodal_seg.model.completion import (OCCLUDERS, PLANES, CompletionConfig, CompletionInputs,
                                              CompletionNet, CompletionStage, completion_inputs, paste_completion)
from ros2_amodal_seg.model.completion_train import (CompletionTrainConfig, CropSet, evaluate_crops,
                                                    train_completion_net)
from ros2_amodal_seg.model.crops import (crop_boxes, crop_logits, crop_logits_t, crop_plane,
                                         resize_part, resize_part_t)
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.model import AmodalSegModel
from ros2_amodal_seg.model.postprocess import PostProcessor
from ros2_amodal_seg.model.predictor import AmodalPredictor
from test_model_helpers import rect, scene, tiny_config

CLASSES = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}


def occluder_regions(visible: np.ndarray) -> np.ndarray:
    """Reference: ``[N, H, W]`` bool visible masks -> ``[N, H, W]`` bool pixels visible in another instance."""
    return (visible.sum(0, dtype=np.int32)[None] - visible) > 0


def test_crop_boxes_by_hand():
    cfg = CompletionConfig(context=0.4, min_side_px=16)
    m = np.zeros((2, 40, 50), bool)
    m[0, 5:15, 10:30] = True            # 20 wide, 10 high: side ceil(20 * 1.8) = 36, centred on (20, 10)
    m[1, 0:2, 48:50] = True             # 2 x 2 in the corner: side min 16, centred on (49, 1)
    np.testing.assert_array_equal(crop_boxes(m, cfg.crops), [[2, -8, 36], [41, -7, 16]])
    assert crop_boxes(torch.from_numpy(m), cfg.crops).tolist() == [[2, -8, 36], [41, -7, 16]]   # the torch path


def test_crop_plane_and_logits_by_hand():
    plane = np.zeros((8, 8), np.float32)
    plane[:4, :4] = 1.0
    # the square (x0, y0, side) = (-4, -4, 8) holds the image's top-left 4 x 4 block in its
    # bottom-right quarter; halved by area averaging to 4 x 4
    np.testing.assert_array_equal(crop_plane(plane, (-4, -4, 8), 4), np.pad(np.ones((2, 2)), ((2, 0), (2, 0))))
    # a ramp over the mask grid: grid column c holds c. The image is 4x the grid; a crop spanning
    # the whole image at the grid's size puts crop pixel u on grid column u.
    h, w = 6, 10
    logits = np.tile(np.arange(w, dtype=np.float32), (h, 1))
    out = crop_logits(logits, (0, -8, 40), (24, 40), 10)          # square 40 px: the image and 8 px above/below
    np.testing.assert_allclose(out[5], np.arange(10), atol=1e-5)
    # half a crop pixel is 2 image pixels = half a grid cell
    out2 = crop_logits(logits, (2, 0, 40), (24, 40), 10)
    np.testing.assert_allclose(out2[0, :9], np.arange(9) + 0.5, atol=1e-5)
    # the torch twin (batched over boxes) gives the same crops
    both = crop_logits_t(torch.from_numpy(logits)[None].expand(2, h, w), torch.tensor([[0, -8, 40], [2, 0, 40]]),
                         (24, 40), 10)
    np.testing.assert_allclose(both[0].numpy(), out, atol=1e-5)
    np.testing.assert_allclose(both[1].numpy(), out2, atol=1e-5)


def test_occluder_regions_and_paste_touch_only_other_instances_visible_pixels():
    H, W = 40, 40
    am = np.stack([rect(H, W, 10, 20, 5, 15), rect(H, W, 12, 30, 12, 30)])
    vi = np.stack([rect(H, W, 10, 20, 5, 15), rect(H, W, 12, 30, 12, 30) & ~rect(H, W, 10, 20, 5, 15)])
    occ = occluder_regions(vi)
    np.testing.assert_array_equal(occ[0], vi[1])
    np.testing.assert_array_equal(occ[1], vi[0])
    cfg = CompletionConfig(crop_size=16, context=0.5)
    inp = completion_inputs(am, vi, np.zeros((2, 10, 10), np.float32), np.zeros((2, 10, 10), np.float32),
                            np.array([0, 3]), 5, cfg)
    assert inp.planes.shape == (2, len(PLANES) + 5, 16, 16)
    for i in range(2):     # the fast crops (one uint8 area resize, analytic in-image share) equal crop_plane
        for k, plane in enumerate((am[i], vi[i], occ[i], np.ones((H, W)))):
            np.testing.assert_allclose(inp.planes[i, PLANES.index(("amodal", "visible", "occluders", "inside")[k])],
                                       crop_plane(plane, inp.boxes[i], 16), atol=1.01 / 255)
    assert inp.planes[1, len(PLANES) + 3].min() == 1.0 and inp.planes[1, len(PLANES):].sum() == 16 * 16
    # "everything is object" grows each mask into the other's visible pixels within its crop, nowhere else
    out = paste_completion(am, vi, inp, np.full((2, 16, 16), 10.0, np.float32), 0.5)
    for i in range(2):
        x0, y0, side = inp.boxes[i]
        crop = np.zeros((H, W), bool)
        crop[max(y0, 0):y0 + side, max(x0, 0):x0 + side] = True
        np.testing.assert_array_equal(out[i], am[i] | (occ[i] & crop))
    # "nothing is object" removes the hidden part but never the visible mask
    out = paste_completion(am, vi, inp, np.full((2, 16, 16), -10.0, np.float32), 0.5)
    np.testing.assert_array_equal(out[1], am[1] & ~occ[1] | vi[1])
    assert (out[1] & vi[0]).sum() == 0 and (am[1] & vi[0]).sum() > 0


def test_partial_resize_equals_the_slice_of_the_full_resize():
    small = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    for side in (9, 16, 37, 100):
        full = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
        for r0, r1, c0, c1 in ((0, side, 0, side), (2, side - 1, 1, 5), (side - 3, side, 0, 2)):
            np.testing.assert_allclose(resize_part(small, side, r0, r1, c0, c1), full[r0:r1, c0:c1], atol=1e-5)
            np.testing.assert_allclose(resize_part_t(torch.from_numpy(small), side, r0, r1, c0, c1).numpy(),
                                       full[r0:r1, c0:c1], atol=1e-5)


def test_untrained_network_returns_the_models_own_amodal_logit():
    cfg = CompletionConfig(enabled=True, crop_size=16, channels=(4, 8, 8))
    net = CompletionNet(cfg, 5)
    x = torch.rand(3, cfg.in_channels(5), 16, 16)
    p = x[:, PLANES.index("amodal_prob")].clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(net(x), torch.log(p / (1 - p)))
    with pytest.raises(ConfigError):
        CompletionConfig(crop_size=20)


def _hidden_square_crops(n: int, rng: np.random.Generator, size: int = 16) -> CropSet:
    """Squares whose right part lies under an occluder: the visible/amodal planes show only the
    left part, the target is the whole square (the network must learn to extend it)."""
    planes = np.zeros((n, len(PLANES), size, size), np.uint8)
    targets = np.zeros((n, size, size), np.uint8)
    for k in range(n):
        a, b = int(rng.integers(2, 5)), int(rng.integers(11, 14))
        cut = int(rng.integers(a + 3, b - 2))
        sq = rect(size, size, a, b, a, b)
        occ = rect(size, size, 0, size, cut, size)
        vis = sq & ~occ
        planes[k, 0] = planes[k, 1] = vis * 255
        planes[k, OCCLUDERS] = occ * 255
        planes[k, PLANES.index("amodal_prob")] = np.where(vis, 200, 30)
        planes[k, PLANES.index("visible_prob")] = np.where(vis, 200, 30)
        planes[k, PLANES.index("inside")] = 255
        targets[k] = sq * 255
    return CropSet(planes, np.zeros(n, np.int64), targets)


def test_device_crops_cut_the_same_batches_as_numpy_crops():
    rng = np.random.default_rng(3)
    crops = _hidden_square_crops(12, rng)
    crops.classes = rng.integers(0, 5, 12)
    idx, flip = np.array([4, 0, 7, 7]), np.array([True, False, True, False])
    x, t = crops.batch(idx, 5, flip)
    xd, td = crops.to("cpu").batch(idx, 5, flip)
    assert isinstance(crops.to("cpu").planes, torch.Tensor)
    torch.testing.assert_close(xd, x, rtol=0, atol=0)
    torch.testing.assert_close(td, t, rtol=0, atol=0)
    assert x.shape == (4, len(PLANES) + 5, 16, 16)
    assert torch.equal(x[0, :len(PLANES)], torch.from_numpy(crops.planes[4, :, :, ::-1].copy()).float() / 255)
    assert x[1, len(PLANES) + int(crops.classes[0])].min() == 1.0


def test_completion_network_learns_a_hidden_extent():
    rng = np.random.default_rng(0)
    train, val = _hidden_square_crops(256, rng), _hidden_square_crops(64, rng)
    cfg = CompletionConfig(enabled=True, crop_size=16, channels=(8, 16, 16))
    torch.set_num_threads(2)
    net, hist = train_completion_net(train, val, cfg, 5, CompletionTrainConfig(steps=150, batch_size=32, lr=5e-3),
                                     progress=False)
    net_iou, input_iou = evaluate_crops(net, val, 5, cfg.threshold)
    assert input_iou == 0.0                     # the input masks stop at the occluder
    assert net_iou > 0.6, (net_iou, hist["val_hidden_iou"])
    assert np.mean(hist["loss"][-20:]) < 0.5 * np.mean(hist["loss"][:20])


def test_checkpoint_with_completion_round_trips_and_runs_in_the_predictor(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(completion=CompletionConfig(enabled=True, crop_size=16, channels=(4, 8, 8)))
    model = AmodalSegModel(cfg)
    torch.nn.init.normal_(model.completion.head.weight, std=2.0)   # make the (untrained) net change masks
    ckpt = save_checkpoint(tmp_path / "m.safetensors", model, cfg, CLASSES)
    loaded, _ = load_checkpoint(ckpt)
    assert loaded.cfg.completion == cfg.completion and loaded.completion is not None
    for a, b in zip(loaded.completion.state_dict().values(), model.completion.state_dict().values()):
        torch.testing.assert_close(a, b)
    plain_cfg = dataclasses.replace(cfg, completion=CompletionConfig())
    with pytest.raises(CheckpointError):
        load_checkpoint(ckpt, expected_config=plain_cfg)
    pred = AmodalPredictor.from_checkpoint(ckpt, "cpu", config=InferenceConfig(score_threshold=0.0))
    assert pred.has_completion and isinstance(pred.completion_stage, CompletionStage)
    assert pred.completion_stage.cfg == cfg.completion
    calls = []
    run = pred.networks.completion_run
    pred.networks.completion_run = lambda planes: calls.append(planes.shape) or run(planes)
    pred.set_config(pred.config)                            # rebuild the stages around the wrapped network
    img = np.ascontiguousarray(np.kron(scene(5)[0], np.ones((3, 3, 1), np.uint8)))
    with_c = pred.predict(img)
    assert "post.completion" in pred.last_timings_ms
    pred.set_config(pred.config.replace(complete_hidden=False))
    without = pred.predict(img)
    assert "post.completion" not in pred.last_timings_ms
    assert len(with_c) == len(without) > 1 and calls
    np.testing.assert_array_equal(with_c.visible_masks, without.visible_masks)
    assert (with_c.amodal_masks >= with_c.visible_masks).all()
    occ = occluder_regions(without.visible_masks)
    changed = with_c.amodal_masks != without.amodal_masks
    assert not (changed & ~occ).any()                       # only inside the other instances' visible masks


def test_postprocess_hands_the_kept_instances_to_the_completer():
    """Two objects on the 16 x 16 mask grid: A (left) is partly behind B. A completer that says
    "all object" extends A exactly over B's visible pixels inside A's crop; B is not occluded."""
    g = np.full((2, 16, 16), -8.0, np.float32)
    amodal, visible = g.copy(), g.copy()
    amodal[0, 4:12, 2:10] = visible[0, 4:12, 2:7] = 8.0     # A: seen up to column 7
    amodal[1, 2:14, 7:13] = visible[1, 2:14, 7:13] = 8.0    # B: in front, columns 7..12
    cls = np.array([[8.0, 0, 0, 0, 0, -8], [0, 8.0, 0, 0, 0, -8]], np.float32)
    raw = RawOutputs.from_arrays([cls, amodal, visible, np.array([0.3, 0.0], np.float32),
                                  np.array([1.0, 0.0], np.float32)])
    image = torch.zeros((64, 64, 3), dtype=torch.uint8)
    cfg = InferenceConfig(score_threshold=0.1)
    plain, _ = PostProcessor(cfg, [1, 2, 3, 4, 5])(raw, image)
    seen = []
    comp = CompletionStage(CompletionConfig(crop_size=16, context=0.5), 5,
                           lambda p: seen.append(p) or torch.full((len(p), 16, 16), 10.0))
    done, timings = PostProcessor(cfg, [1, 2, 3, 4, 5], completion=comp)(raw, image)
    assert "completion" in timings
    assert len(seen) == 1 and len(seen[0]) == 2             # both crops contain the other's visible pixels
    onehot = seen[0][:, len(PLANES):].amax((2, 3))         # [2, 5] class planes
    assert onehot.sum() == 2 and sorted(onehot.argmax(1).tolist()) == [0, 1]
    a_plain, a_done = plain.amodal_masks[plain.class_ids == 1][0], done.amodal_masks[done.class_ids == 1][0]
    b_vis = plain.visible_masks[plain.class_ids == 2][0]
    np.testing.assert_array_equal(a_done, a_plain | b_vis & _crop_window(a_plain, comp.cfg))
    np.testing.assert_array_equal(done.visible_masks, plain.visible_masks)


def _crop_window(mask: np.ndarray, cfg: CompletionConfig) -> np.ndarray:
    x0, y0, side = crop_boxes(mask[None], cfg.crops)[0]
    win = np.zeros_like(mask)
    win[max(y0, 0):y0 + side, max(x0, 0):x0 + side] = True
    return win


def _candidates(amodal: np.ndarray, visible: np.ndarray, classes, grid: int = 5) -> Candidates:
    """Kept instances with full-resolution masks (``[N, H, W]`` bool), as the completion stage gets them."""
    n, h, w = amodal.shape
    dist = torch.zeros((n, 5))
    dist[torch.arange(n), torch.as_tensor(classes)] = 0.9
    return Candidates(image=torch.zeros((h, w, 3), dtype=torch.uint8), class_ids=torch.arange(1, 6),
                      query=torch.arange(n), class_dist=dist, ratio=torch.ones(n), mask_quality=torch.ones(n),
                      amodal_logits=torch.zeros((n, grid, grid)), visible_logits=torch.zeros((n, grid, grid)),
                      low_amodal=torch.zeros((n, grid, grid), dtype=torch.bool),
                      low_visible=torch.zeros((n, grid, grid), dtype=torch.bool), occlusion=torch.zeros(n),
                      order=torch.arange(n).float(), amodal=torch.from_numpy(amodal), visible=torch.from_numpy(visible))


def test_completer_skips_crops_without_occluders():
    H, W = 30, 30
    am = np.stack([rect(H, W, 2, 8, 2, 8), rect(H, W, 20, 28, 20, 28)])
    calls = []
    comp = CompletionStage(CompletionConfig(crop_size=16), 5, lambda p: calls.append(p) or torch.zeros((len(p), 16, 16)))
    c = _candidates(am, am.copy(), [0, 1])
    before = c.amodal
    out = comp(c)
    assert out.amodal is before and not calls
    assert isinstance(completion_inputs(am, am, np.zeros((2, 5, 5)), np.zeros((2, 5, 5)), np.array([0, 1]), 5,
                                        CompletionConfig(crop_size=16)), CompletionInputs)
    assert len(comp(c.select(torch.zeros(2, dtype=torch.bool)))) == 0 and not calls


def test_completion_logits_are_pasted_at_their_place_in_the_crop():
    """Two overlapping squares; instance 0's decision region lies in the right part of its crop.
    The net is a stand-in whose logits fall from +5 (crop column 0) to -3 (column 15): 0 between
    crop columns 9 and 10. Instance 0's crop is (-3, -3, 36), 2.25 px per crop pixel, so the pasted
    probability (bilinear) crosses 0.5 between image columns 18 (crop coordinate 9.06) and 19 (9.5):
    inside the decision region columns up to 18 join the mask, the others leave it."""
    H, W = 40, 40
    am = np.stack([rect(H, W, 5, 25, 5, 25), rect(H, W, 10, 30, 15, 35)])
    vis = np.stack([am[0] & ~am[1], am[1]])
    ramp = torch.linspace(5.0, -3.0, 16)
    seen = []

    def run(x):
        seen.append(x.clone())
        return ramp.expand(len(x), 16, 16).clone()

    cfg = CompletionConfig(crop_size=16)
    out = CompletionStage(cfg, 5, run)(_candidates(am, vis, [0, 1])).amodal.numpy()
    assert len(seen) == 1 and len(seen[0]) == 2             # each crop holds the other's visible pixels
    assert crop_boxes(am[:1], cfg.crops)[0].tolist() == [-3, -3, 36]
    region = am[1] & ~vis[0] & _crop_window(am[0], cfg)     # instance 0's decision region
    np.testing.assert_array_equal(region, rect(H, W, 10, 30, 15, 33))
    expect = am[0] & ~region | region & (np.arange(W) <= 18)[None]
    np.testing.assert_array_equal(out[0], expect)
    np.testing.assert_array_equal(out[1] & vis[1], vis[1])  # the visible mask always stays


def test_train_completion_run_writes_a_checkpoint_the_predictor_uses(tmp_path):
    """The whole command on a tiny model and dataset: crops are collected and matched, the
    network is trained, and the written checkpoint is the model plus an enabled completion."""
    from ros2_amodal_seg.model.completion_train import run
    from test_model_helpers import write_dataset

    torch.manual_seed(0)
    cfg = tiny_config()
    model = AmodalSegModel(cfg)
    src = save_checkpoint(tmp_path / "src.safetensors", model, cfg, CLASSES)
    data = write_dataset(tmp_path / "ds", n_images=3, h=96, w=128)
    ccfg = CompletionConfig(crop_size=16, channels=(4, 8, 8))
    summary = run(src, [str(data)], [str(data)], tmp_path / "out.safetensors", ccfg,
                  CompletionTrainConfig(steps=3, batch_size=4, score_threshold=0.0, min_match_iou=0.01),
                  device="cpu", progress=False, crop_cache=tmp_path / "crops")
    assert summary["train_crops"] > 0 and summary["val_crops"] == summary["train_crops"]
    assert (tmp_path / "crops.train.npz").is_file() and (tmp_path / "out.completion.png").is_file()
    loaded, meta = load_checkpoint(tmp_path / "out.safetensors")
    assert loaded.cfg.completion == dataclasses.replace(ccfg, enabled=True)
    assert meta["completion_training"]["train_crops"] == summary["train_crops"]
    for k, v in model.state_dict().items():                  # the model's own weights are unchanged
        torch.testing.assert_close(loaded.state_dict()[k], v)
    again = run(src, [str(data)], [str(data)], tmp_path / "again.safetensors", ccfg,
                CompletionTrainConfig(steps=1, batch_size=4, lr=1e-9), device="cpu", progress=False,
                crop_cache=tmp_path / "crops", init=tmp_path / "out.safetensors")  # cached crops, continued
    assert again["train_crops"] == summary["train_crops"] and again["init"]
    cont, _ = load_checkpoint(tmp_path / "again.safetensors")
    for k, v in loaded.completion.state_dict().items():     # lr ~0: the network it started from
        torch.testing.assert_close(cont.completion.state_dict()[k], v, atol=1e-6, rtol=0)
    with pytest.raises(CheckpointError, match="no completion network"):
        run(src, [str(data)], [], tmp_path / "x.safetensors", ccfg, CompletionTrainConfig(steps=1),
            device="cpu", progress=False, crop_cache=tmp_path / "crops", init=src)


def test_train_completion_cli_passes_the_weight_decay_to_the_config(tmp_path, capsys):
    """A negative weight decay reaches CompletionTrainConfig, which refuses it before any work."""
    from ros2_amodal_seg.cli import main

    rc = main(["train-completion", "--data", str(tmp_path), "--out", str(tmp_path / "o.safetensors"),
               "--weight-decay", "-1"])
    assert rc != 0
    assert "weight_decay" in capsys.readouterr().err
