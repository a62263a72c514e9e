"""Train the hidden-part completion network (:mod:`.completion`) on a trained model's own
predictions: ``amodal-seg train-completion``.

1. The main model runs on every frame of the training datasets with the runtime
   post-processing; a recorder in the completion slot keeps each kept instance's crop
   planes (exactly what the network sees at run time).
2. Each instance is matched to the ground-truth object with the largest visible-mask
   IoU (at least ``min_match_iou``); unmatched instances (false positives) are skipped.
   The target is that object's amodal mask on the same crop (area average).
3. The network is trained with a per-pixel BCE, weighted ``1 + occluder_weight`` in the
   decision region (inside another instance's visible mask and outside its own: where its
   output is used), with horizontal flips.
4. The main model's weights are unchanged; the output checkpoint is the input one plus
   the completion network (``completion.enabled: true``).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ros2_amodal_seg.data.types import AmodalDataset
from ros2_amodal_seg.errors import CheckpointError, ConfigError
from ros2_amodal_seg.masks import iou_matrix
from ros2_amodal_seg.model.checkpoint import load_checkpoint, save_with_stage
from ros2_amodal_seg.model.candidates import Candidates
from ros2_amodal_seg.model.completion import (OCCLUDERS, PLANES, CompletionConfig, CompletionInputs,
                                              CompletionNet, completion_inputs)
from ros2_amodal_seg.model.crops import crop_plane
from ros2_amodal_seg.model.predictor import AmodalPredictor
from ros2_amodal_seg.model.visualize import plot_training


@dataclass(frozen=True)
class CompletionTrainConfig:
    """Training of the completion network (``config/train.yaml``: ``completion``).

    Attributes:
        steps: optimiser steps. batch_size: crops per step. lr / weight_decay: AdamW.
        occluder_weight: extra BCE weight in the decision region (see :func:`decision_region`).
        score_threshold: kept instances of the main model (lower than at run time: more crops).
        min_match_iou: visible-mask IoU an instance needs with a ground-truth object to be used.
        seed: crop order and flips.
    """

    steps: int = 4000
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    occluder_weight: float = 4.0
    score_threshold: float = 0.1
    min_match_iou: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError("completion training needs steps >= 1, batch_size >= 1, lr > 0, weight_decay >= 0")
        if self.occluder_weight < 0 or not 0 <= self.score_threshold < 1 or not 0 < self.min_match_iou <= 1:
            raise ConfigError("occluder_weight >= 0, score_threshold in [0, 1) and min_match_iou in (0, 1] required")


@dataclass
class CropSet:
    """Training crops, compact. Attributes (numpy arrays, or torch tensors after :meth:`to`):
        planes: ``[M, P, S, S]`` uint8 (the :data:`PLANES` scaled to 0..255).
        classes: ``[M]`` int64 class index. targets: ``[M, S, S]`` uint8 ground-truth amodal (0..255).
    """

    planes: np.ndarray | torch.Tensor
    classes: np.ndarray | torch.Tensor
    targets: np.ndarray | torch.Tensor

    def __len__(self) -> int:
        return len(self.classes)

    def to(self, device: torch.device | str) -> CropSet:
        """The same crops as uint8 tensors on ``device``: batches are then cut there, which keeps
        a GPU busy (the numpy batching alone takes longer than a step on one)."""
        return CropSet(*(torch.as_tensor(a).to(device) for a in (self.planes, self.classes, self.targets)))

    def batch(self, idx: np.ndarray, num_classes: int, flip: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, S, S]`` float planes (with the class one-hot) and ``[B, S, S]`` float targets,
        on the device the crops are on. ``flip``: ``[B]`` bool, mirror those crops left-right."""
        planes, classes, targets = (torch.as_tensor(a) for a in (self.planes, self.classes, self.targets))
        i = torch.as_tensor(idx, device=planes.device)
        p = planes[i].float() / 255.0                                       # [B, P, S, S]
        t = targets[i].float() / 255.0                                      # [B, S, S]
        if flip is not None and flip.any():
            f = torch.as_tensor(flip, device=planes.device)
            p = torch.where(f[:, None, None, None], p.flip(-1), p)
            t = torch.where(f[:, None, None], t.flip(-1), t)
        b, _, s, _ = p.shape
        onehot = F.one_hot(classes[i], num_classes).float()[:, :, None, None].expand(b, num_classes, s, s)
        return torch.cat([p, onehot], 1), t


class CropRecorder:
    """A post-processing stage in the completion's place: records the crop planes of the kept
    instances (exactly what the network sees at run time), their visible masks and class indices,
    and leaves the candidates unchanged."""

    name = "completion"

    def __init__(self, cfg: CompletionConfig, num_classes: int) -> None:
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.last: tuple[CompletionInputs, np.ndarray, np.ndarray] | None = None

    def __call__(self, c: Candidates) -> Candidates:
        cls = c.main_class
        inputs = completion_inputs(c.amodal, c.visible, c.amodal_logits, c.visible_logits, cls,
                                   self.num_classes, self.cfg)
        self.last = (CompletionInputs(*(np.asarray(torch.as_tensor(a).cpu()) for a in
                                        (inputs.planes, inputs.boxes, inputs.visible_count))),
                     c.visible.cpu().numpy(), cls.cpu().numpy())
        return c


