"""ROS-free runtime core of the node: input synchronisation, the per-frame processor,
statistics and overlay rendering. Nothing here imports rclpy or ROS messages, so it
is unit-tested without ROS; ``ros2_amodal_seg.ros.node`` only converts messages and
calls these classes.
"""
