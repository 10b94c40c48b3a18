"""Imports every model family so that their named configs are registered."""

from ravar.models import baselines, refatomnet, refatomnet_pp  # noqa: F401
