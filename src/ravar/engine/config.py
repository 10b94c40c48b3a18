"""What a training run is configured by: `TrainConfig` (optimisation, schedule, evaluation) plus
a named model with its config, resolved from defaults < YAML file < `key=value` overrides < flags.

A YAML file (`--config`) and a run's `config.yaml` share one layout::

    model_name: refatomnet_tiny      # optional when --model is given
    epochs: 20                       # any TrainConfig key, at the top level
    lr: 0.0005
    model:                           # any model config key, nested (or `model.clip.num_frames=4`)
      dim: 64
      clip: {num_frames: 4}
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ravar.config import ConfigError, apply_overrides, from_dict, parse_overrides, to_dict
from ravar.models.registry import model_config, model_family
from ravar.util.io import atomic_write_text

# metrics of `ravar.metrics.compute_metrics` that can pick the best checkpoint (higher is better)
SELECT_METRICS = (
    "mAP_weighted",
    "mAP_macro",
    "AUROC_weighted",
    "AUROC_macro",
    "mIoU",
    "Acc@0.5",
)

# keys that may differ between a run and its `--resume` without changing its results
RESUMABLE_CHANGES = ("workers", "stop_after_epoch", "cache_dir", "frozen_weights", "loggers")

# YAML keys beside the TrainConfig keys
RUN_KEYS = ("model_name", "family", "model", "data")


@dataclass
class TrainConfig:
    """Optimisation, schedule and evaluation of one training run."""

    epochs: int = 10
    batch_size: int = 8  # per process
    eval_batch_size: int | None = None  # default: batch_size
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.05  # not applied to biases and norm weights (1-D parameters)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8  # AdamW epsilon
    warmup_steps: int | None = None  # linear warmup in optimizer steps; None: warmup_fraction
    warmup_fraction: float = 0.05  # of all optimizer steps
    # after warmup: "cosine" from the peak down to lr * min_lr_ratio over the remaining steps;
    # "constant"; "bert_cosine": BertAdam's warmup_cosine (the RefAtomNet papers' code), the factor
    # 0.5 * (1 + cos(pi * step / total)) over the whole run, so it drops at the end of warmup
    schedule: Literal["cosine", "constant", "bert_cosine"] = "cosine"
    min_lr_ratio: float = 0.0  # the cosine ends at lr * min_lr_ratio
    grad_clip: float | None = 1.0  # max gradient norm; None or 0: no clipping
    ema: float | None = None  # EMA decay of the weights (e.g. 0.999); None: off
    amp: Literal["off", "bf16", "fp16"] = "off"  # mixed precision, CUDA only
    grad_accum: int = 1  # micro-batches per optimizer step
    workers: int = 0  # DataLoader worker processes
    seed: int = 0
    select_metric: str = "mAP_weighted"  # val metric that picks RUN_DIR/best
    eval_every: int = 1  # evaluate val every N epochs (and always after the last)
    max_steps: int | None = None  # cap on optimizer steps (smoke runs, tests)
    stop_after_epoch: int | None = None  # end this invocation after this epoch (resume later)
    find_unused_parameters: bool = False  # DistributedDataParallel option
    cache: Literal["auto", "off", "require"] = "auto"  # read frozen-backbone features (ravar cache)
    cache_dir: str | None = None  # where the feature stores are; None: DATA/cache
    allow_missing_detections: bool = False  # train a detection-reading model on splits without any
    frozen_weights: bool = True  # False: checkpoints leave out frozen weights of local backbones
    # True: a CPU run computes with one thread (torch.set_num_threads(1) for the run), so the same
    # seed gives bit-identical weights on any machine; no effect on CUDA's kernels
    deterministic: bool = False
    # experiment trackers, comma-separated: csv (RUN_DIR/steps.csv, always written), tensorboard
    # (RUN_DIR/tb), wandb (offline unless WANDB_MODE); see ravar.engine.loggers
    loggers: str = "csv"

    def __post_init__(self) -> None:
        from ravar.engine.loggers import LOGGERS

        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (
                self.eval_batch_size is None or self.eval_batch_size >= 1,
                f"eval_batch_size must be >= 1, got {self.eval_batch_size}",
            ),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (
                all(0.0 <= b < 1.0 for b in self.betas),
                f"betas must be in [0, 1), got {list(self.betas)}",
            ),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                self.warmup_steps is None or self.warmup_steps >= 0,
                f"warmup_steps must be >= 0, got {self.warmup_steps}",
            ),
            (
                0.0 <= self.warmup_fraction < 1.0,
                f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}",
            ),
            (
                0.0 <= self.min_lr_ratio <= 1.0,
                f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}",
            ),
            (
                self.grad_clip is None or self.grad_clip >= 0,
                f"grad_clip must be >= 0, got {self.grad_clip}",
            ),
            (
                self.ema is None or 0.0 < self.ema < 1.0,
                f"ema must be a decay in (0, 1) or null, got {self.ema}",
            ),
            (self.grad_accum >= 1, f"grad_accum must be >= 1, got {self.grad_accum}"),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}"),
            (
                self.select_metric in SELECT_METRICS,
                f"select_metric must be one of {list(SELECT_METRICS)}, got {self.select_metric!r}",
            ),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (
                self.cache in ("auto", "off", "require"),
                f"cache must be 'auto', 'off' or 'require', got {self.cache!r}",
            ),
            (
                self.max_steps is None or self.max_steps >= 1,
                f"max_steps must be >= 1, got {self.max_steps}",
            ),
            (
                self.stop_after_epoch is None or self.stop_after_epoch >= 1,
                f"stop_after_epoch must be >= 1, got {self.stop_after_epoch}",
            ),
            (
                isinstance(self.loggers, str)
                and all(n.strip() in LOGGERS for n in self.loggers.split(",") if n.strip()),
                f"loggers must be a comma list of {', '.join(LOGGERS)}, got {self.loggers!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class RunConfig:
    """A resolved run: the named model, its config dataclass, and the TrainConfig."""

    model_name: str
    family: str
    model: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The run as plain data, in the YAML layout (TrainConfig keys at the top level)."""
        out: dict[str, Any] = {"model_name": self.model_name, "family": self.family}
        if self.data is not None:
            out["data"] = self.data
        out.update(to_dict(self.train))
        out["model"] = to_dict(self.model)
        return out


