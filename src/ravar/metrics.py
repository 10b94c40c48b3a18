"""RAVAR evaluation metrics, the one implementation: box mIoU and Acc@IoU>=0.5, and the papers'
support-weighted mAP / AUROC (scikit-learn, classes without a positive dropped) plus macro means
and per-class AP."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from ravar.errors import RavarError
from ravar.util.box_ops import box_iou_paired

ArrayLike = np.ndarray | torch.Tensor

TABLE_COLUMNS: dict[str, str] = {
    "mIoU": "mIoU",
    "Acc@0.5": "Acc@0.5",
    "mAP_weighted": "mAP (w)",
    "mAP_macro": "mAP (macro)",
    "AUROC_weighted": "AUROC (w)",
    "AUROC_macro": "AUROC (macro)",
}


class MetricInputError(RavarError, ValueError):
    """Arrays given to `compute_metrics` have the wrong shape or values."""


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """`x` as a float64 numpy array; raises if it is not numeric."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MetricInputError(f"{name}: not a numeric array ({e})") from e


def _check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str], last: int | None) -> None:
    """Both arrays are 2-D, non-empty, finite, of equal shape (and `last` columns if given)."""
    for arr, name in zip((a, b), names, strict=True):
        if arr.ndim != 2 or (last is not None and arr.shape[1] != last):
            want = f"[N, {last}]" if last is not None else "[N, C]"
            raise MetricInputError(f"{name}: expected shape {want}, got {list(arr.shape)}")
        if arr.shape[0] == 0:
            raise MetricInputError(f"{name}: no instances (N == 0)")
        if not np.isfinite(arr).all():
            raise MetricInputError(f"{name}: contains NaN or inf")
    if a.shape != b.shape:
        raise MetricInputError(
            f"{names[0]}: shape {list(a.shape)} does not match {names[1]} {list(b.shape)}"
        )


def _box_metrics(pred_boxes: np.ndarray, true_boxes: np.ndarray) -> dict[str, float]:
    """mIoU and the fraction of instances with IoU >= 0.5, for [N, 4] xyxy boxes."""
    iou = box_iou_paired(torch.from_numpy(pred_boxes), torch.from_numpy(true_boxes))  # [N]
    return {"mIoU": float(iou.mean()), "Acc@0.5": float((iou >= 0.5).double().mean())}


def _weighted_and_macro(values: dict[int, float], support: np.ndarray) -> tuple[float, float]:
    """Support-weighted and plain means of per-class values keyed by column index."""
    if not values:
        return math.nan, math.nan
    cols = list(values)
    v = np.array([values[c] for c in cols])  # [K]
    w = support[cols]  # [K]
    return float((v * w).sum() / w.sum()), float(v.mean())


def _ranking_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Weighted / macro mAP and AUROC over classes that can be evaluated, and per-class AP."""
    n = labels.shape[0]
    support = labels.sum(axis=0)  # [C] positives per class
    ap = {
        c: float(average_precision_score(labels[:, c], scores[:, c]))
        for c in range(labels.shape[1])
        if support[c] > 0
    }
    auroc = {
        c: float(roc_auc_score(labels[:, c], scores[:, c]))
        for c in range(labels.shape[1])
        if 0 < support[c] < n
    }
    map_w, map_m = _weighted_and_macro(ap, support)
    auc_w, auc_m = _weighted_and_macro(auroc, support)
    return {
        "mAP_weighted": map_w,
        "mAP_macro": map_m,
        "AUROC_weighted": auc_w,
        "AUROC_macro": auc_m,
        "ap_classes": len(ap),
        "auroc_classes": len(auroc),
        "per_class_AP": {c + 1: v for c, v in ap.items()},
    }


def compute_metrics(
    pred_boxes: ArrayLike | None,
    true_boxes: ArrayLike | None,
    scores: ArrayLike | None,
    labels: ArrayLike | None,
) -> dict[str, Any]:
    """All RAVAR metrics. Boxes [N, 4] normalised xyxy; scores [N, C] (probabilities or logits)
    and labels [N, C] in {0, 1}. Either pair may be None, and then its keys are absent."""
    if (pred_boxes is None) != (true_boxes is None):
        raise MetricInputError("pred_boxes and true_boxes: give both or neither")
    if (scores is None) != (labels is None):
        raise MetricInputError("scores and labels: give both or neither")
    if pred_boxes is None and scores is None:
        raise MetricInputError("compute_metrics: nothing to evaluate (all inputs are None)")
    boxes = scored = None
    if pred_boxes is not None and true_boxes is not None:
        boxes = _as_numpy(pred_boxes, "pred_boxes"), _as_numpy(true_boxes, "true_boxes")
        _check_pair(*boxes, ("pred_boxes", "true_boxes"), last=4)
    if scores is not None and labels is not None:
        scored = _as_numpy(scores, "scores"), _as_numpy(labels, "labels")
        _check_pair(*scored, ("scores", "labels"), last=None)
        if not np.isin(scored[1], (0.0, 1.0)).all():
            raise MetricInputError("labels: values must be 0 or 1")
    if boxes is not None and scored is not None and len(boxes[0]) != len(scored[0]):
        raise MetricInputError(
            f"pred_boxes has {len(boxes[0])} instances but scores has {len(scored[0])}: "
            "N must match"
        )
    first = boxes if boxes is not None else scored
    assert first is not None
    out: dict[str, Any] = {"n": len(first[0])}
    if boxes is not None:
        out.update(_box_metrics(*boxes))
    if scored is not None:
        out.update(_ranking_metrics(*scored))
    return out


def _cell(value: Any) -> str:
    """A metric as a table cell: fractions in percent with 2 decimals, counts as integers."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    return "nan" if math.isnan(value) else f"{100.0 * value:.2f}"


def format_metrics_table(rows: dict[str, dict[str, Any]], keys: Sequence[str] | None = None) -> str:
    """A plain-text table: one row per named result, one column per metric key (default: the
    papers' columns), fractions shown in percent like the papers; missing keys shown as "-"."""
    keys = list(TABLE_COLUMNS) if keys is None else list(keys)
    header = ["method"] + [TABLE_COLUMNS.get(k, k) for k in keys]
    body = [[name] + [_cell(m.get(k)) for k in keys] for name, m in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def metrics_to_json(metrics: Any) -> Any:
    """`metrics` with JSON-safe values: NaN/inf -> None, numpy scalars -> python, keys -> str."""
    if isinstance(metrics, dict):
        return {str(k): metrics_to_json(v) for k, v in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [metrics_to_json(v) for v in metrics]
    if isinstance(metrics, (bool, np.bool_)):
        return bool(metrics)
    if isinstance(metrics, (int, np.integer)):
        return int(metrics)
    if isinstance(metrics, (float, np.floating)):
        return float(metrics) if math.isfinite(metrics) else None
    return metrics
