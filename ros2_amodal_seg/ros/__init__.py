"""The ROS 2 layer: message conversions, the node, bag tools. The only place rclpy is imported."""
