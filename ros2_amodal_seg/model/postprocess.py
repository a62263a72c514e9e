"""Post-processing (numpy only, shared by the torch and the ONNX Runtime paths).

Per query: class score x mask quality, score threshold, mask NMS (a duplicate has
both a high amodal and a high visible mask IoU; two distinct overlapping objects
share amodal area but not visible area, so they survive; by default the soft, matrix
form that decays a duplicate's score, else the greedy hard form), top-k, masks upsampled
to the full image (bilinear, then refined along the image's edges by a colour guided
filter when the image is given, see :mod:`.upsample`), amodal := amodal | visible
(an object's full extent contains its visible part), the hidden-part completion and the class
re-reading (when given), then a second, final Matrix NMS on the final amodal masks alone with
the final scores (``final_nms_sigma``): after completion two queries of one object converge to
the same full extent even when their visible masks differ, and the predicted mask quality has
put the better of them first. Depth ranks come from the order
scores (smaller = nearer); ``occluded_by`` from ``amodal_i & visible_j`` overlaps
agreeing with the order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ros2_amodal_seg.masks import iou_matrix
from ros2_amodal_seg.model.upsample import (ColourGuide, guided_upsample_masks, logit, sigmoid, softmax,
                                            upsample_masks)
from ros2_amodal_seg.types import Instances2D


NMS_METHODS = ("matrix", "hard")


@dataclass(frozen=True)
class PostprocessConfig:
    score_threshold: float = 0.5
    max_instances: int = 50
    nms_method: str = "matrix"    # "matrix": Gaussian score decay (SOLOv2 Matrix NMS); "hard": greedy mask NMS
    nms_iou: float = 0.5          # hard NMS: suppress when amodal AND visible mask IoU exceed this
    matrix_sigma: float = 2.0     # matrix NMS: decay exp(-sigma * overlap^2), compensated (SOLOv2's default)
    mask_threshold: float = 0.4          # probability: visible masks (and the scoring / NMS of both masks)
    amodal_mask_threshold: float = 0.3   # probability: the amodal masks that are returned
    refine: bool = True                  # guided-filter refinement of the full-resolution masks (needs the image)
    refine_radius_cells: float = 2.0     # its radius in mask-grid cells (16 px for 80 cells across 640 px)
    refine_eps: float = 1e-4             # its regulariser (RGB in [0, 1]); larger = closer to plain bilinear
    refine_subsample: int = 4            # fit the filter on a grid this many times coarser (fast guided filter)
    final_nms_sigma: float = 2.0         # final Matrix NMS on the final amodal masks' IoU; 0 = off
    final_nms_stride: int = 4            # its IoUs are computed on every this-many-th pixel row and column

    def __post_init__(self) -> None:
        if self.nms_method not in NMS_METHODS:
            raise ValueError(f"nms_method must be one of {NMS_METHODS}, got {self.nms_method!r}")
        if self.matrix_sigma <= 0:
            raise ValueError(f"matrix_sigma must be > 0, got {self.matrix_sigma}")
        for name in ("mask_threshold", "amodal_mask_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.final_nms_sigma < float("inf") or self.final_nms_stride < 1:
            raise ValueError(f"final_nms_sigma must be >= 0 and final_nms_stride >= 1, got "
                             f"{self.final_nms_sigma}, {self.final_nms_stride}")
        if self.refine_radius_cells <= 0 or self.refine_eps <= 0 or self.refine_subsample < 1:
            raise ValueError(f"refine_radius_cells and refine_eps must be > 0 and refine_subsample >= 1, got "
                             f"{self.refine_radius_cells}, {self.refine_eps}, {self.refine_subsample}")

    def refine_radius_px(self, mask_width: int, image_width: int) -> int:
        """The guided filter's radius in image pixels (at least 1)."""
        return max(1, int(round(self.refine_radius_cells * image_width / mask_width)))


