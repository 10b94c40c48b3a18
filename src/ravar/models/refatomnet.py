"""RefAtomNet (Peng et al., ECCV 2024): visual, text and location-semantic token streams, 1D agent
attention per stream, cross-stream agent-attention fusion (CAAF) and agent-token fusion (CATF),
stream aggregation and MLP heads for the actions and the keyframe box.

The fusion ablations of the paper are config switches: `fusion` ("agent", "add", "concat",
"bottleneck"), `use_location`, `cross_attention_fusion`, `cross_token_fusion`. Where the authors'
code differs from the paper's formula, `caaf_maps="authors"` gives their version (see
docs/fidelity.md; `refatomnet_tiny_authors` / `refatomnet_base_authors` set every such switch).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from ravar.config import ConfigError
from ravar.data.clip_config import ClipConfig
from ravar.errors import BatchError
from ravar.models.agent_attention import (
    AgentAttention,
    cross_stream_attend,
    cross_stream_attend_authors,
)
from ravar.models.backbones import (
    LocationConfig,
    LocationSemanticEncoder,
    TextConfig,
    VisualConfig,
    build_text,
    build_visual,
)
from ravar.models.base import RAVARModel
from ravar.models.heads import MLP, ActionHead, BoxHead
from ravar.models.layers import MultiHeadAttention, resize_pos_embed
from ravar.models.losses import Criterion, LossConfig
from ravar.models.output import ModelOutput
from ravar.models.pooling import masked_mean
from ravar.models.presets import (
    PICK_SWITCHES,
    paper_clip,
    paper_visual,
    tiny_clip,
    tiny_loss,
    tiny_visual,
)
from ravar.models.referring import ReferringHead
from ravar.models.registry import register_family, register_model

Fusion = Literal["agent", "add", "concat", "bottleneck"]
CAAF_MAPS: tuple[str, ...] = ("query_agent", "authors")


@dataclass
class RefAtomNetConfig:
    """RefAtomNet and its ablations. `fusion`: "agent" (the paper: per-stream agent attention with
    CAAF / CATF from the text and location streams into the visual stream, streams averaged),
    "add" (per-stream agent attention, pooled streams summed), "concat" (pooled streams
    concatenated and projected), "bottleneck" (attention bottleneck, Nagrani et al. 2021).
    `cross_attention_fusion` / `cross_token_fusion` apply to "agent" only."""

    visual: VisualConfig = field(default_factory=VisualConfig)
    text: TextConfig = field(default_factory=TextConfig)
    location: LocationConfig = field(default_factory=LocationConfig)
    dim: int = 128
    heads: int = 4
    depth: int = 1
    num_agents: int = 4
    mlp_ratio: int = 4
    fusion: Fusion = "agent"
    use_location: bool = True  # False: w/o location-semantic stream (LSAS)
    cross_attention_fusion: bool = True  # False: w/o CAAF
    cross_token_fusion: bool = True  # False: w/o CATF
    # which agent maps CAAF fuses: "query_agent" (the paper's formula: the visual queries against
    # every stream's agents; CATF then feeds the aggregation) or "authors" (their code: each
    # stream's own agent-key maps; CATF then feeds the broadcast). See `agent_attention`.
    caaf_maps: Literal["query_agent", "authors"] = "query_agent"
    num_bottlenecks: int = 4  # fusion="bottleneck" only
    referring: bool = False  # pick the referred person among the detections (needs use_location)
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
    # which person and word tokens the referring head reads: "streams" (the projected streams
    # before the fusion blocks, as RefAtomNet++'s head does: it learns to pick the referred
    # person) or "fused" (after them: stays near chance; what checkpoints saved before this
    # switch read, see `ravar.engine.checkpoint_upgrade`)
    referring_tokens: Literal["fused", "streams"] = "streams"
    dropout: float = 0.1
    clip: ClipConfig = field(default_factory=ClipConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.referring_encoder not in ("shared", "own"):
            raise ConfigError(
                f"RefAtomNetConfig.referring_encoder must be 'shared' or 'own', "
                f"got {self.referring_encoder!r}"
            )
        if self.contrast_weight < 0 or (self.contrast_weight > 0 and not self.word_match):
            raise ConfigError(
                f"RefAtomNetConfig.contrast_weight must be >= 0 and needs word_match=true, got "
                f"{self.contrast_weight} with word_match={self.word_match}"
            )
        if self.dim < 1 or self.heads < 1 or self.dim % self.heads:
            raise ConfigError(
                f"RefAtomNetConfig.dim ({self.dim}) must be a positive multiple of "
                f"RefAtomNetConfig.heads ({self.heads})"
            )
        for key in ("depth", "num_agents", "num_bottlenecks", "mlp_ratio"):
            if getattr(self, key) < 1:
                raise ConfigError(f"RefAtomNetConfig.{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"RefAtomNetConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.caaf_maps not in CAAF_MAPS:
            raise ConfigError(
                f"RefAtomNetConfig.caaf_maps must be one of {CAAF_MAPS}, got {self.caaf_maps!r}"
            )
        if self.referring and not self.use_location:
            raise ConfigError(
                "RefAtomNetConfig.referring picks a person among the detections: it needs "
                "use_location=true"
            )


resize_embedding = resize_pos_embed  # the name this module exported before `layers`


class TokenMLP(nn.Module):
    """The feed-forward half of a pre-norm transformer block: x + MLP(LN(x))."""

    def __init__(self, dim: int, ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = MLP(dim, ratio * dim, dim, layers=2, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


Stream = tuple[torch.Tensor, torch.Tensor | None]  # tokens [B, N, C], mask [B, N] or None


class AgentBlock(nn.Module):
    """One pre-norm block over all streams: per-stream 1D agent attention (the visual stream,
    listed first, guided by the others through CAAF / CATF when `cross` is set) then a
    per-stream MLP. Padded tokens stay as they are and never reach the valid ones."""

    def __init__(self, cfg: RefAtomNetConfig, num_streams: int, cross: bool) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(num_streams))
        self.attn = nn.ModuleList(
            AgentAttention(cfg.dim, cfg.heads, cfg.num_agents, cfg.dropout)
            for _ in range(num_streams)
        )
        self.cross = cross
        self.caaf = cfg.cross_attention_fusion
        self.catf = cfg.cross_token_fusion
        self.fuse = (
            cross_stream_attend_authors if cfg.caaf_maps == "authors" else cross_stream_attend
        )
        self.mlps = nn.ModuleList(
            TokenMLP(cfg.dim, cfg.mlp_ratio, cfg.dropout) for _ in range(num_streams)
        )

    def forward(self, streams: list[Stream]) -> list[Stream]:
        states = [
            attn.project(norm(x), mask)
            for (x, mask), norm, attn in zip(streams, self.norms, self.attn, strict=True)
        ]
        outs = [attn.attend(st) for attn, st in zip(self.attn[1:], states[1:], strict=True)]
        if self.cross:
            visual = self.fuse(
                self.attn[0], states[0], states[1:], self.caaf, self.catf
            )  # [B, N_v, C]
        else:
            visual = self.attn[0].attend(states[0])
        outs.insert(0, visual)
        return [
            (mlp(x + out), mask)
            for (x, mask), out, mlp in zip(streams, outs, self.mlps, strict=True)
        ]


class BottleneckBlock(nn.Module):
    """Attention bottleneck fusion (Nagrani et al. 2021): each stream runs a transformer layer over
    its own tokens plus the shared bottleneck tokens; the streams' updated bottlenecks are then
    averaged, so streams exchange information only through those few tokens."""

    def __init__(self, cfg: RefAtomNetConfig, num_streams: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.dim) for _ in range(num_streams))
        self.attn = nn.ModuleList(
            MultiHeadAttention(cfg.dim, cfg.heads, out_dropout=cfg.dropout)
            for _ in range(num_streams)
        )
        self.mlps = nn.ModuleList(
            TokenMLP(cfg.dim, cfg.mlp_ratio, cfg.dropout) for _ in range(num_streams)
        )

    def forward(
        self, streams: list[Stream], bottleneck: torch.Tensor
    ) -> tuple[list[Stream], torch.Tensor]:
        """streams: ([B, N_s, C], mask), bottleneck [B, n_b, C] -> updated streams, bottleneck."""
        n_b = bottleneck.shape[1]
        outs: list[Stream] = []
        new_bottlenecks = []
        for (x, mask), norm, attn, mlp in zip(
            streams, self.norms, self.attn, self.mlps, strict=True
        ):
            b, n, _ = x.shape
            full_mask = torch.ones(b, n + n_b, dtype=torch.bool, device=x.device)
            if mask is not None:
                full_mask[:, :n] = mask
            y = torch.cat([x, bottleneck], dim=1)  # [B, N_s + n_b, C]
            y = mlp(y + attn(norm(y), key_mask=full_mask))
            outs.append((y[:, :n], mask))
            new_bottlenecks.append(y[:, n:])
        return outs, torch.stack(new_bottlenecks).mean(0)  # [B, n_b, C]


@register_family
class RefAtomNet(RAVARModel):
    """RefAtomNet: three token streams fused by cross-stream agent attention (or an ablation)."""

    family = "refatomnet"
    config_class = RefAtomNetConfig
    uses_text = True

    def __init__(self, config: RefAtomNetConfig) -> None:
        super().__init__(config)
        cfg = config
        dim = cfg.dim
        self.visual = build_visual(cfg.visual)
        self.text = build_text(cfg.text)

        # visual tokens [B, T, Q, C_v] -> [B, T*Q, dim] plus temporal and spatial positions
        self.visual_proj = nn.Linear(self.visual.dim, dim)
        self.temporal_pos = nn.Parameter(torch.zeros(cfg.clip.num_frames, dim))
        self.spatial_pos = nn.Parameter(torch.zeros(self.visual.tokens_per_frame, dim))
        nn.init.trunc_normal_(self.temporal_pos, std=0.02)
        nn.init.trunc_normal_(self.spatial_pos, std=0.02)
        self.text_proj = nn.Linear(self.text.dim, dim)
        self.location = (
            LocationSemanticEncoder(cfg.location, self.text.dim, dim) if cfg.use_location else None
        )
        own = cfg.referring and cfg.use_location and cfg.referring_encoder == "own"
        self.referring_location = (
            LocationSemanticEncoder(cfg.location, self.text.dim, dim) if own else None
        )
        num_streams = 3 if cfg.use_location else 2

        if cfg.fusion == "bottleneck":
            self.bottleneck = nn.Parameter(torch.zeros(cfg.num_bottlenecks, dim))
            nn.init.trunc_normal_(self.bottleneck, std=0.02)
            self.blocks = nn.ModuleList(BottleneckBlock(cfg, num_streams) for _ in range(cfg.depth))
        else:
            cross = cfg.fusion == "agent" and (cfg.cross_attention_fusion or cfg.cross_token_fusion)
            self.blocks = nn.ModuleList(
                AgentBlock(cfg, num_streams, cross) for _ in range(cfg.depth)
            )
        self.concat_proj = nn.Linear(num_streams * dim, dim) if cfg.fusion == "concat" else None
        self.norm = nn.LayerNorm(dim)
        self.referring = (
            ReferringHead(
                dim,
                dropout=cfg.dropout,
                text_dim=self.text.dim if cfg.word_match else None,
                context=cfg.person_context,
                contrast=cfg.contrast_weight > 0,
            )
            if cfg.referring
            else None
        )
        # with the referring head, actions read [t_agg, picked person]
        self.action_head = ActionHead(2 * dim if cfg.referring else dim, dropout=cfg.dropout)
        self.box_head = BoxHead(dim, dropout=cfg.dropout)

    @property
    def needs_detections(self) -> bool:
        """With the location-semantic stream (`use_location`)."""
        return self.config.use_location

    def criterion(self) -> Criterion:
        return Criterion(
            self.config.loss,
            select_weight=self.config.select_weight,
            contrast_weight=self.config.contrast_weight,
        )

    def _require(self, batch: dict[str, Any], keys: tuple[str, ...]) -> None:
        missing = [k for k in keys if k not in batch]
        if missing:
            raise BatchError(
                f"{self.family}: batch has no {', '.join(repr(k) for k in missing)} "
                f"(keys present: {sorted(batch)})"
            )

    def visual_stream(self, clips: torch.Tensor | dict[str, Any]) -> torch.Tensor:
        """frames [B, T, 3, H, W] (or a batch, whose cached backbone features are used when it
        has them) -> visual tokens [B, T*Q, dim] with positions added."""
        batch = clips if isinstance(clips, dict) else {"frames": clips}
        frames = batch.get("frames")
        if "visual_features" not in batch and (frames is None or frames.dim() != 5):
            shape = None if frames is None else list(frames.shape)
            raise BatchError(f"{self.family}: batch['frames'] must be [B, T, 3, H, W], got {shape}")
        tokens = self.visual_proj(self.backbone_tokens(batch))  # [B, T, Q, dim]
        b, t, q, d = tokens.shape
        tokens = (
            tokens
            + resize_pos_embed(self.temporal_pos, t)[None, :, None, :]  # [1, T, 1, dim]
            + resize_pos_embed(self.spatial_pos, q)[None, None, :, :]  # [1, 1, Q, dim]
        )
        return tokens.reshape(b, t * q, d)  # time-major: token index = t * Q + q

    def streams(self, batch: dict[str, Any]) -> list[Stream]:
        """The projected token streams (visual first): [(tokens [B, N_s, dim], mask [B, N_s])]."""
        return self._streams_and_words(batch)[0]

    def _streams_and_words(self, batch: dict[str, Any]) -> tuple[list[Stream], torch.Tensor]:
        """`streams` and the text encoder's own word tokens [B, L, C_text]."""
        keys = ("visual_features" if "visual_features" in batch else "frames", "text")
        if self.config.use_location:
            keys += ("det_boxes", "det_scores", "det_mask", "det_categories")
        self._require(batch, keys)
        frames = batch.get("frames")  # [B, T, 3, H, W] (None with cached visual features)
        text = list(batch["text"])
        clips = len(batch[keys[0]])
        if len(text) != clips:
            raise BatchError(
                f"{self.family}: batch['text'] has {len(text)} strings for {clips} clips"
            )
        out: list[Stream] = [(self.visual_stream(batch), None)]
        feats = self.text(text)
        out.append((self.text_proj(feats.tokens), feats.mask))  # [B, L, dim], [B, L]
        if self.location is not None:
            det_mask, categories = batch["det_mask"].bool(), batch["det_categories"]  # [B, D]
            loc = self.location(
                batch["det_boxes"], batch["det_scores"], det_mask, categories, self.text, frames
            )  # [B, D, dim]
            out.append((loc, self.location.keep_mask(det_mask, categories)))
        return out, feats.tokens

    @property
    def needs_frames_with_cache(self) -> bool:
        return self.location is not None and self.location.appearance is not None

    def fuse(self, streams: list[Stream]) -> tuple[torch.Tensor, list[Stream]]:
        """Streams -> the aggregated vector t_agg [B, dim] (before the final LayerNorm) and the
        streams after the fusion blocks."""
        if self.config.fusion == "bottleneck":
            b = streams[0][0].shape[0]
            bottleneck = self.bottleneck[None].expand(b, -1, -1)  # [B, n_b, dim]
            for block in self.blocks:
                streams, bottleneck = block(streams, bottleneck)
        else:
            for block in self.blocks:
                streams = block(streams)
        pooled = [masked_mean(x, mask) for x, mask in streams]  # N_s x [B, dim]
        if self.config.fusion == "concat":
            return self.concat_proj(torch.cat(pooled, dim=-1)), streams
        if self.config.fusion == "add":
            return torch.stack(pooled).sum(0), streams
        return torch.stack(pooled).mean(0), streams  # t_agg = sum_phi t_phi / N_s

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        """One head set ("main"); with the referring head, the person scores (and, given the
        true box, the person to pick)."""
        streams, text_words = self._streams_and_words(batch)
        t_agg, fused = self.fuse(streams)
        t_agg = self.norm(t_agg)  # [B, dim]
        if self.referring is None or self.location is None:
            head = (self.action_head(t_agg), self.box_head(t_agg))  # [B, 80], [B, 4]
            return ModelOutput.from_heads({"main": head})
        read = fused if self.config.referring_tokens == "fused" else streams
        text_tokens, text_mask = read[1]  # [B, L, dim], [B, L]
        people = read[2][0]  # location-semantic tokens [B, D, dim]
        person = self.location.person_mask(batch["det_mask"], batch["det_categories"])  # [B, D]
        scored = people
        if self.referring_location is not None:  # the referring head's own people
            scored = self.referring_location(
                batch["det_boxes"], batch["det_scores"], batch["det_mask"].bool(),
                batch["det_categories"], self.text, batch.get("frames"),
            )  # fmt: skip
        ref = self.referring(
            scored, person, batch["det_boxes"], text_tokens, text_mask, batch.get("box"),
            text_words=text_words,
        )  # fmt: skip
        selected = ref.selected  # [B, dim]
        if self.referring_location is not None:  # the actions read the model's own people
            selected = ref.read(people, self.referring.norm_people)
        logits = self.action_head(torch.cat([t_agg, selected], dim=-1))  # [B, 80]
        boxes = torch.where(ref.has_person[:, None], ref.boxes, self.box_head(t_agg))  # [B, 4]
        return ModelOutput.from_heads(
            {"main": (logits, boxes)}, ref.scores, ref.target, ref.valid, ref.batch_scores
        )


