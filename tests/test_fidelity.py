"""The switches that give the authors' version where ravar made a choice (docs/fidelity.md):
each builds, trains, and computes what the authors' code computes, checked independently."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ravar.config import ConfigError, from_dict, to_dict
from ravar.models.agent_attention import (
    AgentAttention,
    cross_stream_attend,
    cross_stream_attend_authors,
    resample_tokens,
)
from ravar.models.losses import (
    LossConfig,
    batch_hard_negative_ranking,
    compute_losses,
    focal_bce,
    irm_penalty,
)
from ravar.models.refatomnet import RefAtomNetConfig
from ravar.models.refatomnet_pp import CrossAttentionBlock, RefAtomNetPPConfig
from ravar.models.registry import create_model, model_config
from ravar.models.trajectory import mean_over_trajectories, scan_keyword_major
from test_refatomnet import SCRATCH_TEXT
from test_refatomnet import make_batch as make_batch_ran
from test_refatomnet_pp import make_batch as make_batch_pp
from test_refatomnet_pp import small_overrides

# ------------------------------------------------------------------ losses


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_authors_ranking_loss_hand_computed() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.5, 3.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # positives of the batch: 2.0, 3.0; negatives 0.5, -1.0, 0.0, 1.5 -> the 2 hardest 1.5, 0.5
    pairs = [(2.0, 1.5), (2.0, 0.5), (3.0, 1.5), (3.0, 0.5)]
    expected = sum(softplus(0.2 - (p - n)) for p, n in pairs) / 4
    got = batch_hard_negative_ranking(logits, labels, margin=0.2, hard_negatives=2)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # k above the number of negatives takes them all
    all_neg = [0.5, -1.0, 0.0, 1.5]
    expected_all = sum(softplus(0.2 - (p - n)) for p in (2.0, 3.0) for n in all_neg) / 8
    got_all = batch_hard_negative_ranking(logits, labels, margin=0.2, hard_negatives=64)
    assert got_all.item() == pytest.approx(expected_all, rel=1e-6)
    # through compute_losses, weighted; ravar's per-sample hinge is 0 on the same batch
    cfg = LossConfig(ranking_weight=3.0, ranking_margin=0.2, ranking="authors")
    cfg.ranking_hard_negatives = 2
    losses = compute_losses(logits, torch.rand(2, 4), labels, torch.rand(2, 4), cfg)
    assert losses["action_rank"].item() == pytest.approx(3 * expected, rel=1e-6)
    hinge = compute_losses(
        logits, torch.rand(2, 4), labels, torch.rand(2, 4), LossConfig(ranking_weight=1.0)
    )
    assert hinge["action_rank"].item() == 0.0
    losses["action_rank"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_authors_ranking_loss_without_positives_is_zero() -> None:
    logits = torch.randn(2, 5, requires_grad=True)
    zero = batch_hard_negative_ranking(logits, torch.zeros(2, 5), 0.2, 64)
    assert zero.item() == 0.0
    zero.backward()  # still part of the graph


def test_irm_penalty_is_the_squared_derivative_of_the_focal_loss_in_a_scale() -> None:
    """Against a central finite difference of ravar's focal loss in a dummy scale w (float64)."""
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 80, generator=g, dtype=torch.float64)
    labels = (torch.rand(4, 80, generator=g) < 0.1).double()
    h = 1e-5
    deriv = (
        focal_bce((1 + h) * logits, labels, 2.0) - focal_bce((1 - h) * logits, labels, 2.0)
    ) / (2 * h)
    assert irm_penalty(logits, labels, 2.0).item() == pytest.approx(deriv.item() ** 2, rel=1e-5)
    # one element by hand: z = 1, y = 1, gamma = 2: l(w) = -(1 - s(w))^2 log s(w)
    s = 1 / (1 + math.exp(-1.0))
    dl = -(2 * (1 - s) * (-s * (1 - s)) * math.log(s) + (1 - s) ** 2 * (1 - s))
    got = irm_penalty(torch.tensor([[1.0]]), torch.tensor([[1.0]]), 2.0).item()
    assert got == pytest.approx(dl**2, rel=1e-5)


