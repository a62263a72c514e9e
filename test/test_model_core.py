"""Model core: shapes/backward, matcher, losses, NMS, post-processing, augmentation, checkpoints."""
from __future__ import annotations

import argparse
import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from ros2_amodal_seg.errors import CheckpointError, ConfigError, InvalidInputError
from ros2_amodal_seg.model.augment import SampleArrays, paste_occluder
from ros2_amodal_seg.model.checkpoint import load_checkpoint, save_checkpoint
from ros2_amodal_seg.model.cli import non_negative_float, positive_int
from ros2_amodal_seg.model.criterion import LossConfig, SetCriterion, dice_loss, hidden_region, order_loss
from ros2_amodal_seg.model.matcher import hungarian_match
from ros2_amodal_seg.model.model import AmodalSegModel
from ros2_amodal_seg.model.candidates import Candidates, RawOutputs
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.ops import duplicate_overlap, matrix_decay
from ros2_amodal_seg.model.postprocess import MatrixNmsStage, PostProcessor, depth_ranks, final_decay, occluded_by
from ros2_amodal_seg.model.upsample import ColourGuide, guided_upsample_masks, upsample_masks
from ros2_amodal_seg.model.predictor import AmodalPredictor
from ros2_amodal_seg.model.transformer_decoder import LayerPrediction
from ros2_amodal_seg.types import Instances2D
from test_model_helpers import rect, tiny_config

torch.set_num_threads(2)
CLASSES = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}


def postprocess(cls, am, vi, occ, order, image_size, class_ids, cfg: InferenceConfig = InferenceConfig(),
                image: np.ndarray | None = None):
    """One image's raw outputs (numpy) through the :class:`PostProcessor` (a flat black image
    unless ``image`` is given: the guided filter is then a plain box blur)."""
    img = np.zeros((*image_size, 3), np.uint8) if image is None else image
    return PostProcessor(cfg, class_ids)(RawOutputs.from_arrays([cls, am, vi, occ, order]), torch.from_numpy(img))[0]


@pytest.mark.parametrize("occ", [True, False])
def test_shapes_and_backward(occ):
    torch.manual_seed(0)
    cfg = tiny_config(use_occlusion_module=occ)
    m = AmodalSegModel(cfg)
    out = m(torch.rand(2, 3, 64, 64) * 255)
    f = out.final
    assert f.class_logits.shape == (2, 8, 6)
    assert f.amodal_logits.shape == f.visible_logits.shape == (2, 8, 16, 16)
    assert f.occlusion_rates.shape == f.order_scores.shape == (2, 8)
    assert ((f.occlusion_rates >= 0) & (f.occlusion_rates <= 1)).all()
    assert len(out.aux) == 3  # before layer 1, after layers 1, 2 (then final after the occlusion layer)
    a = torch.zeros(2, 16, 16)
    a[0, 2:8, 2:8] = 1
    a[1, 5:12, 4:14] = 1
    v = a.clone()
    v[0, 5:8, 5:8] = 0
    tgt = [{"labels": torch.tensor([0, 3]), "amodal": a, "visible": v, "occlusion": torch.tensor([9 / 36, 0.0]),
            "occ_pairs": torch.tensor([[0, 1]])}] * 2
    loss, parts = SetCriterion(5)(out.final, out.aux, tgt)
    loss.backward()
    assert torch.isfinite(loss)
    assert set(parts) == {"class", "mask", "dice", "visible_mask", "visible_dice", "occlusion", "order", "shape",
                          "hidden"}
    assert f.shape_logits.shape == (2, 8, 5) and parts["shape"] > 0
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert sum(g is not None and g.abs().sum() > 0 for g in grads) > 0.9 * len(grads)


