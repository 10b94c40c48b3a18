"""A training process killed with SIGKILL in the middle of a checkpoint write (between moving the
old `last` away and moving the new one in) resumes from the last complete checkpoint and ends
with exactly the results of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file

from ravar.engine.checkpoint import read_checkpoint_config
from ravar.engine.runlog import read_log
from test_engine_support import (
    NAME,
    STALL_FLAG,
    STALL_MESSAGE,
    SUPPORT,
    cli_main,
    make_engine_dataset,
    strip_times,
    subprocess_env,
)

pytestmark = pytest.mark.slow


def test_sigkill_during_checkpoint_write_then_resume_equals_uninterrupted(tmp_path):
    data = make_engine_dataset(tmp_path / "ds")
    args = ["--model", NAME, "--data", str(data), "--epochs", "3", "--batch-size", "4"]
    args += ["--device", "cpu", "--quiet", "lr=0.05"]
    out = tmp_path / "killed"
    env = subprocess_env(single_thread=False)  # same threading as this process
    stall = [STALL_FLAG, "last:2:swap"]  # stall while writing last/ after epoch 2
    proc = subprocess.Popen(
        [sys.executable, str(SUPPORT), *stall, "train", *args, "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if STALL_MESSAGE in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    # killed between the renames: last/ is gone, its previous version (epoch 1) is complete
    assert not (out / "last").exists() and (out / ".last.old").is_dir()
    assert read_checkpoint_config(out / "last")["epoch"] == 1

    assert cli_main(["train", *args, "--out", str(out), "--resume"]) == 0
    whole = tmp_path / "whole"
    assert cli_main(["train", *args, "--out", str(whole)]) == 0

    assert strip_times(read_log(out / "metrics.jsonl")) == strip_times(
        read_log(whole / "metrics.jsonl")
    )
    got = json.loads((out / "test_metrics.json").read_text())
    want = json.loads((whole / "test_metrics.json").read_text())
    assert got["metrics"] == want["metrics"] and got["best_epoch"] == want["best_epoch"]
    for name in ("last", "best"):
        a = load_file(str(out / name / "model.safetensors"))
        b = load_file(str(whole / name / "model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
