"""What every `ravar` model is: a module whose `forward(batch)` maps a batch of the Dataset to a
`ModelOutput` (action logits, a keyframe box, each head set's answer, and the referring head's
person scores), and whose `criterion()` turns that output and the batch's targets into named
losses:

    out = model(batch)                        # training, evaluation and inference alike
    losses = model.criterion()(out, batch)    # Losses(total, named); needs labels and box

Batch keys a model may read (from `ravar.data.dataset.collate`):
    frames [B, T, 3, H, W], keyframe [B, 3, H, W], text (B strings),
    det_boxes [B, D, 4], det_scores [B, D], det_mask [B, D], det_categories (B lists of D strings),
    targets: labels [B, 80], box [B, 4] (a referring head reads the box in training to pick the
    true person).

Frozen backbone parts stay frozen through `ravar.models.backbones.frozen.FrozenPartMixin`.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import nn

from ravar.errors import BatchError
from ravar.models.losses import Criterion
from ravar.models.output import ModelOutput


class RAVARModel(nn.Module):
    """Base class. Subclasses set `family` and `config_class` and implement `forward`.

    Each config dataclass has at least `clip: ClipConfig` (how clips must be sampled for this model)
    and `loss: LossConfig`.
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    uses_text: ClassVar[bool] = True
    is_oracle: ClassVar[bool] = False  # sees ground truth at test time: never ranked with others
    visual_reads_clip: ClassVar[bool] = True  # `self.visual` sees the clip's frames as sampled

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        # the registered name it was created or loaded as (a checkpoint's "model_name")
        self.model_name: str | None = None

    @property
    def needs_detections(self) -> bool:
        """Whether the model reads the det_* keys (inference must then run a detector)."""
        return False

    def forward(self, batch: dict[str, Any]) -> ModelOutput:
        """The outputs for a batch (see `ModelOutput`): the same call trains, evaluates and
        predicts; with the batch's targets a referring head also reports whom to pick."""
        raise NotImplementedError

    def criterion(self) -> Criterion:
        """The losses this model is trained with (from `config.loss`)."""
        return Criterion(self.config.loss)

    def backbone_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """`[B, T, Q, C]`: the visual backbone's tokens of the batch's clips, read from
        `batch["visual_features"]` when the feature cache supplied them, else computed from
        `batch["frames"]`."""
        cached = batch.get("visual_features")
        if cached is None:
            if "frames" not in batch:
                raise BatchError(
                    f"{self.family}: the batch has neither 'frames' nor 'visual_features'"
                )
            return self.visual(batch["frames"])  # type: ignore[operator]
        if cached.dim() != 4:
            raise BatchError(
                f"batch['visual_features'] must be [B, T, Q, C], got {list(cached.shape)} "
                "(evaluate multi-clip batches one clip at a time)"
            )
        return cached.float()

    def cacheable_visual(self) -> nn.Module | None:
        """The visual backbone whose output a feature store may stand in for: present, frozen
        whole and fed the sampled clip; None otherwise."""
        visual = getattr(self, "visual", None)
        if visual is None or not self.visual_reads_clip:
            return None
        params = list(visual.parameters())
        if not params or any(p.requires_grad for p in params):
            return None
        return visual

    @property
    def needs_frames_with_cache(self) -> bool:
        """Whether the model still reads the frames when its visual features come from a store
        (e.g. crops of the clip for person appearance)."""
        return False

    def param_counts(self) -> tuple[int, int]:
        """(total, trainable) number of parameters."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total, trainable

    # ---- sharing, Hugging Face style (see ravar.engine.hub) ----------------------------------

    def save_pretrained(self, directory: str | os.PathLike, **kwargs: Any) -> Any:
        """Write this model as a ravar checkpoint folder with a model card README.md; returns
        its path. Options (run_dir, metrics, dataset, license, model_name): see
        `ravar.engine.hub.save_pretrained`."""
        from ravar.engine.hub import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, **kwargs: Any) -> RAVARModel:
        """The model of a checkpoint folder or a Hub repo id in the local Hugging Face cache
        (`download=True` fetches it first; nothing is fetched otherwise), in eval mode.
        Called on a subclass, the checkpoint must be of that family."""
        from ravar.engine.checkpoint import CheckpointError
        from ravar.engine.hub import load_pretrained

        model = load_pretrained(source, **kwargs)
        if cls is not RAVARModel and not isinstance(model, cls):
            raise CheckpointError(
                f"{source}: holds a {model.family!r} model, not {cls.family or cls.__name__!r}"
            )
        return model

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Save this model with its card and upload it to Hub model repo `repo_id` (created if
        needed); returns the commit URL. Options: private, commit_message, token and those of
        `save_pretrained`."""
        from ravar.engine.hub import push_model

        return push_model(self, repo_id, **kwargs)
