"""The referring head (pick the referred person among the detections) and the person-centric
appearance features of the location-semantic stream."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ravar.data.dummy import dummy_batch
from ravar.models import create_model
from ravar.models.losses import selection_loss
from ravar.models.referring import ReferringHead, refine_boxes, target_person
from ravar.models.roi import DetectionAppearance
from ravar.util.box_ops import box_iou

ONE_WORD = torch.ones(1, 1, dtype=torch.bool)  # a query of one word


def words(query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries [n, C] as sentences of three words: the query, a filler word (the same in every
    sentence, like "the"), and padding: [n, 3, C] and mask [n, 3]."""
    n, c = query.shape
    filler = torch.linspace(-2.0, 2.0, c).expand(n, c)
    padding = 100.0 * torch.randn(n, c)  # masked out: must not matter
    mask = torch.tensor([[True, True, False]]).expand(n, 3)
    return torch.stack([query, filler, padding], 1), mask


def _boxes() -> torch.Tensor:
    return torch.tensor(
        [[[0.1, 0.2, 0.3, 0.8], [0.5, 0.2, 0.7, 0.8], [0.0, 0.0, 1.0, 1.0]]]
    )  # [1, 3, 4]


def test_refine_boxes_zero_delta_is_identity_and_extremes_stay_valid() -> None:
    boxes = torch.tensor([[0.1, 0.2, 0.3, 0.8], [0.9, 0.9, 1.0, 1.0]])
    assert torch.allclose(refine_boxes(boxes, torch.zeros(2, 4)), boxes, atol=1e-6)
    out = refine_boxes(boxes, torch.tensor([[1e4, -1e4, 1e4, 1e4], [1e4, 1e4, -1e4, -1e4]]))
    assert (out >= 0).all() and (out <= 1).all()
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    # a shift of +1 (tanh -> ~1) moves the centre by max_shift box widths
    moved = refine_boxes(boxes[:1], torch.tensor([[20.0, 0.0, 0.0, 0.0]]), max_shift=0.25)
    assert torch.allclose(moved[0, 0], boxes[0, 0] + 0.25 * 0.2, atol=1e-5)


def test_target_person_is_the_best_overlapping_person_only() -> None:
    boxes = _boxes()
    true = torch.tensor([[0.5, 0.2, 0.7, 0.8]])
    person = torch.tensor([[True, True, False]])
    index, valid = target_person(boxes, person, true, min_iou=0.5)
    assert index.tolist() == [1] and valid.tolist() == [True]
    # the same person not flagged as a person: the full-image box is not a person either
    index, valid = target_person(boxes, torch.tensor([[True, False, False]]), true, 0.5)
    assert index.tolist() == [0] and valid.tolist() == [False]  # IoU 0 < 0.5: no target
    expected = box_iou(boxes[0], true)[:, 0].masked_fill(~person[0], -1).argmax()
    assert int(expected) == 1


def test_head_teacher_forcing_loss_and_initial_box() -> None:
    torch.manual_seed(0)
    head = ReferringHead(dim=8)
    people = torch.randn(1, 3, 8)
    person = torch.tensor([[True, True, False]])
    query = torch.randn(1, 8)
    true = torch.tensor([[0.5, 0.2, 0.7, 0.8]])
    head.train()
    out = head(people, person, _boxes(), query[:, None], ONE_WORD, true)
    normed = head.norm_people(people)
    assert torch.allclose(out.selected, normed[:, 1], atol=1e-6)  # the true person's token
    assert torch.allclose(out.boxes, _boxes()[:, 1], atol=1e-6)  # delta starts at zero
    expected = F.cross_entropy(out.scores, torch.tensor([1]))
    assert torch.allclose(selection_loss(out.scores, out.target, out.valid), expected, atol=1e-6)
    assert out.scores[0, 2] < -1e3  # not a person: never picked
    head.eval()
    out = head(people, person, _boxes(), query[:, None], ONE_WORD)
    assert out.target is None
    pick = int(out.scores[0, :2].argmax())
    assert torch.allclose(out.boxes, _boxes()[:, pick], atol=1e-6)
    weights = out.scores.softmax(-1)
    assert torch.allclose(out.selected, (weights[..., None] * normed).sum(1), atol=1e-5)


