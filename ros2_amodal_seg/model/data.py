"""Torch ``Dataset`` over :class:`AmodalDataset` at the model's internal resolution."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ros2_amodal_seg.data.types import AmodalDataset, AmodalSample
from ros2_amodal_seg.errors import DatasetError
from ros2_amodal_seg.model.augment import Augmenter, AugmentConfig, SampleArrays
from ros2_amodal_seg.model.model import ModelConfig


def load_amodal_dataset(path: str | Path, *, lazy_masks: bool = False) -> AmodalDataset:
    """Load any layout the project loader reads (``ros2_amodal_seg.data.dataset.load_dataset``;
    ``lazy_masks``: keep the masks encoded until used, for large training sets)."""
    from ros2_amodal_seg.data.dataset import load_dataset  # noqa: PLC0415

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"dataset {p} does not exist")
    return load_dataset(p, lazy_masks=lazy_masks)


def resize_masks(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[N, H, W]`` bool -> ``[N, height, width]`` bool (area fraction >= 0.5, nearest when upsampling)."""
    if len(masks) == 0:
        return np.zeros((0, height, width), bool)
    interp = cv2.INTER_AREA if masks.shape[1] >= height else cv2.INTER_NEAREST
    return np.stack([cv2.resize(m.astype(np.float32), (width, height), interpolation=interp) >= 0.5 for m in masks])


class AmodalTorchDataset(Dataset):
    """Items: ``(image [3, Hi, Wi] float 0..255, target dict)`` at the internal size ``Hi x Wi``.

    Target (mask grid = internal size / 4): labels ``[N]`` int64 class index (0-based,
    position in ``class_ids``); amodal, visible ``[N, Hi/4, Wi/4]`` float area fractions;
    occlusion ``[N]`` float; occ_pairs ``[M, 2]`` int64 ``(i, j)`` with j occluding i.
    """

    def __init__(self, datasets: list[AmodalDataset], cfg: ModelConfig, class_ids: list[int],
                 augment: AugmentConfig | None = None, seed: int = 0, cache: bool = True) -> None:
        self.samples: list[AmodalSample] = [s for d in datasets for s in d.samples]
        if not self.samples:
            raise DatasetError("no training samples")
        self.cfg = cfg
        self.class_index = {int(c): i for i, c in enumerate(class_ids)}
        self.augmenter = Augmenter(augment, self._donor) if augment is not None else None
        self.rng = np.random.default_rng(seed)
        self.cache_enabled = cache
        self._cache: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def base_arrays(self, i: int) -> SampleArrays:
        """Sample ``i`` resized to the internal size (no augmentation; cached bit-packed)."""
        h, w = self.cfg.input_height, self.cfg.input_width
        if i in self._cache:
            img, am, vi, lab = self._cache[i]
            n = len(lab)
            return SampleArrays(img, np.unpackbits(am, count=n * h * w).reshape(n, h, w).astype(bool),
                                np.unpackbits(vi, count=n * h * w).reshape(n, h, w).astype(bool), lab)
        s = self.samples[i]
        img = cv2.resize(s.load_image(), (w, h), interpolation=cv2.INTER_AREA)
        anns = [a for a in s.annotations if int(a.category_id) in self.class_index]
        am = resize_masks(np.stack([a.amodal for a in anns]) if anns else np.zeros((0, 1, 1), bool), h, w)
        vi = resize_masks(np.stack([a.visible for a in anns]) if anns else np.zeros((0, 1, 1), bool), h, w)
        vi &= am
        lab = np.array([int(a.category_id) for a in anns], np.int64)
        keep = np.nonzero(am.reshape(len(lab), -1).any(1))[0] if len(lab) else np.zeros(0, np.int64)
        am, vi, lab = am[keep], vi[keep], lab[keep]
        if self.cache_enabled:
            self._cache[i] = (img, np.packbits(am), np.packbits(vi), lab)
        return SampleArrays(img, am, vi, lab)

    def _donor(self, rng: np.random.Generator):
        for _ in range(5):
            s = self.base_arrays(int(rng.integers(len(self.samples))))
            if not len(s.labels):
                continue
            occ = s.occlusion_rates()
            area = s.amodal.reshape(len(s.labels), -1).sum(1)
            ok = np.nonzero((occ < 0.02) & (area >= 30) & (area <= 0.15 * s.amodal[0].size))[0]
            if len(ok) == 0:
                continue
            k = int(ok[rng.integers(len(ok))])
            ys, xs = np.nonzero(s.amodal[k])
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            return s.image[y0:y1, x0:x1], s.amodal[k, y0:y1, x0:x1], int(s.labels[k])
        return None

    def __getitem__(self, i: int):
        s = self.base_arrays(i)
        if self.augmenter is not None:
            s = self.augmenter(s, self.rng)
        return self.to_tensors(s)

    def to_tensors(self, s: SampleArrays):
        occ = s.occlusion_rates()
        occluded_by = s.occluded_by()
        pairs = [(i, j) for i, js in enumerate(occluded_by) for j in js if i not in occluded_by[j]]
        img = torch.from_numpy(np.ascontiguousarray(s.image)).permute(2, 0, 1).float()  # [3, Hi, Wi]
        h4, w4 = self.cfg.input_height // 4, self.cfg.input_width // 4

        def down(m: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(m.astype(np.float32))[None]  # [1, N, Hi, Wi]
            if t.shape[1] == 0:
                return torch.zeros(0, h4, w4)
            return F.adaptive_avg_pool2d(t, (h4, w4))[0]

        target = {
            "labels": torch.tensor([self.class_index[int(c)] for c in s.labels], dtype=torch.int64),
            "amodal": down(s.amodal), "visible": down(s.visible),
            "occlusion": torch.from_numpy(occ.astype(np.float32)),
            "occ_pairs": torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2),
        }
        return img, target


def collate(batch):
    """List of items -> (``[B, 3, Hi, Wi]`` images, list of target dicts)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]
