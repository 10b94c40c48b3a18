"""A RefAVA pickle triple goes through import, validation and the Dataset, from the command line."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np

from ravar.cli import main
from ravar.data.clip_config import ClipConfig
from ravar.data.dataset import RAVARDataset
from ravar.labels import multi_hot

from builders import H, W, band_index, make_frames_dataset

KEYS = {  # key -> (box, actions, text)
    "vidA___902___1": ([0.1, 0.2, 0.4, 0.9], [12, 17], "the man in the blue shirt on the left"),
    "vidA___902___2": ([0.5, 0.2, 0.9, 0.9], [11, 79], "the woman on the right"),
    "vidB___903___1": ([0.2, 0.1, 0.6, 0.8], [14], "the person wearing a hat"),
}


def write_triple(folder, style="plus"):
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(KEYS)
    orders = {"keyframe": keys, "label": keys[::-1], "description": [keys[1], keys[2], keys[0]]}
    values = {
        "keyframe": lambda k: [np.array(KEYS[k][0] + [0.99], dtype=np.float32)],
        "label": lambda k: np.array(KEYS[k][1]),
        "description": lambda k: [KEYS[k][2], "an alternative caption"],
    }
    for kind, order in orders.items():
        name = f"train_{kind}.pkl" if style == "plus" else f"train_set_{kind}_crr_final.pkl"
        with open(folder / name, "wb") as f:
            pickle.dump({k: values[kind](k) for k in order}, f)


def test_refava_triple_imports_validates_and_loads(tmp_path, capsys):
    frames = make_frames_dataset(tmp_path / "frames_ds", ext="jpg") / "frames"
    write_triple(tmp_path / "pkl", style="refava")
    out = tmp_path / "refava"
    args = ["data", "import-refava", str(tmp_path / "pkl"), str(out), "--frames", str(frames)]
    assert main([*args, "--splits", "train"]) == 0
    assert main(["data", "validate", str(out)]) == 0
    assert "OK: no errors" in capsys.readouterr().out

    ds = RAVARDataset(out, "train", ClipConfig(num_frames=8, normalization="none", size=(H, W)))
    assert len(ds) == 3
    by_key = {ds.records[i].key: ds[i] for i in range(3)}
    for key, (box, actions, text) in KEYS.items():
        s = by_key[key]
        assert s["text"] == text  # joined by key, although the dicts were in different orders
        assert np.allclose(s["box"].numpy(), box, atol=1e-6)
        assert s["labels"].equal(multi_hot(actions))
        idx = s["frame_indices"].tolist()
        assert len(set(idx)) == 8 and idx == sorted(idx)  # distinct frames, in time order
        read_back = [band_index(f.numpy()) for f in s["frames"]]
        assert all(abs(r - i % 256) <= 3 for r, i in zip(read_back, idx, strict=True))  # JPEG


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_with_one_line(tmp_path):
    write_triple(tmp_path / "pkl")
    marker = tmp_path / "pwned"
    with open(tmp_path / "pkl" / "train_label.pkl", "wb") as f:
        pickle.dump({"vidA___902___1": _Evil(marker)}, f)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ravar",
            "data",
            "import-refava",
            str(tmp_path / "pkl"),
            str(tmp_path / "out"),
            "--frames",
            str(tmp_path),
            "--splits",
            "train",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert not marker.exists()
    assert "Traceback" not in proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "train_label.pkl" in err[0] and "system" in err[0]
