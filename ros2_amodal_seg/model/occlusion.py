"""Occlusion Distinguish Module (after OAFormer).

From the (normed) queries it computes an occlusion embedding, an occlusion rate
(MLP + sigmoid), an occlusion-aware query update and an occlusion-aware attention
mask: a query that predicts itself occluded attends to its whole amodal extent
(including the occluder's pixels that hide it), an unoccluded one to its visible
region. Used as OEM -> decoder (second pass) -> OEM.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ros2_amodal_seg.model.layers import MLP


@dataclass
class OcclusionOutput:
    """Attributes:
        rates: ``[B, Q]`` predicted occlusion rate in [0, 1].
        embedding: ``[B, Q, C]`` occlusion embedding.
        query_delta: ``[B, Q, C]`` additive occlusion-aware update of the queries.
        attn_logits: ``[B, Q, h, w]`` logits whose sigmoid > 0.5 marks the pixels a query may attend to.
    """

    rates: torch.Tensor
    embedding: torch.Tensor
    query_delta: torch.Tensor
    attn_logits: torch.Tensor


class OcclusionModule(nn.Module):
    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.embed = MLP(hidden_dim, hidden_dim, hidden_dim, 2)      # occlusion embedding
        self.rate_head = MLP(hidden_dim, hidden_dim, 1, 2)           # -> sigmoid = occlusion rate
        self.fuse = nn.Linear(2 * hidden_dim, hidden_dim)            # occlusion-aware query

    def rate(self, queries: torch.Tensor) -> torch.Tensor:
        """``[B, Q, C]`` normed queries -> ``[B, Q]`` occlusion rates."""
        return torch.sigmoid(self.rate_head(self.embed(queries))[..., 0])

    def forward(self, queries: torch.Tensor, amodal_logits: torch.Tensor,
                visible_logits: torch.Tensor) -> OcclusionOutput:
        """queries ``[B, Q, C]`` (normed), amodal/visible logits ``[B, Q, h, w]``."""
        emb = self.embed(queries)                                   # [B, Q, C]
        rates = torch.sigmoid(self.rate_head(emb)[..., 0])          # [B, Q]
        delta = self.fuse(torch.cat([emb, emb * rates[..., None]], dim=-1))  # [B, Q, C]
        r = rates.detach()[..., None, None]
        attn = r * amodal_logits.detach() + (1 - r) * visible_logits.detach()  # [B, Q, h, w]
        return OcclusionOutput(rates=rates, embedding=emb, query_delta=delta, attn_logits=attn)


class PlainOcclusionHead(nn.Module):
    """Ablation (no occlusion module): occlusion rate from a plain MLP, amodal attention masks."""

    def __init__(self, hidden_dim: int) -> None:
        super().__init__()
        self.rate_head = MLP(hidden_dim, hidden_dim, 1, 2)

    def rate(self, queries: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.rate_head(queries)[..., 0])
