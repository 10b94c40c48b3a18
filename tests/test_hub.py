"""Sharing models Hugging Face style: `ravar.create_model` / `ravar.load_model` at the top level,
`save_pretrained` / `from_pretrained` round trips through the one checkpoint format with a
model card, a repo id is read from the local Hugging Face cache only (offline and uncached:
one line), and `push_to_hub` uploads the checkpoint folder (the Hub call recorded, not made)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import ravar
from conftest import SMALL
from ravar.cli import main as cli_main
from ravar.engine.checkpoint import read_checkpoint_config
from ravar.engine.hub import HubError
from ravar.models import RAVARModel
from ravar.models.refatomnet import RefAtomNet

from builders import random_batch

REPO = "someone/refatomnet-tiny-test"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def model() -> RAVARModel:
    torch.manual_seed(1)
    return ravar.create_model("refatomnet_tiny", **SMALL).eval()


@pytest.fixture
def no_hub_env(monkeypatch, tmp_path):
    """A private, empty Hugging Face cache; no offline switch set."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    return tmp_path / "hf_home" / "hub"


def _outputs(model: RAVARModel) -> tuple[torch.Tensor, torch.Tensor]:
    batch = random_batch(b=3, t=8, size=64, d=3, seed=5)
    with torch.no_grad():
        out = model(batch)
    return out.logits, out.boxes


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n"), card[:40]
    return yaml.safe_load(card.split("---\n")[1])