def test_irm_penalty_in_compute_losses_trains_and_runs_without_grad() -> None:
    logits = torch.randn(3, 80, requires_grad=True)
    labels = (torch.rand(3, 80) < 0.1).float()
    cfg = LossConfig(action="focal", irm_weight=2.0)
    losses = compute_losses(logits, torch.rand(3, 4), labels, torch.rand(3, 4), cfg)
    assert losses["action_irm"].item() == pytest.approx(2 * irm_penalty(logits, labels, 2.0).item())
    losses["loss"].backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.isfinite(
            compute_losses(logits, torch.rand(3, 4), labels, labels[:, :4], cfg)["loss"]
        )
    assert "action_irm" not in compute_losses(
        logits, torch.rand(3, 4), labels, labels[:, :4], LossConfig()
    )


def test_bad_ranking_form_is_a_config_error_naming_it() -> None:
    data = to_dict(LossConfig())
    data["ranking"] = "softmax"
    with pytest.raises(ConfigError, match="ranking"):
        from_dict(LossConfig, data)


# ------------------------------------------------------------------ RefAtomNet++


def pp_model(**overrides: object):
    torch.manual_seed(0)
    return create_model("refatomnet_pp_tiny", **{**small_overrides(), **overrides}).eval()


def test_cross_attention_block_ignores_padded_context() -> None:
    torch.manual_seed(0)
    block = CrossAttentionBlock(16, 4, 2.0, 0.0).eval()
    x, ctx = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    out = block(x, ctx, mask)
    ctx2 = ctx.clone()
    ctx2[0, 2] += 10.0
    assert torch.allclose(block(x, ctx2, mask)[0], out[0], atol=1e-6)
    assert torch.allclose(block(x[:1], ctx[:1, :2])[0], out[0], atol=1e-6)
    assert torch.isfinite(out).all()  # a row with no valid entry attends to all of them


@pytest.mark.parametrize("queries", ["semantic", "authors"])
def test_cross_attention_direction(queries: str) -> None:
    """Which tensor the queries come from: the semantic tokens (ravar) or the visual view (the
    authors); the block's output has the shape of its queries."""
    model = pp_model(cross_attention_queries=queries, referring=False)
    seen: dict[str, tuple] = {}

    def hook(name: str):
        return lambda mod, args, out: seen.__setitem__(name, (args, out))

    for name in ("temporal_keyword", "spatial_sentence"):
        model.cross[name].register_forward_hook(hook(name))
    batch = make_batch_pp()
    with torch.no_grad():
        feats = model.encode(batch)
    (x, ctx, *rest), out = seen["temporal_keyword"]
    if queries == "authors":
        assert torch.equal(x, feats["temporal"]) and torch.equal(ctx, feats["keyword_tokens"])
        assert torch.equal(rest[0], feats["keyword_mask"])
        assert out.shape == feats["temporal"].shape  # [B, T, C]
        (xs, ctxs, _), outs = seen["spatial_sentence"]
        assert torch.equal(xs, feats["spatial"]) and outs.shape == feats["spatial"].shape
    else:
        assert torch.equal(x, feats["keyword_tokens"]) and torch.equal(ctx, feats["temporal"])
        assert out.shape == feats["keyword_tokens"].shape  # [B, K*T, C]


