"""The training loop: exact resume, NaN handling, logs, schedule, per-sample loss normalisation, EMA."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from support.engine_fixtures import RandomClips, TinyNet, assert_same_training_state, collate, tiny_config, tiny_loss
from talmts.config import load_config
from talmts.engine.checkpoint import averaged_weights, load_checkpoint, save_checkpoint
from talmts.engine.training.hooks import Hook
from talmts.engine.training.hooks.ema import ModelEMA
from talmts.engine.training.loop import NonFiniteLossError, lr_factor, per_sample_losses, train
from talmts.engine.training.resume import ResumeSettingsWarning


def _train(cfg, resume=None, loss_fn=tiny_loss, n=12):
    torch.manual_seed(0)  # the same initial weights in every run
    return train(
        cfg, resume=resume, model=TinyNet(), dataset=RandomClips(n), collate=collate, loss_fn=loss_fn, progress=False
    )


def _same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_exact(tmp_path):
    """2 epochs in one go == 1 epoch, then --resume for the second: bit for bit (model, EMA, optimiser)."""
    opts = {"batch_size": 2, "ema": 0.9, "warmup_steps": 3}
    full = _train(tiny_config(tmp_path / "full", epochs=2, **opts))
    _train(tiny_config(tmp_path / "half", epochs=1, **opts))
    cfg2 = tiny_config(tmp_path / "half", epochs=2, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeSettingsWarning)  # more epochs of a constant schedule: nothing changed
        resumed = _train(cfg2, resume=tmp_path / "half" / "checkpoint-1.pt")
    assert full.resumed_from is None and resumed.resumed_from == tmp_path / "half" / "checkpoint-1.pt"
    a = load_checkpoint(full.out_dir / "checkpoint-2.pt")
    b = load_checkpoint(resumed.out_dir / "checkpoint-2.pt")
    assert_same_training_state(a, b)
    assert (a["epoch"], a["step"]) == (b["epoch"], b["step"]) == (2, 12)
    assert [r["total"] for r in full.history] == [r["total"] for r in resumed.history]


def test_resume_mid_epoch_is_exact(tmp_path):
    """A run stopped by train.max_steps inside an epoch continues from last.pt as if never stopped."""
    full = _train(tiny_config(tmp_path / "full", epochs=2, batch_size=2))
    _train(tiny_config(tmp_path / "part", epochs=2, batch_size=2, max_steps=4))
    resumed = _train(tiny_config(tmp_path / "part", epochs=2, batch_size=2), resume=tmp_path / "part" / "last.pt")
    assert resumed.resumed_from == tmp_path / "part" / "last.pt"
    a = load_checkpoint(full.out_dir / "last.pt")
    b = load_checkpoint(resumed.out_dir / "last.pt")
    assert_same_training_state(a, b)
    assert [r["total"] for r in full.history] == [r["total"] for r in resumed.history]


def test_resume_with_loader_workers_is_exact_at_epoch_ends_only(tmp_path):
    """data.workers=2 (not persistent): workers start reseeded every epoch, so a resume from checkpoint-1 ends like
    the run never stopped; a resume mid-epoch does not (the workers' flip streams restart), which is what the
    comment on data.persistent_workers says."""

    def run(out, resume=None, **opts):
        cfg = tiny_config(out, epochs=2, batch_size=2, **opts)
        cfg.data.workers = 2
        return _train(cfg, resume=resume)

    full = run(tmp_path / "full")
    run(tmp_path / "epoch_end", max_steps=9)  # 6 steps an epoch: checkpoint-1 at step 6, last.pt at step 9
    shutil.copytree(tmp_path / "epoch_end", tmp_path / "mid_epoch")
    run(tmp_path / "epoch_end", resume=tmp_path / "epoch_end" / "checkpoint-1.pt")
    expected = load_checkpoint(full.out_dir / "last.pt")
    assert_same_training_state(load_checkpoint(tmp_path / "epoch_end" / "last.pt"), expected)
    mid = run(tmp_path / "mid_epoch", resume=tmp_path / "mid_epoch" / "last.pt")
    assert [r["total"] for r in mid.history[:9]] == [r["total"] for r in full.history[:9]]
    assert [r["total"] for r in mid.history[9:]] != [r["total"] for r in full.history[9:]]


def test_resume_with_a_changed_lr_applies_it_and_warns(tmp_path):
    """train.lr and train.weight_decay changed on resume: the checkpoint's optimiser keeps its moments but runs at the
    new values (it used to keep its own lr while config.yaml and the log said the new one), with one warning naming
    each key."""
    opts = {"batch_size": 2, "warmup_steps": 3}
    _train(tiny_config(tmp_path, epochs=1, **opts))
    cfg = tiny_config(tmp_path, epochs=2, lr=0.001, weight_decay=0.5, **opts)
    with pytest.warns(ResumeSettingsWarning, match=r"train\.lr 0\.01 -> 0\.001; train\.weight_decay 0\.001 -> 0\.5"):
        resumed = _train(cfg, resume=tmp_path / "checkpoint-1.pt")
    assert resumed.resumed_from == tmp_path / "checkpoint-1.pt"
    # 12 clips, batch 2: 6 steps an epoch; the warm-up (3 steps) is over by step 6. The sqrt rule scales train.lr
    # (tuned for train.lr_batch 1) to the global batch of 2: the first epoch ran at 0.01 * sqrt(2), the second at
    # 0.001 * sqrt(2).
    lrs = {r["step"]: r["lr"] for r in resumed.history}
    assert [lrs[s] for s in range(3, 7)] == pytest.approx([0.01 * 2**0.5] * 4)
    assert [lrs[s] for s in range(7, 13)] == pytest.approx([0.001 * 2**0.5] * 6)
    groups = load_checkpoint(tmp_path / "last.pt")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([0.001 * 2**0.5] * 2)
    assert [g["weight_decay"] for g in groups] == [0.5, 0.5]
    assert load_config(tmp_path / "config.yaml").train.lr == 0.001


def test_run_folder_outputs(tmp_path):
    """config.yaml, per-epoch checkpoints carrying config and classes, loss logs (JSON + CSV) and curves."""
    res = _train(tiny_config(tmp_path, epochs=2, batch_size=3))
    assert load_config(tmp_path / "config.yaml").train.batch_size == 3
    for name in ("checkpoint-1.pt", "checkpoint-2.pt", "last.pt", "losses.csv", "loss_curves.png"):
        assert (tmp_path / name).is_file(), name
    ck = load_checkpoint(tmp_path / "checkpoint-1.pt")
    assert ck["classes"] == ["a", "b"] and ck["in_channels"] == 3 and ck["epoch"] == 1 and ck["step"] == 4
    assert ck["config"]["train"]["batch_size"] == 3
    log = json.loads((tmp_path / "losses.json").read_text())
    assert len(log) == res.steps == 8
    assert {"step", "epoch", "total", "coarse_cls", "lr"} <= set(log[0])
    assert log[-1]["epoch"] == pytest.approx(2.0)
    lines = (tmp_path / "losses.csv").read_text().splitlines()
    assert len(lines) == 9 and lines[0].startswith("step,epoch,")
    assert (tmp_path / "tensorboard").is_dir()


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    """A NaN in one loss term stops the run naming the step and the term; checkpoint-1 stays as it was."""
    calls = {"n": 0}

    def poisoned(out, targets, cfg):
        calls["n"] += 1
        terms = tiny_loss(out, targets, cfg)
        if calls["n"] == 6:  # step 6 = the 2nd step of epoch 2 (4 steps an epoch)
            terms["refined_loc"] = terms["refined_loc"] * float("nan")
            terms["total"] = sum(v for k, v in terms.items() if k != "total")
        return terms

    _train(tiny_config(tmp_path, epochs=1, batch_size=3))
    before = load_checkpoint(tmp_path / "checkpoint-1.pt")
    with pytest.raises(NonFiniteLossError) as err:
        _train(tiny_config(tmp_path, epochs=3, batch_size=3), resume=tmp_path / "checkpoint-1.pt", loss_fn=poisoned)
    msg = str(err.value)
    assert "step 6" in msg and "refined_loc=nan" in msg and "checkpoint-1.pt is intact" in msg, msg
    assert "total=nan" in msg
    after = load_checkpoint(tmp_path / "checkpoint-1.pt")
    _same_state(before["model"], after["model"])
    assert not (tmp_path / "checkpoint-2.pt").exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_per_sample_losses_average_single_clip_losses():
    """Batch losses = mean of each clip's own losses (what makes P processes x b == 1 process x P*b)."""
    torch.manual_seed(0)
    net = TinyNet().eval()
    data = RandomClips(4, flip=False)
    items = [data[i] for i in range(4)]
    batch = collate(items)
    out = net(batch["clip"])
    together = per_sample_losses(out, batch["targets"], None, tiny_loss)
    for key in together:
        alone = [tiny_loss(net(it["clip"][None]), [it["targets"]], None)[key] for it in items]
        assert float(together[key]) == pytest.approx(float(sum(alone) / 4), rel=1e-5)


def test_lr_schedule():
    cfg = load_config(None, ["train.warmup_steps=10", "train.schedule=cosine"])
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.5)
    assert lr_factor(110, 110, cfg) == pytest.approx(0.0, abs=1e-12)
    const = load_config(None, [])
    assert {lr_factor(s, 100, const) for s in (0, 50, 99)} == {1.0}


