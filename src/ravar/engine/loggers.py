"""Experiment tracking of a training run: one interface (`RunLogger`), three sinks.

Per optimizer step the engine logs the total loss ("loss"), every named loss term, the learning
rate ("lr"; "lr/group1", ... when the parameter groups differ) and "clips_per_s"; per evaluated
epoch the val metrics. Only rank 0 logs under DistributedDataParallel; the step values are
summed over ranks first, so they are those of the whole step.

- csv: `RUN_DIR/steps.csv`, one row per step (step, epoch, lr, clips_per_s, loss, terms...).
  Always written: `curves.png` plots its per-step loss. A resumed run first drops the rows after
  the step it resumes from, so no step appears twice.
- tensorboard: event files under `RUN_DIR/tb` (`torch.utils.tensorboard`, needs the
  `tensorboard` package); scalars "train/<name>" per step and "val/<metric>" per epoch, at the
  optimizer step. A resumed run purges the events after its step.
- wandb: Weights & Biases, imported only when asked for; offline unless `WANDB_MODE` says
  otherwise (no login, nothing sent: `wandb sync RUN_DIR/wandb/offline-run-*` uploads later).
  The run id is kept in `RUN_DIR/wandb_id` so a resumed run continues the same wandb run.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ravar.errors import RavarError
from ravar.util.io import atomic_write_text

LOGGERS = ("csv", "tensorboard", "wandb")
STEPS_LOG = "steps.csv"
TB_DIR = "tb"
WANDB_ID_FILE = "wandb_id"
FIRST_COLUMNS = ("step", "epoch", "lr", "clips_per_s", "loss")
EXTRA = "track"  # the optional dependency group with tensorboard and wandb
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


class LoggerError(RavarError):
    """An unknown logger name, or a logger whose package is not installed."""


def parse_logger_names(text: str | Sequence[str], where: str = "--logger") -> tuple[str, ...]:
    """Logger names from "csv,tensorboard" (or a list of such strings), checked; csv is always
    included."""
    items = [text] if isinstance(text, str) else list(text)
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise LoggerError(
            f"{where}: unknown logger {unknown[0]!r}; choose from {', '.join(LOGGERS)}"
        )
    return tuple(dict.fromkeys(["csv", *names]))


def check_available(names: Sequence[str], where: str = "--logger") -> None:
    """Refuse, in one line, a logger whose package is not installed."""
    for name in names:
        package = _PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise LoggerError(
                f"{where} {name}: the {package!r} package is not installed "
                f"(pip install 'ravar[{EXTRA}]', or pip install {package})"
            )


class RunLogger:
    """A sink for a run's step and epoch values (the base does nothing)."""

    def log_step(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        """Values of optimizer step `step` (1-based) of epoch `epoch`."""

    def log_epoch(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        """Val metrics of epoch `epoch`, ending at optimizer step `step`."""

    def close(self) -> None:
        """Flush and release files."""


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def read_steps(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a steps.csv (numbers; an empty cell is left out; a torn row is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            try:
                row = {k: float(v) for k, v in raw.items() if k and v not in (None, "")}
                row["step"], row["epoch"] = int(raw["step"]), int(raw["epoch"])
            except (TypeError, ValueError, KeyError):
                continue
            rows.append(row)
    return rows


class CsvLogger(RunLogger):
    """`RUN_DIR/steps.csv`, one row per optimizer step."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.path = run_dir / STEPS_LOG
        rows = [r for r in read_steps(self.path) if r["step"] <= resume_step] if resume_step else []
        self.columns: list[str] = []
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, float]]) -> None:
        keys = {k for r in rows for k in r} | set(self.columns)
        self.columns = [c for c in FIRST_COLUMNS if c in keys] + sorted(keys - set(FIRST_COLUMNS))
        lines = [",".join(self.columns)] if self.columns else []
        lines += [self._line(r) for r in rows]
        atomic_write_text(self.path, "".join(line + "\n" for line in lines), fsync=False)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)

    def _line(self, row: Mapping[str, float]) -> str:
        return ",".join(repr(row[c]) if c in row else "" for c in self.columns)

    def log_step(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        row = {"step": step, "epoch": epoch, **_finite(values)}
        if set(row) - set(self.columns):  # a new column (first row, or a new loss term)
            self.file.close()
            self.columns = list({*self.columns, *row})
            self._rewrite(read_steps(self.path))
        self.file.write(self._line(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger(RunLogger):
    """Event files under `RUN_DIR/tb`."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events of steps after the resumed one (written before a stop) are dropped
        purge = resume_step + 1 if resume_step else None
        self.writer = SummaryWriter(log_dir=str(run_dir / TB_DIR), purge_step=purge)

    def log_step(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        for name, value in _finite(values).items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def log_epoch(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        self.writer.add_scalar("epoch", epoch, step)
        for name, value in _finite(values).items():
            self.writer.add_scalar(f"val/{name}", value, step)

    def close(self) -> None:
        self.writer.close()


class WandbLogger(RunLogger):
    """A Weights & Biases run, offline unless WANDB_MODE says otherwise."""

    def __init__(self, run_dir: Path, resume_step: int | None, config: Mapping[str, Any]) -> None:
        import wandb

        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else ""
        if not run_id:
            run_id = uuid.uuid4().hex[:12]
            atomic_write_text(id_file, run_id + "\n")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ravar"),
            name=run_dir.name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=dict(config),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )

    def log_step(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        self.run.log(
            {"epoch": epoch, **{f"train/{k}": v for k, v in _finite(values).items()}}, step=step
        )

    def log_epoch(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        self.run.log({f"val/{k}": v for k, v in _finite(values).items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class Loggers(RunLogger):
    """The run's sinks behind one call (none on ranks other than 0)."""

    def __init__(self, sinks: Sequence[RunLogger] = ()) -> None:
        self.sinks = list(sinks)

    def log_step(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        for sink in self.sinks:
            sink.log_step(step, epoch, values)

    def log_epoch(self, step: int, epoch: int, values: Mapping[str, float]) -> None:
        for sink in self.sinks:
            sink.log_epoch(step, epoch, values)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


def open_loggers(
    names: Sequence[str],
    run_dir: str | os.PathLike,
    *,
    resume_step: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> Loggers:
    """The sinks `names` (see `parse_logger_names`) for run directory `run_dir`; `resume_step`:
    the optimizer step a resumed run continues from; `config`: the run config (wandb)."""
    run_dir = Path(run_dir)
    check_available(names)
    sinks: list[RunLogger] = []
    try:
        for name in names:
            if name == "csv":
                sinks.append(CsvLogger(run_dir, resume_step))
            elif name == "tensorboard":
                sinks.append(TensorBoardLogger(run_dir, resume_step))
            elif name == "wandb":
                sinks.append(WandbLogger(run_dir, resume_step, config or {}))
    except BaseException:
        Loggers(sinks).close()
        raise
    return Loggers(sinks)
