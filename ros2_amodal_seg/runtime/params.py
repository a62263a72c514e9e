"""The node's parameters as plain data (no ROS import), in groups that map onto the config
dataclasses of the core.

Each :class:`ParamSpec` has a name, default, description, range / choices, a read-only flag and
a *group*. A group with a config dataclass has one builder here (:data:`BUILDERS`): the node
validates a change by building the new config of every group it touches, and applies it by
handing that config to its owner. Nothing else lists parameter names, so no list can miss one.

* ``inference.*``: every field of :class:`~ros2_amodal_seg.model.inference_config.InferenceConfig`,
  generated from the dataclass. The node declares them with the checkpoint's own settings as
  defaults (a checkpoint stores what it was tuned with), so ``config/amodal_seg.yaml`` does not
  list them; set them there, on the command line or at run time to override.
* ``geometry_source`` (LiDAR, depth camera or none) and ``depth_*`` ->
  :class:`~ros2_amodal_seg.runtime.frames.GeometryConfig`; the source also picks the fusion
  preset's depth variant and whether images wait for a cloud / depth image.
* ``malloc_mmap_threshold_mb`` -> :class:`~ros2_amodal_seg.runtime.memory.MemoryConfig` (read-only).
* ``sync_*`` -> :class:`~ros2_amodal_seg.runtime.sync.SyncConfig`; ``max_cloud_points`` ->
  :class:`~ros2_amodal_seg.runtime.inputs.InputLimits`; the BEV / fusion settings and
  ``base_frame`` -> :class:`~ros2_amodal_seg.fusion.pipeline.FusionConfig`.

A 4x4 transform parameter of 16 zeros means "not set" (a zero matrix is never a valid
transform); a ``[0.0, 0.0]`` BEV range and a 0 resolution / inferred value mean "keep the
fusion preset's value".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ros2_amodal_seg.errors import ConfigError, GeometryError
from ros2_amodal_seg.model import inference_config as ic
from ros2_amodal_seg.runtime.inputs import InputLimits
from ros2_amodal_seg.runtime.memory import MAX_MMAP_THRESHOLD_MB, MemoryConfig
from ros2_amodal_seg.runtime.sync import SyncConfig

ZERO16: tuple[float, ...] = (0.0,) * 16


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    Attributes:
        name, default, description.
        group: which config it belongs to (:data:`GROUPS`).
        range: ``(min, max)`` inclusive for numbers (None: unbounded).
        choices: allowed string values (None: any).
        read_only: fixed after start (changing it needs a restart); the others apply at run time.
    """

    name: str
    default: Any
    description: str
    group: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False


#: parameter groups; those in :data:`BUILDERS` map onto a config dataclass.
GROUPS: tuple[str, ...] = ("lifecycle", "process", "model", "inference", "inputs", "geometry", "sync", "frames",
                           "fusion", "outputs")


def _p(group: str, name: str, default, description: str, **kw) -> ParamSpec:
    return ParamSpec(name, default, description, group, **kw)


def _inference_params() -> tuple[ParamSpec, ...]:
    """``inference.<field>`` for every field of InferenceConfig (defaults: the dataclass's; the node
    declares the checkpoint's own instead)."""
    out = []
    for f in dataclasses.fields(ic.InferenceConfig):
        out.append(_p("inference", f"inference.{f.name}", f.default, ic.DESCRIPTIONS[f.name],
                      range=ic.RANGES.get(f.name),
                      choices={"precision": ic.PRECISIONS, "backend": ic.BACKENDS}.get(f.name),
                      read_only=f.name in ic.LOAD_TIME))
    return tuple(out)