def test_top_level_names_are_lazy_and_work():
    code = (
        "import sys, ravar; "
        "assert 'ravar.models.registry' not in sys.modules and 'torch' not in sys.modules; "
        "m = ravar.create_model('refatomnet_tiny', **{'text.kind': 'scratch'}); "
        "print(type(m).__name__, m.model_name, 'refatomnet_tiny' in ravar.list_models(), "
        "ravar.load_model.__name__)"
    )
    src = str(Path(ravar.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["RefAtomNet", "refatomnet_tiny", "True", "load_pretrained"]
    with pytest.raises(AttributeError, match="no_such_name"):
        ravar.no_such_name  # noqa: B018


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, model):
    path = model.save_pretrained(tmp_path / "shared")
    names = sorted(p.name for p in path.iterdir())
    assert names == ["README.md", "config.json", "model.safetensors"]
    config = read_checkpoint_config(path)  # what `ravar eval --checkpoint` reads
    assert config["model_name"] == "refatomnet_tiny" and config["family"] == "refatomnet"
    for loaded in (
        RAVARModel.from_pretrained(path),
        RefAtomNet.from_pretrained(str(path)),
        ravar.load_model(path),
    ):
        assert type(loaded) is RefAtomNet and loaded.model_name == "refatomnet_tiny"
        a, b = _outputs(model), _outputs(loaded)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_from_pretrained_on_another_family_is_refused(tmp_path, model):
    from ravar.models.baselines import NoText

    path = model.save_pretrained(tmp_path / "shared")
    with pytest.raises(ravar.errors.RavarError, match="holds a 'refatomnet' model") as err:
        NoText.from_pretrained(path)
    assert "\n" not in str(err.value)


def test_card_has_hub_front_matter_and_the_run_metrics(tmp_path, model):
    # a training run's layout: RUN_DIR/config.yaml naming the data, test_metrics.json of best/
    run = tmp_path / "run"
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"name": "synth-standard"}))
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(data), "epochs": 3}))
    test = {"n": 40, "mIoU": 0.4213, "Acc@0.5": 0.5052, "mAP_weighted": 0.3546, "AUROC_macro": None}
    (run / "test_metrics.json").write_text(
        json.dumps({"checkpoint": str(run / "best"), "split": "test", "metrics": test})
    )
    path = model.save_pretrained(tmp_path / "out", run_dir=run, license="mit")
    card = (path / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "ravar" and meta["license"] == "mit"
    assert meta["datasets"] == ["synth-standard"]
    assert {"ravar", "refatomnet"} <= set(meta["tags"])
    [result] = meta["model-index"][0]["results"]
    assert result["dataset"] == {
        "name": "synth-standard",
        "type": "synth-standard",
        "split": "test",
    }
    values = {m["name"]: m["value"] for m in result["metrics"]}
    assert values == {"mIoU (test)": 42.13, "Acc@0.5 (test)": 50.52, "mAP (w) (test)": 35.46}
    total = sum(p.numel() for p in model.parameters())
    assert "# refatomnet_tiny" in card and "**refatomnet** family" in card
    assert f"parameters: {total:,} ({total:,} trainable)" in card
    assert "| test | 40 | 42.13 | 50.52 | 35.46 | - | - | - |" in card
    assert 'ravar.load_model("DIR")' in card and "ravar eval --checkpoint DIR" in card


def test_cli_card_of_a_run_checkpoint_uses_the_run_only_for_its_own_checkpoint(tmp_path, model):
    run = tmp_path / "run"
    best = model.save_pretrained(run / "best")
    (run / "best" / "README.md").unlink()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": str(tmp_path / "gone")}))
    summary = {"checkpoint": str(best), "metrics": {"n": 4, "mIoU": 0.25}}
    (run / "test_metrics.json").write_text(json.dumps(summary))
    shutil.copytree(best, run / "last")
    assert cli_main(["checkpoint", "card", str(best), "--repo-id", REPO]) == 0
    card = (best / "README.md").read_text()
    assert "| test | 4 | 25.00 |" in card and f'ravar.load_model("{REPO}")' in card
    assert "training data: not recorded" in card
    assert cli_main(["checkpoint", "card", str(run / "last")]) == 0  # test metrics are best/'s
    last = (run / "last" / "README.md").read_text()
    assert "model-index" not in last and "Not evaluated." in last


def _cache_repo(cache: Path, source: Path, repo_id: str = REPO) -> Path:
    """Lay `source` out as the Hugging Face cache keeps a downloaded model repo."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    shutil.copytree(source, repo / "snapshots" / COMMIT)
    return repo


def test_repo_id_loads_from_the_local_cache_offline(tmp_path, model, no_hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _cache_repo(no_hub_env, model.save_pretrained(tmp_path / "ck"))
    loaded = ravar.load_model(REPO)
    a, b = _outputs(model), _outputs(loaded)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("offline", [True, False])
def test_uncached_repo_id_is_one_line_and_never_downloaded(no_hub_env, monkeypatch, offline):
    import huggingface_hub.file_download as fd

    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was contacted")

    monkeypatch.setattr(fd, "get_hf_file_metadata", no_network)
    with pytest.raises(HubError) as err:
        RAVARModel.from_pretrained(REPO)
    msg = str(err.value)
    assert "\n" not in msg and REPO in msg and str(no_hub_env) in msg
    assert ("HF_HUB_OFFLINE is set" in msg) == offline
    assert ("download=True" in msg) == (not offline)


def test_a_missing_path_that_is_no_repo_id_is_named(tmp_path):
    with pytest.raises(ravar.errors.RavarError, match="no checkpoint directory there"):
        ravar.load_model(tmp_path / "not" / "here")


def _record_uploads(monkeypatch) -> list[dict]:
    from huggingface_hub import HfApi

    calls: list[dict] = []

    def create_repo(self, repo_id, **kwargs):
        calls.append({"create": repo_id, **kwargs})

    def upload_folder(self, *, folder_path, repo_id, **kwargs):
        folder = Path(folder_path)
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        model = ravar.load_model(folder)  # the uploaded folder is a loadable checkpoint
        card = (folder / "README.md").read_text()
        calls.append({"upload": repo_id, "files": files, "card": card, "model": model, **kwargs})
        return "https://hub.test/commit/1"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_push_to_hub_uploads_the_checkpoint_with_its_card(model, no_hub_env, monkeypatch):
    calls = _record_uploads(monkeypatch)
    url = model.push_to_hub(REPO, private=True, metrics={"val": {"mIoU": 0.5, "n": 3}})
    assert url == "https://hub.test/commit/1"
    create, upload = calls
    assert create == {"create": REPO, "repo_type": "model", "private": True, "exist_ok": True}
    assert upload["upload"] == REPO
    assert upload["files"] == {"README.md", "config.json", "model.safetensors"}
    assert f'ravar.load_model("{REPO}")' in upload["card"]
    assert "| val | 3 | 50.00 |" in upload["card"]
    a, b = _outputs(model), _outputs(upload["model"])
    assert torch.equal(a[0], b[0])


def test_cli_push_leaves_out_the_trainer_state(tmp_path, model, no_hub_env, monkeypatch, capsys):
    from ravar.engine.checkpoint import save_checkpoint

    folder = save_checkpoint(
        tmp_path / "last", model, model_name="refatomnet_tiny", trainer_state={"step": 3}
    )
    calls = _record_uploads(monkeypatch)
    assert cli_main(["checkpoint", "push", str(folder), REPO, "--message", "first"]) == 0
    upload = calls[1]
    assert upload["files"] == {"README.md", "config.json", "model.safetensors"}
    assert upload["commit_message"] == "first"
    assert not (folder / "README.md").exists()  # the card was written for the upload only
    assert f"pushed {folder} to {REPO}: https://hub.test/commit/1" in capsys.readouterr().out


def test_push_while_offline_is_one_line(model, no_hub_env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    calls = _record_uploads(monkeypatch)
    folder = model.save_pretrained(tmp_path / "ck")
    assert cli_main(["checkpoint", "push", str(folder), REPO]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"ravar: error: {REPO}: HF_HUB_OFFLINE is set; not pushing"
    assert calls == []
