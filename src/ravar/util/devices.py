"""Torch devices named by the user (`--device cpu`, `cuda`, `cuda:1`, `mps`, ...): parsing,
a one-line error when this machine lacks the device, and the default (CUDA when available)."""

from __future__ import annotations

import torch

from ravar.errors import RavarError

EXAMPLES = "cpu, cuda, cuda:1, mps"


def parse_device(text: str) -> torch.device:
    """`text` as a torch device; ValueError naming the examples when torch does not know it."""
    try:
        return torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"not a torch device: {text!r} (e.g. {EXAMPLES})") from None


def device_problem(device: torch.device) -> str | None:
    """Why tensors cannot be put on `device` on this machine, or None when they can."""
    kind = device.type
    if kind == "cpu":
        return None
    if kind == "meta":
        return "the meta device holds no data; a model cannot run on it"
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            return "MPS is not available on this machine"
        return None
    module = getattr(torch, kind, None)  # torch.cuda, torch.xpu, ...
    name = "CUDA" if kind == "cuda" else kind.upper()
    if module is None or not hasattr(module, "is_available") or not module.is_available():
        return f"{name} is not available on this machine"
    count = module.device_count() if hasattr(module, "device_count") else 1
    if device.index is not None and device.index >= count:
        plural = "device" if count == 1 else "devices"
        return f"this machine has {count} {name} {plural} ({kind}:0 to {kind}:{count - 1})"
    return None


def check_device(device: str | torch.device, what: str = "--device") -> torch.device:
    """`device` as a torch device; RavarError "`what` DEVICE: why" for a malformed one or one
    this machine lacks."""
    try:
        parsed = parse_device(device) if isinstance(device, str) else device
    except ValueError as e:
        raise RavarError(f"{what}: {e}") from None
    problem = device_problem(parsed)
    if problem is not None:
        raise RavarError(f"{what} {parsed}: {problem}")
    return parsed


def default_device() -> torch.device:
    """CUDA (the current GPU) when available, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(requested: str | torch.device | None, what: str = "--device") -> torch.device:
    """The device `requested` (checked as `check_device` does), or `default_device()` for None."""
    return default_device() if requested is None else check_device(requested, what)
