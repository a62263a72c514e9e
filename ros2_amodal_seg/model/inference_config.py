"""One frozen configuration of the whole inference engine (no torch import).

:class:`InferenceConfig` holds every setting of the post-processing stages and every stage
switch. It is the only way settings reach the engine: the node, the frame processor, the
predictor, ``amodal-seg predict`` / ``bench`` and the scripts all pass the whole object.

* ``config/inference.yaml`` mirrors the defaults (a test checks they agree);
* a checkpoint's JSON stores the configuration it was tuned with (``"inference"``), which is
  the default whenever that checkpoint is loaded;
* :func:`load_inference_config` is the one place a configuration is read: a checkpoint's
  default, then a YAML file, then ``key=value`` overrides, each validated, unknown keys refused;
* a run-time change builds a new object with :func:`dataclasses.replace` (validated in
  ``__post_init__``) and swaps it in.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from ros2_amodal_seg.errors import ConfigError

#: numeric precisions of the networks (``fp16`` / ``bf16``: autocast, CUDA only).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: what runs the networks: ``auto`` = ONNX Runtime on a CPU (several times faster there than torch's
#: eager kernels), torch on a GPU.
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class InferenceConfig:
    """Every setting of the inference engine (``config/inference.yaml``).

    Attributes:
        score_threshold: an instance is reported when the score of its class reaches this, [0, 1].
        max_instances: most instances per image (the best-scored ones), >= 1.
        matrix_sigma: the first NMS, a Matrix NMS (SOLOv2, Gaussian) on each pair's
            ``min(amodal IoU, visible IoU)``: a duplicate is decayed by ``exp(-sigma o^2)``, > 0.
        mask_threshold: probability above which a pixel is in a visible mask (and in the masks
            used for scoring and the first NMS), (0, 1).
        amodal_mask_threshold: probability threshold of the returned amodal masks, (0, 1).
        refine_radius_cells: radius of the colour guided filter that snaps the full-resolution
            masks to the image's edges, in mask-grid cells, > 0.
        refine_eps: its regulariser (RGB in [0, 1]); larger = closer to plain bilinear, > 0.
        refine_subsample: it fits its coefficients on a grid this many times coarser, >= 1.
        complete_hidden: run the checkpoint's hidden-part completion network (if it has one).
        reclassify: run the checkpoint's class re-reading network (if it has one).
        quality_weight: w in [0, 1]: with the re-reading network's mask-quality head, the score's
            mask-quality factor is ``query_quality ** (1 - w) * predicted_iou ** w``.
        final_nms_sigma: the final Matrix NMS on the final amodal masks' IoU, >= 0 (0 = off).
        final_nms_stride: its IoUs use every this-many-th row and column, >= 1.
        runner_up_classes: runner-up classes reported per instance (each a (class, score) pair
            scored with the same mask), >= 0.
        precision: ``fp32``, or ``fp16`` / ``bf16`` autocast of the networks (CUDA only).
        compile: ``torch.compile`` the networks (CUDA only; the first frames are slow).
        backend: what runs the networks (:data:`BACKENDS`): ``auto`` = ONNX Runtime on a CPU (the
            checkpoint is exported once into a cache), torch on a GPU.
    """

    score_threshold: float = 0.5
    max_instances: int = 50
    matrix_sigma: float = 2.0
    mask_threshold: float = 0.4
    amodal_mask_threshold: float = 0.3
    refine_radius_cells: float = 2.0
    refine_eps: float = 1e-4
    refine_subsample: int = 4
    complete_hidden: bool = True
    reclassify: bool = True
    quality_weight: float = 1.0
    final_nms_sigma: float = 2.0
    final_nms_stride: int = 4
    runner_up_classes: int = 1
    precision: str = "fp32"
    compile: bool = False
    backend: str = "auto"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            kind = _TYPES[f.name]
            if kind is bool and not isinstance(v, bool):
                raise ConfigError(f"inference {f.name} must be true or false, got {v!r}")
            if kind in (int, float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ConfigError(f"inference {f.name} must be a number, got {v!r}")
            if kind is int and int(v) != v:
                raise ConfigError(f"inference {f.name} must be an integer, got {v!r}")
            if kind is float and not float("-inf") < v < float("inf"):
                raise ConfigError(f"inference {f.name} must be finite, got {v!r}")
        _check(0.0 <= self.score_threshold <= 1.0, "score_threshold must be in [0, 1]", self.score_threshold)
        _check(1 <= self.max_instances <= 1000, "max_instances must be in 1..1000", self.max_instances)
        _check(self.matrix_sigma > 0, "matrix_sigma must be > 0", self.matrix_sigma)
        for name in ("mask_threshold", "amodal_mask_threshold"):
            _check(0.0 < getattr(self, name) < 1.0, f"{name} must be in (0, 1)", getattr(self, name))
        _check(self.refine_radius_cells > 0, "refine_radius_cells must be > 0", self.refine_radius_cells)
        _check(self.refine_eps > 0, "refine_eps must be > 0", self.refine_eps)
        _check(self.refine_subsample >= 1, "refine_subsample must be >= 1", self.refine_subsample)
        _check(0.0 <= self.quality_weight <= 1.0, "quality_weight must be in [0, 1]", self.quality_weight)
        _check(self.final_nms_sigma >= 0, "final_nms_sigma must be >= 0 (0 = off)", self.final_nms_sigma)
        _check(self.final_nms_stride >= 1, "final_nms_stride must be >= 1", self.final_nms_stride)
        _check(0 <= self.runner_up_classes <= 100, "runner_up_classes must be in 0..100", self.runner_up_classes)
        _check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}", self.precision)
        _check(self.backend in BACKENDS, f"backend must be one of {BACKENDS}", self.backend)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def refine_radius_px(self, mask_width: int, image_width: int) -> int:
        """The guided filter's radius in image pixels (at least 1)."""
        return max(1, int(round(self.refine_radius_cells * image_width / mask_width)))

    def replace(self, **changes) -> "InferenceConfig":
        """A validated copy with ``changes`` (unknown names refused)."""
        unknown = set(changes) - FIELD_NAMES
        if unknown:
            raise ConfigError(f"unknown inference setting(s) {sorted(unknown)}; known: {sorted(FIELD_NAMES)}")
        return dataclasses.replace(self, **changes)

    @staticmethod
    def from_dict(d: dict) -> "InferenceConfig":
        """Build from a mapping (a YAML document, a checkpoint's JSON); unknown keys refused."""
        if not isinstance(d, dict):
            raise ConfigError(f"an inference configuration must be a mapping, got {type(d).__name__}")
        return InferenceConfig().replace(**{k: _coerce(k, v) for k, v in d.items()})


