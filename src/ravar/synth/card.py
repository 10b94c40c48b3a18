"""The dataset card `DIR/README.md`: preset, seed, classes, counts, trivial baselines, preview."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ravar.data.format import read_split
from ravar.labels import action_name
from ravar.metrics import format_metrics_table
from ravar.synth import catalog as C
from ravar.synth.baselines import trivial_baselines
from ravar.synth.presets import get_preset

PREVIEW_FILE = "preview.png"


def card_text(dataset_dir: Path, summary: dict[str, Any], preview: str | None) -> str:
    """Markdown of the card."""
    preset = get_preset(summary["preset"])
    splits = list(summary["counts"])
    per_split = {
        s: Counter(a for r in read_split(dataset_dir, s) for a in r.actions) for s in splits
    }
    lines = [
        f"# RefAVA-Synth ({summary['preset']}, seed {summary['seed']})",
        "",
        "Procedural multi-person clips for Referring Atomic Video Action Recognition, written by "
        f"`ravar synth generate DIR --preset {summary['preset']} --seed {summary['seed']}` "
        f"in {summary['seconds']} s. Same preset and seed give byte-identical annotations.",
        "",
        f"- frames: {preset.width}x{preset.height}, {preset.fps:g} fps, "
        f"{preset.num_frames} frames per clip, keyframe at t = {preset.keyframe_time:g} s",
        f"- people per clip: {preset.people[0]}..{preset.people[1]}; "
        f"at most {preset.max_targets} referred people per clip",
        "- `test_novel`: held-out shirt/trouser colour combinations and held-out synonyms",
        "- `synth/<split>.jsonl`: every person's attributes, box and actions (for checks)",
        "",
        "## Counts",
        "",
        "| split | clips | records |",
        "|---|---:|---:|",
    ]
    for s in splits:
        c = summary["counts"][s]
        lines.append(f"| {s} | {c['clips']} | {c['records']} |")
    lines += ["", "## Classes (AVA v2.2 ids) and records per split", ""]
    lines.append("| id | class | group | " + " | ".join(splits) + " |")
    lines.append("|---:|---|---|" + "---:|" * len(splits))
    for aid in C.synth_action_ids():
        name = action_name(aid)
        counts = " | ".join(str(per_split[s][aid]) for s in splits)
        lines.append(f"| {aid} | {name} | {C.group_of(name)} | {counts} |")
    lines += [
        "",
        "## Trivial baselines (no learning, the text ignored)",
        "",
        '"random person": box and actions of a random person in the clip; "clip mean": mean '
        'box and action vector of the clip\'s people; "prior": training-set mean box and class '
        "frequencies. Percent, from `ravar.metrics`. A model that reads the text must beat "
        '"random person" clearly.',
        "",
    ]
    for s in splits:
        table = format_metrics_table(trivial_baselines(dataset_dir, s))
        lines += [f"### {s}", "", "```", table, "```", ""]
    if preview is not None:
        lines += [
            "## Preview",
            "",
            "Keyframes with the referred person's box, the sentence and the actions; the bottom "
            "row is one clip over time.",
            "",
            f"![preview]({preview})",
            "",
        ]
    return "\n".join(lines)


def write_card(dataset_dir: str | Path, summary: dict[str, Any], with_preview: bool = True) -> Path:
    """Write `DIR/README.md` (and `DIR/preview.png`)."""
    out = Path(dataset_dir)
    preview = None
    if with_preview:
        from ravar.synth.preview import write_preview

        write_preview(out, out / PREVIEW_FILE, n=8)
        preview = PREVIEW_FILE
    path = out / "README.md"
    path.write_text(card_text(out, summary, preview), encoding="utf-8")
    return path
