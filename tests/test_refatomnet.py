"""RefAtomNet: 1D agent attention, cross-stream fusion (CAAF / CATF), the model, its ablations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ravar.models.agent_attention import (
    AgentAttention,
    AgentState,
    cross_stream_attend,
    fuse_agents,
    fuse_maps,
    masked_softmax,
)

# ------------------------------------------------------------ independent numpy reference (float64)


def np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_gelu(x: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda v: 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))(x)


class NpAgentAttention:
    """The weights of an `AgentAttention` as numpy arrays, and the attention written out per head
    and per token for ONE sample."""

    def __init__(self, att: AgentAttention) -> None:
        w = {k: v.detach().double().numpy() for k, v in att.state_dict().items()}
        self.heads = att.heads
        self.wq, self.wk, self.wv = np.split(w["qkv.weight"], 3)
        self.bq, self.bk, self.bv = np.split(w["qkv.bias"], 3)
        self.w1, self.b1 = w["agent_tokens.w1"], w["agent_tokens.b1"]  # [h, d, r], [h, 1, r]
        self.w2, self.b2 = w["agent_tokens.w2"], w["agent_tokens.b2"]  # [h, r, n_a], [h, 1, n_a]
        self.pw, self.pb = w["proj.weight"], w["proj.bias"]

    def qkv(self, x: np.ndarray) -> tuple[list[np.ndarray], ...]:
        """[N, C] -> per-head lists of [N, d] queries, keys, values."""
        split = lambda y: np.split(y, self.heads, axis=1)  # noqa: E731
        return (
            split(x @ self.wq.T + self.bq),
            split(x @ self.wk.T + self.bk),
            split(x @ self.wv.T + self.bv),
        )

    def agents(self, q: np.ndarray, head: int, valid: np.ndarray) -> np.ndarray:
        """[N, d] queries of one head -> [n_a, d] agents (MLP scores, softmax over valid tokens)."""
        scores = np.stack(
            [
                np_gelu(q[i] @ self.w1[head] + self.b1[head, 0]) @ self.w2[head] + self.b2[head, 0]
                for i in range(q.shape[0])
            ]
        )  # [N, n_a]
        weights = np_softmax(np.where(valid[:, None], scores, -np.inf), axis=0)
        return weights.T @ q

    def output(self, per_head: list[np.ndarray], valid: np.ndarray) -> np.ndarray:
        merged = np.concatenate(per_head, axis=1)  # [N, C]
        return (merged @ self.pw.T + self.pb) * valid[:, None]

    def __call__(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """softmax(s Q A^T) softmax(s A K^T) V for every head, merged and projected."""
        qs, ks, vs = self.qkv(x)
        outs = []
        for i in range(self.heads):
            q, k, v = qs[i], ks[i], vs[i]
            a = self.agents(q, i, valid)
            s = 1.0 / math.sqrt(q.shape[1])
            agg = np_softmax(np.where(valid[None, :], s * a @ k.T, -np.inf), axis=1)  # [n_a, N]
            outs.append(np_softmax(s * q @ a.T, axis=1) @ agg @ v)
        return self.output(outs, valid)


def randomized(att: AgentAttention, seed: int = 0) -> AgentAttention:
    """Non-trivial weights everywhere (zero-initialised biases would hide mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in att.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return att.double()


# ---------------------------------------------------------------------------- agent attention


def test_masked_softmax_zero_weight_on_padding_and_no_nan_when_all_padded():
    scores = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    w = masked_softmax(scores, mask, dim=1)
    e1, e2 = math.exp(1.0), math.exp(2.0)
    assert torch.allclose(w[0], torch.tensor([e1 / (e1 + e2), e2 / (e1 + e2), 0.0]))
    assert torch.equal(w[1], torch.zeros(3))


def test_agent_attention_hand_computed_single_head():
    """h = 1, d = 1, two agents fixed by hand: out = softmax(QA^T) softmax(AK^T) V."""
    att = AgentAttention(dim=1, heads=1, num_agents=2).double()
    q = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64).view(1, 1, 3, 1)  # [B, h, N, d]
    k = torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64).view(1, 1, 3, 1)
    v = torch.tensor([2.0, 4.0, 8.0], dtype=torch.float64).view(1, 1, 3, 1)
    a = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 1, 2, 1)  # [B, h, n_a, d]
    with torch.no_grad():
        att.proj.weight.fill_(1.0)
        att.proj.bias.zero_()
    st = AgentState(q=q, k=k, v=v, agents=a, mask=None)
    out = att.broadcast(att.agent_map(q, a), att.aggregate(a, st), None)[0, :, 0]  # [N]
    # agent 1 (a=1): weights over keys exp(k) / sum; agent 2 (a=-1): exp(-k) / sum
    e = math.e
    va1 = (2 * 1 + 4 * e + 8 / e) / (1 + e + 1 / e)
    va2 = (2 * 1 + 4 / e + 8 * e) / (1 + 1 / e + e)
    expected = []
    for qi in (1.0, 0.0, 2.0):
        m1 = math.exp(qi) / (math.exp(qi) + math.exp(-qi))
        expected.append(m1 * va1 + (1 - m1) * va2)
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("heads", [1, 2])
def test_agent_attention_matches_direct_computation(heads):
    torch.manual_seed(0)
    att = randomized(AgentAttention(dim=8, heads=heads, num_agents=3), seed=heads)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = att(x, mask)
    ref = NpAgentAttention(att)
    for b in range(2):
        expected = ref(x[b].numpy(), mask[b].numpy())
        np.testing.assert_allclose(out[b].detach().numpy(), expected, atol=1e-10)


