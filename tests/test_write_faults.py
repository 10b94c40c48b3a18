"""A write that fails during `ravar train` (disk full, no permission, read-only file system):
one line naming the file and the system's reason, the last complete checkpoint intact, the
command that continues the run; continuing it once the fault is gone gives the uninterrupted
run's results. The faults are injected at the write (as root, chmod does not stop writes)."""

from __future__ import annotations

import errno
import os

import pytest
import safetensors.torch
from safetensors import SafetensorError

from ravar.engine import checkpoint
from ravar.engine import train as train_mod
from ravar.engine.checkpoint import load_model, read_checkpoint_config
from ravar.engine.config import resolve_run_config
from ravar.engine.runlog import read_log
from ravar.engine.train import RunWriteError, fit
from test_engine_support import NAME, cli_main, make_engine_dataset, strip_times

FAST = ["batch_size=4", "lr=0.05", "warmup_fraction=0.1"]
OVER = ["epochs=3", "ema=0.8", "model.dropout=0.3"]  # RNG and EMA states must survive the stop
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_engine_dataset(tmp_path_factory.mktemp("faults") / "ds")


@pytest.fixture(scope="module")
def whole(tmp_path_factory, data_dir):
    """An uninterrupted run: its metrics.jsonl rows, test metrics and weights."""
    out = tmp_path_factory.mktemp("whole") / "run"
    result = _fit(data_dir, out)
    return result, strip_times(read_log(out / "metrics.jsonl")), _weights(out)


@pytest.fixture
def fault():
    """`fault(stage, name, epoch, error)`: raise `error` when checkpoint `name` after `epoch`
    reaches `stage` ("write": weights written; "swap": previous version moved away)."""
    added = []

    def add(stage: str, name: str, epoch: int, error: BaseException) -> None:
        def callback(at: str, written: str, after: int) -> None:
            if (at, written, after) == (stage, name, epoch):
                raise error

        checkpoint.STAGE_CALLBACKS.append(callback)
        added.append(callback)

    yield add
    for callback in added:
        if callback in checkpoint.STAGE_CALLBACKS:
            checkpoint.STAGE_CALLBACKS.remove(callback)


def _fit(data_dir, out, resume=False):
    run = resolve_run_config(NAME, overrides=[*FAST, *OVER])
    return fit(run, data_dir, out, device="cpu", resume=resume, quiet=True)


def _weights(out):
    return {
        name: safetensors.torch.load_file(str(out / name / "model.safetensors"))
        for name in ("last", "best")
    }


def _same(a, b) -> bool:
    return all(
        a[n].keys() == b[n].keys() and all((a[n][k] == b[n][k]).all() for k in a[n]) for n in a
    )


def _resume_matches(data_dir, out, whole) -> None:
    """Continuing the stopped run gives the uninterrupted run's rows, test metrics, weights."""
    result, rows, weights = whole
    again = _fit(data_dir, out, resume=True)
    assert again.finished and again.test == result.test
    assert strip_times(read_log(out / "metrics.jsonl")) == rows
    assert _same(_weights(out), weights)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left


def _check_line(message: str, out, failed: str, reason: str, epoch: int) -> None:
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{failed}: cannot write"), message
    assert reason in message
    assert f"the last complete checkpoint {out / 'last'} (epoch {epoch}) is intact" in message
    assert message.endswith(
        f"fix the disk/permissions, then continue with: ravar train --out {out} --resume"
    )


def test_disk_full_at_the_checkpoint_write_then_resume(tmp_path, data_dir, whole, fault):
    out = tmp_path / "run"
    fault("write", "last", 2, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(RunWriteError) as err:
        _fit(data_dir, out)
    _check_line(str(err.value), out, str(out / "last"), "No space left on device (ENOSPC)", 1)
    assert read_checkpoint_config(out / "last")["epoch"] == 1
    load_model(out / "last")  # complete and usable
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]
    checkpoint.STAGE_CALLBACKS.clear()  # the disk is fixed (the fixture's callback is gone)
    _resume_matches(data_dir, out, whole)


