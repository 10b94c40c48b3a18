"""Checkpoint configs of older format versions, upgraded to the current one when they are read.

A checkpoint's `config.json` carries "format_version". When what a config means changes (a key
is added whose default differs from how older checkpoints behaved, a value is renamed),
FORMAT_VERSION grows by one and one step here turns a config of the version before into the new
one. Every reader of a checkpoint goes through `ravar.engine.checkpoint.read_checkpoint_config`,
which applies the steps, so the rest of `ravar` sees only the current format and the config
dataclasses default to what works best now, while old checkpoints keep behaving as they did.

Versions:
  1  the first format.
  2  `RefAtomNetConfig.referring_tokens` defaults to "streams" (the referring head reads the
     person and word tokens before the fusion blocks); a version-1 RefAtomNet config without the
     key was saved before the switch existed and read the tokens after them: "fused".
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

FORMAT_VERSION = 2

Config = dict[str, Any]


def _v1_to_v2(config: Config) -> None:
    """RefAtomNet configs saved before `referring_tokens` existed keep the post-fusion tokens."""
    model = config.get("model")
    if config.get("family") == "refatomnet" and isinstance(model, dict):
        model.setdefault("referring_tokens", "fused")


# format version N -> the step that turns a config of version N into one of version N + 1
STEPS: dict[int, Callable[[Config], None]] = {1: _v1_to_v2}


def upgrade_config(config: Config) -> Config:
    """A copy of checkpoint config `config` in the current format (FORMAT_VERSION). Its
    "format_version" must be an int from 1 to FORMAT_VERSION (the caller checks it)."""
    config = copy.deepcopy(config)
    version = int(config["format_version"])
    while version < FORMAT_VERSION:
        STEPS[version](config)
        version += 1
    config["format_version"] = version
    return config