def _check(ok: bool, what: str, value) -> None:
    if not ok:
        raise ConfigError(f"inference {what}, got {value!r}")


#: setting name -> its type (bool, int, float, str)
_TYPES: dict[str, type] = typing.get_type_hints(InferenceConfig)
FIELD_NAMES: frozenset[str] = frozenset(f.name for f in fields(InferenceConfig))


def _coerce(name: str, value):
    """A YAML / JSON value for ``name`` (ints accepted where floats are expected)."""
    if name not in FIELD_NAMES:
        raise ConfigError(f"unknown inference setting {name!r}; known: {sorted(FIELD_NAMES)}")
    if _TYPES[name] is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_override(text: str) -> tuple[str, object]:
    """``"key=value"`` (``--set``) -> ``(key, typed value)``; the value is read as YAML
    (``true``, ``0.3``, ``fp16``) and then checked against the setting's type.

    Raises:
        ConfigError: no ``=``, unknown key, or a value of the wrong type.
    """
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        value = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot read {raw!r}: {exc}") from exc
    return key, _coerce(key, value)


def read_yaml(path: str | Path) -> dict:
    """The mapping of an inference YAML file (its top level, or its ``inference:`` section)."""
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read inference config {p}: {exc}") from exc
    if isinstance(doc, dict) and set(doc) == {"inference"}:
        doc = doc["inference"]
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: an inference config must be a mapping")
    return doc


