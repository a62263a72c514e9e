"""The inference engine: a checkpoint's networks and the post-processing stages, driven by one
:class:`~.inference_config.InferenceConfig`.

:class:`AmodalPredictor` maps an RGB image to :class:`~ros2_amodal_seg.types.Instances2D`:

1. the image is resized to the network's input on the host and uploaded once;
2. the networks run on the device: torch (:class:`TorchNetworks`, CPU or CUDA, optional mixed
   precision and ``torch.compile`` on CUDA) or ONNX Runtime (:class:`~.export.OnnxNetworks`; the
   default on a CPU, where it is several times faster than torch's eager kernels: the checkpoint
   is exported once into a cache, :func:`onnx_cache_path`);
3. the post-processing stages (:class:`~.postprocess.PostProcessor`) run on the same device;
   only the final masks and their numbers come back to the host.

Settings change at run time with :meth:`AmodalPredictor.set_config`: the new configuration and
the stages built from it are swapped in as one object, so a frame never sees half of a change.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ros2_amodal_seg.errors import CheckpointError, InvalidInputError
from ros2_amodal_seg.model.candidates import RawOutputs
from ros2_amodal_seg.model.checkpoint import load_checkpoint
from ros2_amodal_seg.model.completion import CompletionStage, torch_runner
from ros2_amodal_seg.model.inference_config import InferenceConfig, load_inference_config
from ros2_amodal_seg.model.model import AmodalSegModel
from ros2_amodal_seg.model.postprocess import PostProcessor
from ros2_amodal_seg.model.reclassify import ReclassifyStage
from ros2_amodal_seg.types import Instances2D

#: The shipped checkpoint (metadata in ``amodal_seg.json`` beside it).
DEFAULT_CHECKPOINT: Path = Path(__file__).resolve().parent.parent / "weights" / "amodal_seg.safetensors"
#: smallest image side the network runs on [px].
MIN_IMAGE_SIDE = 8
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda:0 when available else cpu; ``cuda`` without CUDA -> InvalidInputError."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidInputError(f"device {device!r} requested but CUDA is not available")
        return torch.device("cuda:0" if device == "cuda" else device)
    if device == "cpu":
        return torch.device("cpu")
    raise InvalidInputError(f"unknown device {device!r} (auto|cpu|cuda)")


def check_image(image_rgb: np.ndarray) -> None:
    """Raise InvalidInputError unless ``image_rgb`` is ``[H, W, 3]`` uint8 with H, W >= :data:`MIN_IMAGE_SIDE`."""
    if not isinstance(image_rgb, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image_rgb).__name__}")
    if image_rgb.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8 RGB, got dtype {image_rgb.dtype}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or min(image_rgb.shape[:2]) < MIN_IMAGE_SIDE:
        raise InvalidInputError(f"image must be [H, W, 3] with H, W >= {MIN_IMAGE_SIDE}, got shape {image_rgb.shape}")


def preprocess(image_rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[1, 3, height, width]`` float32 0..255 (plain resize)."""
    interp = cv2.INTER_AREA if image_rgb.shape[0] > height else cv2.INTER_LINEAR
    x = cv2.resize(image_rgb, (width, height), interpolation=interp)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


def onnx_cache_path(checkpoint: str | Path) -> Path:
    """Where the ONNX export of ``checkpoint`` is cached: ``$AMODAL_SEG_ONNX_CACHE`` (default
    ``~/.cache/ros2_amodal_seg/onnx``) / ``<sha256 of the weights and metadata>-<package version>.onnx``."""
    import hashlib  # noqa: PLC0415

    from ros2_amodal_seg.model.checkpoint import meta_path  # noqa: PLC0415
    from ros2_amodal_seg.version import __version__  # noqa: PLC0415

    h = hashlib.sha256()
    for f in (Path(checkpoint), meta_path(checkpoint)):
        h.update(f.read_bytes())
    root = Path(os.environ.get("AMODAL_SEG_ONNX_CACHE", Path.home() / ".cache" / "ros2_amodal_seg" / "onnx"))
    return root / f"{h.hexdigest()[:24]}-{__version__}.onnx"


def exported_onnx(checkpoint: str | Path) -> Path:
    """The cached ONNX export of ``checkpoint`` (with its second-stage networks), exported now when
    missing (a few seconds, once per checkpoint)."""
    from ros2_amodal_seg.model.export import export_onnx  # noqa: PLC0415

    out = onnx_cache_path(checkpoint)
    if not out.is_file():
        tmp = out.with_name(out.stem + f".tmp{os.getpid()}.onnx")
        export_onnx(checkpoint, tmp)
        for src in sorted(tmp.parent.glob(tmp.stem + "*")):   # the networks beside it, then the main one
            if src != tmp:
                src.rename(out.with_name(out.stem + src.name[len(tmp.stem):]))
        tmp.rename(out)
    return out


