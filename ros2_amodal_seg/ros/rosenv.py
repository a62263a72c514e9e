"""Environment for every ROS process that tests and scripts start.

DDS must stay on this machine: discovery range LOCALHOST, a ROS_DOMAIN_ID of the
caller's choosing, and the loopback Fast DDS profile shipped in ``config/``.
(No rclpy import here, so the core can use it to spawn ROS processes.)
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]

#: the variables :func:`loopback_ros_env` sets that decide where DDS talks.
ROS_ENV_KEYS: tuple[str, ...] = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE",
                                 "RMW_FASTRTPS_USE_QOS_FROM_XML", "RMW_IMPLEMENTATION")


def fastdds_profile_path() -> Path:
    """The loopback Fast DDS profile: the source tree's ``config/`` or the installed share dir."""
    candidates = [PACKAGE_ROOT / "config" / "fastdds_loopback.xml"]
    prefix = os.environ.get("AMENT_PREFIX_PATH", "")
    candidates += [Path(p) / "share" / "ros2_amodal_seg" / "config" / "fastdds_loopback.xml"
                   for p in prefix.split(os.pathsep) if p]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("config/fastdds_loopback.xml not found in the source tree or AMENT_PREFIX_PATH")


def loopback_ros_env(domain_id: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) set up for loopback-only DDS.

    Args:
        domain_id: ROS_DOMAIN_ID, 0..101 (each test/script picks its own).
    """
    if not 0 <= int(domain_id) <= 101:
        raise ValueError(f"ROS_DOMAIN_ID must be in 0..101, got {domain_id}")
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(int(domain_id))
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile_path())
    env["RMW_FASTRTPS_USE_QOS_FROM_XML"] = "1"   # the profile's reader / writer memory policies
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def apply_loopback_ros_env(domain_id: int) -> None:
    """Set the loopback variables in this process (call before ``rclpy.init``)."""
    env = loopback_ros_env(domain_id)
    os.environ.update({k: env[k] for k in ROS_ENV_KEYS + ("PYTHONUNBUFFERED",)})
