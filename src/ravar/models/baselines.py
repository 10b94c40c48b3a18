"""Baselines the RAVAR papers compare against, behind the same interface as RefAtomNet.

- `no_text`: video only (I3D / X3D style); its box head can only learn a prior.
- `late_fusion`: global video and sentence embeddings combined by a small head (BLIP-2 style
  text-video retrieval baseline).
- `oracle_crop`: actions from the ground-truth person's crop, box = the ground truth. An upper
  bound that sees the answer's box at test time: reported as an oracle, never ranked.
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
    TextConfig,
    VisualConfig,
    build_text,
    build_visual,
)
from ravar.models.base import RAVARModel
from ravar.models.heads import MLP, ActionHead, BoxHead
from ravar.models.losses import LossConfig
from ravar.models.output import ModelOutput
from ravar.models.presets import paper_clip, paper_visual, tiny_clip, tiny_loss, tiny_visual
from ravar.models.registry import register_family, register_model
from ravar.models.roi import DetectionAppearance, crop_boxes


def pool_video(tokens: torch.Tensor) -> torch.Tensor:
    """Global video embedding: mean over frames and tokens, `[B, T, Q, C]` -> `[B, C]`."""
    return tokens.mean(dim=(1, 2))


@dataclass
class NoTextConfig:
    """Video-only baseline."""

    visual: VisualConfig = field(default_factory=tiny_visual)
    dim: int = 128
    dropout: float = 0.1
    clip: ClipConfig = field(default_factory=tiny_clip)
    loss: LossConfig = field(default_factory=tiny_loss)


@register_family
class NoText(RAVARModel):
    """Actions and box from the video alone; the sentence is ignored."""

    family = "no_text"
    config_class = NoTextConfig
    uses_text = False

    def __init__(self, config: NoTextConfig) -> None:
        super().__init__(config)
        self.visual = build_visual(config.visual)
        self.proj = nn.Sequential(nn.Linear(self.visual.dim, config.dim), nn.LayerNorm(config.dim))
        self.action_head = ActionHead(config.dim, dropout=config.dropout)
        self.box_head = BoxHead(config.dim, dropout=config.dropout)

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        video = self.proj(pool_video(self.backbone_tokens(batch)))  # [B, dim]
        return ModelOutput.from_heads({"main": (self.action_head(video), self.box_head(video))})


@dataclass
class LateFusionConfig:
    """Global video embedding + sentence embedding, fused by an MLP."""

    visual: VisualConfig = field(default_factory=tiny_visual)
    text: TextConfig = field(default_factory=lambda: TextConfig(kind="minilm", frozen=True))
    dim: int = 128
    dropout: float = 0.1
    clip: ClipConfig = field(default_factory=tiny_clip)
    loss: LossConfig = field(default_factory=tiny_loss)


@register_family
class LateFusion(RAVARModel):
    """[video, sentence, video * sentence] -> MLP -> heads."""

    family = "late_fusion"
    config_class = LateFusionConfig

    def __init__(self, config: LateFusionConfig) -> None:
        super().__init__(config)
        self.visual = build_visual(config.visual)
        self.text = build_text(config.text)
        d = config.dim
        self.video_proj = nn.Sequential(nn.Linear(self.visual.dim, d), nn.LayerNorm(d))
        self.text_proj = nn.Sequential(nn.Linear(self.text.dim, d), nn.LayerNorm(d))
        self.fuse = MLP(3 * d, d, d, layers=2, dropout=config.dropout)
        self.action_head = ActionHead(d, dropout=config.dropout)
        self.box_head = BoxHead(d, dropout=config.dropout)

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        video = self.video_proj(pool_video(self.backbone_tokens(batch)))  # [B, d]
        sentence = self.text_proj(self.text(list(batch["text"])).sentence)  # [B, d]
        fused = self.fuse(torch.cat([video, sentence, video * sentence], dim=-1))  # [B, d]
        return ModelOutput.from_heads({"main": (self.action_head(fused), self.box_head(fused))})


@dataclass
class OracleCropConfig:
    """Action classifier on the ground-truth person's crop."""

    visual: VisualConfig = field(
        default_factory=lambda: replace(tiny_visual(), image_size=(32, 32), tokens_per_frame=4)
    )
    crop_size: tuple[int, int] = (32, 32)  # (h, w) the crop is resized to
    margin: float = 0.1  # crop this fraction of the box size larger on every side
    # "video": the scratch video transformer on the crop; "person": the person encoder of the
    # tiny RefAtomNet / RefAtomNet++ (`ravar.models.roi`, crops of `LocationConfig`'s size), so
    # that the oracle bounds what those models' action head can reach with the right person
    encoder: Literal["video", "person"] = "video"
    dim: int = 128
    dropout: float = 0.1
    clip: ClipConfig = field(default_factory=tiny_clip)
    loss: LossConfig = field(default_factory=lambda: tiny_loss(box_mse_weight=0.0))

    def __post_init__(self) -> None:
        if self.encoder not in ("video", "person"):
            raise ConfigError(
                f"OracleCropConfig.encoder must be 'video' or 'person', got {self.encoder!r}"
            )