def test_padded_tokens_change_nothing():
    torch.manual_seed(1)
    att = randomized(AgentAttention(dim=8, heads=2, num_agents=4))
    x = torch.randn(3, 6, 8, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True, True, False, False, False, False], [False] * 6])
    out = att(x, mask)
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 8, dtype=torch.float64) * 100
    out2 = att(x2, mask)
    assert torch.equal(out[mask], out2[mask])
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))  # padded queries give zeros
    assert torch.isfinite(out).all()  # a sample with no valid token at all
    # and the padding changes the outputs when it is not masked out: the test can fail
    assert not torch.allclose(att(x2, None)[1, :2], out[1, :2])


# ------------------------------------------------------------------------ cross-stream fusion


def np_fuse_maps(m: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """AVG[M, sigma_tokens(S) M, sigma_heads(S) M] for [B, h, N, n_a] maps, by explicit loops."""
    s = sum(others)
    b, h, n, a = m.shape
    over_tokens = np.zeros_like(s)
    over_heads = np.zeros_like(s)
    for i in range(b):
        for j in range(a):
            for hh in range(h):
                col = s[i, hh, :, j]
                over_tokens[i, hh, :, j] = np.exp(col) / np.exp(col).sum()
            for t in range(n):
                col = s[i, :, t, j]
                over_heads[i, :, t, j] = np.exp(col) / np.exp(col).sum()
    return (m + over_tokens * m + over_heads * m) / 3


def test_caaf_fused_map_matches_independent_computation():
    g = torch.Generator().manual_seed(3)
    maps = [torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64).softmax(-1) for _ in range(3)]
    fused = fuse_maps(maps[0], maps[1:], None)
    expected = np_fuse_maps(maps[0].numpy(), [m.numpy() for m in maps[1:]])
    np.testing.assert_allclose(fused.numpy(), expected, atol=1e-12)
    assert torch.equal(fuse_maps(maps[0], [], None), maps[0])


def test_caaf_token_softmax_ignores_padded_visual_tokens():
    g = torch.Generator().manual_seed(4)
    m, s = (torch.rand(1, 2, 4, 3, generator=g, dtype=torch.float64) for _ in range(2))
    mask = torch.tensor([[True, True, True, False]])
    fused = fuse_maps(m, [s], mask)
    # the valid tokens see the token softmax over the first 3 tokens only
    expected = np_fuse_maps(m[:, :, :3].numpy(), [s[:, :, :3].numpy()])
    np.testing.assert_allclose(fused[:, :, :3].numpy(), expected, atol=1e-12)


def test_catf_fused_agents_matches_independent_computation():
    g = torch.Generator().manual_seed(5)
    a_v, a_t, a_l = (torch.randn(2, 3, 4, 6, generator=g, dtype=torch.float64) for _ in range(3))
    fused = fuse_agents(a_v, [a_t, a_l]).numpy()
    s = (a_t + a_l).numpy()  # [B, h, n_a, d]
    over_channels = np.exp(s) / np.exp(s).sum(axis=3, keepdims=True)
    over_heads = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
    v = a_v.numpy()
    np.testing.assert_allclose(fused, (v + over_channels * v + over_heads * v) / 3, atol=1e-12)


