"""RefAtomNet++: trajectories, axes, trainable selection, and the model end to end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ravar.config import ConfigError, from_dict, to_dict
from ravar.errors import RavarError
from ravar.models.losses import compute_losses
from ravar.models.mamba import MambaLayer
from ravar.models.refatomnet_pp import RefAtomNetPP, RefAtomNetPPConfig
from ravar.models.registry import create_model, model_config
from ravar.models.trajectory import (
    cosine_similarity_grid,
    flatten_trajectories,
    from_per_token_sequences,
    from_time_major,
    per_token_sequences,
    scan_trajectories,
    select_trajectories,
    selection_weights,
    spatial_view,
    temporal_view,
    time_major_sequence,
)

# ---------------------------------------------------------------- helpers


def encoded_grid(b: int, t: int, q: int, c: int) -> torch.Tensor:
    """[B, T, Q, C] whose channel 0 is 1000*t + q and channel 1 is 100000*b (rest random)."""
    x = torch.randn(b, t, q, c)
    x[..., 0] = 1000 * torch.arange(t)[:, None].float() + torch.arange(q)[None, :].float()
    x[..., 1] = 100000 * torch.arange(b)[:, None, None].float()
    return x


def moving_target_grid(
    b: int, t: int, q: int, c: int, path: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, T, Q, C]: channel 0 labels each token as 1000*t + q; channels 2.. are small
    noise plus, at token path[b][t] of frame t, a planted target direction. Queries [B, 1, C]
    point in that direction (select on channels 2.. only)."""
    g = torch.Generator().manual_seed(0)
    x = 0.05 * torch.randn(b, t, q, c, generator=g)
    direction = torch.zeros(c)
    direction[2:] = torch.randn(c - 2, generator=g)
    for bi in range(b):
        for ti in range(t):
            x[bi, ti, path[bi][ti], 2:] += 5 * direction[2:]
    x[..., 0] = 1000 * torch.arange(t)[:, None].float() + torch.arange(q)[None, :].float()
    x[..., 1] = 0.0
    queries = direction.expand(b, 1, c).clone()
    return x, queries


# ---------------------------------------------------------------- axes


def test_per_token_sequences_keep_frame_and_token_axes() -> None:
    b, t, q = 2, 5, 7
    x = encoded_grid(b, t, q, 4)
    seq = per_token_sequences(x)  # [B*Q, T, C]
    assert seq.shape == (b * q, t, 4)
    for bi in range(b):
        for qi in range(q):
            row = seq[bi * q + qi]
            expected = 1000 * torch.arange(t).float() + qi  # frame t of token qi over time
            assert torch.equal(row[:, 0], expected)
            assert torch.all(row[:, 1] == 100000 * bi)
    assert torch.equal(from_per_token_sequences(seq, b), x)


def test_time_major_sequence_is_frame_after_frame() -> None:
    b, t, q = 2, 3, 4
    x = encoded_grid(b, t, q, 3)
    seq = time_major_sequence(x)  # [B, T*Q, C]
    expected = torch.tensor([1000.0 * ti + qi for ti in range(t) for qi in range(q)])
    assert torch.equal(seq[0, :, 0], expected)
    assert torch.equal(seq[1, :, 1], torch.full((t * q,), 100000.0))
    assert torch.equal(from_time_major(seq, t), x)


def test_views_pool_over_the_right_axis() -> None:
    b, t, q = 2, 4, 6
    x = encoded_grid(b, t, q, 3)
    tv = temporal_view(x)  # [B, T, C]: mean over tokens
    sv = spatial_view(x)  # [B, Q, C]: mean over frames
    assert tv.shape == (b, t, 3) and sv.shape == (b, q, 3)
    # mean over q of 1000*t + q = 1000*t + (Q-1)/2; mean over t = 1000*(T-1)/2 + q
    assert torch.allclose(tv[1, :, 0], 1000 * torch.arange(t).float() + (q - 1) / 2)
    assert torch.allclose(sv[0, :, 0], 1000 * (t - 1) / 2 + torch.arange(q).float())
    assert torch.allclose(tv[1, :, 1], torch.full((t,), 100000.0))


