"""Mask2Former-style transformer decoder with masked cross-attention and an occlusion-aware second pass."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.model.amodal_decoder import AmodalHeads
from ros2_amodal_seg.model.layers import Attention, sine_position_embedding
from ros2_amodal_seg.model.occlusion import OcclusionModule, PlainOcclusionHead
from ros2_amodal_seg.model.shape_head import combine_class_logits


@dataclass(frozen=True)
class TransformerDecoderConfig:
    num_queries: int = 50
    num_heads: int = 4
    dim_feedforward: int = 256
    num_layers: int = 3            # first pass (standard masked attention on amodal masks)
    num_occlusion_layers: int = 1  # second pass (occlusion-aware queries and attention masks)
    dropout: float = 0.0


@dataclass
class LayerPrediction:
    """Predictions after one decoder layer (deep supervision).

    Attributes:
        class_logits ``[B, Q, K+1]``; amodal_logits, visible_logits ``[B, Q, h, w]``;
        occlusion_rates ``[B, Q]`` in [0, 1]; order_scores ``[B, Q]`` (smaller = nearer);
        queries ``[B, Q, C]`` the layer-normed query features the heads read;
        shape_logits ``[B, Q, K]`` from the mask-crop shape head (final layer only, else None).
    """

    class_logits: torch.Tensor
    amodal_logits: torch.Tensor
    visible_logits: torch.Tensor
    occlusion_rates: torch.Tensor
    order_scores: torch.Tensor
    queries: torch.Tensor | None = None
    shape_logits: torch.Tensor | None = None

    def scored_class_logits(self) -> torch.Tensor:
        """``[B, Q, K+1]`` what post-processing and matching score: the class logits, or with a shape
        head their combination (objectness x shape distribution, as log-probabilities)."""
        if self.shape_logits is None:
            return self.class_logits
        return combine_class_logits(self.class_logits, self.shape_logits)


class DecoderLayer(nn.Module):
    """masked cross-attention -> self-attention -> FFN (post-norm, as Mask2Former)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.cross = Attention(dim, heads)
        self.self_attn = Attention(dim, heads)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, qpos: torch.Tensor, mem: torch.Tensor, mpos: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """q, qpos ``[B, Q, C]``; mem ``[B, HW, C]``; mpos ``[1, HW, C]``; mask ``[B, Q, HW]`` bool (True = blocked)."""
        q = self.n1(q + self.drop(self.cross(q + qpos, mem + mpos, mem, mask)))
        qq = q + qpos
        q = self.n2(q + self.drop(self.self_attn(qq, qq, q)))
        return self.n3(q + self.drop(self.ffn(q)))


def attention_mask(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, Q, h, w]`` mask logits -> ``[B, Q, H*W]`` bool blocked-mask at ``size``; empty rows are unblocked."""
    m = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    blocked = (m.flatten(2) < 0.0)  # sigmoid < 0.5
    full = blocked.all(dim=-1, keepdim=True)
    return blocked & ~full


class TransformerDecoder(nn.Module):
    def __init__(self, cfg: TransformerDecoderConfig, hidden_dim: int, mask_dim: int, num_classes: int,
                 use_occlusion_module: bool, num_levels: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_levels = num_levels
        self.query_feat = nn.Embedding(cfg.num_queries, hidden_dim)
        self.query_pos = nn.Embedding(cfg.num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        n = cfg.num_layers + cfg.num_occlusion_layers
        self.layers = nn.ModuleList(DecoderLayer(hidden_dim, cfg.num_heads, cfg.dim_feedforward, cfg.dropout)
                                    for _ in range(n))
        self.heads = AmodalHeads(hidden_dim, mask_dim, num_classes)
        self.use_occlusion_module = use_occlusion_module
        self.occlusion = OcclusionModule(hidden_dim) if use_occlusion_module else PlainOcclusionHead(hidden_dim)

    def _predict(self, q: torch.Tensor, mask_features: torch.Tensor):
        h = self.heads(q, mask_features)
        if self.use_occlusion_module:
            occ = self.occlusion(h.queries, h.amodal_logits, h.visible_logits)
            rates, attn, delta = occ.rates, occ.attn_logits, occ.query_delta
        else:
            rates, attn, delta = self.occlusion.rate(h.queries), h.amodal_logits, None
        pred = LayerPrediction(h.class_logits, h.amodal_logits, h.visible_logits, rates, h.order_scores, h.queries)
        return pred, attn, delta

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor) -> list[LayerPrediction]:
        """multi_scale: 3 maps ``[B, C, h_l, w_l]`` (coarse first); mask_features ``[B, D, h, w]``.

        Returns the predictions before the first layer and after every layer (last = final).
        """
        b = mask_features.shape[0]
        mems, poss, sizes = [], [], []
        for lvl, x in enumerate(multi_scale):
            hh, ww = int(x.shape[-2]), int(x.shape[-1])
            sizes.append((hh, ww))
            mems.append(x.flatten(2).transpose(1, 2) + self.level_embed.weight[lvl][None, None])  # [B, HW, C]
            poss.append(sine_position_embedding(hh, ww, x.shape[1], x.device)[None].to(x.dtype))  # [1, HW, C]
        q = self.query_feat.weight[None].expand(b, -1, -1)   # [B, Q, C]
        qpos = self.query_pos.weight[None].expand(b, -1, -1)
        pred, attn_logits, delta = self._predict(q, mask_features)
        preds = [pred]
        # first pass: attention masks from the amodal masks
        attn_logits = pred.amodal_logits
        for i, layer in enumerate(self.layers):
            lvl = i % self.num_levels
            if i == self.cfg.num_layers and delta is not None:
                q = q + delta  # OEM: occlusion-aware queries enter the second pass
            mask = attention_mask(attn_logits, sizes[lvl])
            q = layer(q, qpos, mems[lvl], poss[lvl], mask)
            pred, occ_attn, delta = self._predict(q, mask_features)
            preds.append(pred)
            # second pass (and the layer feeding it) uses the occlusion-aware attention masks
            attn_logits = occ_attn if i + 1 >= self.cfg.num_layers else pred.amodal_logits
        return preds
