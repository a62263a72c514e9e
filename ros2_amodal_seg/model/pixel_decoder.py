"""FPN-like pixel decoder: multi-scale memory for the transformer + stride-4 per-pixel embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.model.backbone import BackboneOutput, ConvNormAct


@dataclass(frozen=True)
class PixelDecoderConfig:
    hidden_dim: int = 128   # width of every FPN level and of the mask embeddings
    mask_dim: int = 128     # per-pixel embedding width (== query mask-embedding width)


@dataclass
class PixelDecoderOutput:
    """Attributes:
        mask_features: ``[B, D, H/4, W/4]`` per-pixel embeddings.
        multi_scale: list of 3 ``[B, C, h_l, w_l]`` maps at strides 32, 16, 8 (coarse first).
    """

    mask_features: torch.Tensor
    multi_scale: list[torch.Tensor]


class PixelDecoder(nn.Module):
    def __init__(self, cfg: PixelDecoderConfig, in_channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        c = cfg.hidden_dim
        self.lateral = nn.ModuleList([nn.Conv2d(ci, c, 1) for ci in in_channels])  # c2..c5
        self.output = nn.ModuleList([ConvNormAct(c, c, 3) for _ in in_channels])
        self.mask_proj = nn.Conv2d(c, cfg.mask_dim, 3, padding=1)

    def forward(self, feats: BackboneOutput) -> PixelDecoderOutput:
        xs = [feats.c2, feats.c3, feats.c4, feats.c5]
        y = self.output[3](self.lateral[3](xs[3]))  # [B, C, H/32, W/32]
        outs = [y]
        for i in (2, 1, 0):
            lat = self.lateral[i](xs[i])
            y = lat + F.interpolate(y, size=lat.shape[-2:], mode="nearest")
            y = self.output[i](y)
            outs.append(y)
        # outs: s32, s16, s8, s4
        return PixelDecoderOutput(mask_features=self.mask_proj(outs[3]), multi_scale=outs[:3])