def collect_crops(predictor: AmodalPredictor, datasets: list[AmodalDataset], cfg: CompletionConfig,
                  train_cfg: CompletionTrainConfig, progress: bool = True) -> CropSet:
    """Run ``predictor`` over every sample and keep the matched instances' crops."""
    from tqdm import tqdm  # noqa: PLC0415

    rec = CropRecorder(cfg, predictor.networks.model_config.num_classes)
    saved = predictor.config
    predictor.set_config(saved.replace(score_threshold=train_cfg.score_threshold, complete_hidden=True))
    post = predictor.with_stages(completion=rec)
    planes, classes, targets = [], [], []
    samples = [s for ds in datasets for s in ds.samples]
    try:
        for s in tqdm(samples, desc="crops", unit="img", disable=not progress, dynamic_ncols=True):
            rec.last = None
            predictor.predict(s.load_image(), post=post)
            if rec.last is None or not s.annotations:
                continue
            inputs, visible, cls = rec.last
            gv = np.stack([a.visible for a in s.annotations])
            iou = iou_matrix(visible, gv)                       # [N, G]
            best = iou.argmax(1)
            for i in np.flatnonzero(iou.max(1) >= train_cfg.min_match_iou):
                planes.append(np.round(inputs.planes[i, :len(PLANES)] * 255).astype(np.uint8))
                classes.append(int(cls[i]))
                tgt = crop_plane(s.annotations[best[i]].amodal, inputs.boxes[i], cfg.crop_size)
                targets.append(np.round(tgt * 255).astype(np.uint8))
    finally:
        predictor.set_config(saved)
    s = cfg.crop_size
    if not planes:
        return CropSet(np.zeros((0, len(PLANES), s, s), np.uint8), np.zeros(0, np.int64), np.zeros((0, s, s), np.uint8))
    return CropSet(np.stack(planes), np.array(classes, np.int64), np.stack(targets))


