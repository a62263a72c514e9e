"""Training losses: classification, amodal/visible mask BCE + dice, occlusion rate, depth order.

Targets per image (dict of tensors, mask grid = model output grid ``h x w``):
    labels ``[N]`` int64 0..K-1; amodal, visible ``[N, h, w]`` float {0, 1};
    occlusion ``[N]`` float in [0, 1]; occ_pairs ``[M, 2]`` int64 rows ``(i, j)``: object j occludes object i.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ros2_amodal_seg.model.matcher import MatcherConfig, hungarian_match
from ros2_amodal_seg.model.transformer_decoder import LayerPrediction


@dataclass(frozen=True)
class LossConfig:
    weight_class: float = 0.2
    no_object_weight: float = 0.1   # CE weight of the no-object class
    weight_mask: float = 0.5        # BCE, amodal masks
    weight_dice: float = 0.5        # dice, amodal masks
    weight_visible: float = 1.0     # multiplier of the visible-mask BCE + dice terms
    weight_occlusion: float = 2.0   # smooth L1 on occlusion rate
    weight_order: float = 1.0       # pairwise depth-order hinge
    order_margin: float = 1.0
    deep_supervision: bool = True
    weight_shape: float = 0.5       # CE of the mask-crop shape head (when the model has one)
    shape_iou: float = 0.5          # unmatched queries whose amodal mask IoU with an object >= this learn its shape too
    weight_hidden: float = 10.0     # extra amodal BCE weight where the object may be hidden (see hidden_region)
    hidden_dilation: int = 3        # mask cells: how far around its amodal mask others' visible area counts


def hidden_region(amodal: torch.Tensor, visible: torch.Tensor, all_visible: torch.Tensor,
                  dilation: int) -> torch.Tensor:
    """Pixels where an object's amodal extent is decided behind an occluder.

    Args:
        amodal, visible: ``[M, h, w]`` float {0, 1} GT masks of M objects.
        all_visible: ``[h, w]`` float {0, 1}, union of the visible masks of every object in the image.
        dilation: radius (mask cells) of the neighbourhood of each amodal mask that is searched.

    Returns:
        ``[M, h, w]`` float {0, 1}: the object's hidden part (amodal and not visible) plus the other
        objects' visible area within ``dilation`` cells of its amodal mask, i.e. positives and
        negatives under occluders, where a visible-only prediction is wrong or nearly so.
    """
    hidden = amodal * (1 - visible)
    near = F.max_pool2d(amodal[:, None], 2 * dilation + 1, stride=1, padding=dilation)[:, 0] if dilation > 0 \
        else amodal
    others = (all_visible[None] - visible).clamp(0, 1) * near
    return (hidden + others).clamp(max=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask 1 - dice. logits, targets ``[M, P]`` -> ``[M]``."""
    p = logits.sigmoid()
    num = 2 * (p * targets).sum(-1)
    den = p.sum(-1) + targets.sum(-1)
    return 1 - (num + 1) / (den + 1)