def test_flatten_trajectories_orders_keyword_then_frame() -> None:
    traj = torch.arange(2 * 3 * 4).float().view(2, 3, 4, 1)  # [B=2, K=3, T=4, C=1]
    mask = torch.tensor([[True, False, True], [False, False, False]])
    flat, flat_mask = flatten_trajectories(traj, mask)
    assert flat.shape == (2, 12, 1)
    assert torch.equal(flat[0, 4:8, 0], traj[0, 1, :, 0])  # keyword 1's four frames
    assert flat_mask[0].tolist() == [True] * 4 + [False] * 4 + [True] * 4
    assert not flat_mask[1].any()


# ---------------------------------------------------------------- selection


def test_selection_picks_the_most_similar_token_per_frame_by_cosine() -> None:
    # one clip, 3 frames, 4 tokens in 2-D; query along +x. Angles are chosen so that the
    # answer per frame is known; a long vector at a worse angle must not win (cosine, not dot).
    def at(deg: float, norm: float = 1.0) -> list[float]:
        r = math.radians(deg)
        return [norm * math.cos(r), norm * math.sin(r)]

    frames = [
        [at(90), at(10), at(180), at(45, norm=50.0)],  # best: token 1 (10 deg)
        [at(30), at(-60), at(5, norm=0.1), at(270)],  # best: token 2 (5 deg, short)
        [at(-20), at(20.5), at(100), at(-170)],  # best: token 0 (20 < 20.5 deg)
    ]
    tokens = torch.tensor([frames])  # [1, 3, 4, 2]
    queries = torch.tensor([[[2.0, 0.0], [0.0, -1.0]]])  # [1, 2, 2]: +x and -y
    for mode in ("straight_through", "soft"):
        tr = select_trajectories(queries, tokens, mode=mode, tau=0.01)
        assert tr.index[0, 0].tolist() == [1, 2, 0]
        # -y: cos = -sin(angle): frame 0 -> 180 deg (0), frame 1 -> 270 deg (1), frame 2 -> -20
        assert tr.index[0, 1].tolist() == [2, 3, 0]
    tr = select_trajectories(queries, tokens, mode="straight_through")
    for ti, qi in enumerate([1, 2, 0]):
        assert torch.equal(tr.tokens[0, 0, ti], tokens[0, ti, qi])  # exactly the picked token
    assert torch.allclose(
        tr.similarity[0, 0, 0],
        torch.tensor([0.0, math.cos(math.radians(10)), -1.0, 0.7071068]),
        atol=1e-6,
    )


def test_trajectory_follows_a_moving_target_with_axes_straight() -> None:
    b, t, q, c = 2, 5, 6, 8
    path = [[0, 2, 4, 1, 5], [3, 3, 0, 2, 1]]
    tokens, queries = moving_target_grid(b, t, q, c, path)
    # the labels in channels 0..1 must not steer the similarity: select on channels 2..
    tr = select_trajectories(queries[..., 2:], tokens[..., 2:], mode="straight_through")
    assert tr.index[:, 0].tolist() == path
    picked = torch.einsum("bktq,btqc->bktc", tr.weights, tokens)  # [B, 1, T, C]
    for bi in range(b):
        expected = torch.tensor([1000.0 * ti + path[bi][ti] for ti in range(t)])
        assert torch.equal(picked[bi, 0, :, 0], expected)


def test_straight_through_is_exactly_one_hot_and_soft_is_a_distribution() -> None:
    sim = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    hard = selection_weights(sim, "straight_through", tau=0.5)
    assert torch.equal(hard, nn.functional.one_hot(sim.argmax(-1), 5).float())
    soft = selection_weights(sim, "soft", tau=0.5)
    assert torch.allclose(soft.sum(-1), torch.ones(2, 3, 4))
    assert torch.allclose(soft, torch.softmax(sim / 0.5, -1))
    sharp = selection_weights(sim, "soft", tau=1e-4)
    assert torch.allclose(sharp, hard, atol=1e-5)