def test_head_learns_to_pick_the_person_that_matches_the_query() -> None:
    torch.manual_seed(0)
    head = ReferringHead(dim=16)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    boxes = torch.tensor([[[0.0, 0.0, 0.2, 0.5], [0.3, 0.0, 0.5, 0.5], [0.6, 0.0, 0.8, 0.5]]])

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        people = torch.randn(n, 3, 16)
        target = torch.randint(0, 3, (n,))
        query = people[torch.arange(n), target] + 0.1 * torch.randn(n, 16)
        return people, query, target

    person = torch.ones(64, 3, dtype=torch.bool)
    for _ in range(150):
        people, query, target = sample(64)
        out = head(people, person, boxes.expand(64, -1, -1), *words(query), boxes[0, target])
        opt.zero_grad()
        selection_loss(out.scores, out.target, out.valid).backward()
        opt.step()
    head.eval()
    people, query, target = sample(256)
    with torch.no_grad():
        everyone = torch.ones(256, 3, dtype=torch.bool)
        out = head(people, everyone, boxes.expand(256, -1, -1), *words(query))
    accuracy = (out.scores.argmax(1) == target).float().mean().item()
    assert accuracy > 0.8  # chance is 1/3


def test_head_ignores_padded_words() -> None:
    torch.manual_seed(0)
    head = ReferringHead(dim=8).eval()
    people, query = torch.randn(2, 3, 8), torch.randn(2, 8)
    person = torch.ones(2, 3, dtype=torch.bool)
    a = head(people, person, _boxes().expand(2, -1, -1), *words(query))
    b = head(people, person, _boxes().expand(2, -1, -1), *words(query))  # other padding values
    assert torch.equal(a.scores, b.scores)
    one = head(people, person, _boxes().expand(2, -1, -1), query[:, None], ONE_WORD.expand(2, 1))
    assert not torch.allclose(one.scores, a.scores)  # the filler word does count


def test_detection_appearance_only_for_kept_detections_and_sees_the_crop() -> None:
    torch.manual_seed(0)
    enc = DetectionAppearance((8, 4), margin=0.0, width=8, out_dim=6)
    frames = torch.zeros(1, 2, 3, 16, 16)
    frames[:, :, :, :, :8] = 1.0  # left half white
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]]])
    keep = torch.tensor([[True, True, False]])
    out = enc(frames, boxes, keep)
    assert out.shape == (1, 3, 6)
    assert torch.equal(out[0, 2], torch.zeros(6))
    assert not torch.allclose(out[0, 0], out[0, 1])  # white crop vs black crop
    # same crop content -> same features, wherever the box is
    frames2 = torch.zeros(1, 2, 3, 16, 16)
    frames2[:, :, :, :, 8:] = 1.0
    out2 = enc(frames2, boxes[:, 1:2], torch.tensor([[True]]))
    assert torch.allclose(out2[0, 0], out[0, 0], atol=1e-5)


def test_appearance_vectors_are_at_unit_scale() -> None:
    # added to the box/category and trajectory features of a person: at the scale of a fresh
    # linear layer (~0.05) it was drowned by them, and person actions were not learned
    torch.manual_seed(0)
    enc = DetectionAppearance((32, 16), margin=0.1, width=16, out_dim=32)
    frames = torch.randn(3, 4, 3, 64, 64)
    boxes = torch.tensor([[0.1, 0.2, 0.3, 0.9], [0.5, 0.1, 0.7, 0.8]]).expand(3, -1, -1)
    out = enc(frames, boxes, torch.ones(3, 2, dtype=torch.bool))  # [3, 2, 32]
    per_vector = out.flatten(0, 1)
    assert torch.allclose(per_vector.std(-1, unbiased=False), torch.ones(6), atol=1e-3)


