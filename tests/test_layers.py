"""The shared layers: multi-head attention, feed-forward, position-embedding resizing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ravar.config import ConfigError
from ravar.models.backbones.visual import FactorisedBlock
from ravar.models.layers import (
    FeedForward,
    MultiHeadAttention,
    merge_heads,
    resize_pos_embed,
    split_heads,
)
from ravar.models.refatomnet import BottleneckBlock, RefAtomNetConfig
from ravar.models.refatomnet_pp import CrossAttentionBlock

# ------------------------------------------------------------ independent numpy reference (float64)


def np_attention(
    x: np.ndarray,
    ctx: np.ndarray,
    w_in: np.ndarray,
    b_in: np.ndarray,
    w_out: np.ndarray,
    b_out: np.ndarray,
    heads: int,
    valid: np.ndarray | None,
) -> np.ndarray:
    """softmax(Q K^T / sqrt(d)) V per head, heads concatenated and projected; x [B, N, C],
    ctx [B, M, C], w_in [3C, C] (q | k | v rows), valid [B, M] (None: all valid)."""
    c = x.shape[-1]
    d = c // heads
    q = x @ w_in[:c].T + b_in[:c]  # [B, N, C]
    k = ctx @ w_in[c : 2 * c].T + b_in[c : 2 * c]  # [B, M, C]
    v = ctx @ w_in[2 * c :].T + b_in[2 * c :]
    out = np.zeros_like(q)
    for b in range(x.shape[0]):
        keys = np.arange(ctx.shape[1]) if valid is None else np.flatnonzero(valid[b])
        if len(keys) == 0:
            keys = np.arange(ctx.shape[1])  # no valid key: all of them
        for h in range(heads):
            s = slice(h * d, (h + 1) * d)
            scores = q[b, :, s] @ k[b, keys, s].T / math.sqrt(d)  # [N, M_valid]
            w = np.exp(scores - scores.max(-1, keepdims=True))
            w /= w.sum(-1, keepdims=True)
            out[b, :, s] = w @ v[b, keys, s]
    return out @ w_out.T + b_out


def np_gelu(x: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))(x)


def weights(att: MultiHeadAttention) -> tuple[np.ndarray, ...]:
    if att.layout == "fused":
        mods = (att.qkv.weight, att.qkv.bias, att.proj.weight, att.proj.bias)
    else:
        mods = (att.in_proj_weight, att.in_proj_bias, att.out_proj.weight, att.out_proj.bias)
    return tuple(t.detach().double().numpy() for t in mods)


# ------------------------------------------------------------------------------------ attention


@pytest.mark.parametrize("layout", ["fused", "torch"])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_equals_softmax_qkt_v_by_hand(layout: str, cross: bool, masked: bool) -> None:
    torch.manual_seed(0)
    att = MultiHeadAttention(16, 4, layout=layout).eval()  # type: ignore[arg-type]
    if layout == "torch":  # its biases start at zero: make them matter
        nn.init.normal_(att.in_proj_bias)
        nn.init.normal_(att.out_proj.bias)
    x = torch.randn(3, 5, 16)
    ctx = torch.randn(3, 4, 16) if cross else x
    valid = None
    if masked:
        n_keys = ctx.shape[1]
        valid = torch.ones(3, n_keys, dtype=torch.bool)
        valid[0, 1:3] = False
        valid[1] = False  # no valid key: attends to all of them
    with torch.no_grad():
        out = att(x, ctx if cross else None, valid)
    ref = np_attention(
        x.double().numpy(),
        ctx.double().numpy(),
        *weights(att),
        heads=4,
        valid=None if valid is None else valid.numpy(),
    )
    assert out.shape == (3, 5, 16)
    np.testing.assert_allclose(out.double().numpy(), ref, atol=1e-5)


def test_attention_equals_scaled_dot_product_attention_with_a_padding_mask() -> None:
    torch.manual_seed(1)
    att = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 6, 8)
    valid = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    q, k, v = (split_heads(t, 2) for t in att.qkv(x).chunk(3, dim=-1))
    bias = torch.zeros(2, 1, 1, 6).masked_fill(~valid[:, None, None, :], float("-inf"))
    ref = att.proj(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))
    assert torch.allclose(att(x, key_mask=valid), ref, atol=1e-6)
    # padded keys change nothing in the output
    x2 = x.clone()
    x2[0, 4:] += 100.0
    assert torch.allclose(att(x2, key_mask=valid)[0, :4], att(x, key_mask=valid)[0, :4], atol=1e-5)


def test_torch_layout_is_nn_multihead_attention_bit_for_bit() -> None:
    """Same seed -> same parameters under the same names; same output and gradients, in training
    with attention dropout too (same random stream)."""
    torch.manual_seed(3)
    ref = nn.MultiheadAttention(16, 4, dropout=0.2, batch_first=True)
    torch.manual_seed(3)
    att = MultiHeadAttention(16, 4, attn_dropout=0.2, layout="torch")
    assert list(att.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(att.state_dict()[key], value), key
    x = torch.randn(2, 5, 16, requires_grad=True)
    ctx = torch.randn(2, 7, 16, requires_grad=True)
    valid = torch.tensor([[True] * 5 + [False] * 2, [True] * 7])
    for train in (False, True):
        ref.train(train)
        att.train(train)
        torch.manual_seed(4)
        want = ref(x, ctx, ctx, key_padding_mask=~valid, need_weights=False)[0]
        torch.manual_seed(4)
        got = att(x, ctx, valid)
        assert torch.equal(got, want)
        g_want = torch.autograd.grad(want.square().sum(), [x, ctx, *ref.parameters()])
        g_got = torch.autograd.grad(got.square().sum(), [x, ctx, *att.parameters()])
        assert all(torch.equal(a, b) for a, b in zip(g_got, g_want, strict=True))


def test_attention_dropout_flags() -> None:
    """out_dropout zeroes (and rescales) output entries; attn_dropout drops attention weights,
    so the output is no longer a mix of the values; neither acts in eval mode."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    out_drop = MultiHeadAttention(8, 2, out_dropout=0.5)
    with torch.no_grad():
        clean = out_drop.eval()(x)
        noisy = out_drop.train()(x)
    dropped = noisy == 0
    assert dropped.any() and not dropped.all()
    assert torch.allclose(noisy[~dropped], 2 * clean[~dropped], atol=1e-6)
    attn_drop = MultiHeadAttention(8, 2, attn_dropout=0.5)
    with torch.no_grad():
        assert torch.equal(attn_drop.eval()(x), attn_drop.eval()(x))
        noisy = attn_drop.train()(x)
    assert not torch.allclose(noisy, attn_drop.eval()(x))
    assert (noisy != 0).all()  # the projection's output is not zeroed


