"""Hostile and careless input: no code runs, nothing is written outside the named output, nothing hangs.

Every probe of the corpus (tests/hostile/, what tests/support/hostile.py makes at test time) runs in a sandbox
holding a copy of the corpus and must end with its expected exit code: 2 with exactly one line on stderr (matching
the probe's message), or 0 with a correct result (the probe's check); nothing outside OUT may change, no file
that is not a config may be quoted, and no process may be left running. docs/RELIABILITY.md lists the probes.

The tests after the probes stage what one command line cannot: two runs on one output folder, a planted link at a
temporary's name, a failed resume, and a plain `kill` of a command that runs workers.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from support.hostile import (
    HANG_GUARD,
    OUT,
    PROBES,
    SECRETS,
    Outcome,
    Probe,
    alive,
    child_pids,
    descendants,
    kill_group,
    run_child,
    sandbox_for,
    snapshot,
)
from support.videogen import write_video
from talmts.cli import main

SUPPORT = Path(__file__).parent / "support"


class ProbeHangs(BaseException):  # BaseException: no `except Exception` in talmts swallows it
    pass


def _hang(signum: int, frame: object) -> None:
    raise ProbeHangs(f"still running after {HANG_GUARD} s")


def run_in_process(argv: tuple[str, ...], cwd: Path) -> Outcome:
    """``main(argv)`` in ``cwd``, stdout and stderr captured, stopped by an alarm if it hangs."""
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _hang)
    here = Path.cwd()
    os.chdir(cwd)
    signal.alarm(HANG_GUARD)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(here)
    return Outcome(code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("probe", PROBES, ids=[p.id for p in PROBES])
def test_probe(probe: Probe, tmp_path: Path) -> None:
    sandbox = sandbox_for(tmp_path)
    if probe.setup is not None:
        probe.setup(sandbox)
    out = sandbox / OUT
    before = snapshot(sandbox, skip=out if probe.writes else None)
    children = set(child_pids(os.getpid()))

    res = (run_child if probe.child else run_in_process)(probe.argv, sandbox)

    shown = f"exit {res.code}\nstdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
    assert res.code == probe.exit, shown
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    if probe.exit == 2:
        assert len(lines) == 1, shown  # one line: the file or option, the problem, the fix
        assert re.search(probe.message, lines[0]), shown
        assert len(lines[0]) < 1000, "a message quotes at most a few dozen characters of a value"
    for secret in SECRETS:
        assert secret not in res.stdout + res.stderr, f"printed {secret!r} of a file that is no config"
    after = snapshot(sandbox, skip=out if probe.writes else None)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"written outside {OUT if probe.writes else 'nothing'}: {changed[:10]}"
    if probe.check is not None:
        probe.check(sandbox, res.stdout, res.stderr)
    left = set(child_pids(os.getpid())) - children
    assert not [p for p in left if alive(p)], "processes left running"


# ---------------------------------------------------------------------------------------------- atomic writes
def test_a_link_planted_at_a_temporary_name_redirects_nothing(tmp_path: Path, monkeypatch) -> None:
    """Links planted at the names a temporary could take: the write goes to the target and nowhere else."""
    import secrets as secrets_module

    from talmts.fileio import TMP_MARK, atomic_write_text

    folder, victim = tmp_path / "out", tmp_path / "victim.txt"
    folder.mkdir()
    planted = [folder / f".out.txt{TMP_MARK}{os.getpid()}", folder / f".out.txt{TMP_MARK}{os.getpid()}-aaaaaaaa"]
    for p in planted:
        p.symlink_to(victim)
    draws = iter(["aaaaaaaa", "bbbbbbbb"])  # the first name drawn is a planted one: another is drawn
    monkeypatch.setattr(secrets_module, "token_hex", lambda n: next(draws))
    atomic_write_text(folder / "out.txt", "data")
    assert not victim.exists(), "the data went through the planted link"
    assert (folder / "out.txt").read_text() == "data" and not (folder / "out.txt").is_symlink()
    assert all(p.is_symlink() and os.readlink(p) == str(victim) for p in planted)  # untouched
    assert sorted(p.name for p in folder.iterdir()) == sorted(["out.txt", *(p.name for p in planted)])


# ---------------------------------------------------------------------------------------------- two runs, one output
def _holder(mode: str, out: Path, gate: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(SUPPORT / "hold_output.py"), mode, str(out), str(gate), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    assert line.strip() == "holding", line + proc.stdout.read()
    return proc


def test_a_second_prepare_into_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    """The first run waits with a frames file half-written; the second is refused in one line naming the folder
    and the first run's process, and the first one then ends as if alone."""
    videos, out, gate = tmp_path / "videos", tmp_path / "out", tmp_path / "gate"
    write_video(videos / "a.avi", frames=20, fps=10.0, size=(32, 32))
    first = _holder("prepare", out, gate, str(videos))
    try:
        argv = ("prepare", str(videos), str(out), "--flow", "none", "--size", "32", "--workers", "1", "--quiet")
        res = run_in_process(argv, tmp_path)
        assert res.code == 2, res
        (line,) = res.stderr.strip().splitlines()
        assert f"{out} is in use by pid {first.pid}" in line, line
        gate.touch()
        assert first.wait(HANG_GUARD) == 0, first.stdout.read()
        assert np.load(out / "frames" / "a.npy").shape == (20, 32, 32, 3)
    finally:
        kill_group(first.pid)