def load_inference_config(*, checkpoint_meta: dict | None = None, path: str | Path | None = None,
                          overrides: list[str] | dict | None = None) -> InferenceConfig:
    """The one place an :class:`InferenceConfig` is assembled: the dataclass defaults, then the
    checkpoint's stored configuration, then a YAML file, then ``key=value`` overrides.

    Args:
        checkpoint_meta: a checkpoint's metadata (its ``"inference"`` entry, if any, is the default).
        path: YAML file (``config/inference.yaml`` layout).
        overrides: ``["key=value", ...]`` (``--set``) or a mapping.

    Raises:
        ConfigError: unreadable file, unknown key, invalid value.
    """
    cfg = InferenceConfig()
    if checkpoint_meta and checkpoint_meta.get("inference"):
        cfg = InferenceConfig.from_dict(checkpoint_meta["inference"])
    if path is not None:
        cfg = cfg.replace(**{k: _coerce(k, v) for k, v in read_yaml(path).items()})
    if overrides:
        pairs = overrides.items() if isinstance(overrides, dict) else (parse_override(t) for t in overrides)
        cfg = cfg.replace(**{k: _coerce(k, v) for k, v in pairs})
    return cfg


def dump_yaml(cfg: InferenceConfig) -> str:
    """The YAML text of ``cfg`` (the layout of ``config/inference.yaml``, without comments)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


#: one line per setting (the node's parameter descriptions; config/inference.yaml says the same).
DESCRIPTIONS: dict[str, str] = {
    "score_threshold": "report an instance when the score of its class reaches this",
    "max_instances": "most instances per image (the best-scored ones)",
    "matrix_sigma": "first NMS (Matrix NMS on min(amodal IoU, visible IoU)): decay exp(-sigma o^2)",
    "mask_threshold": "probability threshold of the visible masks (and of the masks scored and compared by "
                      "the first NMS)",
    "amodal_mask_threshold": "probability threshold of the returned amodal masks",
    "refine_radius_cells": "radius of the colour guided filter that snaps masks to image edges [mask-grid cells]",
    "refine_eps": "regulariser of that filter (RGB in [0, 1]); larger = closer to plain bilinear",
    "refine_subsample": "that filter fits its coefficients on a grid this many times coarser",
    "complete_hidden": "run the checkpoint's hidden-part completion network (if it has one)",
    "reclassify": "run the checkpoint's class re-reading network (if it has one)",
    "quality_weight": "score's mask quality = query's ** (1 - w) * re-reader's predicted IoU ** w",
    "final_nms_sigma": "final Matrix NMS on the final amodal masks' IoU (0 = off)",
    "final_nms_stride": "the final NMS's IoUs use every this-many-th pixel row and column",
    "runner_up_classes": "runner-up classes reported per instance (same masks, lower scores)",
    "precision": "fp32, or fp16 / bf16 autocast of the networks (CUDA only; applied when the model loads)",
    "compile": "torch.compile the main network (CUDA only; applied when the model loads)",
    "backend": "what runs the networks: auto (ONNX Runtime on a CPU, torch on a GPU), torch or onnxruntime "
               "(applied when the model loads)",
}
#: numeric ranges (inclusive where the validation allows the bound), for parameter descriptors.
RANGES: dict[str, tuple[float, float]] = {
    "score_threshold": (0.0, 1.0), "max_instances": (1, 1000), "matrix_sigma": (0.001, 100.0),
    "mask_threshold": (0.001, 0.999), "amodal_mask_threshold": (0.001, 0.999), "refine_radius_cells": (0.01, 100.0),
    "refine_eps": (1e-9, 10.0), "refine_subsample": (1, 16), "quality_weight": (0.0, 1.0),
    "final_nms_sigma": (0.0, 100.0), "final_nms_stride": (1, 64), "runner_up_classes": (0, 100),
}
#: settings that take effect only when the networks are loaded (read-only parameters in the node).
LOAD_TIME: frozenset[str] = frozenset({"precision", "compile", "backend"})

