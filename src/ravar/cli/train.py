"""`ravar train`: train a registered model on a dataset folder into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ravar.cli.argtypes import add_device_option, non_negative_int, positive_float, positive_int
from ravar.errors import RavarError


def register(sub: argparse._SubParsersAction) -> None:
    """Add `train` to the `ravar` sub-parsers `sub`."""
    import dataclasses

    from ravar.engine.config import SELECT_METRICS, TrainConfig

    keys = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
    p = sub.add_parser(
        "train",
        help="train a model (AdamW + warmup/cosine, val every epoch, best and last checkpoints)",
        description="Train MODEL on the train split of DIR, select the best checkpoint on val, "
        "and evaluate test once with it at the end. Under `torchrun --nproc_per_node N` it "
        "trains with DistributedDataParallel.",
        epilog=f"Train keys (KEY=VALUE or top-level YAML keys): {keys}. Model keys: "
        "model.KEY=VALUE (or a `model:` map in the YAML), e.g. model.clip.num_frames=4. "
        "Precedence: defaults < --config < KEY=VALUE < options.",
    )
    p.add_argument("--model", metavar="NAME", help="registered model name (or model_name in YAML)")
    p.add_argument("--data", metavar="DIR", help="dataset folder with train, val (and test)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML with train keys and a model: map")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="train config overrides (lr=3e-4, ema=0.999) and model ones (model.dim=64)",
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--epochs", type=positive_int, metavar="N")
    p.add_argument("--batch-size", type=positive_int, metavar="B", help="per process")
    p.add_argument("--lr", type=positive_float, metavar="LR", help="peak learning rate")
    p.add_argument("--seed", type=int, metavar="S")
    p.add_argument("--workers", type=non_negative_int, metavar="N", help="data loader workers")
    p.add_argument("--select-metric", choices=SELECT_METRICS, help="val metric for best/")
    p.add_argument(
        "--cache",
        choices=("auto", "off", "require"),
        help="read frozen-backbone features stored by `ravar cache` (default auto: if they match)",
    )
    p.add_argument(
        "--allow-missing-detections",
        action="store_true",
        default=None,
        help="train a model that reads detections on splits that have none (the location "
        "stream sees no one); key allow_missing_detections",
    )
    p.add_argument(
        "--no-frozen-weights",
        dest="frozen_weights",
        action="store_const",
        const=False,
        help="checkpoints leave out the frozen weights of backbones read from local folders "
        "(loading then needs a local copy, checked by hash)",
    )
    add_device_option(p)
    p.add_argument(
        "--logger",
        action="append",
        metavar="NAME[,NAME]",
        help="experiment tracking, repeatable: csv (RUN_DIR/steps.csv, always written), "
        "tensorboard (RUN_DIR/tb), wandb (offline unless WANDB_MODE=online); key loggers",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR/last")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run_train)


def _saved_data_dir(run_dir: Path) -> str | None:
    """The dataset folder recorded in a run's config.yaml, if any."""
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return saved.get("data") if isinstance(saved, dict) else None


def run_train(args: argparse.Namespace) -> int:
    """Resolve the run config and train; exit code 0 when the run ended as configured."""
    from ravar.engine.checkpoint import old_path
    from ravar.engine.config import resolve_run_config, run_config_from_checkpoint
    from ravar.engine.loggers import check_available, parse_logger_names
    from ravar.engine.train import fit

    out = Path(args.out)
    base = None
    if args.resume:
        if not ((out / "last").is_dir() or old_path(out / "last").is_dir()):
            raise RavarError(f"--resume: {out / 'last'}: no checkpoint to resume from")
        base = run_config_from_checkpoint(out / "last")
    flags = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "workers": args.workers,
        "select_metric": args.select_metric,
        "cache": args.cache,
        "allow_missing_detections": args.allow_missing_detections,
        "frozen_weights": args.frozen_weights,
        "loggers": ",".join(parse_logger_names(args.logger)) if args.logger else None,
    }
    run = resolve_run_config(args.model, args.config, args.overrides, flags=flags, base=base)
    data = args.data or run.data or (_saved_data_dir(out) if args.resume else None)
    if not data:
        raise RavarError("--data: no dataset folder given")
    if not Path(data).is_dir():
        raise RavarError(f"--data {data}: not a directory")
    run.data = str(Path(data).resolve())
    check_available(parse_logger_names(run.train.loggers))  # before anything is built
    fit(run, data, out, device=args.device, resume=args.resume, quiet=args.quiet)
    return 0
