"""The data of one realistic scene (world.md version 2): objects, background structure,
camera rig, lighting and camera imaging. Built by :mod:`ros2_amodal_seg.world.compose`,
rendered by :mod:`ros2_amodal_seg.world.render_v2`. No ROS imports.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.world.imaging import Imaging
from ros2_amodal_seg.world.presets import REF_WIDTH, PresetConfig
from ros2_amodal_seg.world.surfaces import SurfaceMesh


@dataclass
class WorldObject:
    """One annotated object instance.

    Attributes:
        instance_id: >= 1, unique in the scene (1..M in order).
        category_id: world.md class id (1..13).
        asset: catalogue id or procedural family (``"procedural:traffic_cone/3"``).
        mesh: the textured mesh in base_link (``mesh.vertices`` ``[V, 3]`` float64 [m],
            ``mesh.triangles`` ``[T, 3]`` int32).
        center_base: ``[3]`` float64 centre of its yaw-frame bounding box in base_link [m].
        size: ``[3]`` float64 extents along its yaw frame's (x, y, z) [m].
        yaw: yaw of its frame about base_link z [rad].
        footprint: ``[K, 2]`` float64 CCW convex hull of the vertices' (x, y) in base_link [m].
        pose: ``"upright"`` or ``"lying"``.
    """

    instance_id: int
    category_id: int
    asset: str
    mesh: SurfaceMesh
    center_base: np.ndarray
    size: np.ndarray
    yaw: float
    footprint: np.ndarray
    pose: str = "upright"


@dataclass
class Structure:
    """Unannotated background structure (instance id 0): ground, table, walls, buildings, trees.

    Attributes:
        kind: what it is (``"ground"``, ``"road"``, ``"table"``, ``"wall"``, ``"building"``,
            ``"tree"``, ``"furniture"``, ...).
        mesh: the textured mesh in base_link.
        footprint: ``[K, 2]`` float64 CCW outline on the ground [m] where objects must not
            be placed, or None (ground planes).
    """

    kind: str
    mesh: SurfaceMesh
    footprint: np.ndarray | None = None


@dataclass(frozen=True)
class Lighting:
    """Lights and sky of one image (linear RGB unless said otherwise).

    Attributes:
        key_dir: ``[3]`` float64 unit vector in base_link pointing TOWARDS the key light.
        key_kelvin: key light colour temperature [K] (3000-7500).
        key_rgb: ``[3]`` key light colour x intensity.
        fill_dir: ``[3]`` unit vector towards the fill light (casts no shadow).
        fill_rgb: ``[3]`` fill light colour x intensity (zeros: no fill light).
        ambient_rgb: ``[3]`` ambient light.
        sky_horizon, sky_zenith: ``[3]`` display-space sky colours at the horizon and zenith.
        clouds: cloud cover in [0, 1] (0 clear); cloud_seed: seed of the cloud pattern.
    """

    key_dir: np.ndarray
    key_kelvin: float
    key_rgb: np.ndarray
    fill_dir: np.ndarray
    fill_rgb: np.ndarray
    ambient_rgb: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    clouds: float
    cloud_seed: int


@dataclass
class WorldScene:
    """Everything needed to render one realistic frame.

    Attributes:
        preset, split, seed: where it came from (the scene depends on nothing else, but the
            camera rig may come from ``extras["rig_seed"]``). cfg: the preset's config.
        objects: the annotated instances (ids 1..M in order). structures: background (id 0).
        fx_ref: focal length [px] at 640 px width; pp_offset: ``[2]`` principal-point offset
            from the image centre [px] at 640 px width.
        T_base_camera: ``[4, 4]`` float64 camera_optical_frame -> base_link.
        T_camera_lidar: ``[4, 4]`` float64 lidar -> camera_optical_frame (fixed per preset).
        lighting, imaging: the image's lights and camera settings.
        extras: ``rig_seed``, ``skipped_assets`` (assets that failed to load) and placement notes.
    """

    preset: str
    split: str
    seed: int
    cfg: PresetConfig
    objects: list[WorldObject]
    structures: list[Structure]
    fx_ref: float
    pp_offset: np.ndarray
    T_base_camera: np.ndarray
    T_camera_lidar: np.ndarray
    lighting: Lighting
    imaging: Imaging
    extras: dict = field(default_factory=dict)

    @property
    def T_base_lidar(self) -> np.ndarray:
        """``[4, 4]`` float64 lidar -> base_link."""
        return self.T_base_camera @ self.T_camera_lidar

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """``[3, 3]`` float64 K for an image of ``width`` x ``height`` px (FOV kept at any size)."""
        s = width / REF_WIDTH
        fx = self.fx_ref * s
        cx = (width - 1) / 2.0 + self.pp_offset[0] * s
        cy = (height - 1) / 2.0 + self.pp_offset[1] * s
        return np.array([[fx, 0.0, cx], [0.0, fx, cy], [0.0, 0.0, 1.0]])