@pytest.mark.parametrize("name", ["refatomnet_tiny", "refatomnet_pp_tiny"])
def test_models_with_referring_add_the_selection_loss_and_pick_a_detection(name: str) -> None:
    batch = dummy_batch(batch_size=2, num_frames=8, size=64, num_detections=3, seed=1)
    batch["det_categories"] = [["person", "person", ""], ["cup", "chair", ""]]
    batch["box"] = batch["det_boxes"][:, 1].clone()  # sample 0: the truth is person 1
    model = create_model(name, **{"referring": True, "location.appearance": True})
    model.train()
    losses = model.criterion()(model(batch), batch)
    assert "select" in losses.named and torch.isfinite(losses.total)
    losses.total.backward()
    crop_grad = model.location.appearance.encoder.out[0].weight.grad
    assert crop_grad is not None and crop_grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        boxes = model({k: v for k, v in batch.items() if k not in ("box", "labels")}).boxes
    # sample 0 has people: its box is one of them (the refinement starts at zero);
    # sample 1 has none: the regression head answers
    dists = (boxes[0][None] - batch["det_boxes"][0, :2]).abs().amax(-1)
    assert dists.min() < 1e-5
    assert (boxes[1] >= 0).all() and (boxes[1] <= 1).all()


def test_referring_needs_the_detections_stream() -> None:
    from ravar.config import ConfigError

    with pytest.raises(ConfigError, match="use_location"):
        create_model("refatomnet_tiny", referring=True, use_location=False)


def test_word_match_is_cosine_of_people_and_frozen_words_weighted_by_relevance() -> None:
    torch.manual_seed(0)
    head = ReferringHead(dim=8, text_dim=6).eval()
    people = torch.randn(2, 3, 8)
    text_words = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    got = head.word_match(people, text_words, mask)  # [2, 3]
    # independent computation, one (sample, person) at a time
    for b in range(2):
        n = int(mask[b].sum())
        rel = head.relevance(text_words[b, :n])[:, 0].softmax(0)  # [n]
        for d in range(3):
            k = head.to_text(people[b, d])
            cos = torch.stack([F.cosine_similarity(text_words[b, i], k, dim=0) for i in range(n)])
            assert got[b, d].item() == pytest.approx(10.0 * (rel * cos).sum().item(), abs=1e-5)


def test_word_match_learns_to_pick_the_person_whose_features_meet_a_fixed_word() -> None:
    # the words are fixed vectors (a frozen encoder); only the person side may move to meet them
    torch.manual_seed(0)
    vocab = F.normalize(torch.randn(4, 12), dim=-1)  # four "colour words" [4, Ct]
    colours = torch.randn(4, 16)  # what each colour looks like in person features [4, C]
    head = ReferringHead(dim=16, text_dim=12)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    boxes = torch.tensor([[[0.0, 0.0, 0.2, 0.5], [0.3, 0.0, 0.5, 0.5], [0.6, 0.0, 0.8, 0.5]]])

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        colour = torch.stack([torch.randperm(4)[:3] for _ in range(n)])  # [n, 3] distinct
        people = colours[colour] + 0.3 * torch.randn(n, 3, 16)
        target = torch.randint(0, 3, (n,))
        word = vocab[colour[torch.arange(n), target]][:, None, :]  # [n, 1, Ct]
        return people, word, target

    person = torch.ones(64, 3, dtype=torch.bool)
    # the pointwise query path sees a constant word (no information): only word matching can tell
    blank = torch.zeros(64, 1, 16)
    for _ in range(150):
        people, word, target = sample(64)
        out = head(people, person, boxes.expand(64, -1, -1), blank, ONE_WORD.expand(64, 1),
                   boxes[0, target], text_words=word)  # fmt: skip
        opt.zero_grad()
        selection_loss(out.scores, out.target, out.valid).backward()
        opt.step()
    head.eval()
    people, word, target = sample(256)
    with torch.no_grad():
        out = head(people, torch.ones(256, 3, dtype=torch.bool), boxes.expand(256, -1, -1),
                   torch.zeros(256, 1, 16), ONE_WORD.expand(256, 1), text_words=word)  # fmt: skip
    assert (out.scores.argmax(1) == target).float().mean().item() > 0.9  # chance is 1/3
    with pytest.raises(ValueError, match="text_words"):
        head(people, torch.ones(256, 3, dtype=torch.bool), boxes.expand(256, -1, -1),
             torch.zeros(256, 1, 16), ONE_WORD.expand(256, 1))  # fmt: skip