def order_loss(scores: torch.Tensor, pairs: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge on physically inconsistent orders.

    Args:
        scores: ``[N]`` order scores of the matched objects (smaller = nearer), in target order.
        pairs: ``[M, 2]`` rows ``(i, j)``: j occludes i, so we want ``scores[j] + margin <= scores[i]``.

    Returns:
        Scalar mean of ``relu(margin + s_j - s_i)`` (0 when no pair).
    """
    if pairs.numel() == 0:
        return scores.sum() * 0.0
    return F.relu(margin + scores[pairs[:, 1]] - scores[pairs[:, 0]]).mean()


class SetCriterion(nn.Module):
    def __init__(self, num_classes: int, cfg: LossConfig = LossConfig(),
                 matcher: MatcherConfig = MatcherConfig()) -> None:
        super().__init__()
        self.k = num_classes
        self.cfg = cfg
        self.matcher = matcher
        w = torch.ones(num_classes + 1)
        w[-1] = cfg.no_object_weight
        self.register_buffer("class_weight", w, persistent=False)

    def hidden_regions(self, targets: list[dict]) -> list[torch.Tensor | None]:
        """Per image ``[N, h*w]`` :func:`hidden_region` of every target object (None when it has none).

        It depends on the targets only, so :meth:`forward` computes it once for all decoder layers.
        """
        out: list[torch.Tensor | None] = []
        for t in targets:
            if len(t["labels"]) == 0:
                out.append(None)
                continue
            va = t["visible"].float()
            out.append(hidden_region(t["amodal"].float(), va, va.amax(0), self.cfg.hidden_dilation).flatten(1))
        return out

    def layer_losses(self, pred: LayerPrediction, targets: list[dict],
                     hidden: list[torch.Tensor | None] | None = None) -> dict[str, torch.Tensor]:
        """Losses of one layer's predictions (``[B, Q, ...]``) against the batch targets.

        ``hidden``: :meth:`hidden_regions` of ``targets`` (computed here when not given).
        """
        if hidden is None and self.cfg.weight_hidden > 0:
            hidden = self.hidden_regions(targets)
        b, q = pred.class_logits.shape[:2]
        dev = pred.class_logits.device
        tgt_cls = torch.full((b, q), self.k, dtype=torch.int64, device=dev)
        src_a, src_v, tgt_a, tgt_v, src_o, tgt_o, order_terms = [], [], [], [], [], [], []
        hid = []
        scored = pred.scored_class_logits().detach()
        shape_tgt = torch.full((b, q), -100, dtype=torch.int64, device=dev)   # -100 = ignored
        for i, t in enumerate(targets):
            qi, ti = hungarian_match(scored[i], pred.amodal_logits[i], pred.visible_logits[i],
                                     t["labels"], t["amodal"], t["visible"], self.matcher)
            if len(qi) == 0:
                continue
            qi_t = torch.as_tensor(qi, device=dev)
            ti_t = torch.as_tensor(ti, device=dev)
            tgt_cls[i, qi_t] = t["labels"][ti_t]
            if pred.shape_logits is not None:
                # duplicates of an object share its shape: every query whose mask overlaps it enough learns it
                with torch.no_grad():
                    pm = (pred.amodal_logits[i] > 0).flatten(1).float()           # [Q, hw]
                    gm = (t["amodal"] > 0.5).flatten(1).float()                    # [N, hw]
                    inter = pm @ gm.T
                    iou = inter / (pm.sum(1)[:, None] + gm.sum(1)[None] - inter).clamp_min(1)
                    best, arg = iou.max(1)
                    ok = best >= self.cfg.shape_iou
                    shape_tgt[i, ok] = t["labels"][arg[ok]]
                shape_tgt[i, qi_t] = t["labels"][ti_t]
            src_a.append(pred.amodal_logits[i, qi_t].flatten(1))
            src_v.append(pred.visible_logits[i, qi_t].flatten(1))
            tgt_a.append(t["amodal"][ti_t].flatten(1).float())
            tgt_v.append(t["visible"][ti_t].flatten(1).float())
            if hidden is not None:
                hid.append(hidden[i][ti_t])
            src_o.append(pred.occlusion_rates[i, qi_t])
            tgt_o.append(t["occlusion"][ti_t].float())
            pairs = t.get("occ_pairs")
            if pairs is not None and pairs.numel():
                # scores of every target object: query matched to target k
                q_of_t = torch.empty(len(t["labels"]), dtype=torch.int64, device=dev)
                q_of_t[ti_t] = qi_t
                order_terms.append(order_loss(pred.order_scores[i][q_of_t], pairs, self.cfg.order_margin))
        logits = pred.class_logits.float()
        loss_ce = F.cross_entropy(logits.transpose(1, 2), tgt_cls, weight=self.class_weight)
        zero = logits.sum() * 0.0
        if src_a:
            sa, sv = torch.cat(src_a).float(), torch.cat(src_v).float()
            ta, tv = torch.cat(tgt_a), torch.cat(tgt_v)
            bce = F.binary_cross_entropy_with_logits(sa, ta, reduction="none")     # [M, hw]
            loss_mask = bce.mean(1).mean()
            loss_hidden = (bce * torch.cat(hid)).mean(1).mean() if hid else zero
            loss_dice = dice_loss(sa, ta).mean()
            loss_vmask = F.binary_cross_entropy_with_logits(sv, tv, reduction="none").mean(1).mean()
            loss_vdice = dice_loss(sv, tv).mean()
            loss_occ = F.smooth_l1_loss(torch.cat(src_o).float(), torch.cat(tgt_o), beta=0.1)
        else:
            loss_mask = loss_dice = loss_vmask = loss_vdice = loss_occ = loss_hidden = zero + pred.amodal_logits.sum() * 0.0
        loss_order = torch.stack(order_terms).mean() if order_terms else zero + pred.order_scores.sum() * 0.0
        if pred.shape_logits is not None and bool((shape_tgt >= 0).any()):
            loss_shape = F.cross_entropy(pred.shape_logits.float().flatten(0, 1), shape_tgt.flatten())
        else:
            loss_shape = zero + (pred.shape_logits.sum() * 0.0 if pred.shape_logits is not None else 0.0)
        c = self.cfg
        return {
            "class": c.weight_class * loss_ce,
            "mask": c.weight_mask * loss_mask,
            "dice": c.weight_dice * loss_dice,
            "hidden": c.weight_mask * c.weight_hidden * loss_hidden,
            "visible_mask": c.weight_visible * c.weight_mask * loss_vmask,
            "visible_dice": c.weight_visible * c.weight_dice * loss_vdice,
            "occlusion": c.weight_occlusion * loss_occ,
            "order": c.weight_order * loss_order,
            "shape": c.weight_shape * loss_shape,
        }

    def forward(self, final: LayerPrediction, aux: list[LayerPrediction],
                targets: list[dict]) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (final + every aux layer when deep supervision) and a float breakdown."""
        layers = [final] + (list(aux) if self.cfg.deep_supervision else [])
        total = None
        parts: dict[str, float] = {}
        hidden = self.hidden_regions(targets) if self.cfg.weight_hidden > 0 else None
        for li, p in enumerate(layers):
            d = self.layer_losses(p, targets, hidden)
            s = sum(d.values())
            total = s if total is None else total + s
            if li == 0:
                parts = {k: float(v.detach()) for k, v in d.items()}
        return total, parts
