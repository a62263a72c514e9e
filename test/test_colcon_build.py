"""The package builds with colcon in a temporary ROS 2 workspace (as on a robot), and the
generated message types and the Python package import from the install space."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
PACKAGE_FILES = ["package.xml", "CMakeLists.txt", "msg", "ros2_amodal_seg", "scripts", "launch", "config"]

pytestmark = pytest.mark.slow


def test_colcon_build_and_import(tmp_path):
    colcon = shutil.which("colcon", path=str(VENV / "bin"))
    assert colcon, "colcon (colcon-common-extensions) must be installed in the venv"
    src = tmp_path / "ws" / "src" / "ros2_amodal_seg"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.safetensors")
    for name in PACKAGE_FILES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        elif p.exists():
            shutil.copy2(p, src / name)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV),
               PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    ws = tmp_path / "ws"
    r = subprocess.run([colcon, "build", "--packages-select", "ros2_amodal_seg", "--event-handlers", "console_direct+",
                        "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                       cwd=ws, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]

    prefix = ws / "install" / "ros2_amodal_seg"
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = prefix / "lib" / pyver / "site-packages"
    assert (site / "ros2_amodal_seg" / "msg" / "_amodal_instance.py").is_file()
    assert (site / "ros2_amodal_seg" / "ros" / "conversions.py").is_file(), "Python package not installed"
    assert (prefix / "lib" / "ros2_amodal_seg" / "amodal_seg_node").is_file(), "ros2 run executable missing"
    assert (prefix / "share" / "ros2_amodal_seg" / "package.xml").is_file()
    assert (prefix / "share" / "ros2_amodal_seg" / "msg" / "AmodalInstance.msg").is_file()

    code = ("import ros2_amodal_seg.msg as m, ros2_amodal_seg.ros.conversions as c; "
            "from rclpy.serialization import serialize_message, deserialize_message; "
            "a = m.AmodalInstanceArray(image_height=3); a.instances.append(m.AmodalInstance(id=7)); "
            "b = deserialize_message(serialize_message(a), m.AmodalInstanceArray); "
            "assert b.instances[0].id == 7 and b.image_height == 3; "
            "print(m.__file__, c.__file__)")
    run_env = dict(env, PYTHONPATH=str(site),
                   LD_LIBRARY_PATH=f"{prefix / 'lib'}{os.pathsep}{VENV / 'lib'}",
                   AMENT_PREFIX_PATH=f"{prefix}{os.pathsep}{VENV}")
    run_env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    r = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    msg_file, conv_file = r.stdout.split()
    assert msg_file.startswith(str(site)), f"generated types imported from {msg_file}, not the colcon install"
    assert conv_file.startswith(str(site)), f"package imported from {conv_file}, not the colcon install"
