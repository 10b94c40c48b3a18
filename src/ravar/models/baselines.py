"""Baselines the RAVAR papers compare against, behind the same interface as RefAtomNet.

- `no_text`: video only (I3D / X3D style); its box head can only learn a prior.
- `late_fusion`: global video and sentence embeddings combined by a small head (BLIP-2 style
  text-video retrieval baseline).
- `oracle_crop`: actions from the ground-truth person's crop, box = the ground truth. An upper
  bound that sees the answer's box at test time: reported as an oracle, never ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ravar.data.dataset import ClipConfig
from ravar.errors import RavarError
from ravar.models.backbones import (
    TextConfig,
    VisualConfig,
    build_text,
    build_visual,
)
from ravar.models.base import RAVARModel
from ravar.models.heads import MLP, ActionHead, BoxHead
from ravar.models.losses import LossConfig
from ravar.models.presets import paper_clip, paper_visual, tiny_clip, tiny_visual
from ravar.models.registry import register_family, register_model


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
    loss: LossConfig = field(default_factory=LossConfig)


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

    def predict(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.proj(pool_video(self.visual(batch["frames"])))  # [B, dim]
        return self.action_head(video), self.box_head(video)


@dataclass
class LateFusionConfig:
    """Global video embedding + sentence embedding, fused by an MLP."""

    visual: VisualConfig = field(default_factory=tiny_visual)
    text: TextConfig = field(default_factory=lambda: TextConfig(kind="minilm", frozen=True))
    dim: int = 128
    dropout: float = 0.1
    clip: ClipConfig = field(default_factory=tiny_clip)
    loss: LossConfig = field(default_factory=LossConfig)


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

    def predict(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.video_proj(pool_video(self.visual(batch["frames"])))  # [B, d]
        sentence = self.text_proj(self.text(list(batch["text"])).sentence)  # [B, d]
        fused = self.fuse(torch.cat([video, sentence, video * sentence], dim=-1))  # [B, d]
        return self.action_head(fused), self.box_head(fused)


@dataclass
class OracleCropConfig:
    """Action classifier on the ground-truth person's crop."""

    visual: VisualConfig = field(
        default_factory=lambda: replace(tiny_visual(), image_size=(32, 32), tokens_per_frame=4)
    )
    crop_size: tuple[int, int] = (32, 32)  # (h, w) the crop is resized to
    margin: float = 0.1  # crop this fraction of the box size larger on every side
    dim: int = 128
    dropout: float = 0.1
    clip: ClipConfig = field(default_factory=tiny_clip)
    loss: LossConfig = field(default_factory=lambda: LossConfig(box_mse_weight=0.0))


def crop_boxes(
    frames: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], margin: float = 0.0
) -> torch.Tensor:
    """Crop normalised xyxy `boxes` [B, 4] out of every frame `[B, T, 3, H, W]` and resize them
    to `size`: `[B, T, 3, h, w]` (bilinear, zeros outside the image)."""
    b, t = frames.shape[:2]
    x1, y1, x2, y2 = boxes.unbind(-1)  # [B] each
    mw, mh = (x2 - x1) * margin, (y2 - y1) * margin
    x1, x2, y1, y2 = x1 - mw, x2 + mw, y1 - mh, y2 + mh
    # affine map from the output grid [-1, 1] to the box in input coordinates [-1, 1]
    theta = torch.zeros(b, 2, 3, dtype=frames.dtype, device=frames.device)
    theta[:, 0, 0] = x2 - x1
    theta[:, 0, 2] = x1 + x2 - 1
    theta[:, 1, 1] = y2 - y1
    theta[:, 1, 2] = y1 + y2 - 1
    theta = theta.repeat_interleave(t, dim=0)  # [B*T, 2, 3]
    flat = frames.flatten(0, 1)  # [B*T, 3, H, W]
    grid = F.affine_grid(theta, [b * t, 3, *size], align_corners=False)
    crops = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.view(b, t, 3, *size)


@register_family
class OracleCrop(RAVARModel):
    """Upper bound: classify the actions of the TRUE person's crop; the box is the truth."""

    family = "oracle_crop"
    config_class = OracleCropConfig
    uses_text = False
    is_oracle = True

    def __init__(self, config: OracleCropConfig) -> None:
        super().__init__(config)
        self.visual = build_visual(config.visual)
        self.proj = nn.Sequential(nn.Linear(self.visual.dim, config.dim), nn.LayerNorm(config.dim))
        self.action_head = ActionHead(config.dim, dropout=config.dropout)

    def predict(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if "box" not in batch:
            raise RavarError(
                "oracle_crop needs the ground-truth box of every instance: it is an upper bound "
                "for evaluation, not a model that can run on new videos"
            )
        true_box = batch["box"].to(batch["frames"].dtype)  # [B, 4]
        crops = crop_boxes(batch["frames"], true_box, self.config.crop_size, self.config.margin)
        video = self.proj(pool_video(self.visual(crops)))  # [B, dim]
        return self.action_head(video), true_box.clone()


register_model("no_text_tiny", "no_text", NoTextConfig, "video only, no text (I3D/X3D-style)")
register_model(
    "no_text_base", "no_text",
    lambda: NoTextConfig(visual=paper_visual(), dim=768, clip=paper_clip()),
    "video only, paper-size frozen BLIP-2 visual tokens",
)  # fmt: skip
register_model(
    "late_fusion_tiny", "late_fusion", LateFusionConfig,
    "global video + sentence embedding (BLIP-2-style retrieval baseline)",
)  # fmt: skip
register_model(
    "late_fusion_base", "late_fusion",
    lambda: LateFusionConfig(visual=paper_visual(), dim=768, clip=paper_clip()),
    "late fusion, paper-size frozen BLIP-2 visual tokens and MiniLM",
)  # fmt: skip
register_model(
    "oracle_crop_tiny", "oracle_crop", OracleCropConfig,
    "ORACLE upper bound: actions from the ground-truth person's crop",
)  # fmt: skip
