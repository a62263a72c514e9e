"""``amodal-seg predict``: a dataset -> a formats.md prediction JSON."""
from __future__ import annotations



from ros2_amodal_seg import masks as M
from ros2_amodal_seg.model.postprocess import depth_ranks, occluded_by
from ros2_amodal_seg.types import Instances2D


def instances_to_predictions(inst: Instances2D, image_id: int, classes_per_instance: int = 1,
                             score_threshold: float = 0.0) -> list[dict]:
    """One image's instances -> formats.md prediction dicts (``occluded_by`` indexes this image's list).

    With ``classes_per_instance`` k > 1, each instance is also reported under its k - 1 runner-up
    classes (``inst.alt_class_ids``) whose score reaches ``score_threshold``: the same masks and
    relations, a lower score, and ``"alt_of"`` = the index of the instance's main entry. This is
    how mask-classification models are scored for COCO AP (Mask2Former ranks (query, class)
    pairs); the main entries come first, in the instances' order, so their indices, depth ranks
    and ``occluded_by`` lists are unchanged.
    """
    if len(inst) == 0:
        return []
    if classes_per_instance < 1:
        raise ValueError(f"classes_per_instance must be >= 1, got {classes_per_instance}")
    ranks = depth_ranks(inst.order_scores)
    occ_by = occluded_by(inst)
    am = M.encode_batch(inst.amodal_masks)
    vi = M.encode_batch(inst.visible_masks)
    out = [{"image_id": int(image_id), "category_id": int(inst.class_ids[i]), "score": float(inst.scores[i]),
            "segmentation": am[i], "visible_mask": vi[i], "occlude_rate": float(inst.occlusion_rates[i]),
            "depth_rank": int(ranks[i]), "order_score": float(inst.order_scores[i]), "occluded_by": occ_by[i]}
           for i in range(len(inst))]
    for i in range(len(inst)):
        for c, s in zip(inst.alt_class_ids[i, :classes_per_instance - 1], inst.alt_scores[i, :classes_per_instance - 1]):
            if s >= score_threshold:
                out.append(dict(out[i], category_id=int(c), score=float(s), alt_of=i))
    return out


def predict_to_file(dataset_path: str, out_path: str, checkpoint: str | None = None, device: str = "auto",
                    config=None, onnx: str | None = None) -> list[dict]:
    """Predict every image of ``dataset_path`` (any layout the loader reads) and write ``out_path``.

    Args:
        config: the :class:`~ros2_amodal_seg.model.inference_config.InferenceConfig` (None: the
            checkpoint's own). Each instance is written under its class and its
            ``config.runner_up_classes`` runner-up classes (see :func:`instances_to_predictions`),
            those that reach ``config.score_threshold``.
        onnx: use this exported model on ONNX Runtime instead of the torch checkpoint.
    """
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from tqdm import tqdm  # noqa: PLC0415

    from ros2_amodal_seg.model.data import load_amodal_dataset  # noqa: PLC0415

    ds = load_amodal_dataset(dataset_path)
    if onnx:
        from ros2_amodal_seg.model.export import onnx_predictor  # noqa: PLC0415

        pred = onnx_predictor(onnx, config)
    else:
        from ros2_amodal_seg.model.predictor import AmodalPredictor  # noqa: PLC0415

        pred = AmodalPredictor.from_checkpoint(checkpoint, device=device, config=config)
    cfg = pred.config
    out: list[dict] = []
    for s in tqdm(ds.samples, desc="predict", unit="img"):
        out.extend(instances_to_predictions(pred.predict(s.load_image()), s.image_id, 1 + cfg.runner_up_classes,
                                            cfg.score_threshold))
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(json.dumps(out))
    return out
