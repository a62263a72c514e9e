"""The ROS-free core never imports rclpy or message packages (thin node over a core)."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ros2_amodal_seg"
FORBIDDEN_PREFIXES = ("rclpy", "rosidl", "tf2_ros", "launch", "message_filters", "ros2_amodal_seg.msg",
                      "std_msgs", "sensor_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs",
                      "diagnostic_msgs", "builtin_interfaces", "lifecycle_msgs", "rosgraph_msgs", "tf2_msgs")
ALLOWED_ROS_LAYER_IMPORTS = ("ros2_amodal_seg.ros.rosenv",)  # pure env helper, no rclpy


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def test_core_modules_do_not_import_ros():
    core = [p for p in PKG.rglob("*.py") if "ros" not in p.relative_to(PKG).parts[:1]]
    assert len(core) >= 5
    bad = []
    for p in core:
        for name in _imports(p):
            if name.startswith(FORBIDDEN_PREFIXES) or (name.startswith("ros2_amodal_seg.ros")
                                                       and not name.startswith(ALLOWED_ROS_LAYER_IMPORTS)):
                bad.append(f"{p.relative_to(PKG)}: {name}")
    assert not bad, "core modules import ROS:\n" + "\n".join(bad)


def test_rosenv_has_no_rclpy():
    assert not any(n.startswith("rclpy") for n in _imports(PKG / "ros" / "rosenv.py"))
