"""`talmts prepare` killed with SIGKILL at random moments, then rerun: the finished folder must equal a clean run's.

Writes a few small synthetic videos, prepares them once without interruption, then for each trial starts
``talmts prepare`` (a pool of workers), kills its whole process group with SIGKILL after a random delay (``--kills``
times per trial, each later kill aimed inside the next rerun), reruns the same command until it exits 0, and
compares every file of the folder (frames/, flow/, meta/, video_info.csv, prepare.json) byte for byte with the clean
run; a left-over temporary file counts as a failure. Prints a Markdown table.

    .venv/bin/python bench/bench_prepare_kills.py --trials 12 --kills 3   # the RELIABILITY row
    .venv/bin/python bench/bench_prepare_kills.py --trials 3 --kills 1   # quicker
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREPARE = ["--fps", "10", "--size", "40", "--flow", "dis", "--workers", "2", "--quiet"]


def prepare(videos: Path, out: Path) -> subprocess.Popen:
    """``talmts prepare`` in its own process group, so that a kill reaches its workers too."""
    cmd = [sys.executable, "-m", "talmts", "prepare", str(videos), str(out), *PREPARE]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL the process group after ``seconds`` unless it finished first; True when it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kills", type=int, default=2, help="kills aimed at each trial")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from talmts.data.synth import SynthConfig, generate_dataset

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="prepare-kills-"))
    cfg = SynthConfig(videos=args.videos, height=48, min_video_s=6.0, max_video_s=9.0, max_action_s=3.0)
    generate_dataset(work / "synth", cfg)
    videos = work / "synth" / "videos"

    start = time.perf_counter()
    clean = prepare(videos, work / "clean")
    if clean.wait() != 0:
        print("the clean run failed", file=sys.stderr)
        return 1
    clean_s = time.perf_counter() - start
    want = snapshot(work / "clean")

    rows, kills, identical = [], 0, 0
    for trial in range(args.trials):
        out = work / f"trial{trial}"
        killed = 0
        for _ in range(args.kills):
            killed += kill_after(prepare(videos, out), rng.uniform(0.05, 0.95) * clean_s)
        reruns = 0
        while prepare(videos, out).wait() != 0:
            reruns += 1
            if reruns > 5:
                break
        got = snapshot(out)
        temporaries = [k for k in got if ".tmp-" in k]
        same = got == want and not temporaries
        kills, identical = kills + killed, identical + same
        diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        rows.append((trial, killed, same, temporaries, diff[:3]))

    print(f"clean run: {clean_s:.1f} s for {args.videos} videos, {len(want)} files\n")
    print("| trial | kills | folder identical to the clean run | left-over temporaries | differing files |")
    print("|---:|---:|---|---|---|")
    for trial, killed, same, temporaries, diff in rows:
        print(f"| {trial} | {killed} | {'yes' if same else 'NO'} | {len(temporaries)} | {', '.join(diff) or '-'} |")
    print(f"\n{kills} kills over {args.trials} trials; {identical} of {args.trials} folders identical to the clean run")
    return 0 if identical == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
