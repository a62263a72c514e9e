"""The inference engine: its one configuration, each post-processing stage on hand-made
candidates, the stage runner's timing, run-time configuration swaps, and the torch (GPU)
kernels against the OpenCV ones on the CPU."""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.model.candidates import Candidates, RawOutputs
from ros2_amodal_seg.model.completion import CompletionConfig, CompletionStage
from ros2_amodal_seg.model.inference_config import (FIELD_NAMES, InferenceConfig, load_inference_config,
                                                    parse_override)
from ros2_amodal_seg.model.ops import TORCH_KERNELS_ENV
from ros2_amodal_seg.model.postprocess import (DropEmptyStage, FinalNmsStage, MatrixNmsStage, PostProcessor,
                                               ScoreStage, ThresholdStage, UpsampleStage)
from ros2_amodal_seg.model.reclassify import ReclassifyConfig, ReclassifyStage

REPO = Path(__file__).resolve().parents[1]
CFG = InferenceConfig(score_threshold=0.3)


# ----------------------------------------------------------------------------- configuration
def test_inference_yaml_mirrors_the_dataclass_defaults():
    assert yaml.safe_load((REPO / "config" / "inference.yaml").read_text()) == InferenceConfig().to_dict()


def test_inference_config_validation_unknown_keys_and_the_order_of_sources(tmp_path):
    with pytest.raises(ConfigError, match="unknown inference setting"):
        InferenceConfig.from_dict({"nms_method": "hard"})              # removed settings are refused by name
    for bad in ({"score_threshold": 1.5}, {"max_instances": 0}, {"max_instances": 2.5}, {"complete_hidden": 1},
                {"precision": "int8"}, {"final_nms_sigma": -1.0}, {"quality_weight": float("nan")},
                {"score_threshold": "high"}):
        with pytest.raises(ConfigError):
            InferenceConfig.from_dict(bad)
    assert parse_override("score_threshold=0.25") == ("score_threshold", 0.25)
    assert parse_override("reclassify=false") == ("reclassify", False)
    assert parse_override("final_nms_sigma=1") == ("final_nms_sigma", 1.0)       # int -> float
    for bad in ("score_threshold", "nope=1", "max_instances=[1"):
        with pytest.raises(ConfigError):
            parse_override(bad)
    f = tmp_path / "inf.yaml"
    f.write_text("score_threshold: 0.2\nmax_instances: 7\n")
    cfg = load_inference_config(checkpoint_meta={"inference": {"score_threshold": 0.6, "final_nms_sigma": 0.5}},
                                path=f, overrides=["max_instances=9"])
    assert (cfg.score_threshold, cfg.final_nms_sigma, cfg.max_instances) == (0.2, 0.5, 9)
    assert InferenceConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert len(FIELD_NAMES) == len(dataclasses.fields(InferenceConfig))


# ----------------------------------------------------------------------------- stages by hand
def _raw(class_probs, amodal, visible, h=4, w=4) -> RawOutputs:
    """Raw outputs whose softmax over classes is ``class_probs`` and whose masks are the given
    ``[Q, h, w]`` logits."""
    p = torch.tensor(class_probs, dtype=torch.float64)
    q = len(p)
    return RawOutputs(torch.log(p).float(), torch.as_tensor(amodal, dtype=torch.float32),
                      torch.as_tensor(visible, dtype=torch.float32), torch.full((q,), 0.25), torch.arange(q).float())


def _image(h=4, w=4) -> torch.Tensor:
    return torch.zeros((h, w, 3), dtype=torch.uint8)


def test_score_stage_by_hand():
    L = math.log(0.8 / 0.2)                  # sigmoid 0.8
    am = np.full((3, 4, 4), -20.0)
    am[0, :2, :2] = L                        # 4 cells at p 0.8: mask quality 0.8
    am[1, :, :] = L
    vi = np.full((3, 4, 4), -20.0)
    raw = _raw([[0.6, 0.3, 0.1], [0.2, 0.1, 0.7], [0.7, 0.2, 0.1]], am, vi)
    c = ScoreStage(CFG)(raw, _image(), torch.tensor([1, 2]))
    # query 0: 0.6 x 0.8 = 0.48 kept; query 1: 0.2 x 0.8 = 0.16 < 0.3 dropped; query 2: empty mask dropped
    assert c.query.tolist() == [0]
    assert torch.allclose(c.scores, torch.tensor([0.48]), atol=1e-5)
    assert torch.allclose(c.mask_quality, torch.tensor([0.8]), atol=1e-5)
    assert c.low_amodal[0].sum() == 4 and not c.low_visible.any()


