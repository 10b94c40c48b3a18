"""The results table of record: every registered `tiny` model (and the RefAtomNet ablations)
trained on RefAVA-Synth with one shared budget and several seeds, written into RESULTS.md.

    .venv/bin/python benchmarks/synth_table.py --data runs/synth-standard --generate
    .venv/bin/python benchmarks/synth_table.py --data runs/synth-standard --models refatomnet_tiny

Each (model, seed) run trains with `ravar.engine.train.fit` for `--steps` optimizer steps of
batch `--batch-size`, selects its best checkpoint on val, is evaluated once on test (by `fit`)
and on test_novel; its summary (metrics, parameters, train time) is kept as
`--summaries/<model>-seed<k>.json`, next to this script and under version control: the raw
numbers behind the table. Runs with a summary are skipped, so the script can be stopped and
started again (on another day, or split over machines with `--models`); the table is rebuilt
from every summary present, and its `seeds` column says how many seeds each row averages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from ravar.data.format import META_FILE
from ravar.engine.checkpoint import load_model
from ravar.engine.config import resolve_run_config
from ravar.engine.evaluate import evaluate_checkpoint
from ravar.engine.train import fit
from ravar.metrics import metrics_to_json
from ravar.models.registry import list_models, model_family
from ravar.synth.baselines import trivial_baselines
from ravar.synth.generate import generate
from ravar.util.machine import describe_machine

START = "<!-- synth-table:start -->"
END = "<!-- synth-table:end -->"
SPLITS = ("val", "test", "test_novel")
COLUMNS = (("mIoU", "mIoU"), ("mAP_weighted", "mAP"), ("AUROC_weighted", "AUROC"))


def default_models() -> list[str]:
    """Every registered CPU-size model: names that are `*_tiny` or `*_tiny_<ablation>`."""
    return [m for m in list_models() if m.endswith("_tiny") or "_tiny_" in m]


def summary_file(args: argparse.Namespace, name: str, seed: int) -> Path:
    """Where the summary of run (name, seed) is kept."""
    return Path(args.summaries) / f"{name}-seed{seed}.json"


def run_one(name: str, seed: int, data: Path, root: Path, args: argparse.Namespace) -> dict:
    """Train and evaluate (model, seed) unless its summary exists; return the summary."""
    out = root / name / f"seed{seed}"
    summary_path = summary_file(args, name, seed)
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": seed,
             "max_steps": args.steps, "workers": args.workers}  # fmt: skip
    run = resolve_run_config(name, flags=flags)
    run.data = str(data.resolve())
    if out.exists():  # an unfinished run: start it again from scratch
        shutil.rmtree(out)
    t0 = time.perf_counter()
    result = fit(run, data, out)  # its progress lines: one every 30 s when not a terminal
    seconds = time.perf_counter() - t0
    novel = evaluate_checkpoint(out / "best", data, "test_novel", batch_size=32, write=False)
    total, trainable = load_model(out / "best").param_counts()
    summary = {
        "model": name,
        "family": model_family(name),
        "seed": seed,
        "steps": result.step,
        "batch_size": args.batch_size,
        "train_seconds": round(seconds, 1),
        "machine": describe_machine(),
        "params": total,
        "trainable": trainable,
        "val": metrics_to_json(result.best_val),
        "test": metrics_to_json(result.test),
        "test_novel": metrics_to_json(novel.metrics),
    }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{name} seed {seed}: test {fmt_metrics(summary['test'])} ({seconds:.0f} s)", flush=True)
    return summary


def fmt_metrics(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    return " / ".join(f"{100 * m[k]:.1f}" if m.get(k) is not None else "-" for k, _ in COLUMNS)


def mean_std(values: list[float]) -> str:
    """`mean +- std` in percent (std over seeds; no std with one seed)."""
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def table(summaries: list[dict], baselines: dict[str, dict[str, dict]], n_seeds: int) -> str:
    """Markdown table: one row per model, mean +- std over seeds per split and metric."""
    head = ["model", "seeds"]
    for split in SPLITS:
        head += [f"{split} {label}" for _, label in COLUMNS]
    head += ["params (trainable)", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_model: dict[str, list[dict]] = {}
    for s in summaries:
        by_model.setdefault(s["model"], []).append(s)
    for name, runs in by_model.items():
        oracle = name.startswith("oracle")
        cells = [f"{name}{' (oracle)' if oracle else ''}", f"{len(runs)}/{n_seeds}"]
        for split in SPLITS:
            for key, _ in COLUMNS:
                vals = [
                    r[split][key] for r in runs if r.get(split) and r[split].get(key) is not None
                ]
                cells.append(mean_std(vals))
        p = runs[0]
        cells.append(f"{p['params'] / 1e6:.1f}M ({p['trainable'] / 1e6:.2f}M)")
        cells.append(f"{statistics.fmean(r['train_seconds'] for r in runs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    for name, per_split in baselines.items():
        cells = [f"baseline: {name}", "-"]
        for split in SPLITS:
            m = per_split.get(split, {})
            cells += [mean_std([m[k]]) if m.get(k) is not None else "-" for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells + ["-", "-"]) + " |")
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace the text between the START and END markers of `path` (appended if absent)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="RefAVA-Synth folder (standard preset)")
    p.add_argument("--generate", action="store_true", help="generate --data if it is missing")
    p.add_argument("--preset", default="standard")
    p.add_argument("--runs", default="runs/synth-table", help="run folders (checkpoints)")
    p.add_argument("--summaries", default=str(Path(__file__).parent / "synth_table"),
                   help="one JSON per finished run, read to build the table")  # fmt: skip
    p.add_argument("--models", nargs="*", help="default: every *_tiny model and ablation")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=450, help="optimizer steps per run (the demo's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=100, help="upper bound; --steps ends the run")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--results", default="benchmarks/RESULTS.md")
    p.add_argument("--table-only", action="store_true", help="rebuild the table, train nothing")
    args = p.parse_args(argv)

    data = Path(args.data)
    if not (data / META_FILE).is_file():
        if not args.generate:
            raise SystemExit(f"--data {data}: no dataset (use --generate to make one)")
        generate(data, preset=args.preset, seed=0, workers=os.cpu_count() or 1)
    models = args.models or default_models()
    root = Path(args.runs)
    if args.table_only:
        write_results(args, data, models)
        return
    summaries = []
    for seed in args.seeds:  # seed-major: a partial table has every model at least once
        for name in models:
            summaries.append(run_one(name, seed, data, root, args))
            write_results(args, data, models)
    write_results(args, data, models)


def machines(summaries: list[dict]) -> str:
    """Which machine ran which models (each summary's `machine`), as one sentence."""
    by_machine: dict[str, list[str]] = {}
    for r in summaries:
        names = by_machine.setdefault(r.get("machine", "not recorded"), [])
        if r["model"] not in names:
            names.append(r["model"])
    if len(by_machine) == 1:
        return f"Machine: {next(iter(by_machine))}."
    parts = [f"{m} ({', '.join(f'`{n}`' for n in names)})" for m, names in by_machine.items()]
    return f"Machines: {'; '.join(parts)}."


def write_results(args: argparse.Namespace, data: Path, models: list[str]) -> None:
    """Rebuild the RESULTS.md section from every summary of `models` x `--seeds` present."""
    summaries = []
    for name in models:
        for seed in args.seeds:
            f = summary_file(args, name, seed)
            if f.is_file():
                summaries.append(json.loads(f.read_text()))
    baselines: dict[str, dict[str, dict]] = {}
    for split in SPLITS:
        for name, m in trivial_baselines(data, split).items():
            baselines.setdefault(name, {})[split] = m
    meta = json.loads((data / META_FILE).read_text())
    extra = meta.get("extra", {})
    body = "\n".join(
        [
            "## RefAVA-Synth: every tiny model, one shared budget",
            "",
            f"`python benchmarks/synth_table.py --data DIR --steps {args.steps} "
            f"--batch-size {args.batch_size} --lr {args.lr} --seeds "
            f"{' '.join(map(str, args.seeds))}` on RefAVA-Synth preset "
            f"`{extra.get('preset', '?')}` (seed {extra.get('seed', '?')}). "
            f"{machines(summaries)}",
            "",
            f"Each run: {args.steps} AdamW steps of batch {args.batch_size} (peak lr {args.lr}, "
            "warmup + cosine), best checkpoint by val mAP, then test and test_novel once. "
            "Percent, mean ± std over seeds; mAP and AUROC are the weighted (by class "
            "frequency) versions. The oracle sees the true box at test time and is not "
            "ranked. Baselines ignore the sentence and need no training (`clip mean` reads "
            "the true actions of every person in the clip).",
            "",
            table(summaries, baselines, len(args.seeds)),
        ]
    )
    write_section(Path(args.results), body)


if __name__ == "__main__":
    main()
