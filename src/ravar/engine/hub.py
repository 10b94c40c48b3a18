"""Sharing checkpoints the Hugging Face way: `save_pretrained` writes a ravar checkpoint
(`ravar.engine.checkpoint`, the one format) with a model card, `load_pretrained` reads a
checkpoint folder or a Hub repo id, `push_checkpoint` uploads a checkpoint folder to the Hub.

`huggingface_hub.ModelHubMixin` / `PyTorchModelHubMixin` are not used: they write their own
config.json (the constructor's arguments) and weights file and rebuild a model by calling its
class, while a ravar checkpoint is written atomically with its format version, family, backbone
configs and tokenizer files, and is rebuilt by `load_model` from its family; their
`from_pretrained` also downloads by default. The three functions here keep the one format and
call `snapshot_download` (local cache only unless the caller asks for a download) and
`HfApi.upload_folder`.

Nothing is downloaded unless asked for (`download=True`, `ravar checkpoint pull`), and never
while `HF_HUB_OFFLINE` is set: a repo id not in the local cache (`HF_HUB_CACHE`, else
`HF_HOME/hub`, read when called) is refused with one line naming it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ravar.engine.checkpoint import (
    STATE_FILE,
    CheckpointError,
    find_checkpoint,
    load_model,
    old_path,
    save_checkpoint,
)
from ravar.engine.model_card import CARD_FILE, DEFAULT_LICENSE, write_card
from ravar.errors import RavarError
from ravar.models.base import RAVARModel

# a Hub model id: "name" or "owner/name" (letters, digits, "-", "_", "."), at most 96 characters
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")
_TRUE = {"1", "on", "yes", "true"}


class HubError(RavarError):
    """A repo id that cannot be read (not cached, offline) or a push that failed."""


def is_offline() -> bool:
    """Whether Hugging Face Hub access is switched off (`HF_HUB_OFFLINE`, read when called:
    `huggingface_hub.constants` keeps the value of whenever the library was first imported)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    return value is not None and value.strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The local Hugging Face cache of repos: `HF_HUB_CACHE`, else `HF_HOME/hub`, else the
    library's default (environment read when called)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def resolve_checkpoint(
    source: str | os.PathLike,
    *,
    download: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The checkpoint folder of `source`: a local folder as is, or a Hub repo id's snapshot in
    the local cache (fetched first only with `download=True` and not offline)."""
    path = Path(source).expanduser()
    if path.exists() or old_path(path).is_dir():
        return path
    repo_id = str(source)
    if not _REPO_ID.match(repo_id):
        raise CheckpointError(f"{source}: no checkpoint directory there (and not a Hub repo id)")
    from huggingface_hub import snapshot_download

    offline = is_offline()
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(cache),
            local_files_only=offline or not download,
        )
    except Exception as e:  # the hub raises many types: not cached, offline, no such repo, HTTP
        if offline or not download:
            why = "HF_HUB_OFFLINE is set" if offline else "download it with download=True"
            raise HubError(
                f"{repo_id}: no checkpoint directory there, and the Hub repo id is not in the "
                f"local Hugging Face cache {cache} ({why})"
            ) from None
        raise HubError(f"{repo_id}: cannot download from the Hub ({_first_line(e)})") from None
    return Path(folder)


def load_pretrained(
    source: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    download: bool = False,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    backbones: Mapping[str, str | os.PathLike] | None = None,
) -> RAVARModel:
    """The model of checkpoint `source` (a folder, or a Hub repo id in the local cache; see
    `resolve_checkpoint`), in eval mode on `device` (see `ravar.engine.checkpoint.load_model`)."""
    root = resolve_checkpoint(source, download=download, revision=revision, cache_dir=cache_dir)
    return load_model(root, device, backbones=backbones)


def save_pretrained(
    model: RAVARModel,
    directory: str | os.PathLike,
    *,
    model_name: str | None = None,
    run_dir: str | os.PathLike | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    dataset: str | None = None,
    license: str = DEFAULT_LICENSE,
    repo_id: str | None = None,
) -> Path:
    """Write `model` as a ravar checkpoint at `directory` (what `ravar eval --checkpoint` reads)
    with its model card README.md. The card takes the metrics (split -> values) and dataset
    name from `run_dir`'s test_metrics.json and config.yaml when given, and from `metrics` /
    `dataset`; `model_name` defaults to the name the model was created or loaded with."""
    name = model_name or model.model_name or model.family
    path = save_checkpoint(directory, model, model_name=name)
    write_card(
        path,
        repo_id=repo_id,
        run_dir=run_dir,
        metrics=metrics,
        dataset=dataset,
        parameters=model.param_counts(),
        license=license,
        trust_run=run_dir is not None,
    )
    return path


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def push_checkpoint(
    checkpoint: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload checkpoint folder `checkpoint` (without trainer_state.pt) to Hub model repo
    `repo_id`, creating the repo if needed; a card README.md is written for the upload when
    the folder has none. Returns the commit URL."""
    if not _REPO_ID.match(repo_id):
        raise HubError(f"{repo_id!r}: not a Hub repo id (expected 'name' or 'owner/name')")
    if is_offline():
        raise HubError(f"{repo_id}: HF_HUB_OFFLINE is set; not pushing")
    root = find_checkpoint(checkpoint)
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="ravar-push-") as tmp:
        stage = Path(tmp) / root.name
        shutil.copytree(
            root,
            stage,
            ignore=shutil.ignore_patterns(STATE_FILE, ".*"),
            copy_function=_link_or_copy,
        )
        if not (stage / CARD_FILE).is_file():
            write_card(root, repo_id=repo_id, out=stage / CARD_FILE)
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(
                folder_path=str(stage),
                repo_id=repo_id,
                repo_type="model",
                commit_message=commit_message or f"Upload ravar checkpoint {root.name}",
            )
        except RavarError:
            raise
        except Exception as e:  # HTTP, authentication, network: one line
            raise HubError(f"push to {repo_id}: {_first_line(e)}") from None
    return str(getattr(info, "commit_url", info))


def push_model(model: RAVARModel, repo_id: str, **kwargs: Any) -> str:
    """`save_pretrained` into a temporary folder, then `push_checkpoint` it; `kwargs` go to
    both (private, commit_message, token to the push; the rest to save_pretrained)."""
    push_keys = {"private", "commit_message", "token"}
    push_args = {k: v for k, v in kwargs.items() if k in push_keys}
    save_args = {k: v for k, v in kwargs.items() if k not in push_keys}
    with tempfile.TemporaryDirectory(prefix="ravar-push-") as tmp:
        folder = save_pretrained(model, Path(tmp) / "checkpoint", repo_id=repo_id, **save_args)
        return push_checkpoint(folder, repo_id, **push_args)
