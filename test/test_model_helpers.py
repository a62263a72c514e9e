"""Shared fixtures-in-code for test_model*.py (tiny configs, hand-built datasets)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ros2_amodal_seg import masks as M
from ros2_amodal_seg.classes import SHAPES_CLASSES, coco_categories
from ros2_amodal_seg.data.types import AmodalAnnotation, AmodalDataset, AmodalSample
from ros2_amodal_seg.model.backbone import BackboneConfig
from ros2_amodal_seg.model.model import ModelConfig
from ros2_amodal_seg.model.transformer_decoder import TransformerDecoderConfig


def tiny_config(**kw) -> ModelConfig:
    kw.setdefault("num_classes", 5)
    return ModelConfig(input_height=64, input_width=64, hidden_dim=32, mask_dim=32,
                       backbone=BackboneConfig(name="plain", channels=(8, 16, 16, 32), blocks=(1, 1, 1, 1), stem_channels=8),
                       decoder=TransformerDecoderConfig(num_queries=8, num_heads=2, dim_feedforward=32, num_layers=2,
                                                        num_occlusion_layers=1), **kw)


TINY_YAML = """num_classes: 5
input_height: 64
input_width: 64
hidden_dim: 32
mask_dim: 32
backbone: {name: plain, channels: [8, 16, 16, 32], blocks: [1, 1, 1, 1], stem_channels: 8}
decoder: {num_queries: 8, num_heads: 2, dim_feedforward: 32, num_layers: 2, num_occlusion_layers: 1}
"""


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def scene(seed: int, h: int = 48, w: int = 64):
    """A hand-built frame: 2-3 rectangles, the later ones in front (painted last).

    Returns (image [h, w, 3] uint8, list of (category_id, amodal, visible, occluded_by indices)).
    """
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    n = int(rng.integers(2, 4))
    amodals, cats = [], []
    for _ in range(n):
        y0, x0 = int(rng.integers(0, h - 16)), int(rng.integers(0, w - 20))
        amodals.append(rect(h, w, y0, y0 + int(rng.integers(10, 16)), x0, x0 + int(rng.integers(12, 20))))
        cats.append(int(rng.integers(1, 6)))
    visibles = []
    for i in range(n):
        v = amodals[i].copy()
        for j in range(i + 1, n):
            v &= ~amodals[j]
        visibles.append(v)
    for i in range(n):
        img[amodals[i]] = rng.integers(0, 256, 3)
    objs = []
    for i in range(n):
        occ_by = [j for j in range(n) if j != i and (amodals[i] & visibles[j]).any()]
        objs.append((cats[i], amodals[i], visibles[i], occ_by))
    return img, objs


def make_dataset(n_images: int = 4, seed: int = 0, h: int = 48, w: int = 64) -> AmodalDataset:
    """In-memory hand-built dataset (image files not needed for evaluation)."""
    samples = []
    aid = 1
    for k in range(n_images):
        _, objs = scene(seed + k, h, w)
        ids = list(range(aid, aid + len(objs)))
        anns = []
        for (c, a, v, occ_by), i in zip(objs, ids):
            if v.sum() < 1:
                continue
            anns.append(AmodalAnnotation(id=i, category_id=c, category_name=str(c), amodal=a, visible=v,
                                         occlude_rate=float(1 - v.sum() / a.sum()), occluded_by=[ids[j] for j in occ_by]))
        aid += len(objs)
        samples.append(AmodalSample(image_id=k + 1, file_name=Path(f"{k}.png"), width=w, height=h, annotations=anns))
    return AmodalDataset(categories={i: str(i) for i in range(1, 6)}, samples=samples)


def write_dataset(out: Path, n_images: int = 4, seed: int = 0, h: int = 48, w: int = 64) -> Path:
    """The hand-built frames as a project-format dataset (formats.md) on disk."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    aid = 1
    for k in range(n_images):
        img, objs = scene(seed + k, h, w)
        fn = f"images/{k + 1:06d}.png"
        cv2.imwrite(str(out / fn), img[:, :, ::-1])
        images.append({"id": k + 1, "file_name": fn, "width": w, "height": h})
        ids = list(range(aid, aid + len(objs)))
        for (c, a, v, occ_by), i in zip(objs, ids):
            if v.sum() < 1:
                continue
            anns.append({"id": i, "image_id": k + 1, "category_id": c, "iscrowd": 0, "segmentation": M.encode(a),
                         "bbox": M.bbox_xywh(a), "area": int(a.sum()), "visible_mask": M.encode(v),
                         "visible_bbox": M.bbox_xywh(v), "occlude_rate": float(1 - v.sum() / a.sum()),
                         "occluded_by": [ids[j] for j in occ_by]})
        aid += len(objs)
    (out / "annotations.json").write_text(json.dumps({"categories": coco_categories(SHAPES_CLASSES), "images": images,
                                                      "annotations": anns}))
    return out


def test_world_preset_follows_the_checkpoints_class_list(tmp_path):
    import pytest

    from ros2_amodal_seg.errors import CheckpointError
    from ros2_amodal_seg.model.checkpoint import save_checkpoint, world_preset
    from ros2_amodal_seg.model.model import AmodalSegModel

    def ckpt(name, classes):
        cfg = ModelConfig(num_classes=len(classes), input_height=64, input_width=64, hidden_dim=16, mask_dim=16,
                          backbone=BackboneConfig(name="plain", channels=(8, 8, 8, 8), blocks=(1, 1, 1, 1),
                                                  stem_channels=8),
                          decoder=TransformerDecoderConfig(num_queries=4, num_heads=2, dim_feedforward=16,
                                                           num_layers=1))
        return str(save_checkpoint(tmp_path / f"{name}.safetensors", AmodalSegModel(cfg), cfg, classes))

    from ros2_amodal_seg.classes import WORLD_CLASSES

    world, shapes = ckpt("world", WORLD_CLASSES), ckpt("shapes", SHAPES_CLASSES)
    assert world_preset(world, "street") == "street" and world_preset(world, "shapes-tabletop") == "tabletop"
    assert world_preset(shapes, "street") == "shapes-street" and world_preset(shapes, "shapes-street") == "shapes-street"
    with pytest.raises(CheckpointError, match="neither"):
        world_preset(ckpt("mine", {1: "apple", 2: "pear"}), "street")
    assert world_preset(None, "tabletop") in ("tabletop", "shapes-tabletop")      # the shipped checkpoint
