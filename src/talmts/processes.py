"""Worker processes that never outlive the process that started them, and stop signals passed on to them.

Commands that start workers (``demo``'s two training processes, ``prepare``'s and ``synth``'s pools, the training
loader's workers) must not leave them running when they end in any way, a plain ``kill PID`` or ``timeout``
included. Two mechanisms, one for each direction:

- **The child watches its parent.** :func:`exit_with_parent` starts a thread in the worker that polls
  ``os.getppid()`` every :data:`WATCH_SECONDS`; once the parent is gone (the worker was re-parented, even after a
  SIGKILL of the parent, which nothing can intercept) it sends the worker SIGTERM, the stop request a training loop
  answers with a step checkpoint (engine/training/hooks/preemption.py), and ends it for good after ``grace`` seconds.
  A polling thread rather than Linux's ``prctl(PR_SET_PDEATHSIG)``: that signal follows the *thread* that started
  the child, not the process, and exists on Linux only.
- **The parent forwards what it receives.** :func:`stop_signals_raise` turns SIGTERM (and SIGHUP) into
  :class:`Terminated`, a ``KeyboardInterrupt``, in the main process; the code that runs a pool catches it and calls
  :func:`stop_workers`, which sends SIGTERM to every worker, waits up to the grace period and kills what is left.

Where a stop should end the work cleanly instead of unwinding it, :class:`StopSignals` records the request and the
work looks at it when it can act: training at its next step boundary (SIGTERM, SIGUSR1), a stream before its next
frame (SIGINT, SIGTERM).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from multiprocessing import get_context
from types import FrameType
from typing import Any

WATCH_SECONDS = 0.5  # how often a worker checks that its parent lives
GRACE_SECONDS = 30.0  # a stopped worker's time to finish its step and write its checkpoint before it is killed
FORWARDED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP: unwind like Ctrl-C (pools stop their workers on the way out)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM and SIGHUP raise :class:`Terminated`; the previous
    handlers come back afterwards. A training loop installs its own handlers (a graceful stop) inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in FORWARDED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class StopSignals:
    """Records a stop request on ``signals`` while installed (``with``, or :meth:`install` and :meth:`restore`):
    ``received`` names the signal, ``requested`` (an event other threads may wait on) is set. A SIGINT (Ctrl-C)
    after a stop was already recorded (a second Ctrl-C, when SIGINT is among ``signals``) raises
    ``KeyboardInterrupt`` at once. Only the main thread installs anything (Python delivers signals there);
    elsewhere the previous handlers stay and nothing is recorded."""

    def __init__(self, signals: tuple[signal.Signals, ...]):
        self.signals = signals
        self.received: str | None = None
        self.requested = threading.Event()
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested.is_set():
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name
        self.requested.set()

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def __enter__(self) -> StopSignals:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def exit_with_parent(parent: int | None = None, *, grace: float = GRACE_SECONDS) -> None:
    """In a worker: end this process once ``parent`` (default: the current parent) has ended. First SIGTERM (a
    training loop stops at its next step boundary with a checkpoint), repeated while it runs, then, ``grace``
    seconds later, ``os._exit``. ``grace=0``: at once (a loader worker, which ignores SIGTERM and holds no state)."""
    parent = os.getppid() if parent is None else parent
    threading.Thread(target=_watch, args=(parent, grace), name="talmts-exit-with-parent", daemon=True).start()


def _watch(parent: int, grace: float) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        os.kill(os.getpid(), signal.SIGTERM)  # once the training's own handler is gone, this one ends the process
        time.sleep(WATCH_SECONDS)
    os._exit(128 + signal.SIGTERM)


def _start_worker(parent: int, grace: float, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    exit_with_parent(parent, grace=grace)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
    *,
    grace: float = GRACE_SECONDS,
) -> ProcessPoolExecutor:
    """A pool of ``spawn`` processes (no fork: OpenCV / FFmpeg / torch thread pools do not survive it) that end
    when this process ends; ``initializer(*initargs)`` runs in each, as ProcessPoolExecutor's does. Stop it with
    :func:`stop_workers` when the block that uses it is left by an exception."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), grace, initializer, initargs),
    )


def stop_workers(pool: ProcessPoolExecutor, *, grace: float = GRACE_SECONDS) -> None:
    """Pass the stop on: queued jobs cancelled, SIGTERM to every worker (repeated, so that one whose training loop
    took the first as a request to stop at its next step boundary ends once it has), up to ``grace`` seconds for
    them to end, SIGKILL for the rest. Never waits longer."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)  # idle workers get their sentinel and end by themselves
    deadline = time.monotonic() + grace
    while True:
        running = [p for p in processes if p.is_alive()]
        if not running or time.monotonic() >= deadline:
            break
        for p in running:
            with suppress(OSError, ValueError, AttributeError):
                p.terminate()
        time.sleep(WATCH_SECONDS)
    for p in processes:
        with suppress(OSError, ValueError, AttributeError):
            if p.is_alive():
                p.kill()
                p.join(5)
