"""Referring probe: train only the part of `refatomnet_pp_tiny` that picks the person, on cached
clips, to compare referring heads in minutes instead of full training runs.

What is trained: the location-semantic encoder with its crop appearance encoder, the query
projection and the referring head of the model (built by `create_model`, so a model override
such as `word_match=true` changes the probe exactly as it changes the model); the frozen MiniLM
word tokens are computed once. Loss: the selection cross-entropy (plus the model's cross-batch
term with `contrast_weight=...`). Metric: the share of val instances whose picked detection
overlaps the true box at IoU >= 0.5 (the model's Acc@0.5 when its box is the picked detection's).

Two diagnostics read the same cache with the true person given:
  --task attributes  classify the true person's shirt / trousers / hat / kind / size from its
                     person token (RefAVA-Synth only: the generator's facts): is the attribute
                     in the person features at all?
  --task actions     the true person's actions from its person token (mAP weighted): what the
                     action head could reach with the right person.

    python benchmarks/referring_probe.py cache --data DATA --cache CACHE
    python benchmarks/referring_probe.py run --cache CACHE --steps 1000 --frames 2 [KEY=VALUE ...]
    python benchmarks/referring_probe.py run --cache CACHE --task attributes --data DATA
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset, collate
from ravar.metrics import compute_metrics
from ravar.models.referring import target_person
from ravar.models.registry import create_model
from ravar.util.box_ops import box_iou

MODEL = "refatomnet_pp_tiny"
MAX_WORDS = 32
ATTRIBUTES = ("shirt", "trousers", "hat", "kind", "size")
TENSORS = ("frames", "det_boxes", "det_scores", "det_mask", "box", "labels")


# ----------------------------------------------------------------------------- cache
def build_cache(
    data: Path, split: str, flip: bool, size: int = 64, say: Any = print
) -> dict[str, Any]:
    """Every instance of `split` as the model's dataset gives it (8 frames of `size` x `size`, no
    jitter; `flip`: mirrored with left/right words swapped) plus the frozen MiniLM word tokens."""
    clip = ClipConfig(
        num_frames=8, size=(size, size), hflip_prob=1.0 if flip else 0.0, temporal_jitter=False
    )
    ds = RAVARDataset(data, split, clip, train=flip)
    text = create_model(MODEL).text.eval()
    parts: dict[str, list[Any]] = {k: [] for k in (*TENSORS, "words", "word_mask")}
    parts.update(det_categories=[], text=[])
    start = last = time.perf_counter()
    for first in range(0, len(ds), 32):
        batch = collate([ds[i] for i in range(first, min(len(ds), first + 32))])
        for key in TENSORS:
            parts[key].append(batch[key].half() if key == "frames" else batch[key])
        parts["det_categories"] += batch["det_categories"]
        parts["text"] += list(batch["text"])
        with torch.no_grad():
            feats = text(list(batch["text"]))
        n, length = feats.tokens.shape[:2]
        words = torch.zeros(n, MAX_WORDS, feats.tokens.shape[-1], dtype=torch.float16)
        mask = torch.zeros(n, MAX_WORDS, dtype=torch.bool)
        words[:, : min(length, MAX_WORDS)] = feats.tokens[:, :MAX_WORDS].half()
        mask[:, : min(length, MAX_WORDS)] = feats.mask[:, :MAX_WORDS]
        parts["words"].append(words)
        parts["word_mask"].append(mask)
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            say(f"cache {split}{' (mirrored)' if flip else ''}: {first}/{len(ds)} instances, "
                f"{last - start:.0f}s")  # fmt: skip
    return {k: torch.cat(v) if k not in ("det_categories", "text") else v for k, v in parts.items()}


def attribute_labels(data: Path, split: str, texts: list[str]) -> dict[str, torch.Tensor]:
    """The true person's facts (RefAVA-Synth `synth/<split>.jsonl`) as class indices, in the
    order of the split's annotation file."""
    facts = {}
    for line in (data / "synth" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        clip = json.loads(line)
        for p in clip["people"]:
            facts[(clip["video_id"], p["person_id"])] = p["facts"]
    lines = (data / "annotations" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if [r["text"] for r in records] != texts:
        raise SystemExit(f"{split}: the cache does not follow the annotation file; rebuild it")
    values = {k: [facts[(r["video_id"], r["person_id"])][k] for r in records] for k in ATTRIBUTES}
    return {k: torch.tensor([sorted(set(v)).index(x) for x in v]) for k, v in values.items()}


# ----------------------------------------------------------------------------- probe
class Probe(nn.Module):
    """The person-picking part of the model, or a classifier on the true person's token."""

    def __init__(self, overrides: dict[str, Any], task: str, classes: dict[str, int]) -> None:
        super().__init__()
        model = create_model(MODEL, **overrides)
        self.text, self.location = model.text, model.location
        self.query_proj, self.referring = model.query_proj, model.referring
        self.contrast_weight = model.config.contrast_weight
        self.batch_scores: torch.Tensor | None = None
        self.task = task
        self.heads = nn.ModuleDict(
            {k: nn.Sequential(nn.Linear(model.config.dim, 256), nn.GELU(), nn.Linear(256, n))
             for k, n in classes.items()}
        )  # fmt: skip

    def forward(self, b: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> scores [B, D] (or person tokens [B, D, C] for the diagnostics), person [B, D],
        the target index [B] and whether it is valid [B]."""
        person = self.location.person_mask(b["det_mask"], b["det_categories"])  # [B, D]
        people = self.location(
            b["det_boxes"], b["det_scores"], b["det_mask"], b["det_categories"], self.text,
            b["frames"],
        )  # fmt: skip
        target, valid = target_person(b["det_boxes"], person, b["box"], 0.5)
        if self.task != "referring":
            return people, person, target, valid
        words = b["words"]
        ref = self.referring(
            people, person, b["det_boxes"], self.query_proj(words), b["word_mask"],
            b["box"] if self.training else None, text_words=words,
        )  # fmt: skip
        self.batch_scores = ref.batch_scores  # [B, B*D] with the contrast, in training
        return ref.scores, person, target, valid


def take(store: dict[str, Any], index: torch.Tensor, frames: slice) -> dict[str, Any]:
    """A batch of the cached instances `index`."""
    out = {k: store[k][index] for k in ("det_boxes", "det_scores", "det_mask", "box", "labels")}
    out["frames"] = store["frames"][index][:, frames].float()
    out["words"] = store["words"][index].float()
    out["word_mask"] = store["word_mask"][index]
    out["det_categories"] = [store["det_categories"][i] for i in index.tolist()]
    return out


def pick_accuracy(det_boxes, person, scores, true_box) -> torch.Tensor:
    """[B] bool: the highest-scoring person's box overlaps the true box at IoU >= 0.5."""
    rows = torch.arange(len(scores))
    picked = det_boxes[rows, scores.argmax(1)]  # [B, 4]
    iou = box_iou(picked, true_box).diagonal()  # [B]
    return (iou >= 0.5) & person.any(1)


def loss_of(probe: Probe, b: dict[str, Any], attrs: dict[str, torch.Tensor] | None) -> torch.Tensor:
    out, person, target, valid = probe(b)
    if probe.task == "referring":
        if not valid.any():
            return out.sum() * 0.0
        loss = F.cross_entropy(out[valid], target[valid])
        if probe.batch_scores is not None:  # the model's cross-batch selection term
            index = torch.arange(len(target)) * out.shape[1] + target
            loss = loss + probe.contrast_weight * F.cross_entropy(
                probe.batch_scores[valid], index[valid]
            )
        return loss
    token = out[torch.arange(len(target)), target]  # [B, C] the true person's token
    if probe.task == "actions":
        return F.binary_cross_entropy_with_logits(probe.heads["actions"](token), b["labels"])
    assert attrs is not None
    return sum(F.cross_entropy(probe.heads[k](token[valid]), attrs[k][valid]) for k in attrs)


def evaluate(probe: Probe, store, frames, attrs) -> dict[str, float]:
    probe.eval()
    hits, outs, labels, seen = {}, [], [], 0
    with torch.no_grad():
        for first in range(0, len(store["box"]), 64):
            index = torch.arange(first, min(first + 64, len(store["box"])))
            b = take(store, index, frames)
            out, person, target, valid = probe(b)
            if probe.task == "referring":
                hit = pick_accuracy(b["det_boxes"], person, out, b["box"])
                hits["pick"] = hits.get("pick", 0) + int(hit.sum())
                seen += len(index)
                continue
            token = out[torch.arange(len(index)), target]
            if probe.task == "actions":
                outs.append(probe.heads["actions"](token).sigmoid())
                labels.append(b["labels"])
                continue
            for k in attrs:
                got = probe.heads[k](token[valid]).argmax(1) == attrs[k][index][valid]
                hits[k] = hits.get(k, 0) + int(got.sum())
            seen += int(valid.sum())
    probe.train()
    if probe.task == "actions":
        m = compute_metrics(None, None, torch.cat(outs).numpy(), torch.cat(labels).numpy())
        return {"mAP_weighted": 100 * m["mAP_weighted"]}
    return {k: 100 * v / max(seen, 1) for k, v in hits.items()}


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    train = [torch.load(args.cache / f"train{s}.pt") for s in ("", "_mirrored")]
    val = torch.load(args.cache / "val.pt")
    overrides = {}
    for item in args.overrides:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value not in ("", None) else value
    attrs = None
    classes = {}
    if args.task == "attributes":
        if args.data is None:
            raise SystemExit("--task attributes needs --data (the generator's facts)")
        attrs = {s: attribute_labels(args.data, s, val["text"] if s == "val" else train[0]["text"])
                 for s in ("train", "val")}  # fmt: skip
        classes = {k: int(attrs["train"][k].max()) + 1 for k in ATTRIBUTES}
    elif args.task == "actions":
        classes = {"actions": train[0]["labels"].shape[1]}
    probe = Probe(overrides, args.task, classes)
    params = [p for p in probe.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    warmup = max(1, args.steps // 20)

    def factor(step: int) -> float:  # linear warmup, then cosine to 0
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    frames = slice(4 - args.frames // 2, 4 - args.frames // 2 + args.frames)
    gen = torch.Generator().manual_seed(args.seed)
    n = len(train[0]["box"])
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        side = int(torch.randint(2, (1,), generator=gen))
        index = torch.randint(n, (args.batch_size,), generator=gen)
        b = take(train[side], index, frames)
        sub = None if attrs is None else {k: v[index] for k, v in attrs["train"].items()}
        loss = loss_of(probe, b, sub)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate(probe, val, frames, None if attrs is None else attrs["val"])
            shown = "  ".join(f"{k} {v:.1f}" for k, v in scores.items())
            print(f"step {step}  val {shown}  {time.perf_counter() - start:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="cache train (and its mirror) and val")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--cache", type=Path, required=True)
    c.add_argument("--size", type=int, default=64, help="frame side the crops are cut from")
    r = sub.add_parser("run", help="train the probe and print val accuracy")
    r.add_argument("--cache", type=Path, required=True)
    r.add_argument("--data", type=Path, help="the dataset (for --task attributes)")
    r.add_argument("--task", choices=("referring", "attributes", "actions"), default="referring")
    r.add_argument("--steps", type=int, default=1000)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--frames", type=int, default=8, help="middle frames of the 8 read (2: fast)")
    r.add_argument("--eval-every", type=int, default=250)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="model overrides (JSON)")
    args = parser.parse_args()
    if args.command == "cache":
        args.cache.mkdir(parents=True, exist_ok=True)
        for split, flip, name in (("val", False, "val"), ("train", False, "train"),
                                  ("train", True, "train_mirrored")):  # fmt: skip
            torch.save(build_cache(args.data, split, flip, args.size), args.cache / f"{name}.pt")
            print(f"cached {name}", flush=True)
        return
    run(args)


if __name__ == "__main__":
    main()