@pytest.mark.parametrize("mode", ["straight_through", "soft"])
def test_selection_passes_gradients_to_the_queries(mode: str) -> None:
    torch.manual_seed(0)
    tokens = torch.randn(2, 4, 6, 8)
    proj = nn.Linear(5, 8)  # stands for the keyword / object projection into visual space
    words = torch.randn(2, 3, 5)
    tr = select_trajectories(proj(words), tokens, mode=mode, tau=0.1)
    (tr.tokens * torch.randn_like(tr.tokens)).sum().backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    # the argmax alone (the authors' selection) gives no gradient at all
    proj.zero_grad()
    index = cosine_similarity_grid(proj(words), tokens).argmax(-1)  # [B, K, T]
    assert not index.requires_grad


def test_selection_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="selection"):
        selection_weights(torch.zeros(1, 3), "argmax", 0.1)
    with pytest.raises(ValueError, match="tau"):
        selection_weights(torch.zeros(1, 3), "soft", 0.0)
    with pytest.raises(ValueError, match="channels"):
        cosine_similarity_grid(torch.zeros(1, 2, 3), torch.zeros(1, 4, 5, 6))
    with pytest.raises(ValueError, match=r"\[B, T, Q, C\]"):
        cosine_similarity_grid(torch.zeros(1, 2, 3), torch.zeros(4, 5, 3))


