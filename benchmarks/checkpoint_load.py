"""Peak memory and time of loading a checkpoint: on meta-device parameters (the default) against
the ordinary path (random weights first, then the file's copied in), each in a fresh process.

    python benchmarks/checkpoint_load.py --checkpoint DIR [--model refatomnet_pp_base]
        [--repeats 1]

When DIR holds no checkpoint, one of MODEL with random weights is written there first (the paper
size, ~1.1 B parameters, takes ~4.5 GB of disk in fp32). Each load runs in its own Python
process, which reports its peak resident set size (VmHWM: the highest RSS the process reached)
before loading (imports only), after `load_model`, and after reading every weight once (the
meta-device load takes the file's tensors as the weights, and safetensors maps the file lazily:
pages count once read), and the seconds `load_model` took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODES = {"meta": True, "ordinary": False}  # mode -> load_model(low_memory=...)


def peak_rss_gib() -> float:
    """The process's peak resident set size (VmHWM) in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_checkpoint(path: Path, model_name: str) -> None:
    """Save MODEL with random weights as checkpoint `path`."""
    import torch

    from ravar.engine.checkpoint import save_checkpoint
    from ravar.models.registry import create_model

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = create_model(model_name).eval()
    total, _ = model.param_counts()
    save_checkpoint(path, model, model_name=model_name)
    size = (path / "model.safetensors").stat().st_size / 2**30
    print(f"wrote {path}: {total / 1e6:,.0f}M parameters, {size:.2f} GiB, "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip


def load_once(path: Path, mode: str) -> dict[str, float]:
    """Load checkpoint `path` in this process; its peak RSS before and after, and the time."""

    import ravar.models.zoo  # noqa: F401  (imports transformers: part of the baseline)
    from ravar.engine.checkpoint import load_model

    before = peak_rss_gib()
    t0 = time.perf_counter()
    model = load_model(path, low_memory=MODES[mode])
    seconds = time.perf_counter() - t0
    loaded = peak_rss_gib()
    params = sum(p.numel() for p in model.parameters())
    checksum = sum(float(t.double().sum()) for t in model.state_dict().values())  # reads all
    return {"mode": mode, "params": params, "rss_before_gib": before, "peak_rss_gib": loaded,
            "peak_rss_read_gib": peak_rss_gib(), "seconds": seconds,
            "checksum": checksum}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="DIR")
    parser.add_argument("--model", default="refatomnet_pp_base")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per mode")
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(load_once(args.checkpoint, args.child)))
        return

    from ravar.util.machine import describe_machine

    if not (args.checkpoint / "config.json").is_file():
        make_checkpoint(args.checkpoint, args.model)
    size = (args.checkpoint / "model.safetensors").stat().st_size / 2**30
    print(f"machine: {describe_machine()}")
    print(f"checkpoint: {args.checkpoint} (model.safetensors {size:.2f} GiB)")
    print("| load | parameters | peak RSS: imports (GiB) | after load | after reading all "
          "weights | load time (s) | checksum |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for _ in range(args.repeats):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--checkpoint", str(args.checkpoint), "--child", mode]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"| {mode} | {r['params'] / 1e6:,.0f}M | {r['rss_before_gib']:.2f} | "
                  f"{r['peak_rss_gib']:.2f} | {r['peak_rss_read_gib']:.2f} | "
                  f"{r['seconds']:.1f} | {r['checksum']:.6g} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
