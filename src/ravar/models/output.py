"""What every model's `forward(batch)` returns: the answer (action logits and a box), each head
set's own answer, and the referring head's person scores and target, which `Criterion` turns into
losses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch.utils import _pytree

Head = tuple[torch.Tensor, torch.Tensor]  # action logits [B, 80], boxes [B, 4]


@dataclass
class ModelOutput:
    """One batch's outputs. `heads` holds every head set's (logits, boxes) by name; `logits` and
    `boxes` are their mean (the mean of valid boxes is a valid box). The `selection_*` fields are
    set by models with a referring head: `selection_scores` always, `selection_target` and
    `selection_valid` when the batch carried the true box and at least one detection."""

    logits: torch.Tensor  # [B, 80] action logits
    boxes: torch.Tensor  # [B, 4] valid normalised xyxy
    heads: dict[str, Head] = field(default_factory=dict)
    selection_scores: torch.Tensor | None = None  # [B, D] person logits (very negative: no person)
    selection_target: torch.Tensor | None = None  # [B] index of the person to pick
    selection_valid: torch.Tensor | None = None  # [B] bool: the sample has a person to pick
    # [B, B*D] each sentence against every person of the batch (clip-major), when the referring
    # head's cross-batch contrast is on and the model trains with the true box
    selection_batch_scores: torch.Tensor | None = None

    @classmethod
    def from_heads(
        cls,
        heads: dict[str, Head],
        scores: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        batch_scores: torch.Tensor | None = None,
    ) -> ModelOutput:
        """The output of head sets `heads` (at least one): logits and boxes are their means."""
        if len(heads) == 1:
            logits, boxes = next(iter(heads.values()))
        else:
            logits = torch.stack([h[0] for h in heads.values()]).mean(0)  # [B, 80]
            boxes = torch.stack([h[1] for h in heads.values()]).mean(0)  # [B, 4]
        return cls(logits, boxes, dict(heads), scores, target, valid, batch_scores)


# DistributedDataParallel finds the output's tensors through torch's pytree (to route unused
# outputs' gradients): register the fields as its children
def _flatten(out: ModelOutput) -> tuple[list[Any], None]:
    return [getattr(out, f.name) for f in fields(out)], None


def _unflatten(values: list[Any], _context: None) -> ModelOutput:
    return ModelOutput(*values)


_pytree.register_pytree_node(ModelOutput, _flatten, _unflatten)
