"""The one in-memory form every dataset loader produces (no ROS imports).

Loaders (project format, COCOA "regions", detectron-style UOAIS/D2SA) all return
:class:`AmodalDataset`; the model's training/eval code and the tests consume it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def read_rgb(path: str | Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB from an image file (DatasetError if it cannot be read)."""
    import cv2

    from ros2_amodal_seg.errors import DatasetError

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read an image from {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass
class AmodalAnnotation:
    """One ground-truth object.

    Attributes:
        id: annotation id (unique in the dataset).
        category_id: class id; ``category_name`` its name.
        amodal: ``[H, W]`` bool, full extent clipped to the image.
        visible: ``[H, W]`` bool, subset of ``amodal``.
        occlude_rate: ``1 - |visible| / |amodal|`` in [0, 1].
        occluded_by: annotation ids of this object's occluders.
        order: front-to-back rank when the source gives one (COCOA), else -1.
        footprint: ``[K, 2]`` float64 ground outline in base_link [m], or None.
        asset: the model the object was rendered from (catalogue id or procedural family),
            or None (world version 1, other datasets).
    """

    id: int
    category_id: int
    category_name: str
    amodal: np.ndarray
    visible: np.ndarray
    occlude_rate: float
    occluded_by: list[int] = field(default_factory=list)
    order: int = -1
    footprint: np.ndarray | None = None
    asset: str | None = None


@dataclass
class AmodalSample:
    """One image with its annotations and (optionally) sensor data.

    Attributes:
        image_id: id in the dataset. file_name: path of the image file.
        width, height: image size [px].
        annotations: the objects (may be empty).
        K: ``[3, 3]`` float64 intrinsics or None; D: ``[5]`` plumb_bob or None.
        T_camera_lidar, T_base_camera: ``[4, 4]`` float64 or None.
        lidar_file: path of an ``[N, 4]`` float32 x y z intensity .npy (lidar frame) or None.
        preset: the world preset ("tabletop", "street", "shapes-tabletop", "shapes-street") or None.
        split: "train" / "test" (held-out models and textures of world version 2) or None.
    """

    image_id: int
    file_name: Path
    width: int
    height: int
    annotations: list[AmodalAnnotation] = field(default_factory=list)
    K: np.ndarray | None = None
    D: np.ndarray | None = None
    T_camera_lidar: np.ndarray | None = None
    T_base_camera: np.ndarray | None = None
    lidar_file: Path | None = None
    preset: str | None = None
    split: str | None = None

    def load_image(self) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB."""
        return read_rgb(self.file_name)

    def load_lidar(self) -> np.ndarray | None:
        """``[N, 4]`` float32 (x, y, z, intensity) in the lidar frame, or None."""
        if self.lidar_file is None:
            return None
        return np.load(self.lidar_file).astype(np.float32)


@dataclass
class AmodalDataset:
    """A list of samples plus the category table."""

    categories: dict[int, str]
    samples: list[AmodalSample]
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> AmodalSample:
        return self.samples[i]
