"""DistributedDataParallel on CPU (gloo, 2 processes under torchrun): evaluation shards without
padding and gathers every instance exactly once, so metrics equal the single-process ones on
splits whose size is not divisible by 2; training under torchrun gives a complete run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from ravar.engine.checkpoint import read_checkpoint_config, save_checkpoint
from ravar.engine.evaluate import evaluate_checkpoint
from ravar.engine.loggers import read_steps
from ravar.engine.runlog import read_log
from test_engine_support import (
    NAME,
    RECORD_FLAG,
    SUPPORT,
    TinyConfig,
    TinyModel,
    make_engine_dataset,
    read_jsonl,
    subprocess_env,
)

pytestmark = pytest.mark.slow

METRIC_KEYS = ("n", "mIoU", "Acc@0.5", "mAP_weighted", "mAP_macro", "AUROC_weighted", "AUROC_macro")


def _torchrun(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(SUPPORT), *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _same_metrics(a: dict, b: dict) -> None:
    for key in METRIC_KEYS:
        assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_two_process_eval_equals_one_process(tmp_path):
    data = make_engine_dataset(tmp_path / "ds")
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(dim=12))
    ckpt = save_checkpoint(tmp_path / "run" / "best", model, model_name=NAME)
    out = tmp_path / "ddp"
    proc = _torchrun(
        ["eval", "--checkpoint", str(ckpt), "--data", str(data), "--split", "val"]
        + ["--multi-clip", "2", "--batch-size", "2", "--out", str(out), "--device", "cpu"]
    )
    assert proc.stdout.count("mAP (w)") == 1  # only rank 0 prints
    assert "5 instances, 2 process(es)" in proc.stdout
    single = evaluate_checkpoint(ckpt, data, "val", num_clips=2, batch_size=2, write=False)
    ddp = json.loads((out / "metrics.json").read_text())
    assert ddp["n"] == 5 == len(single.predictions)  # 5 instances: shards of 3 and 2
    _same_metrics(ddp["metrics"], single.metrics)
    rows = read_jsonl(out / "predictions.jsonl")
    assert [r["index"] for r in rows] == list(range(5))
    assert np.allclose([r["probs"] for r in rows], single.predictions.probs, atol=1e-5)


def test_two_process_training_gathers_val_and_test_like_one_process(tmp_path):
    data = make_engine_dataset(tmp_path / "ds", test_size=3)
    out = tmp_path / "run"
    proc = _torchrun(
        ["train", "--model", NAME, "--data", str(data), "--out", str(out), "--epochs", "2"]
        + ["--batch-size", "3", "--device", "cpu", "lr=0.05"]
    )
    assert proc.stdout.count("epoch 2/2") == 1 and "2 process(es) on cpu" in proc.stdout
    rows = read_log(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]  # one writer: no duplicated lines
    # 12 clips over 2 ranks in batches of 3: 2 optimizer steps per epoch
    assert read_checkpoint_config(out / "last")["step"] == 4
    # rank 0 alone writes steps.csv; each step's loss is over both ranks' 6 clips, so an
    # epoch's two steps average to its metrics.jsonl loss
    steps = read_steps(out / "steps.csv")
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for row in rows:
        mine = [r["loss"] for r in steps if r["epoch"] == row["epoch"]]
        assert sum(mine) / 2 == pytest.approx(row["train"]["loss"], rel=1e-9)
    val = evaluate_checkpoint(out / "last", data, "val", batch_size=3, write=False)
    _same_metrics(rows[-1]["val"], val.metrics)
    test = json.loads((out / "test_metrics.json").read_text())
    best = evaluate_checkpoint(out / "best", data, "test", batch_size=3, write=False)
    assert test["n"] == 3
    _same_metrics(test["metrics"], best.metrics)
    assert len((out / "test_predictions.jsonl").read_text().splitlines()) == 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_with_c10d_rendezvous_train_one_run(tmp_path):
    # the multi-node command of docs/scaling-out.md, both "nodes" on this machine: one torchrun
    # per node, one process each, meeting at a c10d rendezvous endpoint
    data = make_engine_dataset(tmp_path / "ds", test_size=None)
    out, writes = tmp_path / "run", tmp_path / "writes.txt"
    endpoint = f"127.0.0.1:{_free_port()}"
    # each node writes to a file, not a pipe: a pipe read after the other node's would fill up
    # and block that node inside a collective, and with it both
    log_files = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    nodes = []
    for rank in (0, 1):
        with log_files[rank].open("w") as log:
            nodes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
                    + ["--nproc-per-node", "1", "--node-rank", str(rank), "--rdzv-id", "ravar-test"]
                    + ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, str(SUPPORT)]
                    + [RECORD_FLAG, str(writes), "train", "--model", NAME, "--data", str(data)]
                    + ["--out", str(out), "--epochs", "2", "--batch-size", "3", "--device", "cpu"],
                    env=subprocess_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
    try:
        for node in nodes:
            node.wait(timeout=240)
    except subprocess.TimeoutExpired:
        for node in nodes:
            node.kill()
            node.wait()
        tails = "".join(f.read_text()[-3000:] for f in log_files)
        pytest.fail(f"the two nodes did not finish in 240 s; their last output:\n{tails}")
    logs = [f.read_text() for f in log_files]
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "2 process(es) on cpu" in logs[0]  # rank 0 lives on node 0 and prints for the run
    assert "process(es)" not in logs[1] and "epoch 2/2" not in logs[1]
    state = torch.load(out / "last" / "trainer_state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # both ranks' RNG states
    assert state["step"] == 4  # 12 clips over 2 ranks in batches of 3: 2 steps per epoch
    # every checkpoint written once, by rank 0 only
    lines = writes.read_text().splitlines()
    assert sorted(lines) == sorted(set(lines)) and {line.split()[0] for line in lines} == {"0"}
    assert {"0 last 1", "0 last 2"} <= set(lines)
    assert [r["epoch"] for r in read_log(out / "metrics.jsonl")] == [1, 2]
