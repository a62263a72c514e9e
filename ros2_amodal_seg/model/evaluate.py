"""Metrics of formats.md: amodal / visible / occluded AP (pycocotools), occlusion MAE,
pairwise order accuracy and PQ/SQ/RQ on visible masks.

Occluded AP uses pycocotools' *ignore* mechanics: every GT object with
``occlude_rate <= 0.15`` is marked ignored (a detection matched to it is neither a
true nor a false positive), so the AP is over the occluded objects only and
detections of unoccluded objects are not punished.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from ros2_amodal_seg import masks as M
from ros2_amodal_seg.data.types import AmodalDataset
from ros2_amodal_seg.errors import InvalidInputError

OCCLUDED_THRESHOLD = 0.15
#: ground-truth occlusion-rate bins of the recall breakdown (lower bound exclusive, except the first)
OCCLUSION_BINS = ((0.0, 0.15), (0.15, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 1.0))


def _coco_gt(ds: AmodalDataset, use_visible: bool) -> dict:
    """COCO ground truth for pycocotools. Annotation ids are renumbered 1..N: pycocotools keys its
    annotations by id, and merged datasets (e.g. two presets) repeat ids, which would silently
    drop ground truth. (``occluded_by`` is evaluated per image with the original ids.)"""
    images, anns = [], []
    for s in ds.samples:
        images.append({"id": int(s.image_id), "width": int(s.width), "height": int(s.height)})
        for a in s.annotations:
            m = a.visible if use_visible else a.amodal
            rle = M.encode(m)
            anns.append({"id": len(anns) + 1, "image_id": int(s.image_id), "category_id": int(a.category_id),
                         "segmentation": rle, "area": float(m.sum()), "bbox": M.bbox_xywh(m), "iscrowd": 0,
                         "occlude_rate": float(a.occlude_rate)})
    cats = [{"id": int(k), "name": v} for k, v in sorted(ds.categories.items())]
    return {"images": images, "annotations": anns, "categories": cats}


def _coco_eval(gt: dict, dts: list[dict], occluded_only: bool = False, use_cats: bool = True):
    """Run COCOeval (segm); returns the evaluator (stats zero when there is nothing to evaluate).
    ``use_cats=False``: class-agnostic (any prediction may match any object)."""
    from pycocotools.coco import COCO  # noqa: PLC0415
    from pycocotools.cocoeval import COCOeval  # noqa: PLC0415

    class _OccludedEval(COCOeval):
        def _prepare(self) -> None:  # mark unoccluded GT as ignored
            super()._prepare()
            for g in self._gts.values():
                for a in g:
                    if a.get("occlude_rate", 0.0) <= OCCLUDED_THRESHOLD:
                        a["ignore"] = 1

    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = json.loads(json.dumps(gt))
        cg.createIndex()
        if not dts or not gt["annotations"]:
            return None
        cd = cg.loadRes(dts)
        ev = (_OccludedEval if occluded_only else COCOeval)(cg, cd, "segm")
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _pred_for(preds: list[dict], key: str) -> list[dict]:
    out = []
    for p in preds:
        out.append({"image_id": int(p["image_id"]), "category_id": int(p["category_id"]), "score": float(p["score"]),
                    "segmentation": p[key]})
    return out


def _occlusion_bin(rate: float) -> int:
    """Index of the :data:`OCCLUSION_BINS` bin holding a ground-truth occlusion rate."""
    for k, (_, hi) in enumerate(OCCLUSION_BINS):
        if rate <= hi:
            return k
    return len(OCCLUSION_BINS) - 1


def _greedy_match(iou: np.ndarray, scores: np.ndarray, thr: float) -> dict[int, int]:
    """pred index -> gt index, greedy by descending score, IoU >= thr, one-to-one."""
    used: set[int] = set()
    match: dict[int, int] = {}
    for p in np.argsort(-scores, kind="stable"):
        if iou.shape[1] == 0:
            break
        cand = [(iou[p, g], g) for g in range(iou.shape[1]) if g not in used and iou[p, g] >= thr]
        if cand:
            g = max(cand)[1]
            used.add(g)
            match[int(p)] = int(g)
    return match


def evaluate_predictions(gt: AmodalDataset | str | Path, preds: list[dict], score_threshold: float = 0.5,
                         pr_curve: bool = False) -> dict:
    """Evaluate a prediction list (formats.md) against a dataset.

    Args:
        gt: the ground truth, or a path any loader reads.
        preds: formats.md prediction dicts (``segmentation`` = amodal RLE, ``visible_mask`` RLE,
            ``occlude_rate``, ``depth_rank`` or ``occluded_by``).
        score_threshold: predictions used for occlusion MAE, order accuracy and PQ (AP uses all;
            those three skip the ``alt_of`` entries, another class reading of an instance).

    Returns:
        dict with amodal_AP/AP50/AP75, per_class_AP (amodal, by class name), agnostic_amodal_AP/AP50
        (classes ignored), visible_AP/AP50/AP75,
        occluded_AP/AP50 (COCO AP x 100),
        occlusion_mae, order_accuracy (+ order_pairs), PQ/SQ/RQ (x 100, visible masks), counts, and
        ``recall_by_occlusion``: per ground-truth occlusion bin (:data:`OCCLUSION_BINS`) the share of
        objects whose best prediction at ``score_threshold`` reaches amodal IoU 0.5 with the right
        class (``recall50``) or any class, and that best same-class IoU's mean.
    """
    if not isinstance(gt, AmodalDataset):
        from ros2_amodal_seg.model.data import load_amodal_dataset  # noqa: PLC0415

        gt = load_amodal_dataset(gt)
    img_ids = {int(s.image_id) for s in gt.samples}
    for p in preds:
        for k in ("image_id", "category_id", "score", "segmentation"):
            if k not in p:
                raise InvalidInputError(f"prediction lacks '{k}': {sorted(p)}")
    preds = [p for p in preds if int(p["image_id"]) in img_ids]
    res: dict = {"num_images": len(gt.samples), "num_gt": sum(len(s.annotations) for s in gt.samples),
                 "num_predictions": len(preds)}
    gt_a = _coco_gt(gt, use_visible=False)
    gt_v = _coco_gt(gt, use_visible=True)
    ev = _coco_eval(gt_a, _pred_for(preds, "segmentation"))
    st = ev.stats if ev is not None else np.zeros(12)
    res.update(amodal_AP=100 * max(st[0], 0), amodal_AP50=100 * max(st[1], 0), amodal_AP75=100 * max(st[2], 0))
    res["per_class_AP"] = per_class_ap(ev, gt.categories)
    if pr_curve and ev is not None:
        prec = ev.eval["precision"]  # [T, R, K, A, M]
        res["_pr"] = {"recall": ev.params.recThrs.tolist(),
                      "AP50": np.where(prec[0, :, :, 0, -1] < 0, np.nan, prec[0, :, :, 0, -1]).tolist(),
                      "AP75": np.where(prec[5, :, :, 0, -1] < 0, np.nan, prec[5, :, :, 0, -1]).tolist()}
    # class-agnostic: does the network find the objects, whatever it calls them? (one entry per
    # instance: an "alt_of" entry would be a duplicate detection here)
    ev = _coco_eval(gt_a, _pred_for([p for p in preds if "alt_of" not in p], "segmentation"), use_cats=False)
    st = ev.stats if ev is not None else np.zeros(12)
    res.update(agnostic_amodal_AP=100 * max(st[0], 0), agnostic_amodal_AP50=100 * max(st[1], 0))
    vis_preds = [p for p in preds if "visible_mask" in p]
    ev = _coco_eval(gt_v, _pred_for(vis_preds, "visible_mask"))
    st = ev.stats if ev is not None else np.zeros(12)
    res.update(visible_AP=100 * max(st[0], 0), visible_AP50=100 * max(st[1], 0), visible_AP75=100 * max(st[2], 0))
    ev = _coco_eval(gt_a, _pred_for(preds, "segmentation"), occluded_only=True)
    st = ev.stats if ev is not None else np.zeros(12)
    res.update(occluded_AP=100 * max(st[0], 0), occluded_AP50=100 * max(st[1], 0),
               num_occluded_gt=sum(a.occlude_rate > OCCLUDED_THRESHOLD for s in gt.samples for a in s.annotations))

    # per-image matching for MAE, order, PQ: instances only (an "alt_of" entry repeats one under
    # another class; AP ranks it as a detection, but it is not another object)
    by_img: dict[int, list[dict]] = {}
    for p in preds:
        if float(p["score"]) >= score_threshold and "alt_of" not in p:
            by_img.setdefault(int(p["image_id"]), []).append(p)
    occ_err: list[float] = []
    bins = [[0, 0.0, 0.0, 0.0] for _ in OCCLUSION_BINS]      # [n, same-class hits, any-class hits, IoU sum]
    order_ok = order_n = 0
    tp = fp = fn = 0
    iou_sum = 0.0
    for s in gt.samples:
        ps = by_img.get(int(s.image_id), [])
        anns = s.annotations
        g_am = np.stack([a.amodal for a in anns]) if anns else np.zeros((0, s.height, s.width), bool)
        g_vi = np.stack([a.visible for a in anns]) if anns else np.zeros((0, s.height, s.width), bool)
        p_am = np.stack([M.decode(p["segmentation"], (s.height, s.width)) for p in ps]) if ps else \
            np.zeros((0, s.height, s.width), bool)
        p_vi = np.stack([M.decode(p.get("visible_mask", p["segmentation"]), (s.height, s.width)) for p in ps]) \
            if ps else np.zeros((0, s.height, s.width), bool)
        scores = np.array([float(p["score"]) for p in ps])
        iou_a = M.iou_matrix(p_am, g_am) if len(ps) and len(anns) else np.zeros((len(ps), len(anns)))
        match = _greedy_match(iou_a, scores, 0.5)
        same = np.array([[int(p["category_id"]) == int(a.category_id) for a in anns] for p in ps],
                        bool).reshape(iou_a.shape)                    # [P, G] same class
        if len(anns):
            best_any = iou_a.max(0) if len(ps) else np.zeros(len(anns))
            best_same = np.where(same, iou_a, 0.0).max(0) if len(ps) else np.zeros(len(anns))
            for k, a in enumerate(anns):
                b = _occlusion_bin(float(a.occlude_rate))
                bins[b][0] += 1
                bins[b][1] += float(best_same[k] >= 0.5)
                bins[b][2] += float(best_any[k] >= 0.5)
                bins[b][3] += float(best_same[k])
        for pi, gi in match.items():
            if "occlude_rate" in ps[pi]:
                occ_err.append(abs(float(ps[pi]["occlude_rate"]) - float(anns[gi].occlude_rate)))
        # pairwise order over matched GT pairs with a one-way occlusion relation
        g_of_id = {int(a.id): k for k, a in enumerate(anns)}
        p_of_g = {gi: pi for pi, gi in match.items()}
        for i, a in enumerate(anns):
            for oid in a.occluded_by:
                j = g_of_id.get(int(oid))
                if j is None or j == i or int(a.id) in anns[j].occluded_by:
                    continue
                if i not in p_of_g or j not in p_of_g:
                    continue
                pi, pj = ps[p_of_g[i]], ps[p_of_g[j]]
                order_n += 1
                if "depth_rank" in pi and "depth_rank" in pj:
                    order_ok += int(int(pj["depth_rank"]) < int(pi["depth_rank"]))
                else:
                    ii, jj = p_of_g[i], p_of_g[j]
                    order_ok += int(jj in pi.get("occluded_by", []) and ii not in pj.get("occluded_by", []))
        # PQ on visible masks, category-aware
        iou_v = M.iou_matrix(p_vi, g_vi) if len(ps) and len(anns) else np.zeros((len(ps), len(anns)))
        mv = _greedy_match(np.where(same, iou_v, 0.0), scores, 0.5 + 1e-9)
        tp += len(mv)
        fp += len(ps) - len(mv)
        fn += len(anns) - len(mv)
        iou_sum += float(sum(iou_v[p, g] for p, g in mv.items()))
    denom = tp + 0.5 * fp + 0.5 * fn
    res.update(
        occlusion_mae=float(np.mean(occ_err)) if occ_err else float("nan"), occlusion_matched=len(occ_err),
        order_accuracy=order_ok / order_n if order_n else float("nan"), order_pairs=order_n,
        PQ=100 * iou_sum / denom if denom else 0.0, SQ=100 * iou_sum / tp if tp else 0.0,
        RQ=100 * tp / denom if denom else 0.0,
        recall_by_occlusion=[{"occlusion": list(r), "num_gt": n, "recall50": h / n if n else float("nan"),
                              "recall50_any_class": ha / n if n else float("nan"),
                              "mean_best_iou": si / n if n else float("nan")}
                             for r, (n, h, ha, si) in zip(OCCLUSION_BINS, bins)])
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in res.items()}


def per_class_ap(ev, categories: dict[int, str]) -> dict[str, float]:
    """Amodal mask AP (IoU 0.5:0.95, x 100) per class with ground truth, from a finished COCOeval
    (``{class name: AP}``; classes without ground truth are left out)."""
    if ev is None:
        return {}
    prec = ev.eval["precision"][:, :, :, 0, -1]                              # [T, R, K] all areas, 100 dets
    out = {}
    for k, cid in enumerate(ev.params.catIds):
        p = prec[:, :, k]
        if (p > -1).any():
            out[str(categories.get(cid, cid))] = float(100 * np.mean(p[p > -1]))
    return out


def plot_pr(res: dict, path: str | Path) -> None:
    """Precision-recall curves (amodal masks, IoU 0.5 and 0.75, mean over classes) to a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    pr = res.get("_pr")
    if pr is None:
        raise InvalidInputError("no PR data (no predictions or evaluate_predictions(..., pr_curve=True) not used)")
    fig, ax = plt.subplots(figsize=(5, 4))
    for key in ("AP50", "AP75"):
        ax.plot(pr["recall"], np.nanmean(np.array(pr[key], dtype=float), axis=1), label=f"amodal {key}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"amodal AP {res['amodal_AP']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def format_table(res: dict) -> str:
    keys = ["amodal_AP", "amodal_AP50", "amodal_AP75", "visible_AP", "occluded_AP", "occlusion_mae",
            "order_accuracy", "PQ", "SQ", "RQ"]
    lines = [f"{k:>15}: {res[k]:.3f}" for k in keys if k in res]
    if res.get("recall_by_occlusion"):
        lines.append("recall at IoU 0.5 by ground-truth occlusion (predictions at the score threshold):")
        lines.append(f"{'occlusion':>15}  {'objects':>7}  {'same class':>10}  {'any class':>9}  {'best IoU':>8}")
        for b in res["recall_by_occlusion"]:
            lo, hi = b["occlusion"]
            lines.append(f"{f'{lo:.2f}-{hi:.2f}':>15}  {b['num_gt']:>7d}  {b['recall50']:>10.3f}  "
                         f"{b['recall50_any_class']:>9.3f}  {b['mean_best_iou']:>8.3f}")
    return "\n".join(lines)