def _logits_from_masks(masks: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    return (masks * 2 - 1) * scale


def test_matcher_hand_built():
    # targets: A (class 1) and B (class 3); queries: 0 = junk, 1 = B, 2 = A
    a = rect(8, 8, 0, 4, 0, 4).astype(np.float32)
    b = rect(8, 8, 4, 8, 4, 8).astype(np.float32)
    tgt = torch.tensor(np.stack([a, b]))
    q = torch.stack([torch.zeros(8, 8), torch.tensor(b), torch.tensor(a)])
    cls = torch.full((3, 6), -5.0)
    cls[0, 5] = 5
    cls[1, 3] = 5
    cls[2, 1] = 5
    qi, ti = hungarian_match(cls, _logits_from_masks(q), _logits_from_masks(q), torch.tensor([1, 3]), tgt, tgt)
    assert dict(zip(qi.tolist(), ti.tolist())) == {2: 0, 1: 1}
    # class cost alone decides between two identical masks
    q2 = torch.stack([torch.tensor(a), torch.tensor(a)])
    cls2 = torch.full((2, 6), -5.0)
    cls2[0, 2] = 5
    cls2[1, 1] = 5
    qi, ti = hungarian_match(cls2, _logits_from_masks(q2), _logits_from_masks(q2), torch.tensor([1]),
                             tgt[:1], tgt[:1])
    assert qi.tolist() == [1] and ti.tolist() == [0]
    qi, ti = hungarian_match(cls2, q2, q2, torch.zeros(0, dtype=torch.int64), tgt[:0], tgt[:0])
    assert len(qi) == 0


def _prediction(amodal, visible, labels, occ, order, nq=4, k=5, noise=0.0):
    """LayerPrediction [1, nq, ...] whose first len(labels) queries are the given objects."""
    n, h, w = amodal.shape
    cls = torch.full((1, nq, k + 1), -10.0)
    cls[0, n:, k] = 10.0
    for i, c in enumerate(labels):
        cls[0, i, c] = 10.0
    am = torch.full((1, nq, h, w), -20.0)
    vi = torch.full((1, nq, h, w), -20.0)
    am[0, :n] = _logits_from_masks(amodal) + noise
    vi[0, :n] = _logits_from_masks(visible) + noise
    oc = torch.zeros(1, nq)
    oc[0, :n] = occ
    od = torch.zeros(1, nq)
    od[0, :n] = order
    return LayerPrediction(cls, am, vi, oc, od)


def test_losses_perfect_vs_worse():
    a = torch.tensor(np.stack([rect(16, 16, 0, 8, 0, 8), rect(16, 16, 4, 12, 4, 12)]).astype(np.float32))
    v = a.clone()
    v[0][a[1] > 0] = 0
    occ = 1 - v.flatten(1).sum(1) / a.flatten(1).sum(1)
    tgt = [{"labels": torch.tensor([0, 2]), "amodal": a, "visible": v, "occlusion": occ,
            "occ_pairs": torch.tensor([[0, 1]])}]   # object 1 occludes object 0
    crit = SetCriterion(5)
    good = crit.layer_losses(_prediction(a, v, [0, 2], occ, torch.tensor([2.0, 0.0])), tgt)
    worse = {
        "class": _prediction(a, v, [1, 2], occ, torch.tensor([2.0, 0.0])),
        "mask": _prediction(a.roll(3, dims=2), v, [0, 2], occ, torch.tensor([2.0, 0.0])),
        "visible_mask": _prediction(a, a, [0, 2], occ, torch.tensor([2.0, 0.0])),
        "occlusion": _prediction(a, v, [0, 2], occ + 0.4, torch.tensor([2.0, 0.0])),
        "order": _prediction(a, v, [0, 2], occ, torch.tensor([0.0, 2.0])),
        "hidden": _prediction(torch.stack([v[0], a[1]]), v, [0, 2], occ, torch.tensor([2.0, 0.0])),  # visible as amodal
    }
    for name, v_ in good.items():
        assert float(v_) < 1e-3, (name, float(v_))
    for name, pred in worse.items():
        bad = crit.layer_losses(pred, tgt)
        assert float(bad[name]) > float(good[name]) + 0.01, name
    assert float(worse_dice := crit.layer_losses(worse["mask"], tgt)["dice"]) > 0.05, worse_dice
    # hinge values by hand: margin 1, s_j - s_i = -2 -> 0; = +2 -> 3
    assert float(order_loss(torch.tensor([2.0, 0.0]), torch.tensor([[0, 1]]), 1.0)) == 0.0
    assert float(order_loss(torch.tensor([0.0, 2.0]), torch.tensor([[0, 1]]), 1.0)) == pytest.approx(3.0)
    assert float(dice_loss(torch.full((1, 4), 20.0), torch.ones(1, 4))) == pytest.approx(0.0, abs=1e-6)


def test_nms_duplicate_vs_distinct_overlapping():
    h = w = 32
    front = rect(h, w, 8, 24, 4, 16)           # the occluder
    back_am = rect(h, w, 8, 24, 5, 18)         # amodal overlaps the front object heavily
    back_vis = back_am & ~front
    dup = rect(h, w, 8, 24, 4, 17)             # near-copy of the front object
    amodal = torch.from_numpy(np.stack([front, back_am, dup]))
    visible = torch.from_numpy(np.stack([front, back_vis, dup]))
    scores = torch.tensor([0.9, 0.8, 0.85])
    # amodal IoU of the two distinct objects is high
    inter = (front & back_am).sum()
    assert inter / (front | back_am).sum() > 0.6
    # matrix NMS, by hand: overlap = min(amodal IoU, visible IoU). dup vs front: 192 / 208 on both;
    # back vs front: visible IoU 0; back vs dup: visible 16 / 224. Sorted front, dup, back:
    # decay(dup) = exp(-2 (192/208)^2); decay(back) = min(1, exp(-2 ((16/224)^2 - (192/208)^2)), ...) = 1
    ov = duplicate_overlap(amodal, visible)
    assert ov[0, 2] == pytest.approx(192 / 208) and ov[0, 1] == 0.0 and ov[1, 2] == pytest.approx(16 / 224)
    dec = (scores * matrix_decay(ov, scores, 2.0)).tolist()
    assert dec[0] == pytest.approx(0.9) and dec[1] == pytest.approx(0.8)
    assert dec[2] == pytest.approx(0.85 * np.exp(-2 * (192 / 208) ** 2), rel=1e-5)
    assert matrix_decay(torch.zeros(0, 0), torch.zeros(0), 2.0).shape == (0,)
    # the first NMS stage at threshold 0.6: the duplicate (0.85 -> 0.16) is dropped, the distinct
    # overlapping object is kept at its full score; best first
    n = len(scores)
    cand = Candidates(image=torch.zeros((h, w, 3), dtype=torch.uint8), class_ids=torch.tensor([1, 2]),
                      query=torch.arange(n), class_dist=torch.stack([scores, torch.zeros(n)], 1), ratio=torch.ones(n),
                      mask_quality=torch.ones(n), amodal_logits=torch.zeros((n, h, w)),
                      visible_logits=torch.zeros((n, h, w)), low_amodal=amodal, low_visible=visible,
                      occlusion=torch.zeros(n), order=torch.zeros(n))
    kept = MatrixNmsStage(InferenceConfig(score_threshold=0.6))(cand)
    assert kept.query.tolist() == [0, 1]
    assert kept.scores.tolist() == pytest.approx([0.9, 0.8])
    assert len(MatrixNmsStage(InferenceConfig())(cand.select(torch.zeros(n, dtype=torch.bool)))) == 0


def test_final_nms_decays_a_duplicate_that_the_first_nms_keeps():
    """Two queries of one object with one full extent, one seeing only half of it: the first NMS
    (min of amodal and visible IoU = 0.5) decays the second by exp(-2 * 0.5^2) only; the final
    NMS on the amodal IoU (1.0) multiplies that by exp(-2). A third, separate object is untouched."""
    q, h, w = 3, 8, 8
    cls = np.full((q, 6), -10.0)
    cls[0, 0], cls[1, 0], cls[1, 1], cls[2, 2] = 10.0, 10.0, 9.0, 10.0
    am = np.full((q, h, w), -10.0)
    am[:2, :4, :4] = 10                              # queries 0 and 1: the same full extent
    am[2, 5:, 5:] = 10                               # query 2: another object
    vi = am.copy()
    vi[1, :, 2:] = -10                               # query 1 sees only the left half
    args = (cls, am, vi, np.zeros(q), np.array([1.0, 2.0, 3.0]), (16, 16), [1, 2, 3, 4, 5])
    off = postprocess(*args, InferenceConfig(score_threshold=0.01, final_nms_sigma=0.0, runner_up_classes=4))
    on = postprocess(*args, InferenceConfig(score_threshold=0.01, final_nms_sigma=2.0, runner_up_classes=4))
    assert len(off) == len(on) == 3
    s_off = dict(zip(off.order_scores.astype(int).tolist(), off.scores.tolist()))
    s_on = dict(zip(on.order_scores.astype(int).tolist(), on.scores.tolist()))
    p1 = 1 / (1 + np.exp(-1.0) + 4 * np.exp(-20.0))                 # query 1's class probability
    assert s_off[2] == pytest.approx(p1 * np.exp(-2 * 0.5 ** 2), rel=1e-3)
    assert s_on[2] == pytest.approx(s_off[2] * np.exp(-2.0), rel=1e-5)
    assert s_on[1] == pytest.approx(s_off[1]) and s_on[3] == pytest.approx(s_off[3])
    # the runner-up entries carry the same decay
    assert on.alt_scores[on.order_scores.astype(int) == 2] == pytest.approx(
        off.alt_scores[off.order_scores.astype(int) == 2] * np.exp(-2.0), rel=1e-5)
    # at a threshold between the two, only the final NMS drops the duplicate
    cut = InferenceConfig(score_threshold=0.3, final_nms_sigma=2.0)
    assert len(postprocess(*args, InferenceConfig(score_threshold=0.3, final_nms_sigma=0.0))) == 3
    assert sorted(postprocess(*args, cut).order_scores.astype(int).tolist()) == [1, 3]
    with pytest.raises(ConfigError, match="final_nms_sigma"):
        InferenceConfig(final_nms_sigma=-1.0)
    assert non_negative_float("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match=">= 0"):
        non_negative_float("-0.5")


def test_final_decay_hand_computed():
    """Amodal IoU 1/3 (a 4x4 rectangle inside a 4x12 one: 16 of 48 pixels) gives exp(-sigma / 9);
    stride 2 samples every other row and column (4 of 12 cells: the same IoU); the compensation
    uses the decayer's own overlap with one above it."""
    h = w = 16
    a = rect(h, w, 0, 4, 0, 4)
    b = rect(h, w, 0, 4, 0, 12)                      # contains a: IoU 16 / 48
    c = rect(h, w, 8, 16, 8, 16)                     # apart
    masks = torch.from_numpy(np.stack([a, b, c]))
    t = torch.tensor
    for stride in (1, 2):
        d = final_decay(masks, t([0.9, 0.8, 0.7]), 2.0, stride)
        assert d.tolist() == pytest.approx([1.0, np.exp(-2.0 / 9), 1.0])
    # b ranked first: a is decayed by b by the same amount (IoU is symmetric)
    assert final_decay(masks, t([0.5, 0.8, 0.7]), 2.0).tolist() == pytest.approx([np.exp(-2.0 / 9), 1.0, 1.0])
    # compensation: d duplicates b (IoU 1) below it; a (IoU 1/3 with d) is decayed by
    # min(exp(-2/9) from b, exp(-2 (1/9 - 1)) >= 1 from d) = exp(-2/9)
    d4 = final_decay(torch.from_numpy(np.stack([a, b, b.copy()])), t([0.5, 0.9, 0.8]), 2.0)
    assert d4.tolist() == pytest.approx([np.exp(-2.0 / 9), 1.0, np.exp(-2.0)])
    assert final_decay(masks[:1], t([0.3]), 2.0).tolist() == [1.0]
    assert final_decay(masks[:0], torch.zeros(0), 2.0).shape == (0,)


@pytest.mark.parametrize("size", [(480, 640), (720, 1280), (37, 53), (481, 851)])
def test_windowed_mask_upsampling_equals_a_full_resize(size):
    # bilinear(logits) > t computed only near above-threshold cells must equal thresholding a full
    # cv2 resize: localized blobs, one mask touching the image border, one mask that is all below t
    height, width = size
    rng = np.random.default_rng(3)
    lg = np.full((4, 60, 80), -6.0, np.float32) + rng.normal(0, 0.5, (4, 60, 80)).astype(np.float32)
    lg[0, 10:20, 30:45] = 4.0
    lg[1, 50:60, 0:12] = rng.normal(1.0, 2.0, (10, 12))
    lg[1, 57:, :3] = 3.0                                       # sure to reach the bottom-left corner
    lg[2] = rng.normal(-0.5, 1.5, (60, 80))                    # scattered: the window is the whole image
    full = cv2.resize(lg.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) > -0.4
    win = upsample_masks(lg, -0.4, height, width)
    assert win.shape == (4, height, width) and win.dtype == bool
    assert not win[3].any() and win[0].any() and win[1, -1, 0]
    assert (full != win).mean() < 1e-5                          # float rounding at the threshold only
    assert upsample_masks(lg[:0], 0.0, height, width).shape == (0, height, width)


@pytest.mark.parametrize("size", [(8, 8), (8, 640), (640, 8), (9, 13)])
def test_upsampling_to_an_image_coarser_than_the_logits(size):
    """8 px tall: output rows tap logit rows 3/4, 11/12, ...; a mask on rows 5-9 is tapped by
    no output row, so it vanishes (it used to raise IndexError), as in a full cv2.resize."""
    height, width = size
    lg = np.full((3, 60, 80), -5.0, np.float32)
    lg[0, 5:10, 5:10] = 4.0                                       # between the taps of an 8 px output
    lg[1, 20:50, 10:70] = 4.0                                     # large: survives
    lg[2, 0, 0] = 4.0
    full = cv2.resize(lg.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1) > 0
    assert (upsample_masks(lg, 0.0, height, width) == full).all()
    img = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    guided = guided_upsample_masks(lg, 0.5, ColourGuide(img, 4, 1e-3, 1))
    assert guided.shape == (3, height, width) and guided[1].any()


def test_guided_filter_reduces_to_a_box_blur_on_a_flat_image_and_snaps_to_an_edge():
    x = np.arange(60, dtype=np.float32)
    p = np.tile(np.clip((x - 13) / 8, 0, 1), (40, 1)).astype(np.float32)   # blurred step, p = 0.5 at x = 17
    # flat guide: colour covariance 0, so a = 0, b = box(p) and the output is box(box(p))
    flat = ColourGuide(np.full((40, 60, 3), 90, np.uint8), 4, 1e-3)
    assert np.abs(flat.filter(p) - flat.box(flat.box(p))).max() < 1e-5
    # a colour edge at x = 20: the output jumps there, so the p > 0.6 boundary moves 18 -> 20
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 20:] = (200, 60, 30)
    for subsample in (1, 2):     # the fast guided filter fits a, b on a 2x coarser grid: same edge
        q = ColourGuide(img, 4, 1e-3, subsample).filter(p)
        assert q.shape == p.shape
        assert np.argmax(p[0] > 0.6) == 18 and (np.argmax(q > 0.6, axis=1) == 20).all()
        assert (q[:, 20] - q[:, 19] > 0.4).all()
    with pytest.raises(ValueError):
        ColourGuide(img[..., 0], 4, 1e-3)


@pytest.mark.parametrize("size,subsample", [((480, 640), 1), ((37, 53), 1), ((480, 640), 4), ((481, 851), 4)])
def test_windowed_guided_upsampling_equals_filtering_the_whole_image(size, subsample):
    height, width = size
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    img[height // 4:height // 2, width // 4:width // 2] = (250, 20, 20)       # an object with sharp edges
    lg = np.full((3, 60, 80), -8.0, np.float32)
    lg[0, 15:30, 20:40] = 3.0
    lg[1, 50:, :10] = 2.0                                                    # touches the image border
    guide = ColourGuide(img, max(1, round(1.5 * width / 80)), 1e-3, subsample)
    win = guided_upsample_masks(lg, 0.4, guide)
    up = cv2.resize(lg.transpose(1, 2, 0), (width, height), interpolation=cv2.INTER_LINEAR).reshape(height, width, -1)
    full = np.stack([guide.filter(1 / (1 + np.exp(-up[..., k]))) > 0.4 for k in range(3)])
    assert win.shape == (3, height, width) and not win[2].any() and win[0].any() and win[1, -1, 0]
    assert (full != win).mean() < 1e-4


def test_postprocess_full_resolution_and_order():
    q, h, w = 3, 8, 8
    cls = np.full((q, 6), -10.0)
    cls[0, 0] = 10
    cls[1, 2] = 10
    cls[2, 5] = 10                                   # no-object
    am = np.full((q, h, w), -10.0)
    am[0, :4, :4] = 10
    am[1, 2:6, 2:6] = 10
    vi = am.copy()
    vi[1, 2:4, 2:4] = -10                            # object 1 is behind object 0
    inst = postprocess(cls, am, vi, np.array([0.0, 0.25, 0.0]), np.array([0.1, 0.9, 0.0]), (32, 48),
                       [1, 2, 3, 4, 5])
    assert len(inst) == 2 and inst.amodal_masks.shape == (2, 32, 48)
    assert inst.class_ids.tolist() == [1, 3]
    assert (inst.visible_masks <= inst.amodal_masks).all()
    assert depth_ranks(inst.order_scores).tolist() == [0, 1]
    assert occluded_by(inst) == [[], [0]]
    assert inst.amodal_masks[0, :16, :24].mean() > 0.9 and inst.amodal_masks[0, 20:, 30:].sum() == 0
    # with the image as guide, object 0's visible boundary follows the image's edge (rows/cols 0..14),
    # not the bilinear 0.4 crossing at about 16 x 24
    img = np.zeros((32, 48, 3), np.uint8)
    img[:15, :23] = 255
    ref = postprocess(cls, am, vi, np.array([0.0, 0.25, 0.0]), np.array([0.1, 0.9, 0.0]), (32, 48),
                      [1, 2, 3, 4, 5], image=img)
    assert ref.visible_masks[0, :15, :23].all() and not ref.visible_masks[0, 15:, :].any()
    assert not ref.visible_masks[0, :, 23:].any()
    with pytest.raises(ConfigError, match="nms_method"):        # hard NMS is gone: the setting is refused
        InferenceConfig().replace(nms_method="hard")


def test_occluder_paste_updates_ground_truth():
    h, w = 20, 20
    a0 = rect(h, w, 2, 12, 2, 12)
    s = SampleArrays(np.zeros((h, w, 3), np.uint8), a0[None].copy(), a0[None].copy(), np.array([1]))
    patch = np.full((6, 6, 3), 200, np.uint8)
    out = paste_occluder(s, patch, np.ones((6, 6), bool), 4, 0, 0)   # covers rows/cols 0..5
    assert len(out.labels) == 2 and out.labels.tolist() == [1, 4]
    assert (out.amodal[0] == a0).all()                               # amodal unchanged
    assert out.visible[0].sum() == 100 - 16                          # 4x4 hidden (rows/cols 2..5)
    assert out.occlusion_rates()[0] == pytest.approx(0.16)
    assert out.occlusion_rates()[1] == 0.0
    assert out.occluded_by() == [[1], []]
    assert (out.image[:6, :6] == 200).all()
    strip = paste_occluder(s, np.zeros((h, w, 3), np.uint8), rect(h, w, 0, h, 10, 12), None, 0, 0)
    assert len(strip.labels) == 1 and strip.visible[0].sum() == 100 - 20


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    m = AmodalSegModel(cfg).eval()
    p = save_checkpoint(tmp_path / "m.safetensors", m, cfg, CLASSES)
    m2, meta = load_checkpoint(p)
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(m(x).final.amodal_logits, m2(x).final.amodal_logits)
    assert meta["classes_dict"] == CLASSES and meta["input_size"] == [64, 64]
    ph = save_checkpoint(tmp_path / "h.safetensors", m, cfg, CLASSES, half=True)
    m3, _ = load_checkpoint(ph)
    with torch.no_grad():
        assert torch.allclose(m(x).final.amodal_logits, m3(x).final.amodal_logits, atol=0.1)
    with pytest.raises(CheckpointError, match="config differs"):
        load_checkpoint(p, expected_config=dataclasses.replace(cfg, hidden_dim=64))
    with pytest.raises(CheckpointError, match="classes"):
        load_checkpoint(p, expected_classes={1: "box"})
    # metadata claiming another architecture than the weights
    meta_json = json.loads((tmp_path / "m.json").read_text())
    meta_json["model_config"]["hidden_dim"] = 64
    meta_json["model_config"]["mask_dim"] = 64
    (tmp_path / "m.json").write_text(json.dumps(meta_json))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(p)
    (tmp_path / "h.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(ph)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    (tmp_path / "h.json").write_text("{")
    with pytest.raises(CheckpointError, match="JSON"):
        AmodalPredictor.from_checkpoint(ph, device="cpu")


def test_predictor_api(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    p = save_checkpoint(tmp_path / "m.safetensors", AmodalSegModel(cfg), cfg, CLASSES)
    pred = AmodalPredictor.from_checkpoint(p, device="cpu", config=InferenceConfig(score_threshold=0.0,
                                                                                   max_instances=3))
    assert pred.device == "cpu" and pred.class_names == CLASSES
    assert not pred.has_completion and not pred.has_reclassifier and pred.completion_stage is None
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    inst = pred.predict(img)
    assert isinstance(inst, Instances2D) and inst.image_size == (37, 53) and 1 <= len(inst) <= 3
    assert set(pred.last_timings_ms) == {"preprocess", "network", "post.score", "post.nms", "post.upsample",
                                         "post.drop_empty", "post.final_nms", "post.threshold", "post.to_host"}
    with pytest.raises(ConfigError, match="score_threshold"):
        pred.config.replace(score_threshold=1.01)
    pred.set_config(pred.config.replace(score_threshold=1.0))
    assert len(pred.predict(img)) == 0
    for bad in (img.astype(np.float32), img[:, :, 0], img[:, :, :2]):
        with pytest.raises(InvalidInputError):
            pred.predict(bad)
    pred.close()


def test_hidden_region_hand_computed():
    # 1 x 6 grid. Object A: amodal cols 0..3, visible 0..1 (cols 2, 3 hidden behind B).
    # Object B: amodal = visible = cols 2..4.
    am = torch.tensor([[[1, 1, 1, 1, 0, 0]], [[0, 0, 1, 1, 1, 0]]], dtype=torch.float32)
    vi = torch.tensor([[[1, 1, 0, 0, 0, 0]], [[0, 0, 1, 1, 1, 0]]], dtype=torch.float32)
    allv = vi.amax(0)
    # dilation 0: A's hidden part (2, 3) plus B's visible area inside A's amodal mask (2, 3);
    # B has no hidden part, and A's visible area (0, 1) does not touch B's amodal mask.
    r0 = hidden_region(am, vi, allv, 0)
    assert r0[0, 0].tolist() == [0, 0, 1, 1, 0, 0]
    assert r0[1, 0].tolist() == [0, 0, 0, 0, 0, 0]
    # dilation 1: A's neighbourhood reaches col 4 (B visible there, a negative for A);
    # B's reaches col 1 (A visible there, a negative for B)
    r1 = hidden_region(am, vi, allv, 1)
    assert r1[0, 0].tolist() == [0, 0, 1, 1, 1, 0]
    assert r1[1, 0].tolist() == [0, 1, 0, 0, 0, 0]
    # the criterion computes it once per batch for all objects (the union covers every object, so
    # picking matched objects afterwards gives the same rows); an image without objects gives None
    crit = SetCriterion(2, LossConfig(hidden_dilation=1))
    tg = [{"labels": torch.tensor([0, 1]), "amodal": am, "visible": vi},
          {"labels": torch.zeros(0, dtype=torch.int64), "amodal": am[:0], "visible": vi[:0]}]
    per_image = crit.hidden_regions(tg)
    assert per_image[1] is None
    assert per_image[0][1].tolist() == r1[1, 0].tolist()


def test_postprocess_runner_up_classes_and_alternative_predictions():
    from ros2_amodal_seg.model.predict import instances_to_predictions

    q, h, w = 2, 8, 8
    cls = np.full((q, 6), -10.0)
    cls[0, [0, 3]] = [2.0, 1.0]                      # class 1 first, class 4 runner-up (p ratio e^-1)
    cls[1, 1] = 10
    am = np.full((q, h, w), -10.0)
    am[0, :4, :4] = 10
    am[1, 4:, 4:] = 10
    inst = postprocess(cls, am, am.copy(), np.zeros(2), np.array([0.1, 0.9]), (16, 16), [1, 2, 3, 4, 5],
                       InferenceConfig(score_threshold=0.01, runner_up_classes=4))
    assert inst.class_ids.tolist() == [2, 1]          # by score
    assert inst.alt_class_ids.shape == (2, 4) and inst.alt_class_ids[1, 0] == 4
    assert not (inst.alt_class_ids == inst.class_ids[:, None]).any()
    # same mask quality and NMS decay: the score ratio is the class probability ratio
    assert inst.alt_scores[1, 0] / inst.scores[1] == pytest.approx(np.exp(-1.0), rel=1e-4)
    assert (inst.alt_scores <= inst.scores[:, None]).all()
    assert inst.select(np.array([1])).alt_class_ids.shape == (1, 4)

    one = instances_to_predictions(inst, 7)
    assert [p["category_id"] for p in one] == [2, 1] and not any("alt_of" in p for p in one)
    thr = float(inst.alt_scores[1, 0]) - 1e-6        # only instance 1's runner-up reaches it
    two = instances_to_predictions(inst, 7, classes_per_instance=2, score_threshold=thr)
    assert two[:2] == one and len(two) == 3
    alt = two[2]
    assert alt["alt_of"] == 1 and alt["category_id"] == 4 and alt["score"] < one[1]["score"]
    assert alt["segmentation"] == one[1]["segmentation"] and alt["occluded_by"] == one[1]["occluded_by"]
    with pytest.raises(ValueError, match="classes_per_instance"):
        instances_to_predictions(inst, 7, classes_per_instance=0)
    assert positive_int("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):
        positive_int("0")
    with pytest.raises(InvalidInputError, match="alt_class_ids"):
        Instances2D(inst.amodal_masks, inst.visible_masks, inst.class_ids, inst.scores, inst.occlusion_rates,
                    inst.order_scores, np.zeros((3, 1), np.int64), np.zeros((3, 1), np.float32))