def test_ema_matches_hand_computed_average():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = ModelEMA(net, decay=0.9)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)  # decay warm-up: min(0.9, 2 / 11)
    d = 2 / 11
    assert torch.allclose(ema.module.weight, d * w0 + (1 - d) * (w0 + 1.0))
    for _ in range(200):
        ema.update(net)
    assert torch.allclose(ema.module.weight, w0 + 1.0, atol=1e-6)
    assert ema.current_decay() == 0.9
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(net, 1.5)


def _first_step_moves(tmp_path, **train) -> torch.Tensor:
    """|w1 - w0| of every weight after one step of plain Adam (no weight decay) on the whole set."""
    opts = {"epochs": 1, "batch_size": 12, "lr": 1e-3, "lr_scaling": "none", "weight_decay": 0, **train}
    res = _train(tiny_config(tmp_path, **opts))
    assert res.steps == 1 and math.isfinite(res.history[0]["total"])
    torch.manual_seed(0)
    before = TinyNet().state_dict()
    after = load_checkpoint(tmp_path / "last.pt")["model"]
    return torch.cat([(after[k] - before[k]).abs().flatten() for k in before])


def test_grad_clip_bounds_the_update(tmp_path):
    """Adam's first step moves a weight by lr * g / (|g| + eps): at most lr. A clip bound far below Adam's eps
    (1e-8) shrinks every gradient element under eps, so the clipped update is a tiny fraction of lr; unclipped,
    the largest move is about lr. Both bounds would fail if grad_clip were ignored or applied after the step (1.001: float32 rounding)."""
    lr = 1e-3
    free = _first_step_moves(tmp_path / "free")
    assert float(free.max()) <= lr * 1.001 and float(free.max()) > 0.5 * lr
    clipped = _first_step_moves(tmp_path / "clipped", grad_clip=1e-12)
    assert float(clipped.max()) < 1e-3 * lr and float(clipped.max()) > 0
    loose = _first_step_moves(tmp_path / "loose", grad_clip=1e-3)  # still far above eps: about lr again
    assert lr * 0.5 < float(loose.max()) <= lr * 1.001


