"""What a checkpoint carries so that it loads where its backbone folders do not exist, and the
frozen backbone weights it may leave out.

For each Hugging Face backbone read from a local folder (or the packaged MiniLM), config.json
gets an entry under "backbones", keyed by the backbone's module name in the model::

    "visual": {"kind": "visual", "source": "/models/blip2", "hf_config": {...},
               "tokenizer": null, "frozen": "visual.model",
               "left_out": false, "weights_hash": null}

`hf_config` rebuilds the architecture, `tokenizer` names a folder of the checkpoint with the
text tokenizer's files. With `left_out`, the weights of the frozen part (`frozen`, a module name)
are not in model.safetensors; loading takes them from a local copy of the backbone whose
weights have the hash `weights_hash` (`ravar.cache.store.module_fingerprint`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ravar.errors import RavarError
from ravar.models.backbones.shipped import MINILM_SOURCE, ShippedBackbone
from ravar.models.backbones.text import HFTextEncoder, build_text
from ravar.models.backbones.visual import HFVisualBackbone, build_visual

TOKENIZERS_DIR = "tokenizers"  # inside the checkpoint: one folder per text backbone


class BackboneError(RavarError):
    """A backbone the checkpoint needs is missing locally, or has other weights."""


def _module_name(model: nn.Module, part: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is part:
            return name
    raise ValueError("frozen part is not a submodule of the model")  # not reachable from ravar


def _source(backbone: nn.Module) -> str | None:
    """Where a Hugging Face backbone's weights came from: a folder or cache name, "minilm", or
    None (built from an inline hf_config: random weights, nothing to ship)."""
    cfg = backbone.config  # type: ignore[attr-defined]
    if cfg.hf_config is not None:
        return None
    if isinstance(backbone, HFTextEncoder) and cfg.kind == "minilm":
        return MINILM_SOURCE
    return cfg.hf_name_or_path


def local_backbones(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(module name, backbone, source) of each Hugging Face backbone of `model` read from a
    local folder, the local cache or the packaged MiniLM."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, (HFVisualBackbone, HFTextEncoder)):
            source = _source(module)
            if source is not None:
                out.append((name, module, str(source)))
    return out


def backbone_records(
    model: nn.Module, folder: Path, frozen_weights: bool = True
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The "backbones" entries of `model`, writing tokenizer files under `folder`; and the
    module-name prefixes whose weights are left out (empty when `frozen_weights`)."""
    from ravar.cache.store import module_fingerprint

    records: dict[str, dict[str, Any]] = {}
    left_out: list[str] = []
    for name, module, source in local_backbones(model):
        kind = "visual" if isinstance(module, HFVisualBackbone) else "text"
        tokenizer = None
        if isinstance(module, HFTextEncoder):
            tokenizer = f"{TOKENIZERS_DIR}/{name or 'text'}"
            module.tokenizer.save_pretrained(str(folder / tokenizer))
        part = module.frozen_part
        frozen = _module_name(model, part) if part is not None else None
        leave_out = not frozen_weights and frozen is not None
        records[name] = {
            "kind": kind,
            "source": source,
            "hf_config": module.hf_config_dict(),
            "tokenizer": tokenizer,
            "frozen": frozen,
            "left_out": leave_out,
            "weights_hash": module_fingerprint(part) if leave_out else None,
        }
        if leave_out:
            left_out.append(str(frozen))
    return records, left_out


def is_left_out(key: str, prefixes: list[str]) -> bool:
    """Whether state-dict `key` lies under one of the module names `prefixes`."""
    return any(key.startswith(p + ".") for p in prefixes)


def read_records(config: Mapping[str, Any], file: Path) -> dict[str, dict[str, Any]] | None:
    """The checked "backbones" entries of a checkpoint config (None: an older checkpoint)."""
    records = config.get("backbones")
    if records is None:
        return None
    keys = ("kind", "source", "hf_config", "tokenizer", "frozen", "left_out", "weights_hash")
    ok = isinstance(records, dict) and all(
        isinstance(r, dict) and all(k in r for k in keys) for r in records.values()
    )
    if not ok:
        raise BackboneError(f"{file}: key 'backbones' must map module names to {list(keys)}")
    return records