def test_scan_trajectories_runs_the_layer_on_valid_ones_only() -> None:
    calls: list[int] = []

    class Twice(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return 2 * x + x.cumsum(1)  # depends on the order along time

    traj = torch.randn(2, 3, 4, 5)
    mask = torch.tensor([[True, False, True], [False, True, False]])
    out = scan_trajectories(traj, mask, Twice())
    assert calls == [3]
    for bi in range(2):
        for ki in range(3):
            if mask[bi, ki]:
                expected = 2 * traj[bi, ki] + traj[bi, ki].cumsum(0)
                assert torch.allclose(out[bi, ki], expected)
            else:
                assert torch.equal(out[bi, ki], torch.zeros(4, 5))
    assert torch.equal(
        scan_trajectories(traj, torch.zeros(2, 3, dtype=torch.bool), Twice()),
        torch.zeros_like(traj),
    )
    assert calls == [3]  # not called when nothing is valid


def test_scan_trajectories_with_a_mamba_layer_is_causal_along_time() -> None:
    torch.manual_seed(0)
    layer = MambaLayer(8, d_state=4, backend="pscan")
    traj = torch.randn(1, 2, 6, 8)
    mask = torch.ones(1, 2, dtype=torch.bool)
    out = scan_trajectories(traj, mask, layer)
    changed = traj.clone()
    changed[0, 0, 4:] += 1.0  # change frames 4, 5 of trajectory 0
    out2 = scan_trajectories(changed, mask, layer)
    assert torch.allclose(out[0, 0, :4], out2[0, 0, :4], atol=1e-6)  # earlier frames unchanged
    assert not torch.allclose(out[0, 0, 4:], out2[0, 0, 4:])
    assert torch.allclose(out[0, 1], out2[0, 1], atol=1e-6)  # other trajectory independent


# ---------------------------------------------------------------- the model

WORDS = "man woman person red blue green shirt hat left right tall short dark jacket glasses"
CATEGORIES = ["person", "chair", "cup", "car", "dog"]


def make_batch(
    b: int = 3,
    t: int = 4,
    size: int = 32,
    d: int = 3,
    with_detections: bool = True,
    seed: int = 0,
) -> dict:
    """A hand-built batch in the Dataset's layout: random frames and sentences, valid boxes,
    multi-hot labels with at least one positive, and `d` detection slots (some padded)."""
    g = torch.Generator().manual_seed(seed)
    words = WORDS.split()

    def boxes(*shape: int) -> torch.Tensor:
        xy = 0.5 * torch.rand(*shape, 2, generator=g)
        wh = 0.1 + 0.4 * torch.rand(*shape, 2, generator=g)
        return torch.cat([xy, xy + wh], -1)  # [..., 4] valid xyxy in [0, 1]

    texts = []
    for _ in range(b):
        idx = torch.randint(len(words), (4,), generator=g).tolist()
        texts.append("the " + " ".join(words[i] for i in idx) + " on the left")
    labels = (torch.rand(b, 80, generator=g) < 0.05).float()
    labels[torch.arange(b), torch.randint(80, (b,), generator=g)] = 1.0
    batch = {
        "frames": torch.randn(b, t, 3, size, size, generator=g),
        "keyframe": torch.randn(b, 3, size, size, generator=g),
        "text": texts,
        "box": boxes(b),
        "labels": labels,
    }
    if with_detections:
        mask = torch.rand(b, d, generator=g) < 0.7
        mask[:, 0] = True
        cats = torch.randint(len(CATEGORIES), (b, d), generator=g).tolist()
        batch["det_boxes"] = boxes(b, d) * mask[..., None]
        batch["det_scores"] = torch.rand(b, d, generator=g) * mask
        batch["det_mask"] = mask
        batch["det_categories"] = [
            [CATEGORIES[c] if m else "" for c, m in zip(row, mrow, strict=True)]
            for row, mrow in zip(cats, mask.tolist(), strict=True)
        ]
    return batch


def small_overrides(t: int = 4, size: int = 32, text: str = "scratch") -> dict:
    """Overrides that shrink `refatomnet_pp_tiny` to the test batches."""
    return {
        "clip.num_frames": t,
        "clip.size": [size, size],
        "visual.image_size": [size, size],
        "visual.num_frames": t,
        "visual.dim": 64,
        "text.kind": text,
        "text.dim": 64,
        "text.frozen": text != "scratch",
        "dim": 64,
        "dropout": 0.0,
    }


def build(**overrides: object) -> RefAtomNetPP:
    torch.manual_seed(0)
    model = create_model("refatomnet_pp_tiny", **{**small_overrides(), **overrides})
    assert isinstance(model, RefAtomNetPP)
    return model


def assert_valid_boxes(boxes: torch.Tensor) -> None:
    x1, y1, x2, y2 = boxes.unbind(-1)
    assert torch.all(x1 >= 0) and torch.all(y1 >= 0) and torch.all(x2 <= 1) and torch.all(y2 <= 1)
    assert torch.all(x1 < x2) and torch.all(y1 < y2)


def test_named_configs_round_trip_and_follow_the_authors_losses() -> None:
    for name in ("refatomnet_pp_tiny", "refatomnet_pp_base"):
        cfg = model_config(name)
        assert isinstance(cfg, RefAtomNetPPConfig)
        assert from_dict(RefAtomNetPPConfig, to_dict(cfg)) == cfg
        assert cfg.heads == 8 and cfg.loss.action == "focal" and cfg.loss.label_smoothing > 0
        assert cfg.loss.ranking_weight > 0 and cfg.loss.box_iou_weight == 2.0
    base = model_config("refatomnet_pp_base")
    assert base.dim == 768 and base.clip.num_frames == 8 and base.clip.size == (224, 224)
    assert base.visual.hf_kind == "blip2" and base.visual.frozen and base.text.kind == "minilm"


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"dim": 60}, "dim"),
        ({"selection": "argmax"}, "selection"),
        ({"tau": 0.0}, "tau"),
        (
            {
                "use_keywords": False,
                "use_objects": False,
                "use_sentence": False,
                "referring": False,
            },
            "use_keywords",
        ),
        ({"visual.image_size": [48, 48], "visual.tokens_per_frame": None}, "visual.image_size"),
        ({"visual_scan": "sideways"}, "visual_scan"),
    ],
)
def test_bad_configs_raise_errors_naming_the_key(overrides: dict, culprit: str) -> None:
    with pytest.raises(ConfigError, match=culprit):
        model_config("refatomnet_pp_tiny", **{**small_overrides(), **overrides})