def test_attention_bad_sizes_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="multiple of its heads"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ConfigError, match="layout"):
        MultiHeadAttention(8, 2, layout="sideways")  # type: ignore[arg-type]


def test_split_and_merge_heads_are_inverse_and_channel_blocked() -> None:
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2, 3, 8)
    heads = split_heads(x, 4)  # [2, 4, 3, 2]
    assert heads.shape == (2, 4, 3, 2)
    assert torch.equal(heads[1, 2, 0], x[1, 0, 4:6])  # head 2 reads channels 4, 5
    assert torch.equal(merge_heads(heads), x)


# ---------------------------------------------------------------------------------- feed-forward


@pytest.mark.parametrize("layers", [2, 3])
def test_feed_forward_by_hand(layers: int) -> None:
    torch.manual_seed(0)
    ffn = FeedForward(6, 10, 4, layers=layers, dropout=0.3).eval()
    linears = [m for m in ffn if isinstance(m, nn.Linear)]
    assert [i for i, m in enumerate(ffn) if isinstance(m, nn.Linear)] == list(
        range(0, 3 * layers, 3)
    )
    assert [(m.in_features, m.out_features) for m in linears] == (
        [(6, 10)] + [(10, 10)] * (layers - 2) + [(10, 4)]
    )
    x = torch.randn(3, 6)
    h = x.double().numpy()
    for i, lin in enumerate(linears):
        h = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        if i < layers - 1:
            h = np_gelu(h)
    with torch.no_grad():
        np.testing.assert_allclose(ffn(x).double().numpy(), h, atol=1e-5)
        assert not torch.equal(ffn.train()(x), ffn.eval()(x))  # dropout between the layers


