"""Tests of the selective scan backends and the Mamba layers (`ravar.models.mamba`)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ravar.config import ConfigError
from ravar.models import mamba
from ravar.models.mamba import (
    MambaBlock,
    MambaLayer,
    cuda_scan_available,
    resolve_backend,
    selective_scan,
    selective_scan_reference,
)


def scan_inputs(
    b: int = 2, length: int = 13, d: int = 6, n: int = 4, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Random scan inputs with the shapes and signs a Mamba block produces."""
    g = torch.Generator().manual_seed(length * 100 + d)
    return {
        "u": torch.randn(b, length, d, generator=g, dtype=dtype),
        "delta": 0.05 + 0.5 * torch.rand(b, length, d, generator=g, dtype=dtype),  # > 0
        "A": -(0.1 + 2.0 * torch.rand(d, n, generator=g, dtype=dtype)),  # < 0
        "B": torch.randn(b, length, n, generator=g, dtype=dtype),
        "C": torch.randn(b, length, n, generator=g, dtype=dtype),
        "D": torch.randn(d, generator=g, dtype=dtype),
        "z": torch.randn(b, length, d, generator=g, dtype=dtype),
    }


def scan_as_matrix(u, delta, A, B, C, D, z):
    """The scan unrolled into its (lower-triangular) convolution form, an independent check:
    y_t = sum_{s<=t} sum_n C_t[n] exp(A[:, n] sum_{r=s+1..t} delta_r) delta_s B_s[n] u_s + D u_t."""
    length = u.shape[1]
    cum = delta.cumsum(dim=1)  # [B, L, D]
    seg = cum[:, :, None, :] - cum[:, None, :, :]  # [B, t, s, D]  sum_{r=s+1..t} delta_r
    causal = torch.ones(length, length, dtype=torch.bool).tril()  # [t, s]  s <= t
    seg = seg.masked_fill(~causal[None, :, :, None], 0.0)
    decay = torch.exp(seg[..., None] * A) * causal[None, :, :, None, None]  # [B, t, s, D, N]
    y = torch.einsum("btn,btsdn,bsd,bsn,bsd->btd", C, decay, delta, B, u) + u * D
    return y * F.silu(z)


# --------------------------------------------------------------------------- reference scan


def test_reference_hand_computed() -> None:
    # one channel, one state: A_bar = exp(1 * -ln 2) = 1/2, B = C = 1
    u = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)
    delta = torch.ones(1, 3, 1)
    A = torch.tensor([[-math.log(2.0)]])
    B = torch.ones(1, 3, 1)
    C = torch.ones(1, 3, 1)
    D = torch.tensor([0.1])
    # h = 1, 0.5 * 1 + 2 = 2.5, 0.5 * 2.5 + 3 = 4.25; y = h + 0.1 u
    y = selective_scan_reference(u, delta, A, B, C, D)
    torch.testing.assert_close(y.view(-1), torch.tensor([1.1, 2.7, 4.55]))
    # gate: silu(1) = 1 / (1 + e^-1) = 0.7310586, silu(0) = 0
    z = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1)
    y = selective_scan_reference(u, delta, A, B, C, D, z=z)
    s = 0.7310586
    torch.testing.assert_close(y.view(-1), torch.tensor([1.1 * s, 0.0, 4.55 * s]))


def test_reference_matches_matrix_form() -> None:
    x = scan_inputs(length=9, dtype=torch.float64)
    y = selective_scan_reference(**x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, scan_as_matrix(**x), atol=1e-10, rtol=1e-10)


# --------------------------------------------------------------------------- pscan backend


