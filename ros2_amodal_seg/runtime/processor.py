"""The per-frame work of the node, without ROS: model -> fusion -> typed outputs.

:class:`FrameProcessor` owns the :class:`~ros2_amodal_seg.model.predictor.AmodalPredictor`
(loaded / freed with the node's lifecycle) and the
:class:`~ros2_amodal_seg.fusion.pipeline.FusionPipeline`. One call of
:meth:`FrameProcessor.process` handles one synchronised frame:

* image + intrinsics + extrinsics + cloud -> full fusion (3-D, LiDAR-aware order, BEV);
* no cloud (none within tolerance, or an unusable one) -> fusion in 2-D mode (depth
  unknown, order from masks + model, BEV unknown);
* no usable intrinsics or no ``T_base_camera`` -> 2-D only without a BEV grid
  (``FrameOutput.bev is None``).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from ros2_amodal_seg.errors import ConfigError, InvalidInputError
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.types import (AmodalInstanceArrayData, AmodalInstanceData, BevGridData, Instances2D,
                                   OcclusionGraphData)

#: devices accepted by ``ProcessorConfig.device``.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ProcessorConfig:
    """Model settings of the node (``config/amodal_seg.yaml``; ``inference.*`` parameters).

    Attributes:
        checkpoint: ``.safetensors`` path; "" = the shipped ``DEFAULT_CHECKPOINT``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        torch_threads: CPU threads of torch (0 = torch's default).
        base_frame: frame of the 3-D outputs when fusion is skipped.
        inference: every post-processing setting (None = the checkpoint's own).
    """

    checkpoint: str = ""
    device: str = "auto"
    torch_threads: int = 0
    base_frame: str = "base_link"
    inference: InferenceConfig | None = None

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be one of {DEVICES} or cuda:N, got {self.device!r}")
        if self.torch_threads < 0:
            raise ConfigError(f"torch_threads must be >= 0, got {self.torch_threads}")


def processor_config(checkpoint: str = "", device: str = "auto", *, torch_threads: int = 0,
                     base_frame: str = "base_link", **inference) -> ProcessorConfig:
    """A :class:`ProcessorConfig` whose inference settings are the checkpoint's own with the
    ``inference`` changes (``score_threshold=0.05``, ...; unknown names refused)."""
    from ros2_amodal_seg.model.checkpoint import read_metadata  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT, inference_default  # noqa: PLC0415

    cfg = inference_default(read_metadata(checkpoint or DEFAULT_CHECKPOINT)).replace(**inference)
    return ProcessorConfig(checkpoint=checkpoint, device=device, torch_threads=torch_threads, base_frame=base_frame,
                           inference=cfg)


@dataclass
class FrameInput:
    """One synchronised frame, already converted to arrays.

    Attributes:
        image_rgb: ``[H, W, 3]`` uint8 RGB.
        stamp_ns: the image's header stamp [ns]; camera_frame: its frame id.
        K: ``[3, 3]`` float64 intrinsics [px] or None (unknown / invalid).
        D: ``[5]`` float64 plumb_bob coefficients or None.
        points_lidar: ``[P, 4]`` float32 x y z [m] intensity in the LiDAR frame, or None; from a
            depth camera, the back-projected depth image in the camera frame (with
            ``T_camera_lidar`` the identity).
        T_camera_lidar: ``[4, 4]`` float64 (p_camera = T @ p_lidar) or None.
        T_base_camera: ``[4, 4]`` float64 (p_base = T @ p_camera) or None.
    """

    image_rgb: np.ndarray
    stamp_ns: int
    camera_frame: str = "camera_optical_frame"
    K: np.ndarray | None = None
    D: np.ndarray | None = None
    points_lidar: np.ndarray | None = None
    T_camera_lidar: np.ndarray | None = None
    T_base_camera: np.ndarray | None = None


@dataclass
class FrameOutput:
    """What the node publishes for one frame.

    Attributes:
        instances, graph: always present (stamped with the image's stamp).
        bev: BEV layers or None (no intrinsics / extrinsics); occupancy: ``[rows, cols]``
            int8 costmap values or None.
        instance_points: ``[P, 3]`` float32 LiDAR points of instances (base frame) [m];
            instance_point_ids: ``[P]`` int32 instance id of each.
        mode: ``"fused"`` (with LiDAR), ``"2d_fusion"`` (no cloud) or ``"2d"`` (no fusion).
        timings_ms: per-stage wall time [ms] (``model.*``, ``fusion.*``, ``total``).
        warnings: non-fatal problems of this frame.
        raw: the model's :class:`Instances2D`.
    """

    instances: AmodalInstanceArrayData
    graph: OcclusionGraphData
    bev: BevGridData | None
    occupancy: np.ndarray | None
    instance_points: np.ndarray
    instance_point_ids: np.ndarray
    mode: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    raw: Instances2D | None = None


def _default_predictor_factory(cfg: ProcessorConfig):
    from ros2_amodal_seg.model.predictor import AmodalPredictor  # noqa: PLC0415

    if cfg.torch_threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(cfg.torch_threads)
    return AmodalPredictor.from_checkpoint(cfg.checkpoint or None, device=cfg.device, config=cfg.inference)


class FrameProcessor:
    """Predictor + fusion for one frame at a time (thread-safe: one frame at a time).

    Args:
        config: :class:`ProcessorConfig`.
        fusion_config: :class:`~ros2_amodal_seg.fusion.pipeline.FusionConfig`.
        predictor_factory: ``f(config) -> predictor`` (default: load the checkpoint);
            tests may inject a deterministic predictor.
    """

    def __init__(self, *, config: ProcessorConfig = ProcessorConfig(), fusion_config=None,
                 predictor_factory: Callable[[ProcessorConfig], object] | None = None) -> None:
        from ros2_amodal_seg.fusion.pipeline import FusionConfig, FusionPipeline  # noqa: PLC0415

        self._config = config
        self._fusion_config = fusion_config if fusion_config is not None else FusionConfig()
        self._fusion = FusionPipeline(config=self._fusion_config)
        self._factory = predictor_factory or _default_predictor_factory
        self._predictor = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def loaded(self) -> bool:
        return self._predictor is not None

    @property
    def predictor(self):
        return self._predictor

    @property
    def device(self) -> str:
        """The predictor's device (``"cpu"``, ``"cuda:0"``) or ``"unloaded"``."""
        p = self._predictor
        return str(getattr(p, "device", "unknown")) if p is not None else "unloaded"

    @property
    def class_names(self) -> dict[int, str]:
        p = self._predictor
        if p is not None and getattr(p, "class_names", None):
            return dict(p.class_names)
        from ros2_amodal_seg.classes import CLASSES  # noqa: PLC0415

        return dict(CLASSES)

    def load(self) -> float:
        """Load the model (no-op when loaded); returns the load time [s].

        Raises:
            CheckpointError: missing / corrupt checkpoint. InvalidInputError: CUDA requested but absent.
        """
        with self._lock:
            if self._predictor is not None:
                return 0.0
            t0 = time.perf_counter()
            self._predictor = self._factory(self._config)
            return time.perf_counter() - t0

    def warmup(self, height: int = 480, width: int = 640) -> float:
        """Run the model and the fusion once on a synthetic frame (first-call costs: allocations,
        lazy imports), so the first real frame is not late; returns the time taken [s]."""
        t0 = time.perf_counter()
        rng = np.random.default_rng(0)
        img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        K = np.array([[500.0, 0, width / 2], [0, 500.0, height / 2], [0, 0, 1]])
        T_bc = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.0], [0, 0, 0, 1]], float)
        pts = np.c_[rng.uniform(-5, 5, (2000, 2)), rng.uniform(2, 30, 2000), np.ones(2000)].astype(np.float32)
        self.process(FrameInput(image_rgb=img, stamp_ns=0, K=K, D=np.zeros(5), points_lidar=pts,
                                T_camera_lidar=np.eye(4), T_base_camera=T_bc))
        return time.perf_counter() - t0

    def unload(self) -> None:
        """Free the model (and the CUDA cache, via ``predictor.close()``)."""
        with self._lock:
            p, self._predictor = self._predictor, None
            if p is not None and hasattr(p, "close"):
                p.close()

    # ------------------------------------------------------------------ run-time settings
    @property
    def config(self) -> ProcessorConfig:
        return self._config

    @property
    def fusion_config(self):
        return self._fusion_config

    @property
    def inference_config(self) -> InferenceConfig | None:
        """The predictor's inference settings (None before it is loaded)."""
        p = self._predictor
        return p.config if p is not None else self._config.inference

    def set_inference_config(self, cfg: InferenceConfig) -> None:
        """Use ``cfg`` from the next frame on (swapped in at once; ``precision`` and ``compile`` take
        effect at the next load)."""
        with self._lock:
            self._config = replace(self._config, inference=cfg)
            if self._predictor is not None:
                self._predictor.set_config(cfg)

    def set_fusion_config(self, fusion_config) -> None:
        """Replace the fusion settings (the BEV grid is rebuilt; applied from the next frame)."""
        from ros2_amodal_seg.fusion.pipeline import FusionPipeline  # noqa: PLC0415

        fp = FusionPipeline(config=fusion_config)
        with self._lock:
            self._fusion_config = fusion_config
            self._fusion = fp

    # ------------------------------------------------------------------ processing
    def predict(self, image_rgb: np.ndarray) -> tuple[Instances2D, dict[str, float]]:
        """Model only: ``[H, W, 3]`` uint8 -> (Instances2D, timings [ms])."""
        p = self._predictor
        if p is None:
            from ros2_amodal_seg.errors import CheckpointError  # noqa: PLC0415

            raise CheckpointError("the model is not loaded (node not configured/active)")
        t0 = time.perf_counter()
        inst = p.predict(image_rgb)
        timings = {f"model.{k}": float(v) for k, v in (getattr(p, "last_timings_ms", {}) or {}).items()}
        timings["model"] = 1e3 * (time.perf_counter() - t0)
        return inst, timings

    def process(self, frame: FrameInput) -> FrameOutput:
        """Segment and fuse one frame.

        Raises:
            InvalidInputError: a malformed image (the node counts and skips the frame).
            CheckpointError: the model is not loaded.
        """
        img = frame.image_rgb
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InvalidInputError(f"image must be [H, W, 3] uint8, got "
                                    f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', None)}")
        with self._lock:
            fusion, cfg = self._fusion, self._config
            t0 = time.perf_counter()
            inst, timings = self.predict(img)
            warns: list[str] = []
            H, W = img.shape[:2]
            pts = frame.points_lidar
            if pts is not None and frame.T_camera_lidar is None:
                warns.append("no T_camera_lidar: the cloud is ignored")
                pts = None
            if frame.K is None or frame.T_base_camera is None:
                warns.append("no valid camera intrinsics" if frame.K is None else "no T_base_camera")
                out = self._two_d_only(inst, frame, cfg.base_frame)
                out.warnings = warns + out.warnings
            else:
                t1 = time.perf_counter()
                T_cl = frame.T_camera_lidar if frame.T_camera_lidar is not None else np.eye(4)
                res = fusion.run(inst, pts, frame.K, frame.D, T_cl, frame.T_base_camera,
                                 stamp_ns=frame.stamp_ns, camera_frame=frame.camera_frame,
                                 class_names=self.class_names, image_size=(H, W))
                timings.update({f"fusion.{k}": float(v) for k, v in res.timings_ms.items() if k != "total"})
                timings["fusion"] = 1e3 * (time.perf_counter() - t1)
                out = FrameOutput(instances=res.instances, graph=res.graph, bev=res.bev, occupancy=res.occupancy,
                                  instance_points=res.instance_points, instance_point_ids=res.instance_point_ids,
                                  mode="fused" if pts is not None else "2d_fusion", warnings=warns + res.warnings)
            out.raw = inst
            timings["process"] = 1e3 * (time.perf_counter() - t0)
            out.timings_ms = timings
            return out

    def _two_d_only(self, inst: Instances2D, frame: FrameInput, base_frame: str) -> FrameOutput:
        """Instances + occlusion graph from masks and model order only (no geometry, no BEV)."""
        from ros2_amodal_seg.fusion.order import build_occlusion_graph  # noqa: PLC0415

        n = len(inst)
        H, W = frame.image_rgb.shape[:2]
        order_cfg = self._fusion_config.order
        amodal = inst.amodal_masks.astype(bool, copy=False)
        visible = inst.visible_masks.astype(bool, copy=False)
        order = build_occlusion_graph(amodal, visible, inst.order_scores, np.full(n, np.nan), order_cfg)
        occluders: list[list[int]] = [[] for _ in range(n)]
        for e in order.edges:
            occluders[e.occludee_id - 1].append(e.occluder_id)
        names = self.class_names
        out = []
        for k in range(n):
            cid = int(inst.class_ids[k])
            out.append(AmodalInstanceData(
                id=k + 1, class_id=cid, class_name=names.get(cid, f"unknown_{cid}"), score=float(inst.scores[k]),
                occlusion_rate=float(inst.occlusion_rates[k]), amodal_mask=amodal[k], visible_mask=visible[k],
                depth_rank=int(order.rank[k]), depth_m=float("nan"), order_score=float(inst.order_scores[k]),
                frame_id=base_frame, occluded_by=sorted(occluders[k])))
        warns = [f"occlusion graph: dropped {len(order.dropped)} edge(s) to break cycles"] if order.dropped else []
        return FrameOutput(
            instances=AmodalInstanceArrayData(stamp_ns=int(frame.stamp_ns), frame_id=frame.camera_frame,
                                              image_height=H, image_width=W, instances=out),
            graph=OcclusionGraphData(stamp_ns=int(frame.stamp_ns), frame_id=frame.camera_frame, edges=order.edges,
                                     order=order.order),
            bev=None, occupancy=None, instance_points=np.zeros((0, 3), np.float32),
            instance_point_ids=np.zeros(0, np.int32), mode="2d", warnings=warns)


def fusion_config_from_params(preset: str = "street", config_file: str = "", *, x_range=(), y_range=(),
                              resolution: float = 0.0, inferred_value: int = 0, base_frame: str = "base_link",
                              source: str = "lidar"):
    """Build a FusionConfig from the node's parameters.

    Args:
        preset: ``street`` / ``tabletop`` (the fusion engineer's built-in settings).
        config_file: optional fusion YAML (``config/fusion.yaml`` layout); replaces the preset.
        x_range, y_range: ``[min, max]`` BEV extent [m]; empty keeps the preset's.
        resolution: BEV cell [m]; 0 keeps the preset's. inferred_value: costmap value of
            inferred cells (1..99); 0 keeps the preset's.
        base_frame: frame of the 3-D outputs and of the grid.
        source: the 3-D source (``lidar``, ``depth``, ``none``): ``depth`` takes the preset's
            depth-camera variant (:meth:`FusionConfig.for_preset`); a config file is used as it is.

    Raises:
        ConfigError: unknown preset, unreadable file or invalid values.
    """
    from ros2_amodal_seg.fusion.pipeline import FusionConfig  # noqa: PLC0415

    cfg = FusionConfig.from_yaml(config_file, preset=None) if config_file else FusionConfig.for_preset(preset, source)
    bev: dict = {"frame_id": base_frame}
    if len(x_range):
        if len(x_range) != 2:
            raise ConfigError(f"bev_x_range must be [min, max], got {list(x_range)}")
        bev["x_range"] = (float(x_range[0]), float(x_range[1]))
    if len(y_range):
        if len(y_range) != 2:
            raise ConfigError(f"bev_y_range must be [min, max], got {list(y_range)}")
        bev["y_range"] = (float(y_range[0]), float(y_range[1]))
    if resolution:
        bev["resolution"] = float(resolution)
    if inferred_value:
        bev["inferred_value"] = int(inferred_value)
    try:
        return cfg.replace(bev=bev, base_frame=base_frame)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid BEV settings {bev}: {exc}") from exc