# --------------------------------------------------------------------------- named configs


def _tiny(**changes: Any) -> RefAtomNetConfig:
    """The CPU-sized RefAtomNet: scratch video transformer on 8 frames of 64x64, frozen MiniLM,
    person-centric detection tokens (crop features) and the referring head, without which a
    from-scratch encoder does not learn the task in a CPU budget. `changes` override fields."""
    cfg = RefAtomNetConfig(
        visual=tiny_visual(depth=1),
        text=TextConfig(kind="minilm", frozen=True, max_length=32),
        location=LocationConfig(hidden=128, appearance=True),
        referring=True,
        referring_tokens="streams",
        dim=128,
        heads=4,
        depth=1,
        clip=tiny_clip(),
        loss=tiny_loss(),
    )  # fmt: skip
    return replace(cfg, **changes)


def _base(**changes: Any) -> RefAtomNetConfig:
    """The paper's sizes: frozen BLIP-2 (EVA ViT-g + Q-Former, 32 queries per frame; random weights
    unless `visual.hf_name_or_path` points at a local checkpoint), frozen MiniLM, 8 frames at 224,
    width 768, one agent block per stream as in the authors' code. 8 heads: the authors' code
    uses 1, which makes the softmax over heads of CAAF / CATF a constant 1. `changes` override
    fields."""
    cfg = RefAtomNetConfig(
        visual=paper_visual(),
        text=TextConfig(kind="minilm", frozen=True),
        location=LocationConfig(hidden=768),
        dim=768,
        heads=8,
        depth=1,
        clip=paper_clip(),
    )
    return replace(cfg, **changes)


