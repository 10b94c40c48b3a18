"""Build a model's architecture without memory, to learn its tensor shapes and size before the
real build (a checkpoint's config.json is untrusted: `dim: 10000000` would otherwise allocate
gigabytes before any shape check).

`meta_model` builds the model with every tensor on the meta device (no memory, no
initialisation) and stops as soon as the parameters and buffers registered so far pass
`MAX_PARAMETERS` elements or `MAX_TENSORS` tensors, so an absurd width or depth is refused after
a bounded amount of work. `size_limit` applies the same limits to a real build (whose
parameters are allocated before they are registered, so it is the second line of defence).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ravar.errors import RavarError

MAX_PARAMETERS = 4_000_000_000  # elements of parameters and buffers (16 GB of float32)
MAX_TENSORS = 10_000  # parameters and buffers (the BLIP-2 models of the zoo have under 1,000)


_LOCK = threading.Lock()


class ModelSizeError(RavarError):
    """A model config describes a model larger than `MAX_PARAMETERS` or `MAX_TENSORS`."""


@contextmanager
def size_limit(
    max_elements: int = MAX_PARAMETERS, max_tensors: int = MAX_TENSORS
) -> Iterator[None]:
    """Within the context, registering a parameter or buffer past `max_elements` elements or
    `max_tensors` tensors (counted from the start of the context) raises ModelSizeError."""
    register_parameter = nn.Module.register_parameter
    register_buffer = nn.Module.register_buffer
    seen: dict[int, torch.Tensor] = {}  # the tensors registered, by id (kept: ids are reused)
    total = 0  # their elements

    def count(tensor: Any) -> None:
        nonlocal total
        if isinstance(tensor, torch.Tensor) and id(tensor) not in seen:
            seen[id(tensor)] = tensor
            total += tensor.numel()
            if len(seen) > max_tensors:
                raise ModelSizeError(
                    f"more than {max_tensors} parameter and buffer tensors "
                    "(ravar.models.size_guard.MAX_TENSORS)"
                )
            if total > max_elements:
                raise ModelSizeError(
                    f"at least {total} parameters, over the limit of {max_elements} "
                    "(ravar.models.size_guard.MAX_PARAMETERS)"
                )

    def counted_parameter(module: nn.Module, name: str, param: Any) -> None:
        count(param)
        register_parameter(module, name, param)

    def counted_buffer(module: nn.Module, name: str, tensor: Any, persistent: bool = True) -> None:
        count(tensor)
        register_buffer(module, name, tensor, persistent)

    with _LOCK:
        nn.Module.register_parameter = counted_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = counted_buffer  # type: ignore[method-assign]
        try:
            yield
        finally:
            nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
            nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def meta_model(
    family: str,
    config: Any,
    max_parameters: int = MAX_PARAMETERS,
    max_tensors: int = MAX_TENSORS,
) -> nn.Module:
    """The model of `family` built from `config` (dataclass or plain dict) with all its tensors
    on the meta device; raises ModelSizeError once it passes `max_parameters` elements or
    `max_tensors` tensors (parameters and buffers together)."""
    from ravar.models.registry import build_model

    with torch.device("meta"), size_limit(max_parameters, max_tensors), warnings.catch_warnings():
        # a backbone that copies a local folder's weights in (a no-op on meta) warns about it
        warnings.simplefilter("ignore", UserWarning)
        return build_model(family, config)
