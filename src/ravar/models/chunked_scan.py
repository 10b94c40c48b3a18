"""The selective scan's state recurrence computed by chunks of time, with its own backward.

For every batch b, channel d and state n (A is diagonal, so they never mix):

    h_t = a_t h_{t-1} + x_t,    a_t = exp(delta_t A) in (0, 1],    x_t = delta_t B_t u_t,    h_0 = 0
    y_t = sum_n C_t[n] h_t[n]

Time is cut into chunks of K steps (the last one padded with delta = 0, i.e. a = 1 and x = 0, which
carries the state unchanged). For step t of chunk c, which starts at t0:

    h_t   = hl_t + P_t e_c         hl_t: the recurrence run inside the chunk from hl = 0
    P_t   = a_t0 ... a_t = exp(A (delta_t0 + ... + delta_t))      decay since the chunk's start
    e_c+1 = hl_end + P_end e_c     e_c: the state entering chunk c (e_0 = 0; L / K steps)

1. hl: K sequential steps, each one [B, L/K, D, N] op over all chunks at once (a_t is exponentiated
   a few steps at a time into a scratch block, never as a whole [B, L, D, N] tensor);
2. e: the short sequential carry across chunks;
3. h = hl + P e: P in closed form from the cumulative sum of delta inside the chunk.

Every exponent is A times a sum of deltas, which is <= 0 (A < 0, delta > 0): whatever the step sizes
and chunk length, nothing overflows. Why not a closed form inside the chunk:
  * the cumulative-sum form h_t = exp(S_t) sum_s<=t exp(-S_s) x_s (S_t = A sum delta) needs
    exp(-S_s), which overflows float32 once |A| sum delta > 88 inside a chunk; delta = softplus(.)
    is unbounded and |A| grows in training, so no chunk length is safe for every input;
  * the segment-sum form exp(S_t - S_s) masked to s <= t (Mamba-2's SSD) is safe, but in Mamba-1
    the decay differs for every (channel, state) pair, so the [K, K] matrix becomes a
    [B, L/K, K, K, D, N] tensor, K times the state tensor (Mamba-2 shares one [K, K] matrix per
    head and contracts it with a matmul). On a CPU memory traffic is the cost, so the K sequential
    steps inside a chunk are cheaper than either.

Backward. With gy_t = dL/dy_t, the total gradient g_t = dL/dh_t obeys the same recurrence backwards
in time, g_t = a_t+1 g_t+1 + gy_t C_t, computed by the same chunked scan with delta_t+1 in place of
delta_t. Then dL/dx_t = g_t, dL/dC_t = sum_d gy_t h_t, and the gradient of the log-decay
delta_t A is g_t a_t h_t-1 = g_t (h_t - x_t), which feeds delta (times A, summed over n) and A
(times delta, summed over b and t).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Default K. A scan makes K + L/K sequential steps per direction, fewest near sqrt(L): 16 at the
# RefAtomNet++ length 256, where K = 8..64 measured within 20% of each other on one thread, and
# the fewest operations count most when the cores are shared (benchmarks/RESULTS.md).
CHUNK_SIZE = 16
# Elements of a scratch block (16 MB in float32): how many steps get exp(delta A) at once. Smaller
# blocks stay in cache, larger ones mean fewer operations, which counts when other jobs share the
# cores; 2^22 measured best on one thread and close to best on two shared ones (4 steps at 256).
BLOCK_ELEMS = 1 << 22


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on CPU and CUDA: the scan runs in its inputs' (float32 or float64) precision."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _pad_time(t: torch.Tensor, pad: int) -> torch.Tensor:
    """t [B, L, X] with `pad` zero steps appended: [B, L + pad, X], contiguous."""
    return F.pad(t, (0, 0, 0, pad)).contiguous() if pad else t.contiguous()


def _scan_within_chunks_(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, reverse: bool, buf: torch.Tensor
) -> None:
    """In place, x [B, nc, K, D, N] -> hl: h_k = exp(delta_k A) h_k-1 + x_k inside every chunk from
    a zero state (h_k+1 when `reverse`). delta [B, nc, K, D]; buf [B, nc, kb, D, N] scratch."""
    k_len, kb = x.shape[2], buf.shape[2]
    order = list(range(k_len))[::-1] if reverse else list(range(k_len))
    for i in range(0, k_len, kb):
        block = order[i : i + kb]
        lo, hi = min(block), max(block) + 1
        a = buf[:, :, : hi - lo]  # [B, nc, kb, D, N]
        torch.mul(delta[:, :, lo:hi, :, None], A, out=a).exp_()  # a_k = exp(delta_k A)
        for k in block:
            if k == order[0]:
                continue  # first step: h = x
            prev = k + 1 if reverse else k - 1
            x[:, :, k].addcmul_(a[:, :, k - lo], x[:, :, prev])  # [B, nc, D, N]


def _entry_states(
    x: torch.Tensor, cum: torch.Tensor, A: torch.Tensor, reverse: bool
) -> torch.Tensor:
    """The state entering every chunk, e [B, nc, D, N], from the in-chunk scan x [B, nc, K, D, N]
    and the in-chunk cumulative deltas cum [B, nc, K, D] (running the way of the scan)."""
    batch, nc, k_len, d, n = x.shape
    end = 0 if reverse else k_len - 1
    decay = torch.mul(cum[:, :, end, :, None], A).exp_()  # [B, nc, D, N]  P over a whole chunk
    entry = x.new_zeros(batch, nc, d, n)  # e_0 = 0
    for c in range(nc - 2, -1, -1) if reverse else range(1, nc):
        p = c + 1 if reverse else c - 1  # the chunk before c, in scan order
        torch.addcmul(x[:, p, end], decay[:, p], entry[:, p], out=entry[:, c])  # e_c
    return entry


def _add_entry_states_(
    x: torch.Tensor,
    cum: torch.Tensor,
    entry: torch.Tensor,
    A: torch.Tensor,
    reverse: bool,
    lo: int,
    hi: int,
    buf: torch.Tensor,
) -> None:
    """In place, steps lo:hi of every chunk: x += P e, with P = exp(cum A) the decay since the
    chunk's entry (exponent <= 0). x [B, nc, K, D, N], cum [B, nc, K, D], entry [B, nc, D, N]."""
    chunks = slice(0, -1) if reverse else slice(1, None)  # the first chunk in scan order has e = 0
    p = buf[:, chunks, : hi - lo]  # [B, nc-1, hi-lo, D, N]
    torch.mul(cum[:, chunks, lo:hi, :, None], A, out=p).exp_()
    x[:, chunks, lo:hi].addcmul_(p, entry[:, chunks, None])


