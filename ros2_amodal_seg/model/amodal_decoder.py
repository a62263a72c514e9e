"""Amodal decoder heads: class (+ no-object), amodal / visible mask logits, depth-order score.

Masks are dot products of per-query mask embeddings with the per-pixel embeddings
(sigmoid applied by the consumer); they are independent per query (may overlap).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ros2_amodal_seg.model.layers import MLP


@dataclass
class HeadOutput:
    """Per-query predictions of one decoder layer.

    Attributes:
        queries: ``[B, Q, C]`` layer-normed query features.
        class_logits: ``[B, Q, K+1]`` (last = no object).
        amodal_logits: ``[B, Q, h, w]`` amodal mask logits at the mask-feature resolution.
        visible_logits: ``[B, Q, h, w]`` visible mask logits.
        order_scores: ``[B, Q]`` relative depth (smaller = nearer).
    """

    queries: torch.Tensor
    class_logits: torch.Tensor
    amodal_logits: torch.Tensor
    visible_logits: torch.Tensor
    order_scores: torch.Tensor


class AmodalHeads(nn.Module):
    def __init__(self, hidden_dim: int, mask_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.amodal_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.visible_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.order_embed = MLP(hidden_dim, hidden_dim, 1, 2)

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor) -> HeadOutput:
        """queries ``[B, Q, C]``, mask_features ``[B, D, h, w]``."""
        q = self.norm(queries)
        amodal = torch.einsum("bqc,bchw->bqhw", self.amodal_embed(q), mask_features)
        visible = torch.einsum("bqc,bchw->bqhw", self.visible_embed(q), mask_features)
        return HeadOutput(queries=q, class_logits=self.class_embed(q), amodal_logits=amodal,
                          visible_logits=visible, order_scores=self.order_embed(q)[..., 0])
