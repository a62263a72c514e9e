"""Checkpoints: safetensors weights + a JSON metadata file beside them (never pickle).

``<stem>.safetensors`` holds the state dict (float32 or float16); ``<stem>.json`` holds
the classes, the internal input size, the normalisation, the full model config, the
inference settings it runs with by default (``inference``, an ``InferenceConfig``), the
backbone and the file its weights were initialised from (``backbone_init``: name, file,
sha256 and package of pretrained weights, or null for a random init) and versions.
Loading checks everything and raises :class:`CheckpointError` with a clear
message on a missing, corrupt or mismatched checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ros2_amodal_seg.errors import CheckpointError, ConfigError
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.model import AmodalSegModel, ModelConfig
from ros2_amodal_seg.version import __version__

FORMAT = "ros2_amodal_seg.amodal_model"
FORMAT_VERSION = 1


def meta_path(weights: str | Path) -> Path:
    """``x.safetensors`` -> ``x.json``."""
    return Path(weights).with_suffix(".json")


def save_checkpoint(path: str | Path, model: nn.Module, cfg: ModelConfig, classes: dict[int, str],
                    extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its .json metadata; returns the weights path."""
    from safetensors.torch import save_file  # noqa: PLC0415

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)
    sd = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
          for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
        "torch_version": torch.__version__,
        "classes": [[int(k), str(v)] for k, v in sorted(classes.items())],
        "input_size": [cfg.input_height, cfg.input_width],
        "pixel_mean": list(cfg.pixel_mean), "pixel_std": list(cfg.pixel_std), "pixel_range": 255,
        "dtype": "float16" if half else "float32",
        "model_config": cfg.to_dict(),
        "backbone": cfg.backbone.name, "backbone_init": cfg.backbone.pretrained_record(),
        **(extra or {}),
    }
    meta.setdefault("inference", InferenceConfig().to_dict())   # the settings it runs with by default
    meta_path(path).write_text(json.dumps(meta, indent=1))
    return path


#: metadata that :func:`save_checkpoint` writes itself (the rest, such as training summaries, is
#: provenance that a derived checkpoint carries over)
WRITTEN_KEYS = ("classes_dict", "classes", "input_size", "pixel_mean", "pixel_std", "pixel_range", "dtype",
                "model_config", "backbone", "backbone_init", "format", "format_version", "package_version",
                "torch_version")


def config_differences(got: dict, want: dict, prefix: str = "") -> list[str]:
    """``"key.sub: got -> want"`` for every leaf where two ``ModelConfig.to_dict()`` trees differ."""
    out = []
    for k in sorted(set(got) | set(want), key=str):
        a, b = got.get(k), want.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_differences(a, b, f"{prefix}{k}."))
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} (checkpoint) vs {b!r} (expected)")
    return out


def save_with_stage(model: AmodalSegModel, meta: dict, classes: dict[int, str], section: str, slot: str,
                    net: nn.Module, net_cfg, out: str | Path, extra: dict | None = None) -> Path:
    """``model`` plus a second-stage network ``net`` (attribute ``slot`` of the model, config
    ``section`` of :class:`ModelConfig` set to ``net_cfg`` with ``enabled``) as checkpoint ``out``;
    ``meta``'s provenance is carried over and ``extra`` added. ``model`` is changed in place."""
    mcfg = dataclasses.replace(model.cfg, **{section: dataclasses.replace(net_cfg, enabled=True)})
    setattr(model, slot, net.to(next(model.parameters()).device))
    model.cfg = mcfg
    carried = {k: v for k, v in meta.items() if k not in WRITTEN_KEYS}
    carried.update(extra or {})
    return save_checkpoint(out, model, mcfg, classes, extra=carried)