@pytest.mark.parametrize("name", ["refatomnet_tiny", "refatomnet_pp_tiny"])
def test_models_with_word_match_train_its_projection(name: str) -> None:
    batch = dummy_batch(batch_size=2, num_frames=8, size=64, num_detections=3, seed=1)
    batch["det_categories"] = [["person", "person", ""], ["person", "chair", ""]]
    batch["box"] = batch["det_boxes"][:, 0].clone()
    model = create_model(name, word_match=True)
    model.train()
    losses = model.criterion()(model(batch), batch)
    losses.total.backward()
    grad = model.referring.to_text.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.referring.to_text.in_features == model.config.dim
    assert model.referring.to_text.out_features == model.text.dim


@pytest.mark.parametrize("name", ["refatomnet_tiny", "refatomnet_pp_tiny"])
def test_own_referring_encoder_keeps_picking_and_actions_apart(name: str) -> None:
    batch = dummy_batch(batch_size=2, num_frames=8, size=64, num_detections=3, seed=1)
    batch["det_categories"] = [["person", "person", ""], ["person", "person", "chair"]]
    batch["box"] = batch["det_boxes"][:, 1].clone()  # both samples: person 1 is meant
    model = create_model(name, referring_encoder="own", word_match=True)
    model.train()
    out = model(batch)
    assert out.selection_target.tolist() == [1, 1] and out.selection_valid.all()
    losses = model.criterion()(out, batch)

    def grads(loss: torch.Tensor) -> tuple[float, float]:
        model.zero_grad()
        loss.backward(retain_graph=True)
        own = model.referring_location.appearance.encoder.out[0].weight.grad
        main = model.location.appearance.encoder.out[0].weight.grad
        size = [0.0 if g is None else float(g.abs().sum()) for g in (own, main)]
        return size[0], size[1]

    # the selection loss shapes only the referring head's encoder ...
    own, main = grads(losses.named["select"])
    assert own > 0 and main == 0
    # ... and the action loss, with the picked person given in training, only the model's own
    action = sum(v for k, v in losses.named.items() if k.startswith("action"))
    own, main = grads(action)
    assert own == 0 and main > 0
    with pytest.raises(ValueError, match="referring_encoder"):
        create_model(name, referring_encoder="both")