def authors_loss() -> LossConfig:
    """The RefAtomNet authors' loss: 5 x BCE + MSE averaged over the 4 box numbers (LossConfig
    sums them, hence 1/4)."""
    return LossConfig(action="bce", action_weight=5.0, box_mse_weight=0.25)


def authors_version(cfg: RefAtomNetConfig) -> RefAtomNetConfig:
    """`cfg` with every switch set to the authors' code: their CAAF / CATF maps, their loss
    weights, and neither of ravar's additions (the referring head, crop features of the
    detections)."""
    return replace(
        cfg,
        caaf_maps="authors",
        referring=False,
        location=replace(cfg.location, appearance=False),
        loss=authors_loss(),
    )


register_model("refatomnet_tiny", "refatomnet", _tiny, "RefAtomNet, CPU size (scratch video)")
register_model(
    "refatomnet_tiny_pick",
    "refatomnet",
    lambda: _tiny(**PICK_SWITCHES),
    "RefAtomNet, CPU size, with the referring head that picks the person better: word matching, "
    "its own location encoder, the people context (docs/learning.md)",
)
register_model("refatomnet_base", "refatomnet", _base, "RefAtomNet, paper size (BLIP-2, MiniLM)")
register_model(
    "refatomnet_tiny_authors",
    "refatomnet",
    lambda: authors_version(_tiny()),
    "RefAtomNet, CPU size, every switch as in the authors' code (docs/fidelity.md)",
)
register_model(
    "refatomnet_base_authors",
    "refatomnet",
    lambda: authors_version(_base(heads=1)),
    "RefAtomNet, paper size, every switch as in the authors' code (1 head, docs/fidelity.md)",
)
for _name, _changes, _doc in (
    ("fusion_add", {"fusion": "add"}, "fusion by addition of the pooled streams"),
    ("fusion_concat", {"fusion": "concat"}, "fusion by concatenation of the pooled streams"),
    ("fusion_bottleneck", {"fusion": "bottleneck"}, "attention-bottleneck fusion"),
    (
        "no_location",
        {"use_location": False, "referring": False},
        "without the location-semantic stream (and so without the referring head)",
    ),
    ("no_caaf", {"cross_attention_fusion": False}, "without cross-stream attention fusion"),
    ("no_catf", {"cross_token_fusion": False}, "without cross-stream agent-token fusion"),
):
    register_model(
        f"refatomnet_tiny_{_name}",
        "refatomnet",
        lambda c=_changes: _tiny(**c),
        f"RefAtomNet tiny ablation: {_doc}",
    )
