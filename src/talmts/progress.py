"""Progress bars that suit where they are written: a live tqdm bar on a terminal, a plain line every few seconds
in a log file.

A tqdm bar redraws itself with carriage returns on every update; written to a file (``talmts train ... > log``,
a batch job) that is one record per update, tens of megabytes over a long run. Off a terminal,
:func:`progress_bar` returns a :class:`LineProgress` instead, which prints ``desc: n/total unit (p%), elapsed,
rate, postfix`` at most once every ``interval`` seconds and once at the end.

Every progress bar of talmts goes through :func:`progress_bar`, with tqdm's own argument names, so a call site
changes only its import.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

DEFAULT_INTERVAL_S = 30.0  # off a terminal: seconds between two progress lines
INTERVAL_ENV = "TALMTS_PROGRESS_INTERVAL"  # overrides DEFAULT_INTERVAL_S (seconds)


def readable_duration(seconds: float) -> str:
    """``seconds`` as the user reads it: 45 s, 12 min, 1 h 05 min."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    file: IO[str] | None = None,
    interval: float | None = None,
) -> Any:
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a :class:`LineProgress`; same use either way:
    iterate over it, or call ``update(n)``, ``set_postfix(**values)``, ``write(text)`` and ``close()``.

    ``interval``: seconds between lines off a terminal (default: $TALMTS_PROGRESS_INTERVAL, else 30).
    """
    stream = sys.stderr if file is None else file
    if not disable and _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=stream)
    if interval is None:
        interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    return LineProgress(iterable, total=total, desc=desc, unit=unit, disable=disable, file=stream, interval=interval)


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class LineProgress:
    """Progress as plain lines: at most one every ``interval`` seconds, and a last one at :meth:`close`."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        disable: bool = False,
        file: IO[str] | None = None,
        interval: float = DEFAULT_INTERVAL_S,
        clock: Any = time.monotonic,
    ):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable, self.file, self.interval, self.clock = disable, file or sys.stderr, interval, clock
        self.n = 0
        self.postfix = ""
        self.start = self._last = clock()
        self._printed_at = -1  # self.n when the last line was printed
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LineProgress: nothing to iterate over (pass an iterable, or call update())")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if not self.disable and now - self._last >= self.interval:
            self._print(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def write(self, text: str) -> None:
        """A message of its own (tqdm.write's role); printed even when the bar is disabled."""
        self._emit(text)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.disable and self.n != self._printed_at and self.n > 0:
            self._print(self.clock())

    def line(self, now: float) -> str:
        elapsed = now - self.start
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{done} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{elapsed:.0f} s")
        if elapsed > 0 and self.n:
            parts.append(f"{self.n / elapsed:.3g} {self.unit}/s")
        if self.postfix:
            parts.append(self.postfix)
        return (f"{self.desc}: " if self.desc else "") + ", ".join(parts)

    def _print(self, now: float) -> None:
        self._emit(self.line(now))
        self._last, self._printed_at = now, self.n

    def _emit(self, text: str) -> None:
        self.file.write(text + "\n")
        self.file.flush()
