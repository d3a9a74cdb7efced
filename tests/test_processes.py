"""Stop signals recorded as a request (talmts.processes.StopSignals), the one handler training and streams install:
the request is recorded where the work can act on it, a second Ctrl-C interrupts at once, and the previous
handlers come back."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from talmts.processes import StopSignals


def _noted(signum, frame):
    raise AssertionError(f"the previous handler ran for {signum}")


@pytest.fixture
def previous_handlers():
    """Recognisable handlers for the signals under test, put back as they were afterwards."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    before = {s: signal.signal(s, _noted) for s in signals}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


def test_a_signal_is_recorded_and_the_previous_handlers_come_back(previous_handlers):
    with StopSignals((signal.SIGTERM, signal.SIGUSR1)) as stop:
        assert stop.received is None and not stop.requested.is_set()
        os.kill(os.getpid(), signal.SIGUSR1)  # would raise through _noted without the handler
        assert stop.received == "SIGUSR1" and stop.requested.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM"
        assert signal.getsignal(signal.SIGINT) is _noted  # not one of its signals: left alone
    assert all(signal.getsignal(s) is _noted for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1))


def test_a_second_ctrl_c_interrupts_at_once(previous_handlers):
    with StopSignals((signal.SIGINT, signal.SIGTERM)) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == "SIGINT" and stop.requested.is_set()
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM is only recorded again
        assert stop.received == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is _noted


def test_outside_the_main_thread_nothing_is_installed(previous_handlers):
    installed = []

    def run():
        stop = StopSignals((signal.SIGTERM,))
        stop.install()
        installed.append(signal.getsignal(signal.SIGTERM))
        stop.restore()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert installed == [_noted] and signal.getsignal(signal.SIGTERM) is _noted
