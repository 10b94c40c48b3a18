"""The model card (`README.md`) of a checkpoint directory: YAML front matter the Hugging Face Hub
reads (library_name, license, tags, datasets, metrics and a model-index with their values) and a
body for people: model name and family, parameters, config summary, training data and metrics
when known, and how to load it.

What the card says comes from the checkpoint's config.json and, for a checkpoint inside a
training run (RUN_DIR/best, RUN_DIR/last), from the run's files: `test_metrics.json` (when it was
computed with this checkpoint), `config.yaml` (the dataset folder, whose dataset.json names it)
and `steps.csv` / `metrics.jsonl` (steps trained).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ravar.engine.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    find_checkpoint,
    read_checkpoint_config,
)
from ravar.metrics import TABLE_COLUMNS
from ravar.util.io import atomic_write_text

CARD_FILE = "README.md"
LIBRARY_NAME = "ravar"
DEFAULT_LICENSE = "apache-2.0"
TASK_TYPE = "video-classification"  # the nearest Hub task id for referring action recognition
# the card's metrics: (key of ravar.metrics.compute_metrics, Hub metric id)
CARD_METRICS = (
    ("mIoU", "mean_iou"),
    ("Acc@0.5", "accuracy"),
    ("mAP_weighted", "mAP"),
    ("mAP_macro", "mAP"),
    ("AUROC_weighted", "roc_auc"),
    ("AUROC_macro", "roc_auc"),
)


@dataclass
class CardFacts:
    """Everything the card states about one checkpoint."""

    model_name: str
    family: str
    model: dict[str, Any]
    train: dict[str, Any] | None = None
    epoch: int = 0
    step: int = 0
    parameters: int | None = None
    trainable: int | None = None
    dataset: str | None = None  # dataset.json "name" of the training data
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> metric values
    license: str = DEFAULT_LICENSE


def _parameters_in(weights: Path) -> int | None:
    """Number of parameters stored in a safetensors file (from its header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118
    except Exception:  # a damaged file: the card leaves the count out
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_dataset_name(run_dir: Path) -> str | None:
    """The name in dataset.json of the dataset a run's config.yaml names, if readable."""
    import yaml

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        data = saved.get("data") if isinstance(saved, dict) else None
        meta = _read_json(Path(data) / "dataset.json") if data else None
    except (OSError, yaml.YAMLError):
        return None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def _run_test_metrics(run_dir: Path, checkpoint: Path, check: bool) -> dict[str, Any] | None:
    """The run's test metrics; with `check` only when test_metrics.json was computed with
    `checkpoint`."""
    summary = _read_json(run_dir / "test_metrics.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        return None
    source = summary.get("checkpoint")
    if check and (not source or Path(source).resolve() != checkpoint.resolve()):
        return None
    return summary["metrics"]


def card_facts(
    checkpoint: str | os.PathLike,
    *,
    run_dir: str | os.PathLike | None = None,
    metrics: Mapping[str, Mapping[str, Any]] | None = None,
    dataset: str | None = None,
    parameters: tuple[int, int] | None = None,
    license: str = DEFAULT_LICENSE,
    trust_run: bool = False,
) -> CardFacts:
    """What the card of `checkpoint` says: its config.json, plus the files of `run_dir` (default:
    the checkpoint's parent when that is a training run); the run's test metrics count when
    they were computed with this checkpoint, or always with `trust_run` (the model was saved
    from that run). `metrics` (split -> values), `dataset` and `parameters` ((total,
    trainable)) override what is read."""
    root = find_checkpoint(checkpoint)
    config = read_checkpoint_config(root)
    facts = CardFacts(
        model_name=config["model_name"],
        family=config["family"],
        model=config["model"],
        train=config.get("train"),
        epoch=int(config.get("epoch") or 0),
        step=int(config.get("step") or 0),
        license=license,
    )
    if parameters is not None:
        facts.parameters, facts.trainable = parameters
    else:
        facts.parameters = _parameters_in(root / WEIGHTS_FILE)
    if isinstance(config.get("metrics"), dict):
        facts.metrics["val"] = config["metrics"]
    run = Path(run_dir) if run_dir is not None else root.parent
    if run_dir is not None or (run / "config.yaml").is_file():
        facts.dataset = _run_dataset_name(run)
        test = _run_test_metrics(run, root, check=not trust_run)
        if test is not None:
            facts.metrics["test"] = test
    if dataset is not None:
        facts.dataset = dataset
    for split, values in (metrics or {}).items():
        facts.metrics[split] = dict(values)
    return facts


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def front_matter(facts: CardFacts) -> str:
    """The card's YAML front matter (between the `---` lines), in the Hub's model card format."""
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    for split, values in facts.metrics.items():
        for key, metric_id in CARD_METRICS:
            value = _number(values.get(key))
            if value is not None:
                results.append(
                    EvalResult(
                        task_type=TASK_TYPE,
                        task_name="Referring Atomic Video Action Recognition",
                        dataset_type=facts.dataset or "unknown",
                        dataset_name=facts.dataset or "unknown",
                        dataset_split=split,
                        metric_type=metric_id,
                        metric_name=f"{TABLE_COLUMNS[key]} ({split})",
                        metric_value=round(100 * value, 2),
                    )
                )
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=facts.license,
        tags=[LIBRARY_NAME, "referring-action-recognition", "ava", facts.family, "pytorch"],
        datasets=[facts.dataset] if facts.dataset else None,
        metrics=sorted({m for _, m in CARD_METRICS}) if results else None,
        model_name=facts.model_name if results else None,  # the model-index needs a name
        eval_results=results or None,
    )
    return data.to_yaml()


def _flat(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "| split | n | " + " | ".join(TABLE_COLUMNS.values()) + " |",
        "|---|---|" + "---|" * len(TABLE_COLUMNS),
    ]
    for split, values in metrics.items():
        cells = []
        for key in TABLE_COLUMNS:
            value = _number(values.get(key))
            cells.append(f"{100 * value:.2f}" if value is not None else "-")
        lines.append(f"| {split} | {values.get('n', '-')} | " + " | ".join(cells) + " |")
    return lines


def _config_summary(facts: CardFacts) -> list[str]:
    """A few lines on what the model reads: clip sampling and backbones."""
    model = facts.model
    clip = model.get("clip") or {}
    lines = []
    if clip:
        size = "x".join(str(v) for v in clip.get("size") or []) or "?"
        lines.append(
            f"- clip: {clip.get('num_frames')} frames of {size} pixels over "
            f"{clip.get('window_seconds')} s"
        )
    for part in ("visual", "text"):
        sub = model.get(part)
        if isinstance(sub, Mapping):
            source, frozen = sub.get("hf_name_or_path"), sub.get("frozen")
            if frozen in (None, False, "none"):
                state = "trained"
            else:
                state = "frozen" if frozen is True else f"frozen: {frozen}"
            lines.append(
                f"- {part} backbone: {sub.get('kind')}"
                + (f" ({source})" if source else "")
                + f", {state}"
            )
    if "dim" in model:
        lines.append(f"- width: {model['dim']}")
    if facts.train:
        train = facts.train
        lines.append(
            f"- training: {train.get('epochs')} epochs of batch {train.get('batch_size')}, "
            f"lr {train.get('lr')} ({train.get('schedule')})"
        )
    return lines


def card_text(facts: CardFacts, repo_id: str | None = None) -> str:
    """The whole README.md: front matter and body."""
    where = repo_id or "DIR"
    if facts.parameters is None:
        params = "unknown"
    elif facts.trainable is None:
        params = f"{facts.parameters:,} (stored in {WEIGHTS_FILE})"
    else:
        params = f"{facts.parameters:,} ({facts.trainable:,} trainable)"
    body = [
        f"# {facts.model_name}",
        "",
        f"A `ravar` model of the **{facts.family}** family for "
        "Referring Atomic Video Action Recognition: given a video clip and a sentence that "
        "describes one person, it gives that person's AVA v2.2 atomic actions (80 classes, "
        "multi-label) and their box on the keyframe.",
        "",
        f"- parameters: {params}",
        f"- trained: {facts.epoch} epochs, {facts.step} optimizer steps"
        if facts.step
        else "- trained: not trained with `ravar train` (no steps recorded)",
        f"- training data: {facts.dataset}" if facts.dataset else "- training data: not recorded",
        "",
        "## Metrics",
        "",
    ]
    if facts.metrics:
        body += [
            "Percent; mAP and AUROC weighted by class support (w) and macro means, over the "
            "classes with a positive in the split; mIoU and Acc@0.5 of the keyframe box.",
            "",
            *_metrics_table(facts.metrics),
        ]
    else:
        body.append("Not evaluated.")
    body += ["", "## Config", "", *_config_summary(facts), ""]
    body += ["<details><summary>every key</summary>", "", "| key | value |", "|---|---|"]
    body += [f"| model.{k} | `{json.dumps(v)}` |" for k, v in _flat(facts.model)]
    if facts.train:
        keys = ("epochs", "batch_size", "lr", "schedule", "weight_decay", "ema", "seed")
        body += [f"| train.{k} | `{json.dumps(facts.train.get(k))}` |" for k in keys]
    body += [
        "",
        "</details>",
        "",
        "## How to load it",
        "",
        "```python",
        "import ravar",
        "",
        f'model = ravar.load_model("{where}")  # a RAVARModel in eval mode',
        "```",
        "",
        "A repo id is read from the local Hugging Face cache; `ravar.load_model(repo_id, "
        "download=True)` fetches it first. The folder is a ravar checkpoint "
        f"({CONFIG_FILE} + {WEIGHTS_FILE}), so the command line reads it too:",
        "",
        "```bash",
        f"ravar eval --checkpoint {where if repo_id is None else 'DIR'} --data DATA_DIR",
        "```",
        "",
    ]
    return f"---\n{front_matter(facts)}\n---\n\n" + "\n".join(body)


def write_card(
    checkpoint: str | os.PathLike,
    *,
    repo_id: str | None = None,
    out: str | os.PathLike | None = None,
    **facts: Any,
) -> Path:
    """Write the card of `checkpoint` as its README.md (or at `out`); `facts` go to
    `card_facts`. Returns the path written."""
    root = find_checkpoint(checkpoint)
    path = Path(out) if out is not None else root / CARD_FILE
    atomic_write_text(path, card_text(card_facts(root, **facts), repo_id=repo_id))
    return path
