"""Train the class re-reading network (:mod:`.reclassify`) on a trained model's own
predictions: ``amodal-seg train-reclassifier``.

1. The model (with its completion network, if it has one) runs on every frame of the
   datasets with the runtime post-processing at a low score threshold; a recorder in the
   re-classifier slot keeps each kept instance's crop planes and features (exactly what the
   network sees at run time).
2. Each instance is matched to the ground-truth object with the largest *amodal* IoU (of any
   class); that IoU is the target of the quality head (``ReclassifyConfig.quality``), and when
   it reaches ``min_match_iou`` (an AP match) the object's class is the instance's label.
   Unmatched instances (false positives) have no label: they train the quality head only, and
   are left out without it.
3. The network is trained with cross-entropy (+ ``quality_loss`` x binary cross-entropy of the
   predicted IoU) and horizontal flips (AdamW, one-cycle schedule). Validation reports class
   accuracy before (the query's class) and after, on all labelled crops and on those whose
   predicted occlusion rate exceeds 0.15, and, with the quality head, the Pearson correlation
   of the predicted IoU with the true one against that of the instance's score.
4. The other weights are unchanged; the output checkpoint is the input one plus the
   re-classifier (``reclassify.enabled: true``).

Collecting is the slow part on a CPU (about 0.6 s a frame); ``--crop-cache`` keeps the crops
of each dataset folder in its own file, so several ``--collect-only`` runs (one per folder)
can collect in parallel and a last run trains on all of them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ros2_amodal_seg.data.types import AmodalDataset
from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.masks import iou_matrix
from ros2_amodal_seg.model.checkpoint import save_with_stage
from ros2_amodal_seg.model.predictor import AmodalPredictor
from ros2_amodal_seg.model.candidates import Candidates
from ros2_amodal_seg.model.reclassify import (PLANES, ReclassifierNet, ReclassifyConfig, ReclassifyInputs,
                                              reclassify_inputs)
from ros2_amodal_seg.model.upsample import sigmoid
from ros2_amodal_seg.model.visualize import plot_training

#: predicted occlusion rate above which validation also counts an instance as hidden
OCCLUDED_RATE = 0.15


@dataclass(frozen=True)
class ReclassifyTrainConfig:
    """Training of the re-classifier (``config/train.yaml``: ``reclassify``).

    Attributes:
        steps: optimiser steps. batch_size: crops per step. lr: AdamW peak (one-cycle).
        weight_decay: AdamW.
        score_threshold: kept instances of the model (lower than at run time: the low-scored
            hidden objects are the ones that matter for AP).
        min_match_iou: amodal IoU an instance needs with a ground-truth object to be labelled.
        quality_loss: weight of the quality head's binary cross-entropy (predicted vs. true
            amodal IoU) next to the class cross-entropy.
        seed: crop order and flips.
    """

    steps: int = 9000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    score_threshold: float = 0.05
    min_match_iou: float = 0.5
    quality_loss: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError("re-classifier training needs steps >= 1, batch_size >= 1, lr > 0, weight_decay >= 0")
        if not 0 <= self.score_threshold < 1 or not 0 < self.min_match_iou <= 1 or self.quality_loss < 0:
            raise ConfigError("score_threshold in [0, 1), min_match_iou in (0, 1] and quality_loss >= 0 required")


@dataclass
class ClassCrops:
    """Labelled crops, compact. Attributes (numpy arrays):
        planes: ``[M, P, S, S]`` uint8 (the :data:`PLANES` scaled to 0..255).
        features: ``[M, K + 2]`` float32 (class distribution, score, occlusion rate).
        labels: ``[M]`` int64 class index of the matched ground-truth object, -1 when the instance
            matches none (amodal IoU below ``min_match_iou``).
        iou: ``[M]`` float32 amodal IoU with the best-overlapping ground-truth object (any class).
    """

    planes: np.ndarray
    features: np.ndarray
    labels: np.ndarray
    iou: np.ndarray

    FIELDS = ("planes", "features", "labels", "iou")

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: list["ClassCrops"]) -> "ClassCrops":
        return ClassCrops(*(np.concatenate([getattr(p, f) for p in parts]) for f in ClassCrops.FIELDS))

    def subset(self, keep: np.ndarray) -> "ClassCrops":
        """The crops selected by ``keep`` (``[M]`` bool or indices)."""
        return ClassCrops(*(getattr(self, f)[keep] for f in ClassCrops.FIELDS))

    def labelled(self) -> "ClassCrops":
        """The crops that matched an object (label >= 0)."""
        return self.subset(self.labels >= 0)

    def batch(self, idx: np.ndarray, flip: np.ndarray | None = None, device: torch.device | str = "cpu"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, P, S, S]`` float planes, ``[B, K + 2]`` features, ``[B]`` labels and ``[B]`` IoUs on
        ``device``; ``flip``: ``[B]`` bool, mirror those crops left-right."""
        p = torch.from_numpy(self.planes[idx]).to(device).float() / 255.0
        if flip is not None and flip.any():
            f = torch.as_tensor(flip, device=p.device)
            p = torch.where(f[:, None, None, None], p.flip(-1), p)
        return (p, torch.from_numpy(self.features[idx]).to(device),
                torch.from_numpy(self.labels[idx]).to(device), torch.from_numpy(self.iou[idx]).to(device))

    def baseline_correct(self, num_classes: int) -> np.ndarray:
        """``[M]`` bool: the query's own class (the distribution's argmax) is right (False for unlabelled crops)."""
        return self.features[:, :num_classes].argmax(1) == self.labels

    def occluded(self, num_classes: int) -> np.ndarray:
        """``[M]`` bool: predicted occlusion rate above :data:`OCCLUDED_RATE`."""
        return self.features[:, num_classes + 1] > OCCLUDED_RATE


