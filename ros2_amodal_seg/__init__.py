"""ros2_amodal_seg: amodal instance segmentation + LiDAR fusion for ROS 2.

The core (``model``, ``fusion``, ``world``, ``data`` and the top-level helper
modules) never imports rclpy or message types; only ``ros2_amodal_seg.ros``
does.

The generated message module ``ros2_amodal_seg.msg`` is installed by the
CMake/rosidl build into a different site-packages directory than this source
tree (editable install), so the package ``__path__`` is extended to every
``ros2_amodal_seg`` directory on ``sys.path``.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)  # noqa: F821  (lets ros2_amodal_seg.msg be found)

from ros2_amodal_seg.version import __version__  # noqa: E402

__all__ = ["__version__"]
