"""The one `ravar` checkpoint format, written atomically.

A checkpoint is a directory::

    model.safetensors   # weights (the EMA weights when EMA is on)
    config.json         # {"format": "ravar-checkpoint", "format_version": 2, "ravar_version",
                        #  "family", "model_name", "model", "train", "epoch", "step", "metrics",
                        #  "backbones"}
    tokenizers/NAME/    # the tokenizer files of each text backbone read from a local folder
    trainer_state.pt    # only for resuming: optimizer, scaler, EMA, RNG states, counters

`config.json` alone rebuilds the model (`load_model`): "backbones" carries the Hugging Face
config of every backbone first read from a local folder, so the folder is not needed again
(see `ravar.engine.portable`); with `frozen_weights=False` the frozen backbone weights are left
out and loading reads them from a local copy, checked by hash. Checkpoints without "backbones"
(older ones) rebuild their backbones from the recorded folders. Loading builds the model with
its parameters on the meta device and takes the file's tensors as its weights, so no random
weights are made first. A config.json of an older format version is upgraded when it is read
(`ravar.engine.checkpoint_upgrade`); one of a newer version is refused. Before the model is
built, its architecture is built on the meta device from config.json and checked against the
weights file's header (`check_config_fits_weights`): a config describing a model of another
shape, or one over `ravar.models.size_guard.MAX_PARAMETERS`, is refused without allocating it.

A checkpoint is written into a temporary sibling directory (`ravar.util.io.temp_sibling`),
fsynced, then swapped in by renames: the previous version is first renamed to `.<name>.old`, so
a process killed at any moment leaves either the new or the previous complete checkpoint
(`find_checkpoint` / `recover_checkpoint` fall back to `.<name>.old`). A write that fails (disk
full, no permission, read-only file system) removes its temporary directory, puts the previous
version back and raises `CheckpointWriteError` naming the checkpoint and the system's reason.
Tests interrupt a write at its stages through `STAGE_CALLBACKS`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import torch

from ravar import __version__
from ravar.config import ConfigError, to_dict
from ravar.engine import portable
from ravar.engine.checkpoint_upgrade import FORMAT_VERSION, upgrade_config
from ravar.errors import RavarError
from ravar.metrics import metrics_to_json
from ravar.models.backbones.shipped import use_shipped
from ravar.models.base import RAVARModel
from ravar.models.size_guard import ModelSizeError, meta_model, size_limit
from ravar.util.empty_init import assign_state_dict, empty_parameters, meta_tensors
from ravar.util.io import (
    atomic_path,
    fsync_dir,
    json_text,
    os_reason,
    read_json,
    remove_stale_temps,
    temp_sibling,
)

FORMAT_NAME = "ravar-checkpoint"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.pt"

# Fault injection (empty in normal use): `save_checkpoint` calls each `callback(stage, name,
# epoch)` at the stages "write" (the weights are written, the config not yet) and "swap" (the
# previous version is moved away, the new one not yet in). Tests add a callback that raises or
# stalls there, to check that an interrupted write leaves a complete checkpoint.
STAGE_CALLBACKS: list[Callable[[str, str, int], None]] = []


class CheckpointError(RavarError):
    """A checkpoint directory or one of its files is missing, corrupt or of another format."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, no permission, read-only file system); the
    previous version at its path, if any, is left complete."""


def _at_stage(stage: str, name: str, epoch: int) -> None:
    """Call the STAGE_CALLBACKS (fault injection for tests)."""
    for callback in list(STAGE_CALLBACKS):
        callback(stage, name, epoch)


def old_path(path: Path) -> Path:
    """Where the previous version of checkpoint `path` waits while a new one is swapped in."""
    return path.parent / f".{path.name}.old"


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the state dict (copies: tied weights must not share storage in the file)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: RAVARModel,
    *,
    model_name: str,
    train: Mapping[str, Any] | None = None,
    epoch: int = 0,
    step: int = 0,
    metrics: Mapping[str, Any] | None = None,
    trainer_state: Mapping[str, Any] | None = None,
    frozen_weights: bool = True,
) -> Path:
    """Write `model` (weights + config) and optionally `trainer_state` as checkpoint `path`,
    atomically replacing any previous checkpoint there. `frozen_weights=False` leaves out the
    frozen weights of backbones read from a local folder (or the packaged MiniLM), recording
    their hash. A failed write raises CheckpointWriteError (the previous version stays)."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        _write_checkpoint(
            path,
            tmp,
            model,
            model_name=model_name,
            train=train,
            epoch=epoch,
            step=step,
            metrics=metrics,
            trainer_state=trainer_state,
            frozen_weights=frozen_weights,
        )
    except Exception as e:
        if not _is_write_failure(e):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        with suppress(OSError):  # else find_checkpoint finds the previous version at .<name>.old
            recover_checkpoint(path)
        raise CheckpointWriteError(
            f"{path}: cannot write the checkpoint ({os_reason(e)})"
        ) from None
    return path


def _is_write_failure(error: BaseException) -> bool:
    """True for an error of the file system: an OSError or safetensors' SafetensorError."""
    from safetensors import SafetensorError

    return isinstance(error, (OSError, SafetensorError))


