"""Progress lines for output that is not a terminal (a log file, a CI job): at most one line every
`every` seconds, so a long command is never silent for long without flooding its log."""

from __future__ import annotations

import time
from collections.abc import Callable


class Heartbeat:
    """`tick(line)` hands `line()` to `say` when `every` seconds have passed since the last line
    (or since the start); `line` is only called then. `force=True` says it now."""

    def __init__(
        self,
        say: Callable[[str], None],
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not every >= 0:
            raise ValueError(f"Heartbeat: every must be >= 0 s (0: every tick), got {every!r}")
        self.say, self.every, self.clock = say, float(every), clock
        self.start = self.last = clock()

    def elapsed(self) -> float:
        """Seconds since the heartbeat started."""
        return self.clock() - self.start

    def tick(self, line: Callable[[], str], force: bool = False) -> bool:
        """Say `line()` if it is time (or `force`); True when a line was said."""
        now = self.clock()
        if not force and now - self.last < self.every:
            return False
        self.last = now
        self.say(line())
        return True


def format_duration(seconds: float) -> str:
    """`1h02m`, `4m05s` or `12s`."""
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
