"""Mixed precision: autocast and gradient scaling on CUDA only (full precision elsewhere)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_enabled(amp: str, device: torch.device) -> bool:
    """Whether `amp` ("off", "bf16", "fp16") takes effect on `device` (CUDA only)."""
    return amp in AMP_DTYPES and device.type == "cuda"


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context for `amp` on `device` (a no-op when it does not apply)."""
    if not amp_enabled(amp, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=AMP_DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 on CUDA."""
    return torch.amp.GradScaler("cuda", enabled=amp == "fp16" and device.type == "cuda")