PARAMS: tuple[ParamSpec, ...] = (
    _p("lifecycle", "autostart", True, "configure + activate on start (else wait for lifecycle transitions)",
       read_only=True),
    _p("process", "malloc_mmap_threshold_mb", 8, "allocations of at least this size (a large message's buffers) are "
       "returned to the system at once (glibc M_MMAP_THRESHOLD); 0 = glibc's dynamic threshold, under which a "
       "32 MB cloud left the resident set 60 MB higher [MiB]", range=(0, MAX_MMAP_THRESHOLD_MB), read_only=True),
    _p("model", "checkpoint", "", "model checkpoint (.safetensors, .json beside it); empty = the shipped "
       "ros2_amodal_seg/weights/amodal_seg.safetensors", read_only=True),
    _p("model", "device", "auto", "inference device: auto (CUDA when available), cpu or cuda",
       choices=("auto", "cpu", "cuda"), read_only=True),
    _p("model", "torch_threads", 0, "CPU threads for torch (0 = torch default)", range=(0, 64), read_only=True),
    *_inference_params(),
    # --- inputs ---
    _p("inputs", "use_compressed", False, "subscribe to sensor_msgs/CompressedImage on "
       "/camera/image_raw/compressed instead of sensor_msgs/Image on /camera/image_raw", read_only=True),
    _p("inputs", "qos_reliability", "best_effort", "reliability of the input subscriptions (sensor-data profile "
       "= best_effort; reliable only matches reliable publishers)", choices=("best_effort", "reliable"),
       read_only=True),
    _p("inputs", "qos_depth", 5, "history depth of the input subscriptions", range=(1, 100), read_only=True),
    _p("inputs", "max_cloud_points", 1_000_000, "a PointCloud2 with more points (width x height) is refused and "
       "counted (cloud_too_large); bounds the node's memory", range=(1000, 100_000_000)),
    _p("inputs", "input_timeout_s", 3.0, "when an input has brought nothing usable this long, say why (log and "
       "/diagnostics 'diagnosis': no publisher, incompatible QoS, encoding, no CameraInfo, stamps out of sync, "
       "no transform) [s]", range=(0.1, 3600.0)),
    # --- 3-D source ---
    _p("geometry", "geometry_source", "lidar", "3-D source fused with the image: lidar (PointCloud2 on /lidar/points), "
       "depth (depth image aligned to the colour camera on /camera/depth/image_raw, 16UC1 mm or 32FC1 m, "
       "back-projected with the CameraInfo's K) or none (2-D only)", choices=("lidar", "depth", "none"),
       read_only=True),
    _p("geometry", "depth_stride", 2, "geometry_source depth: use every N-th pixel of the depth image in both "
       "directions (bounds the point count: 640x480 at 2 = 76800 points at most) [px]", range=(1, 16)),
    _p("geometry", "depth_min_m", 0.1, "geometry_source depth: nearer depths are no return [m]", range=(0.0, 100.0)),
    _p("geometry", "depth_max_m", 10.0, "geometry_source depth: farther depths are no return (a depth camera's "
       "error grows with the square of the depth) [m]", range=(0.01, 100.0)),
    # --- synchronisation ---
    _p("sync", "sync_tolerance_s", 0.05, "pair an image with the nearest cloud within this stamp difference [s]",
       range=(0.0, 1.0)),
    _p("sync", "sync_cloud_wait_s", 0.2, "longest wall time an image waits for its cloud, from its own arrival [s]",
       range=(0.0, 5.0)),
    _p("sync", "sync_max_frame_age_s", 2.0, "drop a pending image older than this (wall time) [s]",
       range=(0.05, 600.0)),
    _p("sync", "sync_cloud_cache_size", 10, "clouds kept for pairing", range=(1, 100)),
    _p("sync", "sync_time_jump_s", 0.5, "a stamp this much older than the previous one resets the caches "
       "(bag loop) [s]", range=(0.001, 3600.0)),
    # --- frames / extrinsics ---
    _p("frames", "camera_frame", "", "camera optical frame; empty = the image header's frame_id", read_only=True),
    _p("frames", "lidar_frame", "", "LiDAR frame; empty = the cloud header's frame_id", read_only=True),
    _p("frames", "extrinsics_source", "auto", "auto (tf2 when tf2_ros is importable, else parameters), tf or "
       "params", choices=("auto", "tf", "params"), read_only=True),
    _p("frames", "tf_timeout_s", 0.05, "tf2 lookup timeout [s]", range=(0.0, 5.0)),
    _p("frames", "T_camera_lidar", ZERO16, "lidar -> camera optical frame, 16 floats row-major "
       "(p_camera = T @ p_lidar); all zeros = not set"),
    _p("frames", "T_base_camera", ZERO16, "camera optical frame -> base_frame, 16 floats row-major "
       "(p_base = T @ p_camera); all zeros = not set"),
    # --- fusion / BEV ---
    _p("fusion", "base_frame", "base_link", "robot frame of 3-D outputs, markers and grids", read_only=True),
    _p("fusion", "fusion_preset", "street", "built-in fusion settings: street (40 x 40 m, 0.2 m cells) or "
       "tabletop (2 x 2 m, 1 cm cells)", choices=("street", "tabletop")),
    _p("fusion", "fusion_config", "", "fusion YAML (config/fusion.yaml layout); replaces fusion_preset when set"),
    _p("fusion", "bev_x_range", (0.0, 0.0), "BEV x extent [min, max] in base_frame [m]; [0, 0] = preset's"),
    _p("fusion", "bev_y_range", (0.0, 0.0), "BEV y extent [min, max] in base_frame [m]; [0, 0] = preset's"),
    _p("fusion", "bev_resolution", 0.0, "BEV cell size [m]; 0 = preset's", range=(0.0, 10.0)),
    _p("fusion", "inferred_value", 0, "OccupancyGrid value of cells inferred from amodal masks (1..99); "
       "0 = preset's (70)", range=(0, 99)),
    # --- outputs ---
    _p("outputs", "publish_graph", True, "publish ~/occlusion_graph"),
    _p("outputs", "publish_bev_grid", True, "publish ~/bev_grid"),
    _p("outputs", "publish_occupancy", True, "publish ~/occupancy (nav_msgs/OccupancyGrid)"),
    _p("outputs", "publish_markers", True, "publish ~/markers"),
    _p("outputs", "publish_overlay", True, "publish ~/overlay (rendered only while someone subscribes)"),
    _p("outputs", "publish_instance_points", True, "publish ~/instance_points"),
    _p("outputs", "marker_lifetime_s", 0.0, "marker lifetime [s] (0 = until the next frame's DELETEALL)",
       range=(0.0, 60.0)),
    _p("outputs", "diagnostics_period_s", 1.0, "period of /diagnostics [s]", range=(0.1, 60.0), read_only=True),
)

