"""ONNX export, and the checkpoint's networks on ONNX Runtime (:class:`OnnxNetworks`) for the
inference engine (:class:`~.predictor.AmodalPredictor`): the same post-processing stages as
with torch."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ros2_amodal_seg.errors import CheckpointError
from ros2_amodal_seg.model.checkpoint import load_checkpoint
from ros2_amodal_seg.model.model import ExportWrapper, ModelConfig
from ros2_amodal_seg.model.candidates import RawOutputs
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT, AmodalPredictor
from ros2_amodal_seg.model.reclassify import PLANES as RECLASSIFY_PLANES

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


def _session(ort, path: Path, threads: int, providers: list[str] | None, what: str):
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CheckpointError(f"cannot load the {what} {path}: {exc}") from exc


class OnnxNetworks:
    """A model exported by :func:`export_onnx` on ONNX Runtime, with the interface of
    :class:`~.predictor.TorchNetworks` (outputs as CPU tensors for the post-processing stages).

    Args:
        onnx_path: the main network; the completion / re-reading networks are read beside it
            (:func:`completion_onnx_path`, :func:`reclassify_onnx_path`) when its metadata says it has them.
        providers: ONNX Runtime execution providers (default CPU). threads: intra-op threads.
    """

    def __init__(self, onnx_path: str | Path, providers: list[str] | None = None, threads: int = 2) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        p = Path(onnx_path)
        if not p.is_file():
            raise CheckpointError(f"ONNX model {p} not found")
        self.session = _session(ort, p, threads, providers, "ONNX model")
        props = self.session.get_modelmeta().custom_metadata_map
        if "amodal_seg" not in props:
            raise CheckpointError(f"{p} lacks the amodal_seg metadata (not exported by amodal-seg export)")
        self.meta = json.loads(props["amodal_seg"])
        self.meta["classes_dict"] = {int(k): str(v) for k, v in self.meta["classes"]}
        self.input_size = tuple(int(v) for v in self.meta["input_size"])
        self.device = torch.device("cpu")
        self.model_config = mcfg = ModelConfig.from_dict(self.meta["model_config"])
        self.completion_run = self.reclassify_run = None
        if mcfg.completion.enabled:
            comp = _session(ort, completion_onnx_path(p), threads, providers, "completion network")
            self.completion_run = lambda planes: torch.from_numpy(
                comp.run(["logits"], {"planes": planes.float().cpu().numpy()})[0])
        if mcfg.reclassify.enabled:
            recl = _session(ort, reclassify_onnx_path(p), threads, providers, "re-classifier")
            self.reclassify_run = lambda planes, features: torch.from_numpy(recl.run(
                ["logits"], {"planes": planes.float().cpu().numpy(), "features": features.float().cpu().numpy()})[0])

    def __call__(self, x: np.ndarray, min_objectness: float) -> RawOutputs:
        """``[1, 3, h, w]`` float32 0..255 -> raw outputs (CPU tensors)."""
        return RawOutputs.from_arrays([o[0] for o in self.session.run(list(OUTPUT_NAMES), {"image": x})])


def onnx_predictor(onnx_path: str | Path, config: InferenceConfig | None = None,
                   providers: list[str] | None = None, threads: int = 2) -> AmodalPredictor:
    """An :class:`~.predictor.AmodalPredictor` over :class:`OnnxNetworks` (``config`` None: the
    exported checkpoint's own configuration)."""
    nets = OnnxNetworks(onnx_path, providers, threads)
    return AmodalPredictor(nets, nets.meta, config)