def read_yaml_config(path: str | os.PathLike) -> dict[str, Any]:
    """A run config file as a mapping; its keys are checked against TrainConfig and RUN_KEYS."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {p}: cannot read ({e})") from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--config {p}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p}: expected a mapping of keys, got {type(data).__name__}")
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(k) for k in data if k not in train_keys and k not in RUN_KEYS)
    if unknown:
        raise ConfigError(
            f"--config {p}: unknown keys {unknown}; valid: {sorted(train_keys | set(RUN_KEYS))}"
        )
    if "model" in data and not isinstance(data["model"], dict):
        raise ConfigError(f"--config {p}: key 'model' must be a mapping of model config keys")
    return data


def flatten_keys(nested: Mapping[str, Any], like: Mapping[str, Any], prefix: str = "") -> dict:
    """``{"clip": {"num_frames": 4}}`` -> ``{"clip.num_frames": 4}``, descending only where `like`
    (the plain dict of the config being overridden) has a mapping, so partial sections keep the
    other keys of the config."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        sub = like.get(key) if isinstance(like, Mapping) else None
        if isinstance(value, Mapping) and isinstance(sub, Mapping):
            out.update(flatten_keys(value, sub, prefix=f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def split_overrides(items: list[str] | Mapping[str, Any]) -> tuple[dict, dict]:
    """`key=value` overrides (strings, or an already parsed mapping) -> (train, model) dicts;
    keys prefixed `model.` address the model config."""
    parsed = parse_overrides(items) if not isinstance(items, Mapping) else dict(items)
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in parsed.items():
        if key.startswith("model."):
            model[key[len("model.") :]] = value
        elif key == "model":
            raise ConfigError("override 'model=...': address model keys as model.KEY=VALUE")
        else:
            train[key] = value
    return train, model


def _train_config(base: TrainConfig, overrides: Mapping[str, Any], where: str) -> TrainConfig:
    try:
        return apply_overrides(base, overrides) if overrides else base
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


# a backbone config holds pretrained weights (a local folder) or a random-weight config, not both
_WEIGHT_SOURCES = ("hf_name_or_path", "hf_config")


def weight_source_overrides(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Flat model overrides in which setting one weight source of a backbone (`hf_name_or_path`:
    pretrained weights from a local folder, whose own config then gives the architecture;
    `hf_config`: random weights from a config dict) also clears the other one, which an earlier
    layer (the named config, the YAML file) may have set. Setting both to values in the same
    layer is an error."""
    out = dict(flat)
    for key, value in flat.items():
        for mine, other in (_WEIGHT_SOURCES, _WEIGHT_SOURCES[::-1]):
            if value is None or not (key == mine or key.endswith("." + mine)):
                continue
            sibling = key[: len(key) - len(mine)] + other
            given = {k: v for k, v in flat.items() if k == sibling or k.startswith(sibling + ".")}
            if any(v is not None for v in given.values()):
                raise ConfigError(
                    f"{key} and {sibling} are both set: give pretrained weights "
                    f"({key[: len(key) - len(mine)]}hf_name_or_path, whose folder's config is "
                    "used) or a random-weight config (hf_config), not both"
                )
            for k in given:
                out.pop(k)
            out[sibling] = None
    return out


def _model_config(name: str, base: Any | None, overrides: Mapping[str, Any], where: str) -> Any:
    try:
        cfg = base if base is not None else model_config(name)
        if overrides:
            flat = weight_source_overrides(flatten_keys(overrides, to_dict(cfg)))
            cfg = apply_overrides(cfg, flat)
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{where} (model {name!r}): {e}") from None


def resolve_run_config(
    model_name: str | None,
    config_file: str | os.PathLike | None = None,
    overrides: list[str] | Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    base: RunConfig | None = None,
) -> RunConfig:
    """Resolve a run: `base` (a saved run, when resuming) or the named model's defaults and
    TrainConfig defaults, then the YAML `config_file`, then `overrides` (`key=value`, `model.`
    prefix for the model), then `flags` (TrainConfig keys given as command-line options; None
    values are ignored). A layer that sets a backbone's `hf_name_or_path` drops the `hf_config`
    of the layers before it, and the other way round (`weight_source_overrides`)."""
    file_cfg = read_yaml_config(config_file) if config_file is not None else {}
    name = model_name or file_cfg.get("model_name") or (base.model_name if base else None)
    if not name:
        raise ConfigError("--model: no model name given (nor model_name in --config)")
    if base is not None and name != base.model_name:
        raise ConfigError(
            f"--model {name!r} differs from the run being resumed ({base.model_name!r})"
        )
    family = model_family(name) if base is None else base.family
    if "family" in file_cfg and file_cfg["family"] != family:
        raise ConfigError(
            f"--config {config_file}: family {file_cfg['family']!r} does not match model "
            f"{name!r} (family {family!r})"
        )
    train_over, model_over = split_overrides(overrides or [])
    file_train = {k: v for k, v in file_cfg.items() if k not in RUN_KEYS}
    flag_train = {k: v for k, v in (flags or {}).items() if v is not None}

    train = base.train if base is not None else TrainConfig()
    train = _train_config(train, file_train, f"--config {config_file}")
    train = _train_config(train, train_over, "override")
    train = _train_config(train, flag_train, "option")

    model = base.model if base is not None else None
    model = _model_config(name, model, file_cfg.get("model") or {}, f"--config {config_file}")
    model = _model_config(name, model, model_over, "override")
    data = file_cfg.get("data") if base is None else base.data
    return RunConfig(model_name=name, family=family, model=model, train=train, data=data)


def train_config_from_dict(d: Any, where: str) -> TrainConfig:
    """TrainConfig from its plain dict (as saved in a checkpoint), errors naming `where`."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: key 'train' must be a mapping")
    try:
        return from_dict(TrainConfig, d)
    except ConfigError as e:
        raise ConfigError(f"{where}: key 'train': {e}") from None


def run_config_from_checkpoint(path: str | os.PathLike) -> RunConfig:
    """The RunConfig a checkpoint was trained with (its config.json)."""
    from ravar.engine.checkpoint import CONFIG_FILE, find_checkpoint, read_checkpoint_config

    info = read_checkpoint_config(path)
    where = str(find_checkpoint(path) / CONFIG_FILE)
    name = info["model_name"]
    try:
        model = from_dict(type(model_config(name)), info["model"], prefix="model.")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    train = train_config_from_dict(info.get("train"), where)
    return RunConfig(model_name=name, family=info["family"], model=model, train=train)


def check_resume_compatible(saved: RunConfig, wanted: RunConfig, where: str) -> None:
    """Raise when `wanted` changes anything but RESUMABLE_CHANGES relative to the saved run."""
    a, b = saved.to_dict(), wanted.to_dict()
    a.pop("data", None)
    b.pop("data", None)
    changed = sorted(
        k for k in set(a) | set(b) if k not in RESUMABLE_CHANGES and a.get(k) != b.get(k)
    )
    if changed:
        raise ConfigError(
            f"--resume: {where} was trained with other settings for {changed}; resume with the "
            f"same config (only {list(RESUMABLE_CHANGES)} may change) or start a new --out"
        )


def write_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write `data` as block-style YAML, keys in the given order."""
    atomic_write_text(path, yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False))
