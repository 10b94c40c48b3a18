"""RefAtomNet++ (2025): semantic-retrieval multi-trajectory Mamba with multi-hierarchical
semantic-aligned cross-attention, without the defects of the authors' code.

Pipeline (shapes for one batch; C = `dim`):
    frames [B, T, 3, H, W] -> visual backbone -> [B, T, Q, Cv] -> linear -> + time / token
        position embeddings -> visual tokens V [B, T, Q, C]
    text -> text encoder -> keywords [B, K, Ct] (stop words removed), sentence [B, Ct]
    detections -> location-semantic encoder -> objects [B, D, C]
    Three semantic levels, each projected into the visual space by its own linear layer:
        partial keyword:  trajectories of the keywords,  Mamba along T      -> [B, K*T, C]
        scene attribute:  trajectories of the objects,   Mamba along T      -> [B, D*T, C]
        holistic sentence: the sentence embedding                           -> [B, 1, C]
    (a trajectory takes, in every frame, the token of V most similar to the query; the selection
    is trainable, see `ravar.models.trajectory`.)
    V scanned by Mamba (per token along time, and/or over the whole clip frame after frame), then
        temporal view  = mean over tokens  [B, T, C]
        spatial view   = mean over frames  [B, Q, C]
    Semantic-aligned cross-attention (post-norm blocks): for each view and each level, the level's
    tokens attend to the view, and their masked mean is that level's summary; the summaries of the
    levels a clip has (no scene-attribute level without detections) are averaged into one vector
    per view.
    (`cross_attention_queries="authors"`: the view's tokens attend to the level's tokens instead,
    and the summary is their mean over the view; `trajectory_scan="authors"`: a level's
    trajectories are scanned keyword after keyword as one sequence and averaged over keywords
    into [B, T, C], then the keyword level is scanned once more along time. See docs/fidelity.md.)
    Two head sets (ActionHead + BoxHead), one on each view's summary; logits and boxes are
    averaged (the mean of two valid boxes is a valid box).

Fixes over the authors' code: the time and token axes are never mixed by a reshape; the keyword
and object projections receive gradients (straight-through or soft selection); frames are real
temporal clips (from the Dataset); the Mamba layers run on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from ravar.config import ConfigError
from ravar.data.clip_config import ClipConfig
from ravar.errors import BatchError
from ravar.models.backbones import (
    LocationConfig,
    LocationSemanticEncoder,
    TextConfig,
    VisualConfig,
    build_text,
    build_visual,
)
from ravar.models.base import RAVARModel
from ravar.models.heads import ActionHead, BoxHead
from ravar.models.layers import FeedForward, MultiHeadAttention, resize_pos_embed
from ravar.models.losses import Criterion, LossConfig
from ravar.models.mamba import MambaLayer
from ravar.models.output import ModelOutput
from ravar.models.pooling import masked_mean
from ravar.models.presets import (
    PICK_SWITCHES,
    TINY_ACTION_WEIGHT,
    paper_clip,
    paper_visual,
    tiny_clip,
    tiny_visual,
)
from ravar.models.referring import ReferringHead
from ravar.models.registry import register_family, register_model
from ravar.models.trajectory import (
    SELECTION_MODES,
    Trajectories,
    flatten_trajectories,
    from_per_token_sequences,
    from_time_major,
    mean_over_trajectories,
    per_token_sequences,
    scan_keyword_major,
    scan_trajectories,
    select_trajectories,
    spatial_view,
    temporal_view,
    time_major_sequence,
)

LEVELS: tuple[str, ...] = ("keyword", "object", "sentence")
CROSS_QUERIES: tuple[str, ...] = ("semantic", "authors")
TRAJECTORY_SCANS: tuple[str, ...] = ("per_trajectory", "authors")
VIEWS: tuple[str, ...] = ("temporal", "spatial")


@dataclass
class MambaSettings:
    """Settings shared by every Mamba layer of the model (see `ravar.models.mamba.MambaLayer`)."""

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    backend: str = "auto"
    bidirectional: bool = False


@dataclass
class RefAtomNetPPConfig:
    """RefAtomNet++ hyper-parameters."""

    visual: VisualConfig = field(default_factory=VisualConfig)
    text: TextConfig = field(default_factory=TextConfig)
    location: LocationConfig = field(default_factory=LocationConfig)
    dim: int = 256  # C: width of the fusion part
    heads: int = 8  # attention heads of the cross-attention blocks
    mlp_ratio: float = 4.0  # feed-forward width of the cross-attention blocks, times dim
    dropout: float = 0.1
    mamba: MambaSettings = field(default_factory=MambaSettings)
    visual_scan: Literal["temporal", "flat", "both"] = "temporal"  # how V is scanned
    selection: Literal["straight_through", "soft"] = "straight_through"
    tau: float = 0.1  # softmax temperature of the token selection
    use_keywords: bool = True  # partial-keyword level
    use_objects: bool = True  # scene-attribute level (needs detections)
    use_sentence: bool = True  # holistic-sentence level
    loss_per_head: bool = True  # losses of each head set, averaged (else: of the mean output)
    referring: bool = False  # pick the referred person among the detections (needs use_objects)
    select_weight: float = 1.0  # weight of the person-selection loss (referring only)
    # weight of the cross-batch selection loss: each sentence against every person of the batch
    # by word match (`ravar.models.referring`; needs word_match); 0 = off
    contrast_weight: float = 0.0
    # the referring head also matches people against the frozen text encoder's word tokens in
    # that encoder's space (`ravar.models.referring`); off in checkpoints saved before it
    word_match: bool = False
    # the people the referring head scores: "shared" (the location tokens the action head also
    # reads) or "own" (a second location encoder with its own crop CNN, so that learning to pick
    # and learning the actions do not reshape one token; docs/learning.md)
    referring_encoder: Literal["shared", "own"] = "shared"
    # the referring head also scores each person by where they stand among the people the
    # sentence describes and beside a relation's anchor (`ravar.models.referring`); off in
    # checkpoints saved before it
    person_context: bool = False
    # which side queries in the semantic-aligned cross-attention: "semantic" (a level's tokens
    # attend to the visual view) or "authors" (the view's tokens attend to the level's tokens)
    cross_attention_queries: Literal["semantic", "authors"] = "semantic"
    # "per_trajectory" (each trajectory scanned on its own along time) or "authors" (all of a
    # clip's trajectories as one keyword-major sequence, mean over keywords, then the keyword
    # level scanned again along time)
    trajectory_scan: Literal["per_trajectory", "authors"] = "per_trajectory"
    clip: ClipConfig = field(default_factory=ClipConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.referring_encoder not in ("shared", "own"):
            raise ConfigError(
                f"RefAtomNetPPConfig.referring_encoder must be 'shared' or 'own', "
                f"got {self.referring_encoder!r}"
            )
        if self.contrast_weight < 0 or (self.contrast_weight > 0 and not self.word_match):
            raise ConfigError(
                f"RefAtomNetPPConfig.contrast_weight must be >= 0 and needs word_match=true, got "
                f"{self.contrast_weight} with word_match={self.word_match}"
            )
        name = "RefAtomNetPPConfig"
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ConfigError(
                f"{name}.dim ({self.dim}) must be a positive multiple of {name}.heads "
                f"({self.heads})"
            )
        choices = (
            ("selection", SELECTION_MODES),
            ("visual_scan", ("temporal", "flat", "both")),
            ("cross_attention_queries", CROSS_QUERIES),
            ("trajectory_scan", TRAJECTORY_SCANS),
        )
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"{name}.{key} must be one of {allowed}, got {getattr(self, key)!r}"
                )
        if not self.tau > 0:
            raise ConfigError(f"{name}.tau must be > 0, got {self.tau}")
        if not (self.use_keywords or self.use_objects or self.use_sentence):
            raise ConfigError(
                f"{name}.use_keywords, use_objects and use_sentence cannot all be false"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{name}.dropout must be in [0, 1), got {self.dropout}")
        if self.referring and not self.use_objects:
            raise ConfigError(
                f"{name}.referring picks a person among the detections: it needs use_objects=true"
            )
        v = self.visual
        if v.kind == "scratch" and v.tokens_per_frame is None and v.image_size != self.clip.size:
            # the number of tokens per frame (and the token position embeddings) follow the size
            raise ConfigError(
                f"{name}.visual.image_size {list(v.image_size)} must equal clip.size "
                f"{list(self.clip.size)} (or set visual.tokens_per_frame)"
            )


class CrossAttentionBlock(nn.Module):
    """Post-norm cross-attention block: queries [B, N, C] attend to context [B, M, C].

    x = LayerNorm(x + Dropout(MultiHeadAttention(x, context, context)))
    x = LayerNorm(x + Dropout(FFN(x)))
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        # the parameters (and numbers) of torch.nn.MultiheadAttention, as checkpoints hold them
        self.attn = MultiHeadAttention(dim, heads, attn_dropout=dropout, layout="torch")
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, int(dim * mlp_ratio), dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, N, C], context [B, M, C] (context_mask [B, M], True = valid; a row with no valid
        entry attends to all of them) -> [B, N, C]."""
        attended = self.attn(x, context, context_mask)  # [B, N, C]
        x = self.norm1(x + self.drop(attended))  # [B, N, C]
        return self.norm2(x + self.drop(self.ffn(x)))  # [B, N, C]


@register_family
class RefAtomNetPP(RAVARModel):
    """RefAtomNet++ (see the module docstring)."""

    family = "refatomnet_pp"
    config_class = RefAtomNetPPConfig
    uses_text = True

    def __init__(self, config: RefAtomNetPPConfig) -> None:
        super().__init__(config)
        cfg = config
        self.levels = [
            name
            for name, on in zip(
                LEVELS, (cfg.use_keywords, cfg.use_objects, cfg.use_sentence), strict=True
            )
            if on
        ]
        c = cfg.dim

        self.visual = build_visual(cfg.visual)
        self.text = build_text(cfg.text)
        self.location = (
            LocationSemanticEncoder(cfg.location, self.text.dim, c) if cfg.use_objects else None
        )
        own = cfg.referring and cfg.use_objects and cfg.referring_encoder == "own"
        self.referring_location = (
            LocationSemanticEncoder(cfg.location, self.text.dim, c) if own else None
        )

        self.visual_proj = nn.Sequential(nn.Linear(self.visual.dim, c), nn.LayerNorm(c))
        self.time_pos = nn.Parameter(torch.zeros(cfg.clip.num_frames, c))  # [T_max, C]
        self.token_pos = nn.Parameter(torch.zeros(self.visual.tokens_per_frame, c))  # [Q, C]
        nn.init.trunc_normal_(self.time_pos, std=0.02)
        nn.init.trunc_normal_(self.token_pos, std=0.02)

        def mamba() -> MambaLayer:
            m = cfg.mamba
            return MambaLayer(c, m.d_state, m.d_conv, m.expand, m.backend, m.bidirectional)

        self.scan_time = mamba() if cfg.visual_scan in ("temporal", "both") else None
        self.scan_flat = mamba() if cfg.visual_scan in ("flat", "both") else None
        # projections of each semantic level into the visual space
        self.keyword_proj = nn.Linear(self.text.dim, c) if cfg.use_keywords else None
        self.object_proj = nn.Linear(c, c) if cfg.use_objects else None
        self.sentence_proj = nn.Linear(self.text.dim, c) if cfg.use_sentence else None
        self.keyword_scan = mamba() if cfg.use_keywords else None
        self.object_scan = mamba() if cfg.use_objects else None
        # the authors' second scan of the keyword level, along time after the mean over keywords
        authors_scan = cfg.trajectory_scan == "authors" and cfg.use_keywords
        self.keyword_time_scan = mamba() if authors_scan else None

        self.cross = nn.ModuleDict(
            {
                f"{view}_{level}": CrossAttentionBlock(c, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                for view in VIEWS
                for level in self.levels
            }
        )
        self.summary_norm = nn.ModuleDict({view: nn.LayerNorm(c) for view in VIEWS})
        # referring: the sentence picks a person; the action heads read [summary, picked person]
        self.referring = (
            ReferringHead(
                c,
                dropout=cfg.dropout,
                text_dim=self.text.dim if cfg.word_match else None,
                context=cfg.person_context,
                contrast=cfg.contrast_weight > 0,
            )
            if cfg.referring
            else None
        )
        self.query_proj = nn.Linear(self.text.dim, c) if cfg.referring else None
        head_in = 2 * c if cfg.referring else c
        self.action_heads = nn.ModuleDict(
            {view: ActionHead(head_in, dropout=cfg.dropout) for view in VIEWS}
        )
        self.box_heads = nn.ModuleDict({view: BoxHead(c) for view in VIEWS})

    @property
    def needs_detections(self) -> bool:
        """With the scene-attribute level (`use_objects`)."""
        return self.config.use_objects

    # ------------------------------------------------------------------ features
    def visual_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's clips (frames [B, T, 3, H, W], or cached backbone features) -> visual
        tokens in the model width with time and token position embeddings, [B, T, Q, C]."""
        frames = batch.get("frames")
        if frames is not None and "visual_features" not in batch and frames.dim() != 5:
            raise BatchError(
                f"batch['frames'] must be [B, T, 3, H, W], got shape {tuple(frames.shape)}"
                " (evaluate multi-clip batches one clip at a time)"
            )
        tokens = self.visual_proj(self.backbone_tokens(batch))  # [B, T, Q, C]
        t, q = tokens.shape[1:3]
        # the first t of the clip.num_frames time positions; no other number of tokens per frame
        time_pos = resize_pos_embed(self.time_pos, t, mode="prefix", name="clip.num_frames")
        token_pos = resize_pos_embed(
            self.token_pos, q, mode="fixed", name="visual.tokens_per_frame"
        )  # [Q, C]
        return tokens + time_pos[:, None, :] + token_pos[None, :, :]  # [B, T, Q, C]

    def scan_visual(self, tokens: torch.Tensor) -> torch.Tensor:
        """Mamba scans of V [B, T, Q, C] (per token along time, then / or over the clip frame
        after frame) -> [B, T, Q, C]."""
        b, t = tokens.shape[:2]
        if self.scan_time is not None:
            seq = self.scan_time(per_token_sequences(tokens))  # [B*Q, T, C]
            tokens = from_per_token_sequences(seq, b)  # [B, T, Q, C]
        if self.scan_flat is not None:
            seq = self.scan_flat(time_major_sequence(tokens))  # [B, T*Q, C]
            tokens = from_time_major(seq, t)  # [B, T, Q, C]
        return tokens

    def _trajectories(self, queries: torch.Tensor, tokens: torch.Tensor) -> Trajectories:
        """Trajectories of queries [B, K, C] through tokens [B, T, Q, C]."""
        return select_trajectories(queries, tokens, self.config.selection, self.config.tau)

    def encode(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Intermediate features: "tokens" V [B, T, Q, C]; "scanned" [B, T, Q, C]; "temporal"
        [B, T, C]; "spatial" [B, Q, C]; per level "<level>_tokens" [B, N, C] and "<level>_mask"
        [B, N]; "keyword_selection" / "object_selection" (`Trajectories`); "summary_temporal"
        and "summary_spatial" [B, C]; "words" [B, L, C_text] / "word_mask" [B, L] (the
        sentence's tokens) and, with detections, "people" [B, D, C]."""
        tokens = self.visual_tokens(batch)  # [B, T, Q, C]
        b = tokens.shape[0]
        out: dict[str, Any] = {"tokens": tokens}
        texts = list(batch["text"])
        if len(texts) != b:
            raise BatchError(f"batch['text'] has {len(texts)} strings for {b} clips")
        text = self.text(texts)
        out["words"], out["word_mask"] = text.tokens, text.mask  # [B, L, C_text], [B, L]

        if self.keyword_proj is not None and self.keyword_scan is not None:
            keywords = self.keyword_proj(text.keywords)  # [B, K, C]
            sel = self._trajectories(keywords, tokens)  # tokens [B, K, T, C]
            out["keyword_tokens"], out["keyword_mask"], _ = self._scan_level(
                sel.tokens, text.keyword_mask, self.keyword_scan, self.keyword_time_scan
            )  # [B, K*T, C], [B, K*T] (authors' scan: [B, T, C], [B, T])
            out["keyword_selection"] = sel

        if (
            self.location is not None
            and self.object_proj is not None
            and self.object_scan is not None
        ):
            for key in ("det_boxes", "det_scores", "det_mask", "det_categories"):
                if key not in batch:
                    raise BatchError(
                        f"batch has no {key!r}: refatomnet_pp with use_objects=true needs "
                        "detections (or build it with use_objects=false)"
                    )
            categories = batch["det_categories"]
            objects = self.location(
                batch["det_boxes"],
                batch["det_scores"],
                batch["det_mask"],
                categories,
                self.text,
                batch.get("frames"),
            )  # [B, D, C]
            det_mask = self.location.keep_mask(batch["det_mask"], categories)  # [B, D]
            sel = self._trajectories(self.object_proj(objects), tokens)  # tokens [B, D, T, C]
            out["object_tokens"], out["object_mask"], scanned = self._scan_level(
                sel.tokens, det_mask, self.object_scan
            )  # [B, D*T, C], [B, D*T] (authors' scan: [B, T, C], [B, T]); scanned [B, D, T, C]
            out["people"] = objects + scanned.mean(dim=2)  # [B, D, C] per detection
            if self.referring_location is not None:  # the referring head's own people
                out["referring_people"] = self.referring_location(
                    batch["det_boxes"], batch["det_scores"], batch["det_mask"], categories,
                    self.text, batch.get("frames"),
                )  # fmt: skip
            out["object_selection"] = sel

        if self.sentence_proj is not None:
            out["sentence_tokens"] = self.sentence_proj(text.sentence)[:, None, :]  # [B, 1, C]
            out["sentence_mask"] = torch.ones(b, 1, dtype=torch.bool, device=tokens.device)

        scanned_v = self.scan_visual(tokens)  # [B, T, Q, C]
        out["scanned"] = scanned_v
        views = {"temporal": temporal_view(scanned_v), "spatial": spatial_view(scanned_v)}
        out.update(views)  # [B, T, C], [B, Q, C]
        # levels a sample has tokens for (a clip without detections has no scene-attribute level)
        present = torch.stack([out[f"{lv}_mask"].any(1) for lv in self.levels], 1)  # [B, levels]
        present = present.to(tokens.dtype)
        for view, context in views.items():
            per_level = torch.stack(
                [
                    self._cross_summary(
                        self.cross[f"{view}_{level}"],
                        out[f"{level}_tokens"],
                        out[f"{level}_mask"],
                        context,
                    )  # [B, C]
                    for level in self.levels
                ],
                1,
            )  # [B, levels, C]
            summary = (per_level * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(
                min=1.0
            )  # [B, C]: mean over the levels present
            out[f"summary_{view}"] = self.summary_norm[view](summary)
        return out

    def _scan_level(
        self,
        trajectories: torch.Tensor,
        mask: torch.Tensor,
        scan: nn.Module,
        time_scan: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A level's trajectories [B, K, T, C] (mask [B, K]) -> its tokens and their mask for the
        cross-attention, and the scanned trajectories [B, K, T, C]:

            per_trajectory: S = each trajectory scanned along T;  tokens = S flattened [B, K*T, C]
            authors:        S = one keyword-major scan of all K (`scan_keyword_major`);
                            tokens = time_scan(mean_k S), or mean_k S without time_scan  [B, T, C]
        """
        if self.config.trajectory_scan == "per_trajectory":
            scanned = scan_trajectories(trajectories, mask, scan)  # [B, K, T, C]
            tokens, token_mask = flatten_trajectories(scanned, mask)  # [B, K*T, C], [B, K*T]
            return tokens, token_mask, scanned
        scanned = scan_keyword_major(trajectories, mask, scan)  # [B, K, T, C]
        level = mean_over_trajectories(scanned, mask)  # [B, T, C]
        if time_scan is not None:
            level = time_scan(level)  # [B, T, C]
        level_mask = mask.bool().any(1, keepdim=True).expand(-1, level.shape[1])  # [B, T]
        return level, level_mask, scanned

    def _cross_summary(
        self,
        block: CrossAttentionBlock,
        level: torch.Tensor,
        level_mask: torch.Tensor,
        view: torch.Tensor,
    ) -> torch.Tensor:
        """One level's summary [B, C] for one view [B, M, C], from its tokens [B, N, C]:

        semantic: mean_n over the valid n of  CrossAttn(queries=level, context=view)
        authors:  mean_m over all m of        CrossAttn(queries=view, context=valid level)
        """
        if self.config.cross_attention_queries == "authors":
            return block(view, level, level_mask).mean(1)  # [B, M, C] -> [B, C]
        return masked_mean(block(level, view), level_mask)  # [B, N, C] -> [B, C]

    @property
    def needs_frames_with_cache(self) -> bool:
        return self.location is not None and self.location.appearance is not None

    # ------------------------------------------------------------------ outputs
    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        """Two head sets, "temporal" and "spatial" (one per view's summary), whose logits and
        boxes are averaged; with the referring head, the person scores (and, given the true box,
        the person to pick)."""
        feats = self.encode(batch)
        if self.referring is None or self.query_proj is None or self.location is None:
            heads = {
                view: (
                    self.action_heads[view](feats[f"summary_{view}"]),
                    self.box_heads[view](feats[f"summary_{view}"]),
                )
                for view in VIEWS
            }
            return ModelOutput.from_heads(heads)
        person = self.location.person_mask(batch["det_mask"], batch["det_categories"])  # [B, D]
        ref = self.referring(
            feats.get("referring_people", feats["people"]), person, batch["det_boxes"],
            self.query_proj(feats["words"]), feats["word_mask"], batch.get("box"),
            text_words=feats["words"],
        )  # fmt: skip
        selected = ref.selected  # [B, C]
        if self.referring_location is not None:  # the actions read the model's own people
            selected = ref.read(feats["people"], self.referring.norm_people)
        heads = {}
        for view in VIEWS:
            summary = feats[f"summary_{view}"]  # [B, C]
            logits = self.action_heads[view](torch.cat([summary, selected], dim=-1))
            boxes = torch.where(ref.has_person[:, None], ref.boxes, self.box_heads[view](summary))
            heads[view] = (logits, boxes)  # [B, 80], [B, 4]
        return ModelOutput.from_heads(heads, ref.scores, ref.target, ref.valid, ref.batch_scores)

    def criterion(self) -> Criterion:
        """With `loss_per_head`, the action and box losses are those of each head set, averaged
        (each head set is trained on its own, as the authors did)."""
        cfg = self.config
        return Criterion(
            cfg.loss,
            per_head=cfg.loss_per_head,
            select_weight=cfg.select_weight,
            contrast_weight=cfg.contrast_weight,
        )


def refatomnet_pp_loss() -> LossConfig:
    """The losses of the authors' code: focal BCE with label smoothing, a ranking loss of the
    positives against the hardest negatives, and 2 x (box MSE + (1 - IoU)).

    Their smoothing maps 1 -> 0.8 and 0 -> 0.2, i.e. label_smoothing=0.4 in LossConfig's
    y * (1 - s) + s / 2; their MSE averages the 4 numbers where LossConfig's sums them, hence
    box_mse_weight = 2 / 4."""
    return LossConfig(
        action="focal",
        label_smoothing=0.4,
        ranking_weight=1.0,
        ranking_margin=0.2,
        box_mse_weight=0.5,
        box_iou_weight=2.0,
    )


def authors_version(cfg: RefAtomNetPPConfig, dim: int | None = None) -> RefAtomNetPPConfig:
    """`cfg` with every switch set to the authors' code: the visual views query the semantic
    tokens, keyword-major trajectory scans, the batch-wide softplus ranking loss and the IRM
    penalty (weight 1, as their code), and neither of ravar's additions (the referring head, crop
    features of the detections); `dim` sets the fusion width (256 in their code)."""
    loss = replace(refatomnet_pp_loss(), ranking="authors", irm_weight=1.0)
    return replace(
        cfg,
        dim=cfg.dim if dim is None else dim,
        cross_attention_queries="authors",
        trajectory_scan="authors",
        referring=False,
        location=replace(cfg.location, appearance=False),
        loss=loss,
    )


def _tiny(**changes: Any) -> RefAtomNetPPConfig:
    """CPU size, with person-centric detection tokens and the referring head (see
    `ravar.models.refatomnet._tiny`); `changes` override fields."""
    cfg = RefAtomNetPPConfig(
        visual=tiny_visual(depth=2),
        text=TextConfig(kind="minilm", frozen=True),
        location=LocationConfig(appearance=True),
        referring=True,
        dim=128,
        heads=8,
        mamba=MambaSettings(d_state=8, d_conv=4, expand=2),
        visual_scan="temporal",
        clip=tiny_clip(),
        loss=replace(refatomnet_pp_loss(), action_weight=TINY_ACTION_WEIGHT),
    )
    return replace(cfg, **changes)


def _base(**changes: Any) -> RefAtomNetPPConfig:
    """The paper's sizes: frozen BLIP-2 vision + Q-Former (random weights unless
    `visual.hf_name_or_path` points at a local checkpoint), frozen MiniLM, 8 frames at 224,
    width 768; `changes` override fields."""
    cfg = RefAtomNetPPConfig(
        visual=paper_visual(),
        text=TextConfig(kind="minilm", frozen=True),
        location=LocationConfig(),
        dim=768,
        heads=8,
        mamba=MambaSettings(d_state=16, d_conv=4, expand=2),
        visual_scan="flat",
        clip=paper_clip(),
        loss=refatomnet_pp_loss(),
    )
    return replace(cfg, **changes)


register_model(
    "refatomnet_pp_tiny",
    "refatomnet_pp",
    _tiny,
    "RefAtomNet++, tiny: scratch video ViT 64x64 (16 tokens/frame), frozen MiniLM, width 128",
)
register_model(
    "refatomnet_pp_tiny_pick",
    "refatomnet_pp",
    lambda: _tiny(**PICK_SWITCHES),
    "RefAtomNet++, tiny, with the referring head that picks the person better: word matching, "
    "its own location encoder, the people context (docs/learning.md)",
)
register_model(
    "refatomnet_pp_base",
    "refatomnet_pp",
    _base,
    "RefAtomNet++ as in the paper: frozen BLIP-2 vision + Q-Former (32 queries), 8x224, width 768",
)
register_model(
    "refatomnet_pp_tiny_authors",
    "refatomnet_pp",
    lambda: authors_version(_tiny()),
    "RefAtomNet++, tiny, every switch as in the authors' code (docs/fidelity.md)",
)
register_model(
    "refatomnet_pp_base_authors",
    "refatomnet_pp",
    lambda: authors_version(_base(), dim=256),
    "RefAtomNet++, paper size, every switch as in the authors' code (width 256, docs/fidelity.md)",
)
