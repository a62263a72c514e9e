"""Rotation <-> quaternion helpers shared by the core and the ROS layer (no ROS imports).

Quaternions are ``[4]`` float64 in ROS order (x, y, z, w).
"""
from __future__ import annotations

import numpy as np

from ros2_amodal_seg.errors import GeometryError


def rotation_to_quaternion(R: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation -> ``[4]`` quaternion (x, y, z, w), w >= 0."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(R, dtype=np.float64)).as_quat()
    return -q if q[3] < 0 else q


def quaternion_to_rotation(q) -> np.ndarray:
    """``[4]`` quaternion (x, y, z, w), normalised here -> ``[3, 3]`` rotation.

    Raises:
        GeometryError: a zero-length quaternion.
    """
    from scipy.spatial.transform import Rotation

    q = np.asarray(q, dtype=np.float64).reshape(4)
    if np.linalg.norm(q) < 1e-9:
        raise GeometryError("zero-length quaternion")
    return Rotation.from_quat(q).as_matrix()