def duplicate_overlap(amodal: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """``[N, N]`` pairwise ``min(amodal IoU, visible IoU)`` of ``[N, h, w]`` bool masks: how much
    j duplicates i. A duplicate is high on both; two distinct overlapping objects share amodal
    area but not visible area, so they stay low."""
    return np.minimum(iou_matrix(amodal, amodal), iou_matrix(visible, visible))


def mask_nms(amodal: np.ndarray, visible: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy mask NMS.

    Args:
        amodal, visible: ``[N, h, w]`` bool masks; scores: ``[N]``.
        iou_threshold: j is a duplicate of a kept i when both amodal and visible IoU exceed it.

    Returns:
        Kept indices, by descending score.
    """
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order
    dup = duplicate_overlap(amodal, visible) > iou_threshold
    keep: list[int] = []
    suppressed = np.zeros(len(scores), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= dup[i]
    return np.array(keep, np.int64)


def matrix_decay(overlap: np.ndarray, scores: np.ndarray, sigma: float) -> np.ndarray:
    """Matrix NMS (SOLOv2, Gaussian kernel) decay factors.

    Every j is decayed by its most overlapping higher-scored i, compensated by how much i was
    itself suppressed: ``decay_j = min_i exp(-sigma * (o_ij^2 - c_i^2))`` over higher-scored i,
    with ``c_i`` = i's largest overlap with one above it.

    Args:
        overlap: ``[N, N]`` symmetric pairwise overlap in [0, 1]. scores: ``[N]``. sigma > 0.

    Returns:
        ``[N]`` float64 factors in (0, 1] (1 for the top-scored one).
    """
    n = len(scores)
    if n == 0:
        return np.ones(0)
    order = np.argsort(-scores, kind="stable")
    ov = np.triu(overlap[np.ix_(order, order)], 1)                        # [i, j]: i above j
    comp = ov.max(0)                                                     # [N] each one's own largest overlap
    decay = np.exp(-sigma * (ov ** 2 - comp[:, None] ** 2)).min(0)      # row 0 (c = 0) keeps it <= 1
    out = np.empty(n)
    out[order] = decay
    return out


def matrix_nms(amodal: np.ndarray, visible: np.ndarray, scores: np.ndarray, sigma: float) -> np.ndarray:
    """Matrix NMS (:func:`matrix_decay`), class-agnostic, on the overlap ``min(amodal IoU, visible
    IoU)`` of a pair (a duplicate is high on both, two distinct overlapping objects only on the
    amodal one).

    Args:
        amodal, visible: ``[N, h, w]`` bool masks; scores: ``[N]``; sigma > 0.

    Returns:
        ``[N]`` decayed scores (never above the input scores).
    """
    if len(scores) == 0:
        return scores.copy()
    decay = matrix_decay(duplicate_overlap(amodal, visible), scores, sigma)
    return (scores * decay).astype(scores.dtype)


def final_decay(amodal: np.ndarray, scores: np.ndarray, sigma: float, stride: int = 4) -> np.ndarray:
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
        ``[N]`` float64 factors in (0, 1].
    """
    if len(scores) < 2:
        return np.ones(len(scores))
    small = amodal[:, ::stride, ::stride]
    return matrix_decay(iou_matrix(small, small), scores, sigma)


def postprocess(class_logits: np.ndarray, amodal_logits: np.ndarray, visible_logits: np.ndarray,
                occlusion_rates: np.ndarray, order_scores: np.ndarray, image_size: tuple[int, int],
                class_ids: list[int], cfg: PostprocessConfig = PostprocessConfig(),
                image: np.ndarray | None = None, completer=None, reclassifier=None) -> Instances2D:
    """One image's raw outputs -> :class:`Instances2D` at ``image_size`` ``(H, W)``.

    Args:
        class_logits: ``[Q, K+1]`` (last = no object). amodal_logits, visible_logits: ``[Q, h, w]``.
        occlusion_rates: ``[Q]`` in [0, 1]. order_scores: ``[Q]`` (smaller = nearer).
        class_ids: dataset category id of each of the K classes.
        image: ``[H, W, 3]`` uint8 RGB, the image itself: the guide of the mask refinement
            (``cfg.refine``). Without it the masks are plain bilinear upsamplings.
        completer: a :class:`~ros2_amodal_seg.model.completion.HiddenCompleter` (or None): decides
            each kept instance's amodal mask inside the other instances' visible masks.
        reclassifier: a :class:`~ros2_amodal_seg.model.reclassify.Reclassifier` (or None; needs
            ``image``): re-reads each kept instance's class distribution from a crop of the image
            and of the final masks. Its score summed over the classes stays; with a quality head
            the predicted amodal IoU replaces the query's mask quality in the score (a share
            ``quality_weight`` of it, geometrically).

    Last comes the final Matrix NMS (:func:`final_decay`, ``cfg.final_nms_sigma`` > 0) with the
    final scores; instances whose best class then scores below ``cfg.score_threshold`` are dropped.
    """
    height, width = image_size
    if image is not None and image.shape[:2] != (height, width):
        raise ValueError(f"image {image.shape[:2]} does not match image_size {(height, width)}")
    if reclassifier is not None and image is None:
        raise ValueError("the reclassifier needs the image")
    prob = softmax(class_logits)                                           # [Q, K+1] float64
    cls_idx = prob[:, :-1].argmax(-1)
    cls_score = prob[np.arange(len(prob)), cls_idx]
    pa = sigmoid(amodal_logits.astype(np.float32))
    bv = sigmoid(visible_logits.astype(np.float32)) > cfg.mask_threshold
    ba = (pa > cfg.mask_threshold) | bv
    area = ba.reshape(len(ba), -1).sum(1)
    mask_q = (pa * ba).reshape(len(pa), -1).sum(1) / np.maximum(area, 1)
    scores = (cls_score * mask_q).astype(np.float32)
    cand = np.nonzero((scores >= cfg.score_threshold) & (area > 0))[0]
    if len(cand) and cfg.nms_method == "matrix":
        scores = scores.copy()
        scores[cand] = matrix_nms(ba[cand], bv[cand], scores[cand], cfg.matrix_sigma)
        cand = cand[np.argsort(-scores[cand], kind="stable")]
        cand = cand[scores[cand] >= cfg.score_threshold][: cfg.max_instances]
    elif len(cand):
        keep = mask_nms(ba[cand], bv[cand], scores[cand], cfg.nms_iou)
        cand = cand[keep][: cfg.max_instances]
    if len(cand) == 0:
        return Instances2D.empty(height, width)
    if cfg.refine and image is not None:
        guide = ColourGuide(image, cfg.refine_radius_px(amodal_logits.shape[-1], width), cfg.refine_eps,
                            cfg.refine_subsample)
        vi = guided_upsample_masks(visible_logits[cand], cfg.mask_threshold, guide)
        am = guided_upsample_masks(amodal_logits[cand], cfg.amodal_mask_threshold, guide) | vi
    else:
        vi = upsample_masks(visible_logits[cand], logit(cfg.mask_threshold), height, width)
        am = upsample_masks(amodal_logits[cand], logit(cfg.amodal_mask_threshold), height, width) | vi
    if completer is not None:
        am = completer(am, vi, amodal_logits[cand], visible_logits[cand], cls_idx[cand])
    nonempty = am.reshape(len(cand), -1).any(1)
    cand, am, vi = cand[nonempty], am[nonempty], vi[nonempty]
    # runner-up classes: the same query read as another class, scored with the same mask
    # quality and NMS decay (score / class probability), as Mask2Former ranks (query, class) pairs
    fg = prob[cand, :-1]                                                   # [N, K]
    ratio = scores[cand] / np.maximum(cls_score[cand], 1e-12)              # [N]
    main, main_score = cls_idx[cand], scores[cand]
    if reclassifier is not None and len(cand):
        # the re-read distribution shares out the instance's score mass over the classes
        read, iou = reclassifier(image, am, vi, fg, scores[cand], np.clip(occlusion_rates[cand], 0, 1))
        fg = read * fg.sum(1, keepdims=True)                               # [N, K]
        if iou is not None:
            # the network's predicted mask IoU replaces (a share w of) the query's mask quality
            w = reclassifier.cfg.quality_weight
            ratio = ratio * (np.clip(iou, 1e-6, 1.0) / np.maximum(mask_q[cand], 1e-6)) ** w
        main = fg.argmax(1)
        main_score = fg[np.arange(len(cand)), main] * ratio
    if cfg.final_nms_sigma > 0:
        decay = final_decay(am, main_score, cfg.final_nms_sigma, cfg.final_nms_stride)   # [N]
        ratio, main_score = ratio * decay, main_score * decay
    ok = main_score >= cfg.score_threshold
    if not ok.all():
        cand, am, vi, fg, ratio, main, main_score = (a[ok] for a in (cand, am, vi, fg, ratio, main, main_score))
        if len(cand) == 0:
            return Instances2D.empty(height, width)
    alt = np.argsort(-fg, axis=1, kind="stable")[:, 1:]                    # [N, K-1]
    table = np.asarray(class_ids, np.int64)
    return Instances2D(amodal_masks=am, visible_masks=vi,
                       class_ids=table[main],
                       scores=main_score.astype(np.float32),
                       occlusion_rates=np.clip(occlusion_rates[cand], 0, 1).astype(np.float32),
                       order_scores=order_scores[cand].astype(np.float32),
                       alt_class_ids=table[alt],
                       alt_scores=(np.take_along_axis(fg, alt, 1) * ratio[:, None]).astype(np.float32))


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
