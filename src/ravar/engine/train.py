"""Training: AdamW with warmup + cosine, gradient clipping and accumulation, optional EMA and
mixed precision (CUDA), DistributedDataParallel under torchrun, val metrics every epoch, the best
(by a val metric) and last checkpoints, resuming, and the test split evaluated once at the end
with the best checkpoint.

Run directory::

    config.yaml          resolved run config (reusable with --config)
    metrics.jsonl        one line per epoch
    steps.csv            one line per optimizer step (ravar.engine.loggers; also tb/, wandb/)
    curves.png           loss per step, val metrics per epoch
    best/  last/         checkpoints (see ravar.engine.checkpoint)
    test_metrics.json    test split, best checkpoint, written once at the end
    test_predictions.jsonl

Each step trains on `model.criterion()(model(batch), batch)`: the criterion is applied to the
(DistributedDataParallel) model's output, and metrics.jsonl logs its total ("loss") and every named
loss ("action_bce", "box_mse", "select", ...) averaged over the epoch; the run's loggers
(`ravar.engine.loggers`, train key `loggers`) get the same per optimizer step, with the learning
rate and clips/s, and the val metrics per epoch.

The run directory is checked for writing before anything is built. A write that fails during the
run (disk full, no permission, read-only file system) stops it with `RunWriteError`: one line
naming the file and the system's reason, which complete checkpoint is left, and the command that
continues the run once the disk is fixed. Each epoch writes best/, its metrics.jsonl line, then
last/: a run stopped at any of these writes resumes from the previous last/ and repeats the
epoch, so the resumed run equals an uninterrupted one.

Only rank 0 writes; the best weights reach the other ranks by broadcast. `--resume` reads
RUN_DIR/last on every rank, so multi-node runs resume from a directory all nodes can read.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ravar.cache import FeatureCache
from ravar.config import to_dict
from ravar.data.dataset import RAVARDataset, collate
from ravar.data.detections import require_detections
from ravar.data.format import Record, annotation_path, read_split
from ravar.engine.batch import to_device, uint8_pixels
from ravar.engine.checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointWriteError,
    find_checkpoint,
    load_trainer_state,
    load_weights_into,
    old_path,
    recover_checkpoint,
    save_checkpoint,
)
from ravar.engine.config import (
    RunConfig,
    check_resume_compatible,
    run_config_from_checkpoint,
    write_yaml,
)
from ravar.engine.distributed import DistContext, distributed_session
from ravar.engine.ema import ModelEMA
from ravar.engine.evaluate import (
    Predictions,
    predict_dataset,
    score_predictions,
    write_predictions,
)
from ravar.engine.loggers import (
    STEPS_LOG,
    Loggers,
    check_available,
    open_loggers,
    parse_logger_names,
    read_steps,
)
from ravar.engine.plots import plot_curves
from ravar.engine.precision import amp_enabled, autocast, grad_scaler
from ravar.engine.rng import one_cpu_thread, rng_state, seed_everything, set_rng_state
from ravar.engine.runlog import METRICS_LOG, append_log, read_log, truncate_log
from ravar.engine.schedule import build_scheduler, warmup_steps_for
from ravar.errors import RavarError
from ravar.metrics import TABLE_COLUMNS, format_metrics_table, metrics_to_json
from ravar.models.base import RAVARModel
from ravar.models.registry import build_model
from ravar.util.heartbeat import Heartbeat, format_duration
from ravar.util.io import check_writable, os_reason, write_json

PROGRESS_EVERY_S = 30.0  # progress lines when the output is not a terminal

STATE_VERSION = 1
PLOT_INTERVAL_S = 60.0  # curves.png is redrawn at most this often during a run, and at its end


class NonFiniteLossError(RavarError):
    """The training loss became NaN or infinite."""


class RunWriteError(RavarError):
    """A file of the run directory could not be written (disk full, no permission, read-only
    file system); the message says which checkpoint is intact and how to continue."""


@dataclass
class TrainResult:
    """Where a `fit` call ended."""

    run_dir: Path
    epoch: int  # epochs completed
    step: int  # optimizer steps taken
    finished: bool  # all epochs (or max_steps) done and the test split evaluated
    best_epoch: int | None
    best_val: dict[str, Any] | None  # val metrics of the best checkpoint
    test: dict[str, Any] | None  # test metrics of the best checkpoint (None if not evaluated)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices / kernels, none on biases and norm weights."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _metric_value(metrics: dict[str, Any], key: str) -> float:
    """The selection metric; NaN (no class could be scored) counts as the worst value."""
    value = metrics.get(key)
    return -math.inf if value is None or math.isnan(float(value)) else float(value)


def _epoch_line(row: dict[str, Any], epochs: int, select: str, improved: bool) -> str:
    train = row.get("train") or {}
    parts = ", ".join(f"{k} {v:.4f}" for k, v in sorted(train.items()) if k != "loss")
    text = f"epoch {row['epoch']}/{epochs}  step {row['step']}  loss {train.get('loss', 0):.4f}"
    if parts:
        text += f" ({parts})"
    val = row.get("val")
    if val:
        shown = [select] + [k for k in ("mIoU", "mAP_weighted") if k != select]
        text += "  val " + "  ".join(
            f"{TABLE_COLUMNS.get(k, k)} {100 * v:.2f}"
            for k in shown
            if isinstance(v := val.get(k), float) and not math.isnan(v)
        )
    text += f"  lr {row['lr']:.2e}  {row['epoch_time_s']:.1f} s  {row['clips_per_s']:.0f} clips/s"
    return text + ("  * best" if improved else "")


class Trainer:
    """One training run in `out_dir` (see the module docstring); rank 0 writes every file."""

    def __init__(
        self,
        run: RunConfig,
        data_dir: str | Path,
        out_dir: str | Path,
        ctx: DistContext,
        *,
        resume: bool = False,
        quiet: bool = False,
    ) -> None:
        self.run = run
        self.cfg = run.train
        self.data_dir = Path(data_dir)
        self.out = Path(out_dir)
        self.ctx = ctx
        self.resume = resume
        self.quiet = quiet
        self.progress = not quiet and ctx.is_main and sys.stderr.isatty()
        # not a terminal (a log file): a progress line every PROGRESS_EVERY_S seconds instead
        self.heartbeat = (
            Heartbeat(self._say, PROGRESS_EVERY_S)
            if not quiet and ctx.is_main and not self.progress
            else None
        )
        self.first_step = 0  # optimizer steps done before this invocation (resume)
        self.epoch = 0
        self.step = 0
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.saved_epoch: int | None = None  # epoch of the newest complete last/, if any
        self.best_val: dict[str, Any] | None = None
        self.last_val: dict[str, Any] | None = None
        self.plotted_at = time.monotonic()
        self.loggers = Loggers()  # rank 0's sinks, opened once the run's step is known

    # ---- set-up -------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.ctx.is_main and not self.quiet:
            print(text, flush=True)

    def _check_out_dir(self) -> None:
        last = self.out / "last"
        if self.ctx.is_main:
            check_writable(self.out, f"--out {self.out}", error=RunWriteError)
        if self.resume:
            if self.ctx.is_main:
                recover_checkpoint(last)
                recover_checkpoint(self.out / "best")
            self.ctx.barrier()
            if not (last.is_dir() or old_path(last).is_dir()):
                raise CheckpointError(
                    f"--resume: {last}: no checkpoint to resume from (start without --resume)"
                )
            saved = run_config_from_checkpoint(last)
            check_resume_compatible(saved, self.run, str(find_checkpoint(last)))
        elif last.exists() or old_path(last).exists():
            raise RavarError(
                f"--out {self.out}: already holds a run (last/); add --resume to continue it "
                "or choose another --out"
            )

    def _require_detections(self, split: str, records: list[Record]) -> None:
        require_detections(
            self.data_dir,
            split,
            records,
            needs=self.model.needs_detections,
            allow_missing=self.cfg.allow_missing_detections,
            override="--allow-missing-detections (train key allow_missing_detections=true)",
        )

    def _build(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        seed_everything(cfg.seed)
        self.model: RAVARModel = build_model(self.run.family, self.run.model).to(ctx.device)
        self.criterion = self.model.criterion()
        if ctx.is_distributed:
            torch.manual_seed(cfg.seed + 1_000_003 * ctx.rank)  # distinct dropout per rank
        clip = self.model.config.clip
        self.uint8 = uint8_pixels(ctx.device)
        self.train_ds = RAVARDataset(
            self.data_dir, "train", clip, train=True, seed=cfg.seed, uint8=self.uint8
        )
        self.val_ds = RAVARDataset(self.data_dir, "val", clip, train=False, uint8=self.uint8)
        if len(self.train_ds) == 0:
            raise RavarError(f"{annotation_path(self.data_dir, 'train')}: no instances")
        self.has_test = annotation_path(self.data_dir, "test").is_file()
        needs = self.model.needs_detections
        for split, records in [
            ("train", self.train_ds.records),
            ("val", self.val_ds.records),
            *([("test", read_split(self.data_dir, "test"))] if self.has_test and needs else []),
        ]:  # refused now rather than after training
            self._require_detections(split, records)
        self.sampler = DistributedSampler(
            self.train_ds,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=cfg.seed,
            drop_last=False,
        )
        self.loader_gen = torch.Generator()
        self.loader = DataLoader(
            self.train_ds,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=cfg.workers,
            collate_fn=collate,
            pin_memory=ctx.device.type == "cuda",
            drop_last=False,
            generator=self.loader_gen,
        )
        params = _param_groups(self.model, cfg.weight_decay)
        if not params:
            raise RavarError(f"model {self.run.model_name!r}: no trainable parameters")
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        if cfg.amp != "off" and not amp_enabled(cfg.amp, ctx.device):
            self._say(f"note: amp={cfg.amp} applies on CUDA only; training in full precision")
        self.scaler = grad_scaler(cfg.amp, ctx.device)
        self.ema = ModelEMA(self.model, cfg.ema) if cfg.ema is not None else None
        self.feature_cache = FeatureCache(
            self.model, self.data_dir, cfg.cache, cfg.cache_dir
        )  # frozen weights hashed once; the test split is attached at the end
        models = [self.model] + ([self.ema.module] if self.ema is not None else [])
        for line in self.feature_cache.attach_models(models) + self.feature_cache.attach_datasets(
            [self.train_ds, self.val_ds]
        ):
            self._say(line)
        self.steps_per_epoch = math.ceil(len(self.loader) / cfg.grad_accum)
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.warmup = warmup_steps_for(self.total_steps, cfg.warmup_steps, cfg.warmup_fraction)
        self.ddp: nn.Module | None = None

    def _restore(self) -> None:
        """Continue from RUN_DIR/last: weights, optimizer, scaler, EMA, RNG, counters."""
        last = find_checkpoint(self.out / "last")
        state = load_trainer_state(last)
        where = last / STATE_FILE
        try:
            if self.ema is not None:
                self.model.load_state_dict(state["model"])
                load_weights_into(self.ema.module, last / WEIGHTS_FILE)
                self.ema.load_state_dict(state["ema"])
            else:
                load_weights_into(self.model, last / WEIGHTS_FILE)
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler") and self.scaler.is_enabled():
                self.scaler.load_state_dict(state["scaler"])
            rngs = state["rng"]
            if len(rngs) != self.ctx.world_size:
                self._say(
                    f"note: the run was saved with {len(rngs)} processes, resumed with "
                    f"{self.ctx.world_size}: results will differ from an uninterrupted run"
                )
            set_rng_state(rngs[self.ctx.rank % len(rngs)])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.saved_epoch = self.epoch
            planned = state["scheduler"]["total_steps"]
            if planned != self.total_steps:
                self._say(
                    f"note: the run was planned with {planned} steps, now {self.total_steps} "
                    "(the train split or batch size changed): the schedule differs"
                )
            self.best_metric = state["best_metric"]
            self.best_epoch = state["best_epoch"]
            self.best_val = state["best_val"]
            self.last_val = state.get("last_val")
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            detail = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointError(f"{where}: does not fit this run ({detail})") from None
        if self.ctx.is_main:
            with self._writing():
                truncate_log(self.out / METRICS_LOG, self.epoch)
        self._say(f"resuming {self.out} after epoch {self.epoch} (step {self.step})")

    # ---- one epoch ----------------------------------------------------------------------

    def _train_model(self) -> nn.Module:
        return self.ddp if self.ddp is not None else self.model

    def _eval_model(self) -> RAVARModel:
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg, ctx = self.cfg, self.ctx
        model = self._train_model()
        model.train()
        self.sampler.set_epoch(epoch)
        self.train_ds.set_epoch(epoch)
        self.loader_gen.manual_seed(cfg.seed * 100_003 + epoch)
        n_batches = len(self.loader)
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        lr_used = self.optimizer.param_groups[0]["lr"]  # of the last step taken
        start = time.perf_counter()
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch}/{cfg.epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        self.optimizer.zero_grad(set_to_none=True)
        group_sums: dict[str, float] = defaultdict(float)  # this optimizer step's micro-batches
        group_seen = 0
        step_start = time.perf_counter()
        for i, batch in enumerate(self.loader):
            if self.step >= self.total_steps:
                break
            group_start = i - i % cfg.grad_accum
            group_size = min(cfg.grad_accum, n_batches - group_start)
            closes_group = i - group_start == group_size - 1
            batch = to_device(batch, ctx.device)
            no_sync = self.ddp is not None and not closes_group
            with self.ddp.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[union-attr]
                with autocast(cfg.amp, ctx.device):
                    losses = self.criterion(model(batch), batch)  # from the DDP module's output
                loss = losses.total
                bad = not bool(torch.isfinite(loss.detach()).item())
                if ctx.any_true(bad):
                    raise NonFiniteLossError(
                        f"training loss is {loss.item() if bad else 'NaN/inf on another rank'} "
                        f"at step {self.step + 1} (epoch {epoch}, batch {i + 1}); stopped. "
                        f"The last good checkpoint is {self.out / 'last'} (epoch {self.epoch})"
                    )
                self.scaler.scale(loss / group_size).backward()
            size = len(batch["index"])
            seen += size
            group_seen += size
            values = {"loss": float(loss.detach())}
            values.update({name: float(v.detach()) for name, v in losses.named.items()})
            for name, value in values.items():
                sums[name] += value * size
                group_sums[name] += value * size
            if closes_group:
                if cfg.grad_clip:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                lrs_used = [group["lr"] for group in self.optimizer.param_groups]
                lr_used = lrs_used[0]
                self.step += 1
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update(self.model)
            if closes_group:
                self._log_step(epoch, group_sums, group_seen, step_start, lrs_used)
                group_sums, group_seen = defaultdict(float), 0
                step_start = time.perf_counter()
            bar.update(1)
            elapsed = max(time.perf_counter() - start, 1e-9)
            if self.heartbeat is not None:
                self.heartbeat.tick(
                    partial(self._progress_line, epoch, sums["loss"] / seen, seen / elapsed)
                )
            bar.set_postfix(
                loss=f"{sums['loss'] / seen:.4f}", clips_s=f"{seen * ctx.world_size / elapsed:.1f}"
            )
        bar.close()
        names = sorted(sums)
        totals = ctx.sum_floats([float(seen)] + [sums[k] for k in names])
        count = max(totals[0], 1.0)
        elapsed = time.perf_counter() - start
        return {
            "train": {k: v / count for k, v in zip(names, totals[1:], strict=True)},
            "lr": lr_used,
            "epoch_time_s": elapsed,
            "clips_per_s": totals[0] / max(elapsed, 1e-9),
        }

    def _log_step(
        self, epoch: int, sums: dict[str, float], seen: int, start: float, lrs: list[float]
    ) -> None:
        """Give the loggers optimizer step `self.step`: its mean loss and loss terms over every
        rank's clips, the learning rate(s) that step used (`lrs`, one per group) and clips/s."""
        names = sorted(sums)
        totals = self.ctx.sum_floats([float(seen)] + [sums[k] for k in names])
        if not self.ctx.is_main:
            return
        count = max(totals[0], 1.0)
        values = {k: v / count for k, v in zip(names, totals[1:], strict=True)}
        values["lr"] = lrs[0]
        if any(lr != lrs[0] for lr in lrs):
            values.update({f"lr/group{i}": lr for i, lr in enumerate(lrs[1:], start=1)})
        values["clips_per_s"] = totals[0] / max(time.perf_counter() - start, 1e-9)
        with self._writing():
            self.loggers.log_step(self.step, epoch, values)

    def _progress_line(self, epoch: int, loss: float, clips_per_s: float) -> str:
        """One line of where training is, for logs that are not a terminal."""
        assert self.heartbeat is not None
        done = self.step - self.first_step
        left = self.total_steps - self.step
        eta = format_duration(self.heartbeat.elapsed() / done * left) if done else "?"
        return (
            f"epoch {epoch}/{self.cfg.epochs}  step {self.step}/{self.total_steps}  "
            f"loss {loss:.4f}  {clips_per_s * self.ctx.world_size:.1f} clips/s  ETA {eta}"
        )

    def _validate(self, epoch: int) -> dict[str, Any]:
        preds = predict_dataset(
            self._eval_model(),
            self.val_ds,
            batch_size=self.cfg.eval_batch_size or self.cfg.batch_size,
            ctx=self.ctx,
            workers=self.cfg.workers,
            amp=self.cfg.amp,
            progress=self.progress,
            desc=f"val {epoch}",
        )
        return score_predictions(self.val_ds, preds)

    def _trainer_state(self, rngs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format_version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_val": self.best_val,
            "last_val": self.last_val,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"total_steps": self.total_steps, "warmup_steps": self.warmup},
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "model": self.model.state_dict() if self.ema is not None else None,
            "rng": rngs,
            "world_size": self.ctx.world_size,
        }

    def _end_epoch(self, epoch: int, log: dict[str, Any], val: dict[str, Any] | None) -> None:
        """Checkpoints (best, then last), the metrics line and the curves of a finished epoch."""
        improved = False
        if val is not None:
            val = metrics_to_json({k: v for k, v in val.items() if k != "per_class_AP"})
            self.last_val = val
            value = _metric_value(val, self.cfg.select_metric)
            improved = self.best_metric is None or value > self.best_metric
            if improved:
                self.best_metric, self.best_epoch, self.best_val = value, epoch, val
        self.epoch = epoch
        rngs = self.ctx.all_gather_objects(rng_state())
        if self.ctx.is_main:
            common = {
                "model_name": self.run.model_name,
                "train": to_dict(self.cfg),
                "epoch": epoch,
                "step": self.step,
                "metrics": val,
                "frozen_weights": self.cfg.frozen_weights,
            }
            row = {"epoch": epoch, "step": self.step, **log, "val": val, "time": time.time()}
            with self._writing():
                if val is not None:
                    self.loggers.log_epoch(self.step, epoch, val)
                if improved:
                    save_checkpoint(self.out / "best", self._eval_model(), **common)
                append_log(self.out / METRICS_LOG, row)  # dropped on resume if last/ fails
                save_checkpoint(
                    self.out / "last",
                    self._eval_model(),
                    trainer_state=self._trainer_state(rngs),
                    **common,
                )
                self.saved_epoch = epoch
                if time.monotonic() - self.plotted_at > PLOT_INTERVAL_S:
                    self._plot()
            self._say(_epoch_line(row, self.cfg.epochs, self.cfg.select_metric, improved))
        self.ctx.barrier()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Turn a failed write of the run directory into one RunWriteError line: what failed
        and why, the newest complete last/, and the command that continues the run."""
        try:
            yield
        except (OSError, CheckpointWriteError) as e:
            if isinstance(e, CheckpointWriteError):
                failed = str(e)
            else:
                where = f"{e.filename}: " if getattr(e, "filename", None) else ""
                failed = f"{where}cannot write ({os_reason(e)})"
            last = self.out / "last"
            if self.saved_epoch is not None:
                kept = f"the last complete checkpoint {last} (epoch {self.saved_epoch}) is intact"
                how = f"continue with: ravar train --out {shlex.quote(str(self.out))} --resume"
            else:
                kept = "no checkpoint was written yet"
                how = "start the run again"
            raise RunWriteError(f"{failed}; {kept}; fix the disk/permissions, then {how}") from None

    def _plot(self) -> None:
        if self.ctx.is_main:
            with self._writing():
                plot_curves(
                    read_log(self.out / METRICS_LOG),
                    self.out / "curves.png",
                    steps=read_steps(self.out / STEPS_LOG),
                )
            self.plotted_at = time.monotonic()

    # ---- the end: test with the best checkpoint -------------------------------------------

    def _test(self) -> dict[str, Any] | None:
        if not self.has_test:
            self._say(f"no test split in {self.data_dir}: skipping the test evaluation")
            return None
        model = self._eval_model()  # training is over: its weights become the best ones
        if self.ctx.is_main:
            load_weights_into(model, find_checkpoint(self.out / "best") / WEIGHTS_FILE)
        self.ctx.broadcast_module(model)
        test_ds = RAVARDataset(
            self.data_dir, "test", model.config.clip, train=False, uint8=self.uint8
        )
        for line in self.feature_cache.attach_datasets([test_ds]):
            self._say(line)
        preds: Predictions = predict_dataset(
            model,
            test_ds,
            batch_size=self.cfg.eval_batch_size or self.cfg.batch_size,
            ctx=self.ctx,
            workers=self.cfg.workers,
            amp=self.cfg.amp,
            progress=self.progress,
            desc="test",
        )
        metrics = score_predictions(test_ds, preds)
        if self.ctx.is_main:
            summary = {
                "checkpoint": str((self.out / "best").resolve()),
                "best_epoch": self.best_epoch,
                "select_metric": self.cfg.select_metric,
                "split": "test",
                "n": len(preds),
                "metrics": metrics,
            }
            with self._writing():
                write_json(self.out / "test_metrics.json", metrics_to_json(summary))
                write_predictions(self.out / "test_predictions.jsonl", test_ds, preds)
        self.ctx.barrier()
        return metrics_to_json(metrics)

    # ---- the run ------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train (or continue) until the configured end, then evaluate test once with best
        (on one CPU thread with the train key `deterministic`)."""
        with one_cpu_thread(self.cfg.deterministic and self.ctx.device.type == "cpu"):
            return self._fit()

    def _fit(self) -> TrainResult:
        logger_names = parse_logger_names(self.cfg.loggers, "train key loggers")
        check_available(logger_names)
        self._check_out_dir()
        self._build()
        if self.resume:
            self._restore()
        self.first_step = self.step
        self.scheduler = build_scheduler(
            self.optimizer,
            self.cfg.lr,
            self.total_steps,
            self.warmup,
            self.cfg.schedule,
            self.cfg.min_lr_ratio,
            step=self.step,
        )
        if self.ctx.is_main:
            with self._writing():
                write_yaml(self.out / "config.yaml", self.run.to_dict())
                self.loggers = open_loggers(
                    logger_names,
                    self.out,
                    resume_step=self.step if self.resume else None,
                    config=self.run.to_dict(),
                )
        try:
            result = self._train_and_test()
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                self.loggers.close()
            raise
        with self._writing():
            self.loggers.close()
        return result

    def _train_and_test(self) -> TrainResult:
        self.ctx.barrier()
        if self.ctx.is_distributed:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=ids,
                find_unused_parameters=self.cfg.find_unused_parameters,
            )
        total, trainable = self.model.param_counts()
        self._say(
            f"training {self.run.model_name} ({trainable:,} trainable / {total:,} parameters) on "
            f"{len(self.train_ds)} clips, {self.ctx.world_size} process(es) on "
            f"{self.ctx.device.type}; {self.total_steps} steps; run dir {self.out}"
        )
        cfg = self.cfg
        while self.epoch < cfg.epochs and self.step < self.total_steps:
            epoch = self.epoch + 1
            try:
                log = self._train_epoch(epoch)
            except NonFiniteLossError:
                if self.epoch > 0:
                    self._plot()
                raise
            done = epoch == cfg.epochs or self.step >= self.total_steps
            val = self._validate(epoch) if done or epoch % cfg.eval_every == 0 else None
            self._end_epoch(epoch, log, val)
            if not done and cfg.stop_after_epoch is not None and epoch >= cfg.stop_after_epoch:
                self._plot()
                self._say(f"stopped after epoch {epoch} (stop_after_epoch); continue with --resume")
                return self._result(finished=False, test=None)
        self._plot()
        test = self._test()
        if self.ctx.is_main:
            rows = {f"val (best, epoch {self.best_epoch})": self.best_val or {}}
            if test is not None:
                rows["test (best)"] = test
            print(format_metrics_table(rows))
        return self._result(finished=True, test=test)

    def _result(self, finished: bool, test: dict[str, Any] | None) -> TrainResult:
        return TrainResult(
            run_dir=self.out,
            epoch=self.epoch,
            step=self.step,
            finished=finished,
            best_epoch=self.best_epoch,
            best_val=self.best_val,
            test=test,
        )


def fit(
    run: RunConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    device: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    ctx: DistContext | None = None,
) -> TrainResult:
    """Train `run` on `data_dir` into run directory `out_dir` (see the module docstring). Under
    torchrun the process group is created here (or pass the `ctx` of an open session)."""
    if ctx is not None:
        return Trainer(run, data_dir, out_dir, ctx, resume=resume, quiet=quiet).fit()
    with distributed_session(device) as session:
        return Trainer(run, data_dir, out_dir, session, resume=resume, quiet=quiet).fit()
