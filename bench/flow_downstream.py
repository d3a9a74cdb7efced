"""Does a flow stream care whose TV-L1 made its flow? The demo's flow stream trained on OpenCV's TV-L1 and on
talmts' TV-L1 in PyTorch, several seeds, each checkpoint evaluated on both test sets.

    python bench/flow_downstream.py OUT [--seeds 0 1 2] [--videos 200] [--parallel 2] [--train OVERRIDE ...]

1. the demo's synthetic dataset (``talmts demo``'s settings) in OUT/synth, once;
2. ``talmts prepare`` twice, ``--flow tvl1`` and ``--flow tvl1-torch`` (same fps and size as the demo), wall
   seconds of each (all cores, both on the CPU);
3. the flow stream of the demo config (8 epochs, from scratch) trained on each, one run per seed, ``--parallel`` runs
   at a time at one thread each;
4. every checkpoint evaluated on the test split prepared with each method: the diagonal says whether training on
   our flow reaches the same mAP, the off-diagonal whether a checkpoint accepts the other implementation's flow.

Prints a markdown table of the paper's columns (mAP % at tIoU 0.1..0.7, Avg{0.1:0.5}, Avg{0.3:0.7}), mean and sample
standard deviation over the seeds, then what testing each checkpoint on the other implementation's flow changes,
seed by seed (paired: the same checkpoint on both test sets).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

METHODS = ("tvl1", "tvl1-torch")


def talmts(*args: str, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as f:
        done = subprocess.run([sys.executable, "-m", "talmts", *args], stdout=f, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"talmts {' '.join(args)} failed (exit {done.returncode}); see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=2, help="training runs at a time (one thread each)")
    parser.add_argument("--train", nargs="*", default=[], help="extra train overrides, e.g. train.max_steps=3")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)

    from talmts.config import load_config, resolve_config_path
    from talmts.data.synth import generate_dataset
    from talmts.engine.commands.demo import DemoSettings, synth_settings

    gt = out / "synth" / "annotations.json"
    if not gt.is_file():
        generate_dataset(out / "synth", synth_settings(DemoSettings(out=out, videos=args.videos)), progress=False)
    demo = load_config(resolve_config_path("demo"), [])
    for method in METHODS:
        start = time.perf_counter()
        talmts(
            "prepare", str(out / "synth" / "videos"), str(out / f"prepared-{method}"),
            "--fps", str(demo.data.fps), "--size", str(demo.data.stored_size), "--flow", method, "--quiet",
            log=out / "logs" / f"prepare-{method}.log",
        )  # fmt: skip
        print(f"prepare --flow {method}: {time.perf_counter() - start:.1f} s wall", flush=True)

    def common(method: str) -> list[str]:
        return [f"data.root={out / f'prepared-{method}'}", f"data.annotations={gt}", "data.modality=flow"]

    def run(job: tuple[str, int]) -> None:
        method, seed = job
        run_dir = out / "runs" / f"{method}-s{seed}"
        if not (run_dir / "last.pt").is_file():
            talmts(
                "train", "demo", *common(method), f"train.seed={seed}", f"train.out_dir={run_dir}", *args.train, "--quiet",
                log=out / "logs" / f"train-{method}-s{seed}.log",
            )  # fmt: skip
        for test in METHODS:
            talmts(
                "eval", "demo", *common(test), "--checkpoint", str(run_dir / "last.pt"), "--quiet",
                "--out", str(run_dir / f"eval-{test}"),
                log=out / "logs" / f"eval-{method}-s{seed}-on-{test}.log",
            )  # fmt: skip
        print(f"trained on {method}, seed {seed}: evaluated", flush=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(run, [(m, s) for s in args.seeds for m in METHODS]))
    print(f"training and evaluation: {time.perf_counter() - start:.1f} s wall")

    from talmts.evaluation import EvalResult, summarize_runs

    def summary(method: str, test: str) -> dict:
        """Over the seeds, the metrics `talmts eval` wrote for checkpoints trained on ``method``, tested on ``test``."""
        paths = [out / "runs" / f"{method}-s{seed}" / f"eval-{test}" / "metrics.json" for seed in args.seeds]
        return summarize_runs([EvalResult.from_json(json.loads(p.read_text())) for p in paths])

    table = {(m, t): summary(m, t) for m in METHODS for t in METHODS}
    columns = table[METHODS[0], METHODS[0]]["columns"]
    print(f"\n| trained on | tested on | seeds | {' | '.join(columns)} |")
    print(f"|---|---|---|{'---|' * len(columns)}")
    for (method, test), runs in table.items():
        cells = [f"{100 * m:.1f} ± {100 * sd:.1f}" for m, sd in zip(runs["mean"], runs["std"])]
        print(f"| {method} | {test} | {len(args.seeds)} | {' | '.join(cells)} |")
    last = columns[-1]
    print(f"\n{last}, tested on the other flow minus tested on its own, per checkpoint (mean ± std over seeds):")
    for method, other in (METHODS, METHODS[::-1]):
        own, moved = (np.array(table[method, t]["runs"])[:, -1] for t in (method, other))
        diff = 100 * (moved - own)
        spread = f" ± {diff.std(ddof=1):.2f}" if len(diff) > 1 else ""
        print(f"trained on {method}: {diff.mean():+.2f}{spread} points")


if __name__ == "__main__":
    main()