def shipped_backbones(
    root: Path, records: Mapping[str, Mapping[str, Any]]
) -> dict[tuple[str, str], ShippedBackbone]:
    """The `use_shipped` map of a checkpoint's backbones (tokenizer folders inside `root`)."""
    return {
        (r["kind"], r["source"]): ShippedBackbone(
            dict(r["hf_config"]), str(root / r["tokenizer"]) if r["tokenizer"] else None
        )
        for r in records.values()
    }


def left_out_prefixes(records: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Module names whose weights the checkpoint left out."""
    return [r["frozen"] for r in (records or {}).values() if r["left_out"]]


def _local_folder(
    name: str, record: Mapping[str, Any], given: Mapping[str, str], where: str
) -> str:
    """The local copy of backbone `name`: the given one, else the recorded source if present."""
    if name in given:
        folder = str(given[name])
        if not Path(folder).expanduser().is_dir():
            raise BackboneError(f"backbone {name}={folder}: not a directory")
        return folder
    source = record["source"]
    if source == MINILM_SOURCE or Path(source).expanduser().is_dir():
        return source
    raise BackboneError(
        f"{where}: the frozen weights of backbone {name!r} were left out and its recorded "
        f"folder {source} does not exist here; give a local copy with --backbone {name}=DIR"
    )


def _standalone(module: nn.Module, record: Mapping[str, Any], folder: str, root: Path) -> nn.Module:
    """Backbone `module`'s config rebuilt alone with real weights read from `folder`."""
    cfg = module.config  # type: ignore[attr-defined]
    if record["kind"] == "visual":
        return build_visual(dataclasses.replace(cfg, hf_name_or_path=folder, hf_config=None))
    if folder == MINILM_SOURCE:
        return build_text(dataclasses.replace(cfg, kind="minilm"))
    tokenizer = str(root / record["tokenizer"])
    return build_text(
        dataclasses.replace(
            cfg, kind="hf", hf_name_or_path=folder, hf_config=None, tokenizer_path=tokenizer
        )
    )


def left_out_weights(
    model: nn.Module,
    root: Path,
    records: Mapping[str, Mapping[str, Any]],
    backbones: Mapping[str, str | os.PathLike] | None = None,
) -> dict[str, torch.Tensor]:
    """The weights checkpoint `root` left out, read from local backbone folders (`backbones`:
    module name -> folder; default: the recorded source) and checked against the recorded
    hash; keyed as in `model.state_dict()`."""
    from ravar.cache.store import module_fingerprint

    given = {k: str(v) for k, v in (backbones or {}).items()}
    if "" in given:  # a folder without a name: the one backbone left out
        names = [n for n, r in records.items() if r["left_out"]]
        if len(names) != 1:
            raise BackboneError(
                f"--backbone {given['']}: checkpoint {root} left out the frozen weights of "
                f"{names or 'no backbone'}; name the backbone with --backbone NAME=DIR"
            )
        given[names[0]] = given.pop("")
    unknown = sorted(set(given) - set(records))
    if unknown:
        raise BackboneError(
            f"--backbone {unknown[0]}: checkpoint {root} has no such backbone "
            f"(its local backbones: {sorted(records) or 'none'})"
        )
    out: dict[str, torch.Tensor] = {}
    for name, record in records.items():
        if not record["left_out"]:
            continue
        folder = _local_folder(name, record, given, str(root))
        try:
            built = _standalone(model.get_submodule(name), record, folder, root)
        except RavarError as e:
            raise BackboneError(f"backbone {name!r} from {folder}: {e}") from None
        part = built.frozen_part  # type: ignore[attr-defined]
        got = module_fingerprint(part)
        if got != record["weights_hash"]:
            raise BackboneError(
                f"backbone {name!r} from {folder}: its weights differ from those checkpoint "
                f"{root} was trained with (hash {got}, expected {record['weights_hash']})"
            )
        prefix = record["frozen"] + "."
        out.update({prefix + k: v for k, v in part.state_dict().items()})
    return out


def check_kept_weights(
    model: nn.Module, records: Mapping[str, Mapping[str, Any]], where: str
) -> None:
    """Refuse a model whose own frozen weights (standing in for the left-out ones) differ from
    those the checkpoint recorded."""
    from ravar.cache.store import module_fingerprint

    for name, record in records.items():
        if record["left_out"]:
            got = module_fingerprint(model.get_submodule(record["frozen"]))
            if got != record["weights_hash"]:
                raise BackboneError(
                    f"{where}: the model's frozen weights of backbone {name!r} differ from those "
                    f"the checkpoint left out (hash {got}, expected {record['weights_hash']})"
                )