class InstanceRecorder:
    """A post-processing stage in the re-reading network's place: records the kept instances' crop
    planes, features and amodal masks (exactly what the network sees at run time), and leaves the
    candidates unchanged."""

    name = "reclassify"

    def __init__(self, cfg: ReclassifyConfig, num_classes: int) -> None:
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.last = None

    def __call__(self, c: Candidates) -> Candidates:
        x = reclassify_inputs(c.image, c.amodal, c.visible, c.class_dist, c.scores, c.occlusion.clamp(0, 1), self.cfg)
        self.last = (ReclassifyInputs(*(np.asarray(torch.as_tensor(a).cpu()) for a in (x.planes, x.features, x.boxes))),
                     c.amodal.cpu().numpy())
        return c


def collect_class_crops(predictor: AmodalPredictor, dataset: AmodalDataset, cfg: ReclassifyConfig,
                        train_cfg: ReclassifyTrainConfig, progress: bool = True) -> ClassCrops:
    """Run ``predictor`` over every sample of ``dataset`` and keep every kept instance's crop, with
    its best amodal IoU with an object and, when that reaches ``min_match_iou``, its class."""
    from tqdm import tqdm  # noqa: PLC0415

    k = predictor.networks.model_config.num_classes
    index = {cid: i for i, cid in enumerate(predictor.class_ids)}
    rec = InstanceRecorder(cfg, k)
    saved = predictor.config
    predictor.set_config(saved.replace(score_threshold=train_cfg.score_threshold, reclassify=True))
    post = predictor.with_stages(completion=predictor.completion_stage, reclassify=rec)
    planes, feats, labels, ious = [], [], [], []
    name = Path(dataset.source).parent.name if dataset.source is not None else "crops"
    try:
        for s in tqdm(dataset.samples, desc=f"crops {name}", unit="img", disable=not progress, dynamic_ncols=True):
            rec.last = None
            predictor.predict(s.load_image(), post=post)
            anns = [a for a in s.annotations if a.category_id in index]
            if rec.last is None:
                continue
            x, amodal = rec.last
            iou = (iou_matrix(amodal, np.stack([a.amodal for a in anns])) if anns
                   else np.zeros((len(amodal), 1)))                             # [N, G]
            best, top = iou.argmax(1), iou.max(1)
            for i in range(len(amodal)):
                planes.append(np.round(x.planes[i] * 255).astype(np.uint8))
                feats.append(x.features[i])
                labels.append(index[anns[best[i]].category_id] if top[i] >= train_cfg.min_match_iou else -1)
                ious.append(top[i])
    finally:
        predictor.set_config(saved)
    s = cfg.crop_size
    if not planes:
        return ClassCrops(np.zeros((0, len(PLANES), s, s), np.uint8),
                          np.zeros((0, cfg.num_features(k)), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return ClassCrops(np.stack(planes), np.stack(feats).astype(np.float32), np.array(labels, np.int64),
                      np.array(ious, np.float32))


@torch.no_grad()
def evaluate_class_crops(net: ReclassifierNet, crops: ClassCrops, device: torch.device | str = "cpu",
                         batch: int = 256) -> dict[str, float]:
    """Accuracy of the query's class and of the network's, on all labelled ``crops`` and on the hidden
    ones; with the quality head also the predicted IoU's mean absolute error and its Pearson
    correlation with the true IoU, next to the correlation of the instance's score (all crops)."""
    net.eval()
    k = net.num_classes
    out = np.zeros((len(crops), net.num_outputs), np.float32)
    for a in range(0, len(crops), batch):
        p, f, _, _ = crops.batch(np.arange(a, min(a + batch, len(crops))), device=device)
        out[a:a + len(p)] = net(p, f).cpu().numpy()
    lab = crops.labels >= 0
    ok, base, occ = out[:, :k].argmax(1) == crops.labels, crops.baseline_correct(k), crops.occluded(k) & lab
    res = {"accuracy": float(ok[lab].mean()) if lab.any() else float("nan"),
           "query_accuracy": float(base[lab].mean()) if lab.any() else float("nan"),
           "occluded_accuracy": float(ok[occ].mean()) if occ.any() else float("nan"),
           "occluded_query_accuracy": float(base[occ].mean()) if occ.any() else float("nan"),
           "crops": int(lab.sum()), "occluded_crops": int(occ.sum())}
    if net.quality is not None and len(crops) > 1:
        q = sigmoid(out[:, k].astype(np.float64))
        res.update(quality_mae=float(np.abs(q - crops.iou).mean()), quality_corr=_corr(q, crops.iou),
                   score_corr=_corr(crops.features[:, k], crops.iou), quality_crops=len(crops))
    return res


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (nan when either side is constant)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def train_reclassifier_net(train: ClassCrops, val: ClassCrops | None, cfg: ReclassifyConfig, num_classes: int,
                           train_cfg: ReclassifyTrainConfig, device: torch.device | str = "cpu",
                           progress: bool = True) -> tuple[ReclassifierNet, dict]:
    """Train a fresh :class:`ReclassifierNet`; returns it (eval mode) and a history dict."""
    from tqdm import tqdm  # noqa: PLC0415

    if not cfg.quality:
        train, val = train.labelled(), (val.labelled() if val is not None else None)
    if not (train.labels >= 0).any():
        raise ConfigError("no training crops: the model matched no ground-truth object")
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    net = ReclassifierNet(cfg, num_classes).to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=train_cfg.lr, total_steps=train_cfg.steps)
    hist: dict = {"step": [], "loss": [], "val_step": [], "val_accuracy": [], "val_occluded_accuracy": [],
                  "val_quality_corr": [], "val_query_accuracy": None, "val_occluded_query_accuracy": None,
                  "val_score_corr": None}
    order, pos, ema = rng.permutation(len(train)), 0, None
    bar = tqdm(range(train_cfg.steps), desc="train-reclassifier", unit="step", disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        if pos + train_cfg.batch_size > len(order):
            order, pos = rng.permutation(len(train)), 0
        idx = np.sort(order[pos:pos + train_cfg.batch_size])
        pos += train_cfg.batch_size
        p, f, y, iou = train.batch(idx, flip=rng.random(len(idx)) < 0.5, device=device)
        out = net(p, f)                                                 # [B, K (+ 1)]
        loss = F.cross_entropy(out[:, :num_classes], y, ignore_index=-1) if (y >= 0).any() else out.sum() * 0
        if net.quality is not None:
            loss = loss + train_cfg.quality_loss * F.binary_cross_entropy_with_logits(out[:, num_classes], iou)
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
            m = evaluate_class_crops(net, val, device)
            hist["val_step"].append(step + 1)
            hist["val_accuracy"].append(m["accuracy"])
            hist["val_occluded_accuracy"].append(m["occluded_accuracy"])
            hist["val_query_accuracy"] = m["query_accuracy"]
            hist["val_occluded_query_accuracy"] = m["occluded_query_accuracy"]
            msg = (f"step {step + 1}: val accuracy {m['accuracy']:.3f} (query's class {m['query_accuracy']:.3f}), "
                   f"predicted hidden {m['occluded_accuracy']:.3f} ({m['occluded_query_accuracy']:.3f})")
            if "quality_corr" in m:
                hist["val_quality_corr"].append(m["quality_corr"])
                hist["val_score_corr"] = m["score_corr"]
                msg += f"; IoU correlation {m['quality_corr']:.3f} (score's {m['score_corr']:.3f})"
            bar.write(msg)
            net.train()
    return net.eval(), hist


def save_with_reclassifier(predictor: AmodalPredictor, net: ReclassifierNet, cfg: ReclassifyConfig,
                           out: str | Path, extra: dict | None = None) -> Path:
    """The predictor's model plus ``net`` as a checkpoint with ``reclassify.enabled``."""
    return save_with_stage(predictor.networks.model, predictor.meta, predictor.class_names, "reclassify",
                           "reclassifier", net, cfg, out, extra)


def plot_history(hist: dict, path: str | Path) -> Path:
    """Loss curve, validation accuracy and IoU correlation (the query's own as dashed lines) as a PNG."""
    def validation(b) -> None:
        if hist["val_step"]:
            b.plot(hist["val_step"], hist["val_accuracy"], "o-", label="all crops")
            b.plot(hist["val_step"], hist["val_occluded_accuracy"], "s-",
                   label=f"predicted > {OCCLUDED_RATE:.0%} hidden")
            b.axhline(hist["val_query_accuracy"], color="C0", ls="--", lw=1, label="query's class: all")
            b.axhline(hist["val_occluded_query_accuracy"], color="C1", ls="--", lw=1, label="query's class: hidden")
            if hist.get("val_quality_corr"):
                b.plot(hist["val_step"], hist["val_quality_corr"], "^-", color="C2", label="predicted IoU: correlation")
                b.axhline(hist["val_score_corr"], color="C2", ls="--", lw=1, label="score's IoU correlation")
            b.legend(fontsize=8)
        b.set(xlabel="step", ylabel="class accuracy / IoU correlation", title="validation")

    return plot_training(hist, path, "cross-entropy", "re-classifier training loss", validation)


def cache_file(cache: Path, data_dir: str | Path) -> Path:
    """``<cache>.<folder name>-<hash of its absolute path>.npz``: one file per dataset folder."""
    d = Path(data_dir).resolve()
    return cache.with_name(f"{cache.name}.{d.name}-{hashlib.sha1(str(d).encode()).hexdigest()[:8]}.npz")


def _crops_of(predictor: AmodalPredictor, data_dir: str, cfg: ReclassifyConfig, train_cfg: ReclassifyTrainConfig,
              cache: Path | None, progress: bool) -> ClassCrops:
    """The crops of one dataset folder: from ``cache`` when an earlier run saved them, else collected
    (and saved there)."""
    from ros2_amodal_seg.data.dataset import load_dataset  # noqa: PLC0415

    f = None if cache is None else cache_file(cache, data_dir)
    if f is not None and f.is_file():
        z = np.load(f)
        missing = [k for k in ClassCrops.FIELDS if k not in z.files]
        if missing:
            raise ConfigError(f"crop cache {f} lacks {missing} (written by an older version): delete it to collect again")
        return ClassCrops(*(z[k] for k in ClassCrops.FIELDS))
    crops = collect_class_crops(predictor, load_dataset(data_dir), cfg, train_cfg, progress)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **{k: getattr(crops, k) for k in ClassCrops.FIELDS})
    return crops


def run(checkpoint: str | Path | None, data: list[str], val: list[str], out: str | Path | None,
        cfg: ReclassifyConfig = ReclassifyConfig(), train_cfg: ReclassifyTrainConfig = ReclassifyTrainConfig(),
        device: str = "auto", progress: bool = True, crop_cache: str | Path | None = None,
        collect_only: bool = False) -> dict:
    """The whole ``train-reclassifier`` command; returns a summary dict.

    ``crop_cache``: base path; each dataset folder's crops are saved as
    ``<base>.<folder>-<hash>.npz`` and reused by later runs with the same base (the crops depend
    on the checkpoint and ``cfg``; delete the files when those change). ``collect_only``: stop
    after collecting (needs ``crop_cache``)."""
    if collect_only and crop_cache is None:
        raise ConfigError("--collect-only needs --crop-cache (where the crops are kept)")
    if not collect_only and out is None:
        raise ConfigError("an output checkpoint path is needed unless collecting only")
    t0 = time.time()
    pred = AmodalPredictor.with_torch(checkpoint, device)    # an old re-classifier is replaced
    pred.set_config(pred.config.replace(max_instances=50))
    k = pred.networks.model_config.num_classes
    cache = None if crop_cache is None else Path(crop_cache)
    train = ClassCrops.concat([_crops_of(pred, d, cfg, train_cfg, cache, progress) for d in data])
    valset = ClassCrops.concat([_crops_of(pred, d, cfg, train_cfg, cache, progress) for d in val]) if val else None
    t1 = time.time()
    summary: dict = {"train_crops": len(train), "train_labelled": int((train.labels >= 0).sum()),
                     "val_crops": len(valset) if valset is not None else 0,
                     "collect_s": round(t1 - t0, 1), "device": pred.device}
    if collect_only:
        return summary
    net, hist = train_reclassifier_net(train, valset, cfg, k, train_cfg, pred.networks.device, progress)
    summary.update(train_s=round(time.time() - t1, 1), train_config=dataclasses.asdict(train_cfg))
    if valset is not None and len(valset):
        summary["val"] = evaluate_class_crops(net, valset, pred.networks.device)
    path = save_with_reclassifier(pred, net, cfg, out, extra={"reclassify_training": summary})
    summary["checkpoint"] = str(path)
    summary["plot"] = str(plot_history(hist, Path(out).with_suffix(".reclassify.png")))
    return summary
