"""Mamba (selective state-space) layers that run on a CPU, for RefAtomNet++.

The selective scan (Gu & Dao 2023, "Mamba", Algorithm 2) with per-channel state size N:

    A_bar_t = exp(delta_t * A)                  # [D, N]  zero-order-hold discretisation of A
    B_bar_t u_t = delta_t * B_t * u_t           # [D, N]  simplified (Euler) discretisation of B
    h_t = A_bar_t * h_{t-1} + B_bar_t u_t       # h_0 = 0 (elementwise: A is diagonal)
    y_t = C_t . h_t + D * u_t                   # contract over N
    y_t = y_t * silu(z_t)                       # optional gate

Backends of `selective_scan`:
    "reference": the plain sequential loop above (slow; the ground truth in the tests);
    "pscan":     the parallel (Blelloch) scan of `mambapy.pscan`, O(log L) sequential steps;
    "chunked":   chunks of K steps scanned all at once, then a short carry of the state across
                 chunks, with a hand-written backward (`ravar.models.chunked_scan`); the fastest
                 on a CPU (benchmarks/RESULTS.md);
    "cuda":      `mamba_ssm`'s fused kernel (optional; CUDA tensors only);
    "auto":      "cuda" when `mamba_ssm` imports and the tensors are on a GPU, "chunked" on a CPU,
                 else "pscan".
The sequential path is never chosen by "auto".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ravar.config import ConfigError
from ravar.models.chunked_scan import CHUNK_SIZE, chunked_scan

Backend = Literal["auto", "reference", "pscan", "chunked", "cuda"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "pscan", "chunked", "cuda")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half precisions (the scan's products underflow otherwise); float64 stays."""
    return torch.promote_types(dtype, torch.float32)


def _check_shapes(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None,
) -> None:
    """ValueError naming the first argument whose shape does not fit u [B, L, D]."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be [B, L, D], got shape {tuple(u.shape)}")
    b, length, d = u.shape
    n = A.shape[-1] if A.dim() == 2 else -1
    expected = {
        "delta": (delta, (b, length, d)),
        "A": (A, (d, n)),
        "B": (B, (b, length, n)),
        "C": (C, (b, length, n)),
        "D": (D, (d,)),
    }
    if z is not None:
        expected["z"] = (z, (b, length, d))
    for name, (t, shape) in expected.items():
        if tuple(t.shape) != shape:
            raise ValueError(
                f"selective_scan: {name} must have shape {shape} for u of shape "
                f"{tuple(u.shape)} and A of shape {tuple(A.shape)}, got {tuple(t.shape)}"
            )


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
) -> torch.Tensor:
    """The selective scan as a plain loop over time: y [B, L, D].

    Shapes: u, delta, z [B, L, D]; A [D, N]; B, C [B, L, N]; D [D].
    """
    _check_shapes(u, delta, A, B, C, D, z)
    out_dtype = u.dtype
    dt = _compute_dtype(u.dtype)
    u, delta, A, B, C, D = (t.to(dt) for t in (u, delta, A, B, C, D))
    batch, length, d = u.shape
    n = A.shape[1]

    h = u.new_zeros(batch, d, n)  # [B, D, N]  h_0 = 0
    ys = []
    for t in range(length):
        delta_t = delta[:, t, :, None]  # [B, D, 1]
        a_bar = torch.exp(delta_t * A)  # [B, D, N]  A_bar_t = exp(delta_t A)
        bu = delta_t * B[:, t, None, :] * u[:, t, :, None]  # [B, D, N]  delta_t B_t u_t
        h = a_bar * h + bu  # [B, D, N]  h_t = A_bar_t h_{t-1} + B_bar_t u_t
        ys.append((h * C[:, t, None, :]).sum(-1))  # [B, D]  C_t . h_t
    y = torch.stack(ys, dim=1) + u * D  # [B, L, D]  + D u_t (skip)
    if z is not None:
        y = y * F.silu(z.to(dt))  # [B, L, D]  gate
    return y.to(out_dtype)


def _scan_pscan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None,
) -> torch.Tensor:
    """The selective scan through `mambapy.pscan` (parallel over time): y [B, L, D]."""
    from mambapy.pscan import pscan  # [B, L, D, N] x2; pads L to a power of two itself

    out_dtype = u.dtype
    dt = _compute_dtype(u.dtype)
    u, delta, A, B, C, D = (t.to(dt) for t in (u, delta, A, B, C, D))
    a_bar = torch.exp(delta[..., None] * A)  # [B, L, D, N]  exp(delta_t A)
    bu = delta[..., None] * B[:, :, None, :] * u[..., None]  # [B, L, D, N]  delta_t B_t u_t
    # pscan solves h_t = a_bar_t * h_{t-1} + bu_t with h_0 = 0 for every t at once; it writes
    # into (padded) copies of its inputs, so they must be plain contiguous tensors.
    hs = pscan(a_bar.contiguous(), bu.contiguous())  # [B, L, D, N]
    y = (hs @ C[..., None]).squeeze(-1) + u * D  # [B, L, D]  C_t . h_t + D u_t
    if z is not None:
        y = y * F.silu(z.to(dt))  # [B, L, D]
    return y.to(out_dtype)


def _check_chunk_size(chunk_size: int) -> None:
    """ConfigError unless `chunk_size` is an integer >= 1."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size: must be an integer >= 1, got {chunk_size!r}")


