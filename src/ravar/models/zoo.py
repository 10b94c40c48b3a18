"""Imports every model family so that their named configs are registered."""