@pytest.mark.parametrize("caaf,catf", [(True, True), (True, False), (False, True)])
def test_cross_stream_attention_matches_direct_computation(caaf, catf):
    torch.manual_seed(6)
    att_v, att_t, att_l = (randomized(AgentAttention(8, 2, 3), seed=i) for i in range(3))
    xv = torch.randn(2, 5, 8, dtype=torch.float64)
    xt = torch.randn(2, 4, 8, dtype=torch.float64)
    xl = torch.randn(2, 3, 8, dtype=torch.float64)
    mt = torch.tensor([[True] * 4, [True, True, False, False]])
    ml = torch.tensor([[True, False, False], [False] * 3])  # sample 1: no detections
    states = [att_t.project(xt, mt), att_l.project(xl, ml)]
    out = cross_stream_attend(att_v, att_v.project(xv), states, caaf, catf)

    rv, rt, rl = NpAgentAttention(att_v), NpAgentAttention(att_t), NpAgentAttention(att_l)
    for b in range(2):
        qv, kv, vv = rv.qkv(xv[b].numpy())
        qt, _, _ = rt.qkv(xt[b].numpy())
        ql, _, _ = rl.qkv(xl[b].numpy())
        all_valid = np.ones(5, bool)
        outs, maps, other_maps, s_agents = [], [], [], []
        av = [rv.agents(qv[i], i, all_valid) for i in range(2)]
        at = [rt.agents(qt[i], i, mt[b].numpy()) for i in range(2)]
        if ml[b].any():
            al = [rl.agents(ql[i], i, ml[b].numpy()) for i in range(2)]
        else:  # no valid detection: its agents are zero
            al = [np.zeros_like(av[0]) for _ in range(2)]
        sc = 1.0 / math.sqrt(4)
        for i in range(2):
            maps.append(np_softmax(sc * qv[i] @ av[i].T, axis=1))  # [N_v, n_a]
            other_maps.append(
                np_softmax(sc * qv[i] @ at[i].T, axis=1) + np_softmax(sc * qv[i] @ al[i].T, axis=1)
            )
            s_agents.append(at[i] + al[i])
        m = np.stack(maps)[None]  # [1, h, N_v, n_a]
        fused_map = np_fuse_maps(m, [np.stack(other_maps)[None]])[0] if caaf else m[0]
        a = np.stack(av)  # [h, n_a, d]
        if catf:
            s = np.stack(s_agents)
            over_channels = np_softmax(s, axis=2)
            over_heads = np_softmax(s, axis=0)
            a = (a + over_channels * a + over_heads * a) / 3
        for i in range(2):
            agg = np_softmax(sc * a[i] @ kv[i].T, axis=1) @ vv[i]  # [n_a, d]
            outs.append(fused_map[i] @ agg)
        expected = rv.output(outs, all_valid)
        np.testing.assert_allclose(out[b].detach().numpy(), expected, atol=1e-10)


def test_cross_stream_attention_off_is_plain_attention_and_on_passes_gradients():
    torch.manual_seed(7)
    att_v, att_t = AgentAttention(8, 2, 4), AgentAttention(8, 2, 4)
    xv, xt = torch.randn(2, 6, 8), torch.randn(2, 3, 8)
    st_t = att_t.project(xt, None)
    plain = cross_stream_attend(att_v, att_v.project(xv), [st_t], False, False)
    assert torch.allclose(plain, att_v(xv))
    fused = cross_stream_attend(att_v, att_v.project(xv), [st_t], True, True)
    assert not torch.allclose(fused, plain)
    fused.sum().backward()
    assert att_t.qkv.weight.grad is not None and att_t.qkv.weight.grad.abs().sum() > 0
    assert att_t.agent_tokens.w1.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- the model

from ravar.config import ConfigError, from_dict, to_dict  # noqa: E402
from ravar.models.refatomnet import (  # noqa: E402
    BatchError,
    RefAtomNet,
    RefAtomNetConfig,
    masked_mean,
    resize_embedding,
)
from ravar.models.registry import create_model, model_config  # noqa: E402

