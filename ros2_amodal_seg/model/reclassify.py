"""Class re-reading of the kept instances: a second-stage crop classifier run in
post-processing, after the hidden-part completion.

Why: the query's class is read from a query vector and an 80 x 60 mask. For a clear
object that is enough; for a mostly hidden one it is not: on the held-out split at IoU 0.5,
objects 50-70 % hidden are found (any class) 0.49 of the time but with the right class
only 0.29 (``amodal-seg evaluate``'s recall table), and taking each detection's class from
its best-overlapping object lifts occluded AP on the tuning split from 25.7 to 30.4
(docs/model.md). What tells a hidden box from a hidden cylinder is the visible part's
texture and outline at full resolution *and* where the occluders are.

How: for each kept instance a square crop around its final amodal mask (the completion's
:func:`~ros2_amodal_seg.model.completion.crop_boxes`, grown by ``context``) is resampled to
``S x S`` with

* the image (RGB, 0..1),
* its final amodal and visible masks (binary),
* the *occluder region*: the other kept instances' visible masks (binary),
* which crop pixels lie inside the image,

plus a feature vector: the query's class distribution (normalised over the object
classes), its score and its predicted occlusion rate. A small CNN
(:class:`ReclassifierNet`) returns class logits that are *added to the log of the query's
distribution*, so an untrained network (its last layer is zero) leaves every class as it
was. The instance keeps its score mass (its score summed over the classes) and the new
distribution shares it out: the best class becomes the instance's class and score, the
others its runner-up classes. Instances whose new score falls below the score threshold
are dropped (the threshold bounds the score of the reported class).

With ``quality`` the same network also predicts the IoU of the instance's final amodal mask
with its object (a mask-quality head, as in Mask Scoring R-CNN). The query's own mask quality
(its mean mask probability inside the mask) cannot see whether the completed hidden part is
right; the crop shows the visible part's outline and the occluders at full resolution. In
post-processing the predicted IoU takes the place of the query's mask quality in the score
(``quality_weight`` w: ``query_quality ** (1 - w) * predicted_iou ** w``), so instances are
ranked by how good their masks are (what COCO AP at IoU 0.5-0.95 rewards).

:class:`ReclassifyStage` is the post-processing stage (:mod:`.postprocess`); the crops are
:mod:`.crops`' (OpenCV on the CPU, torch on a GPU). The network is called through
``run(planes [N, P, S, S], features [N, F]) -> [N, K (+ 1)] logits`` on tensors
(:func:`~ros2_amodal_seg.model.completion.torch_runner` over a :class:`ReclassifierNet`, or ONNX Runtime).
The network is trained after the main model and the completion network, on their own
predictions matched to ground truth (:mod:`.reclassify_train`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.model import crops as C
from ros2_amodal_seg.model.candidates import Candidates
from ros2_amodal_seg.model.crops import CropSpec
from ros2_amodal_seg.model.ops import torch_kernels

#: crop planes: image, final amodal and visible masks, occluder region, in-image share
PLANES: tuple[str, ...] = ("red", "green", "blue", "amodal", "visible", "occluders", "inside")


@dataclass(frozen=True)
class ReclassifyConfig:
    """The class re-reading network (``config/model.yaml``: ``reclassify``).

    Attributes:
        enabled: the checkpoint has a trained re-classifier (set by ``train-reclassifier``).
        crop_size: S, crops are S x S (a multiple of 16: a stride-2 stem and three 2x poolings).
        context: the crop is the amodal mask's bounding square grown by this fraction of its side
            on every side (the surroundings show the occluders).
        min_side_px: smallest crop side [px of the full image].
        channels: widths of the stem (stride 2) and of the three conv + 2x max-pool stages.
        hidden: width of the MLP over the pooled features and the instance's features.
        quality: the network also predicts the IoU of the instance's final amodal mask with its
            object (a mask-quality head on the same MLP features, as Mask Scoring R-CNN); it then
            replaces the query's own mask-quality factor in the score (the inference setting
            ``quality_weight``).
    """

    enabled: bool = False
    crop_size: int = 64
    context: float = 0.4
    min_side_px: int = 16
    channels: tuple[int, ...] = (16, 32, 64, 96)
    hidden: int = 128
    quality: bool = False

    def __post_init__(self) -> None:
        if self.crop_size < 16 or self.crop_size % 16:
            raise ConfigError(f"reclassify crop_size must be a multiple of 16 >= 16, got {self.crop_size}")
        if not 0.0 <= self.context <= 2.0 or self.min_side_px < 1:
            raise ConfigError(f"reclassify context must be in [0, 2] and min_side_px >= 1, got "
                              f"{self.context}, {self.min_side_px}")
        if len(self.channels) != 4 or min(self.channels) < 4 or self.hidden < 4:
            raise ConfigError(f"reclassify channels must be 4 widths >= 4 and hidden >= 4, got "
                              f"{self.channels}, {self.hidden}")

    @property
    def crops(self) -> CropSpec:
        return CropSpec(self.crop_size, self.context, self.min_side_px)

    @staticmethod
    def num_features(num_classes: int) -> int:
        """Length of the feature vector: the class distribution, the score, the occlusion rate."""
        return num_classes + 2


# ---------------------------------------------------------------------------- network
def _stage(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(max(1, min(8, cout // 4)), cout), nn.ReLU(inplace=True))


class ReclassifierNet(nn.Module):
    """``[N, P, S, S]`` crop planes + ``[N, F]`` features -> ``[N, K]`` class logits, or
    ``[N, K + 1]`` with ``cfg.quality`` (the last column: logit of the predicted amodal IoU).

    A stride-2 stem, three conv stages each followed by 2x max pooling (S -> S/16), mean and
    max pooling, and an MLP over those and the features. The log of the query's class
    distribution (the first K features) is added to the class output as a prior, and the class
    layer starts at zero: an untrained network keeps the query's classes. The quality head is a
    linear layer on the MLP's hidden features.
    """

    def __init__(self, cfg: ReclassifyConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = int(num_classes)
        c = cfg.channels
        self.stem = _stage(len(PLANES), c[0], stride=2)
        self.stages = nn.ModuleList(_stage(a, b) for a, b in zip(c[:-1], c[1:]))
        self.mlp = nn.Sequential(nn.Linear(2 * c[-1] + cfg.num_features(num_classes), cfg.hidden),
                                 nn.ReLU(inplace=True), nn.Linear(cfg.hidden, num_classes))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.quality = nn.Linear(cfg.hidden, 1) if cfg.quality else None

    @property
    def num_outputs(self) -> int:
        """K class logits, plus one IoU logit with the quality head."""
        return self.num_classes + (self.quality is not None)

    def forward(self, planes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """planes: ``[N, P, S, S]`` (see :data:`PLANES`); features: ``[N, K + 2]`` -> ``[N, K]`` class
        logits (``[N, K + 1]``: and the IoU logit, with the quality head)."""
        x = self.stem(planes)                                          # [N, c0, S/2, S/2]
        for stage in self.stages:
            x = F.max_pool2d(stage(x), 2)                              # ... [N, c3, S/16, S/16]
        pooled = torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)        # [N, 2 c3]
        prior = torch.log(features[:, :self.num_classes].clamp_min(1e-6))   # [N, K]
        hidden = self.mlp[1](self.mlp[0](torch.cat([pooled, features], 1)))   # [N, hidden]
        logits = self.mlp[2](hidden) + prior                                 # [N, K]
        if self.quality is None:
            return logits
        return torch.cat([logits, self.quality(hidden)], 1)                  # [N, K + 1]


# ---------------------------------------------------------------------------- inputs
@dataclass
class ReclassifyInputs:
    """Attributes (numpy arrays, or tensors on the masks' device):
        planes: ``[N, P, S, S]`` float32 network input (:data:`PLANES`).
        features: ``[N, K + 2]`` float32: class distribution, score, occlusion rate.
        boxes: ``[N, 3]`` int64 crops ``(x0, y0, side)`` [px].
    """

    planes: np.ndarray | torch.Tensor
    features: np.ndarray | torch.Tensor
    boxes: np.ndarray | torch.Tensor


def instance_features(class_prob, scores, occlusion_rates):
    """``[N, K + 2]`` float32 features: the class distribution normalised over the classes (a zero
    row becomes uniform), the score and the occlusion rate (numpy or torch)."""
    if isinstance(class_prob, torch.Tensor):
        p = class_prob.double().reshape(len(class_prob), -1)
        total = p.sum(1, keepdim=True)
        p = torch.where(total > 0, p / total.clamp_min(1e-300), torch.full_like(p, 1.0 / max(p.shape[1], 1)))
        return torch.cat([p, scores.double().reshape(-1, 1), occlusion_rates.double().reshape(-1, 1)], 1).float()
    n = len(class_prob)
    p = np.asarray(class_prob, np.float64).reshape(n, -1)
    total = p.sum(1, keepdims=True)
    p = np.where(total > 0, p / np.maximum(total, 1e-300), 1.0 / max(p.shape[1], 1))
    return np.concatenate([p, np.asarray(scores, np.float64).reshape(n, 1),
                           np.asarray(occlusion_rates, np.float64).reshape(n, 1)], 1).astype(np.float32)


def reclassify_inputs(image, amodal, visible, class_prob, scores, occlusion_rates, cfg: ReclassifyConfig
                      ) -> ReclassifyInputs:
    """Crop planes and features of the kept instances (numpy in -> numpy out; tensors -> tensors on
    their device, OpenCV on the CPU, torch elsewhere).

    Args:
        image: ``[H, W, 3]`` uint8 RGB, the full image.
        amodal, visible: ``[N, H, W]`` bool final full-resolution masks (image frame).
        class_prob: ``[N, K]`` each instance's class distribution (normalised here).
        scores: ``[N]`` instance scores in [0, 1]. occlusion_rates: ``[N]`` predicted, in [0, 1].
    """
    n, height, width = amodal.shape
    if tuple(image.shape[:2]) != (height, width) or visible.shape != amodal.shape:
        raise ValueError(f"image {tuple(image.shape[:2])}, amodal {tuple(amodal.shape)} and visible "
                         f"{tuple(visible.shape)} disagree")
    if isinstance(amodal, torch.Tensor):
        if not torch_kernels(amodal):
            x = reclassify_inputs(*(t.numpy() for t in (image, amodal, visible, class_prob.float(), scores.float(),
                                                          occlusion_rates.float())), cfg)
            return ReclassifyInputs(*(torch.from_numpy(a) for a in (x.planes, x.features, x.boxes)))
        return _reclassify_inputs_t(image, amodal, visible, class_prob, scores, occlusion_rates, cfg)
    size = cfg.crop_size
    boxes = C.crop_boxes(amodal, cfg.crops)
    count = visible.sum(0, dtype=np.int32)
    planes = np.zeros((n, len(PLANES), size, size), np.float32)
    for i in range(n):
        planes[i, :3] = C.crop_image(image, boxes[i], size)
        planes[i, 3:6] = C.mask_planes(amodal[i], visible[i], count, boxes[i], size)
        planes[i, 6] = C.inside_fraction(boxes[i], (height, width), size)
    return ReclassifyInputs(planes, instance_features(class_prob, scores, occlusion_rates), boxes)


def _reclassify_inputs_t(image: torch.Tensor, amodal: torch.Tensor, visible: torch.Tensor, class_prob: torch.Tensor,
                         scores: torch.Tensor, occlusion_rates: torch.Tensor, cfg: ReclassifyConfig) -> ReclassifyInputs:
    """:func:`reclassify_inputs` in torch. The image is area-resampled as uint8 then scaled, as
    OpenCV does (rounded to integers), so the crops match the CPU path."""
    n, height, width = amodal.shape
    size = cfg.crop_size
    boxes = C.crop_boxes(amodal, cfg.crops)
    count = visible.sum(0, dtype=torch.int32)
    img = image.permute(2, 0, 1).float()                                       # [3, H, W] 0..255
    planes = torch.zeros((n, len(PLANES), size, size), device=amodal.device)
    for i, box in enumerate(boxes.tolist()):
        planes[i, :3] = torch.round(C.area_resize_t(C.cut_t(img, box), size)) / 255.0
        planes[i, 3:6] = C.mask_planes_t(amodal[i], visible[i], count, box, size)
    planes[:, 6] = C.inside_fraction_t(boxes, (height, width), size)
    return ReclassifyInputs(planes, instance_features(class_prob, scores, occlusion_rates), boxes)


class ReclassifyStage:
    """Post-processing stage: each candidate's class read again from a crop of the image and of its
    final masks; its score mass (summed over the classes) is shared out by the new distribution.
    With the quality head the predicted amodal IoU replaces a share ``quality_weight`` of the
    query's mask quality in the score (geometrically).

    Args:
        cfg: the network's :class:`ReclassifyConfig`. num_classes: K.
        quality_weight: w in [0, 1] (the inference setting).
        run: ``run(planes, features) -> [N, K (+ 1)]`` logits on tensors of the candidates' device.
    """

    name = "reclassify"

    def __init__(self, cfg: ReclassifyConfig, num_classes: int, quality_weight: float,
                 run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.quality_weight = float(quality_weight)
        self.run = run

    def __call__(self, c: Candidates) -> Candidates:
        if len(c) == 0:
            return c
        x = reclassify_inputs(c.image, c.amodal, c.visible, c.class_dist, c.scores, c.occlusion.clamp(0, 1), self.cfg)
        out = self.run(torch.as_tensor(x.planes, device=c.device), torch.as_tensor(x.features, device=c.device))
        k = self.num_classes
        if tuple(out.shape) != (len(c), k + self.cfg.quality):
            raise ValueError(f"re-classifier returned {tuple(out.shape)}, expected {(len(c), k + self.cfg.quality)}")
        read = torch.softmax(out[:, :k].double(), 1).float()                 # [N, K]
        c.class_dist = read * c.class_dist.sum(1, keepdim=True)
        if self.cfg.quality:
            iou = torch.sigmoid(out[:, k].double()).float()
            c.ratio = c.ratio * (iou.clamp(1e-6, 1.0) / c.mask_quality.clamp_min(1e-6)) ** self.quality_weight
        return c