def _write_checkpoint(
    path: Path,
    tmp: Path,
    model: RAVARModel,
    *,
    model_name: str,
    train: Mapping[str, Any] | None,
    epoch: int,
    step: int,
    metrics: Mapping[str, Any] | None,
    trainer_state: Mapping[str, Any] | None,
    frozen_weights: bool,
) -> None:
    """`save_checkpoint`'s steps: write into `tmp`, then swap it in as `path`."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    recover_checkpoint(path)
    tmp.mkdir()
    backbones, left_out = portable.backbone_records(model, tmp, frozen_weights)
    weights = {k: v for k, v in _weights(model).items() if not portable.is_left_out(k, left_out)}
    with atomic_path(tmp / WEIGHTS_FILE) as file:
        save_file(weights, str(file), metadata={"format": "pt"})
    _at_stage("write", path.name, epoch)
    if trainer_state is not None:
        with atomic_path(tmp / STATE_FILE) as file, open(file, "wb") as f:
            torch.save(dict(trainer_state), f)
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "ravar_version": __version__,
        "family": type(model).family,
        "model_name": model_name,
        "model": to_dict(model.config),
        "train": dict(train) if train is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "metrics": metrics_to_json(dict(metrics)) if metrics is not None else None,
        "backbones": backbones,
    }
    with atomic_path(tmp / CONFIG_FILE) as file, open(file, "w", encoding="utf-8") as f:
        f.write(json_text(config))

    old = old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.rename(path, old)
    _at_stage("swap", path.name, epoch)
    os.rename(tmp, path)
    fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The complete checkpoint for `path`: itself, or its previous version when a swap was
    interrupted; raises CheckpointError naming the path when there is none."""
    path = Path(path)
    if path.is_dir():
        return path
    old = old_path(path)
    if not path.exists() and old.is_dir():
        return old
    if path.exists():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    raise CheckpointError(f"{path}: no checkpoint there (expected a directory with {CONFIG_FILE})")