WORDS = ["the", "a", "man", "woman", "person", "in", "blue", "red", "green", "shirt", "hat"]
WORDS += ["on", "left", "right", "side", "tall", "short"]
VARIANTS = [
    "refatomnet_tiny_fusion_add",
    "refatomnet_tiny_fusion_concat",
    "refatomnet_tiny_fusion_bottleneck",
    "refatomnet_tiny_no_location",
    "refatomnet_tiny_no_caaf",
    "refatomnet_tiny_no_catf",
]
# the tiny configs with a small scratch text encoder instead of the MiniLM (fast to build)
SCRATCH_TEXT = {"text.kind": "scratch", "text.frozen": False, "text.dim": 64, "text.depth": 1}


def make_batch(b: int = 3, t: int = 4, size: int = 64, d: int = 3, seed: int = 0) -> dict:
    """A hand-made batch: random frames and sentences; sample 0 has d detections, sample 1 one,
    the others none (all padding)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    x1y1 = torch.rand(b, 2, generator=g) * 0.5
    wh = 0.1 + torch.rand(b, 2, generator=g) * 0.4
    det_mask = torch.zeros(b, d, dtype=torch.bool)
    det_mask[0] = True
    det_mask[1:2, :1] = True
    det_x1y1 = torch.rand(b, d, 2, generator=g) * 0.5
    det_boxes = torch.cat([det_x1y1, det_x1y1 + 0.3], -1) * det_mask[..., None]
    names = ["person", "chair", "cup"]
    return {
        "frames": torch.randn(b, t, 3, size, size, generator=g),
        "keyframe": torch.randn(b, 3, size, size, generator=g),
        "text": [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(b)],
        "det_boxes": det_boxes,
        "det_scores": torch.rand(b, d, generator=g) * det_mask,
        "det_mask": det_mask,
        "det_categories": [
            [names[j % 3] if det_mask[i, j] else "" for j in range(d)] for i in range(b)
        ],
        "labels": (torch.rand(b, 80, generator=g) < 0.1).float(),
        "box": torch.cat([x1y1, x1y1 + wh], -1),
    }


def assert_valid_boxes(boxes: torch.Tensor) -> None:
    assert boxes.shape[-1] == 4 and torch.isfinite(boxes).all()
    x1, y1, x2, y2 = boxes.unbind(-1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 1).all() and (y2 <= 1).all()
    assert (x1 < x2).all() and (y1 < y2).all()


def check_forward_backward(model: RefAtomNet, batch: dict) -> dict:
    model.train()
    out = model(batch)
    losses = model.criterion()(out, batch)
    b = batch["frames"].shape[0]
    assert out.logits.shape == (b, 80) and torch.isfinite(out.logits).all()
    assert_valid_boxes(out.boxes)
    assert torch.isfinite(losses.total) and all(torch.isfinite(v) for v in losses.named.values())
    losses.total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing[:5]}"
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    return out


def test_tiny_as_registered_forward_backward():
    """The registered tiny model itself (frozen MiniLM text) on B=3, T=4, 64x64."""
    model = create_model("refatomnet_tiny")
    assert model.needs_detections and model.uses_text
    total, trainable = model.param_counts()
    assert 0 < trainable < total  # the MiniLM is frozen
    check_forward_backward(model, make_batch())
    model.train()
    assert not model.text.frozen_part.training  # frozen part stays in eval mode


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_builds_runs_and_gives_valid_boxes(name):
    torch.manual_seed(0)
    model = create_model(name, **SCRATCH_TEXT)
    batch = make_batch(b=2 if "bottleneck" in name else 3)
    if name.endswith("no_location"):
        assert model.location is None and not model.needs_detections
        batch = {k: v for k, v in batch.items() if not k.startswith("det_")}  # not needed
    check_forward_backward(model, batch)


@pytest.mark.parametrize(
    "overrides", [{"depth": 2}, {"fusion": "bottleneck", "depth": 2}, {"fusion": "concat"}]
)
def test_deeper_and_other_variants_at_32px(overrides):
    torch.manual_seed(0)
    model = create_model("refatomnet_tiny", **SCRATCH_TEXT, **overrides)
    check_forward_backward(model, make_batch(b=2, size=32))


def test_ablation_switches_change_the_computation():
    """Same weights, different switches: each ablation computes something else."""
    torch.manual_seed(0)
    full = create_model("refatomnet_tiny", **SCRATCH_TEXT, dropout=0.0).eval()
    batch = make_batch()
    ref = full(batch)
    ref_logits, ref_boxes = ref.logits, ref.boxes
    for overrides in (
        {"cross_attention_fusion": False},
        {"cross_token_fusion": False},
        {"fusion": "add"},
    ):
        other = create_model("refatomnet_tiny", **SCRATCH_TEXT, dropout=0.0, **overrides)
        other.load_state_dict(full.state_dict())  # identical parameters
        logits = other.eval()(batch).logits
        assert not torch.allclose(logits, ref_logits, atol=1e-5), overrides
    # and the same switches reproduce the output exactly
    same = create_model("refatomnet_tiny", **SCRATCH_TEXT, dropout=0.0)
    same.load_state_dict(full.state_dict())
    out = same.eval()(batch)
    logits, boxes = out.logits, out.boxes
    assert torch.equal(logits, ref_logits) and torch.equal(boxes, ref_boxes)


def test_text_and_detections_matter_and_padded_detections_do_not():
    torch.manual_seed(0)
    model = create_model("refatomnet_tiny", **SCRATCH_TEXT, dropout=0.0).eval()
    batch = make_batch()
    out = model(batch)
    logits, boxes = out.logits, out.boxes
    other_text = dict(batch, text=["a tall woman in green on the right"] * 3)
    assert not torch.allclose(model(other_text).logits[0], logits[0])
    moved = dict(batch, det_boxes=batch["det_boxes"].clone())
    moved["det_boxes"][0, 0] = torch.tensor([0.6, 0.6, 0.9, 0.9])
    assert not torch.allclose(model(moved).boxes[0], boxes[0])
    # padded detections (sample 1: slots 1-2, sample 2: all) hold garbage: nothing changes
    pad = ~batch["det_mask"]
    padded = dict(batch, det_boxes=batch["det_boxes"].clone(), det_scores=batch["det_scores"] + pad)
    padded["det_boxes"][pad] = torch.tensor([0.1, 0.2, 0.7, 0.9])
    padded["det_categories"] = [
        [c or "dog" for c in row] for row in batch["det_categories"]
    ]  # names on padding are ignored too
    p_out = model(padded)
    p_logits, p_boxes = p_out.logits, p_out.boxes
    assert torch.allclose(p_logits, logits, atol=1e-6) and torch.allclose(p_boxes, boxes, atol=1e-6)


def test_missing_batch_key_is_named():
    model = create_model("refatomnet_tiny", **SCRATCH_TEXT)
    batch = make_batch()
    del batch["det_mask"]
    with pytest.raises(BatchError, match="'det_mask'"):
        model(batch)
    with pytest.raises(BatchError, match="text"):
        model(dict(make_batch(), text=["only one"]))


def test_configs_round_trip_and_bad_values_are_named():
    for name in ["refatomnet_tiny", "refatomnet_base", *VARIANTS]:
        cfg = model_config(name)
        assert isinstance(cfg, RefAtomNetConfig)
        assert from_dict(RefAtomNetConfig, to_dict(cfg)) == cfg
    assert model_config("refatomnet_tiny_fusion_concat").fusion == "concat"
    assert model_config("refatomnet_tiny_no_caaf").cross_attention_fusion is False
    with pytest.raises(ConfigError, match=r"RefAtomNetConfig\.dim"):
        model_config("refatomnet_tiny", dim=100, heads=3)
    with pytest.raises(ConfigError, match=r"RefAtomNetConfig\.num_agents"):
        RefAtomNetConfig(num_agents=0)
    with pytest.raises(ConfigError, match="fusion"):
        model_config("refatomnet_tiny", fusion="sum")


def test_masked_mean_and_position_resizing_by_hand():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [9, 9]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))
    emb = torch.tensor([[0.0, 10.0], [2.0, 30.0]])  # [2, C]
    assert torch.equal(resize_embedding(emb, 2), emb)
    assert torch.allclose(
        resize_embedding(emb, 3), torch.tensor([[0.0, 10.0], [1.0, 20.0], [2, 30]])
    )


class _IndexTokens(torch.nn.Module):
    """Stands in for the visual backbone: token (t, q) of every clip holds [t, q, 0, ...]."""

    def __init__(self, q: int, c: int) -> None:
        super().__init__()
        self.q, self.c = q, c

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        out = torch.zeros(b, t, self.q, self.c)  # [B, T, Q, C]
        out[..., 0] = torch.arange(t, dtype=torch.float32)[None, :, None]
        out[..., 1] = torch.arange(self.q, dtype=torch.float32)[None, None, :]
        return out


def test_visual_tokens_keep_time_and_space_axes_straight():
    model = create_model("refatomnet_tiny", **SCRATCH_TEXT)
    q, c = model.visual.tokens_per_frame, model.visual.dim
    assert c == model.config.dim  # so the projection can be the identity below
    model.visual = _IndexTokens(q, c)
    with torch.no_grad():
        model.visual_proj.weight.copy_(torch.eye(c))
        model.visual_proj.bias.zero_()
        model.temporal_pos.zero_()
        model.spatial_pos.zero_()
    tokens = model.visual_stream(torch.zeros(2, 5, 3, 64, 64))  # [B, T*Q, C], T=5 != 8
    assert tokens.shape == (2, 5 * q, c)
    n = torch.arange(5 * q)
    assert torch.equal(tokens[1, :, 0], (n // q).float())  # frame index
    assert torch.equal(tokens[1, :, 1], (n % q).float())  # token index within the frame


def test_loss_falls_when_overfitting_16_clips():
    torch.manual_seed(0)
    small = {"visual.dim": 64, "visual.image_size": [32, 32], "dim": 64, "location.hidden": 64}
    model = create_model("refatomnet_tiny", **SCRATCH_TEXT, **small, dropout=0.0)
    batch = make_batch(b=16, t=4, size=32, seed=1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    model.train()
    losses = []
    criterion = model.criterion()
    for _ in range(25):
        loss = criterion(model(batch), batch).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3]), losses
    # below the best clip-independent prediction (class frequencies, mean box): it memorises clips
    y = batch["labels"]
    p = y.mean(0).clamp(1e-6, 1 - 1e-6)
    constant_bce = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    constant_mse = ((batch["box"] - batch["box"].mean(0)) ** 2).sum(-1).mean()
    cfg = model.config.loss
    constant = cfg.action_weight * constant_bce + cfg.box_mse_weight * constant_mse
    assert losses[-1] < 0.8 * constant.item(), losses


@pytest.mark.slow
def test_base_builds_with_random_weights_and_runs():
    """The paper-size model (frozen BLIP-2 with random weights, frozen MiniLM) on B=1, T=2, 224."""
    model = create_model("refatomnet_base")
    total, trainable = model.param_counts()
    print(f"refatomnet_base parameters: total {total:,}, trainable {trainable:,}")
    assert trainable < total and model.visual.tokens_per_frame == 32
    batch = make_batch(b=1, t=2, size=224)
    model.eval()
    with torch.no_grad():
        out = model(batch)
    logits, boxes = out.logits, out.boxes
    assert logits.shape == (1, 80) and torch.isfinite(logits).all()
    assert_valid_boxes(boxes)


@pytest.mark.parametrize("tokens", ["streams", "fused"])
def test_referring_head_reads_the_tokens_its_switch_names(tokens):
    torch.manual_seed(0)
    model = create_model(
        "refatomnet_tiny", **SCRATCH_TEXT, dropout=0.0, referring_tokens=tokens
    ).eval()
    assert model_config("refatomnet_tiny").referring_tokens == "streams"  # the tiny default
    batch = make_batch()
    seen = {}
    model.referring.register_forward_hook(lambda m, args, out: seen.update(args=args))
    with torch.no_grad():
        model(batch)
        streams = model.streams(batch)
        _, fused = model.fuse(streams)
    want = streams if tokens == "streams" else fused
    people, _, _, words, word_mask = seen["args"][:5]
    torch.testing.assert_close(people, want[2][0])  # person tokens [B, D, dim]
    torch.testing.assert_close(words, want[1][0])  # word tokens [B, L, dim]
    assert torch.equal(word_mask, want[1][1])
    other = fused if tokens == "streams" else streams
    assert not torch.allclose(people, other[2][0], atol=1e-4)  # fusion changed the person tokens
