"""Each training hook alone, on a stand-in for the loop: when checkpoints are written and which one a run resumes
from, the stop signals, the loss log, the EMA hook and the NaN guard."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from talmts.engine.checkpoint import load_checkpoint, save_checkpoint
from talmts.engine.distributed import DistContext
from talmts.engine.training.hooks import (
    STOP_SIGNALS,
    Checkpointer,
    EMAHook,
    LossLog,
    NaNGuard,
    NonFiniteLossError,
    StopSignals,
    TrainingStopped,
)
from talmts.engine.training.resume import open_resume, resume_candidates, resume_target, supersede_newer


def _loop(out: Path, steps_per_epoch: int = 5, total_steps: int = 20) -> SimpleNamespace:
    """What hooks read from the loop: counters, the run folder, the process context and state()."""
    loop = SimpleNamespace(out=out, ctx=DistContext(), steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    loop.epoch = loop.step = loop.epoch_step = 0
    loop.resumed_from = None
    loop.model = torch.nn.Linear(2, 1)
    loop.state = lambda: {"model": loop.model.state_dict(), "config": {}, "step": loop.step, "epoch": loop.epoch}
    return loop


def _advance(loop: SimpleNamespace, hook, steps: int) -> None:
    for _ in range(steps):
        loop.step += 1
        loop.epoch_step += 1
        hook.after_step(loop, {"total": 1.0})
        if loop.epoch_step == loop.steps_per_epoch:
            loop.epoch, loop.epoch_step = loop.epoch + 1, 0
            hook.after_epoch(loop)


def test_checkpointer_schedule_and_retention(tmp_path):
    """Every 3 steps with 5 steps an epoch: step-3, (5: epoch end), step-6, step-9, (10), step-12; the two newest
    step files stay; the end writes last.pt and removes them."""
    loop, saver = _loop(tmp_path), Checkpointer(every_steps=3)
    saver.start(loop)
    _advance(loop, saver, 13)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "checkpoint-1.pt",
        "checkpoint-2.pt",
        "step-12.pt",
        "step-9.pt",
    ]
    saver.after_run(loop)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint-1.pt", "checkpoint-2.pt", "last.pt"]
    assert saver.last == tmp_path / "last.pt"


def test_a_resumed_run_owns_the_folder_beyond_its_start(tmp_path):
    """A crash at step 13 left step-8 and step-10 (beyond it checkpoint-2, and a last.pt and best.pt of a finished
    run). Resumed from checkpoint-1 (step 5), the run removes the newer step files and moves the later checkpoints
    aside when it starts; best.pt of step 5 stays. Its step-6 and step-7 are then the two files kept, and
    ``--resume auto`` takes its own step-7, not the stale step-10."""
    for name, step in [("checkpoint-1.pt", 5), ("checkpoint-2.pt", 10), ("step-8.pt", 8), ("step-10.pt", 10)]:
        save_checkpoint({"model": {}, "config": {}, "step": step, "epoch": step // 5}, tmp_path / name)
    save_checkpoint({"model": {}, "config": {}, "step": 20, "epoch": 4}, tmp_path / "last.pt")
    save_checkpoint({"model": {}, "config": {}, "step": 5, "epoch": 1}, tmp_path / "best.pt")
    loop, saver = _loop(tmp_path), Checkpointer(every_steps=1)
    loop.step, loop.epoch, loop.resumed_from = 5, 1, tmp_path / "checkpoint-1.pt"
    saver.start(loop)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["best.pt", "checkpoint-1.pt"]
    aside = tmp_path / "superseded-at-step-5"
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoint-2.pt", "last.pt"]  # moved, not lost
    _advance(loop, saver, 2)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-6.pt", "step-7.pt"]
    path, state = open_resume("auto", tmp_path, 5)
    assert path.name == "step-7.pt" and state["step"] == 7


def test_checkpointer_keeps_the_newest_epoch_files(tmp_path):
    """train.keep_checkpoints=2: after 4 epochs only checkpoint-3 and checkpoint-4 are left; last.pt and best.pt
    are never removed."""
    loop, saver = _loop(tmp_path), Checkpointer(keep_epochs=2)
    (tmp_path / "best.pt").write_bytes(b"")
    saver.start(loop)
    _advance(loop, saver, 10)
    kept = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert kept == ["best.pt", "checkpoint-1.pt", "checkpoint-2.pt"]
    _advance(loop, saver, 10)
    saver.after_run(loop)
    kept = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert kept == ["best.pt", "checkpoint-3.pt", "checkpoint-4.pt", "last.pt"]


def test_time_left_is_the_mean_epoch_times_the_epochs_left(monkeypatch, caplog):
    from talmts.engine.training.hooks import time_left

    now = [100.0]
    monkeypatch.setattr(time_left.time, "perf_counter", lambda: now[0])
    loop = _loop(Path("."), steps_per_epoch=5, total_steps=50)  # 10 epochs
    loop.cfg = SimpleNamespace(train=SimpleNamespace(epochs=10))
    hook = time_left.TimeLeft(spent_before=30.0, after_s=5.0)
    hook.start(loop)
    with caplog.at_level("INFO", logger=time_left.__name__):
        for epoch, t in ((1, 112.0), (2, 120.0)):  # 12 s, then 8 s: 10 s per epoch
            now[0], loop.epoch = t, epoch
            hook.after_epoch(loop)
    assert caplog.messages[-1] == "epoch 2/10: 10 s per epoch; about 85 s left (50 s spent)"  # 8 x 10 + 5


def test_resume_candidates_order_by_step_not_by_name(tmp_path):
    for name in ("checkpoint-1.pt", "checkpoint-2.pt", "step-7.pt", "step-12.pt", "step-10.pt", "last.pt", "best.pt"):
        (tmp_path / name).write_bytes(b"")
    # 5 steps an epoch: checkpoint-2 was written at step 10, before step-10.pt's twin of the same step
    names = [p.name for p in resume_candidates(tmp_path, 5)]
    assert names == ["step-12.pt", "checkpoint-2.pt", "step-10.pt", "step-7.pt", "checkpoint-1.pt"]


def test_open_resume_auto_and_torchrun_restarts(tmp_path, monkeypatch):
    assert open_resume("auto", tmp_path, 5) is None  # nothing yet: a fresh start
    save_checkpoint({"model": {}, "config": {}, "step": 3, "epoch": 0}, tmp_path / "step-3.pt")
    path, state = open_resume("auto", tmp_path, 5)
    assert path.name == "step-3.pt" and state["step"] == 3
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    assert resume_target(None) is None
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    assert resume_target(None) is None and resume_target("x.pt") == "x.pt"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert resume_target(None) == "auto" and resume_target("x.pt") == "x.pt"


def test_stop_signal_is_acted_on_at_the_step_boundary(tmp_path):
    """The handler only records the signal; the next after_step writes step-<step>.pt and raises."""
    loop, signals = _loop(tmp_path), StopSignals(STOP_SIGNALS)
    saver = Checkpointer(signals=signals)
    before = signal.getsignal(signal.SIGTERM)
    saver.start(loop)
    try:
        _advance(loop, saver, 2)
        os.kill(os.getpid(), signal.SIGTERM)  # would end this test process without the handler
        assert signals.received == "SIGTERM" and not list(tmp_path.glob("step-*.pt"))
        with pytest.raises(TrainingStopped, match="SIGTERM after step 3"):
            _advance(loop, saver, 1)
        assert (tmp_path / "step-3.pt").is_file()
    finally:
        saver.close(loop)
    assert signal.getsignal(signal.SIGTERM) is before


def test_loss_log_keeps_rows_and_resumes_them(tmp_path):
    loop = _loop(tmp_path)
    log = LossLog(tmp_path, "rgb", log_every=1, is_main=True)
    log.start(loop)
    for i in range(3):
        loop.step = i + 1
        log.after_step(loop, {"step": i + 1, "epoch": 0.1 * (i + 1), "total": float(i), "lr": 0.1, "seconds": 0.0})
    log.after_epoch(loop)
    assert (tmp_path / "losses.csv").read_text().splitlines()[0] == "step,epoch,total,lr,seconds"
    again = LossLog(tmp_path, "rgb", log_every=1, is_main=False)
    again.load_state_dict(log.state_dict())
    assert again.history == log.history and again.history is not log.history
    log.close(loop)
    assert (tmp_path / "loss_curves.png").is_file() and (tmp_path / "tensorboard").is_dir()


def test_ema_hook_follows_the_model_and_resumes():
    """One update after the weights jumped to 1: ema = d * w0 + (1 - d) * 1, d = min(decay, 2 / 11) (warm-up)."""
    loop = _loop(Path("."))
    hook = EMAHook(loop.model, decay=0.5)
    w0 = loop.model.weight.detach().clone()
    with torch.no_grad():
        loop.model.weight.fill_(1.0)
    hook.after_step(loop, {})
    d = 2 / 11
    assert torch.allclose(hook.module.weight, d * w0 + (1 - d) * torch.ones_like(w0))
    other = EMAHook(torch.nn.Linear(2, 1), decay=0.5)
    other.load_state_dict(hook.state_dict())
    assert torch.equal(other.module.weight, hook.module.weight) and other.ema.updates == 1


def test_nan_guard_names_the_term_and_the_last_checkpoint(tmp_path):
    loop = _loop(tmp_path)
    save_checkpoint(loop.state(), tmp_path / "checkpoint-1.pt")
    loop.step, loop.epoch = 7, 1
    guard = NaNGuard()
    guard.before_update(loop, {"cls": torch.tensor(1.0), "total": torch.tensor(1.0)})  # finite: nothing happens
    with pytest.raises(NonFiniteLossError, match=r"step 8 \(epoch 2\): loc=inf.*checkpoint-1.pt is intact"):
        guard.before_update(loop, {"loc": torch.tensor(float("inf")), "total": torch.tensor(1.0)})


def test_a_second_rewind_to_the_same_step_keeps_what_the_first_moved_aside(tmp_path):
    """Rewound twice to step 5 (two abandoned runs after it): each one's later files are kept, none overwritten."""

    def abandoned_run(lr: float) -> None:
        for name, step in [("checkpoint-2.pt", 10), ("last.pt", 12)]:
            save_checkpoint({"model": {}, "config": {"lr": lr}, "step": step, "epoch": 2}, tmp_path / name)

    abandoned_run(0.1)
    first = supersede_newer(tmp_path, 5, 1, None)
    abandoned_run(0.2)
    second = supersede_newer(tmp_path, 5, 1, None)
    assert len(first) == len(second) == 2
    moved = sorted(tmp_path.glob("superseded-at-step-5*/*.pt"))
    assert [p.name for p in moved] == ["checkpoint-2.pt", "last.pt", "checkpoint-2.pt", "last.pt"]
    lrs = sorted(load_checkpoint(p)["config"]["lr"] for p in moved)
    assert lrs == [0.1, 0.1, 0.2, 0.2]  # both runs' files, none overwritten
