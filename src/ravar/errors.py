"""Errors that `ravar` raises for bad input: each message names the file, key or argument.

A `RavarError` raised inside a DataLoader worker process reaches the main process as the same
type with the same one-line message: torch re-raises a worker's exception as
``type(message)`` where the message is its "Caught ... in DataLoader worker process N" preamble
and the worker's traceback; `RavarError` takes that text back to the original message. Every
subclass must therefore be constructible from one message string.
"""

from __future__ import annotations

import re

# the text torch's ExceptionWrapper.reraise gives an exception re-raised from another thread or
# process: "Caught <Type> <where>.\nOriginal Traceback (most recent call last):\n..."
_RERAISED = re.compile(r"Caught \w+ in .*?\.\nOriginal Traceback \(most recent call last\):\n")


def original_message(text: str, error_type: type[BaseException]) -> str:
    """`text` itself, or, when it is a worker's exception re-raised by torch (preamble and
    traceback), the message that the `error_type` raised in the worker carried."""
    if not _RERAISED.match(text):
        return text
    name = error_type.__qualname__
    if error_type.__module__ not in ("__main__", "builtins"):
        name = f"{error_type.__module__}.{name}"
    at = text.rfind(f"\n{name}: ")  # the traceback's last line: "<module>.<Type>: <message>"
    if at < 0:
        return "" if text.rstrip().endswith(f"\n{name}") else text
    return text[at + len(name) + 3 :].rstrip("\n")


class RavarError(Exception):
    """Base class of every error caused by the user's input (the CLI prints it as one line)."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (original_message(args[0], type(self)),)
        super().__init__(*args)


class DataFormatError(RavarError):
    """A dataset folder, annotation record or imported file does not follow its format."""


class FrameError(RavarError):
    """A frame or video needed for a clip is missing, unreadable or outside its root."""


class BatchError(RavarError, ValueError):
    """A batch given to a model lacks a key the model reads, or has a wrong shape."""


class UnsafePickleError(RavarError):
    """A pickle tried to load something other than plain data."""


class PredictError(RavarError):
    """An input to video inference (time, sentence, detector, boxes file) cannot be used."""


class ServeError(RavarError):
    """`ravar serve` cannot start: the web extra is missing, the port is taken, no examples."""


class PickleLimitError(DataFormatError):
    """A pickle asks for more than an importer limit allows (objects, depth, array size)."""
