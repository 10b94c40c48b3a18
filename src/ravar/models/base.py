"""What every `ravar` model is: a module that maps a batch of the Dataset to action logits and a
keyframe box, and adds its named losses when the batch carries targets.

Batch keys a model may read (from `ravar.data.dataset.collate`):
    frames [B, T, 3, H, W], keyframe [B, 3, H, W], text (B strings),
    det_boxes [B, D, 4], det_scores [B, D], det_mask [B, D], det_categories (B lists of D strings),
    targets: labels [B, 80], box [B, 4].
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ravar.errors import RavarError
from ravar.models.losses import compute_losses


def add_losses(losses: dict[str, torch.Tensor], aux: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pop the total "loss" out of `losses`, merge the named `aux` losses into it, and return
    the new total."""
    total = losses.pop("loss")
    for name, value in aux.items():
        losses[name] = value
        total = total + value
    return total


class RAVARModel(nn.Module):
    """Base class. Subclasses set `family` and `config_class` and implement `predict`.

    Each config dataclass has at least `clip: ClipConfig` (how clips must be sampled for this model)
    and `loss: LossConfig`.
    """

    family: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    needs_detections: ClassVar[bool] = False  # reads det_* keys (inference must run a detector)
    uses_text: ClassVar[bool] = True
    is_oracle: ClassVar[bool] = False  # sees ground truth at test time: never ranked with others
    visual_reads_clip: ClassVar[bool] = True  # `self.visual` sees the clip's frames as sampled

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self._frozen: list[nn.Module] = []

    def predict(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits `[B, 80]` and boxes `[B, 4]` (valid normalised xyxy) for a batch."""
        raise NotImplementedError

    def predict_with_aux(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`predict` plus the model's own named, weighted losses (such as picking the referred
        person among the detections); those need the batch's targets and are empty without."""
        logits, boxes = self.predict(batch)
        return logits, boxes, {}

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """{"logits": [B, 80], "boxes": [B, 4]} plus, when the batch has targets, "losses"
        (named, weighted) and "loss" (their sum)."""
        logits, boxes, aux = self.predict_with_aux(batch)
        out: dict[str, Any] = {"logits": logits, "boxes": boxes}
        if "labels" in batch and "box" in batch:
            losses = compute_losses(logits, boxes, batch["labels"], batch["box"], self.config.loss)
            out["loss"] = add_losses(losses, aux)
            out["losses"] = losses
        return out

    def backbone_tokens(self, batch: dict[str, Any]) -> torch.Tensor:
        """`[B, T, Q, C]`: the visual backbone's tokens of the batch's clips, read from
        `batch["visual_features"]` when the feature cache supplied them, else computed from
        `batch["frames"]`."""
        cached = batch.get("visual_features")
        if cached is None:
            if "frames" not in batch:
                raise RavarError(
                    f"{self.family}: the batch has neither 'frames' nor 'visual_features'"
                )
            return self.visual(batch["frames"])  # type: ignore[operator]
        if cached.dim() != 4:
            raise RavarError(
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

    def needs_frames_with_cache(self) -> bool:
        """Whether the model still reads the frames when its visual features come from a store
        (e.g. crops of the clip for person appearance)."""
        return False

    def freeze(self, module: nn.Module) -> nn.Module:
        """Mark `module` frozen: no gradients, and always in eval mode (dropout off), even after
        `model.train()`."""
        for p in module.parameters():
            p.requires_grad_(False)
        module.eval()
        self._frozen.append(module)
        return module

    def train(self, mode: bool = True) -> RAVARModel:
        super().train(mode)
        for m in self._frozen:
            m.eval()
        return self

    def param_counts(self) -> tuple[int, int]:
        """(total, trainable) number of parameters."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total, trainable
