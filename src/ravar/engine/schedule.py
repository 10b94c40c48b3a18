"""Learning-rate schedule: linear warmup, then cosine decay (or constant), per optimizer step,
run by `torch.optim.lr_scheduler.LambdaLR` over our factor function. (transformers'
`get_cosine_schedule_with_warmup` is not the same: its warmup starts at 0, ours at 1 / warmup.)"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine", min_ratio: float = 0.0
) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based) of `total_steps`:
    (step + 1) / warmup during warmup, then a cosine from 1 down to `min_ratio` at the last step
    (or 1 for the "constant" schedule; for "bert_cosine", 0.5 * (1 + cos(pi * step / total)))."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "bert_cosine":
        # BertAdam's warmup_cosine: the cosine runs over the whole run's progress, not over the
        # steps after warmup (and ignores min_ratio)
        return 0.5 * (1.0 + math.cos(math.pi * step / max(1, total_steps)))
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}")
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    """Warmup length: `warmup_steps` when given, else `warmup_fraction` of `total_steps`, and
    never the whole run."""
    n = warmup_steps if warmup_steps is not None else round(warmup_fraction * total_steps)
    return max(0, min(int(n), total_steps - 1))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    peak_lr: float,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "cosine",
    min_ratio: float = 0.0,
    step: int = 0,
) -> LambdaLR:
    """A scheduler that sets every parameter group's learning rate to `peak_lr` times `lr_factor`
    of the optimizer step about to be taken, starting at `step` (the steps already done, when
    resuming); call its `step()` after each optimizer step. Its position is the step counter
    alone, so a run resumes from that counter (a restored optimizer's "lr" is the last one used,
    not the peak, hence `peak_lr`)."""
    for group in optimizer.param_groups:
        group["initial_lr"] = peak_lr  # LambdaLR's base learning rate
    factor = partial(
        lr_factor,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        schedule=schedule,
        min_ratio=min_ratio,
    )
    return LambdaLR(optimizer, factor, last_epoch=step - 1)
