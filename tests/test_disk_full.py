"""Disk full and write errors, for real: a small tmpfs (ENOSPC; needs root, skipped otherwise) and a file size
limit (RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with EFBIG; works anywhere). Each writer must leave no
partial file, keep what was written before, and stop with one line that names the path."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from support.tiny_model import tiny_checkpoint
from support.videogen import write_video
from talmts.fileio import TMP_MARK, WriteError, atomic_write_bytes

TESTS = Path(__file__).resolve().parent


def _limit(fsize: int):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the default action kills the process; ignored: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return apply


def run_limited(args: list[str], fsize: int | None = None) -> subprocess.CompletedProcess:
    """``python args...`` in a child, with every file it writes limited to ``fsize`` bytes."""
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=_limit(fsize) if fsize is not None else None,
    )


@contextmanager
def small_fs(where: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` KiB mounted at ``where``; skips the test where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a small file system needs root")
    proc = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if TMP_MARK in p.name]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------- fileio
def test_size_limit_keeps_the_old_file_and_names_the_path(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    code = (
        "import sys; from talmts.fileio import atomic_write_bytes, WriteError\n"
        "try:\n"
        f"    atomic_write_bytes({str(target)!r}, bytes(200_000))\n"
        "except WriteError as e:\n"
        "    print(e.errno, e.path, e, sep='|'); sys.exit(3)\n"
    )
    proc = run_limited(["-c", code], fsize=64 * 1024)
    assert proc.returncode == 3, proc.stderr
    code_, path, message = proc.stdout.strip().split("|")
    assert int(code_) == errno.EFBIG and path == str(target)
    assert message.startswith(f"cannot write {target}: File too large")
    assert target.read_bytes() == b"old" and no_temporaries(tmp_path)


def test_full_disk_keeps_the_old_file_and_frees_the_temporary(tmp_path):
    with small_fs(tmp_path / "fs", 64) as fs:
        target = fs / "a.bin"
        atomic_write_bytes(target, b"old")
        with pytest.raises(WriteError) as info:
            atomic_write_bytes(target, bytes(200_000))
        assert info.value.errno == errno.ENOSPC and info.value.path == str(target)
        assert "No space left on device" in str(info.value) and str(target) in str(info.value)
        assert target.read_bytes() == b"old" and [p.name for p in fs.iterdir()] == ["a.bin"]
        atomic_write_bytes(fs / "b.bin", bytes(16_000))  # the temporary's space came back


def test_write_error_crosses_processes_intact():
    import pickle

    e = pickle.loads(pickle.dumps(WriteError("/x/frames/v.npy", OSError(errno.ENOSPC, "x"))))
    assert isinstance(e, WriteError) and e.errno == errno.ENOSPC and "/x/frames/v.npy" in str(e)


# --------------------------------------------------------------------------------------------- prepare
@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for name in ("a", "b", "c"):  # 30 frames at 32 x 32 px: 92 KiB of frames each
        write_video(root / f"{name}.mp4", frames=30, codec="libx264", size=(48, 48))
    return root


PREPARE = ["-m", "talmts", "prepare", "--size", "32", "--flow", "none", "--workers", "1", "--quiet"]


def _check_stopped(proc: subprocess.CompletedProcess, out: Path, failed: str, reason: str) -> None:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("talmts prepare: cannot write "), proc.stderr
    assert str(out / "frames" / f"{failed}.npy") in lines[0] and reason in lines[0]


@pytest.mark.parametrize("how", ["full_disk", "size_limit"])
def test_prepare_stops_on_a_full_disk_and_keeps_what_it_wrote(videos, tmp_path, how):
    clean = tmp_path / "clean"
    assert run_limited([*PREPARE[:3], str(videos), str(clean), *PREPARE[3:]]).returncode == 0
    if how == "full_disk":
        with small_fs(tmp_path / "fs", 240) as fs:  # room for the frames of two videos, not three
            out = fs / "prepared"
            proc = run_limited([*PREPARE[:3], str(videos), str(out), *PREPARE[3:]])
            _check_stopped(proc, out, "c", "No space left on device")
            kept = snapshot(out)
            shutil.copytree(out, tmp_path / "resumed")
    else:
        out = tmp_path / "prepared"
        first = videos.parent / f"only_a_{uuid.uuid4().hex[:6]}"
        first.mkdir()
        shutil.copy(videos / "a.mp4", first / "a.mp4")
        assert run_limited([*PREPARE[:3], str(first), str(out), *PREPARE[3:]]).returncode == 0
        before = snapshot(out)
        proc = run_limited([*PREPARE[:3], str(videos), str(out), *PREPARE[3:]], fsize=64 * 1024)
        _check_stopped(proc, out, "b", "File too large")
        kept = snapshot(out)
        assert {k: v for k, v in kept.items() if k != "prepare.json"} == {
            k: v for k, v in before.items() if k != "prepare.json"
        }  # a's outputs and the video_info.csv of the earlier run, byte for byte
        shutil.copytree(out, tmp_path / "resumed")
    assert no_temporaries(tmp_path / "resumed")
    assert "frames/c.npy" not in kept and "meta/c.json" not in kept
    for name in ("a",):
        assert np.array_equal(
            np.load(tmp_path / "resumed" / "frames" / f"{name}.npy"), np.load(clean / "frames" / f"{name}.npy")
        )
    # the same command, with room, resumes: the result equals a run that never hit the limit
    proc = run_limited([*PREPARE[:3], str(videos), str(tmp_path / "resumed"), *PREPARE[3:]])
    assert proc.returncode == 0 and "already done" in proc.stdout
    assert snapshot(tmp_path / "resumed") == snapshot(clean)


# --------------------------------------------------------------------------------------------- detect
@pytest.mark.slow
def test_detect_stops_naming_the_file_and_keeps_the_earlier_outputs(videos, tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "det"
    args = ["-m", "talmts", "detect", str(videos / "a.mp4"), "--checkpoint", str(ckpt), "--out", str(out)]
    assert run_limited([*args, "--min-score", "0.5"]).returncode == 0
    before = snapshot(out)
    proc = run_limited(args, fsize=8 * 1024)  # the JSON, CSV and subtitles fit; the timeline picture does not
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"talmts detect: cannot write {out / 'timeline.png'}: File too large")
    after = snapshot(out)
    assert set(after) == set(before) and no_temporaries(out)
    assert after["timeline.png"] == before["timeline.png"] and after["index.html"] == before["index.html"]


# --------------------------------------------------------------------------------------------- train
TRAIN = """
import sys
from support.engine_fixtures import RandomClips, TinyNet, collate, tiny_config, tiny_loss
from talmts.engine.training.loop import train
from talmts.errors import TalmtsError
cfg = tiny_config(sys.argv[1], epochs=int(sys.argv[2]))
try:
    train(cfg, resume=None if sys.argv[3] == "-" else sys.argv[3], progress=False, model=TinyNet(),
          dataset=RandomClips(8), collate=collate, loss_fn=tiny_loss)