def test_scan_keyword_major_hand_computed() -> None:
    """A causal running sum as the layer: one sequence per clip, valid trajectories one after
    the other in their order, padded ones skipped and returned as zeros."""
    traj = torch.arange(1, 13, dtype=torch.float32).reshape(1, 3, 2, 2)[..., :1]  # [1, 3, 2, 1]
    traj = torch.cat([traj, 10 * traj]).clone()  # [2, K=3, T=2, C=1]
    mask = torch.tensor([[True, False, True], [False, True, True]])

    def cumsum(x: torch.Tensor) -> torch.Tensor:
        assert x.shape == (2, 6, 1)  # [B, K*T, C]: one sequence per clip
        return x.cumsum(1)

    out = scan_keyword_major(traj, mask, cumsum)
    # clip 0: values k0 = (1, 3), k2 = (9, 11) -> running sum 1, 4, 13, 24
    assert out[0, :, :, 0].tolist() == [[1.0, 4.0], [0.0, 0.0], [13.0, 24.0]]
    # clip 1: k1 = (50, 70), k2 = (90, 110) -> 50, 120, 210, 320
    assert out[1, :, :, 0].tolist() == [[0.0, 0.0], [50.0, 120.0], [210.0, 320.0]]
    mean = mean_over_trajectories(out, mask)  # [B, T, C]
    assert mean[:, :, 0].tolist() == [[7.0, 14.0], [130.0, 220.0]]


def test_authors_trajectory_scan_matches_a_per_clip_loop() -> None:
    """The keyword level as the authors' loop computes it, clip by clip without padding:
    scan(valid trajectories end to end) -> mean over keywords -> scan along time."""
    model = pp_model(trajectory_scan="authors", referring=False)
    assert model.keyword_time_scan is not None
    batch = make_batch_pp(b=3)
    with torch.no_grad():
        feats = model.encode(batch)
        kw_mask = model.text(batch["text"]).keyword_mask  # [B, K]
        sel = feats["keyword_selection"].tokens  # [B, K, T, C]
        t, c = sel.shape[2:]
        assert feats["keyword_tokens"].shape == (3, t, c)
        for b in range(3):
            valid = sel[b][kw_mask[b]]  # [k_b, T, C]
            seq = model.keyword_scan(valid.reshape(1, -1, c)).reshape(-1, t, c)
            expected = model.keyword_time_scan(seq.mean(0, keepdim=True))[0]  # [T, C]
            assert torch.allclose(feats["keyword_tokens"][b], expected, atol=1e-5)
        # objects: object-major scan, mean over the kept detections, no second scan
        keep = model.location.keep_mask(batch["det_mask"], batch["det_categories"])
        osel = feats["object_selection"].tokens
        for b in range(3):
            valid = osel[b][keep[b]]
            seq = model.object_scan(valid.reshape(1, -1, c)).reshape(-1, t, c)
            assert torch.allclose(feats["object_tokens"][b], seq.mean(0), atol=1e-5)


def test_default_pp_model_has_no_authors_modules() -> None:
    model = pp_model()
    assert model.keyword_time_scan is None
    assert not any("keyword_time_scan" in k for k in model.state_dict())


# ------------------------------------------------------------------ RefAtomNet CAAF


def test_resample_tokens_by_hand() -> None:
    maps = torch.tensor([1.0, 99.0, 3.0])[None, None, None, :].repeat(2, 1, 1, 1)  # [2,1,1,3]
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = resample_tokens(maps, mask, 5)
    assert out[0, 0, 0].tolist() == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert out[1].abs().sum() == 0
    same = torch.randn(2, 2, 4, 6)
    assert torch.equal(resample_tokens(same, None, 6), same)  # identity at equal lengths
    assert resample_tokens(maps[:1], None, 1)[0, 0, 0].tolist() == [1.0]


def test_authors_caaf_matches_their_formula_at_equal_lengths() -> None:
    """Three streams of equal length (as the authors' 32 tokens): written out as their code does."""
    torch.manual_seed(0)
    att = AgentAttention(16, heads=2, num_agents=4).double().eval()
    others_att = [AgentAttention(16, 2, 4).double().eval() for _ in range(2)]
    xs = [torch.randn(2, 6, 16, dtype=torch.float64) for _ in range(3)]
    st = att.project(xs[0])
    others = [a.project(x) for a, x in zip(others_att, xs[1:], strict=True)]
    got = cross_stream_attend_authors(att, st, others)

    s = att.scale
    g_v = torch.softmax(s * st.agents @ st.k.transpose(-1, -2), -1)  # [B, h, n_a, N]
    sum_g = sum(torch.softmax(s * o.agents @ o.k.transpose(-1, -2), -1) for o in others)
    g_hat = (g_v * torch.softmax(sum_g, -1) + g_v * torch.softmax(sum_g, 1) + g_v) / 3
    v_a = g_hat @ st.v
    sum_a = sum(o.agents for o in others)
    a = st.agents
    a_hat = (a * torch.softmax(sum_a, -1) + a * torch.softmax(sum_a, 1) + a) / 3
    x = torch.softmax(s * st.q @ a_hat.transpose(-1, -2), -1) @ v_a  # [B, h, N, d]
    expected = att.proj(x.transpose(1, 2).reshape(2, 6, 16))
    assert torch.allclose(got, expected, atol=1e-10)
    assert not torch.allclose(got, cross_stream_attend(att, st, others), atol=1e-4)


