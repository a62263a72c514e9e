"""The mask-crop shape head: crop geometry by hand, gradient isolation, back-compat, and that it learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ros2_amodal_seg.model.model import AmodalSegModel, ModelConfig
from ros2_amodal_seg.model.shape_head import ShapeHead, ShapeHeadConfig, combine_class_logits, crop_boxes, crop_grid
from test_model_helpers import tiny_config

torch.set_num_threads(2)


def test_crop_box_from_moments_hand_computed():
    # columns 2..5 and rows 10..11 of a 20 x 20 grid
    p = torch.zeros(1, 20, 20)
    p[0, 10:12, 2:6] = 1.0
    b = crop_boxes(p, context=1.25, min_half=(0.0, 0.0))[0]
    # x centres (2i+1)/20-1: -0.75 -0.65 -0.55 -0.45 -> mean -0.6, var (2*0.15^2 + 2*0.05^2)/4 = 0.0125
    assert b[0].item() == pytest.approx(-0.6, abs=1e-5)
    assert b[2].item() == pytest.approx(2 * 1.25 * np.sqrt(0.0125), abs=1e-4)
    # y centres 0.05, 0.15 -> mean 0.1, std 0.05
    assert b[1].item() == pytest.approx(0.1, abs=1e-5)
    assert b[3].item() == pytest.approx(2 * 1.25 * 0.05, abs=1e-4)
    # a faint mask (nothing above 0.5) still gets a finite box; the minimum half-size applies
    q = torch.full((1, 20, 20), 0.1)
    b2 = crop_boxes(q, context=1.25, min_half=(0.9, 0.9))[0]
    assert torch.isfinite(b2).all() and b2[2] >= 0.9 and b2[3] >= 0.9
    assert b2[0].abs() < 1e-5 and b2[1].abs() < 1e-5


def test_crop_grid_identity_box_reproduces_the_image():
    img = torch.rand(1, 3, 8, 8)
    grid = crop_grid(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 8)
    out = F.grid_sample(img, grid, mode="bilinear", align_corners=False)
    assert torch.allclose(out, img, atol=1e-6)
    # the left half (cx -0.5, half-width 0.5) at 4 x 4: x samples land on pixel columns 0, 1, 2, 3 exactly;
    # y samples (cy 0, half-height 1) at pixel rows 0.5, 2.5, 4.5, 6.5, i.e. the mean of row pairs
    left = F.grid_sample(img, crop_grid(torch.tensor([[-0.5, 0.0, 0.5, 1.0]]), 4), mode="bilinear",
                         align_corners=False)
    expected = img[..., :4].reshape(1, 3, 4, 2, 4).mean(3)
    assert torch.allclose(left, expected, atol=1e-6)


def test_class_loss_does_not_pull_the_masks():
    torch.manual_seed(0)
    m = AmodalSegModel(tiny_config())
    assert m.shape_head is not None
    out = m(torch.rand(2, 3, 64, 64) * 255)
    assert out.final.shape_logits.shape == (2, 8, 5)
    out.final.shape_logits.square().sum().backward()
    amodal_grads = [p.grad for p in m.decoder.heads.amodal_embed.parameters()]
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in amodal_grads)
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.shape_head.parameters())


def test_combined_logits_are_objectness_times_shape():
    cls = torch.tensor([[2.0, 0.0, -1.0, 1.0]])   # K = 3 + no object
    shp = torch.tensor([[0.5, 1.5, -0.5]])
    p = combine_class_logits(cls, shp).softmax(-1)[0]
    pc = cls.softmax(-1)[0]
    ps = shp.softmax(-1)[0]
    assert torch.allclose(p[:3], (1 - pc[3]) * ps, atol=1e-6)
    assert torch.allclose(p[3], pc[3], atol=1e-6)
    assert torch.allclose(combine_class_logits(cls, shp).exp().sum(), torch.tensor(1.0), atol=1e-6)


def test_config_without_shape_head_entry_means_none():
    """Checkpoints from before the shape head (no entry) rebuild without it; the default has one."""
    d = ModelConfig().to_dict()
    assert d["shape_head"]["enabled"] is True
    d.pop("shape_head")
    cfg = ModelConfig.from_dict(d)
    assert cfg.shape_head.enabled is False
    assert AmodalSegModel(cfg).shape_head is None
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()


def _shapes_batch(rng: np.random.Generator, n: int, size: int = 64):
    """n images with one object each: 0 = disk, 1 = square, 2 = triangle; random colours."""
    imgs = np.zeros((n, 3, size, size), np.float32)
    masks = np.zeros((n, 1, size // 4, size // 4), np.float32)
    labels = rng.integers(0, 3, n)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for i, c in enumerate(labels):
        r = rng.uniform(8, 14)
        cx, cy = rng.uniform(r + 2, size - r - 2, 2)
        if c == 0:
            m = (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2
        elif c == 1:
            m = (np.abs(xx - cx) < r * 0.85) & (np.abs(yy - cy) < r * 0.85)
        else:
            m = (yy < cy + r * 0.8) & (yy > cy - r) & (np.abs(xx - cx) < (yy - (cy - r)) * 0.6)
        imgs[i] = rng.normal(0, 0.3, 3)[:, None, None]
        imgs[i][:, m] = rng.normal(0, 1, 3)[:, None]
        masks[i, 0] = m.reshape(size // 4, 4, size // 4, 4).mean((1, 3))
    logits = (masks * 2 - 1) * 8
    return (torch.from_numpy(imgs), torch.from_numpy(logits), torch.from_numpy(labels))


def test_shape_head_learns_shapes_from_masks():
    """Colour carries no class information here; only the mask shape does."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    head = ShapeHead(ShapeHeadConfig(crop_size=16, channels=(16, 32, 32)), hidden_dim=8, num_classes=3)
    opt = torch.optim.Adam(head.parameters(), lr=2e-3)
    for _ in range(150):
        img, lg, lab = _shapes_batch(rng, 16)
        logits = head(img, torch.zeros(16, 1, 8), lg, lg)[:, 0]   # [16, 3]
        loss = F.cross_entropy(logits, lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
    img, lg, lab = _shapes_batch(np.random.default_rng(123), 200)
    with torch.no_grad():
        acc = (head(img, torch.zeros(200, 1, 8), lg, lg)[:, 0].argmax(-1) == lab).float().mean().item()
    assert acc > 0.9, acc


def test_gated_shape_head_keeps_exactly_the_same_instances():
    """Skipping queries below the objectness gate changes no score at or above the gate."""
    torch.manual_seed(3)
    m = AmodalSegModel(tiny_config()).eval()
    x = m.normalize(torch.rand(2, 3, 64, 64) * 255)
    with torch.no_grad():
        feats = m.backbone(x)
        full = m.decode(x, feats).final
        obj = 1 - full.class_logits.softmax(-1)[..., -1]                       # [B, Q]
        gate = float(obj.flatten().sort().values[len(obj.flatten()) // 2])     # half the queries pass
        gated = m.decode(x, feats, shape_min_objectness=gate).final
    keep = obj >= gate
    assert 0 < int(keep.sum()) < keep.numel()
    assert torch.allclose(gated.shape_logits[keep], full.shape_logits[keep], atol=1e-5)
    assert float(gated.shape_logits[~keep].abs().max()) == 0.0
    # every class score of a skipped query stays below the gate, so a threshold there drops it either way
    p = gated.scored_class_logits().softmax(-1)[..., :-1].amax(-1)
    assert bool((p[~keep] < gate).all())
