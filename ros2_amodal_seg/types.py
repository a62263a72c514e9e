"""Plain dataclasses shared by the model, the fusion core and the ROS layer.

These mirror the custom messages in ``msg/`` one to one, so that the node only
converts (``ros2_amodal_seg.ros.conversions``) and never computes. No ROS import.

Conventions:
    * masks are full-image ``[H, W]`` bool arrays, row 0 at the top;
    * 3-D quantities are float64 metres in the frame named by ``frame_id``;
    * unknown scalars are NaN (never 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ros2_amodal_seg.errors import InvalidInputError


@dataclass
class Instances2D:
    """Model output for one image (numpy, CPU), after post-processing.

    Attributes:
        amodal_masks: ``[N, H, W]`` bool, full object extent incl. hidden part.
        visible_masks: ``[N, H, W]`` bool, subset of the amodal masks.
        class_ids: ``[N]`` int64, category ids (1..5 for the synthetic world).
        scores: ``[N]`` float32 in [0, 1].
        occlusion_rates: ``[N]`` float32 in [0, 1] (predicted).
        order_scores: ``[N]`` float32, relative depth score; **smaller = nearer**.
        alt_class_ids: ``[N, A]`` int64, the runner-up classes of each instance (most likely
            first; A = 0 when the model gives none). Same masks, another reading of the class:
            evaluation may report them as extra, lower-scored detections (``predict --classes-per-instance``).
        alt_scores: ``[N, A]`` float32, their scores on the same scale as ``scores``.
    """

    amodal_masks: np.ndarray
    visible_masks: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    occlusion_rates: np.ndarray
    order_scores: np.ndarray
    alt_class_ids: np.ndarray | None = None
    alt_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.class_ids)
        if self.alt_class_ids is None:
            self.alt_class_ids = np.zeros((n, 0), np.int64)
        if self.alt_scores is None:
            self.alt_scores = np.zeros(self.alt_class_ids.shape, np.float32)
        if self.alt_class_ids.shape != self.alt_scores.shape or self.alt_class_ids.shape[:1] != (n,):
            raise InvalidInputError(f"alt_class_ids {self.alt_class_ids.shape} and alt_scores "
                                    f"{self.alt_scores.shape} must both be [N={n}, A]")
        if self.amodal_masks.ndim != 3 or self.amodal_masks.shape != self.visible_masks.shape:
            raise InvalidInputError(
                f"amodal {self.amodal_masks.shape} and visible {self.visible_masks.shape} masks must both be [N, H, W]")
        for name in ("amodal_masks", "visible_masks", "scores", "occlusion_rates", "order_scores"):
            if len(getattr(self, name)) != n:
                raise InvalidInputError(f"{name} has {len(getattr(self, name))} entries, class_ids has {n}")

    def __len__(self) -> int:
        return len(self.class_ids)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the masks."""
        return int(self.amodal_masks.shape[1]), int(self.amodal_masks.shape[2])

    @staticmethod
    def empty(height: int, width: int) -> "Instances2D":
        """No instance, for an image of ``height x width``."""
        return Instances2D(
            amodal_masks=np.zeros((0, height, width), bool), visible_masks=np.zeros((0, height, width), bool),
            class_ids=np.zeros(0, np.int64), scores=np.zeros(0, np.float32),
            occlusion_rates=np.zeros(0, np.float32), order_scores=np.zeros(0, np.float32))

    def select(self, keep: np.ndarray) -> "Instances2D":
        """Subset by an index or bool array."""
        return Instances2D(self.amodal_masks[keep], self.visible_masks[keep], self.class_ids[keep],
                           self.scores[keep], self.occlusion_rates[keep], self.order_scores[keep],
                           self.alt_class_ids[keep], self.alt_scores[keep])


@dataclass
class AmodalInstanceData:
    """Mirror of ``msg/AmodalInstance.msg`` (see there for field meanings)."""

    id: int
    class_id: int
    class_name: str
    score: float
    occlusion_rate: float
    amodal_mask: np.ndarray          # [H, W] bool, full image
    visible_mask: np.ndarray         # [H, W] bool, full image
    depth_rank: int = 0              # 0 = nearest
    depth_m: float = float("nan")    # camera-z median depth [m], NaN unknown
    order_score: float = float("nan")
    frame_id: str = "base_link"      # frame of centroid / box / footprint
    centroid: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))        # [3] m
    box_size: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))        # [3] m (x, y, z extents)
    box_orientation: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))  # [4] xyzw
    num_points: int = 0              # LiDAR points that support the 3-D estimate
    footprint: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))         # [K, 2] m, ground polygon
    occluded_by: list[int] = field(default_factory=list)  # ids of occluders


@dataclass
class AmodalInstanceArrayData:
    """Mirror of ``msg/AmodalInstanceArray.msg``; header stamp/frame are the image's."""

    stamp_ns: int
    frame_id: str
    image_height: int
    image_width: int
    instances: list[AmodalInstanceData] = field(default_factory=list)


@dataclass
class OcclusionEdgeData:
    """Mirror of ``msg/OcclusionEdge.msg``: ``occluder_id`` is in front of ``occludee_id``."""

    occluder_id: int
    occludee_id: int
    overlap_px: int
    confidence: float
    source: int = 0  # bit mask of OcclusionEdge.SOURCE_* (1 mask, 2 model, 4 lidar)


@dataclass
class OcclusionGraphData:
    """Mirror of ``msg/OcclusionGraph.msg``: an acyclic graph plus a front-to-back order."""

    stamp_ns: int
    frame_id: str
    edges: list[OcclusionEdgeData] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # instance ids, nearest first


#: Layer names every BevGrid carries, in this order (more may follow).
BEV_LAYERS: tuple[str, ...] = ("occupancy", "inferred_occupancy", "instance_id", "class_id", "height")


@dataclass
class BevGridData:
    """Mirror of ``msg/BevGrid.msg``.

    Attributes:
        layers: name -> ``[rows, cols]`` float32 array. Row index grows with y,
            column index with x (``nav_msgs/OccupancyGrid`` convention: cell (r, c)
            covers ``origin + (c * res, r * res)``). Values:
            occupancy NaN unknown / 0 free / 1 occupied; inferred_occupancy 0/1;
            instance_id and class_id 0 = none; height metres above ground, NaN unknown.
        resolution: cell edge [m]. origin_xy: ``[2]`` m, lower-left corner of cell (0, 0)
            in ``frame_id``.
    """

    stamp_ns: int
    frame_id: str
    resolution: float
    origin_xy: np.ndarray
    layers: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of every layer."""
        first = next(iter(self.layers.values()))
        return int(first.shape[0]), int(first.shape[1])