def _cands(scores, low_amodal, low_visible=None, amodal=None, k=2) -> Candidates:
    n = len(scores)
    dist = torch.zeros((n, k))
    dist[:, 0] = torch.tensor(scores)
    la = torch.as_tensor(low_amodal)
    lv = torch.as_tensor(low_visible) if low_visible is not None else la.clone()
    am = torch.as_tensor(amodal) if amodal is not None else None
    return Candidates(image=_image(*la.shape[1:]), class_ids=torch.tensor([1, 2]), query=torch.arange(n),
                      class_dist=dist, ratio=torch.ones(n), mask_quality=torch.ones(n),
                      amodal_logits=torch.zeros(la.shape), visible_logits=torch.zeros(la.shape), low_amodal=la,
                      low_visible=lv, occlusion=torch.zeros(n), order=torch.arange(n).float(), amodal=am,
                      visible=None if am is None else am.clone())


def test_matrix_nms_stage_decays_a_duplicate_by_exp_minus_sigma():
    m = np.zeros((3, 4, 4), bool)
    m[0, :2, :2] = m[1, :2, :2] = True       # 1 duplicates 0 (both IoUs 1)
    m[2, 2:, 2:] = True                      # 2 is elsewhere
    c = MatrixNmsStage(InferenceConfig(score_threshold=0.05))(_cands([0.9, 0.8, 0.7], m))
    assert c.query.tolist() == [0, 2, 1]
    assert torch.allclose(c.scores, torch.tensor([0.9, 0.7, 0.8 * math.exp(-2.0)]), atol=1e-5)
    c = MatrixNmsStage(InferenceConfig(score_threshold=0.3, max_instances=1))(_cands([0.9, 0.8, 0.7], m))
    assert c.query.tolist() == [0]           # the duplicate fell below 0.3; max_instances cut 2


def test_final_nms_threshold_and_drop_empty_stages():
    am = np.zeros((3, 8, 8), bool)
    am[0, :4, :4] = am[1, :4, :4] = True     # final amodal masks equal: IoU 1
    c = _cands([0.9, 0.8, 0.7], np.zeros((3, 2, 2), bool), amodal=am)
    c = DropEmptyStage()(c)
    assert c.query.tolist() == [0, 1]        # 2 has no amodal mask
    c = FinalNmsStage(InferenceConfig(final_nms_stride=1))(c)
    assert torch.allclose(c.scores, torch.tensor([0.9, 0.8 * math.exp(-2.0)]), atol=1e-5)
    assert ThresholdStage(InferenceConfig(score_threshold=0.5))(c).query.tolist() == [0]


def test_upsample_stage_gives_full_resolution_masks_that_contain_the_visible_ones():
    rng = np.random.default_rng(0)
    lg = torch.from_numpy(rng.normal(-2, 3, (2, 6, 8)).astype(np.float32))
    c = _cands([0.9, 0.8], np.zeros((2, 6, 8), bool))
    c.amodal_logits, c.visible_logits = lg, lg - 1.0
    c.image = torch.from_numpy(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    c = UpsampleStage(InferenceConfig())(c)
    assert c.amodal.shape == c.visible.shape == (2, 24, 32) and c.amodal.dtype == torch.bool
    assert not (c.visible & ~c.amodal).any() and c.amodal.any()


def test_completion_stage_changes_a_mask_only_inside_the_occluder_region():
    am = np.zeros((2, 32, 32), bool)
    am[0, 8:24, 4:14] = True                 # object 0
    vis = am.copy()
    am[1, 10:20, 12:28] = True               # object 1, in front of 0's right part
    vis[1] = am[1]
    vis[0, :, 12:] = False
    c = _cands([0.9, 0.8], np.zeros((2, 8, 8), bool), amodal=am)
    c.visible = torch.from_numpy(vis)
    c.image = _image(32, 32)
    cfg = CompletionConfig(crop_size=16)
    stage = CompletionStage(cfg, 2, lambda planes: torch.full(planes.shape[:1] + planes.shape[2:], 20.0))
    out = stage(dataclasses.replace(c, amodal=c.amodal.clone()))
    changed = out.amodal ^ c.amodal
    for i in range(2):                       # the occluder region of i: where the other one is seen and i is not
        region = torch.from_numpy(vis[1 - i] & ~vis[i])
        assert not (changed[i] & ~region).any()
    assert changed[0].any()                  # 0 extends behind 1 (the network says "object" everywhere)


def test_reclassify_stage_shares_out_the_score_mass_and_uses_the_predicted_quality():
    c = _cands([0.6], np.zeros((1, 4, 4), bool), amodal=np.ones((1, 4, 4), bool))
    c.class_dist = torch.tensor([[0.6, 0.2]])
    c.mask_quality = torch.tensor([0.5])
    c.ratio = torch.tensor([0.5])
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]])     # re-read: 0.25 / 0.75; IoU logit 0 -> 0.5
    stage = ReclassifyStage(ReclassifyConfig(crop_size=16, quality=True), 2, 0.5, lambda p, f: logits)
    out = stage(c)
    assert torch.allclose(out.class_dist, torch.tensor([[0.2, 0.6]]), atol=1e-6)   # mass 0.8 shared out
    assert out.main_class.tolist() == [1]
    # ratio x (0.5 / 0.5) ** 0.5 = 0.5: score 0.6 x 0.5
    assert torch.allclose(out.scores, torch.tensor([0.3]), atol=1e-6)
    bad = ReclassifyStage(ReclassifyConfig(crop_size=16, quality=True), 2, 0.5, lambda p, f: logits[:, :2])
    with pytest.raises(ValueError, match="re-classifier returned"):
        bad(c)