@register_family
class OracleCrop(RAVARModel):
    """Upper bound: classify the actions of the TRUE person's crop; the box is the truth."""

    family = "oracle_crop"
    config_class = OracleCropConfig
    uses_text = False
    is_oracle = True
    visual_reads_clip = False  # it reads crops of the clip

    def __init__(self, config: OracleCropConfig) -> None:
        super().__init__(config)
        if config.encoder == "person":
            loc = LocationConfig(appearance=True)
            self.person = DetectionAppearance(
                loc.appearance_size, config.margin, loc.appearance_width, config.dim
            )
        else:
            self.visual = build_visual(config.visual)
            self.proj = nn.Sequential(
                nn.Linear(self.visual.dim, config.dim), nn.LayerNorm(config.dim)
            )
        self.action_head = ActionHead(config.dim, dropout=config.dropout)

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        if "box" not in batch:
            raise BatchError(
                "oracle_crop needs the ground-truth box of every instance: it is an upper bound "
                "for evaluation, not a model that can run on new videos"
            )
        true_box = batch["box"].to(batch["frames"].dtype)  # [B, 4]
        if self.config.encoder == "person":
            keep = torch.ones(len(true_box), 1, dtype=torch.bool, device=true_box.device)
            video = self.person(batch["frames"], true_box[:, None], keep)[:, 0]  # [B, dim]
        else:
            crops = crop_boxes(batch["frames"], true_box, self.config.crop_size, self.config.margin)
            video = self.proj(pool_video(self.visual(crops)))  # [B, dim]
        return ModelOutput.from_heads({"main": (self.action_head(video), true_box.clone())})


register_model("no_text_tiny", "no_text", NoTextConfig, "video only, no text (I3D/X3D-style)")
register_model(
    "no_text_base", "no_text",
    lambda: NoTextConfig(visual=paper_visual(), dim=768, clip=paper_clip(), loss=LossConfig()),
    "video only, paper-size frozen BLIP-2 visual tokens",
)  # fmt: skip
register_model(
    "late_fusion_tiny", "late_fusion", LateFusionConfig,
    "global video + sentence embedding (BLIP-2-style retrieval baseline)",
)  # fmt: skip
register_model(
    "late_fusion_base", "late_fusion",
    lambda: LateFusionConfig(
        visual=paper_visual(), dim=768, clip=paper_clip(), loss=LossConfig()
    ),
    "late fusion, paper-size frozen BLIP-2 visual tokens and MiniLM",
)  # fmt: skip
register_model(
    "oracle_crop_tiny", "oracle_crop", OracleCropConfig,
    "ORACLE upper bound: actions from the ground-truth person's crop",
)  # fmt: skip
register_model(
    "oracle_person_tiny", "oracle_crop", lambda: OracleCropConfig(encoder="person"),
    "ORACLE upper bound: actions of the ground-truth person through the tiny models' person "
    "encoder",
)  # fmt: skip
