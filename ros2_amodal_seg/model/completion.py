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

The numpy side (crops in, masks out) is shared by the torch and ONNX predictors; the
network is called through a callable ``run(x [N, C, S, S] float32) -> [N, S, S] logits``.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.errors import ConfigError
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
        flip_average: run the network on each crop and on its mirror image and average the two
            logits (test-time augmentation: about twice the network's time, +0.013 IoU in the
            decision regions on the validation crops).
    """

    enabled: bool = False
    crop_size: int = 64
    context: float = 0.4
    min_side_px: int = 16
    channels: tuple[int, ...] = (16, 32, 64)
    threshold: float = 0.5
    flip_average: bool = True

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


def with_flip(cfg: CompletionConfig, flip: bool | None) -> CompletionConfig:
    """``cfg`` with ``flip_average`` set to ``flip`` (None: unchanged), for run-time overrides."""
    return cfg if flip is None else dataclasses.replace(cfg, flip_average=bool(flip))


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


# ---------------------------------------------------------------------------- crops (numpy)
def crop_boxes(amodal: np.ndarray, cfg) -> np.ndarray:
    """``[N, H, W]`` bool amodal masks -> ``[N, 3]`` int64 square crops ``(x0, y0, side)`` [px].

    ``cfg``: a :class:`CompletionConfig` or any config with ``context`` and ``min_side_px`` (the
    re-classifier's :class:`~ros2_amodal_seg.model.reclassify.ReclassifyConfig` uses the same crops).

    The square is centred on the mask's bounding box, its side ``(1 + 2 context)`` times the
    box's longer side (at least ``min_side_px``); it may run past the image.
    """
    n = len(amodal)
    out = np.zeros((n, 3), np.int64)
    for i in range(n):
        rows, cols = np.flatnonzero(amodal[i].any(1)), np.flatnonzero(amodal[i].any(0))
        if len(rows) == 0:
            out[i] = (0, 0, cfg.min_side_px)
            continue
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        side = max(int(np.ceil(max(y1 - y0, x1 - x0) * (1 + 2 * cfg.context))), cfg.min_side_px)
        out[i] = (int(round((x0 + x1 - side) / 2)), int(round((y0 + y1 - side) / 2)), side)
    return out


def _cut(plane: np.ndarray, x0: int, y0: int, side: int, dtype=np.float32) -> np.ndarray:
    """``[H, W, ...]`` -> ``[side, side, ...]`` window at ``(x0, y0)``, zero outside the image."""
    height, width = plane.shape[:2]
    buf = np.zeros((side, side) + plane.shape[2:], dtype)
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if xb > xa and yb > ya:
        buf[ya - y0:yb - y0, xa - x0:xb - x0] = plane[ya:yb, xa:xb]
    return buf


def crop_plane(plane: np.ndarray, box, size: int) -> np.ndarray:
    """``[H, W]`` bool/float plane -> ``[size, size]`` float32 crop (area average; 0 outside the image)."""
    x0, y0, side = (int(v) for v in box)
    return cv2.resize(_cut(plane, x0, y0, side), (size, size), interpolation=cv2.INTER_AREA)


def inside_fraction(box, image_size: tuple[int, int], size: int) -> np.ndarray:
    """``[size, size]`` float32: the share of each crop pixel that lies inside the image (what
    :func:`crop_plane` gives for a plane of ones, computed from the box alone)."""
    x0, y0, side = (float(v) for v in box)
    edges = np.arange(size + 1) * (side / size)

    def axis(origin: float, extent: int) -> np.ndarray:
        lo, hi = origin + edges[:-1], origin + edges[1:]
        return (np.clip(hi, 0, extent) - np.clip(lo, 0, extent)) / (hi - lo)

    height, width = image_size
    return np.outer(axis(y0, height), axis(x0, width)).astype(np.float32)


def crop_logits(logits: np.ndarray, box, image_size: tuple[int, int], size: int) -> np.ndarray:
    """``[h, w]`` mask-grid logits -> ``[size, size]`` float32 logits on the crop ``box`` of an
    ``image_size`` ``(H, W)`` image (bilinear, pixel centres; edge values outside the grid)."""
    h, w = logits.shape
    height, width = image_size
    x0, y0, side = (float(v) for v in box)
    step = side / size                                   # image pixels per crop pixel
    sx, sy = w / width, h / height                       # grid cells per image pixel
    M = np.array([[step * sx, 0.0, (x0 + 0.5 * step) * sx - 0.5],
                  [0.0, step * sy, (y0 + 0.5 * step) * sy - 0.5]], np.float64)
    return cv2.warpAffine(logits.astype(np.float32), M, (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def occluders_in_window(visible_count: np.ndarray, visible_i: np.ndarray,
                        window: tuple[int, int, int, int]) -> np.ndarray:
    """Instance i's occluder region inside ``window`` ``(xa, ya, xb, yb)``, from the ``[H, W]`` count of
    kept instances seeing each pixel and i's own ``[H, W]`` visible mask."""
    xa, ya, xb, yb = window
    return (visible_count[ya:yb, xa:xb] - visible_i[ya:yb, xa:xb]) > 0


def _window(box, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part ``(xa, ya, xb, yb)`` of a crop box that lies in the image (may be empty)."""
    x0, y0, side = (int(v) for v in box)
    height, width = image_size
    return max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)


def mask_planes(amodal_i: np.ndarray, visible_i: np.ndarray, visible_count: np.ndarray, box,
                size: int) -> np.ndarray:
    """``[3, size, size]`` float32 crop planes of one instance (area average, 0 outside the image):
    its ``[H, W]`` bool amodal and visible masks and its occluder region (from the ``[H, W]`` count
    of kept instances seeing each pixel)."""
    x0, y0, side = (int(v) for v in box)
    xa, ya, xb, yb = win = _window(box, amodal_i.shape)
    # the three planes as one 3-channel uint8 image: one area resize
    buf = np.zeros((side, side, 3), np.uint8)
    if xb > xa and yb > ya:
        sub = buf[ya - y0:yb - y0, xa - x0:xb - x0]
        sub[..., 0] = amodal_i[ya:yb, xa:xb]
        sub[..., 1] = visible_i[ya:yb, xa:xb]
        sub[..., 2] = occluders_in_window(visible_count, visible_i, win)
        buf *= 255
    small = cv2.resize(buf, (size, size), interpolation=cv2.INTER_AREA)
    return small.transpose(2, 0, 1) / np.float32(255.0)


@dataclass
class CompletionInputs:
    """Attributes:
        planes: ``[N, C, S, S]`` float32 network input (:data:`PLANES`, then the class one-hot).
        boxes: ``[N, 3]`` int64 crops ``(x0, y0, side)`` [px].
        visible_count: ``[H, W]`` int32, how many kept instances see each pixel (instance i's
            occluder region is where the count without i is > 0).
    """

    planes: np.ndarray
    boxes: np.ndarray
    visible_count: np.ndarray

    def occluders(self, i: int, visible_i: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
        """Instance i's occluder region inside ``window`` ``(xa, ya, xb, yb)``."""
        return occluders_in_window(self.visible_count, visible_i, window)


def completion_inputs(amodal: np.ndarray, visible: np.ndarray, amodal_logits: np.ndarray,
                      visible_logits: np.ndarray, class_index: np.ndarray, num_classes: int,
                      cfg: CompletionConfig) -> CompletionInputs:
    """Crop planes of the kept instances.

    Args:
        amodal, visible: ``[N, H, W]`` bool full-resolution masks (image frame).
        amodal_logits, visible_logits: ``[N, h, w]`` float mask-grid logits of the same instances.
        class_index: ``[N]`` int class index in ``0..num_classes-1``.
    """
    n, height, width = amodal.shape
    size = cfg.crop_size
    boxes = crop_boxes(amodal, cfg)
    count = visible.sum(0, dtype=np.int32)
    planes = np.zeros((n, cfg.in_channels(num_classes), size, size), np.float32)
    for i in range(n):
        planes[i, :3] = mask_planes(amodal[i], visible[i], count, boxes[i], size)
        planes[i, 3] = sigmoid(crop_logits(amodal_logits[i], boxes[i], (height, width), size))
        planes[i, 4] = sigmoid(crop_logits(visible_logits[i], boxes[i], (height, width), size))
        planes[i, 5] = inside_fraction(boxes[i], (height, width), size)
        planes[i, len(PLANES) + int(class_index[i])] = 1.0
    return CompletionInputs(planes, boxes, count)


def paste_completion(amodal: np.ndarray, visible: np.ndarray, inputs: CompletionInputs, logits: np.ndarray,
                     threshold: float, index: np.ndarray | None = None) -> np.ndarray:
    """Replace each amodal mask inside its occluder region (and crop) by the completion.

    Args:
        amodal, visible: ``[N, H, W]`` bool. logits: ``[M, S, S]`` crop logits of the network for
            the instances ``index`` (default: all N).
    Returns:
        ``[N, H, W]`` bool new amodal masks (still containing the visible masks).
    """
    out = amodal.copy()
    n, height, width = amodal.shape
    for k, i in enumerate(range(n) if index is None else index):
        x0, y0, side = (int(v) for v in inputs.boxes[i])
        xa, ya, xb, yb = win = _window(inputs.boxes[i], (height, width))
        if xb <= xa or yb <= ya:
            continue
        region = inputs.occluders(i, visible[i], win) & ~visible[i, ya:yb, xa:xb]
        if not region.any():
            continue
        # resize only the rows/columns of the crop that hold the region
        rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
        ra, rb, ca, cb = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        prob = sigmoid(logits[k].astype(np.float32))
        full = _resize_part(prob, side, ya - y0 + ra, ya - y0 + rb, xa - x0 + ca, xa - x0 + cb) > threshold
        part = out[i, ya + ra:ya + rb, xa + ca:xa + cb]
        reg = region[ra:rb, ca:cb]
        part[reg] = full[reg]
    return out | visible


def _resize_part(small: np.ndarray, side: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Rows ``r0:r1`` and columns ``c0:c1`` of ``cv2.resize(small, (side, side), INTER_LINEAR)``
    without computing the rest (same pixel-centre mapping)."""
    size = small.shape[0]
    scale = size / side
    M = np.array([[scale, 0.0, (c0 + 0.5) * scale - 0.5], [0.0, scale, (r0 + 0.5) * scale - 0.5]], np.float64)
    return cv2.warpAffine(small, M, (c1 - c0, r1 - r0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


class HiddenCompleter:
    """Post-processing step: ``completer(amodal, visible, amodal_logits, visible_logits, class_index)``
    -> new amodal masks. ``run`` maps ``[N, C, S, S]`` float32 planes to ``[N, S, S]`` logits
    (torch or ONNX Runtime)."""

    def __init__(self, cfg: CompletionConfig, num_classes: int, run: Callable[[np.ndarray], np.ndarray]) -> None:
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.run = run
        self.last_ms = 0.0          # wall time of the last call [ms]

    def __call__(self, amodal: np.ndarray, visible: np.ndarray, amodal_logits: np.ndarray,
                 visible_logits: np.ndarray, class_index: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self._complete(amodal, visible, amodal_logits, visible_logits, class_index)
        finally:
            self.last_ms = (time.perf_counter() - t0) * 1e3

    def _complete(self, amodal: np.ndarray, visible: np.ndarray, amodal_logits: np.ndarray,
                  visible_logits: np.ndarray, class_index: np.ndarray) -> np.ndarray:
        if len(amodal) == 0:
            return amodal
        inputs = completion_inputs(amodal, visible, amodal_logits, visible_logits, class_index,
                                   self.num_classes, self.cfg)
        # only crops where another instance is seen outside this one's own visible mask can change
        planes = inputs.planes
        decide = (planes[:, OCCLUDERS] > 0) & (planes[:, PLANES.index("visible")] < 1)
        sel = np.flatnonzero(decide.reshape(len(amodal), -1).any(1))
        if len(sel) == 0:
            return amodal
        x = np.ascontiguousarray(planes[sel])                        # [M, C, S, S]
        if self.cfg.flip_average:
            both = np.asarray(self.run(np.concatenate([x, x[..., ::-1]])), np.float32)    # [2M, S, S]
            logits = 0.5 * (both[:len(sel)] + both[len(sel):, :, ::-1])
        else:
            logits = np.asarray(self.run(x), np.float32)
        return paste_completion(amodal, visible, inputs, logits, self.cfg.threshold, index=sel)


def torch_runner(net: nn.Module, device: torch.device | str) -> Callable[..., np.ndarray]:
    """``run`` over a torch post-processing network: numpy inputs in, numpy output out (for
    :class:`HiddenCompleter` over a :class:`CompletionNet`, and for the re-classifier)."""

    def run(*arrays: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(*(torch.from_numpy(a).to(device) for a in arrays)).float().cpu().numpy()

    return run
