"""Training loop (single process or ``torchrun`` DDP: gloo on CPU, nccl on GPU).

Writes into the run directory: ``last.safetensors`` (+ .json), ``best.safetensors``
(best validation amodal AP), ``optimizer.safetensors`` (+ .json, for ``--resume``),
``history.json`` and ``loss_curves.png``.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.model.augment import AugmentConfig
from ros2_amodal_seg.model.checkpoint import (load_checkpoint, load_training_state, save_checkpoint,
                                              save_training_state)
from ros2_amodal_seg.model.criterion import LossConfig, SetCriterion
from ros2_amodal_seg.model.model import AmodalSegModel, ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (mirrored by ``config/train.yaml``)."""

    batch_size: int = 4               # per process
    lr: float = 3e-4
    backbone_lr_mult: float = 0.2     # backbone lr = lr x this (fine-tuning the pretrained backbone)
    freeze_bn: bool = True            # backbone BatchNorm layers in eval mode: running stats stay as loaded
    freeze_bn_affine: bool = False    # with freeze_bn: their weight / bias are not trained either
    weight_decay: float = 0.05
    warmup_steps: int = 200
    grad_clip: float = 1.0
    epochs: int = 10
    steps: int = 0                    # > 0 overrides epochs
    max_minutes: float = 0.0          # > 0: stop (and save) after this wall time
    val_every: int = 500              # steps between validations (0 = only at the end)
    val_max_images: int = 100
    log_every: int = 20
    seed: int = 0
    num_threads: int = 2              # torch CPU threads per process
    num_workers: int = 0
    amp: bool = True                  # autocast fp16 on CUDA (ignored on CPU)
    augment: bool = True

    def __post_init__(self) -> None:
        if self.backbone_lr_mult < 0:
            raise ConfigError(f"backbone_lr_mult must be >= 0, got {self.backbone_lr_mult}")
        if self.freeze_bn_affine and not self.freeze_bn:
            raise ConfigError("freeze_bn_affine needs freeze_bn")