def test_permission_denied_at_the_swap_puts_the_previous_version_back(
    tmp_path, data_dir, whole, fault
):
    out = tmp_path / "run"
    fault("swap", "last", 3, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    with pytest.raises(RunWriteError) as err:
        _fit(data_dir, out)
    _check_line(str(err.value), out, str(out / "last"), "Permission denied (EACCES)", 2)
    assert (out / "last").is_dir() and not (out / ".last.old").exists()
    assert read_checkpoint_config(out / "last")["epoch"] == 2
    checkpoint.STAGE_CALLBACKS.clear()
    _resume_matches(data_dir, out, whole)


def test_safetensors_error_of_a_read_only_file_system(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "run"
    real = safetensors.torch.save_file
    calls = []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:  # epoch 1: best, last; epoch 2: best (val improves or not: last)
            raise SafetensorError(
                "Error while serializing: I/O error: Read-only file system (os error 30) at "
                f'path "{filename}"'
            )
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(RunWriteError) as err:
        _fit(data_dir, out)
    message = str(err.value)
    assert "Read-only file system (EROFS)" in message and "\n" not in message
    assert f"{out / 'last'} (epoch 1) is intact" in message
    assert message.endswith(f"continue with: ravar train --out {out} --resume")
    assert read_checkpoint_config(out / "last")["epoch"] == 1


def test_metrics_log_write_failure_names_the_file(tmp_path, data_dir, monkeypatch, whole):
    out = tmp_path / "run"
    real = train_mod.append_log

    def append_log(path, row):
        if row["epoch"] == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, row)

    monkeypatch.setattr(train_mod, "append_log", append_log)
    with pytest.raises(RunWriteError) as err:
        _fit(data_dir, out)
    _check_line(
        str(err.value), out, str(out / "metrics.jsonl"), "No space left on device (ENOSPC)", 1
    )
    monkeypatch.setattr(train_mod, "append_log", real)
    _resume_matches(data_dir, out, whole)


def test_a_failure_before_any_checkpoint_says_to_start_again(tmp_path, data_dir, fault):
    out = tmp_path / "run"
    fault("write", "last", 1, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    with pytest.raises(RunWriteError) as err:
        _fit(data_dir, out)
    message = str(err.value)
    assert "no checkpoint was written yet" in message and "--resume" not in message
    assert message.endswith("fix the disk/permissions, then start the run again")
    assert not (out / "last").exists()


def test_an_unwritable_run_directory_fails_before_training(tmp_path, data_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    out = blocker / "run"  # cannot be created, even by root
    argv = ["train", "--model", NAME, "--data", str(data_dir), "--out", str(out), "epochs=1"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"ravar: error: --out {out}: cannot create the folder (Not a directory (ENOTDIR))"
    assert not out.exists()


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_a_read_only_run_directory(tmp_path, data_dir, capsys, fault):
    out = tmp_path / "run"
    out.mkdir()
    out.chmod(0o555)
    try:
        argv = ["train", "--model", NAME, "--data", str(data_dir), "--out", str(out)]
        assert cli_main([*argv, "epochs=1"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"ravar: error: --out {out}: cannot write into the folder (")
        assert "Permission denied (EACCES)" in err and "\n" not in err
        # made read-only during the run: the swap of epoch 2's last/ is refused by the system
        out.chmod(0o755)

        def read_only(stage: str, name: str, epoch: int) -> None:
            if (stage, name, epoch) == ("write", "last", 2):
                out.chmod(0o555)

        checkpoint.STAGE_CALLBACKS.append(read_only)
        try:
            with pytest.raises(RunWriteError) as stopped:
                _fit(data_dir, out)
        finally:
            checkpoint.STAGE_CALLBACKS.remove(read_only)
        assert "Permission denied (EACCES)" in str(stopped.value)
        assert f"{out / 'last'} (epoch 1) is intact" in str(stopped.value)
    finally:
        out.chmod(0o755)
    assert read_checkpoint_config(out / "last")["epoch"] == 1
