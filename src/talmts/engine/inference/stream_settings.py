"""How ``talmts stream`` reads its source and when its detections leave (:class:`StreamSettings`), apart from the
stream itself so that the command line can show the defaults without loading torch."""

from __future__ import annotations

import os
from dataclasses import dataclass

from talmts.errors import InputError


@dataclass
class StreamSettings:
    """How a stream is read and when its detections leave (the defaults are the command's)."""

    realtime: bool = False  # a file at its own pace instead of as fast as it decodes
    every: float | None = None  # a status every this many wall seconds
    stall_timeout: float = 10.0  # seconds without a frame before the source counts as stalled
    reconnect: int = 0  # times a network source is reopened after an error or a timeout
    min_score: float = 0.1  # detections below are neither emitted nor written
    horizon: float = 60.0  # stream seconds after its end by which a detection leaves, proven final or not
    fmt: str | None = None  # FFmpeg input format (e.g. v4l2 for a camera); None: FFmpeg guesses
    video_id: str | None = None  # the id in the files (default: the file's stem, else "stream")
    threads: int | None = None  # torch threads for the network; None: all cores but one (see default_threads)

    def check(self) -> None:
        """One line naming the option and the fix when a value cannot work."""
        for name, value in (("stall-timeout", self.stall_timeout), ("horizon", self.horizon), ("every", self.every)):
            if value is not None and not value > 0:
                raise InputError(f"--{name} {value:g}: must be a positive number of seconds")
        if not 0 <= self.min_score <= 1:
            raise InputError(f"--min-score {self.min_score:g}: must be in [0, 1]")
        if self.reconnect < 0:
            raise InputError(f"--reconnect {self.reconnect}: must be 0 or more")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads}: must be 1 or more")


def default_threads() -> int:
    """All the cores this process may use but one: the reader thread decodes on that one while the network runs.
    On two shared cores torch's default of two threads took 5-13x the CPU time of one (docs/PERFORMANCE.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)