class _Slow:
    name = "completion"

    def __call__(self, c: Candidates) -> Candidates:
        time.sleep(0.03)
        return c


def test_runner_times_every_stage_and_reports_runner_ups():
    L = math.log(0.9 / 0.1)
    am = np.full((2, 4, 4), -20.0)
    am[0, :2, :2] = L
    am[1, 2:, 2:] = L
    raw = _raw([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1]], am, am)
    post = PostProcessor(InferenceConfig(score_threshold=0.1, runner_up_classes=1), [5, 9], completion=_Slow())
    assert post.stage_names == ("score", "nms", "upsample", "completion", "drop_empty", "final_nms", "threshold")
    inst, t = post(raw, _image(16, 16))
    assert set(t) == set(post.stage_names) | {"to_host"} and t["completion"] >= 30.0
    assert sorted(inst.class_ids.tolist()) == [5, 9] and inst.alt_class_ids.shape == (2, 1)
    i = int(np.argmax(inst.class_ids == 5))
    assert inst.alt_class_ids[i, 0] == 9 and inst.alt_scores[i, 0] < inst.scores[i]
    off = PostProcessor(InferenceConfig(complete_hidden=False, final_nms_sigma=0.0), [5, 9], completion=_Slow())
    assert "completion" not in off.stage_names and "final_nms" not in off.stage_names


# ----------------------------------------------------------------------------- the predictor
@pytest.fixture(scope="module")
def second_stage_ckpt(tmp_path_factory):
    """A tiny random checkpoint with completion and re-reading networks (with the quality head)."""
    from test_model_helpers import tiny_config

    from ros2_amodal_seg.model.checkpoint import save_checkpoint
    from ros2_amodal_seg.model.model import AmodalSegModel

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(), completion=CompletionConfig(enabled=True, crop_size=16),
                              reclassify=ReclassifyConfig(enabled=True, crop_size=16, quality=True))
    model = AmodalSegModel(cfg)
    with torch.no_grad():                    # make the untrained second stages do something
        model.completion.head.bias.fill_(2.0)
        model.reclassifier.mlp[-1].bias.copy_(torch.linspace(-1, 1, cfg.num_classes))
    classes = {i + 1: f"c{i + 1}" for i in range(cfg.num_classes)}
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "two.safetensors", model, cfg, classes,
                           extra={"inference": InferenceConfig(score_threshold=0.0, max_instances=6).to_dict()})


@pytest.fixture(scope="module")
def frame_rgb():
    from ros2_amodal_seg.world import render_frame

    return render_frame("shapes-street", 5, 160, 120, lidar=False).rgb


def test_predictor_takes_the_checkpoints_configuration_and_swaps_a_new_one_at_once(second_stage_ckpt, frame_rgb):
    from ros2_amodal_seg.model.predictor import AmodalPredictor

    p = AmodalPredictor.from_checkpoint(second_stage_ckpt, "cpu")
    assert p.config.max_instances == 6 and p.has_completion and p.has_reclassifier
    n_all = len(p.predict(frame_rgb))
    assert {"preprocess", "network", "post.completion", "post.reclassify"} <= set(p.last_timings_ms)
    p.set_config(p.config.replace(max_instances=2))
    assert len(p.predict(frame_rgb)) <= 2 <= n_all
    with pytest.raises(ConfigError):
        p.set_config(p.config.replace(max_instances=0))
    assert p.config.max_instances == 2
    p.set_config(p.config.replace(complete_hidden=False, reclassify=False))
    p.predict(frame_rgb)
    assert "post.completion" not in p.last_timings_ms


def test_torch_kernels_give_the_opencv_results(second_stage_ckpt, frame_rgb, monkeypatch):
    """The GPU code path (torch upsampling, crops and paste-back) on CPU tensors against the CPU path."""
    from ros2_amodal_seg.model.predictor import AmodalPredictor

    p = AmodalPredictor.from_checkpoint(second_stage_ckpt, "cpu")
    ref = p.predict(frame_rgb)
    monkeypatch.setenv(TORCH_KERNELS_ENV, "1")
    got = p.predict(frame_rgb)
    assert len(ref) == len(got) >= 1
    np.testing.assert_array_equal(ref.class_ids, got.class_ids)
    np.testing.assert_allclose(ref.scores, got.scores, atol=1e-4)
    for a, b in ((ref.amodal_masks, got.amodal_masks), (ref.visible_masks, got.visible_masks)):
        assert (a != b).sum() <= 2 * len(a)  # float rounding at the thresholds only
