"""One synchronised frame of checked messages -> the arrays the processor takes (no ROS import).

:class:`FrameAssembler` decodes the image (and, for a compressed one, refuses what does not
decode), takes the last good intrinsics, decodes the paired cloud -- or, with a depth camera as
the 3-D source, back-projects the paired depth image with the CameraInfo's K into camera-frame
points (:func:`~ros2_amodal_seg.fusion.depth.depth_to_points`; ``T_camera_lidar`` is then the
identity, so the fusion runs unchanged) -- looks up the extrinsics and counts every way the frame
falls short of full fusion: no CameraInfo yet, a CameraInfo of another size, the last good
intrinsics used after a refused CameraInfo, NaN points, a depth image of another size than the
colour image, missing extrinsics (remembered with the missing transform's name for the diagnosis).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.errors import ConfigError, InvalidInputError
from ros2_amodal_seg.fusion.depth import GEOMETRY_SOURCES, DepthConfig, depth_to_points
from ros2_amodal_seg.runtime.health import Health
from ros2_amodal_seg.runtime.inputs import (InputGate, compressed_image_to_rgb, depth_msg_to_metres,
                                            image_msg_to_rgb, pointcloud2_to_xyzi)
from ros2_amodal_seg.runtime.processor import FrameInput
from ros2_amodal_seg.runtime.sync import ReadyFrame

#: ``extrinsics(camera_frame, lidar_frame) -> (T_camera_lidar or None, T_base_camera or None)``, ``[4, 4]`` float64.
Extrinsics = Callable[[str, str], tuple[np.ndarray | None, np.ndarray | None]]

#: counters of :class:`FrameAssembler` (reported even while zero).
COUNTERS: tuple[str, ...] = ("no_camera_info", "camera_info_size_mismatch", "clouds_with_nans", "cloud_nan_points",
                             "depth_size_mismatch", "no_extrinsics")


@dataclass(frozen=True)
class GeometryConfig:
    """The node's 3-D source (parameters ``geometry_source``, ``depth_*``).

    Attributes:
        source: ``lidar`` (PointCloud2), ``depth`` (depth image aligned to the colour camera) or
            ``none`` (2-D only).
        depth: back-projection settings of a depth image.
    """

    source: str = "lidar"
    depth: DepthConfig = field(default_factory=DepthConfig)

    def __post_init__(self) -> None:
        if self.source not in GEOMETRY_SOURCES:
            raise ConfigError(f"geometry_source must be one of {list(GEOMETRY_SOURCES)}, got {self.source!r}")


class FrameAssembler:
    """Builds :class:`~ros2_amodal_seg.runtime.processor.FrameInput` from a
    :class:`~ros2_amodal_seg.runtime.sync.ReadyFrame` whose messages passed the receipt checks.

    Args:
        health: where counts and warnings go. gate: the input checks (for a compressed image that
            does not decode, and to know whether the last CameraInfo was refused).
        extrinsics: the frames' transforms (parameters or tf2; the node provides it).
        geometry: the 3-D source (what :attr:`ReadyFrame.cloud` holds); may be replaced at run time.
    """

    def __init__(self, health: Health, gate: InputGate, extrinsics: Extrinsics,
                 geometry: GeometryConfig = GeometryConfig()) -> None:
        self.health = health
        self.gate = gate
        self.extrinsics = extrinsics
        self.geometry = geometry

    def image(self, msg, compressed: bool) -> np.ndarray | None:
        """``[H, W, 3]`` uint8 RGB, or None (a compressed image that does not decode, counted)."""
        if not compressed:
            return image_msg_to_rgb(msg)              # checked at receipt: cannot fail here
        try:
            rgb = compressed_image_to_rgb(msg)
        except InvalidInputError as exc:
            self.gate.refuse("image", "image_decode", str(exc))
            self.health.flag_bad()
            return None
        if min(rgb.shape[:2]) < self.gate.limits.min_image_side:
            self.gate.refuse("image", "image_size", f"decoded image is {rgb.shape[1]}x{rgb.shape[0]}")
            self.health.flag_bad()
            return None
        return rgb

    def __call__(self, frame: ReadyFrame, *, compressed: bool = False, camera_frame: str = "",
                 lidar_frame: str = "", camera_info_topic: str = "camera_info") -> FrameInput | None:
        """The frame's arrays, or None when its image is unusable (counted).

        Args:
            camera_frame / lidar_frame: override the headers' frame ids ("" = the header's).
        """
        h = self.health
        rgb = self.image(frame.image, compressed)
        if rgb is None:
            return None
        H, W = rgb.shape[:2]
        cam = camera_frame or frame.image.header.frame_id or "camera_optical_frame"
        K = D = None
        info = frame.camera_info                      # the last *good* intrinsics (runtime.inputs.Intrinsics)
        if info is None:
            h.counters.inc("no_camera_info")
            h.warn("no_camera_info", f"no valid camera_info on {camera_info_topic} yet: 2-D only")
        elif (info.height, info.width) != (H, W):
            h.bad("camera_info_size_mismatch",
                  f"camera_info is {info.width}x{info.height} but the image is {W}x{H}: frame fused 2-D only")
        else:
            K, D = info.K, info.D
            if self.gate.last_info_bad:
                h.counters.inc("camera_info_fallback")
        pts = None
        lid = ""
        depth = self.geometry.source == "depth"
        if frame.cloud is not None and depth:
            pts = self.depth_points(frame.cloud, (H, W), K, D)
        elif frame.cloud is not None:
            lid = lidar_frame or frame.cloud.header.frame_id
            pts, n_nan = pointcloud2_to_xyzi(frame.cloud)   # checked at receipt: cannot fail here
            if n_nan:            # normal for an organised cloud (NaN = no return): counted, not an error
                h.counters.inc("cloud_nan_points", n_nan)
                n = h.counters.inc("clouds_with_nans")
                h.warn("clouds_with_nans", f"cloud had {n_nan} non-finite point(s), dropped (an organised cloud's "
                                           f"missing returns) [clouds_with_nans: {n}]")
        T_cl, T_bc = self.extrinsics(cam, lid)
        if depth:
            T_cl = np.eye(4)                        # the points are in the camera frame already
        missing = ["T_base_camera"] if T_bc is None else []
        if pts is not None and T_cl is None:
            missing.append("T_camera_lidar")
        if missing:
            h.counters.inc("no_extrinsics")
            h.mark("no_extrinsics", f"{' and '.join(missing)} ({cam}{' <- ' + lid if lid else ''})")
            h.warn("no_extrinsics", f"missing extrinsics ({', '.join(missing)}): set the parameters or publish tf")
        return FrameInput(image_rgb=rgb, stamp_ns=frame.image_stamp_ns, camera_frame=cam, K=K, D=D,
                          points_lidar=pts, T_camera_lidar=T_cl, T_base_camera=T_bc)

    def depth_points(self, msg, size: tuple[int, int], K: np.ndarray | None, D: np.ndarray | None
                     ) -> np.ndarray | None:
        """A checked depth image -> ``[N, 4]`` float32 camera-frame points [m] (intensity 0), or None:
        no intrinsics (counted as ``no_camera_info``) or a depth image of another size than the
        colour image ``size`` = ``(H, W)`` (counted ``depth_size_mismatch``: the frame is 2-D only)."""
        if (int(msg.height), int(msg.width)) != tuple(size):
            self.health.bad("depth_size_mismatch", f"depth image is {msg.width}x{msg.height} but the colour image "
                                                   f"is {size[1]}x{size[0]}: it must be aligned to the colour "
                                                   "camera (e.g. RealSense align_depth); frame fused 2-D only")
            return None
        if K is None:
            return None
        g = self.geometry.depth
        return depth_to_points(depth_msg_to_metres(msg), K, g.stride, D, min_depth_m=g.min_depth_m,
                               max_depth_m=g.max_depth_m)
