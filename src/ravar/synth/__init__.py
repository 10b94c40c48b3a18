"""RefAVA-Synth: a procedural multi-person benchmark for RAVAR that cannot be solved without the
text (`ravar synth generate DIR --preset small|standard|hard --seed N`)."""

from ravar.synth.generate import generate
from ravar.synth.presets import PRESETS, SPLITS, get_preset

__all__ = ["PRESETS", "SPLITS", "generate", "get_preset"]