# ------------------------------------------------------------------------- position embeddings


def test_linear_resize_by_hand_and_against_interpolate() -> None:
    pos = torch.tensor([[0.0, 10.0], [2.0, 30.0]])  # [2, C]
    assert resize_pos_embed(pos, 2) is pos
    assert torch.allclose(resize_pos_embed(pos, 3), torch.tensor([[0.0, 10], [1, 20], [2, 30]]))
    pos = torch.randn(5, 3)
    direct = F.interpolate(pos.T[None], size=8, mode="linear", align_corners=True)[0].T
    assert torch.equal(resize_pos_embed(pos, 8), direct)
    assert torch.equal(resize_pos_embed(pos[None], 8), direct[None])  # [1, N, C] kept
    assert torch.allclose(resize_pos_embed(pos, 8)[[0, -1]], pos[[0, -1]])  # ends kept


def test_bicubic_resize_against_interpolate_on_the_grid() -> None:
    torch.manual_seed(0)
    grid = torch.randn(1, 3, 4, 5)  # [1, C, h0, w0]
    pos = grid[0].flatten(1).T.contiguous()  # [h0*w0, C], row-major: row r*w0 + c
    out = resize_pos_embed(pos, (6, 3), (4, 5), "bicubic")  # [18, C]
    direct = F.interpolate(grid, size=(6, 3), mode="bicubic", align_corners=False)[0]
    assert out.shape == (18, 3)
    assert torch.allclose(out, direct.flatten(1).T, atol=1e-6)
    assert torch.allclose(out.view(6, 3, 3)[2, 1], direct[:, 2, 1], atol=1e-6)  # row-major
    assert resize_pos_embed(pos, (4, 5), (4, 5), "bicubic") is pos
    const = torch.full((12, 2), 7.0)
    assert torch.allclose(
        resize_pos_embed(const, (5, 5), (3, 4), "bicubic"), torch.full((25, 2), 7.0)
    )


def test_prefix_and_fixed_tables_refuse_other_sizes_naming_the_setting() -> None:
    pos = torch.randn(4, 3)
    assert torch.equal(resize_pos_embed(pos, 2, mode="prefix", name="clip.num_frames"), pos[:2])
    with pytest.raises(ConfigError, match=r"the input has 6 positions .*clip\.num_frames=4"):
        resize_pos_embed(pos, 6, mode="prefix", name="clip.num_frames")
    assert resize_pos_embed(pos, 4, mode="fixed") is pos
    with pytest.raises(ConfigError, match=r"visual\.tokens_per_frame=4"):
        resize_pos_embed(pos, 2, mode="fixed", name="visual.tokens_per_frame")
    with pytest.raises(ConfigError, match="resize mode"):
        resize_pos_embed(pos, 2, mode="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not hold"):
        resize_pos_embed(pos, (3, 3), (3, 3), "bicubic")


# ----------------------------------------------------------------------------- the models use them


def test_models_build_their_blocks_from_the_shared_layers() -> None:
    block = FactorisedBlock(16, 4, "attention")
    assert isinstance(block.attn_space, MultiHeadAttention)
    assert isinstance(block.attn_time, MultiHeadAttention)
    assert isinstance(block.mlp, FeedForward)
    bottleneck = BottleneckBlock(RefAtomNetConfig(dim=16, heads=4), num_streams=2)
    assert all(isinstance(a, MultiHeadAttention) for a in bottleneck.attn)
    assert all(isinstance(m.mlp.net, FeedForward) for m in bottleneck.mlps)
    cross = CrossAttentionBlock(16, 4, 2.0, 0.0)
    assert isinstance(cross.attn, MultiHeadAttention) and cross.attn.layout == "torch"
    assert isinstance(cross.ffn, FeedForward)
