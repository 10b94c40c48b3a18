"""Location-semantic tokens: each detection on the keyframe becomes one token that joins where it
is (its box) with what it is (the text embedding of its category name).

    feature_d = [x1, y1, x2, y2, cx, cy, w, h, score] ++ LayerNorm(text(category_d))
    token_d   = MLP(feature_d)            (zero for padded, or filtered-out, detections)

With `appearance` on, each kept detection also gets the appearance-and-motion vector of its crop
of the clip (`ravar.models.roi`), added to its token: person-centric visual features that a
from-scratch video encoder on small frames learns far faster than it learns to find people.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ravar.config import ConfigError
from ravar.errors import BatchError
from ravar.models.heads import MLP
from ravar.models.roi import DetectionAppearance
from ravar.util.box_ops import box_features

NUM_GEOMETRY = 9  # x1, y1, x2, y2, cx, cy, w, h, score


@dataclass
class LocationConfig:
    """How detections become tokens."""

    hidden: int = 128  # MLP width
    layers: int = 2  # MLP depth
    dropout: float = 0.0
    persons_only: bool = False  # zero non-person detections (as the authors did); objects help
    person_categories: tuple[str, ...] = ("person",)  # names counted as persons (lower-case)
    normalize_category: bool = True  # LayerNorm on the category embedding before joining
    appearance: bool = False  # add features of each detection's crop of the clip
    appearance_size: tuple[int, int] = (32, 16)  # (h, w) of the crops
    appearance_margin: float = 0.1  # crops this fraction of the box larger on every side
    appearance_width: int = 64  # channels of the crop encoder

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1:
            raise ConfigError(
                f"LocationConfig: hidden and layers must be >= 1, got hidden={self.hidden}, "
                f"layers={self.layers}"
            )
        self.appearance_size = (int(self.appearance_size[0]), int(self.appearance_size[1]))
        if min(self.appearance_size) < 4 or self.appearance_width < 4:
            raise ConfigError(
                "LocationConfig: appearance_size must be at least 4x4 and appearance_width >= 4, "
                f"got {list(self.appearance_size)} and {self.appearance_width}"
            )


def box_geometry(det_boxes: torch.Tensor, det_scores: torch.Tensor) -> torch.Tensor:
    """`[B, D, 4]` xyxy boxes and `[B, D]` scores -> `[B, D, 9]` (x1, y1, x2, y2, cx, cy, w, h,
    score)."""
    return torch.cat([box_features(det_boxes), det_scores[..., None]], dim=-1)  # [B, D, 9]


class LocationSemanticEncoder(nn.Module):
    """Detections -> location-semantic tokens `[B, D, out_dim]`."""

    def __init__(self, config: LocationConfig, text_dim: int, out_dim: int) -> None:
        super().__init__()
        self.config = config
        self.text_dim = text_dim
        self.out_dim = out_dim
        self.category_norm = nn.LayerNorm(text_dim) if config.normalize_category else nn.Identity()
        dim_in = NUM_GEOMETRY + text_dim
        self.mlp = MLP(dim_in, config.hidden, out_dim, config.layers, config.dropout)
        self._persons = frozenset(c.lower() for c in config.person_categories)
        self.appearance = (
            DetectionAppearance(
                config.appearance_size, config.appearance_margin, config.appearance_width, out_dim
            )
            if config.appearance
            else None
        )

    def person_mask(self, det_mask: torch.Tensor, det_categories: list[list[str]]) -> torch.Tensor:
        """`[B, D]` bool: the real detections whose category is a person."""
        is_person = torch.tensor(
            [[c.lower() in self._persons for c in row] for row in det_categories],
            dtype=torch.bool,
            device=det_mask.device,
        ).view(det_mask.shape)
        return det_mask.bool() & is_person

    def keep_mask(self, det_mask: torch.Tensor, det_categories: list[list[str]]) -> torch.Tensor:
        """`[B, D]` bool: the detections that get a token (real ones, and persons only when
        `persons_only`)."""
        if self.config.persons_only:
            return self.person_mask(det_mask, det_categories)
        return det_mask.bool()

    def forward(
        self,
        det_boxes: torch.Tensor,
        det_scores: torch.Tensor,
        det_mask: torch.Tensor,
        det_categories: list[list[str]],
        text_encoder: nn.Module,
        frames: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """det_boxes [B, D, 4] normalised xyxy, det_scores [B, D], det_mask [B, D] bool,
        det_categories (B lists of D names, "" = padding), text_encoder (has `encode_phrases`),
        frames [B, T, 3, H, W] (needed with `appearance`) -> tokens [B, D, out_dim]."""
        b, d = det_mask.shape
        if det_boxes.shape != (b, d, 4) or det_scores.shape != (b, d):
            raise BatchError(
                f"det_boxes {tuple(det_boxes.shape)} / det_scores {tuple(det_scores.shape)} do not "
                f"match det_mask {tuple(det_mask.shape)}"
            )
        if len(det_categories) != b or any(len(row) != d for row in det_categories):
            raise BatchError(f"det_categories must be {b} lists of {d} names")
        keep = self.keep_mask(det_mask, det_categories)  # [B, D]
        if d == 0:
            return det_boxes.new_zeros(b, 0, self.out_dim)
        names = sorted({c for row, k in zip(det_categories, keep.tolist(), strict=True)
                        for c, on in zip(row, k, strict=True) if on and c})  # fmt: skip
        index = {name: i + 1 for i, name in enumerate(names)}  # 0: no category (zero row)
        idx = torch.tensor(
            [[index.get(c, 0) for c in row] for row in det_categories],
            dtype=torch.long,
            device=det_boxes.device,
        )  # [B, D]
        table = det_boxes.new_zeros(len(names) + 1, self.text_dim)  # [1 + N, C_text]
        if names:
            emb = text_encoder.encode_phrases(names).to(det_boxes.dtype)  # [N, C_text]
            table = torch.cat([table[:1], self.category_norm(emb)], dim=0)
        category = table[idx]  # [B, D, C_text]
        geometry = box_geometry(det_boxes, det_scores)  # [B, D, 9]
        tokens = self.mlp(torch.cat([geometry, category], dim=-1))  # [B, D, out_dim]
        if self.appearance is not None:
            if frames is None:
                raise BatchError("LocationConfig.appearance needs the clip: pass frames")
            tokens = tokens + self.appearance(frames, det_boxes, keep)  # [B, D, out_dim]
        return tokens * keep.unsqueeze(-1).to(tokens.dtype)  # padded -> 0
