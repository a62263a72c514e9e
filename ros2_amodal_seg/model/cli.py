"""Sub-commands of ``amodal-seg``: train, predict, evaluate, export, bench."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    v = float(text)
    if not 0.0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def _default_cfg(name: str) -> str | None:
    p = REPO_CONFIG / name
    return str(p) if p.is_file() else None


def _train(args: argparse.Namespace) -> int:
    import dataclasses  # noqa: PLC0415

    from ros2_amodal_seg.model.criterion import LossConfig  # noqa: PLC0415
    from ros2_amodal_seg.model.model import ModelConfig  # noqa: PLC0415
    from ros2_amodal_seg.model.train import TrainConfig, load_yaml_config, train  # noqa: PLC0415

    mcfg = load_yaml_config(ModelConfig, args.model_config)
    if args.no_occlusion_module:
        mcfg = dataclasses.replace(mcfg, use_occlusion_module=False)
    tcfg = load_yaml_config(TrainConfig, args.train_config, "train")
    lcfg = load_yaml_config(LossConfig, args.train_config, "loss") if args.train_config else LossConfig()
    over = {k: v for k, v in {"epochs": args.epochs, "steps": args.steps, "batch_size": args.batch_size,
                              "lr": args.lr, "max_minutes": args.max_minutes, "val_every": args.val_every,
                              "num_threads": args.threads}.items() if v is not None}
    if args.steps is not None and args.epochs is None:
        over["epochs"] = 0
    if args.epochs is not None and args.steps is None:
        over["steps"] = 0
    tcfg = dataclasses.replace(tcfg, **over)
    train(args.data, args.out, mcfg, tcfg, lcfg, val_dirs=args.val_data, device=args.device, resume=args.resume,
          init_from=args.init)
    return 0


def _second_stage_configs(args: argparse.Namespace, section: str, train_cls):
    """The ``section`` part of the model YAML and the training config ``train_cls`` (its YAML section
    of the same name, with the command line's overrides) of a second-stage network; applies
    ``--threads``."""
    import dataclasses  # noqa: PLC0415

    from ros2_amodal_seg.model.model import ModelConfig  # noqa: PLC0415
    from ros2_amodal_seg.model.train import load_yaml_config  # noqa: PLC0415

    net_cfg = getattr(load_yaml_config(ModelConfig, args.model_config), section)
    tcfg = load_yaml_config(train_cls, args.train_config, section)
    over = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                              "weight_decay": args.weight_decay}.items() if v is not None}
    if args.threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(args.threads)
    return net_cfg, dataclasses.replace(tcfg, **over)


def _train_completion(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.model.completion_train import CompletionTrainConfig, run  # noqa: PLC0415

    ccfg, tcfg = _second_stage_configs(args, "completion", CompletionTrainConfig)
    summary = run(args.checkpoint, args.data, args.val_data or [], args.out, ccfg, tcfg, args.device,
                  progress=not args.no_progress, crop_cache=args.crop_cache, init=args.init)
    print(json.dumps(summary, indent=1))
    return 0


def _train_reclassifier(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.model.reclassify_train import ReclassifyTrainConfig, run  # noqa: PLC0415

    rcfg, tcfg = _second_stage_configs(args, "reclassify", ReclassifyTrainConfig)
    summary = run(args.checkpoint, args.data, args.val_data or [], args.out, rcfg, tcfg, args.device,
                  progress=not args.no_progress, crop_cache=args.crop_cache, collect_only=args.collect_only)
    print(json.dumps(summary, indent=1))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.model.predict import predict_to_file  # noqa: PLC0415

    preds = predict_to_file(args.dataset, args.out, args.checkpoint, args.device, args.score_threshold,
                            args.max_instances, args.nms_iou, onnx=args.onnx, refine_masks=not args.no_refine,
                            nms_method=args.nms_method, complete_hidden=not args.no_completion,
                            completion_flip=False if args.no_completion_flip else None,
                            classes_per_instance=args.classes_per_instance, reclassify=not args.no_reclassify,
                            final_nms_sigma=args.final_nms_sigma)
    print(f"wrote {len(preds)} predictions to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.errors import InvalidInputError  # noqa: PLC0415
    from ros2_amodal_seg.model.evaluate import evaluate_predictions, format_table, plot_pr  # noqa: PLC0415

    try:
        preds = json.loads(Path(args.predictions).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read predictions {args.predictions}: {exc}") from exc
    res = evaluate_predictions(args.dataset, preds, score_threshold=args.score_threshold, pr_curve=bool(args.plot))
    print(format_table(res))
    if args.plot:
        plot_pr(res, args.plot)
        print(f"PR curve -> {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=1))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.model.export import export_onnx  # noqa: PLC0415

    path = export_onnx(args.checkpoint, args.onnx, opset=args.opset)
    print(f"exported {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.model.bench import run_bench  # noqa: PLC0415

    run_bench(args.checkpoint, args.device, args.iters, args.warmup, compare_hf=not args.no_hf, json_out=args.json,
              score_threshold=args.score_threshold, image=args.image, complete_hidden=not args.no_completion,
              completion_flip=False if args.no_completion_flip else None, reclassify=not args.no_reclassify)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ros2_amodal_seg.model.postprocess import NMS_METHODS, PostprocessConfig  # noqa: PLC0415  (no torch)

    f = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("train", help="train the amodal segmentation model", formatter_class=f,
                       description="Train on one or more datasets (any layout the loader reads). Runs as DDP "
                                   "when launched with torchrun --nproc_per_node N (gloo on CPU, nccl on GPU).")
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="training dataset (repeatable)")
    p.add_argument("--val-data", action="append", metavar="DIR", help="validation dataset (repeatable)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, history, plots)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=int, help="number of epochs")
    g.add_argument("--steps", type=int, help="number of optimiser steps (overrides epochs)")
    p.add_argument("--max-minutes", type=float, help="stop and save after this many minutes")
    p.add_argument("--batch-size", type=int, help="images per process and step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--val-every", type=int, help="steps between validations")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.safetensors")
    p.add_argument("--init", metavar="CKPT", help="warm start from these weights (input size may differ)")
    p.add_argument("--no-occlusion-module", action="store_true", help="ablation: disable the occlusion module")
    p.add_argument("--model-config", default=_default_cfg("model.yaml"), help="model YAML")
    p.add_argument("--train-config", default=_default_cfg("train.yaml"), help="training/loss YAML")
    p.set_defaults(func=_train)

    p = sub.add_parser("train-completion", formatter_class=f,
                       help="train the hidden-part completion network on a trained model's predictions",
                       description="Run the model (default: the shipped one) over the datasets, crop every "
                                   "instance matched to a ground-truth object, train the completion network "
                                   "(model/completion.py) to give its amodal extent inside the other instances' "
                                   "visible masks, and write OUT: the model plus that network. The model's own "
                                   "weights are unchanged. Also writes OUT with suffix .completion.png (curves).")
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="training dataset (repeatable)")
    p.add_argument("--val-data", action="append", metavar="DIR", help="validation dataset (repeatable)")
    p.add_argument("--out", required=True, metavar="OUT.safetensors", help="checkpoint to write")
    p.add_argument("--checkpoint", default=None, help="the trained model; default: the shipped model")
    p.add_argument("--steps", type=int, help="optimiser steps")
    p.add_argument("--batch-size", type=int, help="crops per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    p.add_argument("--init", metavar="CKPT", help="train this checkpoint's completion network further "
                                                 "(a new cosine cycle) instead of a fresh one")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--crop-cache", metavar="BASE", help="save the crops as BASE.train.npz / BASE.val.npz, or reuse "
                                                        "them if they exist (same checkpoint, data and crop settings)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--model-config", default=_default_cfg("model.yaml"), help="model YAML (its completion section)")
    p.add_argument("--train-config", default=_default_cfg("train.yaml"), help="training YAML (its completion section)")
    p.set_defaults(func=_train_completion)

    p = sub.add_parser("train-reclassifier", formatter_class=f,
                       help="train the class re-reading network on a trained model's predictions",
                       description="Run the model (default: the shipped one, with its completion network) over the "
                                   "datasets at a low score threshold, crop every instance whose amodal mask "
                                   "matches a ground-truth object (IoU >= min_match_iou), train the re-classifier "
                                   "(model/reclassify.py) to give that object's class from the crop of the image "
                                   "and of the final masks, and write OUT: the model plus that network (the other "
                                   "weights unchanged). Also writes OUT with suffix .reclassify.png (curves). "
                                   "Collecting takes about 0.6 s a frame on a CPU: with --crop-cache, run one "
                                   "--collect-only process per dataset folder in parallel, then train.")
    p.add_argument("--data", action="append", required=True, metavar="DIR", help="training dataset (repeatable)")
    p.add_argument("--val-data", action="append", metavar="DIR", help="validation dataset (repeatable)")
    p.add_argument("--out", metavar="OUT.safetensors", help="checkpoint to write (not with --collect-only)")
    p.add_argument("--checkpoint", default=None, help="the trained model; default: the shipped model")
    p.add_argument("--steps", type=positive_int, help="optimiser steps")
    p.add_argument("--batch-size", type=positive_int, help="crops per step")
    p.add_argument("--lr", type=float, help="peak learning rate (one-cycle)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--crop-cache", metavar="BASE", help="save each dataset folder's crops as BASE.<folder>-<hash>.npz, "
                                                        "or reuse them if they exist (same checkpoint and crop "
                                                        "settings)")
    p.add_argument("--collect-only", action="store_true", help="collect (and cache) the crops, then stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--model-config", default=_default_cfg("model.yaml"), help="model YAML (its reclassify section)")
    p.add_argument("--train-config", default=_default_cfg("train.yaml"), help="training YAML (its reclassify section)")
    p.set_defaults(func=_train_reclassifier)

    p = sub.add_parser("predict", help="predict a dataset to a formats.md JSON", formatter_class=f)
    p.add_argument("dataset", help="dataset JSON / directory")
    p.add_argument("--out", required=True, help="prediction JSON to write")
    p.add_argument("--checkpoint", default=None, help="weights (.safetensors); default: the shipped model")
    p.add_argument("--onnx", default=None, help="use this ONNX model with ONNX Runtime instead of torch")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--score-threshold", type=float, default=0.05, help="low keeps the AP curve complete")
    p.add_argument("--max-instances", type=int, default=50)
    p.add_argument("--nms-method", choices=NMS_METHODS, default=PostprocessConfig.nms_method,
                   help="matrix: decay a duplicate's score (SOLOv2 Matrix NMS); hard: greedy suppression")
    p.add_argument("--nms-iou", type=float, default=PostprocessConfig.nms_iou,
                   help="hard mask NMS: suppress when both amodal and visible IoU exceed this")
    p.add_argument("--final-nms-sigma", type=non_negative_float, default=PostprocessConfig.final_nms_sigma,
                   help="final Matrix NMS on the final (completed) amodal masks' IoU, after re-scoring; 0 = off")
    p.add_argument("--no-refine", action="store_true",
                   help="plain bilinear mask upsampling, without the guided-filter refinement along image edges")
    p.add_argument("--no-completion", action="store_true",
                   help="skip the hidden-part completion network (amodal masks behind occluders as the model "
                        "gives them)")
    p.add_argument("--no-completion-flip", action="store_true",
                   help="run the completion network once per crop, without the mirrored run (faster on a CPU)")
    p.add_argument("--no-reclassify", action="store_true",
                   help="skip the class re-reading network (classes as the queries give them)")
    p.add_argument("--classes-per-instance", type=positive_int, default=2, metavar="K",
                   help="report each instance under its runner-up classes too, up to this many classes in all "
                        "(same masks, lower scores, marked 'alt_of': drop those entries for one per object), as "
                        "Mask2Former is scored for COCO AP; 1 = one entry per instance")
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="metrics of a prediction JSON against a dataset", formatter_class=f)
    p.add_argument("dataset")
    p.add_argument("predictions")
    p.add_argument("--plot", metavar="PR.png", help="write a precision-recall plot")
    p.add_argument("--json", metavar="OUT", help="write the metrics as JSON")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="predictions used for occlusion MAE, order accuracy and PQ (AP uses all)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export", help="export the model to ONNX", formatter_class=f)
    p.add_argument("--onnx", required=True, help="output .onnx")
    p.add_argument("--checkpoint", default=None, help="weights; default: the shipped model")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_export)

    p = sub.add_parser("bench", help="per-stage latency at 640x480 vs. HF Mask2Former", formatter_class=f)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--score-threshold", type=float, default=0.5, help="post-processing score threshold")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers Mask2Former comparison")
    p.add_argument("--image", default=None, help="time on this image file instead of a rendered street scene")
    p.add_argument("--no-completion", action="store_true", help="skip the hidden-part completion network")
    p.add_argument("--no-completion-flip", action="store_true",
                   help="run the completion network once per crop (no mirrored run)")
    p.add_argument("--no-reclassify", action="store_true", help="skip the class re-reading network")
    p.add_argument("--json", default=None, help="write the numbers as JSON")
    p.set_defaults(func=_bench)