class _Keeper(Hook):
    """A hook whose state uses the loop's own key names: it must not overwrite the weights or the step."""

    name = "model"

    def state_dict(self) -> dict:
        return {"model": {"weight": torch.zeros(1)}, "step": -1}


def test_hook_state_has_its_own_namespace(tmp_path):
    res = train(
        tiny_config(tmp_path, epochs=1, batch_size=2, ema=0.9),
        model=TinyNet(),
        dataset=RandomClips(4),
        collate=collate,
        loss_fn=tiny_loss,
        hooks=[_Keeper()],
        progress=False,
    )
    state = load_checkpoint(res.out_dir / "last.pt")
    assert state["step"] == 2 and "backbone.weight" in state["model"]  # the loop's entries, untouched
    assert state["hooks"]["model"]["step"] == -1  # the hook's, under its name
    assert set(state["hooks"]) == {"ema", "loss_log", "validation", "model"}
    assert averaged_weights(state) is state["hooks"]["ema"]["weights"]


def _flattened(state: dict) -> dict:
    """A checkpoint in talmts 0.1's layout: the hooks' entries flat beside the loop's."""
    hooks = state.pop("hooks")
    return state | {"ema": hooks["ema"], "history": hooks["loss_log"]["history"]} | hooks["validation"]


def test_checkpoints_of_the_flat_layout_still_resume_exactly(tmp_path):
    """A run resumed from a 0.1-layout checkpoint (EMA and loss log flat) ends bit for bit as one never stopped."""
    opts = {"batch_size": 2, "ema": 0.9, "warmup_steps": 3}
    full = _train(tiny_config(tmp_path / "full", epochs=2, **opts))
    _train(tiny_config(tmp_path / "half", epochs=1, **opts))
    old = tmp_path / "old.pt"
    legacy = _flattened(load_checkpoint(tmp_path / "half" / "checkpoint-1.pt"))
    save_checkpoint(legacy, old)
    assert torch.equal(next(iter(averaged_weights(legacy).values())), next(iter(legacy["ema"]["weights"].values())))
    resumed = _train(tiny_config(tmp_path / "half", epochs=2, **opts), resume=old)
    assert_same_training_state(load_checkpoint(full.out_dir / "last.pt"), load_checkpoint(resumed.out_dir / "last.pt"))


def test_persistent_loader_workers_let_the_process_exit(tmp_path):
    """data.persistent_workers=true: the training process exits once training is done. Its workers ignore SIGTERM,
    so multiprocessing's exit handler (SIGTERM, then join) waited on workers still alive forever."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import torch
from support.engine_fixtures import RandomClips, TinyNet, collate, tiny_config, tiny_loss
from talmts.engine.training.loop import train
cfg = tiny_config({str(tmp_path)!r}, epochs=2, batch_size=2)
cfg.data.workers = 2
cfg.data.persistent_workers = True
result = train(cfg, model=TinyNet(), dataset=RandomClips(12), collate=collate, loss_fn=tiny_loss, progress=False)
print("steps", result.steps)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["steps", "12"]