def read_metadata(path: str | Path) -> dict:
    """The checked metadata of checkpoint ``path``."""
    path = Path(path)
    mp = meta_path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights {path} not found")
    if not mp.is_file():
        raise CheckpointError(f"checkpoint metadata {mp} not found (expected beside {path.name})")
    try:
        meta = json.loads(mp.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint metadata {mp} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{mp} is not a {FORMAT} checkpoint (format={meta.get('format') if isinstance(meta, dict) else None!r})")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise CheckpointError(f"{mp} has format_version {meta.get('format_version')}, this code reads <= {FORMAT_VERSION}")
    for key in ("classes", "model_config", "input_size"):
        if key not in meta:
            raise CheckpointError(f"{mp} lacks '{key}'")
    return meta


def world_preset(checkpoint: str | Path | None, preset: str) -> str:
    """The world preset whose frames suit ``checkpoint`` (None or "": the shipped one): ``preset``
    itself ("street", "tabletop") for a model of the 13 world-version-2 classes, ``shapes-<preset>``
    for a model of the version-1 shapes. Benchmarks and the demo render their frames from it."""
    from ros2_amodal_seg.classes import SHAPES_CLASSES, WORLD_CLASSES  # noqa: PLC0415

    if checkpoint in (None, ""):
        from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT  # noqa: PLC0415
        checkpoint = DEFAULT_CHECKPOINT
    base = preset.removeprefix("shapes-")
    classes = {int(k): str(v) for k, v in read_metadata(checkpoint)["classes"]}
    if classes == WORLD_CLASSES:
        return base
    if classes == SHAPES_CLASSES:
        return f"shapes-{base}"
    raise CheckpointError(f"{checkpoint}: its classes are neither world version 2's nor the shapes': "
                          "no synthetic world to render for it")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    expected_config: ModelConfig | None = None,
                    expected_classes: dict[int, str] | None = None) -> tuple[AmodalSegModel, dict]:
    """Build the model from the metadata and load the weights (float32, eval mode).

    Raises:
        CheckpointError: missing files, corrupt safetensors, a config / class table that
            differs from ``expected_*``, or weights whose names/shapes do not match.
    """
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    meta = read_metadata(path)
    try:
        cfg = ModelConfig.from_dict(meta["model_config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    if expected_config is not None and cfg != expected_config:
        diff = config_differences(cfg.to_dict(), expected_config.to_dict())
        raise CheckpointError(f"checkpoint {path} model config differs from the expected one: {'; '.join(diff)}")
    classes = {int(k): str(v) for k, v in meta["classes"]}
    if len(classes) != cfg.num_classes:
        raise CheckpointError(f"checkpoint {path}: {len(classes)} classes in metadata but num_classes={cfg.num_classes}")
    if expected_classes is not None and classes != dict(expected_classes):
        want = dict(expected_classes)
        diff = [f"{k}: {classes.get(k)!r} (checkpoint) vs {want.get(k)!r} (expected)"
                for k in sorted(set(classes) | set(want)) if classes.get(k) != want.get(k)]
        raise CheckpointError(f"checkpoint {path} classes {classes} differ from expected {want}: {'; '.join(diff)}")
    if list(meta["input_size"]) != [cfg.input_height, cfg.input_width]:
        raise CheckpointError(f"checkpoint {path}: input_size {meta['input_size']} disagrees with the model config")
    try:
        sd = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint weights {path} are corrupt or unreadable: {exc}") from exc
    # the checkpoint's weights replace any pretrained initialisation: build without reading it
    # (so loading never needs the weights package), then keep the config as recorded
    model = AmodalSegModel(dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, pretrained=False)))
    model.cfg = cfg
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape_bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape_bad:
        raise CheckpointError(
            f"checkpoint {path} does not match its model config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {shape_bad[:5]}")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    model.to(device).eval()
    meta["classes_dict"] = classes
    return model, meta


def save_training_state(path: str | Path, optimizer: torch.optim.Optimizer, info: dict) -> None:
    """Optimizer state (tensors -> safetensors, the rest -> JSON) for ``--resume``."""
    from safetensors.torch import save_file  # noqa: PLC0415

    path = Path(path)
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v) and v.ndim > 0:
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = float(v)
    save_file(tensors if tensors else {"_empty": torch.zeros(1)}, str(path))
    meta_path(path).write_text(json.dumps({"param_groups": sd["param_groups"], "scalars": scalars, "info": info}))


def load_training_state(path: str | Path, optimizer: torch.optim.Optimizer) -> dict:
    """Restore what :func:`save_training_state` wrote; returns its ``info``."""
    from safetensors import SafetensorError  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    path = Path(path)
    try:
        tensors = load_file(str(path))
        meta = json.loads(meta_path(path).read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"training state {path} unreadable: {exc}") from exc
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key == "_empty":
            continue
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = torch.tensor(v)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"training state {path} does not match the optimizer: {exc}") from exc
    return meta["info"]
