"""Fuzz every reader with many mutated files (tests/support/fuzzing.py) and print a table: cases, accepted, typed errors
(TalmtsError subclasses) and untyped exceptions (bugs) per reader.

    .venv/bin/python bench/fuzz_readers.py --cases 10000          # the figure in docs/RELIABILITY.md
    .venv/bin/python bench/fuzz_readers.py --cases 200 --only config_yaml --show 3

Cases are drawn from ``random.Random(seed * 1_000_003 + case)``: a failing case is reproduced by its number.
Exit code 1 when any reader raised an untyped exception.
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.fuzzing import run_case, targets  # noqa: E402


def fuzz(target, cases: int, seed: int, folder: Path, show: int) -> dict:  # noqa: ANN001
    untyped: Counter = Counter()
    accepted = 0
    start = time.perf_counter()
    for case in range(cases):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        rng = random.Random(seed * 1_000_003 + case)
        error = run_case(target, folder, rng)
        if error is False:
            continue
        if error is True:
            accepted += 1
            continue
        frame = traceback.extract_tb(error.__traceback__)[-1]
        key = f"{type(error).__name__} at {Path(frame.filename).name}:{frame.lineno}"
        if untyped[key] < show:
            print(f"  {target.name} case {case}: {key}: {str(error)[:200]}", file=sys.stderr)
        untyped[key] += 1
    return {
        "cases": cases,
        "accepted": accepted,
        "untyped": sum(untyped.values()),
        "kinds": dict(untyped),
        "seconds": time.perf_counter() - start,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases per reader (10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="reader names (default: all)")
    parser.add_argument("--show", type=int, default=2, help="untyped exceptions printed per kind")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # readers warn about odd but usable files; this run counts exceptions
    # a reader that allocates without bound fails with MemoryError here instead of taking a shared machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    rows = []
    ram = "/dev/shm" if Path("/dev/shm").is_dir() else None  # in memory: the writers' fsync costs nothing there
    with tempfile.TemporaryDirectory(dir=ram) as tmp:
        for target in targets():
            if args.only and target.name not in args.only:
                continue
            result = fuzz(target, args.cases, args.seed, Path(tmp) / target.name, args.show)
            rows.append((target.name, result))
            print(f"{target.name}: {result['cases']} cases, {result['untyped']} untyped", file=sys.stderr, flush=True)
    print("| reader | cases | accepted | typed errors | untyped exceptions | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        typed = r["cases"] - r["accepted"] - r["untyped"]
        print(f"| {name} | {r['cases']} | {r['accepted']} | {typed} | {r['untyped']} | {r['seconds']:.0f} |")
    total = sum(r["untyped"] for _, r in rows)
    print(f"\n{sum(r['cases'] for _, r in rows)} cases, {total} untyped exceptions (seed {args.seed})")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