def _context_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes [1, 5, 4] of four people far apart (x centres 0.1 .. 0.85, feet at different
    heights) and a padded slot, and the person mask [1, 5]."""
    xs, feet = [0.1, 0.35, 0.6, 0.85], [0.9, 0.5, 0.7, 0.3]
    boxes = [[x - 0.05, f - 0.3, x + 0.05, f] for x, f in zip(xs, feet, strict=True)]
    boxes.append([0.0, 0.0, 0.0, 0.0])
    return torch.tensor([boxes]), torch.tensor([[True, True, True, True, False]])


def test_people_context_counts_the_fitting_people_and_the_anchor_as_a_loop_does() -> None:
    torch.manual_seed(0)
    head = ReferringHead(dim=8, context=True)
    boxes, person = _context_scene()
    fits = [True, False, True, True, False]  # stage 1: people 0, 2, 3 fit the description
    stage1 = torch.tensor([[30.0 if f else -30.0 for f in fits]])
    query, mask = words(torch.randn(1, 8))
    ctx = head.people_context(stage1, torch.randn(1, 5, 8), person, boxes, query, mask)[0]
    anchor = ctx[:, 9].tolist()  # the learned anchor weights, one per person
    assert abs(sum(anchor) - 1.0) < 1e-5 and anchor[4] == 0.0
    x = [float(b[0] + b[2]) / 2 for b in boxes[0]]
    y = [float(b[3]) for b in boxes[0]]
    people = range(4)
    for d in people:
        others = [e for e in people if e != d]
        fit = [e for e in others if fits[e]]
        between = [
            len([f for f in people if min(x[d], x[e]) < x[f] < max(x[d], x[e])]) for e in people
        ]
        expected = [
            len([e for e in fit if x[e] < x[d]]),
            len([e for e in fit if x[e] > x[d]]),
            len([e for e in fit if y[e] > y[d]]),
            len([e for e in fit if y[e] < y[d]]),
            3.0,
            float(fits[d]),
            sum(anchor[e] for e in others if x[e] > x[d]),
            sum(anchor[e] for e in others if x[e] < x[d]),
            sum(anchor[e] * math.exp(-between[e]) for e in others),
            anchor[d],
        ]
        assert ctx[d].tolist() == pytest.approx(expected, abs=1e-3), d


def test_people_context_learns_the_second_from_the_left_of_a_colour() -> None:
    """ "The second red one from the left" needs the other people: one score per person, compared
    by the softmax, finds the leftmost red one (lowest x among red) but not the second; the
    context stage counts the red people left of each."""
    torch.manual_seed(0)
    d, c = 4, 16

    def sample(n: int) -> tuple[torch.Tensor, ...]:
        x = torch.rand(n, d) * 0.1 + torch.arange(d) * 0.25  # [n, D] far apart
        perm = torch.argsort(torch.rand(n, d), dim=1)  # the slot order carries no position
        x = x.gather(1, perm)
        boxes = torch.stack(
            [x - 0.05, torch.full_like(x, 0.2), x + 0.05, torch.full_like(x, 0.9)], -1
        )
        colour = torch.randint(0, 2, (n, d))
        wanted = colour[:, 0]
        colour[:, 1] = wanted  # at least two people have the wanted colour
        side = torch.randint(0, 2, (n,))  # 0: second from the left, 1: second from the right
        fits = colour == wanted[:, None]  # [n, D]
        rank = (fits[:, None, :] & (x[:, None, :] < x[:, :, None])).sum(-1)  # fitting ones left
        rank = torch.where(side[:, None] == 0, rank, fits.sum(1, keepdim=True) - 1 - rank)
        target = (fits & (rank == 1)).float().argmax(1)  # [n]
        people = 0.3 * torch.randn(n, d, c)
        people[..., 0] += 2.0 * (colour == 1) - 1.0
        query = 0.1 * torch.randn(n, c)
        query[:, 0] += 2.0 * wanted - 1.0
        query[:, 1] += 2.0 * side - 1.0
        return people, boxes, query, target

    def accuracy(context: bool) -> float:
        torch.manual_seed(1)
        head = ReferringHead(dim=c, context=context)
        opt = torch.optim.Adam(head.parameters(), lr=3e-3)
        person = torch.ones(64, d, dtype=torch.bool)
        for _ in range(300):
            people, boxes, query, target = sample(64)
            out = head(people, person, boxes, *words(query), boxes[torch.arange(64), target])
            opt.zero_grad()
            selection_loss(out.scores, out.target, out.valid).backward()
            opt.step()
        head.eval()
        people, boxes, query, target = sample(512)
        with torch.no_grad():
            out = head(people, torch.ones(512, d, dtype=torch.bool), boxes, *words(query))
        return (out.scores.argmax(1) == target).float().mean().item()

    alone, context = accuracy(False), accuracy(True)
    assert context > 0.9, (alone, context)
    assert alone < 0.8, (alone, context)


def _match_batch(n: int = 3, d: int = 4) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    people = torch.randn(n, d, 8)
    person = torch.ones(n, d, dtype=torch.bool)
    person[1, 3] = False  # a padded slot
    boxes = torch.rand(n, d, 2).repeat(1, 1, 2) * 0.5 + torch.tensor([0.0, 0.0, 0.3, 0.4])
    text_words = torch.randn(n, 5, 6)
    mask = torch.ones(n, 5, dtype=torch.bool)
    mask[0, 3:] = False
    return people, person, boxes, text_words, mask


def test_batch_contrast_scores_every_sentence_against_every_person_of_the_batch() -> None:
    people, person, boxes, text_words, mask = _match_batch()
    n, d = person.shape
    head = ReferringHead(dim=8, text_dim=6, contrast=True).train()
    query = torch.randn(n, 5, 8)
    out = head(people, person, boxes, query, mask, boxes[:, 0], text_words=text_words)
    got = out.batch_scores.view(n, n, d)  # [sentence, clip, person]
    normed = head.norm_people(people)
    for b in range(n):
        for c in range(n):
            # independent: clip c's people matched against sentence b alone
            ref = head.word_match(normed[c : c + 1], text_words[b : b + 1], mask[b : b + 1])[0]
            for e in range(d):
                want = ref[e].item() if person[c, e] else -1e4
                assert got[b, c, e].item() == pytest.approx(want, abs=1e-4)
    # in evaluation, or without the true box, there is nothing to contrast
    assert head(people, person, boxes, query, mask, text_words=text_words).batch_scores is None
    head.eval()
    out = head(people, person, boxes, query, mask, boxes[:, 0], text_words=text_words)
    assert out.batch_scores is None
    with pytest.raises(ValueError, match="text_dim"):
        ReferringHead(dim=8, contrast=True)


@pytest.mark.parametrize("name", ["refatomnet_tiny", "refatomnet_pp_tiny"])
def test_models_with_contrast_add_the_cross_batch_selection_loss(name: str) -> None:
    from ravar.config import ConfigError

    batch = dummy_batch(batch_size=3, num_frames=8, size=64, num_detections=3, seed=1)
    batch["det_categories"] = [["person", "person", ""], ["person", "chair", ""], ["person"] * 3]
    batch["box"] = batch["det_boxes"][:, 0].clone()
    model = create_model(name, word_match=True, contrast_weight=2.0).train()
    out = model(batch)
    losses = model.criterion()(out, batch)
    # independent: the flat index of clip b's person d* is b * D + d*
    scores = out.selection_batch_scores  # [3, 9]
    assert scores.shape == (3, 9)
    index = torch.tensor([0, 3, 6]) + out.selection_target
    want = 2.0 * F.cross_entropy(scores, index)
    assert losses.named["contrast"].item() == pytest.approx(want.item(), rel=1e-5)
    assert (
        "contrast"
        not in create_model(name, word_match=True)
        .criterion()(create_model(name, word_match=True).train()(batch), batch)
        .named
    )
    with pytest.raises(ConfigError, match="word_match"):
        create_model(name, contrast_weight=1.0)
    with pytest.raises(ConfigError, match="contrast_weight"):
        create_model(name, word_match=True, contrast_weight=-1.0)


@pytest.mark.parametrize("contrast", [False, True])
def test_contrast_teaches_words_from_clips_of_one_person(contrast: bool) -> None:
    # every training clip shows one person: picking within the clip is trivial and teaches
    # nothing; against the other clips' people the sentence's colour word must be matched
    torch.manual_seed(0)
    vocab = F.normalize(torch.randn(4, 12), dim=-1)  # four "colour words" [4, Ct]
    colours = torch.randn(4, 16)  # what each colour looks like in person features [4, C]
    head = ReferringHead(dim=16, text_dim=12, contrast=contrast)
    initial = head.to_text.weight.detach().clone()
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    box = torch.tensor([[[0.3, 0.0, 0.5, 0.5]]])
    for _ in range(150):
        colour = torch.randint(0, 4, (64,))
        people = colours[colour][:, None] + 0.3 * torch.randn(64, 1, 16)
        out = head(people, torch.ones(64, 1, dtype=torch.bool), box.expand(64, -1, -1),
                   torch.zeros(64, 1, 16), ONE_WORD.expand(64, 1), box[:, 0].expand(64, -1),
                   text_words=vocab[colour][:, None])  # fmt: skip
        loss = selection_loss(out.scores, out.target, out.valid)
        if contrast:
            index = torch.arange(64) + out.target  # D = 1
            loss = loss + selection_loss(out.batch_scores, index, out.valid)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # test: three people of distinct colours, the sentence names one of them
    head.eval()
    colour = torch.stack([torch.randperm(4)[:3] for _ in range(256)])  # [256, 3]
    people = colours[colour] + 0.3 * torch.randn(256, 3, 16)
    target = torch.randint(0, 3, (256,))
    word = vocab[colour[torch.arange(256), target]][:, None]
    boxes = torch.tensor([[[0.0, 0.0, 0.2, 0.5], [0.3, 0.0, 0.5, 0.5], [0.6, 0.0, 0.8, 0.5]]])
    with torch.no_grad():
        out = head(people, torch.ones(256, 3, dtype=torch.bool), boxes.expand(256, -1, -1),
                   torch.zeros(256, 1, 16), ONE_WORD.expand(256, 1), text_words=word)  # fmt: skip
    accuracy = (out.scores.argmax(1) == target).float().mean().item()
    if contrast:
        assert accuracy > 0.9  # chance is 1/3
    else:  # the selection loss of a one-person clip is 0: the word match never moved
        assert torch.equal(head.to_text.weight, initial)
