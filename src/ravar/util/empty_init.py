"""Build a module without allocating its parameters: they are created on the meta device (no
memory, no random initialisation) and filled later by `load_state_dict(..., assign=True)`.
Buffers are built as usual, so those not saved in a state dict (non-persistent buffers such as
position ids) keep the values their module computed at init."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

_LOCK = threading.Lock()


@contextmanager
def empty_parameters() -> Iterator[None]:
    """Within the context, every parameter a module registers is moved to the meta device."""
    original = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            kept = module._parameters[name]
            assert kept is not None
            module._parameters[name] = type(kept)(
                kept.to(torch.device("meta")), requires_grad=kept.requires_grad
            )

    with _LOCK:
        nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign]
        try:
            yield
        finally:
            nn.Module.register_parameter = original  # type: ignore[method-assign]


def meta_tensors(module: nn.Module) -> list[str]:
    """Names of the parameters and buffers of `module` still on the meta device."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, t in named if t.is_meta]


def assign_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` (every key of `module.state_dict()`) into `module` by taking its tensors as
    the parameters and buffers (no copy); parameters shared under several names stay shared."""
    aliases: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(name)
    module.load_state_dict(state, strict=True, assign=True)
    for names in aliases.values():
        kept = module.get_parameter(names[0])
        for name in names[1:]:
            owner, _, attr = name.rpartition(".")
            setattr(module.get_submodule(owner), attr, kept)
