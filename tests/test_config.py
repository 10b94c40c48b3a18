"""Dataclass configs: overrides, coercion, errors and the dict round trip."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ravar.config import ConfigError, apply_overrides, from_dict, parse_overrides, to_dict
from ravar.data.clip_config import ClipConfig


@dataclass
class Inner:
    width: int = 8
    rate: float = 0.1
    kind: str = "a"


@dataclass
class Outer:
    name: str = "m"
    depth: int = 2
    flag: bool = False
    maybe: float | None = None
    inner: Inner = field(default_factory=Inner)
    clip: ClipConfig = field(default_factory=ClipConfig)


def test_parse_and_apply_overrides():
    ov = parse_overrides(
        ["depth=4", "inner.rate=1", "flag=true", "clip.size=[64, 64]", "maybe=null"]
    )
    cfg = apply_overrides(Outer(), ov)
    assert cfg.depth == 4 and cfg.flag is True and cfg.maybe is None
    assert cfg.inner.rate == 1.0 and isinstance(cfg.inner.rate, float)
    assert cfg.clip.size == (64, 64)
    assert Outer().depth == 2  # the original is untouched


def test_round_trip_through_dict():
    cfg = apply_overrides(Outer(), {"inner.kind": "b", "clip.num_frames": 4})
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"depht": 3}, "unknown config key 'depht'"),
        ({"inner.wdth": 3}, "inner.wdth"),
        ({"depth": "three"}, "depth: expected an integer"),
        ({"flag": 1}, "flag: expected true/false"),
        ({"name.x": 1}, "unknown config key 'name'"),
        ({"clip.hflip_prob": 2.0}, "hflip_prob"),
    ],
)
def test_bad_overrides_name_the_key(overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        apply_overrides(Outer(), overrides)


def test_parse_rejects_malformed():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["depth"])
    with pytest.raises(ConfigError, match="unknown config keys"):
        from_dict(Inner, {"width": 1, "height": 2})