def recover_checkpoint(path: str | os.PathLike) -> bool:
    """Put back the previous version of `path` when a swap was interrupted; True if it did."""
    path = Path(path)
    old = old_path(path)
    if not path.exists() and old.is_dir():
        os.rename(old, path)
        fsync_dir(path.parent)
        return True
    return False


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The checked `config.json` of checkpoint `path`, upgraded to the current format version
    (`ravar.engine.checkpoint_upgrade`); a config of a newer version is refused."""
    file = find_checkpoint(path) / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (not a ravar checkpoint)")
    config = read_json(file, error=CheckpointError)
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{file}: key 'format' must be {FORMAT_NAME!r}, got {got!r}")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"{file}: key 'format_version' is {version!r}; expected a version from 1 to "
            f"{FORMAT_VERSION}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: key 'format_version' is {version!r}, written by a newer ravar; this ravar "
            f"({__version__}) reads versions up to {FORMAT_VERSION}: upgrade ravar"
        )
    for key, kind in (("family", str), ("model_name", str), ("model", dict)):
        if not isinstance(config.get(key), kind):
            raise CheckpointError(f"{file}: key {key!r} must be a {kind.__name__}")
    return upgrade_config(config)


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        return load_file(str(file))
    except Exception as e:  # safetensors raises its own error types for any damage
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{file}: not a readable safetensors file ({detail})") from None


def _check_fit(
    own: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor], file: Path
) -> None:
    """Every key of the model's state dict `own` in `weights` and no other, shapes equal."""
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{file}: weights do not fit the model (missing {missing[:3]}"
            f"{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}"
            f"{'...' if len(unexpected) > 3 else ''})"
        )
    bad = [k for k in own if own[k].shape != weights[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{file}: weight {k!r} has shape {list(weights[k].shape)}, the model expects "
            f"{list(own[k].shape)}"
        )


def _weight_shapes(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as empty meta tensors of their shapes (reads the
    header only)."""
    from safetensors import safe_open

    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        with safe_open(str(file), framework="pt") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors raises its own error types for any damage
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{file}: not a readable safetensors file ({detail})") from None
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


def check_config_fits_weights(
    root: Path, config: Mapping[str, Any], records: Mapping[str, Mapping[str, Any]] | None
) -> None:
    """Refuse a checkpoint whose config.json describes a model that is larger than
    `ravar.models.size_guard.MAX_PARAMETERS` or whose tensors differ from those of its
    model.safetensors, before any memory is allocated for the model: the architecture is built
    on the meta device, and the weights file's header alone is read."""
    where = root / CONFIG_FILE
    weights = _weight_shapes(root / WEIGHTS_FILE)
    shipped = portable.shipped_backbones(root, records) if records is not None else {}
    try:
        with use_shipped(shipped):
            model = meta_model(config["family"], config["model"])
    except RuntimeError as e:
        if records is not None or "from_pretrained" not in str(e):
            raise
        # an older checkpoint reads its backbones from local folders, which cannot be done on
        # the meta device: `load_model` builds it under `size_limit` alone
        return
    except ModelSizeError as e:
        stored = sum(t.numel() for t in weights.values())
        raise CheckpointError(
            f"{where}: key 'model' describes a model too large to build: {e}; "
            f"{WEIGHTS_FILE} holds {stored} parameters"
        ) from None
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None
    left_out = portable.left_out_prefixes(records)
    own = {k: v for k, v in model.state_dict().items() if not portable.is_left_out(k, left_out)}
    _check_fit(own, weights, root / WEIGHTS_FILE)


def _backbone_records(root: Path) -> dict[str, dict[str, Any]] | None:
    """The "backbones" entries of checkpoint `root`'s config.json, if it has any."""
    if not (root / CONFIG_FILE).is_file():
        return None
    return portable.read_records(read_checkpoint_config(root), root / CONFIG_FILE)


def load_weights_into(model: torch.nn.Module, file: str | os.PathLike) -> None:
    """Load a `model.safetensors` into `model`; every key must match, except the frozen
    backbone weights its checkpoint left out: the model's own are kept when their hash is the
    recorded one."""
    file = Path(file)
    weights = _load_weights(file)
    records = _backbone_records(file.parent)
    left_out = portable.left_out_prefixes(records)
    own = {k: v for k, v in model.state_dict().items() if not portable.is_left_out(k, left_out)}
    _check_fit(own, weights, file)
    if left_out:
        portable.check_kept_weights(model, records or {}, str(file.parent))
    model.load_state_dict(weights, strict=not left_out)


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    backbones: Mapping[str, str | os.PathLike] | None = None,
    low_memory: bool = True,
) -> RAVARModel:
    """Rebuild the model of checkpoint `path` from its config.json and load its weights (in eval
    mode, on `device`).

    Backbones read from local folders are rebuilt from the configs the checkpoint carries
    (the folders are not opened); frozen weights it left out are read from `backbones`
    (module name, e.g. "visual", -> local folder) or else the recorded folder, and must match
    the recorded hash. `low_memory`: parameters start on the meta device and the file's
    tensors become the weights (no random weights are made); False builds the model with
    random weights and copies the file's into them. Checkpoints without "backbones" (older
    ones) rebuild their backbones from the recorded folders."""
    from ravar.models.registry import build_model

    root = find_checkpoint(path)
    config = read_checkpoint_config(root)
    records = portable.read_records(config, root / CONFIG_FILE)
    check_config_fits_weights(root, config, records)
    if records is None:
        if backbones:
            raise CheckpointError(
                f"{root}: an older checkpoint without shipped backbones; --backbone does not "
                "apply (it reads its backbones from the folders its config names)"
            )
        try:
            with size_limit():
                model = build_model(config["family"], config["model"])
        except (ConfigError, ModelSizeError) as e:
            raise CheckpointError(f"{root / CONFIG_FILE}: {e}") from None
        load_weights_into(model, root / WEIGHTS_FILE)
        model.model_name = config["model_name"]
        return model.to(device).eval()
    try:
        shipped = portable.shipped_backbones(root, records)
        empty = empty_parameters() if low_memory else nullcontext()
        with use_shipped(shipped), empty, size_limit():
            model = build_model(config["family"], config["model"])
    except (ConfigError, ModelSizeError) as e:
        raise CheckpointError(f"{root / CONFIG_FILE}: {e}") from None
    weights = _load_weights(root / WEIGHTS_FILE)
    weights.update(portable.left_out_weights(model, root, records, backbones))
    _check_fit(model.state_dict(), weights, root / WEIGHTS_FILE)
    if low_memory:
        assign_state_dict(model, weights)
        empty = meta_tensors(model)
        if empty:
            raise CheckpointError(f"{root / WEIGHTS_FILE}: no values for {empty[:3]}")
    else:
        model.load_state_dict(weights, strict=True)
    model.model_name = config["model_name"]
    return model.to(device).eval()


def strip_frozen_weights(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    backbones: Mapping[str, str | os.PathLike] | None = None,
) -> Path:
    """Rewrite checkpoint `path` (into `out`, default in place) without the frozen weights of
    its backbones read from local folders, keeping its config, metrics and trainer state."""
    root = find_checkpoint(path)
    config = read_checkpoint_config(root)
    model = load_model(root, backbones=backbones)
    found = portable.local_backbones(model)
    if not any(b.frozen_part is not None for _, b, _ in found):  # type: ignore[attr-defined]
        raise CheckpointError(
            f"{root}: no frozen backbone read from a local folder (or the packaged MiniLM): "
            "no weights to leave out"
        )
    state = load_trainer_state(root) if (root / STATE_FILE).is_file() else None
    return save_checkpoint(
        out if out is not None else root,
        model,
        model_name=config["model_name"],
        train=config.get("train"),
        epoch=int(config.get("epoch", 0)),
        step=int(config.get("step", 0)),
        metrics=config.get("metrics"),
        trainer_state=state,
        frozen_weights=False,
    )


def load_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """The `trainer_state.pt` of checkpoint `path` (loaded with weights_only=True)."""
    file = find_checkpoint(path) / STATE_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (this checkpoint cannot be resumed)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or foreign files
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{file}: cannot be loaded ({detail})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: expected a dict, got {type(state).__name__}")
    return state