def inference_default(meta: dict) -> InferenceConfig:
    """The configuration a checkpoint was tuned with: its ``"inference"`` entry, or for a checkpoint
    written before it existed, the defaults with its re-reader's ``quality_weight``."""
    if meta.get("inference"):
        return load_inference_config(checkpoint_meta=meta)
    legacy = (meta.get("model_config") or {}).get("reclassify") or {}
    return InferenceConfig().replace(**({"quality_weight": float(legacy["quality_weight"])}
                                        if "quality_weight" in legacy else {}))


class TorchNetworks:
    """A checkpoint's torch networks on one device.

    Args:
        model: the loaded :class:`AmodalSegModel` (eval mode). device: where it lives.
        precision: ``fp32``, or ``fp16`` / ``bf16`` autocast (CUDA only; ignored on the CPU).
        compile: ``torch.compile`` the main network (CUDA only).
    """

    def __init__(self, model: AmodalSegModel, device: torch.device, precision: str = "fp32",
                 compile: bool = False) -> None:
        self.model = model
        self.model_config = model.cfg
        self.device = device
        on_cuda = device.type == "cuda"
        self.autocast = _AUTOCAST.get(precision) if on_cuda else None
        self._forward = torch.compile(self._eager, dynamic=False) if compile and on_cuda else self._eager
        self.completion_run = (torch_runner(model.completion, device, self.autocast)
                               if model.completion is not None else None)
        self.reclassify_run = (torch_runner(model.reclassifier, device, self.autocast)
                               if model.reclassifier is not None else None)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.cfg.input_height, self.model.cfg.input_width

    def _eager(self, x: torch.Tensor, min_objectness: float):
        xn = self.model.normalize(x)
        f = self.model.decode(xn, self.model.backbone(xn), shape_min_objectness=min_objectness).final
        return (f.scored_class_logits(), f.amodal_logits, f.visible_logits, f.occlusion_rates, f.order_scores)

    @torch.inference_mode()
    def __call__(self, x: np.ndarray, min_objectness: float) -> RawOutputs:
        """``[1, 3, h, w]`` float32 0..255 -> raw outputs of the image, on the device. The shape
        head skips queries that cannot reach ``min_objectness`` (same result, less work)."""
        xt = torch.from_numpy(x).to(self.device, non_blocking=True)
        if self.autocast is not None:
            with torch.autocast("cuda", dtype=self.autocast):
                outs = self._forward(xt, min_objectness)
        else:
            outs = self._forward(xt, min_objectness)
        return RawOutputs(*(t[0].float() for t in outs))


@dataclass(frozen=True)
class _Engine:
    """What a frame runs with: the configuration and the post-processor built from it (swapped as one)."""

    config: InferenceConfig
    post: PostProcessor


