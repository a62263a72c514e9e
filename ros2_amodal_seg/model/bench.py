"""``amodal-seg bench``: per-stage latency at 640x480 and a comparison with HF Mask2Former.

The reference is ``transformers``' ``Mask2FormerForUniversalSegmentation`` built from
its config with a ResNet-50 backbone (default decoder, 100 queries, random weights,
``HF_HUB_OFFLINE=1``; nothing is downloaded), timed on the same 640x480 input
(its forward pass only, which favours the reference).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ros2_amodal_seg.data.types import read_rgb
from ros2_amodal_seg.model.checkpoint import world_preset
from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT, AmodalPredictor, resolve_device


def _bench_image(checkpoint: Path, seed: int = 0) -> np.ndarray:
    """A 640x480 RGB test frame: a street scene of the checkpoint's world when the world renders,
    else smooth noise."""
    try:
        from ros2_amodal_seg.world import render_frame  # noqa: PLC0415

        return render_frame(world_preset(checkpoint, "street"), seed, 640, 480, lidar=False).rgb
    except (ImportError, RuntimeError, ValueError):
        rng = np.random.default_rng(seed)
        return np.clip(rng.normal(128, 40, (480, 640, 3)), 0, 255).astype(np.uint8)


def build_hf_mask2former():
    """HF Mask2Former, ResNet-50 backbone, default decoder, random init, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, ResNetConfig  # noqa: PLC0415

    bc = ResNetConfig(depths=[3, 4, 6, 3], hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck",
                      out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerForUniversalSegmentation(Mask2FormerConfig(backbone_config=bc, num_labels=13)).eval()


def run_bench(checkpoint: str | None = None, device: str = "auto", config=None, iters: int = 10, warmup: int = 2,
              compare_hf: bool = True, json_out: str | None = None, image: str | None = None) -> dict:
    """Median per-stage latency of the predictor on one frame (``image``, else a rendered street
    scene, else noise when the world cannot render), optionally against HF Mask2Former.

    Args:
        config: the :class:`~ros2_amodal_seg.model.inference_config.InferenceConfig` (None: the
            checkpoint's own).
    """
    dev = resolve_device(device)
    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    p = AmodalPredictor.from_checkpoint(path, device=str(dev), config=config)
    img = read_rgb(image) if image else _bench_image(path)
    for _ in range(warmup):
        p.predict(img)
    rows = []
    for _ in range(iters):
        p.predict(img)
        rows.append(p.last_timings_ms)
    ours = {k: float(np.median([r.get(k, 0.0) for r in rows])) for k in rows[0]}
    ours["total"] = float(np.median([sum(r.values()) for r in rows]))
    res: dict = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "instances": len(p.predict(img)), "torch_threads": torch.get_num_threads(), "backend": p.backend,
                 "image": list(img.shape[:2]), "image_file": image, "config": p.config.to_dict(),
                 "checkpoint": str(path), "ours_ms": ours, "iters": iters}
    print(f"amodal-seg model on {dev} ({p.backend}, {torch.get_num_threads()} threads), {img.shape[1]}x{img.shape[0]}, median of "
          f"{iters}, {res['instances']} instances at score >= {p.config.score_threshold}:")
    for k, v in ours.items():
        print(f"  {k:>18}: {v:8.1f} ms")
    if compare_hf:
        import transformers  # noqa: PLC0415

        hf = build_hf_mask2former().to(dev)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float().div(255).to(dev)
        hf_iters = max(2, iters // 3)
        times = []
        with torch.inference_mode():
            hf(pixel_values=x)
            for _ in range(hf_iters):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                hf(pixel_values=x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t) * 1e3)
        hf_ms = float(np.median(times))
        res.update(hf_mask2former_ms=hf_ms, hf_iters=hf_iters, transformers_version=transformers.__version__,
                   speedup=hf_ms / ours["total"])
        print(f"HF Mask2Former (ResNet-50, transformers {transformers.__version__}, random init) forward: "
              f"{hf_ms:.1f} ms (median of {hf_iters})")
        print(f"ratio HF / ours (total): {hf_ms / ours['total']:.1f}x")
    p.close()
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=1))
    return res
