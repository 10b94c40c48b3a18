"""Training with and without the feature cache, same model, same data, same machine, one run.

    python benchmarks/feature_cache.py --data DIR [--model refatomnet_pp_base] [--train 64]
        [--test 32] [--epochs 2] [--batch-size 8] [--device cuda] [KEY=VALUE ...]

A subset of DIR (the first --train train instances; the first --test test instances serve as val
and test) is trained twice from the same initial weights with the same batches: once decoding
the frames and running the frozen backbones every step (cache=off), once reading what
`ravar cache` stored (cache=require). Pixel augmentations are off in both (a visual cache cannot
hold them). Printed: the one-off cost of building the cache, store size per instance, training
epoch time and epochs per hour of each, their ratio, and the test metrics of both runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from ravar.cache import build_cache, store_size
from ravar.data.format import load_meta, read_split, write_split
from ravar.engine.config import resolve_run_config
from ravar.engine.rng import seed_everything
from ravar.engine.train import fit
from ravar.models.registry import build_model
from ravar.util.machine import describe_machine

NO_AUGMENTATION = ["model.clip.hflip_prob=0", "model.clip.temporal_jitter=false"]


def make_subset(data: Path, out: Path, n_train: int, n_test: int) -> Path:
    """A dataset folder with the first instances of `data`'s splits, reading `data`'s frames."""
    meta = load_meta(data)
    root = Path(meta.frame_source.root)
    if not root.is_absolute():
        meta.frame_source.root = str((data / root).resolve())
    out.mkdir(parents=True)
    meta.save(out)
    write_split(out, "train", read_split(data, "train")[:n_train])
    test = read_split(data, "test")[:n_test]
    write_split(out, "val", test)
    write_split(out, "test", test)
    return out


def epoch_seconds(run_dir: Path) -> list[float]:
    """Training time of each epoch of a run (metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["epoch_time_s"] for r in rows]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder (e.g. RefAVA-Synth)")
    p.add_argument("--model", help="registered model (default refatomnet_pp_base)")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML with a model: map (as for train)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--train", type=int, default=64, help="train instances")
    p.add_argument("--test", type=int, default=32, help="test (and val) instances")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="loader workers, reading frames")
    p.add_argument(
        "--cache-workers", type=int, default=0,
        help="loader workers, reading the cache (rows are memory-mapped: default 0)",
    )  # fmt: skip
    p.add_argument(
        "--repeat", action="store_true",
        help="train from frames twice: the run-to-run difference of the metrics on this device",
    )  # fmt: skip
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    p.add_argument("--device", choices=("cpu", "cuda"))
    p.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    if not args.model and not args.config:
        args.model = "refatomnet_pp_base"
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    work = Path(args.work or tempfile.mkdtemp(prefix="ravar-cache-bench-"))
    shutil.rmtree(work, ignore_errors=True)
    try:
        data = make_subset(Path(args.data), work / "data", args.train, args.test)
        overrides = [*NO_AUGMENTATION, *args.overrides]
        flags = {"epochs": args.epochs, "batch_size": args.batch_size, "workers": args.workers}
        run = resolve_run_config(args.model, args.config, overrides, flags=flags)
        run.data = str(data)

        seed_everything(run.train.seed)
        model = build_model(run.family, run.model)
        start = time.perf_counter()
        stores = build_cache(
            data, model, ["train", "val", "test"], dtype=args.dtype, batch_size=args.batch_size,
            workers=args.workers, device=device, say=lambda s: print("  " + s, flush=True),
        )  # fmt: skip
        cache_s = time.perf_counter() - start
        del model
        instances = args.train + 2 * args.test
        size = sum(store_size(s) for s in stores)

        results = {}
        for mode in ("off", "require", "repeat") if args.repeat else ("off", "require"):
            print(f"training with cache={mode} ...", flush=True)
            workers = args.cache_workers if mode == "require" else args.workers
            cache = "off" if mode == "repeat" else mode
            r = replace(run, train=replace(run.train, cache=cache, workers=workers))
            out = work / f"run-{mode}"
            fit(r, data, out, device=device, quiet=True)
            secs = epoch_seconds(out)
            test = json.loads((out / "test_metrics.json").read_text())["metrics"]
            results[mode] = {"epoch_s": secs, "test": test}

        off, on = results["off"], results["require"]
        steady = {k: min(results[k]["epoch_s"]) for k in ("off", "require")}  # fastest epoch
        summary = {
            "machine": describe_machine(),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "model": args.model,
            "overrides": args.overrides,
            "train_instances": args.train,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "dtype": args.dtype,
            "cache_build_s": cache_s,
            "store_bytes_per_instance": size / instances,
            "epoch_s_frames": off["epoch_s"],
            "epoch_s_cache": on["epoch_s"],
            "speedup": steady["off"] / steady["require"],
            "test_frames": {k: off["test"][k] for k in ("mIoU", "mAP_weighted", "AUROC_weighted")},
            "test_cache": {k: on["test"][k] for k in ("mIoU", "mAP_weighted", "AUROC_weighted")},
        }
        if "repeat" in results:
            rep = results.pop("repeat")["test"]
            summary["test_frames_again"] = {k: rep[k] for k in summary["test_frames"]}
        print(json.dumps(summary, indent=1))
        print(
            "\n| | epoch (s) | epochs / hour | test mIoU | test mAP (w) |\n|---|---|---|---|---|\n"
            + "\n".join(
                f"| {name} | {steady[m]:.2f} | {3600 / steady[m]:.0f} | "
                f"{100 * results[m]['test']['mIoU']:.2f} | "
                f"{100 * results[m]['test']['mAP_weighted']:.2f} |"
                for name, m in (("frames + frozen backbones", "off"), ("feature cache", "require"))
            )
            + f"\n\nspeed-up {summary['speedup']:.1f}x; cache built in {cache_s:.1f} s; "
            f"{size / instances / 1024:.0f} KiB per instance ({args.dtype})"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