class AmodalPredictor:
    """A checkpoint's networks + the post-processing stages (see the module docstring).

    Args:
        networks: :class:`TorchNetworks` or :class:`~.export.OnnxNetworks`.
        meta: the checkpoint's metadata (``classes_dict``, ``model_config``, ...).
        config: the :class:`InferenceConfig` (default: the checkpoint's own, :func:`inference_default`).
    """

    def __init__(self, networks, meta: dict, config: InferenceConfig | None = None) -> None:
        self.networks = networks
        self.meta = meta
        self.class_names: dict[int, str] = {int(k): str(v) for k, v in dict(meta["classes_dict"]).items()}
        self.class_ids: list[int] = sorted(self.class_names)
        self.input_size: tuple[int, int] = tuple(networks.input_size)
        self.last_timings_ms: dict[str, float] = {}
        #: the networks' runtime actually used: "onnxruntime" or "torch"
        self.backend: str = "torch" if isinstance(networks, TorchNetworks) else "onnxruntime"
        self._engine = self._build(config if config is not None else inference_default(meta))

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "auto",
                        config: InferenceConfig | None = None) -> "AmodalPredictor":
        """Load ``path`` (default :data:`DEFAULT_CHECKPOINT`) on ``device`` (auto|cpu|cuda); ``config``
        None = the checkpoint's own configuration. Its ``backend`` picks the networks' runtime: torch,
        or ONNX Runtime (``auto`` on a CPU; the export is cached, :func:`onnx_cache_path`)."""
        from ros2_amodal_seg.model.checkpoint import read_metadata  # noqa: PLC0415

        dev = resolve_device(device)
        path = Path(DEFAULT_CHECKPOINT if path is None else path)
        meta = read_metadata(path)
        cfg = config if config is not None else inference_default(meta)
        if cfg.backend == "onnxruntime" or (cfg.backend == "auto" and dev.type == "cpu"):
            from ros2_amodal_seg.model.export import OnnxNetworks  # noqa: PLC0415

            if dev.type != "cpu":
                raise InvalidInputError(f"backend onnxruntime runs on the CPU here, not on {dev}: use backend torch")
            nets = OnnxNetworks(exported_onnx(path))
            return cls(nets, dict(meta, classes_dict=nets.meta["classes_dict"]), cfg)
        model, meta = load_checkpoint(path, dev)
        return cls(TorchNetworks(model, dev, cfg.precision, cfg.compile), meta, cfg)

    @classmethod
    def with_torch(cls, path: str | Path | None = None, device: str = "auto") -> "AmodalPredictor":
        """The checkpoint's own configuration on torch networks (what training code needs: the
        model's modules themselves)."""
        from ros2_amodal_seg.model.checkpoint import read_metadata  # noqa: PLC0415

        meta = read_metadata(DEFAULT_CHECKPOINT if path is None else path)
        return cls.from_checkpoint(path, device, inference_default(meta).replace(backend="torch"))

    # ------------------------------------------------------------------ configuration
    def _build(self, cfg: InferenceConfig) -> _Engine:
        mcfg = self.networks.model_config
        k = len(self.class_ids)
        comp = (CompletionStage(mcfg.completion, k, self.networks.completion_run)
                if self.networks.completion_run is not None else None)
        recl = (ReclassifyStage(mcfg.reclassify, k, cfg.quality_weight, self.networks.reclassify_run)
                if self.networks.reclassify_run is not None else None)
        return _Engine(cfg, PostProcessor(cfg, self.class_ids, completion=comp, reclassify=recl))

    @property
    def config(self) -> InferenceConfig:
        return self._engine.config

    def set_config(self, config: InferenceConfig) -> None:
        """Use ``config`` from the next frame on (``precision`` and ``compile`` apply when the networks
        are loaded: they are fixed here). The swap is one assignment: a frame never sees half of it."""
        self._engine = self._build(config)

    @property
    def completion_stage(self) -> CompletionStage | None:
        """The checkpoint's completion stage (None without the network)."""
        if self.networks.completion_run is None:
            return None
        return CompletionStage(self.networks.model_config.completion, len(self.class_ids), self.networks.completion_run)

    def with_stages(self, *, completion=None, reclassify=None) -> PostProcessor:
        """A post-processor of the current configuration with other completion / re-reading stages
        (the second-stage training puts recorders there)."""
        return PostProcessor(self.config, self.class_ids, completion=completion, reclassify=reclassify)

    @property
    def has_completion(self) -> bool:
        return self.networks.completion_run is not None

    @property
    def has_reclassifier(self) -> bool:
        return self.networks.reclassify_run is not None

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:0"``."""
        return str(self.networks.device)

    # ------------------------------------------------------------------ inference
    def raw(self, image_rgb: np.ndarray) -> RawOutputs:
        """The networks' raw outputs for one image (on the device)."""
        engine = self._engine
        return self.networks(preprocess(image_rgb, *self.input_size), engine.config.score_threshold)

    def predict(self, image_rgb: np.ndarray, post: PostProcessor | None = None) -> Instances2D:
        """``image_rgb`` ``[H, W, 3]`` uint8 RGB (any size) -> instances at ``H x W``; ``post`` replaces the
        configured post-processor for this call (the second-stage training's recorders)."""
        if self.networks is None:
            raise CheckpointError("predictor was closed")
        check_image(image_rgb)
        engine = self._engine
        post = post if post is not None else engine.post
        t0 = time.perf_counter()
        x = preprocess(image_rgb, *self.input_size)
        image = torch.from_numpy(image_rgb).to(self.networks.device, non_blocking=True)
        t1 = time.perf_counter()
        raw = self.networks(x, engine.config.score_threshold)
        if self.networks.device.type == "cuda":
            torch.cuda.synchronize(self.networks.device)
        t2 = time.perf_counter()
        inst, stages = post(raw, image)
        self.last_timings_ms = {"preprocess": (t1 - t0) * 1e3, "network": (t2 - t1) * 1e3,
                                **{f"post.{k}": v for k, v in stages.items()}}
        return inst

    def close(self) -> None:
        """Free the networks (and the CUDA cache)."""
        dev = self.networks.device if self.networks is not None else None
        self.networks = None
        if dev is not None and dev.type == "cuda":
            torch.cuda.empty_cache()
