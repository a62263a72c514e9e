"""The assembled amodal segmentation network and its frozen configuration."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from ros2_amodal_seg.errors import ConfigError
from ros2_amodal_seg.model.backbone import BackboneConfig, build_backbone
from ros2_amodal_seg.model.completion import CompletionConfig, CompletionNet
from ros2_amodal_seg.model.pixel_decoder import PixelDecoder, PixelDecoderConfig
from ros2_amodal_seg.model.reclassify import ReclassifierNet, ReclassifyConfig
from ros2_amodal_seg.model.shape_head import ShapeHead, ShapeHeadConfig
from ros2_amodal_seg.model.transformer_decoder import LayerPrediction, TransformerDecoder, TransformerDecoderConfig


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines the network's shapes (stored in the checkpoint metadata).

    ``input_height`` x ``input_width`` is the fixed internal resolution: any image is
    resized to it; masks come out at stride 4 of it and are upsampled to the full
    image in post-processing.
    """

    num_classes: int = 13            # world version 2 (classes.WORLD_CLASSES)
    input_height: int = 240
    input_width: int = 320
    hidden_dim: int = 128
    mask_dim: int = 128
    use_occlusion_module: bool = True
    # input normalisation of RGB in [0, 1]; None (the default) = the backbone's own: ImageNet
    # mean / std for "plain" (as before), 127/255 and 128/255 for "efficientnet_lite0"
    pixel_mean: tuple[float, float, float] | None = None
    pixel_std: tuple[float, float, float] | None = None
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decoder: TransformerDecoderConfig = field(default_factory=TransformerDecoderConfig)
    shape_head: ShapeHeadConfig = field(default_factory=ShapeHeadConfig)
    completion: CompletionConfig = field(default_factory=CompletionConfig)
    reclassify: ReclassifyConfig = field(default_factory=ReclassifyConfig)

    def __post_init__(self) -> None:
        mean, std = self.backbone.normalization()
        if self.pixel_mean is None:
            object.__setattr__(self, "pixel_mean", mean)  # resolved once, so to_dict() stores the values
        if self.pixel_std is None:
            object.__setattr__(self, "pixel_std", std)
        if self.backbone.pretrained and (tuple(self.pixel_mean), tuple(self.pixel_std)) != (mean, std):
            raise ConfigError(f"backbone {self.backbone.name!r} is pretrained with mean {mean} / std {std}, "
                              f"not {self.pixel_mean} / {self.pixel_std}: leave pixel_mean / pixel_std unset")
        if self.input_height % 16 or self.input_width % 16:
            raise ConfigError(f"internal input {self.input_height}x{self.input_width} must be multiples of 16")
        if self.num_classes < 1 or self.hidden_dim % self.decoder.num_heads:
            raise ConfigError("num_classes >= 1 and hidden_dim divisible by num_heads required")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict` (unknown keys -> ConfigError)."""
        d = dict(d)
        try:
            bb = BackboneConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("backbone", {}).items()})
            dec = TransformerDecoderConfig(**d.pop("decoder", {}))
            # checkpoints written before the shape head existed have no entry: they had none
            sh = d.pop("shape_head", {"enabled": False})
            sh = ShapeHeadConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in sh.items()})
            # nor do those written before the hidden-part completion network; the inference settings
            # that used to live here (flip_average, quality_weight) are InferenceConfig's now
            comp = {k: v for k, v in d.pop("completion", {"enabled": False}).items() if k not in LEGACY_KEYS}
            comp = CompletionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in comp.items()})
            # nor do those written before the class re-reading network
            recl = {k: v for k, v in d.pop("reclassify", {"enabled": False}).items() if k not in LEGACY_KEYS}
            recl = ReclassifyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recl.items()})
            for k in ("pixel_mean", "pixel_std"):
                if d.get(k) is not None:
                    d[k] = tuple(d[k])
            return ModelConfig(backbone=bb, decoder=dec, shape_head=sh, completion=comp, reclassify=recl, **d)
        except TypeError as exc:
            raise ConfigError(f"bad model config: {exc}") from exc


#: keys of older checkpoints' second-stage configs that are inference settings now (read, not kept):
#: ``flip_average`` was removed, ``quality_weight`` moved to InferenceConfig (see ``predictor.inference_default``)
LEGACY_KEYS: frozenset[str] = frozenset({"flip_average", "quality_weight"})


@dataclass
class ModelOutput:
    """Attributes:
        final: the last layer's predictions (see :class:`LayerPrediction`; masks ``[B, Q, H/4, W/4]``).
        aux: earlier layers' predictions (deep supervision), first layer first.
    """

    final: LayerPrediction
    aux: list[LayerPrediction]


class AmodalSegModel(nn.Module):
    """backbone -> FPN pixel decoder -> masked-attention decoder (+ occlusion module) -> heads."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone)
        self.pixel_decoder = PixelDecoder(PixelDecoderConfig(cfg.hidden_dim, cfg.mask_dim), self.backbone.out_channels)
        self.decoder = TransformerDecoder(cfg.decoder, cfg.hidden_dim, cfg.mask_dim, cfg.num_classes,
                                          cfg.use_occlusion_module)
        self.shape_head = ShapeHead(cfg.shape_head, cfg.hidden_dim, cfg.num_classes) if cfg.shape_head.enabled \
            else None
        # applied in post-processing to the kept instances (model/completion.py, model/reclassify.py),
        # not in forward()
        self.completion = CompletionNet(cfg.completion, cfg.num_classes) if cfg.completion.enabled else None
        self.reclassifier = ReclassifierNet(cfg.reclassify, cfg.num_classes) if cfg.reclassify.enabled else None
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1) * 255.0, persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` float RGB in [0, 255] -> normalised."""
        return (images - self.pixel_mean) / self.pixel_std

    def decode(self, images_norm: torch.Tensor, feats: list[torch.Tensor],
               shape_min_objectness: float = 0.0) -> ModelOutput:
        """Everything after the backbone: pixel decoder, transformer decoder, shape head.

        Args:
            images_norm: ``[B, 3, Hi, Wi]`` normalised input; feats: the backbone's feature maps.
            shape_min_objectness: > 0 runs the shape head only on queries whose objectness
                ``1 - p_none`` reaches it; the others get a uniform shape distribution. A query's
                final score is at most its objectness, so with the post-processing score
                threshold here the kept instances are exactly those of the full computation.
        """
        pix = self.pixel_decoder(feats)
        preds = self.decoder(pix.multi_scale, pix.mask_features)
        final = preds[-1]
        if self.shape_head is not None:
            keep = None
            if shape_min_objectness > 0:
                keep = 1 - final.class_logits.float().softmax(-1)[..., -1] >= shape_min_objectness  # [B, Q]
            final = dataclasses.replace(final, shape_logits=self.shape_head(
                images_norm, final.queries, final.amodal_logits, final.visible_logits, keep))  # [B, Q, K]
        return ModelOutput(final=final, aux=preds[:-1])

    def forward(self, images: torch.Tensor) -> ModelOutput:
        """images: ``[B, 3, Hi, Wi]`` float RGB 0..255 at the internal size."""
        x = self.normalize(images)
        return self.decode(x, self.backbone(x))


class ExportWrapper(nn.Module):
    """Tuple-output wrapper for ONNX export: final-layer tensors only."""

    def __init__(self, model: AmodalSegModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        f = self.model(images).final
        return f.scored_class_logits(), f.amodal_logits, f.visible_logits, f.occlusion_rates, f.order_scores
