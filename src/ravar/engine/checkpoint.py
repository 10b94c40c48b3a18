"""The one `ravar` checkpoint format, written atomically.

A checkpoint is a directory::

    model.safetensors   # weights (the EMA weights when EMA is on)
    config.json         # {"format": "ravar-checkpoint", "format_version": 1, "ravar_version",
                        #  "family", "model_name", "model", "train", "epoch", "step", "metrics"}
    trainer_state.pt    # only for resuming: optimizer, scaler, EMA, RNG states, counters

`config.json` alone rebuilds the model (`load_model`). A checkpoint is written into a temporary
sibling directory, fsynced, then swapped in by renames: the previous version is first renamed to
`.<name>.old`, so a process killed at any moment leaves either the new or the previous complete
checkpoint (`find_checkpoint` / `recover_checkpoint` fall back to `.<name>.old`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ravar import __version__
from ravar.config import ConfigError, to_dict
from ravar.errors import RavarError
from ravar.metrics import metrics_to_json
from ravar.models.base import RAVARModel

FORMAT_NAME = "ravar-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.pt"

# test hook: "NAME:EPOCH:STAGE" makes the write of checkpoint NAME at EPOCH stall at STAGE
# ("write": weights written, config not yet; "swap": old version moved away, new not yet in)
STALL_ENV = "RAVAR_TEST_CHECKPOINT_STALL"


class CheckpointError(RavarError):
    """A checkpoint directory or one of its files is missing, corrupt or of another format."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _stage_hook(stage: str, name: str, epoch: int) -> None:
    """Stall here when the STALL_ENV test hook names this checkpoint, epoch and stage."""
    wanted = os.environ.get(STALL_ENV)
    if wanted and wanted == f"{name}:{epoch}:{stage}":
        print(f"{STALL_ENV} {wanted}: stalling", file=sys.stderr, flush=True)
        time.sleep(3600)


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
) -> Path:
    """Write `model` (weights + config) and optionally `trainer_state` as checkpoint `path`,
    atomically replacing any previous checkpoint there."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    recover_checkpoint(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    save_file(_weights(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    _fsync_file(tmp / WEIGHTS_FILE)
    _stage_hook("write", path.name, epoch)
    if trainer_state is not None:
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(dict(trainer_state), f)
            f.flush()
            os.fsync(f.fileno())
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
    }
    with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as f:
        f.write(json.dumps(config, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)

    old = old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.rename(path, old)
    _stage_hook("swap", path.name, epoch)
    os.rename(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return path


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
        _fsync_dir(path.parent)
        return True
    return False


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """The checked `config.json` of checkpoint `path`."""
    file = find_checkpoint(path) / CONFIG_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (not a ravar checkpoint)")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(f"{file}: cannot read ({e.strerror})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{file}: key 'format' must be {FORMAT_NAME!r}, got {got!r}")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: key 'format_version' is {config.get('format_version')!r}; this ravar "
            f"({__version__}) reads version {FORMAT_VERSION}"
        )
    for key, kind in (("family", str), ("model_name", str), ("model", dict)):
        if not isinstance(config.get(key), kind):
            raise CheckpointError(f"{file}: key {key!r} must be a {kind.__name__}")
    return config


def _load_weights(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        return load_file(str(file))
    except Exception as e:  # safetensors raises its own error types for any damage
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{file}: not a readable safetensors file ({detail})") from None


def load_weights_into(model: torch.nn.Module, file: str | os.PathLike) -> None:
    """Load a `model.safetensors` into `model`; every key must match."""
    file = Path(file)
    weights = _load_weights(file)
    own = model.state_dict()
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
    model.load_state_dict(weights, strict=True)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> RAVARModel:
    """Rebuild the model of checkpoint `path` from its config.json and load its weights (in eval
    mode, on `device`)."""
    from ravar.models.registry import build_model

    root = find_checkpoint(path)
    config = read_checkpoint_config(root)
    try:
        model = build_model(config["family"], config["model"])
    except ConfigError as e:
        raise CheckpointError(f"{root / CONFIG_FILE}: {e}") from None
    load_weights_into(model, root / WEIGHTS_FILE)
    return model.to(device).eval()


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
