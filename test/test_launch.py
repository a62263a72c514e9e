"""launch/amodal_seg.launch.py, config/amodal_seg.yaml and config/amodal_seg.rviz without
launch_ros (not installable here): the launch file is parsed, then executed against
recording stand-ins of the launch / launch_ros classes, and everything it sets is
checked against the node's declared parameters and subscriptions."""
from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from ros2_amodal_seg.runtime.params import PARAM_BY_NAME, PARAMS

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "amodal_seg.launch.py"
YAML = REPO / "config" / "amodal_seg.yaml"
RVIZ = REPO / "config" / "amodal_seg.rviz"
BUILTIN_PARAMS = {"use_sim_time"}   # declared by every rclpy node
NODE_INPUTS = {"/camera/image_raw", "/camera/image_raw/compressed", "/camera/camera_info", "/lidar/points",
               "/camera/depth/image_raw"}
NODE_OUTPUTS = {"instances", "occlusion_graph", "bev_grid", "occupancy", "markers", "overlay", "instance_points"}


class _Rec:
    """Records its constructor arguments (stand-in for launch / launch_ros classes)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_modules(share: Path) -> dict[str, types.ModuleType]:
    names = {
        "launch": ["LaunchDescription"], "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
        "launch.conditions": ["IfCondition"], "launch.substitutions": ["LaunchConfiguration"],
        "launch_ros.actions": ["LifecycleNode", "Node"], "launch_ros": [],
        "ament_index_python.packages": ["get_package_share_directory"], "ament_index_python": [],
    }
    mods = {}
    for mod, classes in names.items():
        m = types.ModuleType(mod)
        for c in classes:
            setattr(m, c, type(c, (_Rec,), {}))
        mods[mod] = m
    mods["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share)
    return mods


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    share = tmp_path_factory.mktemp("share")
    with pytest.MonkeyPatch.context() as mp:
        for name, mod in _fake_modules(share).items():
            mp.setitem(sys.modules, name, mod)
        spec = importlib.util.spec_from_file_location("amodal_seg_launch", LAUNCH)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        ld = mod.generate_launch_description()
    return ld, share


def _by_type(ld, name):
    return [e for e in ld.args[0] if type(e).__name__ == name]


def test_launch_file_is_valid_python_with_a_generate_function():
    tree = ast.parse(LAUNCH.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_launch_arguments(described):
    ld, _ = described
    names = {a.args[0] for a in _by_type(ld, "DeclareLaunchArgument")}
    assert {"params_file", "device", "namespace", "image", "camera_info", "points", "use_sim_time",
            "rviz"} <= names
    for a in _by_type(ld, "DeclareLaunchArgument"):
        assert a.kwargs.get("description"), a.args[0]
    defaults = {a.args[0]: a.kwargs["default_value"] for a in _by_type(ld, "DeclareLaunchArgument")}
    assert defaults["rviz"] == "false" and defaults["use_loopback_dds"] == "false"
    assert defaults["params_file"].endswith("config/amodal_seg.yaml")


def test_launch_node_parameters_and_remaps_match_the_node(described):
    from ros2_amodal_seg.ros import node as node_mod

    ld, _ = described
    (node,) = _by_type(ld, "LifecycleNode")
    assert node.kwargs["package"] == "ros2_amodal_seg" and node.kwargs["executable"] == "amodal_seg_node"
    assert node.kwargs["name"] == node_mod.NODE_NAME
    yaml_params = set(yaml.safe_load(YAML.read_text())["/**"]["ros__parameters"])
    set_params = set()
    for p in node.kwargs["parameters"]:
        if isinstance(p, dict):
            set_params |= set(p)
    assert set_params, "the launch file sets no parameter"
    for name in set_params:
        assert name in yaml_params, f"{name} set by the launch file but not in config/amodal_seg.yaml"
        assert name in PARAM_BY_NAME or name in BUILTIN_PARAMS, f"{name} is not declared by the node"
    from ros2_amodal_seg.ros import sensors

    subscribed = {sensors.TOPIC_IMAGE, sensors.TOPIC_IMAGE_COMPRESSED, sensors.TOPIC_CAMERA_INFO, sensors.TOPIC_POINTS,
                  sensors.TOPIC_DEPTH}
    assert subscribed == NODE_INPUTS
    remapped = {src for src, _ in node.kwargs["remappings"]}
    assert remapped <= subscribed and {"/camera/image_raw", "/camera/camera_info", "/lidar/points"} <= remapped
    # setup.py's console script and the ros2-run script point at the node's main
    assert "amodal_seg_node = ros2_amodal_seg.ros.node:main" in (REPO / "setup.py").read_text()
    assert "ros2_amodal_seg.ros.node import main" in (REPO / "scripts" / "amodal_seg_node").read_text()


def test_launch_rviz_and_loopback_are_conditional(described):
    ld, share = described
    (rviz,) = [n for n in _by_type(ld, "Node") if n.kwargs.get("executable") == "rviz2"]
    assert type(rviz.kwargs["condition"]).__name__ == "IfCondition"
    envs = {e.args[0]: e for e in _by_type(ld, "SetEnvironmentVariable")}
    assert set(envs) == {"FASTDDS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML"}
    assert envs["FASTDDS_DEFAULT_PROFILES_FILE"].args[1].endswith("config/fastdds_loopback.xml")
    assert envs["RMW_FASTRTPS_USE_QOS_FROM_XML"].args[1] == "1"   # else the profile's memory policies are ignored
    assert all(type(e.kwargs["condition"]).__name__ == "IfCondition" for e in envs.values())


#: the node's parameters the YAML lists: all but inference.* (their defaults are the checkpoint's own)
LISTED = tuple(p for p in PARAMS if p.group != "inference")


def test_yaml_lists_every_parameter_with_its_default():
    params = yaml.safe_load(YAML.read_text())["/**"]["ros__parameters"]
    assert set(params) == {p.name for p in LISTED} | BUILTIN_PARAMS
    for spec in LISTED:
        want = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        assert params[spec.name] == want, spec.name
    text = YAML.read_text()
    assert "inference.score_threshold" in text and "config/inference.yaml" in text   # says where they are
    for spec in LISTED:   # each has a comment line right above it
        lines = text.splitlines()
        i = next(k for k, l in enumerate(lines) if l.strip().startswith(f"{spec.name}:"))
        assert lines[i - 1].strip().startswith("#"), spec.name


@pytest.mark.ros
def test_node_loads_the_params_file(monkeypatch, tmp_path):
    """rcl's YAML parser accepts the file and the node gets exactly its values (a copy with
    a few non-default values, so that the file is seen to be applied)."""
    import rclpy
    from rclpy.parameter import Parameter

    from ros2_amodal_seg.ros.node import AmodalSegNode
    from ros2_amodal_seg.ros.rosenv import loopback_ros_env

    env = loopback_ros_env(64)
    for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE",
              "RMW_FASTRTPS_USE_QOS_FROM_XML"):
        monkeypatch.setenv(k, env[k])
    doc = yaml.safe_load(YAML.read_text())
    params = doc["/**"]["ros__parameters"]
    params.update({"inference.score_threshold": 0.33}, T_camera_lidar=[float(v) for v in np.eye(4).ravel()],
                  bev_x_range=[1.0, 9.0], fusion_preset="tabletop", publish_overlay=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["--ros-args", "--params-file", str(path)])
    try:
        node = AmodalSegNode(context=ctx, parameter_overrides=[Parameter("autostart", value=False)])
        for name, value in params.items():
            if name == "autostart":
                continue
            got = node.get_parameter(name).value
            got = list(got) if hasattr(got, "__len__") and not isinstance(got, str) else got
            assert got == value, name
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_rviz_config_references_the_node_topics():
    cfg = yaml.safe_load(RVIZ.read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "base_link"
    topics = {d["Topic"]["Value"]: d["Class"] for d in vm["Displays"] if "Topic" in d}
    for t in topics:
        assert t.startswith("/amodal_seg/") and t.split("/")[-1] in NODE_OUTPUTS, t
    assert topics == {"/amodal_seg/overlay": "rviz_default_plugins/Image",
                      "/amodal_seg/markers": "rviz_default_plugins/MarkerArray",
                      "/amodal_seg/occupancy": "rviz_default_plugins/Map",
                      "/amodal_seg/instance_points": "rviz_default_plugins/PointCloud2"}
