"""Runtime API used by the ROS node: :class:`AmodalPredictor`."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ros2_amodal_seg.errors import CheckpointError, InvalidInputError
from ros2_amodal_seg.model.checkpoint import load_checkpoint
from ros2_amodal_seg.model.completion import CompletionConfig, HiddenCompleter, torch_runner, with_flip
from ros2_amodal_seg.model.model import AmodalSegModel
from ros2_amodal_seg.model.postprocess import PostprocessConfig, postprocess
from ros2_amodal_seg.model.reclassify import ReclassifyConfig, Reclassifier
from ros2_amodal_seg.types import Instances2D

#: The shipped checkpoint (metadata in ``amodal_seg.json`` beside it).
DEFAULT_CHECKPOINT: Path = Path(__file__).resolve().parent.parent / "weights" / "amodal_seg.safetensors"


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
    """Raise InvalidInputError unless ``image_rgb`` is ``[H, W, 3]`` uint8 with H, W >= 8."""
    if not isinstance(image_rgb, np.ndarray):
        raise InvalidInputError(f"image must be a numpy array, got {type(image_rgb).__name__}")
    if image_rgb.dtype != np.uint8:
        raise InvalidInputError(f"image must be uint8 RGB, got dtype {image_rgb.dtype}")
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.shape[0] < 8 or image_rgb.shape[1] < 8:
        raise InvalidInputError(f"image must be [H, W, 3] with H, W >= 8, got shape {image_rgb.shape}")


def preprocess(image_rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB -> ``[1, 3, height, width]`` float32 0..255 (plain resize)."""
    interp = cv2.INTER_AREA if image_rgb.shape[0] > height else cv2.INTER_LINEAR
    x = cv2.resize(image_rgb, (width, height), interpolation=interp)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


class PostprocessingPredictor:
    """What the torch and the ONNX Runtime predictors share: the post-processing settings (plain
    attributes that can be changed between calls), the hidden-part completer and the
    post-processing call with its timing split."""

    def _init_postprocessing(self, score_threshold: float, max_instances: int, nms_iou: float,
                             refine_masks: bool, nms_method: str, complete_hidden: bool,
                             reclassify: bool = True,
                             final_nms_sigma: float = PostprocessConfig.final_nms_sigma) -> None:
        self.score_threshold = float(score_threshold)
        self.max_instances = int(max_instances)
        self.nms_iou = float(nms_iou)
        self.refine_masks = bool(refine_masks)
        self.nms_method = str(nms_method)
        self.final_nms_sigma = float(final_nms_sigma)
        PostprocessConfig(nms_iou=self.nms_iou, nms_method=self.nms_method,
                          final_nms_sigma=self.final_nms_sigma)  # validate early
        self.complete_hidden = bool(complete_hidden)
        self.completer: HiddenCompleter | None = None
        self.reclassify = bool(reclassify)
        self.reclassifier: Reclassifier | None = None
        self.last_timings_ms: dict[str, float] = {}

    def _set_completer(self, cfg: CompletionConfig, num_classes: int, run, completion_flip: bool | None) -> None:
        """Use the completion network ``run`` (``[N, C, S, S]`` planes -> ``[N, S, S]`` logits);
        ``completion_flip`` None keeps the checkpoint's ``cfg.flip_average``."""
        self.completer = HiddenCompleter(with_flip(cfg, completion_flip), num_classes, run)

    def _set_reclassifier(self, cfg: ReclassifyConfig, num_classes: int, run) -> None:
        """Use the re-classifier ``run`` (``[N, P, S, S]`` planes, ``[N, F]`` features -> ``[N, K]`` logits)."""
        self.reclassifier = Reclassifier(cfg, num_classes, run)

    def _postprocess(self, outs: list[np.ndarray], image_rgb: np.ndarray) -> tuple[Instances2D, dict[str, float]]:
        """Raw outputs of one image -> ``(instances, {"postprocess", "completion", "reclassify"} ms)``
        (post-processing without the two networks' stages)."""
        t0 = time.perf_counter()
        comp = self.completer if self.complete_hidden else None
        recl = self.reclassifier if self.reclassify else None
        inst = postprocess(*outs, image_size=image_rgb.shape[:2], class_ids=self.class_ids,
                           cfg=PostprocessConfig(self.score_threshold, self.max_instances, nms_iou=self.nms_iou,
                                                 nms_method=self.nms_method, refine=self.refine_masks,
                                                 final_nms_sigma=self.final_nms_sigma),
                           image=image_rgb, completer=comp, reclassifier=recl)
        comp_ms = comp.last_ms if comp is not None else 0.0
        recl_ms = recl.last_ms if recl is not None else 0.0
        total = (time.perf_counter() - t0) * 1e3
        return inst, {"postprocess": total - comp_ms - recl_ms, "completion": comp_ms, "reclassify": recl_ms}