def test_a_second_view_into_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    from support.view_fixtures import write_result_set

    f = write_result_set(tmp_path / "in")
    out, gate = tmp_path / "site", tmp_path / "gate"
    first = _holder("view", out, gate, str(f["detections"]), str(f["gt"]))
    try:
        res = run_in_process(
            ("view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--out", str(out)), tmp_path
        )
        assert res.code == 2, res
        (line,) = res.stderr.strip().splitlines()
        assert f"{out} is in use by pid {first.pid}" in line, line
        assert not (out / "index.html").exists()  # nothing of the refused run, nothing half of the first
        gate.touch()
        assert first.wait(HANG_GUARD) == 0, first.stdout.read()
        assert sorted(p.name for p in (out / "videos").iterdir()) == ["clip.html", "long.html", "quiet.html"]
    finally:
        kill_group(first.pid)


# ---------------------------------------------------------------------------------------------- resume
def test_a_failed_resume_leaves_the_run_folder_as_it_was(tmp_path: Path) -> None:
    from support.engine_fixtures import RandomClips, TinyNet, collate, tiny_config, tiny_loss
    from talmts.engine.checkpoint import CheckpointMissing
    from talmts.engine.training.loop import train

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("the earlier run's config\n")
    cfg = tiny_config(run, epochs=1)
    with pytest.raises(CheckpointMissing, match="typo.pt"):
        train(cfg, resume=tmp_path / "typo.pt", progress=False, model=TinyNet(), dataset=RandomClips(4),
              collate=collate, loss_fn=tiny_loss)  # fmt: skip
    assert (run / "config.yaml").read_text() == "the earlier run's config\n"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


# ---------------------------------------------------------------------------------------------- signals
def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_prepare_workers_end_when_prepare_is_killed(tmp_path: Path, sig: signal.Signals) -> None:
    """`kill PID` of prepare alone (SIGTERM: passed on to the workers) or SIGKILL (nothing can be passed on: the
    workers see their parent gone): every worker has ended within seconds."""
    videos = tmp_path / "videos"
    for i in range(6):
        write_video(videos / f"v{i}.avi", frames=150, fps=10.0, size=(64, 64))
    argv = [sys.executable, "-m", "talmts", "prepare", str(videos), str(tmp_path / "out"), "--workers", "2"]
    argv += ["--flow", "tvl1-torch", "--size", "64", "--quiet"]
    parent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while len(child_pids(parent.pid)) < 3 and time.monotonic() < deadline:  # two workers, the resource tracker
            time.sleep(0.1)
        time.sleep(1.0)  # the workers have started their videos
        workers = descendants(parent.pid)
        assert len(workers) >= 2 and parent.poll() is None, "prepare ended before it could be killed"
        os.kill(parent.pid, sig)
        code = parent.wait(HANG_GUARD)
        assert not _wait_gone(workers, 30), "workers outlived their parent"
        assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    finally:
        kill_group(parent.pid)  # whatever is left, even when the test fails


@pytest.mark.slow  # the demo up to its training: about a minute
def test_demo_training_workers_end_with_a_plain_kill(tmp_path: Path) -> None:
    """SIGTERM to `talmts demo` alone while its two training processes run: they stop (each at a step boundary,
    with its checkpoint) and end; none waits for ever on a pipe from the dead parent."""
    argv = [sys.executable, "-m", "talmts", "demo", "--quick", "--out", str(tmp_path / "demo"), "--quiet"]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in parent.stdout:
            if "training the flow stream" in line:
                break
        started = [tmp_path / "demo" / m / "config.yaml" for m in ("rgb", "flow")]  # written as training starts
        deadline = time.monotonic() + HANG_GUARD
        while not all(p.is_file() for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # inside the step loop
        workers = descendants(parent.pid)
        assert len(workers) >= 2, "demo trained without worker processes"
        os.kill(parent.pid, signal.SIGTERM)
        code = parent.wait(HANG_GUARD)
        assert not _wait_gone(workers, 60), "training workers outlived the demo"
        assert code == 128 + signal.SIGTERM  # the stop went through the demo's own handling
    finally:
        kill_group(parent.pid)
