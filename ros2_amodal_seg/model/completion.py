"""Hidden-part completion: a second-stage crop network that decides, for every kept
instance, its amodal extent *behind the other instances*.

Why: an amodal mask has two kinds of boundary. Where the object is seen, the image shows
the boundary and the guided-filter refinement (:mod:`.upsample`) snaps the mask to it.
Behind an occluder nothing in the image shows it; the query's 80 x 60 amodal mask is the
only cue, and it is blurry and timid there. On the tuning split, replacing each kept
instance's amodal mask *only inside the other instances' visible masks* by the ground
truth lifts occluded AP from 12.5 to 36.6 (docs/model.md): that region is where the
occluded-AP gap is.

How: for each kept instance (after NMS, with full-resolution masks) a square crop around
its amodal mask, grown by ``context`` on each side, is resampled to ``S x S`` with

* its final amodal and visible masks (binary),
* the *occluder region*: the other kept instances' visible masks (binary),
* its amodal and visible probabilities straight from the 80 x 60 logits (bilinear),
* which crop pixels lie inside the image,
* its class as one-hot planes (the five shapes complete differently),

and a small U-Net (:class:`CompletionNet`) returns amodal logits on the crop. They are
pasted back and *replace the amodal mask only inside the occluder region*; everywhere
else the (refined) mask stays, so the seen boundaries keep their full-resolution
precision. The network is trained after the main model, on its own predictions matched
to ground truth (:mod:`.completion_train`).

:class:`CompletionStage` is the post-processing stage (:mod:`.postprocess`); the crops are
:mod:`.crops`' (OpenCV on the CPU, torch on a GPU). The network is called through
``run(planes [N, C, S, S]) -> [N, S, S] logits`` on tensors (:func:`torch_runner` over a
:class:`CompletionNet`, or ONNX Runtime).
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
from ros2_amodal_seg.model.upsample import sigmoid

#: input planes before the class one-hot: amodal, visible, occluder region, amodal prob, visible prob, in-image
PLANES: tuple[str, ...] = ("amodal", "visible", "occluders", "amodal_prob", "visible_prob", "inside")
OCCLUDERS = PLANES.index("occluders")


@dataclass(frozen=True)
class CompletionConfig:
    """The hidden-part completion network (``config/model.yaml``: ``completion``).

    Attributes:
        enabled: the checkpoint has a trained completion network (set by ``train-completion``).
        crop_size: S, crops are S x S.
        context: the crop is the amodal mask's bounding square grown by this fraction of its side
            on every side (the hidden part can reach beyond the predicted mask).
        min_side_px: smallest crop side [px of the full image].
        channels: U-Net widths at S, S/2, S/4 (the bottleneck at S/8 keeps the last width).
        threshold: probability above which a pixel of the occluder region belongs to the object.
    """

    enabled: bool = False
    crop_size: int = 64
    context: float = 0.4
    min_side_px: int = 16
    channels: tuple[int, ...] = (16, 32, 64)
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.crop_size < 8 or self.crop_size % 8:
            raise ConfigError(f"completion crop_size must be a multiple of 8 >= 8, got {self.crop_size}")
        if not 0.0 <= self.context <= 2.0 or self.min_side_px < 1:
            raise ConfigError(f"completion context must be in [0, 2] and min_side_px >= 1, got "
                              f"{self.context}, {self.min_side_px}")
        if len(self.channels) != 3 or min(self.channels) < 4:
            raise ConfigError(f"completion channels must be 3 widths >= 4, got {self.channels}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"completion threshold must be in (0, 1), got {self.threshold}")

    def in_channels(self, num_classes: int) -> int:
        return len(PLANES) + num_classes

    @property
    def crops(self) -> CropSpec:
        return CropSpec(self.crop_size, self.context, self.min_side_px)


# ---------------------------------------------------------------------------- network
def _block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    def gn(c: int) -> nn.GroupNorm:
        return nn.GroupNorm(max(1, min(8, c // 4)), c)

    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False), gn(cout),
                         nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False), gn(cout),
                         nn.ReLU(inplace=True))


class CompletionNet(nn.Module):
    """Small U-Net: ``[N, C, S, S]`` crop planes -> ``[N, S, S]`` amodal logits.

    Encoder at S, S/2, S/4, a dilated bottleneck at S/8 (its receptive field spans the crop),
    decoder with skip connections. The amodal-probability plane is added to the output as a
    prior (its logit), so an untrained residual leaves the model's own mask.
    """

    def __init__(self, cfg: CompletionConfig, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        self.enc0 = _block(cfg.in_channels(num_classes), c0)
        self.enc1 = _block(c0, c1)
        self.enc2 = _block(c1, c2)
        self.mid = _block(c2, c2, dilation=2)
        self.dec2 = _block(c2 + c2, c2)
        self.dec1 = _block(c2 + c1, c1)
        self.dec0 = _block(c1 + c0, c0)
        self.head = nn.Conv2d(c0, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @staticmethod
    def _up(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Nearest 2x upsampling (as expand + reshape: 3-6x faster than ``F.interpolate`` on CPU),
        then the skip connection."""
        b, c, h, w = x.shape
        up = x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)
        return torch.cat([up, skip], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[N, C, S, S]`` float planes (see :data:`PLANES`) -> ``[N, S, S]`` logits."""
        e0 = self.enc0(x)                                   # [N, c0, S, S]
        e1 = self.enc1(F.max_pool2d(e0, 2))                 # [N, c1, S/2, S/2]
        e2 = self.enc2(F.max_pool2d(e1, 2))                 # [N, c2, S/4, S/4]
        m = self.mid(F.max_pool2d(e2, 2))                   # [N, c2, S/8, S/8]
        d2 = self.dec2(self._up(m, e2))                     # [N, c2, S/4, S/4]
        d1 = self.dec1(self._up(d2, e1))                    # [N, c1, S/2, S/2]
        d0 = self.dec0(self._up(d1, e0))                    # [N, c0, S, S]
        p = x[:, PLANES.index("amodal_prob")].clamp(1e-3, 1 - 1e-3)
        prior = torch.log(p) - torch.log1p(-p)              # [N, S, S] the model's own amodal logit
        return self.head(d0)[:, 0] + prior


# ---------------------------------------------------------------------------- crops
@dataclass
class CompletionInputs:
    """Attributes (numpy arrays, or tensors on the masks' device):
        planes: ``[N, C, S, S]`` float32 network input (:data:`PLANES`, then the class one-hot).
        boxes: ``[N, 3]`` int64 crops ``(x0, y0, side)`` [px].
        visible_count: ``[H, W]`` int32, how many kept instances see each pixel (instance i's
            occluder region is where the count without i is > 0).
    """

    planes: np.ndarray | torch.Tensor
    boxes: np.ndarray | torch.Tensor
    visible_count: np.ndarray | torch.Tensor


def completion_inputs(amodal, visible, amodal_logits, visible_logits, class_index, num_classes: int,
                      cfg: CompletionConfig) -> CompletionInputs:
    """Crop planes of the kept instances (numpy arrays in -> numpy out; tensors -> tensors on their
    device, OpenCV on the CPU, torch elsewhere).

    Args:
        amodal, visible: ``[N, H, W]`` bool full-resolution masks (image frame).
        amodal_logits, visible_logits: ``[N, h, w]`` float mask-grid logits of the same instances.
        class_index: ``[N]`` int class index in ``0..num_classes-1``.
    """
    if isinstance(amodal, torch.Tensor):
        if not torch_kernels(amodal):
            x = completion_inputs(*(t.numpy() for t in (amodal, visible, amodal_logits.float(),
                                                          visible_logits.float(), class_index)), num_classes, cfg)
            return CompletionInputs(*(torch.from_numpy(a) for a in (x.planes, x.boxes, x.visible_count)))
        return _completion_inputs_t(amodal, visible, amodal_logits, visible_logits, class_index, num_classes, cfg)
    n, height, width = amodal.shape
    size = cfg.crop_size
    boxes = C.crop_boxes(amodal, cfg.crops)
    count = visible.sum(0, dtype=np.int32)
    planes = np.zeros((n, cfg.in_channels(num_classes), size, size), np.float32)
    for i in range(n):
        planes[i, :3] = C.mask_planes(amodal[i], visible[i], count, boxes[i], size)
        planes[i, 3] = sigmoid(C.crop_logits(amodal_logits[i], boxes[i], (height, width), size))
        planes[i, 4] = sigmoid(C.crop_logits(visible_logits[i], boxes[i], (height, width), size))
        planes[i, 5] = C.inside_fraction(boxes[i], (height, width), size)
        planes[i, len(PLANES) + int(class_index[i])] = 1.0
    return CompletionInputs(planes, boxes, count)


def _completion_inputs_t(amodal: torch.Tensor, visible: torch.Tensor, amodal_logits: torch.Tensor,
                         visible_logits: torch.Tensor, class_index: torch.Tensor, num_classes: int,
                         cfg: CompletionConfig) -> CompletionInputs:
    """:func:`completion_inputs` in torch (batched where the crops allow)."""
    n, height, width = amodal.shape
    size = cfg.crop_size
    boxes = C.crop_boxes(amodal, cfg.crops)
    count = visible.sum(0, dtype=torch.int32)
    planes = torch.zeros((n, cfg.in_channels(num_classes), size, size), device=amodal.device)
    for i, box in enumerate(boxes.tolist()):
        planes[i, :3] = C.mask_planes_t(amodal[i], visible[i], count, box, size)
    planes[:, 3] = torch.sigmoid(C.crop_logits_t(amodal_logits, boxes, (height, width), size))
    planes[:, 4] = torch.sigmoid(C.crop_logits_t(visible_logits, boxes, (height, width), size))
    planes[:, 5] = C.inside_fraction_t(boxes, (height, width), size)
    planes[torch.arange(n, device=amodal.device), len(PLANES) + class_index.long()] = 1.0
    return CompletionInputs(planes, boxes, count)


def paste_completion(amodal, visible, inputs: CompletionInputs, logits, threshold: float, index=None):
    """Replace each amodal mask inside its occluder region (and crop) by the completion.

    Args:
        amodal, visible: ``[N, H, W]`` bool. logits: ``[M, S, S]`` crop logits of the network for
            the instances ``index`` (default: all N). numpy or tensors, as :func:`completion_inputs`.
    Returns:
        ``[N, H, W]`` bool new amodal masks (still containing the visible masks).
    """
    if isinstance(amodal, torch.Tensor):
        if not torch_kernels(amodal):
            x = CompletionInputs(*(np.asarray(a) for a in (inputs.planes, inputs.boxes, inputs.visible_count)))
            return torch.from_numpy(paste_completion(amodal.numpy(), visible.numpy(), x, np.asarray(logits),
                                                     threshold, None if index is None else np.asarray(index)))
        return _paste_completion_t(amodal, visible, inputs, logits, threshold, index)
    out = amodal.copy()
    n, height, width = amodal.shape
    for k, i in enumerate(range(n) if index is None else index):
        x0, y0, side = (int(v) for v in inputs.boxes[i])
        xa, ya, xb, yb = win = C.window(inputs.boxes[i], (height, width))
        if xb <= xa or yb <= ya:
            continue
        region = C.occluders_in_window(inputs.visible_count, visible[i], win) & ~visible[i, ya:yb, xa:xb]
        if not region.any():
            continue
        # resize only the rows/columns of the crop that hold the region
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        ra, rb, ca, cb = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        prob = sigmoid(logits[k].astype(np.float32))
        full = C.resize_part(prob, side, ya - y0 + ra, ya - y0 + rb, xa - x0 + ca, xa - x0 + cb) > threshold
        part = out[i, ya + ra:ya + rb, xa + ca:xa + cb]
        reg = region[ra:rb, ca:cb]
        part[reg] = full[reg]
    return out | visible


def _paste_completion_t(amodal: torch.Tensor, visible: torch.Tensor, inputs: CompletionInputs,
                        logits: torch.Tensor, threshold: float, index=None) -> torch.Tensor:
    """:func:`paste_completion` in torch."""
    out = amodal.clone()
    n, height, width = amodal.shape
    boxes = inputs.boxes.tolist()
    for k, i in enumerate(range(n) if index is None else [int(v) for v in index]):
        x0, y0, side = boxes[i]
        xa, ya, xb, yb = C.window(boxes[i], (height, width))
        if xb <= xa or yb <= ya:
            continue
        vis = visible[i, ya:yb, xa:xb]
        region = ((inputs.visible_count[ya:yb, xa:xb] - vis.int()) > 0) & ~vis
        full = C.resize_part_t(torch.sigmoid(logits[k].float()), side, ya - y0, yb - y0, xa - x0, xb - x0) > threshold
        part = out[i, ya:yb, xa:xb]
        out[i, ya:yb, xa:xb] = torch.where(region, full, part)
    return out | visible


class CompletionStage:
    """Post-processing stage: each candidate's amodal mask inside the other candidates' visible
    masks (its occluder region) is decided by the completion network.

    Args:
        cfg: the network's :class:`CompletionConfig`. num_classes: K.
        run: ``run(planes [N, C, S, S]) -> [N, S, S]`` logits, on tensors of the candidates' device
            (:func:`torch_runner`, or an ONNX Runtime session wrapped alike).
    """

    name = "completion"

    def __init__(self, cfg: CompletionConfig, num_classes: int, run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.run = run

    def __call__(self, c: Candidates) -> Candidates:
        if len(c) == 0:
            return c
        inputs = completion_inputs(c.amodal, c.visible, c.amodal_logits, c.visible_logits, c.main_class,
                                   self.num_classes, self.cfg)
        planes = torch.as_tensor(inputs.planes, device=c.device)
        # only crops where another instance is seen outside this one's own visible mask can change
        decide = (planes[:, OCCLUDERS] > 0) & (planes[:, PLANES.index("visible")] < 1)
        sel = torch.nonzero(decide.flatten(1).any(1))[:, 0]
        if len(sel) == 0:
            return c
        logits = self.run(planes[sel].contiguous()).float()                  # [M, S, S]
        c.amodal = paste_completion(c.amodal, c.visible, inputs, logits, self.cfg.threshold, index=sel)
        return c


def torch_runner(net: nn.Module, device: torch.device | str, autocast_dtype: torch.dtype | None = None
                 ) -> Callable[..., torch.Tensor]:
    """``run`` over a torch post-processing network (the completion or the re-reading network):
    tensors in, float tensor out, on ``device``; ``autocast_dtype`` (CUDA only): mixed precision."""

    def run(*tensors: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            args = [t.to(device) for t in tensors]
            if autocast_dtype is not None:
                with torch.autocast("cuda", dtype=autocast_dtype):
                    return net(*args).float()
            return net(*args).float()

    return run
