"""Post-processing as an explicit sequence of stages over :class:`~.candidates.Candidates`.

A network's raw outputs for one image go through:

1. :class:`ScoreStage`: class probabilities x mask quality; candidates below the score
   threshold or with an empty mask are dropped.
2. :class:`MatrixNmsStage`: the first NMS, a Matrix NMS (SOLOv2) on each pair's
   ``min(amodal IoU, visible IoU)`` on the mask grid (a duplicate is high on both; two distinct
   overlapping objects share amodal area but not visible area, so they survive); then the
   ``max_instances`` best.
3. :class:`UpsampleStage`: the masks at full resolution, refined along the image's edges by a
   colour guided filter (:mod:`.upsample`); amodal := amodal | visible.
4. :class:`~.completion.CompletionStage` (when the checkpoint has the network and
   ``complete_hidden``): each object's extent behind the other objects.
5. :class:`DropEmptyStage`: instances without an amodal mask.
6. :class:`~.reclassify.ReclassifyStage` (when the checkpoint has the network and ``reclassify``):
   the class read again from a crop, and the predicted mask quality.
7. :class:`FinalNmsStage` (``final_nms_sigma`` > 0): a Matrix NMS on the final amodal masks'
   IoU with the final scores (after completion two queries of one object share one full extent
   even when their visible masks differ).
8. :class:`ThresholdStage`: instances whose best class scores below the threshold are dropped;
   :meth:`~.candidates.Candidates.to_instances` then reports each with its runner-up classes.

:class:`PostProcessor` builds the sequence from an :class:`~.inference_config.InferenceConfig`
and runs it, timing every stage. Every stage runs in torch on the device of the network's
outputs; the heavy kernels (mask upsampling, crops) use OpenCV on the CPU and torch on a GPU
(:mod:`.upsample`, :mod:`.crops`). Nothing leaves the device before the final masks.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ros2_amodal_seg.model.candidates import Candidates, RawOutputs
from ros2_amodal_seg.model.inference_config import InferenceConfig
from ros2_amodal_seg.model.ops import duplicate_overlap, iou_matrix, matrix_decay
from ros2_amodal_seg.model.upsample import guided_upsample_masks, make_guide
from ros2_amodal_seg.types import Instances2D


class ScoreStage:
    """Raw outputs -> scored candidates: ``score = p(class) x mask quality``, the mask quality being
    the mean amodal probability inside the query's mask on the mask grid; candidates below
    ``score_threshold`` or with an empty mask are dropped."""

    name = "score"

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg

    def __call__(self, raw: RawOutputs, image: torch.Tensor, class_ids: torch.Tensor) -> Candidates:
        cfg = self.cfg
        prob = torch.softmax(raw.class_logits.double(), -1).float()             # [Q, K+1]
        fg = prob[:, :-1]                                                       # [Q, K]
        cls_score = fg.amax(1)                                                  # [Q]
        pa = torch.sigmoid(raw.amodal_logits.float())                           # [Q, h, w]
        bv = torch.sigmoid(raw.visible_logits.float()) > cfg.mask_threshold
        ba = (pa > cfg.mask_threshold) | bv
        area = ba.flatten(1).sum(1)                                             # [Q]
        mask_q = (pa * ba).flatten(1).sum(1) / area.clamp_min(1)
        keep = torch.nonzero((cls_score * mask_q >= cfg.score_threshold) & (area > 0))[:, 0]
        return Candidates(image=image, class_ids=class_ids, query=keep, class_dist=fg[keep], ratio=mask_q[keep],
                          mask_quality=mask_q[keep], amodal_logits=raw.amodal_logits[keep].float(),
                          visible_logits=raw.visible_logits[keep].float(), low_amodal=ba[keep],
                          low_visible=bv[keep], occlusion=raw.occlusion_rates[keep].float(),
                          order=raw.order_scores[keep].float())


class MatrixNmsStage:
    """The first NMS: Matrix NMS (:func:`~.ops.matrix_decay`, ``matrix_sigma``) on each pair's
    ``min(amodal IoU, visible IoU)``, class-agnostic; the candidates still above the threshold,
    best first, at most ``max_instances``."""

    name = "nms"

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg

    def __call__(self, c: Candidates) -> Candidates:
        if len(c) == 0:
            return c
        scores = c.scores
        c.ratio = c.ratio * matrix_decay(duplicate_overlap(c.low_amodal, c.low_visible), scores, self.cfg.matrix_sigma)
        scores = c.scores
        order = torch.argsort(-scores, stable=True)
        order = order[scores[order] >= self.cfg.score_threshold][: self.cfg.max_instances]
        return c.select(order)


class UpsampleStage:
    """Full-resolution masks: the mask-grid logits upsampled and refined along the image's edges by
    a colour guided filter (visible masks at ``mask_threshold``, amodal masks at
    ``amodal_mask_threshold``, then amodal := amodal | visible)."""

    name = "upsample"

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg

    def __call__(self, c: Candidates) -> Candidates:
        height, width = c.image_size
        if len(c) == 0:
            c.amodal = c.visible = torch.zeros((0, height, width), dtype=torch.bool, device=c.device)
            return c
        cfg = self.cfg
        guide = make_guide(c.image, cfg.refine_radius_px(c.amodal_logits.shape[-1], width), cfg.refine_eps,
                            cfg.refine_subsample)
        c.visible = guided_upsample_masks(c.visible_logits, cfg.mask_threshold, guide)
        c.amodal = guided_upsample_masks(c.amodal_logits, cfg.amodal_mask_threshold, guide) | c.visible
        return c


class DropEmptyStage:
    """Drops candidates whose final amodal mask is empty."""

    name = "drop_empty"

    def __call__(self, c: Candidates) -> Candidates:
        if len(c) == 0:
            return c
        return c.select(c.amodal.flatten(1).any(1))


def final_decay(amodal: torch.Tensor, scores: torch.Tensor, sigma: float, stride: int = 4) -> torch.Tensor:
    """The final Matrix NMS: decay factors from the pairwise IoU of the *final* amodal masks.

    Why amodal alone: before completion two queries of one object differ in their hidden parts
    and often in their visible masks (one covers only part of it), so the first NMS, which needs
    both masks to agree, keeps both; on the tuning split such duplicates of unoccluded objects
    were most of the false positives that outrank the true detections of occluded objects. After
    completion they share one full extent. Two distinct objects overlap in amodal IoU only as far
    as one hides behind the other, and are decayed by ``exp(-sigma IoU^2)`` (IoU 0.3: 0.84 at
    sigma 2).

    Args:
        amodal: ``[N, H, W]`` bool final amodal masks, image pixels. scores: ``[N]`` final scores.
        sigma: > 0. stride: the IoUs use every ``stride``-th row and column.

    Returns:
        ``[N]`` float32 factors in (0, 1].
    """
    if len(scores) < 2:
        return torch.ones(len(scores), device=scores.device)
    small = amodal[:, ::stride, ::stride]
    return matrix_decay(iou_matrix(small, small), scores, sigma)


class FinalNmsStage:
    """The final Matrix NMS (:func:`final_decay`) with the final scores."""

    name = "final_nms"

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg

    def __call__(self, c: Candidates) -> Candidates:
        if len(c) >= 2:
            c.ratio = c.ratio * final_decay(c.amodal, c.scores, self.cfg.final_nms_sigma, self.cfg.final_nms_stride)
        return c


class ThresholdStage:
    """Keeps the candidates whose best class reaches ``score_threshold``."""

    name = "threshold"

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg

    def __call__(self, c: Candidates) -> Candidates:
        if len(c) == 0:
            return c
        return c.select(c.scores >= self.cfg.score_threshold)


#: a stage after scoring: ``stage(candidates) -> candidates`` with a ``name``.
Stage = Callable[[Candidates], Candidates]


class PostProcessor:
    """Runs the stages of the module docstring for one image and times each.

    Args:
        cfg: the :class:`~.inference_config.InferenceConfig`.
        class_ids: dataset category id of each of the K object classes.
        completion: the completion stage (or None: the checkpoint has no such network); used when
            ``cfg.complete_hidden``.
        reclassify: the re-reading stage (or None); used when ``cfg.reclassify``.
    """

    def __init__(self, cfg: InferenceConfig, class_ids: Sequence[int], *, completion: Stage | None = None,
                 reclassify: Stage | None = None) -> None:
        self.cfg = cfg
        self.class_ids = [int(k) for k in class_ids]
        self.score = ScoreStage(cfg)
        stages: list = [MatrixNmsStage(cfg), UpsampleStage(cfg)]
        if completion is not None and cfg.complete_hidden:
            stages.append(completion)
        stages.append(DropEmptyStage())
        if reclassify is not None and cfg.reclassify:
            stages.append(reclassify)
        if cfg.final_nms_sigma > 0:
            stages.append(FinalNmsStage(cfg))
        stages.append(ThresholdStage(cfg))
        self.stages: tuple = tuple(stages)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return (self.score.name,) + tuple(s.name for s in self.stages)

    def __call__(self, raw: RawOutputs, image: torch.Tensor) -> tuple[Instances2D, dict[str, float]]:
        """Raw outputs and the ``[H, W, 3]`` uint8 image (on the outputs' device) -> (instances on the
        host, {stage name: ms})."""
        device = raw.class_logits.device
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        c = self.score(raw, image, torch.as_tensor(self.class_ids, device=device))
        sync()
        t1 = time.perf_counter()
        timings[self.score.name] = (t1 - t0) * 1e3
        for stage in self.stages:
            c = stage(c)
            sync()
            t2 = time.perf_counter()
            timings[stage.name] = (t2 - t1) * 1e3
            t1 = t2
        inst = c.to_instances(self.cfg.runner_up_classes)
        timings["to_host"] = (time.perf_counter() - t1) * 1e3
        return inst, timings


def depth_ranks(order_scores: np.ndarray) -> np.ndarray:
    """``[N]`` order scores -> ``[N]`` int64 ranks, 0 = nearest (smallest score)."""
    ranks = np.empty(len(order_scores), np.int64)
    ranks[np.argsort(order_scores, kind="stable")] = np.arange(len(order_scores))
    return ranks


def occluded_by(inst: Instances2D, min_overlap_px: int = 4) -> list[list[int]]:
    """For each instance i the indices j with ``|amodal_i & visible_j| >= min_overlap_px`` and j nearer than i."""
    n = len(inst)
    if n == 0:
        return []
    a = inst.amodal_masks.reshape(n, -1).astype(np.float32)
    v = inst.visible_masks.reshape(n, -1).astype(np.float32)
    inter = a @ v.T  # [N, N]
    res = []
    for i in range(n):
        res.append([int(j) for j in range(n)
                    if j != i and inter[i, j] >= min_overlap_px and inst.order_scores[j] < inst.order_scores[i]])
    return res
