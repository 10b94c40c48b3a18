"""Errors that `ravar` raises for bad input: each message names the file, key or argument."""

from __future__ import annotations


class RavarError(Exception):
    """Base class of every error caused by the user's input (the CLI prints it as one line)."""


class DataFormatError(RavarError):
    """A dataset folder, annotation record or imported file does not follow its format."""


class FrameError(RavarError):
    """A frame or video needed for a clip is missing, unreadable or outside its root."""


class UnsafePickleError(RavarError):
    """A pickle tried to load something other than plain data."""


class PredictError(RavarError):
    """An input to video inference (time, sentence, detector, boxes file) cannot be used."""


class ServeError(RavarError):
    """`ravar serve` cannot start: the web extra is missing, the port is taken, no examples."""
