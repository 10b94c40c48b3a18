"""Referring head: the sentence picks one of the detected people, whose features the action head
reads and whose box (refined) is the answer.

    q    = sum_l softmax_l(a . LN(u_l)) u_l       the query: the words u_l [B, L, C] pooled
                                                 by learned attention ("left", "hat")  [B, C]
    g_d  = MLP(geometry(box_d))                   where person d is, on its own path  [B, D, C]
    s_d  = MLP([p_d, g_d, q * p_d, q * g_d])     score of person d for the query q   [B, D]
    w    = softmax_d(s_d) over the people        (-inf where there is no person)    [B, D]
    d*   = argmax_d IoU(box_d, true box)         the person to pick, when IoU >= min_iou
    (the loss, select_weight * CrossEntropy(s, d*) over the samples that have a d*, is the
    "select" term of `ravar.models.losses.Criterion`)
    selected = p_{d*} when training with targets (teacher forcing), else sum_d w_d p_d
    box  = refine(box_{argmax s}, MLP(selected)) (in training: refine(box_{d*}, ...))
With `text_dim` (word matching: model key `word_match`, off by default), each person also meets
the words of the frozen text encoder in that encoder's own space:
    k_d  = normalise(W_k LN(p_d))                 person d in the text space       [B, D, Ct]
    m_d  = tau * sum_l r_l <normalise(e_l), k_d>  r = softmax_l(relevance(e_l))   [B, D]
    s_d += m_d
where e_l [B, L, Ct] are the frozen word tokens. Only the visual side moves, towards word
embeddings that already mean something ("crimson" near "red"). On RefAVA-Synth `standard` it
picks the right person more often (`benchmarks/referring_probe.py`, 1000 steps, two seeds: 61.8%
against 55.8%), but in the full tiny models it reshapes the person token the action head also
reads, and the actions lose (docs/learning.md).
Since m_d = tau * <sum_l r_l normalise(e_l), k_d> is linear in the pooled words, every sentence of
a batch can be matched against every person of the batch at the cost of one product. With
`contrast` (model key `contrast_weight` > 0), training with the true box also gives
    M[b, (n, d)] = tau * <sum_l r_bl normalise(e_bl), k_nd>     [B, B*D]
and the "contrast" loss term is the cross-entropy of M against the referred person of clip b
among all the batch's people: the people of other clips are negatives whose shirts, hats and
kinds differ more often than within a clip, so the attribute words are learned sooner.

With `context` (model key `person_context`, off by default), a second stage scores each person
by where they stand among the others, which the first stage cannot see (it reads one person at a
time): "the leftmost woman", "the second from the right", "the man next to the one in yellow".
    m_e  = sigmoid(s_e)                           how much e fits the description (stage 1)
    a_e  = softmax_e(A([p_e, q_a * p_e]))          the relation's anchor, from its own pooling q_a
    x_d, y_d = box centre x and bottom edge (feet: larger = closer to the camera) of person d
    step(z) = sigmoid(z / tau), tau = 0.02 image sizes (near 1 at a gap of 0.06 and more)
    left_d   = sum_{e!=d} m_e step(x_d - x_e)     fitting people left of d (0 for "leftmost")
    right_d, front_d = sum m_e step(y_e - y_d), back_d alike; n = sum_e m_e fitting people
    aleft_d  = sum_e a_e step(x_e - x_d)          the anchor is right of d ("left of the ...")
    aright_d alike; anear_d = sum_e a_e exp(-between_de), between_de = people between d and e in x
    c_d  = [left, right, front, back, n, m_d, aleft, aright, anear, a_d]            [B, D, 10]
    s_d <- s_d + MLP([E c_d, q * E c_d])           E = Linear(10, C)
The counts are soft so that the first stage learns, through them, what "fits" means.

A clip without any person detection falls back to `fallback_box`, the family's regression head.
The box geometry gets its own path into the score: mixed into the person tokens (with appearance
and trajectory features) it is drowned, and "the one on the far left" is then not learned in the
few hundred steps a CPU run has. Likewise the query attends to its words rather than averaging
them: the few words that tell people apart weigh little in a sentence mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ravar.models.heads import MLP
from ravar.util.box_ops import box_cxcywh_to_xyxy, box_features, box_iou, box_xyxy_to_cxcywh

CONTEXT_FEATURES = 10  # per-person context features (`ReferringHead.people_context`)
CONTEXT_TAU = 0.02  # softness of "left of" / "in front of", in image sizes


@dataclass
class ReferringOutput:
    """What the referring head gives for a batch."""

    selected: torch.Tensor  # [B, C] features of the picked person (zeros without people)
    boxes: torch.Tensor  # [B, 4] refined box of the picked person, valid normalised xyxy
    has_person: torch.Tensor  # [B] bool: at least one person detection
    scores: torch.Tensor  # [B, D] selection logits (very negative where there is no person)
    target: torch.Tensor | None  # [B] d*, when the true box was given (and D > 0)
    valid: torch.Tensor | None  # [B] bool: d* reaches min_iou, when the true box was given
    weights: torch.Tensor | None = None  # [B, D] how much of each person `selected` holds
    # [B, B*D] each sentence's word match against every person of the batch (flattened clip-major),
    # when training with `contrast` and the true box
    batch_scores: torch.Tensor | None = None

    def read(self, tokens: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """[B, C]: other per-person tokens [B, D, C] (normalised by `norm`) read with the same
        weights as `selected` (the picked person's, in training with targets)."""
        assert self.weights is not None
        return (self.weights[..., None] * norm(tokens)).sum(dim=1)


def refine_boxes(boxes: torch.Tensor, delta: torch.Tensor, max_shift: float = 0.25) -> torch.Tensor:
    """Move and rescale xyxy `boxes` [B, 4] by `delta` [B, 4] (unbounded): centre shifts of at most
    `max_shift` box sizes, sizes scaled by exp(+-max_shift); clipped to the image, always valid."""
    cx, cy, w, h = box_xyxy_to_cxcywh(boxes).unbind(-1)  # [B] each
    d = max_shift * torch.tanh(delta)  # [B, 4]
    cx, cy = cx + d[:, 0] * w, cy + d[:, 1] * h
    w, h = w * torch.exp(d[:, 2]), h * torch.exp(d[:, 3])
    out = box_cxcywh_to_xyxy(torch.stack([cx, cy, w, h], dim=-1)).clamp(0.0, 1.0)  # [B, 4]
    x1, y1, x2, y2 = out.unbind(-1)
    eps = 1e-3
    x1, y1 = x1.clamp(max=1 - eps), y1.clamp(max=1 - eps)
    return torch.stack([x1, y1, torch.maximum(x2, x1 + eps), torch.maximum(y2, y1 + eps)], -1)


def target_person(
    det_boxes: torch.Tensor, person: torch.Tensor, true_box: torch.Tensor, min_iou: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index [B] of the person detection that overlaps `true_box` [B, 4] most, and [B] bool
    whether that overlap reaches `min_iou` (else the sample has no target)."""
    ious = torch.stack(
        [box_iou(det_boxes[i], true_box[i : i + 1])[:, 0] for i in range(det_boxes.shape[0])]
    )  # [B, D]
    ious = ious.masked_fill(~person, -1.0)
    best, index = ious.max(dim=1)  # [B], [B]
    return index, best >= min_iou


class ReferringHead(nn.Module):
    """Scores people against a query, picks one, and refines its box (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        min_iou: float = 0.5,
        dropout: float = 0.0,
        text_dim: int | None = None,
        context: bool = False,
        contrast: bool = False,
    ) -> None:
        super().__init__()
        self.norm_people = nn.LayerNorm(dim)
        self.norm_query = nn.LayerNorm(dim)
        self.word_weight = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))
        self.geometry = MLP(8, dim, dim, layers=2)
        self.score = MLP(4 * dim, dim, 1, layers=2, dropout=dropout)
        self.delta = MLP(dim, dim, 4, layers=2, dropout=dropout)
        nn.init.zeros_(self.delta.net[-1].weight)  # start from the detection's own box
        nn.init.zeros_(self.delta.net[-1].bias)
        self.min_iou = min_iou
        self.text_dim = text_dim
        if text_dim is not None:
            self.to_text = nn.Linear(dim, text_dim)
            self.relevance = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, 1))
            self.match_scale = nn.Parameter(torch.tensor(10.0))
        elif contrast:
            raise ValueError("ReferringHead: contrast matches words: it needs text_dim")
        self.contrast = contrast
        self.context = context
        if context:
            self.anchor_word_weight = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1))
            self.norm_anchor = nn.LayerNorm(dim)
            self.anchor_score = MLP(2 * dim, dim, 1, layers=2, dropout=dropout)
            self.context_embed = nn.Linear(CONTEXT_FEATURES, dim)
            self.context_score = MLP(2 * dim, dim, 1, layers=2, dropout=dropout)

    @staticmethod
    def pool(weight: nn.Module, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """[B, C]: the words [B, L, C] pooled by the learned attention `weight`."""
        attn = weight(words)[..., 0].masked_fill(~word_mask, -1e4).softmax(1)  # [B, L]
        return (attn[..., None] * words).sum(1)

    def people_context(
        self,
        stage1: torch.Tensor,
        people: torch.Tensor,
        person: torch.Tensor,
        det_boxes: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
    ) -> torch.Tensor:
        """c [B, D, 10]: where each person stands among the people that fit the description and
        beside the relation's anchor (see the module docstring); stage1 [B, D] the first scores,
        people [B, D, C] normalised tokens."""
        d = people.shape[1]
        valid = person.to(people.dtype)  # [B, D]
        eye = torch.eye(d, dtype=people.dtype, device=people.device)  # [D, D]
        others = valid[:, None, :] * (1 - eye)
        # others[b, d, e]: e is a person other than d  [B, D, D]
        fit = torch.sigmoid(stage1) * valid  # [B, D] m
        q_a = self.norm_anchor(self.pool(self.anchor_word_weight, words, word_mask))  # [B, C]
        anchor = self.anchor_score(torch.cat([people, q_a[:, None] * people], -1))[..., 0]
        anchor = anchor.masked_fill(~person, -1e4).softmax(1) * valid  # [B, D] a
        x = 0.5 * (det_boxes[..., 0] + det_boxes[..., 2]).to(people.dtype)  # [B, D]
        y = det_boxes[..., 3].to(people.dtype)  # [B, D] feet

        def step(z: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(z / CONTEXT_TAU)

        dx = x[:, :, None] - x[:, None, :]  # [B, D, D] x_d - x_e
        dy = y[:, :, None] - y[:, None, :]  # [B, D, D] y_d - y_e
        w_fit = others * fit[:, None, :]  # [B, D, D] m_e for e != d
        w_anchor = others * anchor[:, None, :]  # [B, D, D] a_e for e != d
        lo = torch.minimum(x[:, :, None], x[:, None, :])  # [B, D, D]
        hi = torch.maximum(x[:, :, None], x[:, None, :])
        xf = x[:, None, None, :]  # [B, 1, 1, D] the third person f
        inside = step(xf - lo[..., None]) * step(hi[..., None] - xf)
        # inside[b, d, e, f]: f stands between d and e; f must be neither of them  [B, D, D, D]
        not_ends = (1 - eye[:, None, :]) * (1 - eye[None, :, :])  # [D, D, D] f != d, f != e
        between = (inside * not_ends * valid[:, None, None, :]).sum(-1)  # [B, D, D]
        feats = [
            (w_fit * step(dx)).sum(-1),  # fitting people left of d
            (w_fit * step(-dx)).sum(-1),  # right of d
            (w_fit * step(-dy)).sum(-1),  # in front of d (feet lower in the image)
            (w_fit * step(dy)).sum(-1),  # behind d
            fit.sum(1, keepdim=True).expand(-1, d),  # how many fit
            fit,
            (w_anchor * step(-dx)).sum(-1),  # the anchor is right of d
            (w_anchor * step(dx)).sum(-1),  # the anchor is left of d
            (w_anchor * torch.exp(-between)).sum(-1),  # the anchor is d's neighbour
            anchor,
        ]
        return torch.stack(feats, -1)  # [B, D, 10]

    def word_match(
        self, people: torch.Tensor, text_words: torch.Tensor, word_mask: torch.Tensor
    ) -> torch.Tensor:
        """m [B, D]: how well each person (normalised tokens [B, D, C]) matches the frozen word
        tokens `text_words` [B, L, Ct] (see the module docstring)."""
        return self._word_match(people, text_words, word_mask, across=False)[0]

    def _word_match(
        self, people: torch.Tensor, text_words: torch.Tensor, word_mask: torch.Tensor, across: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`word_match` [B, D], and with `across` every sentence against every clip's people:
        M [B, N=B, D] (see the module docstring)."""
        keys = F.normalize(self.to_text(people), dim=-1)  # [B, D, Ct]
        text_words = text_words.to(keys.dtype)
        relevance = self.relevance(text_words)[..., 0]  # [B, L]
        relevance = relevance.masked_fill(~word_mask, -1e4).softmax(dim=1)  # [B, L]
        pooled = (relevance[..., None] * F.normalize(text_words, dim=-1)).sum(1)  # [B, Ct]
        match = self.match_scale * torch.einsum("bc,bdc->bd", pooled, keys)  # [B, D]
        if not across:
            return match, None
        return match, self.match_scale * torch.einsum("bc,ndc->bnd", pooled, keys)

    def forward(
        self,
        people: torch.Tensor,
        person: torch.Tensor,
        det_boxes: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        true_box: torch.Tensor | None = None,
        text_words: torch.Tensor | None = None,
    ) -> ReferringOutput:
        """people [B, D, C] tokens, person [B, D] bool (which tokens are people), det_boxes
        [B, D, 4], words [B, L, C] the sentence's tokens, word_mask [B, L] bool (at least one True
        per row), true_box [B, 4] or None; text_words [B, L, Ct] the frozen encoder's word
        tokens (with `text_dim`)."""
        b, d, _ = people.shape
        query = self.norm_query(self.pool(self.word_weight, words, word_mask))  # [B, C]
        people = self.norm_people(people)
        geometry = self.geometry(box_features(det_boxes.to(people.dtype)))  # [B, D, C]
        q = query[:, None, :]  # [B, 1, C]
        scores = self.score(torch.cat([people, geometry, q * people, q * geometry], -1))[..., 0]
        batch_match = None  # [B, N, D] with the contrast
        if self.text_dim is not None:
            if text_words is None or text_words.shape[:2] != words.shape[:2]:
                raise ValueError("ReferringHead with text_dim needs text_words [B, L, Ct]")
            across = self.contrast and self.training and true_box is not None and d > 0
            match, batch_match = self._word_match(people, text_words, word_mask, across)
            scores = scores + match  # [B, D]
        if self.context and d > 0:
            ctx = self.people_context(scores, people, person, det_boxes, words, word_mask)
            e = self.context_embed(ctx)  # [B, D, C]
            scores = scores + self.context_score(torch.cat([e, q * e], -1))[..., 0]  # [B, D]
        scores = scores.masked_fill(~person, -1e4)  # [B, D]
        has_person = person.any(dim=1)  # [B]
        weights = scores.softmax(dim=1) * has_person[:, None].to(people.dtype)  # [B, D]
        pick = scores.argmax(dim=1)  # [B]

        target = valid = None
        if true_box is not None and d > 0:
            target, valid = target_person(det_boxes, person, true_box, self.min_iou)  # [B], [B]
            if self.training:  # teacher forcing: read the right person while learning to pick
                weights = F.one_hot(target, d).to(people.dtype) * valid[:, None]
                weights = torch.where(valid[:, None], weights, scores.softmax(dim=1))
                weights = weights * has_person[:, None].to(people.dtype)
                pick = torch.where(valid, target, pick)
        batch_scores = None
        if batch_match is not None:  # [B, N, D] -> [B, B*D], no person: very negative
            batch_scores = batch_match.masked_fill(~person[None], -1e4).flatten(1)
        selected = (weights[..., None] * people).sum(dim=1)  # [B, C]
        rows = torch.arange(b, device=people.device)
        base = det_boxes[rows, pick] if d > 0 else det_boxes.new_zeros(b, 4)  # [B, 4]
        boxes = refine_boxes(base.to(selected.dtype), self.delta(selected))  # [B, 4]
        return ReferringOutput(
            selected, boxes, has_person, scores, target, valid, weights, batch_scores
        )
