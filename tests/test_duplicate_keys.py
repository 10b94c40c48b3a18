"""Two lines of one split with the same key (video_id, time, person_id) are refused by the
training path (`read_split`, `RAVARDataset`) with the words `ravar data validate` uses."""

from __future__ import annotations

import json

import pytest

from ravar.cli import main
from ravar.data.dataset import RAVARDataset
from ravar.data.format import read_split
from ravar.data.validate import validate_dataset
from ravar.errors import DataFormatError

from builders import make_frames_dataset


def _append(root, split: str, lines: list[dict]) -> None:
    path = root / "annotations" / f"{split}.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        for d in lines:
            f.write(json.dumps(d) + "\n")


def _line(**changes) -> dict:
    d = {
        "video_id": "vidA",
        "time": 902,
        "person_id": 1,
        "text": "another sentence for the same person",
        "box": [0.1, 0.1, 0.5, 0.9],
        "actions": [14],
    }
    d.update(changes)
    return d


@pytest.fixture()
def data(tmp_path):
    return make_frames_dataset(tmp_path / "data")  # train: vidA 902, 903; vidB 902, 903


@pytest.mark.parametrize("time", [902, 902.0])
def test_same_video_time_person_is_refused_naming_file_and_both_lines(data, time):
    _append(data, "train", [_line(person_id=2), _line(time=time)])  # lines 5 and 6
    path = data / "annotations" / "train.jsonl"
    expected = f"{path}:6: key: duplicate key 'vidA___902___1' (lines 1 and 6)"
    with pytest.raises(DataFormatError) as info:
        read_split(data, "train")
    assert str(info.value) == expected
    with pytest.raises(DataFormatError) as info:
        RAVARDataset(data, "train")
    assert str(info.value) == expected
    # validate names the same line with the same words
    report = validate_dataset(data, check_frames=False)
    assert report.errors == ["train.jsonl:6: key: duplicate key 'vidA___902___1' (lines 1 and 6)"]
    assert str(info.value).endswith(report.errors[0])


def test_other_person_or_time_is_not_a_duplicate(data):
    _append(data, "train", [_line(person_id=2), _line(time=902.5), _line(person_id="p1")])
    keys = [r.key for r in read_split(data, "train")]
    assert len(keys) == 7 == len(set(keys))
    assert len(RAVARDataset(data, "train")) == 7
    assert validate_dataset(data, check_frames=False).ok


def test_person_id_as_string_has_the_same_key(data):
    _append(data, "train", [_line(person_id="1")])  # key vidA___902___1, as RefAVA writes it
    with pytest.raises(DataFormatError, match=r"train.jsonl:5: .*'vidA___902___1' \(lines 1 and 5"):
        read_split(data, "train")
    assert not validate_dataset(data, check_frames=False).ok


def test_the_same_key_in_two_splits_is_not_a_duplicate(data):
    assert [r.key for r in read_split(data, "train")] == [r.key for r in read_split(data, "val")]


def test_training_on_a_split_with_a_duplicate_stops_with_one_line(data, tmp_path, capsys):
    _append(data, "val", [_line(video_id="vidB", time=903)])
    code = main(
        ["train", "--data", str(data), "--model", "no_text_tiny", "--out", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "val.jsonl:5: key: duplicate key 'vidB___903___1' (lines 4 and 5)" in err