except TalmtsError as e:
    print(f"talmts train: {e}", file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.slow
def test_training_stops_when_a_checkpoint_cannot_be_written(tmp_path):
    run = tmp_path / "run"
    assert run_limited(["-c", TRAIN, str(run), "1", "-"]).returncode == 0
    first = (run / "checkpoint-1.pt").read_bytes()
    limit = len(first) // 2  # the logs fit, a checkpoint does not
    proc = run_limited(["-c", TRAIN, str(run), "2", str(run / "checkpoint-1.pt")], fsize=limit)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("resumed", "  "))]
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith(f"talmts train: cannot write {run / 'checkpoint-2.pt'}: File too large"), proc.stderr
    assert (run / "checkpoint-1.pt").read_bytes() == first
    assert not (run / "checkpoint-2.pt").exists() and no_temporaries(run)


TENSORBOARD = """
import warnings
from talmts.engine.training.hooks.logs import ScalarLogger
logger = ScalarLogger(__import__("sys").argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for step in range(3000):
        logger.scalars("train", {"loss": float(step)}, step)
    logger.close()
print("|".join(str(w.message) for w in caught))
"""


@pytest.mark.slow
def test_tensorboard_scalars_are_best_effort_on_a_full_disk(tmp_path):
    proc = run_limited(["-c", TENSORBOARD, str(tmp_path / "tb")], fsize=4 * 1024)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"TensorBoard scalars stop: cannot write {tmp_path / 'tb'}: File too large"


@pytest.mark.slow
def test_eval_stops_naming_the_file_and_keeps_the_earlier_outputs(videos, tmp_path):
    import json

    from support.tiny_model import TINY

    gt = {"version": "t", "database": {}}
    for name in ("a", "b", "c"):
        anns = [{"segment": [0.5, 2.0], "label": "jump"}, {"segment": [1.0, 2.5], "label": "wave"}]
        gt["database"][name] = {"subset": "test", "annotations": anns}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    prepare = [*PREPARE[:3], str(videos), str(tmp_path / "prepared"), *PREPARE[3:]]
    assert run_limited(prepare).returncode == 0
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "eval"
    args = ["-m", "talmts", "eval", "demo", *TINY, f"data.root={tmp_path / 'prepared'}"]
    args += [f"data.annotations={tmp_path / 'gt.json'}", "--checkpoint", str(ckpt), "--out", str(out), "--quiet"]
    assert run_limited(args).returncode == 0
    before = snapshot(out)
    proc = run_limited(args, fsize=len(before["detections.json"]) // 2)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"talmts eval: cannot write {out / 'detections.json'}: File too large")
    assert snapshot(out) == before and no_temporaries(out)
