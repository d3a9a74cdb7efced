"""Distributed training: 2 gloo processes on CPU equal one process with the same global batch."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from support.engine_fixtures import RandomClips, TinyNet, assert_same_training_state, ddp_worker
from talmts.engine.checkpoint import load_checkpoint
from talmts.engine.distributed import DistContext, ResumableSampler, scaled_lr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    """DDP (2 x batch 2) after 3 steps == 1 process (batch 4): same clips per step, averaged gradients."""
    mp.spawn(ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), 3, 2), nprocs=2, join=True)
    ddp_worker(0, 1, _free_port(), str(tmp_path / "one"), 3, 4)
    a = load_checkpoint(tmp_path / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "one" / "last.pt")
    assert a["step"] == b["step"] == 3
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-6), k
    # not vacuous: training moved the weights (lr 0.01) far more than the tolerance
    torch.manual_seed(0)
    init = TinyNet(dropout=0.0).state_dict()
    assert max(float((init[k] - b["model"][k]).abs().max()) for k in init) > 1e-2
    assert [round(r["total"], 4) for r in a["hooks"]["loss_log"]["history"]] == [
        round(r["total"], 4) for r in b["hooks"]["loss_log"]["history"]
    ]


def test_sampler_shards_cover_the_single_process_batches():
    """Process r takes positions r, r + P, ... of one (seed, epoch) order: per step the union of the shards'
    batches is exactly the one-process batch of P times the size."""
    data = RandomClips(10)
    one = ResumableSampler(data, DistContext(0, 1), seed=5)
    shards = [ResumableSampler(data, DistContext(r, 2), seed=5) for r in range(2)]
    for s in [one, *shards]:
        s.set_epoch(3)
    order = list(one)
    parts = [list(s) for s in shards]
    b = 2
    for step in range(len(parts[0]) // b):
        union = sorted(parts[0][step * b : (step + 1) * b] + parts[1][step * b : (step + 1) * b])
        assert union == sorted(order[step * 2 * b : (step + 1) * 2 * b])
    one.set_epoch(4)
    assert list(one) != order  # a new epoch, a new order


def test_sampler_skips_seen_samples_once():
    s = ResumableSampler(RandomClips(8), DistContext(0, 1), seed=1)
    full = list(s)
    s.set_start(3)
    assert len(s) == 5 and list(s) == full[3:]
    assert list(s) == full  # the skip applies to one pass only


def test_learning_rate_rule():
    assert scaled_lr(1e-4, 16, 1, "sqrt") == pytest.approx(4e-4)
    assert scaled_lr(1e-4, 16, 4, "linear") == pytest.approx(4e-4)
    assert scaled_lr(1e-4, 16, 4, "none") == 1e-4
    with pytest.raises(ValueError, match="lr_scaling"):
        scaled_lr(1e-4, 2, 1, "cubic")


@pytest.mark.slow
def test_torchrun_trains_the_real_network(tmp_path):
    """`torchrun --nproc_per_node 2 -m talmts train`: the real TAL-MTS under DDP/gloo (every parameter takes part
    in the loss, or DDP would stop), one report, one run folder."""
    import os
    import subprocess
    import sys

    from talmts.data.prepare import PrepareOptions, prepare_dataset
    from talmts.data.synth import SynthConfig, generate_dataset

    synth = SynthConfig(videos=3, height=48, min_video_s=5.0, max_video_s=6.0, max_action_s=2.5, splits=(2, 0, 1))
    generate_dataset(tmp_path / "synth", synth)
    assert prepare_dataset(tmp_path / "synth" / "videos", tmp_path / "prep", PrepareOptions(5.0, 40, "dis")).ok
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "talmts",
        "train",
        "demo",
        f"data.root={tmp_path / 'prep'}",
        f"data.annotations={tmp_path / 'synth' / 'annotations.json'}",
        f"train.out_dir={tmp_path / 'run'}",
        "data.clip_frames=32",
        "data.frame_size=32",
        "data.stored_size=40",
        "data.train_stride=4",
        "model.levels=3",
        "train.epochs=4",
        "train.max_steps=2",
        "train.batch_size=1",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 2 steps") == 1, done.stdout + done.stderr[-2000:]
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["step"] == 2 and len(ck["hooks"]["loss_log"]["history"]) == 2


def _torchrun(out, *args: str, restarts: int = 0) -> subprocess.CompletedProcess:  # noqa: ANN001
    here = Path(__file__).parent
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", str(restarts)]
    cmd += ["--master_port", str(_free_port()), str(here / "support" / "train_child.py"), str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=here)


@pytest.mark.slow  # two torchrun jobs of two processes each, one of them started twice: about a minute
def test_torchrun_restarts_a_killed_rank_from_the_last_checkpoint(tmp_path):
    """`torchrun --max-restarts 1`: rank 1 SIGKILLed in the middle of step 5 (of 9; step checkpoints every 2) makes
    torchrun restart both workers, which resume from step-4.pt in their out_dir by themselves and end with exactly
    the weights, EMA, optimiser and RNG states of a job never interrupted."""
    every = "train.checkpoint_every_steps=2"
    clean = _torchrun(tmp_path / "clean", every)
    assert clean.returncode == 0, clean.stderr[-3000:]
    killed = _torchrun(tmp_path / "killed", every, "--kill-at", "5", "--kill-rank", "1", restarts=1)
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert "resumed from" in killed.stdout and "step-4.pt" in killed.stdout, killed.stdout[-2000:]
    a = load_checkpoint(tmp_path / "clean" / "last.pt")
    b = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert a["step"] == b["step"] == 9
    assert_same_training_state(a, b)