def test_forward_backward_with_detections() -> None:
    model = build()
    model.train()
    batch = make_batch(b=3, t=4, size=32, d=3)
    out = model(batch)
    losses = model.criterion()(out, batch)
    assert out.logits.shape == (3, 80) and out.boxes.shape == (3, 4)
    assert_valid_boxes(out.boxes)
    # the tiny config picks the referred person among the detections: + the selection loss
    expected = {"action_focal", "action_rank", "box_mse", "box_iou", "select"}
    assert set(losses.named) == expected
    assert all(torch.isfinite(v) for v in losses.named.values())
    assert torch.isfinite(losses.total)
    losses.total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_forward_without_detections() -> None:
    # every detection slot padded: the scene-attribute level is empty, nothing breaks
    model = build()
    batch = make_batch(b=2, t=4, size=32, d=3)
    batch["det_mask"][:] = False
    batch["det_categories"] = [[""] * 3, [""] * 3]
    out = model(batch)
    loss = model.criterion()(out, batch).total
    assert torch.isfinite(loss) and torch.isfinite(out.logits).all()
    assert_valid_boxes(out.boxes)
    loss.backward()
    # an empty level does not dilute the summary: the object blocks have no say at all
    model.eval()
    with torch.no_grad():
        before = model.encode(batch)["summary_spatial"]
        for p in model.cross["spatial_object"].parameters():
            p.add_(1.0)
        assert torch.allclose(model.encode(batch)["summary_spatial"], before, atol=1e-6)

    # the level switched off: no detections needed at all
    no_obj = build(use_objects=False, referring=False)
    assert no_obj.needs_detections is False and model.needs_detections is True
    assert no_obj.location is None and no_obj.object_proj is None
    bare = make_batch(b=2, t=4, size=32, with_detections=False)
    out = no_obj(bare)
    loss = no_obj.criterion()(out, bare).total
    assert torch.isfinite(loss)
    assert_valid_boxes(out.boxes)
    loss.backward()

    with pytest.raises(RavarError, match="det_boxes"):
        model(bare)


def test_outputs_average_the_two_head_sets_and_losses_are_per_head() -> None:
    model = build()
    model.eval()
    batch = make_batch(b=2, t=4, size=32)
    with torch.no_grad():
        out = model(batch)
        heads = out.heads
        losses = model.criterion()(out, batch)
    assert set(heads) == {"temporal", "spatial"}
    (lt, bt), (ls, bs) = heads["temporal"], heads["spatial"]
    assert not torch.allclose(lt, ls)  # two different head sets
    assert torch.allclose(out.logits, (lt + ls) / 2, atol=1e-6)
    assert torch.allclose(out.boxes, (bt + bs) / 2, atol=1e-6)
    cfg = model.config.loss
    expected = {
        k: (compute_losses(lt, bt, batch["labels"], batch["box"], cfg)[k]
            + compute_losses(ls, bs, batch["labels"], batch["box"], cfg)[k]) / 2
        for k in ("loss", "action_focal", "box_iou")
    }  # fmt: skip
    assert torch.allclose(losses.total, expected["loss"], atol=1e-6)
    assert torch.allclose(losses.named["box_iou"], expected["box_iou"], atol=1e-6)
    # loss_per_head=false: the losses of the averaged outputs
    model.config.loss_per_head = False
    with torch.no_grad():
        mean_loss = model.criterion()(model(batch), batch).total
    ref = compute_losses(out.logits, out.boxes, batch["labels"], batch["box"], cfg)
    assert torch.allclose(mean_loss, ref["loss"], atol=1e-6)


def test_bad_batches_raise_errors_naming_the_culprit() -> None:
    model = build()
    batch = make_batch(b=2, t=4, size=32)
    with pytest.raises(RavarError, match=r"batch\['frames'\]"):
        model({**batch, "frames": batch["frames"][:, None]})  # multi-clip [B, K, T, ...]
    with pytest.raises(ConfigError, match="clip.num_frames=4"):
        model(make_batch(b=2, t=6, size=32))
    with pytest.raises(RavarError, match=r"batch\['text'\]"):
        model({**batch, "text": batch["text"][:1]})


class GridBackbone(nn.Module):
    """Stand-in visual backbone that returns a fixed token grid [B, T, Q, C]."""

    def __init__(self, grid: torch.Tensor) -> None:
        super().__init__()
        self.grid = grid
        self.dim = grid.shape[-1]
        self.tokens_per_frame = grid.shape[2]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.grid


def grid_model(grid: torch.Tensor, **overrides: object) -> RefAtomNetPP:
    """A small model whose visual tokens are exactly `grid` (identity projection, no position
    embeddings)."""
    model = build(**{"visual.dim": grid.shape[-1], "dim": grid.shape[-1], **overrides})
    model.visual = GridBackbone(grid)
    model.visual_proj = nn.Identity()
    with torch.no_grad():
        model.time_pos.zero_()
        model.token_pos.zero_()
    return model.eval()


