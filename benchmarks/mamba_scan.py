"""Forward+backward time of one Mamba layer per selective-scan backend, as a markdown table.

    .venv/bin/python benchmarks/mamba_scan.py            # [8, 256, 256], d_state 16, expand 2

Rows: `ravar.models.mamba.MambaLayer` with the chunked scan (the CPU default), with `mambapy`'s
parallel scan (pscan) and with the sequential reference scan, and `transformers`' `MambaMixer` on
its CPU fallback (sequential loop, and with `use_mambapy=True`) when `transformers` has it; then
the selective scan alone (chunked and pscan, inputs as RefAtomNet++ initialises A and delta), and
the memory bound of the chunked scan: the [B, L, expand * C, N] state tensors it must read and
write, divided by this machine's bandwidth, measured here with a large tensor copy. Every time is
the median of the timed repetitions; the load average is printed because the numbers move with
whatever else runs. The sequential rows are slow, so they run fewer repetitions (`--seq-reps`).
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ravar.models.chunked_scan import CHUNK_SIZE
from ravar.models.mamba import MambaBlock, MambaLayer, selective_scan
from ravar.util.machine import describe_machine

# Full passes over a [B, L, D, N] state tensor (each a read or a write) that the chunked scan
# makes. Forward: write x; in-chunk scan, read + write; entry-state correction, read + write;
# y = C . h, read (6). Backward: dC, read h; write gy C; in-chunk scan, read + write;
# correction, read + write; g (h - x), read h and g; dB and d(delta u), read g twice (10).
# The decays exp(delta A) live in per-block scratch that stays in cache and is not counted.
CHUNKED_STATE_PASSES = 16


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


def scan_inputs(
    batch: int, length: int, dim: int, d_state: int, expand: int
) -> dict[str, torch.Tensor]:
    """Inputs of the selective scan inside a Mamba layer of width `dim`: u, z [B, L, D], B, C
    [B, L, N] random; A [D, N] and delta [B, L, D] as `MambaBlock` initialises them
    (A = -(1..N), delta = softplus(dt bias + noise) around [1e-3, 1e-1]); D = 1."""
    block = MambaBlock(dim, d_state=d_state, expand=expand)
    d = block.d_inner
    with torch.no_grad():
        return {
            "u": torch.randn(batch, length, d),
            "delta": F.softplus(block.dt_proj.bias + 0.1 * torch.randn(batch, length, d)),
            "A": -torch.exp(block.A_log),
            "B": torch.randn(batch, length, d_state),
            "C": torch.randn(batch, length, d_state),
            "D": block.D.detach().clone(),
            "z": torch.randn(batch, length, d),
        }


def time_scan(backend: str, inputs: dict[str, torch.Tensor], reps: int, warmup: int) -> list[float]:
    """Seconds of forward+backward of `selective_scan` alone (gradients wrt every input)."""
    times = []
    for i in range(warmup + reps):
        leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
        t0 = time.perf_counter()
        y = selective_scan(**leaves, backend=backend)  # [B, L, D]
        y.square().mean().backward()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def copy_bandwidth(mbytes: int = 256, reps: int = 7) -> float:
    """Memory bandwidth in bytes/s: a float32 tensor of `mbytes` MB copied into another (read +
    write), median of `reps` after one warm-up."""
    src = torch.ones(mbytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * src.numel() * 4 / statistics.median(times)


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


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "n/a" where the OS has none."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> None:
    """Run every backend once and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--d-state", type=int, default=16)
    p.add_argument("--d-conv", type=int, default=4)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--reps", type=int, default=5, help="timed repetitions of the fast rows")
    p.add_argument("--seq-reps", type=int, default=1, help="timed repetitions of sequential rows")
    p.add_argument("--skip-sequential", action="store_true", help="only the parallel rows")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    load_before = load_average()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.length, args.dim)  # [B, L, C]
    shape = f"[{args.batch}, {args.length}, {args.dim}]"
    ssm = dict(d_state=args.d_state, d_conv=args.d_conv, expand=args.expand)

    # (name, builder, sequential?)
    rows: list[tuple[str, Callable[[], nn.Module | str], bool]] = [
        (
            f"ravar MambaLayer, chunked (K={CHUNK_SIZE})",
            lambda: MambaLayer(args.dim, **ssm, backend="chunked"),
            False,
        ),
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

    results: list[tuple[str, str, str, str]] = []  # name, median, min, reps
    medians: dict[str, float] = {}
    for name, build, sequential in rows:
        if sequential and args.skip_sequential:
            results.append((name, "skipped (--skip-sequential)", "", ""))
            continue
        module = build()
        if isinstance(module, str):
            results.append((name, module, "", ""))
            continue
        module.train()
        reps = args.seq_reps if sequential else args.reps
        # sequential rows warm up on a short sequence only (a full pass costs seconds)
        if sequential:
            time_fwd_bwd(module, x[:, :8], reps=0, warmup=1)
        times = time_fwd_bwd(module, x, reps=reps, warmup=0 if sequential else 1)
        medians[name] = statistics.median(times)
        results.append((name, f"{medians[name]:.3f}", f"{min(times):.3f}", f"{len(times)}"))
        print(f"  {name}: {medians[name]:.3f} s", flush=True)

    # the selective scan alone, at the layer's inner width expand * dim
    inputs = scan_inputs(args.batch, args.length, args.dim, args.d_state, args.expand)
    scan_medians = {}
    for backend in ("chunked", "pscan"):
        name = f"selective scan alone, {backend}"
        times = time_scan(backend, inputs, reps=args.reps, warmup=1)
        scan_medians[backend] = statistics.median(times)
        results.append((name, f"{scan_medians[backend]:.3f}", f"{min(times):.3f}", f"{len(times)}"))
        print(f"  {name}: {scan_medians[backend]:.3f} s", flush=True)

    bandwidth = copy_bandwidth()  # bytes/s
    state_bytes = inputs["u"].numel() * args.d_state * 4  # one float32 [B, L, D, N] tensor
    moved = CHUNKED_STATE_PASSES * state_bytes
    bound = moved / bandwidth
    results.append(
        (
            f"memory bound of the chunked scan: {CHUNKED_STATE_PASSES} x {state_bytes / 1e6:.1f} MB"
            f" / {bandwidth / 1e9:.1f} GB/s",
            f"{bound:.3f}",
            "",
            "",
        )
    )

    d_inner = args.expand * args.dim
    print()
    print(
        f"Mamba layer forward+backward, input {shape}, d_state {args.d_state}, "
        f"expand {args.expand}, d_conv {args.d_conv}, float32; the scan runs at "
        f"[{args.batch}, {args.length}, {d_inner}] with state [{args.batch}, {args.length}, "
        f"{d_inner}, {args.d_state}]"
    )
    print(f"Machine: {describe_machine()}")
    print(f"Load average (1, 5, 15 min): {load_before} before, {load_average()} after")
    print()
    print("| layer / scan | seconds (median) | min | reps |")
    print("|---|---|---|---|")
    for name, sec, fastest, reps in results:
        print(f"| {name} | {sec} | {fastest} | {reps} |")
    print()
    layer_chunked = medians.get(rows[0][0])
    layer_pscan = medians.get(rows[1][0])
    if layer_chunked and layer_pscan:
        print(f"chunked vs pscan, layer: {layer_pscan / layer_chunked:.2f}x faster")
    print(
        f"chunked vs pscan, scan alone: {scan_medians['pscan'] / scan_medians['chunked']:.2f}x "
        "faster"
    )
    print(
        f"chunked scan vs its memory bound: {scan_medians['chunked'] / bound:.2f}x the bound "
        f"({moved / 1e9:.2f} GB at {bandwidth / 1e9:.1f} GB/s copy bandwidth)"
    )
    print("ravar rows include the LayerNorm and residual; transformers rows are the bare mixer.")


if __name__ == "__main__":
    main()