def _chunked_scan_(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, reverse: bool, buf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Steps 1 and 2 in place on x [B, nc, K, D, N]; returns (cum, entry) for step 3, or None when
    there is one chunk (x is then already the full scan)."""
    _scan_within_chunks_(x, delta, A, reverse, buf)
    if x.shape[1] == 1:
        return None
    # cumulative deltas inside each chunk, in scan order (a reversed cumsum sums the same terms
    # as a forward one, never a difference of two sums)
    cum = delta.flip(2).cumsum(2).flip(2) if reverse else delta.cumsum(2)  # [B, nc, K, D]
    return cum, _entry_states(x, cum, A, reverse)


def _block_len(x_shape: tuple[int, ...], k_len: int) -> int:
    """Steps per scratch block: about BLOCK_ELEMS elements, at least 1, at most K."""
    batch, nc, _, d, n = x_shape
    return max(1, min(k_len, BLOCK_ELEMS // (batch * nc * d * n)))


class ChunkedScan(torch.autograd.Function):
    """y [B, L, D] = C_t . h_t of the recurrence in the module docstring, with a hand-written
    backward (one [B, L, D, N] state tensor saved, one more allocated by the backward)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        chunk_size: int,
    ) -> torch.Tensor:
        """u, delta [B, L, D]; A [D, N]; B, C [B, L, N] -> y [B, L, D]."""
        with _no_autocast(u.device):
            batch, length, d = u.shape
            n = A.shape[1]
            k_len = min(chunk_size, length)
            nc = -(-length // k_len)
            pad = nc * k_len - length
            u, delta, B, C = (_pad_time(t, pad) for t in (u, delta, B, C))  # [B, Lp, *]
            A = A.contiguous()
            du = delta * u  # [B, Lp, D]
            # h starts as x_t = delta_t u_t B_t, chunked: [B, nc, K, D, N]
            h = torch.mul(du.view(batch, nc, k_len, d, 1), B.view(batch, nc, k_len, 1, n))
            buf = h.new_empty(batch, nc, _block_len(h.shape, k_len), d, n)
            carry = _chunked_scan_(h, delta.view(batch, nc, k_len, d), A, False, buf)
            if carry is not None:
                for lo in range(0, k_len, buf.shape[2]):
                    hi = min(k_len, lo + buf.shape[2])
                    _add_entry_states_(h, *carry, A, False, lo, hi, buf)
            # y_t = C_t . h_t as [1, N] @ [N, D] per step
            y = torch.bmm(C.view(-1, 1, n), h.view(-1, d, n).transpose(1, 2))  # [B*Lp, 1, D]
        ctx.save_for_backward(u, delta, A, B, C, h)
        ctx.length = length
        return y.view(batch, nc * k_len, d)[:, :length]

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, gy: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """gy [B, L, D] -> gradients of u, delta, A, B, C (None for chunk_size)."""
        u, delta, A, B, C, h = ctx.saved_tensors
        need_u, need_delta, need_a, need_b, need_c, _ = ctx.needs_input_grad
        batch, nc, k_len, d, n = h.shape
        length, padded = ctx.length, nc * k_len
        with _no_autocast(gy.device):
            gy = _pad_time(gy.to(h.dtype), padded - length)  # [B, Lp, D]
            dC = None
            if need_c:  # dC_t = gy_t^T h_t: [1, D] @ [D, N] per step
                dC = torch.bmm(gy.view(-1, 1, d), h.view(-1, d, n)).view(batch, padded, n)
            if not (need_u or need_delta or need_a or need_b):
                return None, None, None, None, _trim(dC, length), None
            # g_t = dL/dh_t: starts as gy_t C_t, then g_t += a_t+1 g_t+1
            g = torch.mul(gy.view(batch, nc, k_len, d, 1), C.view(batch, nc, k_len, 1, n))
            dnext = _pad_time(delta[:, 1:], 1).view(batch, nc, k_len, d)  # delta_t+1
            buf = h.new_empty(batch, nc, _block_len(h.shape, k_len), d, n)
            carry = _chunked_scan_(g, dnext, A, True, buf)
            du = delta * u  # [B, Lp, D]
            need_log = need_delta or need_a  # gradient of the log-decay delta_t A needed
            acc_a = torch.zeros_like(buf) if need_a else None  # [B, nc, kb, D, N]
            dlog = h.new_empty(batch, nc, k_len, d) if need_delta else None  # [B, nc, K, D]
            for lo in range(0, k_len, buf.shape[2]):
                hi = min(k_len, lo + buf.shape[2])
                if carry is not None:  # g of these steps becomes final
                    _add_entry_states_(g, *carry, A, True, lo, hi, buf)
                if not need_log:
                    continue
                t = buf[:, :, : hi - lo]  # [B, nc, hi-lo, D, N]
                dv = du.view(batch, nc, k_len, d, 1)[:, :, lo:hi]
                torch.mul(dv, B.view(batch, nc, k_len, 1, n)[:, :, lo:hi], out=t)  # x_t
                torch.sub(h[:, :, lo:hi], t, out=t).mul_(g[:, :, lo:hi])  # g_t a_t h_t-1
                if acc_a is not None:  # dA += g_t a_t h_t-1 delta_t
                    step = delta.view(batch, nc, k_len, d, 1)[:, :, lo:hi]
                    acc_a[:, :, : hi - lo].addcmul_(t, step)
                if dlog is not None:  # ddelta_t += sum_n g_t a_t h_t-1 A
                    torch.sum(t.mul_(A), -1, out=dlog[:, :, lo:hi])
            gf = g.view(-1, d, n)  # [B*Lp, D, N]
            dB = None
            if need_b:  # dB_t = (delta_t u_t)^T g_t
                dB = torch.bmm(du.view(-1, 1, d), gf).view(batch, padded, n)
            ddu = None
            if need_u or need_delta:  # dL/d(delta_t u_t) = g_t B_t, summed over n
                ddu = torch.bmm(B.view(-1, 1, n), gf.transpose(1, 2)).view(batch, padded, d)
            grad_u = ddu * delta if need_u else None
            grad_delta = None
            if ddu is not None and dlog is not None:
                grad_delta = ddu * u + dlog.view(batch, padded, d)
            grad_a = None if acc_a is None else acc_a.sum((0, 1, 2))  # [D, N]
        return (
            _trim(grad_u, length),
            _trim(grad_delta, length),
            grad_a,
            _trim(dB, length),
            _trim(dC, length),
            None,
        )


def _trim(t: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """t [B, Lp, X] cut back to the first `length` steps (None stays None)."""
    return None if t is None else t[:, :length]


def chunked_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = CHUNK_SIZE,
) -> torch.Tensor:
    """y [B, L, D] with y_t = C_t . h_t (no skip, no gate); all inputs in one float dtype.

    Shapes: u, delta [B, L, D]; A [D, N]; B, C [B, L, N]; chunk_size >= 1.
    """
    return ChunkedScan.apply(u, delta, A, B, C, chunk_size)