PARAM_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}


def check_transform(name: str, values) -> np.ndarray | None:
    """16 floats row-major -> ``[4, 4]`` float64, None for all zeros ("not set").

    Raises:
        GeometryError: not 16 finite values, last row not ``0 0 0 1``, or a non-rotation.
    """
    v = np.asarray(list(values), dtype=np.float64)
    if v.size != 16:
        raise GeometryError(f"{name} needs 16 values (row-major 4x4), got {v.size}")
    if not np.all(np.isfinite(v)):
        raise GeometryError(f"{name} has non-finite values")
    if not np.any(v):
        return None
    T = v.reshape(4, 4)
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise GeometryError(f"{name}: last row must be 0 0 0 1, got {T[3].tolist()}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0.999:
        raise GeometryError(f"{name}: the 3x3 block is not a rotation")
    return T


def check_value(name: str, value) -> None:
    """Validate one parameter value against its spec (range, choices, arrays).

    Raises:
        ConfigError / GeometryError with the reason.
    """
    spec = PARAM_BY_NAME.get(name)
    if spec is None:
        raise ConfigError(f"unknown parameter {name!r}")
    if isinstance(spec.default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{name} must be one of {list(spec.choices)}, got {value!r}")
    if spec.range is not None:
        lo, hi = spec.range
        if not (lo <= value <= hi):
            raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value}")
    if name in ("T_camera_lidar", "T_base_camera"):
        check_transform(name, value)
    if name in ("bev_x_range", "bev_y_range"):
        v = list(value)
        if len(v) != 2:
            raise ConfigError(f"{name} must be [min, max], got {v}")
        if any(v) and not v[0] < v[1]:
            raise ConfigError(f"{name} must have min < max, got {v}")
    if name == "bev_resolution" and 0.0 < value < 0.001:
        raise ConfigError(f"bev_resolution must be 0 (preset) or >= 0.001 m, got {value}")


# ----------------------------------------------------------------------------------- groups -> configs
def names_in(group: str) -> tuple[str, ...]:
    """The parameters of ``group``."""
    return tuple(p.name for p in PARAMS if p.group == group)


def inference_config(values: Mapping[str, Any]) -> ic.InferenceConfig:
    """The ``inference.*`` values -> :class:`InferenceConfig` (validated)."""
    return ic.InferenceConfig.from_dict({n[len("inference."):]: values[n] for n in names_in("inference")})


def inference_defaults(checkpoint: str) -> dict[str, Any]:
    """``inference.*`` defaults of the node: the checkpoint's own settings (the dataclass's when it
    cannot be read: configure reports why)."""
    from ros2_amodal_seg.errors import AmodalSegError  # noqa: PLC0415
    from ros2_amodal_seg.model.checkpoint import read_metadata  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT, inference_default  # noqa: PLC0415

    try:
        cfg = inference_default(read_metadata(checkpoint or DEFAULT_CHECKPOINT))
    except AmodalSegError:
        cfg = ic.InferenceConfig()
    return {f"inference.{k}": v for k, v in cfg.to_dict().items()}


def sync_config(values: Mapping[str, Any]) -> SyncConfig:
    """The ``sync_*`` values -> :class:`SyncConfig`; images wait for a cloud or depth image unless
    ``geometry_source`` is none."""
    return SyncConfig(tolerance_s=float(values["sync_tolerance_s"]), cloud_wait_s=float(values["sync_cloud_wait_s"]),
                      max_frame_age_s=float(values["sync_max_frame_age_s"]),
                      cloud_cache_size=int(values["sync_cloud_cache_size"]),
                      time_jump_s=float(values["sync_time_jump_s"]),
                      use_clouds=values.get("geometry_source", "lidar") != "none")


def geometry_config(values: Mapping[str, Any]):
    """``geometry_source`` and ``depth_*`` -> :class:`~ros2_amodal_seg.runtime.frames.GeometryConfig` (validated)."""
    from ros2_amodal_seg.fusion.depth import DepthConfig  # noqa: PLC0415
    from ros2_amodal_seg.runtime.frames import GeometryConfig  # noqa: PLC0415

    return GeometryConfig(source=str(values["geometry_source"]),
                          depth=DepthConfig(stride=int(values["depth_stride"]),
                                            min_depth_m=float(values["depth_min_m"]),
                                            max_depth_m=float(values["depth_max_m"])))


def memory_config(values: Mapping[str, Any]) -> MemoryConfig:
    return MemoryConfig(mmap_threshold_mb=int(values["malloc_mmap_threshold_mb"]))


def input_limits(values: Mapping[str, Any]) -> InputLimits:
    return InputLimits(max_cloud_points=int(values["max_cloud_points"]))


def fusion_config(values: Mapping[str, Any]):
    """The fusion / BEV values -> :class:`~ros2_amodal_seg.fusion.pipeline.FusionConfig` (validated)."""
    from ros2_amodal_seg.runtime.processor import fusion_config_from_params  # noqa: PLC0415

    xr, yr = list(values["bev_x_range"]), list(values["bev_y_range"])
    return fusion_config_from_params(
        str(values["fusion_preset"]), str(values["fusion_config"]), x_range=xr if any(xr) else (),
        y_range=yr if any(yr) else (), resolution=float(values["bev_resolution"]),
        inferred_value=int(values["inferred_value"]), base_frame=str(values["base_frame"]),
        source=str(values.get("geometry_source", "lidar")))


#: group -> builder of its config from the parameter values (raises ConfigError / GeometryError when invalid).
BUILDERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "inference": inference_config, "sync": sync_config, "inputs": input_limits, "fusion": fusion_config,
    "geometry": geometry_config, "process": memory_config}


def groups_of(names) -> set[str]:
    """The groups the parameters ``names`` belong to (unknown names are ignored)."""
    return {PARAM_BY_NAME[n].group for n in names if n in PARAM_BY_NAME}


def changed_configs(values: Mapping[str, Any], changed) -> dict[str, Any]:
    """The new config of every group with a builder that the ``changed`` names touch, built from the
    full set of ``values`` (each validated: raises ConfigError / GeometryError)."""
    for name in changed:
        if name in PARAM_BY_NAME:
            v = values[name]
            check_value(name, list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v)
    return {g: BUILDERS[g](values) for g in sorted(groups_of(changed)) if g in BUILDERS}

