"""The node's parameters as plain data (no ROS import): name, default, description,
range, choices, read-only flag. The node declares exactly these (with descriptors),
``config/amodal_seg.yaml`` lists them, and the tests check both agree.

A 4x4 transform parameter of 16 zeros means "not set" (a zero matrix is never a valid
transform); a ``[0.0, 0.0]`` BEV range and a 0 resolution / inferred value mean "keep the
fusion preset's value".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ros2_amodal_seg.errors import ConfigError, GeometryError
from ros2_amodal_seg.model.postprocess import NMS_METHODS, PostprocessConfig

ZERO16: tuple[float, ...] = (0.0,) * 16


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    Attributes:
        name, default, description.
        range: ``(min, max)`` inclusive for numbers (None: unbounded).
        choices: allowed string values (None: any).
        read_only: fixed after start (changing it needs a restart).
        runtime: applied while running when set (thresholds, toggles, sync, BEV).
    """

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False
    runtime: bool = True


PARAMS: tuple[ParamSpec, ...] = (
    # --- lifecycle / model ---
    ParamSpec("autostart", True, "configure + activate on start (else wait for lifecycle transitions)",
              read_only=True, runtime=False),
    ParamSpec("checkpoint", "", "model checkpoint (.safetensors, .json beside it); empty = the shipped "
              "ros2_amodal_seg/weights/amodal_seg.safetensors", read_only=True, runtime=False),
    ParamSpec("device", "auto", "inference device: auto (CUDA when available), cpu or cuda",
              choices=("auto", "cpu", "cuda"), read_only=True, runtime=False),
    ParamSpec("torch_threads", 0, "CPU threads for torch (0 = torch default)", range=(0, 64), read_only=True,
              runtime=False),
    ParamSpec("score_threshold", 0.5, "minimum detection score", range=(0.0, 1.0)),
    ParamSpec("max_instances", 50, "most instances per frame", range=(1, 200)),
    ParamSpec("nms_method", PostprocessConfig.nms_method, "mask NMS: matrix (decay a duplicate's score, SOLOv2 "
              "Matrix NMS) or hard (greedy suppression at nms_iou)", choices=NMS_METHODS, read_only=True,
              runtime=False),
    ParamSpec("nms_iou", PostprocessConfig.nms_iou, "hard mask NMS IoU threshold", range=(0.05, 1.0)),
    ParamSpec("final_nms_sigma", PostprocessConfig.final_nms_sigma, "final Matrix NMS on the final (completed) "
              "amodal masks' IoU after re-scoring: decays a second query of one object whose visible mask differs "
              "(0 = off)", range=(0.0, 20.0)),
    ParamSpec("refine_masks", PostprocessConfig.refine, "refine the full-resolution masks along the image's "
              "edges (colour guided filter); false = plain bilinear upsampling", read_only=True, runtime=False),
    ParamSpec("complete_hidden", True, "decide each object's extent behind the other objects with the "
              "checkpoint's hidden-part completion network (if it has one); false = the model's own amodal "
              "masks", read_only=True, runtime=False),
    ParamSpec("completion_flip", False, "run the completion network also on each crop's mirror image and "
              "average (+0.2 held-out occluded AP; about twice its time: some 50 ms more at 7 objects on 2 CPU "
              "cores, about 1 ms on a GPU)", read_only=True, runtime=False),
    ParamSpec("reclassify", True, "re-read each object's class with the checkpoint's class re-reading network "
              "(if it has one), from a crop of the image and of the final masks; false = the queries' classes",
              read_only=True, runtime=False),
    # --- inputs ---
    ParamSpec("use_compressed", False, "subscribe to sensor_msgs/CompressedImage on /camera/image_raw/compressed "
              "instead of sensor_msgs/Image on /camera/image_raw", read_only=True, runtime=False),
    ParamSpec("qos_reliability", "best_effort", "reliability of the input subscriptions (sensor-data profile "
              "= best_effort; reliable only matches reliable publishers)", choices=("best_effort", "reliable"),
              read_only=True, runtime=False),
    ParamSpec("qos_depth", 5, "history depth of the input subscriptions", range=(1, 100), read_only=True,
              runtime=False),
    ParamSpec("max_cloud_points", 1_000_000, "a PointCloud2 with more points (width x height) is refused and "
              "counted (cloud_too_large); bounds the node's memory", range=(1000, 100_000_000)),
    ParamSpec("input_timeout_s", 3.0, "warn when an input topic is silent this long [s]", range=(0.1, 3600.0)),
    # --- synchronisation ---
    ParamSpec("sync_tolerance_s", 0.05, "pair an image with the nearest cloud within this stamp difference [s]",
              range=(0.0, 1.0)),
    ParamSpec("sync_cloud_wait_s", 0.2, "longest wall time an image waits for its cloud, from its own arrival [s]",
              range=(0.0, 5.0)),
    ParamSpec("sync_max_frame_age_s", 2.0, "drop a pending image older than this (wall time) [s]",
              range=(0.05, 600.0)),
    ParamSpec("sync_cloud_cache_size", 10, "clouds kept for pairing", range=(1, 100)),
    ParamSpec("sync_time_jump_s", 0.5, "a stamp this much older than the previous one resets the caches "
              "(bag loop) [s]", range=(0.001, 3600.0)),
    # --- frames / extrinsics ---
    ParamSpec("base_frame", "base_link", "robot frame of 3-D outputs, markers and grids", read_only=True,
              runtime=False),
    ParamSpec("camera_frame", "", "camera optical frame; empty = the image header's frame_id", read_only=True,
              runtime=False),
    ParamSpec("lidar_frame", "", "LiDAR frame; empty = the cloud header's frame_id", read_only=True, runtime=False),
    ParamSpec("extrinsics_source", "auto", "auto (tf2 when tf2_ros is importable, else parameters), tf or params",
              choices=("auto", "tf", "params"), read_only=True, runtime=False),
    ParamSpec("tf_timeout_s", 0.05, "tf2 lookup timeout [s]", range=(0.0, 5.0)),
    ParamSpec("T_camera_lidar", ZERO16, "lidar -> camera optical frame, 16 floats row-major "
              "(p_camera = T @ p_lidar); all zeros = not set"),
    ParamSpec("T_base_camera", ZERO16, "camera optical frame -> base_frame, 16 floats row-major "
              "(p_base = T @ p_camera); all zeros = not set"),
    # --- fusion / BEV ---
    ParamSpec("fusion_preset", "street", "built-in fusion settings: street (40 x 40 m, 0.2 m cells) or "
              "tabletop (2 x 2 m, 1 cm cells)", choices=("street", "tabletop")),
    ParamSpec("fusion_config", "", "fusion YAML (config/fusion.yaml layout); replaces fusion_preset when set"),
    ParamSpec("bev_x_range", (0.0, 0.0), "BEV x extent [min, max] in base_frame [m]; [0, 0] = preset's"),
    ParamSpec("bev_y_range", (0.0, 0.0), "BEV y extent [min, max] in base_frame [m]; [0, 0] = preset's"),
    ParamSpec("bev_resolution", 0.0, "BEV cell size [m]; 0 = preset's", range=(0.0, 10.0)),
    ParamSpec("inferred_value", 0, "OccupancyGrid value of cells inferred from amodal masks (1..99); "
              "0 = preset's (70)", range=(0, 99)),
    # --- outputs ---
    ParamSpec("publish_graph", True, "publish ~/occlusion_graph"),
    ParamSpec("publish_bev_grid", True, "publish ~/bev_grid"),
    ParamSpec("publish_occupancy", True, "publish ~/occupancy (nav_msgs/OccupancyGrid)"),
    ParamSpec("publish_markers", True, "publish ~/markers"),
    ParamSpec("publish_overlay", True, "publish ~/overlay (rendered only while someone subscribes)"),
    ParamSpec("publish_instance_points", True, "publish ~/instance_points"),
    ParamSpec("marker_lifetime_s", 0.0, "marker lifetime [s] (0 = until the next frame's DELETEALL)",
              range=(0.0, 60.0)),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics [s]", range=(0.1, 60.0), read_only=True,
              runtime=False),
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
