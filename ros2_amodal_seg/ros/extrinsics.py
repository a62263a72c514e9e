"""Where the node's extrinsics come from: tf2 (on a robot) or its ``T_*`` parameters.

``extrinsics_source: auto`` uses tf2 (``camera <- lidar``, ``base_frame <- camera``, latest
transform) when ``tf2_ros`` is importable (always on a robot), else the parameters
``T_camera_lidar`` / ``T_base_camera``. With tf2 the parameters are the fallback when a lookup
fails; every failed lookup is counted (``tf_failures``) and warned about (throttled).
"""
from __future__ import annotations

import numpy as np

from ros2_amodal_seg.ros import conversions as conv
from ros2_amodal_seg.runtime.params import check_transform

try:  # always present on a robot; not installable in the pip-only dev environment
    import tf2_ros  # noqa: F401
    HAVE_TF2 = True
except ImportError:
    HAVE_TF2 = False


class ExtrinsicsProvider:
    """``provider(camera_frame, lidar_frame) -> (T_camera_lidar, T_base_camera)`` (each ``[4, 4]``
    float64 or None), from tf2 or the node's parameters.

    Args:
        node: the node (parameters ``extrinsics_source``, ``T_*``, ``base_frame``, ``tf_timeout_s``).
        health: :class:`~ros2_amodal_seg.runtime.health.Health` for ``tf_failures``.
    """

    def __init__(self, node, health) -> None:
        self.node = node
        self.health = health
        self._buffer = self._listener = None
        log = node.get_logger()
        src = node.get_parameter("extrinsics_source").value
        if src == "auto":
            src = "tf" if HAVE_TF2 else "params"
        if src == "tf" and not HAVE_TF2:
            log.warning("extrinsics_source=tf but tf2_ros is not importable: using parameters")
            src = "params"
        if src == "tf":
            import tf2_ros  # noqa: PLC0415, F811

            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)
        self.source = src
        have = [n for n in ("T_camera_lidar", "T_base_camera") if self._param(n) is not None]
        if src == "tf":
            log.info(f"extrinsics from tf2 (camera <- lidar, base <- camera); parameter fallback for: {have or 'none'}")
        else:
            log.info(f"extrinsics from parameters (tf2_ros {'present' if HAVE_TF2 else 'absent'}); set: {have or 'none'}")
            geometry = node.get_parameter("geometry_source").value
            need = ("T_camera_lidar", "T_base_camera") if geometry == "lidar" else ("T_base_camera",)
            if not set(need) <= set(have):
                log.warning(f"{' / '.join(need)} not set: frames without them are fused partially "
                            "(2-D only without T_base_camera)")

    def _param(self, name: str) -> np.ndarray | None:
        return check_transform(name, self.node.get_parameter(name).value)

    def _lookup(self, target: str, source: str) -> np.ndarray | None:
        from rclpy.duration import Duration  # noqa: PLC0415
        from rclpy.time import Time  # noqa: PLC0415

        timeout = Duration(seconds=float(self.node.get_parameter("tf_timeout_s").value))
        try:
            ts = self._buffer.lookup_transform(target, source, Time(), timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - tf2 raises several exception types (Lookup/Extrapolation/...)
            self.health.counters.inc("tf_failures")
            self.health.warn("tf", f"tf2 lookup {target} <- {source} failed: {exc}")
            return None
        return conv.transform_to_matrix(ts.transform)

    def __call__(self, camera_frame: str, lidar_frame: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        T_cl, T_bc = self._param("T_camera_lidar"), self._param("T_base_camera")
        if self.source == "tf":
            tf_cl = self._lookup(camera_frame, lidar_frame) if lidar_frame else None
            tf_bc = self._lookup(str(self.node.get_parameter("base_frame").value), camera_frame)
            T_cl = tf_cl if tf_cl is not None else T_cl
            T_bc = tf_bc if tf_bc is not None else T_bc
        return T_cl, T_bc