def test_model_keeps_time_and_token_axes_straight() -> None:
    b, t, q, c = 2, 4, 16, 64
    grid = encoded_grid(b, t, q, c)
    model = grid_model(grid)
    model.scan_time = None  # look at the views of the raw tokens
    batch = make_batch(b=b, t=t, size=32)
    with torch.no_grad():
        feats = model.encode(batch)
    assert torch.equal(feats["tokens"], grid)
    assert torch.allclose(feats["temporal"][..., 0], grid[..., 0].mean(2))
    assert torch.allclose(feats["temporal"][1, :, 0], 1000 * torch.arange(t).float() + (q - 1) / 2)
    assert torch.allclose(feats["spatial"][0, :, 0], 1000 * (t - 1) / 2 + torch.arange(q).float())
    for level in ("keyword", "object"):
        sel = feats[f"{level}_selection"]
        # each trajectory step is the token of ITS frame that the selection picked
        expected = 1000 * torch.arange(t).float()[None, None, :] + sel.index.float()
        assert torch.equal(sel.tokens[..., 0], expected)
        assert torch.equal(sel.tokens[..., 1], 100000 * torch.arange(b).float()[:, None, None]
                           .expand_as(expected))  # fmt: skip


@pytest.mark.parametrize("scan", ["temporal", "flat"])
def test_visual_mamba_scans_follow_time(scan: str) -> None:
    # change one token (frame 2, token 5) and see which outputs move: per-token scans along time
    # touch only token 5 from frame 2 on; the flat scan touches what comes later in time order
    b, t, q, c = 1, 4, 16, 64
    grid = torch.randn(b, t, q, c)
    model = grid_model(grid, visual_scan=scan)
    with torch.no_grad():
        before = model.scan_visual(grid)
        changed = grid.clone()
        changed[0, 2, 5] += torch.randn(c)  # not a constant: LayerNorm would remove it
        after = model.scan_visual(changed)
    moved = (before - after).abs().amax(-1)[0] > 1e-6  # [T, Q]
    expected = torch.zeros(t, q, dtype=torch.bool)
    if scan == "temporal":
        expected[2:, 5] = True
    else:
        expected.view(-1)[2 * q + 5 :] = True
    assert torch.equal(moved, expected)


@pytest.mark.parametrize("mode", ["straight_through", "soft"])
def test_gradients_reach_the_keyword_and_object_projections(mode: str) -> None:
    model = build(selection=mode)
    model.train()
    batch = make_batch(b=2, t=4, size=32)
    model.criterion()(model(batch), batch).total.backward()
    for proj in (model.keyword_proj, model.object_proj):
        assert proj.weight.grad is not None
        assert proj.weight.grad.abs().sum() > 0


def test_frozen_minilm_text_stays_frozen_and_in_eval_mode() -> None:
    model = build(**small_overrides(text="minilm"))
    model.train()
    assert model.text.frozen_part is not None and not model.text.frozen_part.training
    assert not any(p.requires_grad for p in model.text.parameters())
    batch = make_batch(b=2, t=4, size=32)
    model.criterion()(model(batch), batch).total.backward()
    assert model.keyword_proj.weight.grad.abs().sum() > 0
    total, trainable = model.param_counts()
    assert total - trainable == sum(p.numel() for p in model.text.parameters())


def test_loss_falls_when_overfitting_16_clips() -> None:
    model = build()
    model.train()
    batch = make_batch(b=16, t=4, size=32, d=3, seed=1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    criterion = model.criterion()
    for _ in range(25):
        loss = criterion(model(batch), batch).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


@pytest.mark.slow
def test_base_builds_with_random_weights_and_runs() -> None:
    torch.manual_seed(0)
    model = create_model("refatomnet_pp_base")
    total, trainable = model.param_counts()
    print(f"refatomnet_pp_base: {total:,} parameters, {trainable:,} trainable")
    assert trainable < total  # BLIP-2 and MiniLM frozen
    model.eval()
    batch = make_batch(b=1, t=2, size=224, d=4)
    with torch.no_grad():
        out = model(batch)
        loss = model.criterion()(out, batch).total
    assert out.logits.shape == (1, 80)
    assert torch.isfinite(loss)
    assert_valid_boxes(out.boxes)
