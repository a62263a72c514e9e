"""Launch the amodal_seg lifecycle node (and optionally rviz2).

    ros2 launch ros2_amodal_seg amodal_seg.launch.py
    ros2 launch ros2_amodal_seg amodal_seg.launch.py device:=cuda rviz:=true \
        image:=/front_cam/image_raw camera_info:=/front_cam/camera_info points:=/velodyne_points

Arguments (``ros2 launch ... --show-args``): params_file, device, namespace, image,
camera_info, points, use_sim_time, autostart, rviz, rviz_config, use_loopback_dds.

The node configures and activates itself (``autostart:=true``); with ``autostart:=false``
drive it with ``ros2 lifecycle set /amodal_seg configure`` / ``activate`` (or a
lifecycle manager).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "ros2_amodal_seg"


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    params_file = LaunchConfiguration("params_file")
    device = LaunchConfiguration("device")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = LaunchConfiguration("use_sim_time")
    autostart = LaunchConfiguration("autostart")
    rviz = LaunchConfiguration("rviz")
    rviz_config = LaunchConfiguration("rviz_config")
    use_loopback_dds = LaunchConfiguration("use_loopback_dds")

    args = [
        DeclareLaunchArgument("params_file", default_value=str(share / "config" / "amodal_seg.yaml"),
                              description="node parameters (config/amodal_seg.yaml layout)"),
        DeclareLaunchArgument("device", default_value="auto", description="inference device: auto, cpu or cuda"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw", description="input sensor_msgs/Image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("points", default_value="/lidar/points", description="input sensor_msgs/PointCloud2 topic"),
        DeclareLaunchArgument("depth", default_value="/camera/depth/image_raw",
                              description="input depth sensor_msgs/Image aligned to the colour camera (16UC1 mm or "
                                          "32FC1 m), used with the parameter geometry_source: depth"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay with --clock)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure + activate the lifecycle node on start"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with config/amodal_seg.rviz"),
        DeclareLaunchArgument("rviz_config", default_value=str(share / "config" / "amodal_seg.rviz"),
                              description="rviz2 configuration"),
        DeclareLaunchArgument("use_loopback_dds", default_value="false",
                              description="set FASTDDS_DEFAULT_PROFILES_FILE to the shipped loopback-only profile "
                                          "(tests / a single machine; keep false on a robot that talks to others)"),
    ]

    loopback_env = [
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", str(share / "config" / "fastdds_loopback.xml"),
                               condition=IfCondition(use_loopback_dds)),
        # the profile's reader / writer memory policies (freed sample buffers) are read only with this
        SetEnvironmentVariable("RMW_FASTRTPS_USE_QOS_FROM_XML", "1", condition=IfCondition(use_loopback_dds))]

    node = LifecycleNode(
        package=PACKAGE,
        executable="amodal_seg_node",
        name="amodal_seg",
        namespace=namespace,
        output="screen",
        parameters=[params_file, {"device": device, "use_sim_time": use_sim_time, "autostart": autostart}],
        remappings=[
            ("/camera/image_raw", LaunchConfiguration("image")),
            ("/camera/image_raw/compressed", [LaunchConfiguration("image"), "/compressed"]),
            ("/camera/camera_info", LaunchConfiguration("camera_info")),
            ("/lidar/points", LaunchConfiguration("points")),
            ("/camera/depth/image_raw", LaunchConfiguration("depth")),
        ],
    )

    rviz_node = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=namespace,
        arguments=["-d", rviz_config],
        parameters=[{"use_sim_time": use_sim_time}],
        output="screen",
        condition=IfCondition(rviz),
    )

    return LaunchDescription(args + loopback_env + [node, rviz_node])
