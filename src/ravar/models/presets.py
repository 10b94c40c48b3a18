"""The backbone and clip settings the named configs share: CPU-sized ("tiny") and the papers'
("paper": frozen BLIP-2 visual tokens, 8 frames at 224)."""

from __future__ import annotations

from ravar.data.clip_config import ClipConfig
from ravar.models.backbones import VisualConfig, paper_blip2_config
from ravar.models.losses import LossConfig

# Weight of the action loss in the CPU-size configs. The action BCE is a mean over 80 classes
# (~0.07 once the class prior is learned); at weight 1 its gradient on the shared person features
# is a fifth of the selection loss's, and in a few hundred steps a tiny RefAtomNet++ stayed at
# chance on actions (val AUROC 49) while the same crop encoder trained on actions alone reached
# AUROC 90. At weight 10 it reaches AUROC 71 in 300 steps of batch 8, with the same selection.
TINY_ACTION_WEIGHT = 10.0

# The referring-head switches of the `*_tiny_pick` configs (both families): word matching, a
# location encoder of the head's own, and the people context (`ravar.models.referring`).
# docs/learning.md has the runs.
PICK_SWITCHES = {"word_match": True, "referring_encoder": "own", "person_context": True}


def tiny_loss(**changes: object) -> LossConfig:
    """The paper's loss (BCE on actions, MSE x5 on the box) with the action term weighted
    `TINY_ACTION_WEIGHT`; `changes` override fields."""
    return LossConfig(**{"action_weight": TINY_ACTION_WEIGHT, **changes})


def tiny_visual(depth: int = 1) -> VisualConfig:
    """Scratch video transformer, 8 frames of 64x64: 8x8 patches pooled to 4x4 tokens, width 128."""
    return VisualConfig(kind="scratch", dim=128, patch=8, depth=depth, heads=4,
                        tokens_per_frame=16, image_size=(64, 64), num_frames=8)  # fmt: skip


def tiny_clip() -> ClipConfig:
    """8 frames of 64x64 spread over +-1.5 s, ImageNet normalisation."""
    return ClipConfig(num_frames=8, size=(64, 64), normalization="imagenet")


def paper_visual() -> VisualConfig:
    """Frozen BLIP-2 vision + Q-Former of `Blip2Config()` (EVA ViT-g, 32 queries per frame);
    random weights unless `hf_name_or_path` is set to a local checkpoint."""
    return VisualConfig(kind="hf", hf_kind="blip2", hf_config=paper_blip2_config(), frozen=True)


def paper_clip() -> ClipConfig:
    """8 frames at 224 with BLIP-2 normalisation, as in the papers."""
    return ClipConfig(num_frames=8, size=(224, 224), normalization="blip2")
