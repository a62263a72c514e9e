"""Write rendered frames as a dataset in the project's format (shared/spec/formats.md).

Layout of ``DIR``::

    annotations.json            COCO-style JSON with amodal fields
    images/000001.png           RGB (rgb8 pixels)
    lidar/000001.npy            float32 [N, 4] x y z intensity, lidar frame
    lidar/000001_ids.npy        int32 [N] ground-truth instance id per point (0 = background)

Dataset annotation ids are ``image_id * 1000 + instance_id`` (unique in the dataset);
``instance_id`` is also stored. No ROS imports.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ros2_amodal_seg import masks as mask_utils
from ros2_amodal_seg.classes import classes_for_preset, coco_categories
from ros2_amodal_seg.errors import DatasetError, InvalidInputError

#: dataset annotation id = image_id * ANN_ID_STRIDE + instance id.
ANN_ID_STRIDE = 1000


def _flat(T: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(T, dtype=np.float64).reshape(-1)]


def ensure_writable_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) and check that files can be written in it.

    Raises:
        DatasetError: when it cannot be created or written to.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create output folder {p}: {exc.strerror or exc}") from exc
    if not p.is_dir():
        raise DatasetError(f"output path {p} exists and is not a folder")
    if not os.access(p, os.W_OK | os.X_OK):
        raise DatasetError(f"output folder {p} is not writable")
    probe = p / ".write_probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DatasetError(f"output folder {p} is not writable: {exc.strerror or exc}") from exc
    return p


class DatasetWriter:
    """Writes frames one by one, then ``annotations.json`` on :meth:`close`.

    Use as a context manager::

        with DatasetWriter(out_dir) as w:
            for f in frames:
                w.add_frame(f, stamp_ns=...)
    """

    def __init__(self, out_dir: str | Path, *, write_lidar: bool = True) -> None:
        self.out = ensure_writable_dir(out_dir)
        self.write_lidar = write_lidar
        (self.out / "images").mkdir(exist_ok=True)
        if write_lidar:
            (self.out / "lidar").mkdir(exist_ok=True)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.classes: dict[int, str] | None = None      # the class list of the frames' presets
        self._closed = False

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def add_frame(self, frame, *, stamp_ns: int | None = None, lidar_stamp_ns: int | None = None,
                  rig_seed: int | None = None) -> int:
        """Write one :class:`~ros2_amodal_seg.world.Frame`; returns its image id (1-based).

        Args:
            frame: the rendered frame with its ground truth.
            stamp_ns: the image's header stamp in a bag [ns since epoch], recorded as
                ``"stamp_ns"`` so that replay outputs can be matched to ground truth.
            lidar_stamp_ns: the paired LiDAR sweep's stamp [ns], recorded as ``"lidar_stamp_ns"``.
            rig_seed: the camera-rig seed the frame was rendered with (recorded when given).
        """
        import cv2

        if self._closed:
            raise DatasetError("writer already closed")
        classes = classes_for_preset(frame.preset)
        if self.classes is None:
            self.classes = classes
        elif classes != self.classes:
            raise DatasetError(f"frame of preset {frame.preset!r} uses another class list than the frames "
                               "already written: one dataset holds one class list (world.md)")
        image_id = len(self.images) + 1
        H, W = frame.rgb.shape[:2]
        name = f"{image_id:06d}"
        img_rel = f"images/{name}.png"
        if not cv2.imwrite(str(self.out / img_rel), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)):
            raise DatasetError(f"cannot write {self.out / img_rel}")
        entry: dict = {
            "id": image_id, "file_name": img_rel, "width": int(W), "height": int(H),
            "camera": {"K": _flat(frame.K), "D": _flat(frame.D), "distortion_model": "plumb_bob"},
            "T_camera_lidar": _flat(frame.T_camera_lidar), "T_base_camera": _flat(frame.T_base_camera),
            "preset": frame.preset, "seed": int(frame.seed),
        }
        if getattr(frame, "split", None) is not None:
            entry["split"] = str(frame.split)
        if rig_seed is not None:
            entry["rig_seed"] = int(rig_seed)
        if self.write_lidar and frame.lidar_points is not None and len(frame.lidar_points.shape) == 2:
            lid_rel, ids_rel = f"lidar/{name}.npy", f"lidar/{name}_ids.npy"
            try:
                np.save(self.out / lid_rel, np.ascontiguousarray(frame.lidar_points, dtype=np.float32))
                np.save(self.out / ids_rel, np.ascontiguousarray(frame.lidar_ids, dtype=np.int32))
            except OSError as exc:
                raise DatasetError(f"cannot write LiDAR files in {self.out / 'lidar'}: {exc}") from exc
            entry["lidar_file_name"] = lid_rel
            entry["lidar_ids_file_name"] = ids_rel
        if stamp_ns is not None:
            entry["stamp_ns"] = int(stamp_ns)
        if lidar_stamp_ns is not None:
            entry["lidar_stamp_ns"] = int(lidar_stamp_ns)
        self.images.append(entry)
        anns = list(frame.annotations)
        if anns:
            amodal_rles = mask_utils.encode_batch(np.stack([a.amodal for a in anns]))
            visible_rles = mask_utils.encode_batch(np.stack([a.visible for a in anns]))
        for a, arle, vrle in zip(anns, amodal_rles if anns else [], visible_rles if anns else []):
            if a.id >= ANN_ID_STRIDE:
                raise InvalidInputError(f"instance id {a.id} >= {ANN_ID_STRIDE}")
            rec = {
                "id": image_id * ANN_ID_STRIDE + int(a.id), "image_id": image_id,
                "category_id": int(a.category_id), "iscrowd": 0, "instance_id": int(a.id),
                "segmentation": arle, "bbox": mask_utils.bbox_xywh(a.amodal), "area": int(a.amodal.sum()),
                "visible_mask": vrle, "visible_bbox": mask_utils.bbox_xywh(a.visible),
                "visible_area": int(a.visible.sum()),
                "occlude_rate": float(a.occlude_rate),
                "occluded_by": [image_id * ANN_ID_STRIDE + int(j) for j in a.occluded_by],
            }
            if a.footprint is not None:
                rec["footprint"] = [[float(x), float(y)] for x, y in np.asarray(a.footprint)]
            if getattr(a, "asset", None) is not None:
                rec["asset"] = str(a.asset)
            self.annotations.append(rec)
        return image_id

    def close(self) -> Path:
        """Write ``annotations.json``; returns its path."""
        path = self.out / "annotations.json"
        info = {"description": "ros2_amodal_seg synthetic world", "format": "ros2_amodal_seg/coco-amodal-v1"}
        presets = sorted({im["preset"] for im in self.images if im.get("preset")})
        splits = sorted({im["split"] for im in self.images if im.get("split")})
        if presets:
            info["presets"] = presets
        if splits:
            info["splits"] = splits
        doc = {"info": info, "categories": coco_categories(self.classes), "images": self.images,
               "annotations": self.annotations}
        try:
            path.write_text(json.dumps(doc, separators=(",", ":")))
        except OSError as exc:
            raise DatasetError(f"cannot write {path}: {exc}") from exc
        self._closed = True
        return path


def write_dataset(out_dir: str | Path, frames, *, stamps_ns=None, write_lidar: bool = True) -> Path:
    """Write an iterable of frames; returns the path of ``annotations.json``.

    Args:
        out_dir: output folder (created).
        frames: iterable of :class:`~ros2_amodal_seg.world.Frame`.
        stamps_ns: optional iterable of image stamps [ns], one per frame.
        write_lidar: also write ``lidar/*.npy``.
    """
    w = DatasetWriter(out_dir, write_lidar=write_lidar)
    stamps = iter(stamps_ns) if stamps_ns is not None else None
    for f in frames:
        w.add_frame(f, stamp_ns=next(stamps) if stamps is not None else None)
    return w.close()
