"""Synthetic sensor world: scenes rendered with Open3D RaycastingScene (no ROS imports).

``render_frame(preset, seed, width, height, lidar=True, split="train") -> Frame`` is the entry
point; presets ``tabletop`` / ``street`` (world version 2, real textured models) and
``shapes-tabletop`` / ``shapes-street`` (version 1, primitives). See ``docs/world.md`` and
``shared/spec/world.md``.
"""
from ros2_amodal_seg.world.render import MIN_VISIBLE_PIXELS, Frame, render_frame, render_scene
from ros2_amodal_seg.world.scene import SceneSpec, build_scene

__all__ = ["Frame", "render_frame", "render_scene", "build_scene", "SceneSpec", "MIN_VISIBLE_PIXELS"]
