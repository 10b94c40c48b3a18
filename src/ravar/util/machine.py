"""A one-line description of the machine, for benchmark results and run logs."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what `platform` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """CPU model and cores, torch version and threads, and the GPU when there is one."""
    parts = [
        f"{cpu_model()}, {os.cpu_count()} cores",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
    ]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    return "; ".join(parts)
