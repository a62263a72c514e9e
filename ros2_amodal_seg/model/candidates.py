"""The instances of one image as they pass through the post-processing stages.

:class:`Candidates` holds one row per candidate instance in torch tensors on the model's
device. A stage receives candidates and returns candidates: it may add the full-resolution
masks, change the class distribution or decay the scores, and keep a subset
(:meth:`Candidates.select`, which filters every per-instance field together).

The score of an instance is always ``class_dist[main] * ratio``: ``class_dist`` is its class
distribution over the object classes (the query's, or the one the re-reading network gives),
``ratio`` everything else that scales it (the mask quality, then each NMS's decay). The
runner-up classes are the same instance read as another class: ``class_dist[k] * ratio``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ros2_amodal_seg.types import Instances2D


@dataclass
class RawOutputs:
    """The network's final-layer outputs for one image (what post-processing starts from).

    Attributes:
        class_logits: ``[Q, K+1]`` float (last = no object).
        amodal_logits, visible_logits: ``[Q, h, w]`` float mask-grid logits.
        occlusion_rates: ``[Q]`` in [0, 1]. order_scores: ``[Q]`` (smaller = nearer).
    """

    class_logits: torch.Tensor
    amodal_logits: torch.Tensor
    visible_logits: torch.Tensor
    occlusion_rates: torch.Tensor
    order_scores: torch.Tensor

    @staticmethod
    def from_arrays(arrays, device: torch.device | str = "cpu") -> "RawOutputs":
        """From the five arrays (numpy or torch, in this order) of one image."""
        return RawOutputs(*(torch.as_tensor(a, device=device) for a in arrays))


#: per-instance fields (first dimension N), filtered together by :meth:`Candidates.select`.
_PER_INSTANCE = ("query", "class_dist", "ratio", "mask_quality", "amodal_logits", "visible_logits",
                 "low_amodal", "low_visible", "occlusion", "order", "amodal", "visible")


@dataclass
class Candidates:
    """Candidate instances of one image (every per-instance field has N rows, on one device).

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB, the image (the guide of the mask refinement and the source
            of the re-reading crops).
        class_ids: ``[K]`` int64 dataset category id of each object class.
        query: ``[N]`` int64 index of the query each candidate comes from.
        class_dist: ``[N, K]`` float32 class distribution over the object classes.
        ratio: ``[N]`` float32 score / class probability (mask quality x NMS decays).
        mask_quality: ``[N]`` float32 the query's own mask quality (mean amodal probability inside
            its mask at the mask-grid resolution).
        amodal_logits, visible_logits: ``[N, h, w]`` float32 mask-grid logits.
        low_amodal, low_visible: ``[N, h, w]`` bool mask-grid masks (for the first NMS).
        occlusion: ``[N]`` float32 predicted occlusion rate in [0, 1]. order: ``[N]`` order score.
        amodal, visible: ``[N, H, W]`` bool full-resolution masks (None before upsampling).
    """

    image: torch.Tensor
    class_ids: torch.Tensor
    query: torch.Tensor
    class_dist: torch.Tensor
    ratio: torch.Tensor
    mask_quality: torch.Tensor
    amodal_logits: torch.Tensor
    visible_logits: torch.Tensor
    low_amodal: torch.Tensor
    low_visible: torch.Tensor
    occlusion: torch.Tensor
    order: torch.Tensor
    amodal: torch.Tensor | None = None
    visible: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.query)

    @property
    def device(self) -> torch.device:
        return self.query.device

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def main_class(self) -> torch.Tensor:
        """``[N]`` int64 index of each candidate's best class."""
        return self.class_dist.argmax(1)

    @property
    def scores(self) -> torch.Tensor:
        """``[N]`` float32 score of each candidate's best class."""
        return self.class_dist.gather(1, self.main_class[:, None])[:, 0] * self.ratio

    def select(self, idx: torch.Tensor) -> "Candidates":
        """The candidates ``idx`` (``[M]`` int64 indices, or an ``[N]`` bool mask), every
        per-instance field filtered together."""
        return replace(self, **{f: getattr(self, f)[idx] for f in _PER_INSTANCE if getattr(self, f) is not None})

    def to_instances(self, runner_up_classes: int) -> Instances2D:
        """The candidates as host :class:`Instances2D`, with ``runner_up_classes`` runner-up
        classes each (the only copy to the host)."""
        height, width = self.image_size
        if len(self) == 0:
            return Instances2D.empty(height, width)
        main = self.main_class
        k = min(int(runner_up_classes), self.class_dist.shape[1] - 1)
        alt = torch.argsort(-self.class_dist, dim=1, stable=True)[:, 1:1 + k]      # [N, k]
        table = self.class_ids

        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()

        return Instances2D(
            amodal_masks=host(self.amodal), visible_masks=host(self.visible), class_ids=host(table[main]),
            scores=host(self.scores.float()), occlusion_rates=host(self.occlusion.clamp(0, 1).float()),
            order_scores=host(self.order.float()), alt_class_ids=host(table[alt]),
            alt_scores=host((self.class_dist.gather(1, alt) * self.ratio[:, None]).float()))


def candidate_fields() -> tuple[str, ...]:
    """Names of every field of :class:`Candidates` (for tests and docs)."""
    return tuple(f.name for f in fields(Candidates))
