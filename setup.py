"""pip/editable install of the Python package (used by ``make`` into .venv/).

On a robot, colcon builds this package through CMakeLists.txt (ament_cmake:
messages + ``ament_python_install_package``) and does not run this file.
"""
from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "ros2_amodal_seg" / "version.py").read_text(), version)

setup(
    name="ros2_amodal_seg",
    version=version["__version__"],
    description="Amodal instance segmentation with LiDAR fusion and BEV grids for ROS 2",
    license="Apache-2.0",
    packages=find_packages(include=["ros2_amodal_seg", "ros2_amodal_seg.*"], exclude=["ros2_amodal_seg.msg"]),
    package_data={"ros2_amodal_seg": ["weights/*.safetensors", "weights/*.json", "world/*.csv"]},
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "amodal-seg = ros2_amodal_seg.cli:main",
            "amodal_seg_node = ros2_amodal_seg.ros.node:main",
        ],
    },
)
