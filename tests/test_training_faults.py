"""Training under faults: stop signals, step checkpoints, corrupted checkpoints; each resumed run must end bit for
bit where a run never interrupted ends (weights, EMA, optimiser, scheduler, RNGs, loss log)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from support.engine_fixtures import RandomClips, TinyNet, assert_same_training_state, collate, tiny_config, tiny_loss
from talmts.config import ConfigError, load_config
from talmts.engine.checkpoint import CheckpointError, load_checkpoint
from talmts.engine.training.hooks import CheckpointFallbackWarning, Hook, TrainingStopped
from talmts.engine.training.loop import EXIT_STOPPED, train
from talmts.engine.training.resume import ResumeSettingsWarning

HERE = Path(__file__).parent
# 12 clips, batch 2: 6 steps an epoch, 18 in all; EMA, warm-up and a cosine schedule all carry state
OPTS = {"epochs": 3, "batch_size": 2, "ema": 0.9, "warmup_steps": 2, "schedule": "cosine"}


class AtStep(Hook):
    """Calls ``action(loop)`` right after step ``step`` (before the checkpoint hook looks at that step)."""

    def __init__(self, step: int, action):
        self.step, self.action = step, action

    def after_step(self, loop, row) -> None:
        if loop.step == self.step:
            self.action(loop)


class Crash(RuntimeError):
    pass


def _crash(loop) -> None:
    raise Crash(f"crash after step {loop.step}")


def _sigusr1(loop) -> None:
    os.kill(os.getpid(), signal.SIGUSR1)


def _train(out: Path, resume=None, hooks=(), **opts):
    """One thread, as tests/support/train_child.py: the sums, so the weights, depend on the thread count, which other
    test modules may have changed."""
    torch.manual_seed(0)
    cfg = tiny_config(out, **(OPTS | opts))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(
            cfg,
            resume=resume,
            model=TinyNet(),
            dataset=RandomClips(12),
            collate=collate,
            loss_fn=tiny_loss,
            progress=False,
            hooks=hooks,
        )
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The run never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    _train(out)
    return load_checkpoint(out / "last.pt")


def test_stop_signal_checkpoints_at_the_step_and_resumes_exactly(tmp_path, reference):
    """SIGUSR1 during step 8 (mid-epoch 2): step-8.pt is written at that boundary, TrainingStopped names it, and
    --resume of the folder finishes bit for bit like the run never stopped."""
    send = AtStep(8, lambda loop: os.kill(os.getpid(), signal.SIGUSR1))
    previous = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(TrainingStopped) as stopped:
        _train(tmp_path, hooks=[send])
    assert stopped.value.step == 8 and stopped.value.signal_name == "SIGUSR1"
    assert stopped.value.checkpoint == tmp_path / "step-8.pt" and "--resume" in str(stopped.value)
    assert signal.getsignal(signal.SIGUSR1) is previous  # the handler is put back
    assert load_checkpoint(tmp_path / "step-8.pt")["epoch_step"] == 2
    assert not (tmp_path / "last.pt").exists()
    result = _train(tmp_path, resume=tmp_path)
    assert result.resumed_from == tmp_path / "step-8.pt"
    assert_same_training_state(load_checkpoint(tmp_path / "last.pt"), reference)
    assert not list(tmp_path.glob("step-*.pt"))  # a finished run keeps only the epoch checkpoints and last.pt


def test_periodic_step_checkpoints_resume_exactly(tmp_path, reference):
    """train.checkpoint_every_steps=2: step-2, step-4, step-8 (step 6 ends an epoch: checkpoint-1.pt); the two newest
    are kept. A crash after step 9 resumes from step-8 (auto) and finishes like the reference."""
    with pytest.raises(Crash):
        _train(tmp_path, hooks=[AtStep(9, _crash)], checkpoint_every_steps=2)
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["checkpoint-1.pt", "step-4.pt", "step-8.pt"]
    result = _train(tmp_path, resume="auto", checkpoint_every_steps=2)
    assert result.resumed_from == tmp_path / "step-8.pt"  # any checkpoint resumes exactly: say which one was taken
    assert_same_training_state(load_checkpoint(tmp_path / "last.pt"), reference)


def test_resume_from_an_earlier_checkpoint_with_a_lower_lr(tmp_path):
    """A crash after step 13 left step-8 and step-10 (every 2 steps; steps 6 and 12 end epochs, checkpoint-1 and -2).
    Resumed from checkpoint-1.pt with train.lr lowered to 0.001 and stopped at step 7: step-7.pt is written, kept and
    named; the crashed run's step files are gone and its checkpoint-2.pt moved aside; --resume auto then starts from
    step-7.pt and trains at the new lr to the end."""
    with pytest.raises(Crash):
        _train(tmp_path, hooks=[AtStep(13, _crash)], checkpoint_every_steps=2)
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == ["checkpoint-1.pt", "checkpoint-2.pt", "step-10.pt", "step-8.pt"]
    with warnings.catch_warnings(record=True) as caught, pytest.raises(TrainingStopped) as stopped:
        warnings.simplefilter("always")
        _train(tmp_path, resume=tmp_path / "checkpoint-1.pt", hooks=[AtStep(7, _sigusr1)], checkpoint_every_steps=2, lr=0.001)  # fmt: skip
    assert [str(w.message) for w in caught if w.category is ResumeSettingsWarning and "train.lr 0.01 -> 0.001" in str(w.message)]  # fmt: skip
    assert stopped.value.checkpoint == tmp_path / "step-7.pt" and stopped.value.checkpoint.is_file()
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint-1.pt", "step-7.pt"]
    assert (tmp_path / "superseded-at-step-6" / "checkpoint-2.pt").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeSettingsWarning)  # step-7.pt already holds lr 0.001
        result = _train(tmp_path, resume="auto", checkpoint_every_steps=2, lr=0.001)
    assert result.resumed_from == tmp_path / "step-7.pt"
    # the lr each step ran with: warm-up 2 steps, then cosine over the 16 others, times the sqrt rule's sqrt(2)
    # (global batch 2, train.lr_batch 1); the log row of step s holds the lr after s scheduler steps
    for row in result.history[2:]:
        s = row["step"]
        base = 0.01 if s <= 6 else 0.001
        assert row["lr"] == pytest.approx(base * 2**0.5 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 16)), abs=1e-12), s


def test_corrupted_newest_checkpoint_falls_back(tmp_path, reference):
    """The newest checkpoint truncated, or one byte of it changed: --resume FOLDER warns naming it and the one
    used instead (checkpoint-1.pt), and the run still ends exactly like the reference. The folders are copies
    (new modification times): the order comes from the names."""
    with pytest.raises(Crash):
        _train(tmp_path / "crashed", hooks=[AtStep(9, _crash)], checkpoint_every_steps=4)
    for damage in ("truncate", "flip"):
        run = tmp_path / damage
        shutil.copytree(tmp_path / "crashed", run)
        newest = run / "step-8.pt"
        data = bytearray(newest.read_bytes())
        if damage == "truncate":
            newest.write_bytes(data[: len(data) // 2])
        else:  # a byte of the weights (the middle of the file may be a zip header's padding, which holds nothing)
            data[_middle_of_largest_member(newest)] ^= 0x40
            newest.write_bytes(bytes(data))
        (run / "step-4.pt").unlink()
        with pytest.warns(CheckpointFallbackWarning) as caught:
            result = _train(run, resume=run, checkpoint_every_steps=4)
        message = str(caught[0].message)
        assert "step-8.pt" in message and "checkpoint-1.pt" in message, message
        assert result.resumed_from == run / "checkpoint-1.pt"
        assert_same_training_state(load_checkpoint(run / "last.pt"), reference)


def _middle_of_largest_member(path: Path) -> int:
    """The file offset of the middle byte of the zip member with the most data."""
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.compress_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len + info.compress_size // 2


def test_no_usable_checkpoint_is_an_error(tmp_path):
    """A folder whose only checkpoint is garbage, or an empty folder, stops before any step (nothing is lost)."""
    (tmp_path / "checkpoint-1.pt").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="no usable checkpoint.*checkpoint-1.pt"):
        _train(tmp_path, resume=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _train(tmp_path / "run", resume=tmp_path / "empty")


def test_checkpoint_every_steps_range_is_checked():
    with pytest.raises(ConfigError, match="checkpoint_every_steps"):
        load_config(None, ["train.checkpoint_every_steps=0"])
    assert load_config(None, ["train.checkpoint_every_steps=500"]).train.checkpoint_every_steps == 500


def _child(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(HERE / "support" / "train_child.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)


@pytest.mark.slow  # two processes that each import torch: about 15 s on two cores
def test_sigterm_in_a_real_process_exits_75_and_resumes_exactly(tmp_path, reference):
    """A training process sent SIGTERM at step 11 exits with the documented code after writing step-11.pt; a new
    process resumes and ends bit for bit like the in-process reference run."""
    done = _child(str(tmp_path), "--signal-at", "11", "--signal", "TERM")
    assert done.returncode == EXIT_STOPPED, done.stderr[-2000:]
    assert "stopped by SIGTERM after step 11" in done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint-1.pt", "step-11.pt"]
    done = _child(str(tmp_path), "--resume", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from" in done.stdout and "step-11.pt" in done.stdout
    assert_same_training_state(load_checkpoint(tmp_path / "last.pt"), reference)


def test_train_help_documents_the_exit_code(capsys):
    from talmts.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "SIGTERM" in text and f"{EXIT_STOPPED} stopped by SIGTERM/SIGUSR1" in text


def test_cli_maps_a_stop_to_the_exit_code(tmp_path, monkeypatch, capsys):
    import talmts.engine.training.loop as engine_train
    from talmts.cli import main

    def stopped(cfg, **kwargs):
        raise TrainingStopped("SIGTERM", 3, 0, tmp_path / "step-3.pt")

    monkeypatch.setattr(engine_train, "train", stopped)
    assert main(["train", "demo", f"train.out_dir={tmp_path}"]) == EXIT_STOPPED
    assert "stopped by SIGTERM after step 3" in capsys.readouterr().err
