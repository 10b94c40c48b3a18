"""Imports every model family so that their named configs are registered."""

from ravar.models import baselines, refatomnet  # noqa: F401
