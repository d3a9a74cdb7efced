"""Stop training with a signal at random steps, resume it, and check that it ends bit for bit like a run never
stopped; optionally SIGKILL a torchrun rank at random steps and check the restarted job the same way.

Each trial runs tests/support/train_child.py (a tiny network with dropout, random flips, EMA, warm-up and a cosine
schedule: 18 steps over 3 epochs) as its own process, reads the "step N" line it prints after every step and
sends SIGTERM or SIGUSR1 (chosen at random) from outside once the trial's next random step has been seen. The
child writes a checkpoint at the next step boundary and exits with 75; the trial starts it again with --resume,
until it finishes. The final checkpoint must equal the reference run's in every tensor (torch.equal): weights,
EMA, optimiser, scheduler, RNG states, and the loss log.

    python bench/bench_resume.py [--trials 6] [--stops 4] [--rank-kills 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from talmts.engine.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
CHILD = REPO / "tests" / "support" / "train_child.py"
STEPS = 18  # the child's default run: 12 clips, batch 2, 3 epochs
STOPPED = 75


def differences(a: object, b: object, where: str = "") -> list[str]:
    """Where two checkpoint trees differ (tensors by torch.equal, the rest by ==)."""
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and torch.equal(a, b) else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [where]
        return [d for k in a for d in differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list | tuple):
        if not isinstance(b, list | tuple) or len(a) != len(b):
            return [where]
        return [d for i, (u, v) in enumerate(zip(a, b)) for d in differences(u, v, f"{where}[{i}]")]
    return [] if a == b else [where]


def compare(run: Path, reference: dict) -> list[str]:
    state = load_checkpoint(run / "last.pt")
    parts = ("model", "optimizer", "scheduler", "rng", "epoch", "step", "epoch_step")
    found = [d for p in parts for d in differences(state[p], reference[p], p)]
    found += differences(state["hooks"].get("ema"), reference["hooks"].get("ema"), "hooks.ema")
    if [r["total"] for r in state["hooks"]["loss_log"]["history"]] != [
        r["total"] for r in reference["hooks"]["loss_log"]["history"]
    ]:
        found.append("history")
    return found


def run_child(out: Path, resume: bool, stop_after: int | None, signum: int) -> tuple[int, int | None]:
    """One child process; sends ``signum`` once it has printed "step stop_after". Returns (exit code, last step
    it printed)."""
    cmd = [sys.executable, str(CHILD), str(out), "--announce", *(["--resume", "auto"] if resume else [])]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=CHILD.parent)
    last, lines = None, []
    assert child.stdout is not None
    for line in child.stdout:
        lines.append(line)
        if line.startswith("step "):
            last = int(line.split()[1])
            if stop_after is not None and last == stop_after:
                child.send_signal(signum)  # a child that has just exited is not yet reaped: no error
                stop_after = None
    code = child.wait()
    if code not in (0, STOPPED):
        raise RuntimeError(f"child failed with {code}: {''.join(lines)[-2000:]}")
    return code, last


def signal_trials(args: argparse.Namespace, rng: random.Random, work: Path, reference: dict) -> list[dict]:
    rows = []
    for trial in range(args.trials):
        out = work / f"trial-{trial}"
        targets = sorted(rng.sample(range(1, STEPS - 1), args.stops))
        stops, resumes, missed, started = [], 0, 0, time.perf_counter()
        resume = False
        while True:
            target = next((t for t in targets if not stops or t > stops[-1][1]), None)
            signum = rng.choice([signal.SIGTERM, signal.SIGUSR1])
            code, last = run_child(out, resume, target, signum)
            if code == 0:
                missed += target is not None  # finished before the signal was handled
                break
            stops.append((signal.Signals(signum).name.removeprefix("SIG"), last or 0))
            resumes += 1
            resume = True
        diffs = compare(out, reference)
        rows.append(
            {
                "kind": "signal",
                "trial": trial,
                "events": " ".join(f"{name}@{step}" for name, step in stops),
                "resumes": resumes,
                "missed": missed,
                "exact": not diffs,
                "diff": ",".join(diffs[:3]),
                "seconds": time.perf_counter() - started,
            }
        )
        print(_row(rows[-1]), flush=True)
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, extra: list[str], restarts: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", str(restarts)]
    cmd += ["--master_port", str(_free_port()), str(CHILD), str(out), "train.checkpoint_every_steps=2", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=CHILD.parent, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun failed with {done.returncode}: {done.stderr[-2000:]}")
    return done


def rank_kill_trials(args: argparse.Namespace, rng: random.Random, work: Path) -> list[dict]:
    """2 gloo processes, 9 steps (3 an epoch), step checkpoints every 2; one rank SIGKILLed mid-step."""
    torchrun(work / "ddp-reference", [], 0)
    reference = load_checkpoint(work / "ddp-reference" / "last.pt")
    rows = []
    for trial in range(args.rank_kills):
        step, rank = rng.randint(1, 9), rng.randint(0, 1)
        started = time.perf_counter()
        out = work / f"kill-{trial}"
        done = torchrun(out, ["--kill-at", str(step), "--kill-rank", str(rank)], 1)
        diffs = compare(out, reference)
        rows.append(
            {
                "kind": "rank kill",
                "trial": trial,
                "events": f"KILL rank {rank} in step {step}",
                "resumes": done.stdout.count("resumed from"),
                "missed": 0,
                "exact": not diffs,
                "diff": ",".join(diffs[:3]),
                "seconds": time.perf_counter() - started,
            }
        )
        print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    exact = "yes" if r["exact"] else f"NO ({r['diff']})"
    return f"| {r['kind']} | {r['trial']} | {r['events']} | {r['resumes']} | {r['missed']} | {exact} | {r['seconds']:.0f} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=6, help="runs stopped by signals")
    p.add_argument("--stops", type=int, default=4, help="signals aimed at each run (at distinct random steps)")
    p.add_argument("--rank-kills", type=int, default=0, help="torchrun jobs with one rank SIGKILLed (~1 min each)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the child trains on one thread
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        work = Path(tmp)
        code, _ = run_child(work / "reference", False, None, 0)
        assert code == 0
        reference = load_checkpoint(work / "reference" / "last.pt")
        print("| kind | trial | events (signal@step it stopped after) | resumes | missed | bit-exact | s |")
        print("|---|---|---|---|---|---|---|")
        rows = signal_trials(args, rng, work, reference) + rank_kill_trials(args, rng, work)
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        resumes = sum(r["resumes"] for r in mine)
        exact = sum(r["exact"] for r in mine)
        print(f"{kind}: {len(mine)} runs, {resumes} resumes, {exact}/{len(mine)} runs bit-exact")
    return 0 if all(r["exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