class AmodalPredictor(PostprocessingPredictor):
    """Loads a checkpoint once; :meth:`predict` maps an RGB image to :class:`Instances2D`.

    ``score_threshold``, ``max_instances``, ``nms_method``, ``nms_iou``, ``refine_masks`` (guided-filter
    refinement of the full-resolution masks, see :mod:`.upsample`) and ``complete_hidden`` (the
    hidden-part completion network, see :mod:`.completion`; used only when the checkpoint has
    one) and ``reclassify`` (the class re-reading network, see :mod:`.reclassify`; likewise) are
    plain attributes that can be changed between calls. ``completion_flip`` (None: the
    checkpoint's ``completion.flip_average``) runs the completion network also on each crop's
    mirror image and averages the logits: better masks behind occluders, about twice the
    network's time. ``final_nms_sigma`` (0 = off) is the final Matrix NMS on the final amodal
    masks (:func:`~ros2_amodal_seg.model.postprocess.final_decay`).
    """

    def __init__(self, model: AmodalSegModel, meta: dict, device: torch.device, score_threshold: float = 0.5,
                 max_instances: int = 50, nms_iou: float = PostprocessConfig.nms_iou,
                 refine_masks: bool = PostprocessConfig.refine,
                 nms_method: str = PostprocessConfig.nms_method, complete_hidden: bool = True,
                 completion_flip: bool | None = None, reclassify: bool = True,
                 final_nms_sigma: float = PostprocessConfig.final_nms_sigma) -> None:
        self.model = model
        self.meta = meta
        self._device = device
        self._init_postprocessing(score_threshold, max_instances, nms_iou, refine_masks, nms_method,
                                  complete_hidden, reclassify, final_nms_sigma)
        self.class_names: dict[int, str] = dict(meta["classes_dict"])
        self.class_ids: list[int] = sorted(self.class_names)
        self.input_size: tuple[int, int] = (model.cfg.input_height, model.cfg.input_width)
        if model.completion is not None:
            self._set_completer(model.cfg.completion, model.cfg.num_classes, torch_runner(model.completion, device),
                                completion_flip)
        if model.reclassifier is not None:
            self._set_reclassifier(model.cfg.reclassify, model.cfg.num_classes,
                                   torch_runner(model.reclassifier, device))

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "auto", score_threshold: float = 0.5,
                        max_instances: int = 50, nms_iou: float = PostprocessConfig.nms_iou,
                        refine_masks: bool = PostprocessConfig.refine,
                        nms_method: str = PostprocessConfig.nms_method,
                        complete_hidden: bool = True, completion_flip: bool | None = None,
                        reclassify: bool = True,
                        final_nms_sigma: float = PostprocessConfig.final_nms_sigma) -> "AmodalPredictor":
        """Load ``path`` (default :data:`DEFAULT_CHECKPOINT`) on ``device`` (auto|cpu|cuda)."""
        dev = resolve_device(device)
        model, meta = load_checkpoint(DEFAULT_CHECKPOINT if path is None else path, dev)
        return cls(model, meta, dev, score_threshold, max_instances, nms_iou, refine_masks, nms_method,
                   complete_hidden, completion_flip, reclassify, final_nms_sigma)

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:0"``."""
        return str(self._device)

    def _sync(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)

    @torch.inference_mode()
    def predict(self, image_rgb: np.ndarray) -> Instances2D:
        """``image_rgb`` ``[H, W, 3]`` uint8 RGB (any size) -> instances at ``H x W``."""
        if self.model is None:
            raise CheckpointError("predictor was closed")
        check_image(image_rgb)
        t0 = time.perf_counter()
        x = torch.from_numpy(preprocess(image_rgb, *self.input_size)).to(self._device)
        self._sync()
        t1 = time.perf_counter()
        xn = self.model.normalize(x)
        feats = self.model.backbone(xn)
        self._sync()
        t2 = time.perf_counter()
        # the shape head skips queries that cannot reach the score threshold (same result, less work)
        f = self.model.decode(xn, feats, shape_min_objectness=self.score_threshold).final
        outs = [t[0].float().cpu().numpy() for t in (f.scored_class_logits(), f.amodal_logits, f.visible_logits,
                                                      f.occlusion_rates, f.order_scores)]
        t3 = time.perf_counter()
        inst, post = self._postprocess(outs, image_rgb)
        self.last_timings_ms = {"preprocess": (t1 - t0) * 1e3, "backbone": (t2 - t1) * 1e3,
                                "decoder": (t3 - t2) * 1e3, **post}
        return inst

    def close(self) -> None:
        """Free the model (and the CUDA cache)."""
        self.model = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