@pytest.mark.parametrize("length", [1, 3, 13, 37])
def test_pscan_matches_reference_forward_and_gradients(length: int) -> None:
    x = scan_inputs(length=length)
    g_out = torch.randn(2, length, 6, generator=torch.Generator().manual_seed(1))
    grads = {}
    outs = {}
    for backend in ("reference", "pscan"):
        leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
        y = selective_scan(**leaves, backend=backend)
        (y * g_out).sum().backward()
        outs[backend] = y.detach()
        grads[backend] = {k: v.grad for k, v in leaves.items()}
    torch.testing.assert_close(outs["pscan"], outs["reference"], atol=1e-4, rtol=1e-4)
    for name in ("u", "delta", "A", "B", "C", "D", "z"):
        ref = grads["reference"][name]
        if not (name == "A" and length == 1):  # h_0 = 0: A has no effect on one step
            assert ref.abs().sum() > 0, name
        torch.testing.assert_close(grads["pscan"][name], ref, atol=1e-4, rtol=1e-4, msg=name)


def test_pscan_without_gate_and_in_float64() -> None:
    x = scan_inputs(length=21, dtype=torch.float64)
    x.pop("z")
    y = selective_scan(**x, backend="pscan")
    x["z"] = torch.full_like(x["u"], 50.0)  # silu(50) = 50 (to double precision): gate is x50
    torch.testing.assert_close(50.0 * y, scan_as_matrix(**x), atol=1e-9, rtol=1e-9)


def test_auto_backend_is_never_the_sequential_scan_on_cpu() -> None:
    assert resolve_backend("auto", torch.device("cpu")) == "pscan"
    assert resolve_backend("reference", torch.device("cpu")) == "reference"


def test_bad_backend_and_shapes_raise() -> None:
    x = scan_inputs()
    with pytest.raises(ConfigError, match=r"backend.*'fast'"):
        selective_scan(**x, backend="fast")
    with pytest.raises(ConfigError, match=r"backend.*'sequential'"):
        MambaLayer(8, backend="sequential")
    x["B"] = x["B"][:, :, :3]  # N = 3 against A's N = 4
    with pytest.raises(ValueError, match=r"\bB must have shape \(2, 13, 4\)"):
        selective_scan(**x, backend="pscan")


# --------------------------------------------------------------------------- cuda backend


def test_cuda_backend_on_cpu_raises_clearly() -> None:
    # without mamba_ssm the error names the package; with it, it names the CPU tensors
    with pytest.raises(ConfigError, match=r"backend='cuda' needs (the mamba_ssm|CUDA tensors)"):
        selective_scan(**scan_inputs(), backend="cuda")


def test_cuda_backend_without_mamba_ssm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mamba, "_cuda_scan_fn", lambda: None)
    assert not cuda_scan_available()
    assert resolve_backend("auto", torch.device("cuda")) == "pscan"
    with pytest.raises(ConfigError, match="mamba_ssm"):
        MambaBlock(8, backend="cuda")


def test_cuda_backend_passes_the_kernel_its_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for mamba_ssm's kernel that only accepts its channels-first layout."""
    b, length, d, n = 2, 7, 6, 4

    def fake_kernel(u, delta, A, B, C, D=None, z=None):
        assert u.shape == delta.shape == z.shape == (b, d, length)
        assert B.shape == C.shape == (b, n, length)
        assert A.shape == (d, n) and D.shape == (d,)
        assert A.dtype == D.dtype == torch.float32
        y = selective_scan_reference(
            u.mT, delta.mT, A, B.mT, C.mT, D, z=z.mT
        )  # back to [B, L, X] for the check
        return y.mT  # [B, D, L]

    monkeypatch.setattr(mamba, "_cuda_scan_fn", lambda: fake_kernel)
    assert resolve_backend("auto", torch.device("cuda")) == "cuda"
    assert resolve_backend("auto", torch.device("cpu")) == "pscan"
    x = scan_inputs(b=b, length=length, d=d, n=n)
    torch.testing.assert_close(mamba._scan_cuda(**x), selective_scan_reference(**x))


@pytest.mark.skipif(
    not (cuda_scan_available() and torch.cuda.is_available()), reason="needs mamba_ssm and CUDA"
)
def test_cuda_backend_matches_reference() -> None:
    x = {k: v.cuda() for k, v in scan_inputs(length=37).items()}
    torch.testing.assert_close(
        selective_scan(**x, backend="cuda"), selective_scan_reference(**x), atol=1e-4, rtol=1e-4
    )