def test_refatomnet_caaf_switch_changes_the_model_and_keeps_its_weights() -> None:
    torch.manual_seed(0)
    base = create_model("refatomnet_tiny", **SCRATCH_TEXT).eval()
    torch.manual_seed(0)
    authors = create_model("refatomnet_tiny", caaf_maps="authors", **SCRATCH_TEXT).eval()
    authors.load_state_dict(base.state_dict())  # same parameters: the switch adds none
    batch = make_batch_ran()
    with torch.no_grad():
        a, b = authors(batch).logits, base(batch).logits
    assert torch.isfinite(a).all() and not torch.allclose(a, b, atol=1e-4)


def test_bad_caaf_maps_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="caaf_maps"):
        create_model("refatomnet_tiny", caaf_maps="paper")


# ------------------------------------------------------------------ configs and checkpoints


NEW_KEYS = {
    "refatomnet_tiny": (RefAtomNetConfig, ["caaf_maps"]),
    "refatomnet_pp_tiny": (RefAtomNetPPConfig, ["cross_attention_queries", "trajectory_scan"]),
}
LOSS_KEYS = ["ranking", "ranking_hard_negatives", "irm_weight"]


@pytest.mark.parametrize("name", sorted(NEW_KEYS))
def test_config_saved_before_the_switches_loads_as_today(name: str) -> None:
    cls, keys = NEW_KEYS[name]
    data = to_dict(model_config(name))
    for key in keys:
        del data[key]
    for key in LOSS_KEYS:
        del data["loss"][key]
    assert to_dict(from_dict(cls, data)) == to_dict(model_config(name))


@pytest.mark.parametrize(
    "name,expected",
    [
        ("refatomnet_tiny_authors", {"caaf_maps": "authors", "referring": False}),
        ("refatomnet_base_authors", {"caaf_maps": "authors", "heads": 1}),
        (
            "refatomnet_pp_tiny_authors",
            {"cross_attention_queries": "authors", "trajectory_scan": "authors"},
        ),
        ("refatomnet_pp_base_authors", {"dim": 256, "trajectory_scan": "authors"}),
    ],
)
def test_authors_named_configs_set_every_switch(name: str, expected: dict) -> None:
    cfg = to_dict(model_config(name))
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["location"]["appearance"] is False and cfg["referring"] is False
    if "pp" in name:
        assert cfg["loss"]["ranking"] == "authors" and cfg["loss"]["irm_weight"] == 1.0


@pytest.mark.parametrize(
    "name,overrides,batch",
    [
        ("refatomnet_pp_tiny_authors", small_overrides(), make_batch_pp),
        ("refatomnet_tiny_authors", SCRATCH_TEXT, make_batch_ran),
    ],
)
def test_authors_configs_train_a_few_steps(name: str, overrides: dict, batch) -> None:
    torch.manual_seed(0)
    model = create_model(name, **overrides).train()
    data = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    criterion = model.criterion()
    for _ in range(3):
        out = model(data)
        losses = criterion(out, data)
        assert torch.isfinite(losses.total)
        opt.zero_grad()
        losses.total.backward()
        opt.step()
    if "pp" in name:
        assert {"action_rank", "action_irm"} <= set(losses.named)
    assert F.mse_loss(out.boxes, data["box"]).isfinite()
