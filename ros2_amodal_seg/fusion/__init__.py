"""LiDAR-camera fusion, depth order and BEV grid (no ROS imports)."""
