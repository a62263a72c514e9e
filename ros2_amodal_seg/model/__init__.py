"""Occlusion-aware Mask2Former-style amodal segmentation model (no ROS imports)."""