def _scan_chunked(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None,
    chunk_size: int = CHUNK_SIZE,
) -> torch.Tensor:
    """The selective scan by chunks of `chunk_size` steps: y [B, L, D].

    Within a chunk starting at t0, h_t = hl_t + exp(A (delta_t0 + ... + delta_t)) h_t0-1, where hl
    is the recurrence run inside the chunk from a zero state (K steps, every chunk at once) and
    h_t0-1 is carried across chunks sequentially (L / K steps). Every exponent is <= 0, so it
    stays finite for any step size; `ravar.models.chunked_scan` has the derivation, the backward
    and why this beats a closed form inside the chunk.
    """
    _check_chunk_size(chunk_size)
    out_dtype = u.dtype
    dt = _compute_dtype(u.dtype)
    u, delta, A, B, C, D = (t.to(dt) for t in (u, delta, A, B, C, D))
    y = chunked_scan(u, delta, A, B, C, chunk_size)  # [B, L, D]  C_t . h_t
    y = y + u * D  # [B, L, D]  + D u_t
    if z is not None:
        y = y * F.silu(z.to(dt))  # [B, L, D]  gate
    return y.to(out_dtype)


@functools.lru_cache(maxsize=1)
def _cuda_scan_fn() -> Callable | None:
    """`mamba_ssm`'s `selective_scan_fn`, or None when `mamba_ssm` does not import."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA build raising anything else on import
        return None
    return selective_scan_fn


def cuda_scan_available() -> bool:
    """Whether the `mamba_ssm` CUDA kernel can be imported (tensors must still be on a GPU)."""
    return _cuda_scan_fn() is not None


def _scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None,
) -> torch.Tensor:
    """The selective scan through `mamba_ssm`'s kernel, which wants channels before time:
    u, delta, z [B, D, L]; B, C [B, N, L]; A [D, N] and D [D] in float32. Returns y [B, L, D]."""
    fn = _cuda_scan_fn()
    if fn is None:
        raise ConfigError("backend='cuda': the mamba_ssm package is not importable")

    def channels_first(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).contiguous()  # [B, L, X] -> [B, X, L]

    y = fn(
        channels_first(u),  # [B, D, L]
        channels_first(delta),  # [B, D, L]
        A.float().contiguous(),  # [D, N]
        channels_first(B),  # [B, N, L]
        channels_first(C),  # [B, N, L]
        D.float().contiguous(),  # [D]
        z=None if z is None else channels_first(z),  # [B, D, L]
    )  # [B, D, L]
    return y.transpose(1, 2).to(u.dtype)  # [B, L, D]


def check_backend(backend: str) -> None:
    """ConfigError unless `backend` is a known name that can run here ("cuda" needs mamba_ssm)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: must be one of {BACKENDS}, got {backend!r}")
    if backend == "cuda" and not cuda_scan_available():
        raise ConfigError(
            "backend='cuda' needs the mamba_ssm package (CUDA only, not installed here); "
            "use backend='chunked' (or 'auto') on a CPU"
        )


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend ("reference" | "pscan" | "chunked" | "cuda") that `backend` means for
    tensors on `device`; ConfigError for an unknown name or for "cuda" that cannot run."""
    check_backend(backend)
    kind = torch.device(device).type
    on_gpu = kind == "cuda"
    if backend == "auto":
        if on_gpu and cuda_scan_available():
            return "cuda"
        # "chunked" is measured fastest on a CPU; elsewhere (a GPU without mamba_ssm) it has not
        # been measured against pscan, which does O(log L) large steps instead of ~2 sqrt(L).
        return "chunked" if kind == "cpu" else "pscan"
    if backend == "cuda" and not on_gpu:
        raise ConfigError(
            f"backend='cuda' needs CUDA tensors, got tensors on {torch.device(device).type}; "
            "use backend='chunked' (or 'auto') on a CPU"
        )
    return backend


_SCANS: dict[str, Callable[..., torch.Tensor]] = {
    "reference": selective_scan_reference,
    "pscan": _scan_pscan,
    "chunked": _scan_chunked,
    "cuda": _scan_cuda,
}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor | None = None,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The selective scan y [B, L, D] computed by `backend` (see the module docstring).

    Shapes: u, delta, z [B, L, D]; A [D, N]; B, C [B, L, N]; D [D]. `chunk_size` (steps per
    chunk, default CHUNK_SIZE) is used by the "chunked" backend, also when "auto" picks it.
    """
    _check_shapes(u, delta, A, B, C, D, z)
    if chunk_size is not None:
        _check_chunk_size(chunk_size)
    name = resolve_backend(backend, u.device)
    if name == "chunked" and chunk_size is not None:
        return _scan_chunked(u, delta, A, B, C, D, z, chunk_size)
    return _SCANS[name](u, delta, A, B, C, D, z)


