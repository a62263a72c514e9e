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


def add_inference_args(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set key=value``: the inference settings of a command (one flag for all
    of them instead of one flag per knob; see config/inference.yaml for the keys)."""
    p.add_argument("--config", metavar="FILE", default=None,
                   help="inference settings (config/inference.yaml layout); default: the checkpoint's own")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="change one inference setting, e.g. --set score_threshold=0.3 --set reclassify=false "
                        "(repeatable; keys and meanings: config/inference.yaml)")


def inference_config_from_args(args: argparse.Namespace, checkpoint_meta: dict | None = None, **defaults):
    """The :class:`~ros2_amodal_seg.model.inference_config.InferenceConfig` of a command: the checkpoint's
    own, then ``defaults`` (the command's, e.g. a low score threshold for ``predict``), then ``--config``,
    then every ``--set``."""
    from ros2_amodal_seg.model.inference_config import load_inference_config  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import inference_default  # noqa: PLC0415

    cfg = inference_default(checkpoint_meta or {}).replace(**defaults)
    return load_inference_config(checkpoint_meta={"inference": cfg.to_dict()}, path=args.config,
                                 overrides=args.overrides)


def _checkpoint_meta(checkpoint: str | None, onnx: str | None = None) -> dict:
    """The metadata of the checkpoint a command runs (the shipped one by default; an ONNX export's own)."""
    if onnx:
        from ros2_amodal_seg.model.export import OnnxNetworks  # noqa: PLC0415

        return OnnxNetworks(onnx).meta
    from ros2_amodal_seg.model.checkpoint import read_metadata  # noqa: PLC0415
    from ros2_amodal_seg.model.predictor import DEFAULT_CHECKPOINT  # noqa: PLC0415

    return read_metadata(checkpoint or DEFAULT_CHECKPOINT)


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


#: ``predict`` keeps low-scored instances too (a complete precision-recall curve), unless --config / --set say otherwise
PREDICT_SCORE_THRESHOLD = 0.05


def _predict(args: argparse.Namespace) -> int:
    from ros2_amodal_seg.model.predict import predict_to_file  # noqa: PLC0415

    cfg = inference_config_from_args(args, _checkpoint_meta(args.checkpoint, args.onnx),
                                     score_threshold=PREDICT_SCORE_THRESHOLD)
    preds = predict_to_file(args.dataset, args.out, args.checkpoint, args.device, cfg, onnx=args.onnx)
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

    cfg = inference_config_from_args(args, _checkpoint_meta(args.checkpoint))
    res = run_bench(args.checkpoint, args.device, cfg, args.iters, args.warmup, compare_hf=not args.no_hf,
                    json_out=args.json, image=args.image)
    if args.record:
        from ros2_amodal_seg.benchmarks import record  # noqa: PLC0415

        print(f"recorded as {record(args.record, res)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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

    p = sub.add_parser("predict", help="predict a dataset to a formats.md JSON", formatter_class=f,
                       description="Predict every image of a dataset. The inference settings are the checkpoint's "
                                   "own, with score_threshold lowered to 0.05 (a complete precision-recall curve), "
                                   "then --config, then each --set. Each instance is written under its class and "
                                   "its runner_up_classes runner-up classes (same masks, lower scores, marked "
                                   "'alt_of'), as Mask2Former is scored for COCO AP; --set runner_up_classes=0 "
                                   "gives one entry per instance.")
    p.add_argument("dataset", help="dataset JSON / directory")
    p.add_argument("--out", required=True, help="prediction JSON to write")
    p.add_argument("--checkpoint", default=None, help="weights (.safetensors); default: the shipped model")
    p.add_argument("--onnx", default=None, help="use this ONNX model with ONNX Runtime instead of torch")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_inference_args(p)
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
    p.add_argument("--no-hf", action="store_true", help="skip the transformers Mask2Former comparison")
    p.add_argument("--image", default=None, help="time on this image file instead of a rendered street scene")
    add_inference_args(p)
    p.add_argument("--json", default=None, help="write the numbers as JSON")
    p.add_argument("--record", default=None, metavar="NAME",
                   help="store the numbers as docs/benchmarks/NAME.json (then run scripts/write_benchmarks.py)")
    p.set_defaults(func=_bench)
