"""ravar: Referring Atomic Video Action Recognition."""

__version__ = "0.1.0"