class MambaBlock(nn.Module):
    """The Mamba mixer: [B, L, C] -> [B, L, C].

    in_proj -> (x, z); x -> causal depthwise conv1d -> SiLU -> x_proj -> (dt, B, C);
    delta = softplus(dt_proj(dt)); y = selective_scan(x, delta, A = -exp(A_log), B, C, D, z)
    -> out_proj. Causal unless `bidirectional`, which adds a second, independent block run over
    the reversed sequence (outputs summed), so every position sees the whole sequence.
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        backend: str = "auto",
        bidirectional: bool = False,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("d_state", d_state), ("d_conv", d_conv)):
            if value < 1:
                raise ConfigError(f"{name}: must be >= 1, got {value}")
        if expand < 1:
            raise ConfigError(f"expand: must be >= 1, got {expand}")
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"dt_min, dt_max: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        check_backend(backend)
        self.backend = backend
        self.d_state = d_state
        self.d_inner = expand * dim
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(dim / 16)

        self.in_proj = nn.Linear(dim, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,  # depthwise: one short filter per channel
            padding=d_conv - 1,  # left context; the right overhang is cut off in forward
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # A = -exp(A_log) < 0 keeps A_bar = exp(delta A) in (0, 1): the recurrence is stable.
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))  # [D, N]
        self.D = nn.Parameter(torch.empty(self.d_inner))  # [D]
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_proj = nn.Linear(self.d_inner, dim, bias=False)
        self._init_ssm(dt_min, dt_max, dt_init_floor)

        self.reverse: MambaBlock | None = None
        if bidirectional:
            self.reverse = MambaBlock(
                dim, d_state, d_conv, expand, backend, False, dt_rank, dt_min, dt_max, dt_init_floor
            )

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        """Standard Mamba initialisation of A_log, D and dt_proj."""
        # S4D-real: A[:, n] = -(n + 1), i.e. A_log = log(1..N) in every channel.
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32)  # [N]
        self.A_log.copy_(torch.log(n).expand(self.d_inner, -1))
        self.D.fill_(1.0)
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        # delta = softplus(dt_proj(.)) starts log-uniform in [dt_min, dt_max]: the bias is the
        # inverse softplus of such a dt, softplus^-1(y) = y + log(1 - exp(-y)).
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=dt_init_floor)  # [D]
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _mix(self, x: torch.Tensor, backend: str) -> torch.Tensor:
        """One causal direction: x [B, L, C] -> [B, L, C]."""
        length = x.shape[1]
        xz = self.in_proj(x)  # [B, L, 2D]
        xs, z = xz.chunk(2, dim=-1)  # [B, L, D] each
        # causal depthwise conv over time: output t sees inputs t-d_conv+1 .. t
        xs = self.conv1d(xs.transpose(1, 2))[..., :length].transpose(1, 2)  # [B, L, D]
        xs = F.silu(xs)  # [B, L, D]
        dt, b, c = self.x_proj(xs).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))  # [B, L, D]  delta > 0
        a = -torch.exp(self.A_log.float())  # [D, N]
        y = selective_scan(xs, delta, a, b, c, self.D, z=z, backend=backend)  # [B, L, D]
        return self.out_proj(y)  # [B, L, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, C] -> [B, L, C]."""
        y = self._mix(x, self.backend)  # [B, L, C]
        if self.reverse is not None:  # right-to-left pass, same backend as this block
            y = y + self.reverse._mix(x.flip(1), self.backend).flip(1)  # [B, L, C]
        return y


class MambaLayer(nn.Module):
    """Pre-norm residual Mamba layer: x + MambaBlock(LayerNorm(x)); [B, L, C] -> [B, L, C]."""

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        backend: str = "auto",
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = MambaBlock(dim, d_state, d_conv, expand, backend, bidirectional)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, C] -> [B, L, C]."""
        return x + self.mixer(self.norm(x))