def backbone_batchnorms(model: AmodalSegModel) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model``'s backbone (none in the plain one, which uses GroupNorm)."""
    return [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def freeze_backbone_bn(model: AmodalSegModel, affine: bool) -> int:
    """Put the backbone's BatchNorm layers in eval mode (running statistics used, not updated);
    ``affine``: also stop training their weight and bias. Call after every ``model.train()``.
    Returns the number of layers."""
    bns = backbone_batchnorms(model)
    for bn in bns:
        bn.eval()
        if affine:
            for p in bn.parameters():
                p.requires_grad_(False)
    return len(bns)


def build_optimizer(model: AmodalSegModel, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two parameter groups: the backbone at ``lr * backbone_lr_mult``, the rest at ``lr``
    (parameters that do not require gradients, e.g. frozen BatchNorm affines, are left out)."""
    bb_ids = {id(p) for p in model.backbone.parameters()}
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    other = [p for p in model.parameters() if id(p) not in bb_ids and p.requires_grad]
    return torch.optim.AdamW([{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult},
                              {"params": other, "lr": cfg.lr}], lr=cfg.lr, weight_decay=cfg.weight_decay)


def load_yaml_config(cls, path: str | Path | None, section: str | None = None):
    """Build frozen dataclass ``cls`` from a YAML file (unknown keys -> ConfigError)."""
    if path is None:
        return cls()
    import yaml  # noqa: PLC0415

    d = yaml.safe_load(Path(path).read_text()) or {}
    if section:
        d = d.get(section, {})
    if cls is ModelConfig:
        return ModelConfig.from_dict(d)
    names = {f.name for f in fields(cls)}
    bad = set(d) - names
    if bad:
        raise ConfigError(f"{path}: unknown keys {sorted(bad)} for {cls.__name__}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _dist_info() -> tuple[int, int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


@torch.no_grad()
def predict_dataset(model: AmodalSegModel, dataset, class_ids: list[int], device: torch.device,
                    score_threshold: float = 0.05, max_images: int | None = None, progress: bool = False) -> list[dict]:
    """Run the model over an :class:`AmodalDataset`; returns formats.md prediction dicts."""
    from ros2_amodal_seg.model.inference_config import InferenceConfig  # noqa: PLC0415
    from ros2_amodal_seg.model.predict import instances_to_predictions  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import AmodalPredictor, TorchNetworks  # noqa: PLC0415

    was_training = model.training
    model.eval()
    meta = {"classes_dict": {c: str(c) for c in class_ids}}
    pred = AmodalPredictor(TorchNetworks(model, device), meta,
                           InferenceConfig(score_threshold=score_threshold, max_instances=50))
    out: list[dict] = []
    samples = dataset.samples[:max_images] if max_images else dataset.samples
    it = samples
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        it = tqdm(samples, desc="predict", unit="img")
    for s in it:
        inst = pred.predict(s.load_image())
        out.extend(instances_to_predictions(inst, s.image_id))
    model.train(was_training)
    return out


def dataset_categories(datasets: list, names: list[str]) -> dict[int, str]:
    """The one class list of the training data (``{id: name}``); datasets whose lists differ are refused
    (world.md: the shapes world and the version-2 world have different lists). A dataset without a
    list (detectron-style, COCOA) takes the others'."""
    from ros2_amodal_seg.classes import CLASSES  # noqa: PLC0415

    lists = [({int(k): str(v) for k, v in d.categories.items()}, n) for d, n in zip(datasets, names) if d.categories]
    for cats, name in lists[1:]:
        if cats != lists[0][0]:
            raise ConfigError(f"datasets with different class lists: {lists[0][1]} has {lists[0][0]}, {name} has {cats}")
    return lists[0][0] if lists else dict(CLASSES)


def plot_history(history: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = np.array(history["step"])
    if len(steps):
        tot = np.array(history["loss"])
        k = max(1, len(tot) // 50)
        sm = np.convolve(tot, np.ones(k) / k, mode="valid")
        axes[0].plot(steps, tot, alpha=0.3, label="total")
        axes[0].plot(steps[k - 1:], sm, label="total (smoothed)")
        for name in history["parts"][0] if history["parts"] else []:
            v = np.array([p[name] for p in history["parts"]])
            axes[0].plot(steps[k - 1:], np.convolve(v, np.ones(k) / k, mode="valid"), label=name, lw=0.8)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("step")
        axes[0].set_title("training loss (final layer parts)")
        axes[0].legend(fontsize=7)
    if history["val"]:
        vs = [v["step"] for v in history["val"]]
        for key in ("amodal_AP", "occluded_AP", "visible_AP"):
            axes[1].plot(vs, [v[key] for v in history["val"]], marker="o", label=key)
        axes[1].plot(vs, [100 * v["order_accuracy"] if v["order_accuracy"] == v["order_accuracy"] else 0
                          for v in history["val"]], marker="o", label="order acc x100")
        axes[1].set_xlabel("step")
        axes[1].set_title("validation")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train(data_dirs: list[str], out_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig,
          loss_cfg: LossConfig = LossConfig(), val_dirs: list[str] | None = None, device: str = "auto",
          resume: bool = False, init_from: str | None = None) -> dict:
    """Train; returns the final history dict. Runs as DDP when launched by torchrun."""
    import torch.distributed as dist  # noqa: PLC0415
    from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415
    from torch.utils.data import DataLoader, DistributedSampler  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    from ros2_amodal_seg.model.data import AmodalTorchDataset, collate, load_amodal_dataset  # noqa: PLC0415
    from ros2_amodal_seg.model.evaluate import evaluate_predictions  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import resolve_device  # noqa: PLC0415

    rank, world, local_rank = _dist_info()
    distributed = world > 1
    torch.set_num_threads(max(1, train_cfg.num_threads))
    if device == "auto" and distributed and torch.cuda.is_available():
        dev = torch.device(f"cuda:{local_rank}")
    else:
        dev = resolve_device(device)
        if dev.type == "cuda" and distributed:
            dev = torch.device(f"cuda:{local_rank}")
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    torch.manual_seed(train_cfg.seed + rank)
    out = Path(out_dir)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    # masks stay encoded until a sample is first drawn (then cached bit-packed at the internal size)
    datasets = [load_amodal_dataset(d, lazy_masks=True) for d in data_dirs]
    categories = dataset_categories(datasets, data_dirs)
    if len(categories) != model_cfg.num_classes:
        raise ConfigError(f"model has {model_cfg.num_classes} classes but the data has {len(categories)}: "
                          f"{categories} (set num_classes in the model config)")
    class_ids = sorted(categories)
    ds = AmodalTorchDataset(datasets, model_cfg, class_ids, AugmentConfig() if train_cfg.augment else None,
                            seed=train_cfg.seed + 1000 * rank)
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=train_cfg.seed) \
        if distributed else None
    loader = DataLoader(ds, batch_size=train_cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        collate_fn=collate, num_workers=train_cfg.num_workers, drop_last=len(ds) >= train_cfg.batch_size * world)
    val_ds = None
    if val_dirs and rank == 0:
        from ros2_amodal_seg.data.types import AmodalDataset  # noqa: PLC0415

        vs = [load_amodal_dataset(d) for d in val_dirs]
        # unique image ids across the validation sets
        samples = []
        for k, v in enumerate(vs):
            for s in v.samples:
                s.image_id = int(s.image_id) + 10_000_000 * k
                samples.append(s)
        val_ds = AmodalDataset(categories=categories, samples=samples)

    model = AmodalSegModel(model_cfg).to(dev)
    if train_cfg.freeze_bn and not freeze_backbone_bn(model, train_cfg.freeze_bn_affine):
        log.warning("freeze_bn: the %r backbone has no BatchNorm layers", model_cfg.backbone.name)
    opt = build_optimizer(model, train_cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    history: dict = {"step": [], "loss": [], "parts": [], "val": [], "time_s": 0.0,
                     "train_config": asdict(train_cfg), "world_size": world, "device": str(dev)}
    step = 0
    if resume and (out / "last.safetensors").is_file():
        m, _ = load_checkpoint(out / "last.safetensors", "cpu", expected_config=model_cfg)
        model.load_state_dict(m.state_dict())
        info = load_training_state(out / "optimizer.safetensors", opt)
        step = int(info["step"])
        if (out / "history.json").is_file():
            history = json.loads((out / "history.json").read_text())
        log.info("resumed from step %d", step)
    elif init_from:
        # warm start: weights of another run (same architecture; the internal input size may differ,
        # the network is fully convolutional and its position embeddings are computed per size)
        # Parts the source lacks (a shape head added later, the ablation's plain occlusion head) start
        # fresh; every shared tensor must have the same shape.
        m, meta0 = load_checkpoint(init_from, "cpu")
        own, src = model.state_dict(), m.state_dict()
        # A head whose output size changed starts fresh too; anything else that differs is an error.
        bad = sorted(k for k in set(own) & set(src) if own[k].shape != src[k].shape)
        if any(not k.startswith("shape_head.") for k in bad) or not set(own) & set(src):
            raise ConfigError(f"--init {init_from}: weights do not fit the model config"
                              + (f" (shape mismatch: {bad[:5]})" if bad else " (no shared tensors)"))
        src = {k: v for k, v in src.items() if k not in bad}
        missing, unexpected = sorted(set(own) - set(src)), sorted(set(src) - set(own))
        model.load_state_dict({k: v for k, v in src.items() if k in own}, strict=False)
        if missing or unexpected:
            log.info("--init: %d tensors start fresh (%s), %d unused (%s)", len(missing),
                     sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in missing}), len(unexpected),
                     sorted({k.split('.')[0] + '.' + k.split('.')[1] for k in unexpected}))
        meta_extra_init = {"init_from": str(init_from), "init_step": meta0.get("train", {}).get("step"),
                           "fresh_tensors": len(missing)}
        history["init"] = meta_extra_init
        log.info("initialised from %s", init_from)
    crit = SetCriterion(model_cfg.num_classes, loss_cfg).to(dev)
    net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None) if distributed else model
    use_amp = train_cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    steps_per_epoch = max(1, len(loader))
    total_steps = train_cfg.steps if train_cfg.steps > 0 else train_cfg.epochs * steps_per_epoch
    t_start = time.time() - float(history.get("time_s", 0.0))
    t_run = time.time()
    best_ap = max([v["amodal_AP"] for v in history["val"]], default=-1.0)
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=rank != 0, dynamic_ncols=True)
    meta_extra = {"train": {"data": [str(d) for d in data_dirs], "loss_config": asdict(loss_cfg),
                            "train_config": asdict(train_cfg), "init": history.get("init")}}

    def save(tag: str) -> None:
        history["time_s"] = time.time() - t_start
        meta_extra["train"].update(step=step, time_s=history["time_s"], device=str(dev), world_size=world)
        save_checkpoint(out / f"{tag}.safetensors", model, model_cfg, categories, meta_extra)
        if tag == "last":
            save_training_state(out / "optimizer.safetensors", opt, {"step": step})
            (out / "history.json").write_text(json.dumps(history))
            plot_history(history, out / "loss_curves.png")

    def validate() -> None:
        nonlocal best_ap
        if val_ds is None:
            return
        stride = max(1, math.ceil(len(val_ds.samples) / max(1, train_cfg.val_max_images)))
        sub = type(val_ds)(categories=val_ds.categories, samples=val_ds.samples[::stride])  # both presets
        preds = predict_dataset(model, sub, class_ids, dev)
        r = evaluate_predictions(sub, preds)
        r["step"] = step
        history["val"].append({k: v for k, v in r.items() if not k.startswith("_")})
        bar.write(f"step {step}: amodal AP {r['amodal_AP']:.1f} AP50 {r['amodal_AP50']:.1f} occluded AP "
                  f"{r['occluded_AP']:.1f} visible AP {r['visible_AP']:.1f} order acc {r['order_accuracy']:.3f} "
                  f"occ MAE {r['occlusion_mae']:.3f}")
        save(f"step{step:06d}")  # snapshot, for equal-budget comparisons
        if r["amodal_AP"] > best_ap:
            best_ap = r["amodal_AP"]
            save("best")

    epoch = step // steps_per_epoch
    done = step >= total_steps
    stop = False
    net.train()
    while not done:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for images, targets in loader:
            images = images.to(dev, non_blocking=True)
            targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
            progress = step / max(1, total_steps)
            if train_cfg.max_minutes > 0:  # with a time budget the cosine ends at the time limit
                progress = max(progress, (time.time() - t_run) / 60 / train_cfg.max_minutes)
            lr_scale = min(1.0, (step + 1) / max(1, train_cfg.warmup_steps)) * \
                0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            for g, b in zip(opt.param_groups, base_lrs):
                g["lr"] = b * max(lr_scale, 0.02)
            if train_cfg.freeze_bn:  # again after validate()'s model.train()
                freeze_backbone_bn(model, train_cfg.freeze_bn_affine)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                o = net(images)
            loss, parts = crit(o.final, o.aux, targets)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            if rank == 0:
                history["step"].append(step)
                history["loss"].append(float(loss.detach()))
                history["parts"].append(parts)
                bar.update(1)
                if step % train_cfg.log_every == 0:
                    bar.set_postfix(loss=f"{np.mean(history['loss'][-train_cfg.log_every:]):.3f}",
                                    cls=f"{parts['class']:.3f}", dice=f"{parts['dice']:.3f}",
                                    occ=f"{parts['occlusion']:.3f}", order=f"{parts['order']:.3f}",
                                    shape=f"{parts['shape']:.3f}")
                if train_cfg.val_every and step % train_cfg.val_every == 0:
                    validate()
                    save("last")
            timed_out = train_cfg.max_minutes > 0 and (time.time() - t_run) / 60 > train_cfg.max_minutes
            if distributed:
                flag = torch.tensor([1.0 if timed_out else 0.0], device=dev)
                dist.all_reduce(flag)
                timed_out = bool(flag.item() > 0)
            if step >= total_steps or timed_out:
                done = True
                stop = timed_out
                break
        epoch += 1
    bar.close()
    if rank == 0:
        if not (train_cfg.val_every and step % train_cfg.val_every == 0):
            validate()
        save("last")
        if best_ap < 0:
            save("best")
        log.info("training finished at step %d after %.1f min%s", step, history["time_s"] / 60,
                 " (time limit)" if stop else "")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return history