def train_completion_net(train: CropSet, val: CropSet | None, cfg: CompletionConfig, num_classes: int,
                         train_cfg: CompletionTrainConfig, device: torch.device | str = "cpu",
                         progress: bool = True, init: CompletionNet | None = None) -> tuple[CompletionNet, dict]:
    """Train a :class:`CompletionNet` (fresh, or continuing from ``init``'s weights); returns it
    (eval mode) and a history dict."""
    from tqdm import tqdm  # noqa: PLC0415

    if len(train) == 0:
        raise ConfigError("no training crops: the model matched no ground-truth object")
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    net = CompletionNet(cfg, num_classes)
    if init is not None:
        net.load_state_dict(init.state_dict())
    net = net.to(device).train()
    train = train.to(device)                                # on a CPU: tensor views of the arrays
    val = val.to(device) if val is not None else None
    opt = torch.optim.AdamW(net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(k, train_cfg.steps) / train_cfg.steps)))
    hist: dict = {"step": [], "loss": [], "val_step": [], "val_hidden_iou": [], "val_input_hidden_iou": []}
    order = rng.permutation(len(train))
    pos = 0
    bar = tqdm(range(train_cfg.steps), desc="train-completion", unit="step", disable=not progress, dynamic_ncols=True)
    ema = None
    for step in bar:
        if pos + train_cfg.batch_size > len(order):
            order, pos = rng.permutation(len(train)), 0
        idx = order[pos:pos + train_cfg.batch_size]
        pos += train_cfg.batch_size
        x, t = train.batch(idx, num_classes, flip=rng.random(len(idx)) < 0.5)
        x, t = x.to(device), t.to(device)
        logits = net(x)
        w = 1.0 + train_cfg.occluder_weight * decision_region(x).float()
        loss = (F.binary_cross_entropy_with_logits(logits, t, reduction="none") * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        hist["step"].append(step)
        hist["loss"].append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{ema:.4f}")
        if val is not None and len(val) and (step + 1) % max(1, train_cfg.steps // 5) == 0:
            net_iou, in_iou = evaluate_crops(net, val, num_classes, cfg.threshold, device)
            hist["val_step"].append(step + 1)
            hist["val_hidden_iou"].append(net_iou)
            hist["val_input_hidden_iou"].append(in_iou)
            bar.write(f"step {step + 1}: val IoU in the decision regions {net_iou:.3f} "
                      f"(the model's own amodal mask: {in_iou:.3f})")
            net.train()
    return net.eval(), hist


def decision_region(planes: torch.Tensor) -> torch.Tensor:
    """``[B, C, S, S]`` planes -> ``[B, S, S]`` bool: where the completion decides the mask (inside
    another instance's visible mask, outside the instance's own)."""
    return (planes[:, OCCLUDERS] > 0.5) & (planes[:, PLANES.index("visible")] <= 0.5)


@torch.no_grad()
def evaluate_crops(net: CompletionNet, crops: CropSet, num_classes: int, threshold: float,
                   device: torch.device | str = "cpu", batch: int = 128) -> tuple[float, float]:
    """IoU with the ground truth inside the decision regions (:func:`decision_region`), pooled over
    all ``crops``: (network, the model's own amodal mask)."""
    net.eval()
    inter = np.zeros(2)
    union = np.zeros(2)
    for a in range(0, len(crops), batch):
        x, t = crops.batch(np.arange(a, min(a + batch, len(crops))), num_classes)
        x, t = x.to(device), t.to(device)
        occ = decision_region(x)
        tgt = (t > 0.5) & occ
        for k, pred in enumerate((torch.sigmoid(net(x)) > threshold, x[:, PLANES.index("amodal")] > 0.5)):
            pred = pred & occ
            inter[k] += (pred & tgt).sum().item()
            union[k] += (pred | tgt).sum().item()
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(iou[0]), float(iou[1])


def save_with_completion(predictor: AmodalPredictor, net: CompletionNet, cfg: CompletionConfig, out: str | Path,
                         extra: dict | None = None) -> Path:
    """The predictor's model plus ``net`` as a checkpoint with ``completion.enabled``."""
    return save_with_stage(predictor.networks.model, predictor.meta, predictor.class_names, "completion", "completion",
                           net, cfg, out, extra)


def plot_history(hist: dict, path: str | Path) -> Path:
    """Loss curve and validation hidden-region IoU as a PNG."""
    def validation(b) -> None:
        if hist["val_step"]:
            b.plot(hist["val_step"], hist["val_hidden_iou"], "o-", label="completion network")
            b.plot(hist["val_step"], hist["val_input_hidden_iou"], "s--", label="model's own amodal mask")
            b.legend()
        b.set(xlabel="step", ylabel="IoU in the decision regions", title="validation")

    return plot_training(hist, path, "weighted BCE", "completion training loss", validation)


def _cached_crops(cache: Path | None, name: str, make) -> CropSet:
    """``make()``, or the crops saved under ``cache`` (an .npz per split) by an earlier run."""
    f = None if cache is None else cache.with_name(f"{cache.stem}.{name}.npz")
    if f is not None and f.is_file():
        z = np.load(f)
        return CropSet(z["planes"], z["classes"], z["targets"])
    crops = make()
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, planes=crops.planes, classes=crops.classes, targets=crops.targets)
    return crops


def run(checkpoint: str | Path | None, data: list[str], val: list[str], out: str | Path,
        cfg: CompletionConfig = CompletionConfig(), train_cfg: CompletionTrainConfig = CompletionTrainConfig(),
        device: str = "auto", progress: bool = True, crop_cache: str | Path | None = None,
        init: str | Path | None = None) -> dict:
    """The whole ``train-completion`` command; returns a summary dict.

    ``crop_cache``: base path; the crops are saved as ``<base>.train.npz`` / ``<base>.val.npz`` and
    reused by a later run with the same path (the crops depend on the checkpoint, the data and
    ``cfg``; delete the files when those change). ``init``: a checkpoint whose completion
    network (same ``cfg`` shapes) is trained further instead of a fresh one."""
    from ros2_amodal_seg.data.dataset import load_dataset  # noqa: PLC0415

    t0 = time.time()
    pred = AmodalPredictor.with_torch(checkpoint, device)
    pred.set_config(pred.config.replace(max_instances=50))
    k = pred.networks.model_config.num_classes
    cache = None if crop_cache is None else Path(crop_cache)
    train = _cached_crops(cache, "train", lambda: collect_crops(pred, [load_dataset(d) for d in data], cfg,
                                                                 train_cfg, progress))
    valset = _cached_crops(cache, "val", lambda: collect_crops(pred, [load_dataset(d) for d in val], cfg,
                                                                train_cfg, progress)) if val else None
    start = None
    if init is not None:
        src, _ = load_checkpoint(init, "cpu")
        if src.completion is None:
            raise CheckpointError(f"--init {init} has no completion network")
        same = ("crop_size", "context", "min_side_px", "channels")
        if any(getattr(src.cfg.completion, f) != getattr(cfg, f) for f in same):
            raise CheckpointError(f"--init {init}: its completion network {src.cfg.completion} does not match {cfg}")
        start = src.completion
    t1 = time.time()
    net, hist = train_completion_net(train, valset, cfg, k, train_cfg, pred.networks.device, progress, init=start)
    t2 = time.time()
    summary = {"train_crops": len(train), "val_crops": len(valset) if valset is not None else 0,
               "init": None if init is None else str(init),
               "collect_s": round(t1 - t0, 1), "train_s": round(t2 - t1, 1), "device": pred.device,
               "train_config": dataclasses.asdict(train_cfg)}
    if valset is not None and len(valset):
        summary["val_hidden_iou"], summary["val_input_hidden_iou"] = evaluate_crops(net, valset, k, cfg.threshold,
                                                                                      pred.networks.device)
    path = save_with_completion(pred, net, cfg, out, extra={"completion_training": summary})
    summary["checkpoint"] = str(path)
    summary["plot"] = str(plot_history(hist, Path(out).with_suffix(".completion.png")))
    return summary
