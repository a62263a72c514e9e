"""Small building blocks shared by the decoder and the heads (ONNX-exportable)."""
from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between."""

    def __init__(self, din: int, dhidden: int, dout: int, num_layers: int) -> None:
        super().__init__()
        dims = [din] + [dhidden] * (num_layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class Attention(nn.Module):
    """Multi-head attention written out (softmax in float32; bool mask True = blocked)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.h = num_heads
        self.d = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """q: ``[B, Q, C]``; k, v: ``[B, K, C]``; mask: ``[B, Q, K]`` bool or None -> ``[B, Q, C]``."""
        b, nq, c = q.shape
        nk = k.shape[1]
        qh = self.q(q).reshape(b, nq, self.h, self.d).transpose(1, 2)  # [B, h, Q, d]
        kh = self.k(k).reshape(b, nk, self.h, self.d).transpose(1, 2)  # [B, h, K, d]
        vh = self.v(v).reshape(b, nk, self.h, self.d).transpose(1, 2)  # [B, h, K, d]
        logits = (qh @ kh.transpose(-1, -2)).float() * (1.0 / math.sqrt(self.d))  # [B, h, Q, K]
        if mask is not None:
            logits = logits.masked_fill(mask[:, None], -1e9)
        attn = logits.softmax(-1).to(vh.dtype)
        out = (attn @ vh).transpose(1, 2).reshape(b, nq, c)
        return self.o(out)


def sine_position_embedding(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """DETR-style 2-D sine embedding, ``[h*w, dim]`` (pixel rows then columns, normalised to [0, 2pi])."""
    npf = dim // 2
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    dim_t = torch.arange(npf, device=device, dtype=torch.float32)
    dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)
    py = ys[:, None] / dim_t  # [h, npf]
    px = xs[:, None] / dim_t  # [w, npf]
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat((py[:, None, :].expand(h, w, npf), px[None, :, :].expand(h, w, npf)), dim=2)
    return pos.reshape(h * w, dim)
