"""An error raised inside a DataLoader worker reaches the user as the same one-line error as in
the main process: the same type, the same message, no worker traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from torch.utils.data import DataLoader, Dataset

from ravar.cache.store import CacheError
from ravar.config import ConfigError
from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset, collate
from ravar.errors import DataFormatError, FrameError, RavarError, original_message
from ravar.metrics import MetricInputError

from builders import make_refava_window_dataset

MESSAGE = "/data/frames/vidB/image_017352.jpg: frame file is missing"


class _Failing(Dataset):
    """Every item raises `error_type(MESSAGE)`, chained to an OSError as a real read would be."""

    def __init__(self, error_type: type[RavarError]) -> None:
        self.error_type = error_type

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        try:
            raise OSError(2, "No such file or directory")
        except OSError as e:
            raise self.error_type(MESSAGE) from e


@pytest.mark.parametrize(
    "error_type", [FrameError, DataFormatError, RavarError, CacheError, MetricInputError]
)
def test_worker_errors_keep_their_type_and_one_line_message(error_type):
    for workers in (0, 2):
        with pytest.raises(error_type) as info:
            list(DataLoader(_Failing(error_type), batch_size=2, num_workers=workers))
        assert str(info.value) == MESSAGE, workers  # no "Caught ... in DataLoader worker"


def test_original_message_leaves_other_text_alone():
    assert original_message(MESSAGE, FrameError) == MESSAGE
    text = "Caught the train at 9: a plain message"
    assert str(ConfigError(text)) == text
    assert ConfigError("a", "b").args == ("a", "b")
    wrapped = (
        "Caught FrameError in DataLoader worker process 1.\n"
        "Original Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n'
        "ravar.errors.FrameError: first line\nsecond line\n"
    )
    assert original_message(wrapped, FrameError) == "first line\nsecond line"


@pytest.fixture(scope="module")
def refava_dir(tmp_path_factory):
    return make_refava_window_dataset(tmp_path_factory.mktemp("workers") / "ds")


def test_a_corrupt_jpeg_read_by_a_worker_is_the_main_process_error(refava_dir, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(refava_dir, root)
    bad = root / "frames" / "vidA" / "image_000060.jpg"  # the keyframe of second 902
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    ds = RAVARDataset(root, "val", ClipConfig(num_frames=4, size=(16, 16)))
    with pytest.raises(FrameError) as in_main:
        ds[0]
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    with pytest.raises(FrameError) as in_worker:
        list(loader)
    assert str(in_worker.value) == str(in_main.value)
    assert str(in_main.value).startswith(f"{bad}: cannot decode frame")
    assert "\n" not in str(in_worker.value)


@pytest.mark.slow  # a subprocess that imports torch and starts two workers
def test_cli_train_with_workers_prints_one_line_naming_the_missing_frame(refava_dir, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(refava_dir, root)
    gone = root / "frames" / "vidA" / "image_000060.jpg"  # every clip of second 902 reads it
    gone.unlink()
    argv = ["train", "--model", "no_text_tiny", "--data", str(root), "--out", str(tmp_path / "r")]
    argv += ["--workers", "2", "--device", "cpu", "--quiet", "max_steps=2", "batch_size=4"]
    proc = subprocess.run(
        [sys.executable, "-m", "ravar", *argv], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    assert err == [f"ravar: error: {gone}: frame file is missing"], proc.stderr
