"""Progress off a terminal: a plain line every N seconds, never a carriage return per update."""

from __future__ import annotations

import io
import itertools

from tqdm import tqdm

from talmts.cli import main
from talmts.progress import LineProgress, progress_bar


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_at_most_every_interval_and_one_at_the_end() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=100, desc="train", unit="step", file=out, interval=10.0, clock=clock)
    for _ in range(100):
        clock.now += 1.0  # one update a second for 100 s
        bar.update(1)
    bar.set_postfix(loss="0.5")
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # at 10, 20, ..., 100 s; the end coincides with the last one
    assert lines[0] == "train: 10/100 step (10%), 10 s, 1 step/s"
    assert lines[-1] == "train: 100/100 step (100%), 100 s, 1 step/s"
    assert "\r" not in out.getvalue()


def test_iteration_and_unknown_totals() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(itertools.islice(itertools.count(), 5), desc="x", file=out, interval=1e9, clock=clock)
    assert list(bar) == [0, 1, 2, 3, 4]
    assert out.getvalue() == "x: 5 it, 0 s\n"  # only the final line; no total known


def test_disabled_prints_nothing_but_write_still_does() -> None:
    out = io.StringIO()
    bar = progress_bar(total=3, file=out, disable=True)
    bar.update(3)
    bar.write("FAILED v1: no frames")
    bar.close()
    assert out.getvalue() == "FAILED v1: no frames\n"


def test_a_terminal_gets_tqdm_and_a_file_gets_lines() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(progress_bar(total=1, file=Terminal()), tqdm)
    assert isinstance(progress_bar(total=1, file=io.StringIO()), LineProgress)


def test_a_command_writing_to_a_log_prints_lines_not_carriage_returns(tmp_path, capsys) -> None:
    argv = ["synth", str(tmp_path / "s"), "--videos", "3", "--size", "32", "--length", "2", "3", "--workers", "1"]
    argv += ["--action-length", "0.5", "1.0"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("synth: 3/3 video (100%), ")  # the closing line only


def test_readable_duration_by_hand():
    from talmts.progress import readable_duration

    assert [readable_duration(s) for s in (0, 45.4, 89.6, 90, 125, 5399, 5400, 3725 * 2)] == [
        "0 s", "45 s", "90 s", "2 min", "2 min", "90 min", "1 h 30 min", "2 h 04 min",
    ]  # fmt: skip
