"""ONNX export and an ONNX Runtime inference path with the same post-processing as torch."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ros2_amodal_seg.errors import CheckpointError
from ros2_amodal_seg.model.checkpoint import load_checkpoint
from ros2_amodal_seg.model.model import ExportWrapper, ModelConfig
from ros2_amodal_seg.model.postprocess import PostprocessConfig
from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT, PostprocessingPredictor, check_image, preprocess
from ros2_amodal_seg.model.reclassify import PLANES as RECLASSIFY_PLANES
from ros2_amodal_seg.types import Instances2D

OUTPUT_NAMES = ("class_logits", "amodal_logits", "visible_logits", "occlusion_rates", "order_scores")


def export_onnx(checkpoint: str | Path | None, onnx_path: str | Path, opset: int = 17) -> Path:
    """Export the final-layer outputs for a ``[1, 3, Hi, Wi]`` float 0..255 input.

    The checkpoint metadata is embedded as the ONNX ``metadata_props`` entry ``amodal_seg``.
    """
    import onnx  # noqa: PLC0415

    model, meta = load_checkpoint(DEFAULT_CHECKPOINT if checkpoint is None else checkpoint, "cpu")
    cfg = model.cfg
    dummy = torch.rand(1, 3, cfg.input_height, cfg.input_width) * 255
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes (input size is fixed)
        torch.onnx.export(ExportWrapper(model).eval(), (dummy,), str(onnx_path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=list(OUTPUT_NAMES))
        if model.completion is not None:
            s = cfg.completion.crop_size
            planes = torch.rand(2, cfg.completion.in_channels(cfg.num_classes), s, s)
            torch.onnx.export(model.completion.eval(), (planes,), str(completion_onnx_path(onnx_path)),
                              dynamo=False, opset_version=opset, input_names=["planes"], output_names=["logits"],
                              dynamic_axes={"planes": {0: "n"}, "logits": {0: "n"}})
        if model.reclassifier is not None:
            rc = cfg.reclassify
            args = (torch.rand(2, len(RECLASSIFY_PLANES), rc.crop_size, rc.crop_size),
                    torch.rand(2, rc.num_features(cfg.num_classes)))
            torch.onnx.export(model.reclassifier.eval(), args, str(reclassify_onnx_path(onnx_path)),
                              dynamo=False, opset_version=opset, input_names=["planes", "features"],
                              output_names=["logits"],
                              dynamic_axes={"planes": {0: "n"}, "features": {0: "n"}, "logits": {0: "n"}})
    m = onnx.load(str(onnx_path))
    meta = {k: v for k, v in meta.items() if k != "classes_dict"}
    entry = m.metadata_props.add()
    entry.key, entry.value = "amodal_seg", json.dumps(meta)
    onnx.save(m, str(onnx_path))
    return onnx_path


def completion_onnx_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.completion.onnx``: the hidden-part completion network, exported
    beside the model when the checkpoint has one (it runs on crops in post-processing)."""
    return Path(onnx_path).with_suffix(".completion.onnx")


def reclassify_onnx_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.reclassify.onnx``: the class re-reading network, exported beside
    the model when the checkpoint has one (it runs on crops in post-processing)."""
    return Path(onnx_path).with_suffix(".reclassify.onnx")


class OnnxPredictor(PostprocessingPredictor):
    """Same interface as :class:`AmodalPredictor` (``predict``, thresholds, timings) on ONNX Runtime."""

    def __init__(self, onnx_path: str | Path, score_threshold: float = 0.5, max_instances: int = 50,
                 nms_iou: float = PostprocessConfig.nms_iou, providers: list[str] | None = None,
                 refine_masks: bool = PostprocessConfig.refine,
                 nms_method: str = PostprocessConfig.nms_method, complete_hidden: bool = True,
                 completion_flip: bool | None = None, reclassify: bool = True,
                 final_nms_sigma: float = PostprocessConfig.final_nms_sigma) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        p = Path(onnx_path)
        if not p.is_file():
            raise CheckpointError(f"ONNX model {p} not found")
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        try:
            self.session = ort.InferenceSession(str(p), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types  # noqa: BLE001
            raise CheckpointError(f"cannot load ONNX model {p}: {exc}") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        if "amodal_seg" not in props:
            raise CheckpointError(f"{p} lacks the amodal_seg metadata (not exported by amodal-seg export)")
        self.meta = json.loads(props["amodal_seg"])
        self.class_names = {int(k): str(v) for k, v in self.meta["classes"]}
        self.class_ids = sorted(self.class_names)
        self.input_size = tuple(int(v) for v in self.meta["input_size"])
        self._init_postprocessing(score_threshold, max_instances, nms_iou, refine_masks, nms_method,
                                  complete_hidden, reclassify, final_nms_sigma)
        self.device = "cpu"
        mcfg = ModelConfig.from_dict(self.meta["model_config"])
        if mcfg.completion.enabled:
            comp = self._side_session(ort, p, completion_onnx_path(p), so, providers, "completion network")

            def run(planes: np.ndarray) -> np.ndarray:
                return comp.run(["logits"], {"planes": planes.astype(np.float32)})[0]

            self._set_completer(mcfg.completion, len(self.class_ids), run, completion_flip)
        if mcfg.reclassify.enabled:
            recl = self._side_session(ort, p, reclassify_onnx_path(p), so, providers, "re-classifier")

            def run_reclassify(planes: np.ndarray, features: np.ndarray) -> np.ndarray:
                return recl.run(["logits"], {"planes": planes.astype(np.float32),
                                             "features": features.astype(np.float32)})[0]

            self._set_reclassifier(mcfg.reclassify, len(self.class_ids), run_reclassify)

    @staticmethod
    def _side_session(ort, model_path: Path, path: Path, so, providers: list[str] | None, what: str):
        """The ONNX Runtime session of a post-processing network exported beside ``model_path``."""
        try:
            return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"{model_path} needs its {what} {path}: {exc}") from exc

    def raw(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        """Network outputs for one image (batch dimension removed)."""
        x = preprocess(image_rgb, *self.input_size)
        return [o[0] for o in self.session.run(list(OUTPUT_NAMES), {"image": x})]

    def predict(self, image_rgb: np.ndarray) -> Instances2D:
        check_image(image_rgb)
        t0 = time.perf_counter()
        x = preprocess(image_rgb, *self.input_size)
        t1 = time.perf_counter()
        outs = [o[0] for o in self.session.run(list(OUTPUT_NAMES), {"image": x})]
        t2 = time.perf_counter()
        inst, post = self._postprocess(outs, image_rgb)
        self.last_timings_ms = {"preprocess": (t1 - t0) * 1e3, "network": (t2 - t1) * 1e3, **post}
        return inst

    def close(self) -> None:
        self.session = None
