"""Engine building blocks: LR schedule, EMA, multi-clip flattening, eval shards, TrainConfig and
run-config resolution (defaults < YAML < key=value < flags)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ravar.config import ConfigError
from ravar.engine.batch import flatten_clips
from ravar.engine.config import (
    TrainConfig,
    check_resume_compatible,
    resolve_run_config,
)
from ravar.engine.distributed import shard_indices
from ravar.engine.ema import ModelEMA
from ravar.engine.schedule import build_scheduler, lr_factor, warmup_steps_for
from test_engine_support import NAME


def test_warmup_then_cosine_by_hand():
    # 10 steps, 2 warmup: 0.5, 1.0, then cosine over the 7 remaining intervals to min 0.1
    got = [lr_factor(s, 10, 2, "cosine", 0.1) for s in range(10)]
    assert got[:2] == [0.5, 1.0]
    for s in range(2, 10):
        want = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 7))
        assert got[s] == pytest.approx(want)
    assert got[-1] == pytest.approx(0.1)
    assert [lr_factor(s, 10, 3, "constant") for s in range(5)] == [1 / 3, 2 / 3, 1, 1, 1]


@pytest.mark.parametrize("schedule", ["cosine", "constant", "bert_cosine"])
def test_scheduler_sets_peak_times_factor_each_step_and_resumes_from_the_step(schedule):
    total, warmup, peak = 12, 3, 0.02

    def optimizer() -> torch.optim.Optimizer:
        w = nn.Parameter(torch.zeros(2))
        return torch.optim.AdamW([{"params": [w]}, {"params": [], "weight_decay": 0.0}], lr=peak)

    def lrs(opt: torch.optim.Optimizer, start: int) -> list[list[float]]:
        sched = build_scheduler(opt, peak, total, warmup, schedule, 0.1, step=start)
        out = []
        for _ in range(start, total):
            out.append([g["lr"] for g in opt.param_groups])  # the lr the step is taken with
            opt.step()
            sched.step()
        return out

    want = [[peak * lr_factor(s, total, warmup, schedule, 0.1)] * 2 for s in range(total)]
    assert lrs(optimizer(), 0) == want  # exact: the same float arithmetic as before
    # resuming at step 5 from an optimizer whose lr is the last one used (an old checkpoint)
    resumed = optimizer()
    for g in resumed.param_groups:
        g["lr"] = want[4][0]
    assert lrs(resumed, 5) == want[5:]


def test_warmup_steps_for():
    assert warmup_steps_for(100, None, 0.05) == 5
    assert warmup_steps_for(100, 7, 0.05) == 7
    assert warmup_steps_for(3, 10, 0.0) == 2  # never the whole run


def test_ema_follows_the_formula_and_copies_integer_buffers():
    model = nn.Linear(2, 1, bias=False)
    model.register_buffer("count", torch.tensor(0))
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.9)
    expected = 1.0
    for n, value in enumerate([3.0, -1.0, 5.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        model.count += 1
        d = min(0.9, (1 + n) / (10 + n))  # 0.1, 2/11, 3/12
        expected = d * expected + (1 - d) * value
        ema.update(model)
    assert torch.allclose(ema.module.weight, torch.full((1, 2), expected))
    assert int(ema.module.count) == 3
    assert ema.state_dict()["updates"] == 3
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_resumes_from_saved_counters():
    # trainer_state.pt of earlier versions holds {"decay", "updates"}: the next update must use
    # the decay of update number `updates`, as an uninterrupted average would
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema = ModelEMA(model, decay=0.99)
    ema.load_state_dict({"decay": 0.99, "updates": 5})
    with torch.no_grad():
        model.weight.fill_(13.0)
    ema.update(model)
    d = min(0.99, (1 + 5) / (10 + 5))
    assert torch.allclose(ema.module.weight, torch.full((1, 2), d * 2.0 + (1 - d) * 13.0))
    assert ema.state_dict() == {"decay": 0.99, "updates": 6}


def test_library_constant_decay_ema_truncates_integer_buffers():
    # why ModelEMA passes its own averaging function to AveragedModel
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    model = nn.Linear(2, 1)
    model.register_buffer("count", torch.tensor(0))
    library = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ours = ModelEMA(model, decay=0.9)
    for _ in range(4):
        model.count += 1
        library.update_parameters(model)
        ours.update(model)
    assert int(library.module.count) == 1  # 1 copied at the start, then 0.9*c + 0.1*(c+1) -> c
    assert int(ours.module.count) == 4


def test_flatten_clips_repeats_other_entries_in_clip_order():
    frames = torch.arange(2 * 3 * 1 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 3, 1, 1)
    batch = {
        "frames": frames,  # [B=2, K=3, T=1, 3, 1, 1]
        "keyframe": torch.tensor([[10.0], [20.0]]),
        "text": ["a", "b"],
        "index": torch.tensor([4, 7]),
    }
    flat, k = flatten_clips(batch)
    assert k == 3 and flat["frames"].shape == (6, 1, 3, 1, 1)
    assert torch.equal(flat["frames"][4], frames[1, 1])
    assert flat["text"] == ["a", "a", "a", "b", "b", "b"]
    assert flat["index"].tolist() == [4, 4, 4, 7, 7, 7]
    assert flat["keyframe"][:, 0].tolist() == [10, 10, 10, 20, 20, 20]
    single = {"frames": torch.zeros(2, 4, 3, 1, 1), "text": ["a", "b"]}
    assert flatten_clips(single) == (single, 1)


@pytest.mark.parametrize("n,world", [(5, 2), (7, 3), (2, 4), (0, 2)])
def test_shards_cover_every_index_once(n, world):
    shards = [shard_indices(n, r, world) for r in range(world)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(n))
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_train_config_rejects_bad_values_naming_the_key():
    with pytest.raises(ValueError, match="select_metric"):
        TrainConfig(select_metric="loss")
    with pytest.raises(ValueError, match="grad_accum"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)


def test_resolution_order_defaults_yaml_overrides_flags(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "epochs: 7\nlr: 0.002\nbatch_size: 3\nmodel:\n  dim: 24\n  clip: {num_frames: 3}\n"
    )
    run = resolve_run_config(
        NAME,
        cfg,
        ["lr=0.005", "model.dim=32", "ema=0.99"],
        flags={"batch_size": 5, "seed": None},
    )
    t = run.train
    assert (t.epochs, t.lr, t.batch_size, t.ema, t.seed) == (7, 0.005, 5, 0.99, 0)
    assert run.model.dim == 32
    assert run.model.clip.num_frames == 3
    assert run.model.clip.size == (16, 16)  # a partial section keeps the model's other keys
    assert run.family == NAME


def test_yaml_can_name_the_model(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model_name: {NAME}\nepochs: 2\n")
    assert resolve_run_config(None, cfg).train.epochs == 2


@pytest.mark.parametrize(
    "text,culprit",
    [
        ("epochs: 2\nlearning_rate: 0.1\n", "learning_rate"),
        ("model:\n  width: 3\n", "width"),
        ("epochs: [1\n", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
    ],
)
def test_bad_yaml_names_file_and_key(tmp_path, text, culprit):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve_run_config(NAME, cfg)
    assert culprit in str(err.value) and "bad.yaml" in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_overrides_name_the_key():
    with pytest.raises(ConfigError, match="model.clip.frames|frames"):
        resolve_run_config(NAME, overrides=["model.clip.frames=4"])
    with pytest.raises(ConfigError, match="warmup"):
        resolve_run_config(NAME, overrides=["warmup=3"])
    with pytest.raises(ConfigError, match="epochs"):
        resolve_run_config(NAME, overrides=["epochs=zero"])
    with pytest.raises(ConfigError, match="no model name"):
        resolve_run_config(None)
    with pytest.raises(ConfigError, match="nosuch_model"):
        resolve_run_config("nosuch_model")


def test_resume_allows_only_harmless_changes():
    saved = resolve_run_config(NAME, overrides=["epochs=3"])
    check_resume_compatible(
        saved, resolve_run_config(NAME, overrides=["epochs=3", "workers=2"]), "x"
    )
    with pytest.raises(ConfigError) as err:
        check_resume_compatible(
            saved, resolve_run_config(NAME, overrides=["epochs=4", "model.dim=8"]), "RUN/last"
        )
    assert "epochs" in str(err.value) and "model" in str(err.value) and "RUN/last" in str(err.value)
