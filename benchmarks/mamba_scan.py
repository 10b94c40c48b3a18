"""Forward+backward time of one Mamba layer per selective-scan backend, as a markdown table.

    .venv/bin/python benchmarks/mamba_scan.py            # [8, 256, 256], d_state 16, expand 2

Rows: `ravar.models.mamba.MambaLayer` with the sequential reference scan and with `mambapy`'s
parallel scan (pscan), and `transformers`' `MambaMixer` on its CPU fallback (sequential loop, and
with `use_mambapy=True`) when `transformers` has it. The sequential rows are slow, so they run
fewer repetitions (`--seq-reps`). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from ravar.models.mamba import MambaLayer
from ravar.util.machine import describe_machine


def time_fwd_bwd(module: nn.Module, x: torch.Tensor, reps: int, warmup: int) -> list[float]:
    """Seconds of `warmup + reps` forward+backward passes on x [B, L, C]; the timed ones only."""
    times = []
    for i in range(warmup + reps):
        inp = x.detach().requires_grad_(True)
        module.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = module(inp)  # [B, L, C]
        out.float().square().mean().backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def hf_mixer(
    dim: int, d_state: int, d_conv: int, expand: int, use_mambapy: bool
) -> nn.Module | str:
    """`transformers`' MambaMixer with random weights, or why it cannot be built."""
    try:
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer
    except Exception as e:  # not installed, or a version without Mamba
        return f"skipped: transformers MambaMixer not importable ({type(e).__name__})"
    cfg = MambaConfig(
        hidden_size=dim,
        state_size=d_state,
        conv_kernel=d_conv,
        expand=expand,
        num_hidden_layers=1,
        use_mambapy=use_mambapy,
    )
    return MambaMixer(cfg, layer_idx=0)


def main(argv: list[str] | None = None) -> None:
    """Run every backend once and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--d-conv", type=int, default=4)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions of the fast rows")
    p.add_argument("--seq-reps", type=int, default=1, help="timed repetitions of sequential rows")
    p.add_argument("--skip-sequential", action="store_true", help="only the parallel rows")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    x = torch.randn(args.batch, args.length, args.dim)  # [B, L, C]
    shape = f"[{args.batch}, {args.length}, {args.dim}]"
    ssm = dict(d_state=args.d_state, d_conv=args.d_conv, expand=args.expand)

    # (name, builder, sequential?)
    rows: list[tuple[str, Callable[[], nn.Module | str], bool]] = [
        (
            "ravar MambaLayer, pscan (mambapy)",
            lambda: MambaLayer(args.dim, **ssm, backend="pscan"),
            False,
        ),
        (
            "transformers MambaMixer, use_mambapy=True",
            lambda: hf_mixer(args.dim, args.d_state, args.d_conv, args.expand, True),
            False,
        ),
        (
            "ravar MambaLayer, reference (sequential)",
            lambda: MambaLayer(args.dim, **ssm, backend="reference"),
            True,
        ),
        (
            "transformers MambaMixer, CPU fallback (sequential)",
            lambda: hf_mixer(args.dim, args.d_state, args.d_conv, args.expand, False),
            True,
        ),
    ]

    results = []
    for name, build, sequential in rows:
        if sequential and args.skip_sequential:
            results.append((name, "skipped (--skip-sequential)", ""))
            continue
        module = build()
        if isinstance(module, str):
            results.append((name, module, ""))
            continue
        module.train()
        reps = args.seq_reps if sequential else args.reps
        # sequential rows warm up on a short sequence only (a full pass costs seconds)
        if sequential:
            time_fwd_bwd(module, x[:, :8], reps=0, warmup=1)
        times = time_fwd_bwd(module, x, reps=reps, warmup=0 if sequential else 1)
        med = statistics.median(times)
        results.append((name, f"{med:.3f}", f"{len(times)}"))
        print(f"  {name}: {med:.3f} s", flush=True)

    print()
    print(
        f"Mamba layer forward+backward, input {shape}, d_state {args.d_state}, "
        f"expand {args.expand}, d_conv {args.d_conv}, float32"
    )
    print(f"Machine: {describe_machine()}")
    print()
    print("| layer / scan | seconds (median) | reps |")
    print("|---|---|---|")
    for name, sec, reps in results:
        print(f"| {name} | {sec} | {reps} |")
    print()
    print("ravar rows include the LayerNorm and residual; transformers rows are the bare mixer.")


if __name__ == "__main__":
    main()
