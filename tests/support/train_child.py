"""A tiny training run as its own process, for the stop/resume and torchrun fault tests and bench/bench_resume.py.

    python tests/support/train_child.py OUT_DIR [--resume X] [--signal-at STEP --signal TERM|USR1]
                                        [--kill-at STEP --kill-rank R] [--announce] [train.key=value ...]

Trains engine_fixtures.TinyNet on RandomClips (dropout and random flips draw from the global RNGs, so an exact
resume must restore them) and exits as ``talmts train`` does: 0 done, 75 stopped by a signal. ``--signal-at``
sends the signal to this process right after that step (deterministic); ``--kill-at`` SIGKILLs rank R in the
middle of that step, on torchrun's first attempt only; ``--announce`` prints "step N" after every step.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/ holds the support package

from support.engine_fixtures import RandomClips, TinyNet, collate, tiny_config, tiny_loss
from talmts.engine.training.hooks import Hook
from talmts.engine.training.loop import EXIT_STOPPED, TrainingStopped, train


class Faults(Hook):
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        self.rank = int(os.environ.get("RANK", "0"))

    def before_update(self, loop, losses) -> None:
        a = self.args
        if a.kill_at == loop.step + 1 and self.rank == a.kill_rank and self.first_attempt:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-step: after the forward pass, before the gradients meet

    def after_step(self, loop, row) -> None:
        if self.args.announce:
            print(f"step {loop.step}", flush=True)
        if self.args.signal_at == loop.step:
            os.kill(os.getpid(), getattr(signal, f"SIG{self.args.signal}"))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # as `talmts train` shows it
    p = argparse.ArgumentParser()
    p.add_argument("out_dir")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--resume")
    p.add_argument("--signal-at", type=int)
    p.add_argument("--signal", default="TERM", choices=["TERM", "USR1"])
    p.add_argument("--kill-at", type=int)
    p.add_argument("--kill-rank", type=int, default=1)
    p.add_argument("--announce", action="store_true")
    p.add_argument("--clips", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(1)  # as tests/test_training_faults.py: the same sums as its in-process runs
    defaults = {"epochs": 3, "batch_size": 2, "ema": 0.9, "warmup_steps": 2, "schedule": "cosine"}
    cfg = tiny_config(args.out_dir, **defaults)
    if args.overrides:
        from talmts.config import load_config

        cfg = load_config(None, [f"{k}={v}" for k, v in _flat(cfg.to_dict())] + args.overrides)
    torch.manual_seed(0)  # the same initial weights in every run
    try:
        train(
            cfg,
            resume=args.resume,
            progress=False,
            model=TinyNet(),
            dataset=RandomClips(args.clips),
            collate=collate,
            loss_fn=tiny_loss,
            hooks=[Faults(args)],
        )
    except TrainingStopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _flat(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    import json

    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _flat(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", json.dumps(v)))
    return out


if __name__ == "__main__":
    sys.exit(main())