# --------------------------------------------------------------------------- block and layer


def test_block_initialisation() -> None:
    torch.manual_seed(0)
    block = MambaBlock(32, d_state=8, expand=2)
    assert block.d_inner == 64 and block.dt_rank == 2  # ceil(32 / 16)
    expected = torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(64, -1)
    torch.testing.assert_close(block.A_log.detach(), expected)
    torch.testing.assert_close(block.D.detach(), torch.ones(64))
    dt0 = F.softplus(block.dt_proj.bias.detach())  # the step size with a zero dt input
    assert dt0.min() >= 1e-3 * (1 - 1e-5) and dt0.max() <= 1e-1 * (1 + 1e-5)
    assert dt0.max() / dt0.min() > 5  # spread over the range, not a constant


def test_layer_shape_and_backends_agree() -> None:
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=4)
    x = torch.randn(3, 11, 16)
    outs, grads = {}, {}
    for backend in ("reference", "pscan"):
        layer.mixer.backend = backend
        layer.zero_grad()
        y = layer(x)
        y.square().mean().backward()
        outs[backend] = y.detach()
        grads[backend] = {k: p.grad.clone() for k, p in layer.named_parameters()}
    assert outs["pscan"].shape == (3, 11, 16)
    torch.testing.assert_close(outs["pscan"], outs["reference"], atol=1e-5, rtol=1e-4)
    for name, g in grads["reference"].items():
        assert g.abs().sum() > 0, name
        torch.testing.assert_close(grads["pscan"][name], g, atol=1e-5, rtol=1e-4, msg=name)


def perturbed(x: torch.Tensor, positions: slice) -> torch.Tensor:
    y = x.clone()
    y[:, positions] = torch.randn_like(y[:, positions])
    return y


def test_layer_is_causal() -> None:
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=4).eval()
    x = torch.randn(2, 12, 16)
    t = 5
    with torch.no_grad():
        y, y2 = layer(x), layer(perturbed(x, slice(t + 1, None)))
    torch.testing.assert_close(y2[:, : t + 1], y[:, : t + 1], atol=1e-6, rtol=0)
    assert (y2[:, t + 1 :] - y[:, t + 1 :]).abs().max() > 1e-3


def test_bidirectional_layer_sees_both_directions() -> None:
    torch.manual_seed(0)
    layer = MambaLayer(16, d_state=4, bidirectional=True).eval()
    x = torch.randn(2, 12, 16)
    t = 5
    with torch.no_grad():
        y = layer(x)
        later_changed = layer(perturbed(x, slice(t + 1, None)))
        earlier_changed = layer(perturbed(x, slice(0, t)))
    assert (later_changed[:, : t + 1] - y[:, : t + 1]).abs().max() > 1e-3  # sees the future
    assert (earlier_changed[:, t:] - y[:, t:]).abs().max() > 1e-3  # sees the past
    # with the left-to-right half silenced, what is left is anti-causal: output t only sees >= t
    with torch.no_grad():
        layer.mixer.out_proj.weight.zero_()
        y = layer(x)
        y2 = layer(perturbed(x, slice(0, t)))
    torch.testing.assert_close(y2[:, t:], y[:, t:], atol=1e-6, rtol=0)
    assert (y2[:, :t] - y[:, :t]).abs().max() > 1e-3


def test_block_learns_a_delayed_copy() -> None:
    """y_t = x_{t-6}: a delay past the 4-tap conv, so the state must carry the signal."""
    torch.manual_seed(0)
    delay, length, dim = 6, 16, 16
    x = torch.randn(8, length, 1)  # [B, L, 1]
    target = F.pad(x, (0, 0, delay, 0))[:, :length]  # [B, L, 1]  zeros, then x shifted
    model = nn.Sequential(nn.Linear(1, dim), MambaLayer(dim, d_state=16), nn.Linear(dim, 1))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    # well below what predicting zeros scores, so it recalls the delayed values themselves
    assert losses[-1] < 0.4 * target.square().mean().item(), losses[::10]
