"""Tests of ravar.metrics against hand-computed cases and scikit-learn column by column."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from ravar.errors import RavarError
from ravar.metrics import compute_metrics, format_metrics_table, metrics_to_json

# Hand example, 4 samples x 2 classes.
# Class 1 (id 1): labels [1, 0, 1, 0], scores [.9, .8, .3, .1].
#   Ranked: s0 (pos, precision 1/1), s1 (neg), s2 (pos, precision 2/3), s3 (neg).
#   AP = (1 + 2/3) / 2 = 5/6.
#   AUROC: pos {.9, .3} vs neg {.8, .1}: .9>.8, .9>.1, .3<.8, .3>.1 -> 3/4.
# Class 2 (id 2): labels [0, 1, 1, 1], scores [.5, .6, .4, .7].
#   Ranked: s3 (pos, 1/1), s1 (pos, 2/2), s0 (neg), s2 (pos, 3/4).
#   AP = (1 + 1 + 3/4) / 3 = 11/12.  AUROC: pos {.6, .4, .7} vs neg {.5}: 2 of 3 pairs -> 2/3.
# Supports 2 and 3:
#   mAP weighted = (2*5/6 + 3*11/12) / 5 = 53/60;  mAP macro = (5/6 + 11/12) / 2 = 7/8.
#   AUROC weighted = (2*3/4 + 3*2/3) / 5 = 7/10;   AUROC macro = (3/4 + 2/3) / 2 = 17/24.
HAND_LABELS = np.array([[1, 0], [0, 1], [1, 1], [0, 1]])
HAND_SCORES = np.array([[0.9, 0.5], [0.8, 0.6], [0.3, 0.4], [0.1, 0.7]])


def test_hand_computed_ap_and_auroc_weighted_vs_macro() -> None:
    m = compute_metrics(None, None, HAND_SCORES, HAND_LABELS)
    assert m["n"] == 4
    assert m["per_class_AP"] == pytest.approx({1: 5 / 6, 2: 11 / 12})
    assert m["mAP_weighted"] == pytest.approx(53 / 60)
    assert m["mAP_macro"] == pytest.approx(7 / 8)
    assert m["AUROC_weighted"] == pytest.approx(7 / 10)
    assert m["AUROC_macro"] == pytest.approx(17 / 24)
    assert m["ap_classes"] == 2 and m["auroc_classes"] == 2
    assert "mIoU" not in m and "Acc@0.5" not in m


def test_class_dropping() -> None:
    # Add class 3 with no positive (dropped from both) and class 4 all positive (AP = 1, kept for
    # AP; no negative, so dropped for AUROC).
    labels = np.concatenate([HAND_LABELS, np.zeros((4, 1)), np.ones((4, 1))], axis=1)
    scores = np.concatenate([HAND_SCORES, np.full((4, 1), 0.99), [[0.1], [0.2], [0.3], [0.4]]], 1)
    m = compute_metrics(None, None, scores, labels)
    assert m["ap_classes"] == 3 and m["auroc_classes"] == 2
    assert set(m["per_class_AP"]) == {1, 2, 4}
    assert m["per_class_AP"][4] == pytest.approx(1.0)
    # Weighted: (2*5/6 + 3*11/12 + 4*1) / 9 = 101/108; macro: (5/6 + 11/12 + 1) / 3 = 11/12.
    assert m["mAP_weighted"] == pytest.approx(101 / 108)
    assert m["mAP_macro"] == pytest.approx(11 / 12)
    assert m["AUROC_weighted"] == pytest.approx(7 / 10)
    assert m["AUROC_macro"] == pytest.approx(17 / 24)


def test_no_positive_anywhere_gives_nan() -> None:
    m = compute_metrics(None, None, np.random.rand(3, 80), np.zeros((3, 80)))
    assert math.isnan(m["mAP_weighted"]) and math.isnan(m["AUROC_macro"])
    assert m["ap_classes"] == 0 and m["auroc_classes"] == 0 and m["per_class_AP"] == {}


def test_box_metrics_hand_made() -> None:
    true = np.array([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.4, 0.4]])
    pred = np.array([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9], [0.2, 0.0, 0.6, 0.4]])
    # IoUs: identical = 1; disjoint = 0; shifted by half the width: inter 0.08, union 0.24 -> 1/3.
    m = compute_metrics(pred, true, None, None)
    assert m["n"] == 3
    assert m["mIoU"] == pytest.approx((1 + 0 + 1 / 3) / 3)
    assert m["Acc@0.5"] == pytest.approx(1 / 3)
    assert "mAP_weighted" not in m


def test_acc_counts_iou_exactly_half() -> None:
    # [0,0,.5,.5] vs [0,0,.5,.25]: inter 0.125, union 0.25 -> IoU exactly 0.5, counted (>=).
    m = compute_metrics(np.array([[0, 0, 0.5, 0.25]]), np.array([[0, 0, 0.5, 0.5]]), None, None)
    assert m["mIoU"] == 0.5 and m["Acc@0.5"] == 1.0


def test_against_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 80)) < 0.1).astype(int)
    labels[:, 5] = 0  # a class with no positive
    scores = rng.normal(size=(60, 80))  # logits are fine: only the order matters
    m = compute_metrics(None, None, scores, labels)
    kept = [c for c in range(80) if labels[:, c].sum() > 0]
    ap = np.array([average_precision_score(labels[:, c], scores[:, c]) for c in kept])
    auc = np.array([roc_auc_score(labels[:, c], scores[:, c]) for c in kept])
    support = labels[:, kept].sum(0)
    assert m["ap_classes"] == len(kept) == m["auroc_classes"]
    assert m["mAP_weighted"] == pytest.approx((support * ap).sum() / support.sum())
    assert m["mAP_macro"] == pytest.approx(ap.mean())
    assert m["AUROC_weighted"] == pytest.approx((support * auc).sum() / support.sum())
    assert m["AUROC_macro"] == pytest.approx(auc.mean())
    # The papers' call on the kept columns gives the same weighted numbers.
    sk = average_precision_score(labels[:, kept], scores[:, kept], average="weighted")
    assert m["mAP_weighted"] == pytest.approx(sk)
    sk = roc_auc_score(labels[:, kept], scores[:, kept], average="weighted")
    assert m["AUROC_weighted"] == pytest.approx(sk)
    assert m["per_class_AP"] == pytest.approx({c + 1: a for c, a in zip(kept, ap, strict=True)})


def test_torch_and_numpy_agree() -> None:
    rng = np.random.default_rng(1)
    true = np.sort(rng.random((20, 4)), axis=1)[:, [0, 1, 2, 3]]
    pred = np.clip(true + rng.normal(scale=0.05, size=true.shape), 0, 1)
    labels = (rng.random((20, 80)) < 0.2).astype(np.float32)
    scores = rng.random((20, 80)).astype(np.float32)
    a = compute_metrics(pred, true, scores, labels)
    b = compute_metrics(
        torch.from_numpy(pred).float(),
        torch.from_numpy(true),
        torch.from_numpy(scores),
        torch.from_numpy(labels).bool(),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-5), k


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        ((None, None, np.zeros((5, 79)), np.zeros((5, 80))), "scores: shape [5, 79]"),
        ((None, None, np.zeros((5, 80)), np.zeros((4, 80))), "scores: shape [5, 80]"),
        ((np.zeros((3, 5)), np.zeros((3, 5)), None, None), "pred_boxes: expected shape [N, 4]"),
        ((np.zeros((3, 4)), np.zeros((2, 4)), None, None), "true_boxes [2, 4]"),
        ((np.zeros((0, 4)), np.zeros((0, 4)), None, None), "pred_boxes: no instances"),
        ((None, None, np.zeros((0, 80)), np.zeros((0, 80))), "scores: no instances"),
        ((None, None, np.full((2, 3), np.nan), np.zeros((2, 3))), "scores: contains NaN"),
        ((None, None, np.full((2, 3), np.inf), np.zeros((2, 3))), "scores: contains NaN or inf"),
        ((None, None, np.zeros((2, 3)), np.full((2, 3), 2)), "labels: values must be 0 or 1"),
        ((None, None, np.zeros(3), np.zeros(3)), "scores: expected shape [N, C]"),
        ((np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((2, 8)), np.zeros((2, 8))), "N must match"),
        ((np.zeros((3, 4)), None, None, None), "pred_boxes and true_boxes"),
        ((None, None, np.zeros((3, 4)), None), "scores and labels"),
        ((None, None, None, None), "nothing to evaluate"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(args: tuple, culprit: str) -> None:
    with pytest.raises(ValueError) as info:
        compute_metrics(*args)
    assert culprit in str(info.value)
    assert isinstance(info.value, RavarError)


def test_format_metrics_table() -> None:
    ours = compute_metrics(None, None, HAND_SCORES, HAND_LABELS)
    ours["mIoU"] = 0.3822
    table = format_metrics_table({"RefAtomNet": ours, "random person": {"mIoU": 0.1}})
    lines = table.splitlines()
    header = "method mIoU Acc@0.5 mAP (w) mAP (macro) AUROC (w) AUROC (macro)"
    assert lines[0].split() == header.split()
    assert set(lines[1]) == {"-", " "}
    # 53/60 = 88.33 %, 7/8 = 87.50 %, 7/10 = 70.00 %, 17/24 = 70.83 %; Acc@0.5 missing -> "-".
    assert lines[2].split() == ["RefAtomNet", "38.22", "-", "88.33", "87.50", "70.00", "70.83"]
    assert lines[3].split() == ["random", "person", "10.00", "-", "-", "-", "-", "-"]
    custom = format_metrics_table({"x": ours}, keys=["ap_classes", "mAP_macro"])
    assert custom.splitlines()[2].split() == ["x", "2", "87.50"]


def test_metrics_to_json_is_json_safe() -> None:
    m = compute_metrics(None, None, np.random.rand(3, 2), np.array([[1, 0], [0, 0], [1, 0]]))
    j = metrics_to_json(m)
    assert j["per_class_AP"].keys() == {"1"}
    assert j["ap_classes"] == 1 and j["auroc_classes"] == 1
    m["mAP_macro"] = float("nan")
    j = metrics_to_json(m)
    assert j["mAP_macro"] is None
    assert json.loads(json.dumps(j, allow_nan=False)) == j
