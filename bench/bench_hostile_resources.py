"""Time and peak memory of talmts on the resource probes of the hostile-input corpus (tests/support/hostile.py).

The large probe: `talmts evaluate` of a file of 5,000,000 detections (100,000 videos, 200 classes, 50 each) against
1,000,000 ground truths (10 per video), both in the ActivityNet layout and generated here (numbers rounded as
detectors write them). Its peak memory is compared with the two files' size. The small probes: inputs of a few
hundred bytes that once took minutes or gigabytes (a YAML alias bomb as a file and as an override, a video that
declares 1/65535 fps to prepare and one of 1/1000 fps to detect, a JSON integer of 5,000 digits, an absurd network
size). Every probe runs as a child process (``python -m talmts ...``); seconds are wall clock, the peak RSS is the
child's own high-water mark (``VmHWM``, which it reports on exit). ``--baseline-src`` runs the same probes with another source tree first (e.g. ``git archive`` of an
earlier commit), side by side, under an address-space limit so that a bomb fails instead of taking the machine.

    .venv/bin/python bench/bench_hostile_resources.py                                   # the defaults
    .venv/bin/python bench/bench_hostile_resources.py --detections 5e5 --ground-truths 1e5  # a tenth
    .venv/bin/python bench/bench_hostile_resources.py --baseline-src /tmp/old/src --work /tmp/probes
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.hostile import BOMB, CORPUS, write_declared_rate_video  # noqa: E402
from support.tiny_model import tiny_checkpoint  # noqa: E402
from support.videogen import write_video  # noqa: E402

CLASSES = 200


def write_probe_files(folder: Path, detections: int, ground_truths: int, videos: int, seed: int = 0) -> None:
    """gt.json and det.json in the ActivityNet layouts, written video by video (never held whole)."""
    rng = np.random.default_rng(seed)
    names = [f"action_{c:03d}" for c in range(CLASSES)]
    per_gt, per_det = ground_truths // videos, detections // videos
    with open(folder / "gt.json", "w") as f:
        f.write('{"version": "probe", "database": {')
        for v in range(videos):
            start, length = rng.uniform(0, 590, per_gt).round(2), rng.uniform(0.5, 10, per_gt).round(2)
            label = rng.integers(0, CLASSES, per_gt)
            anns = ",".join(
                f'{{"segment": [{s}, {s + n:.2f}], "label": "{names[c]}"}}' for s, n, c in zip(start, length, label)
            )
            f.write(
                ("," if v else "")
                + f'"v_{v:07d}": {{"subset": "validation", "duration": 600.0, "annotations": [{anns}]}}'
            )
        f.write("}}")
    with open(folder / "det.json", "w") as f:
        f.write('{"version": "probe", "results": {')
        for v in range(videos):
            start, length = rng.uniform(0, 590, per_det).round(2), rng.uniform(0.5, 10, per_det).round(2)
            label, score = rng.integers(0, CLASSES, per_det), rng.random(per_det).round(6)
            items = ",".join(
                f'{{"label": "{names[c]}", "score": {p}, "segment": [{s}, {s + n:.2f}]}}'
                for s, n, c, p in zip(start, length, label, score)
            )
            f.write(("," if v else "") + f'"v_{v:07d}": [{items}]')
        f.write('}, "external_data": {}}')


# Runs talmts and, on the way out, writes the process's own peak RSS (VmHWM, KiB) into the file named first: the
# peak of python alone, where os.wait4's ru_maxrss would also count this process's memory, copied at fork
PEAK = """
import atexit, runpy, sys
report = sys.argv.pop(1)
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(report, "w").write(line.split()[1])
atexit.register(peak)
runpy.run_module("talmts", run_name="__main__", alter_sys=True)
"""


def run(argv: list[str], cwd: Path, src: str | None, memory_gib: float, timeout: float) -> dict:
    """One child ``python -m talmts ARGV`` under an address-space limit: exit code, seconds, its own peak RSS (MiB;
    ru_maxrss when it was killed before it could say), the last line of stderr."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    limit_kib = int(memory_gib * (1 << 20))
    report = cwd / ".peak-rss"
    report.unlink(missing_ok=True)
    cmd = ["sh", "-c", f'ulimit -v {limit_kib} && exec "$@"', "sh", sys.executable, "-c", PEAK, str(report), *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    err_bytes = proc.stderr.read() if proc.stderr else b""  # read before waiting: a full pipe would block the child
    _, status, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    err = err_bytes.decode(errors="replace").strip().splitlines()
    peak_kib = int(report.read_text()) if report.is_file() else usage.ru_maxrss
    return {
        "exit": os.waitstatus_to_exitcode(status),
        "seconds": time.perf_counter() - start,
        "rss": peak_kib / 1024,
        "last": (err[-1] if err else "")[:110],
        "lines": len(err),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detections", type=float, default=5e6)
    parser.add_argument("--ground-truths", type=float, default=1e6)
    parser.add_argument("--videos", type=float, default=1e5)
    parser.add_argument("--work", help="folder for the generated inputs, kept for reruns (default: a temporary one)")
    parser.add_argument("--baseline-src", help="another talmts source tree (its src/) run on the same probes first")
    parser.add_argument("--memory-gib", type=float, default=8.0, help="address-space limit of each child (8 GiB)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a child is killed (600)")
    parser.add_argument("--only", nargs="*", help="run only the probes whose names contain one of these")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        big = work / f"evaluate-{args.detections:g}-{args.ground_truths:g}"
        if not (big / "det.json").is_file():
            big.mkdir(exist_ok=True)
            t = time.perf_counter()
            write_probe_files(big, int(args.detections), int(args.ground_truths), int(args.videos))
            print(f"wrote the probe files in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        if not (work / "tiny.pt").is_file():
            tiny_checkpoint(work / "tiny.pt")
            write_declared_rate_video(work / "slow.mp4", Fraction(1, 1000))
            write_declared_rate_video(work / "declared" / "b.mp4", Fraction(1, 65535))
            write_video(work / "clip.avi", frames=30, fps=10.0, size=(32, 32))
        corpus = CORPUS
        gt, det = big / "gt.json", big / "det.json"
        size_big = gt.stat().st_size + det.stat().st_size
        probes = [
            (f"evaluate {args.detections:g} detections, {args.ground_truths:g} ground truths",
             ["evaluate", str(gt), str(det), "--json"], size_big),
            ("config file: YAML alias bomb", ["train", str(corpus / "configs/alias_bomb.yaml")], None),
            ("override: YAML alias bomb", ["train", "demo", BOMB], None),
            ("prepare: a video declaring 1/65535 fps",
             ["prepare", str(work / "declared"), str(work / "prepared"), "--flow", "none", "--workers", "1",
              "--quiet"], None),
            ("detect: a video declaring 1/1000 fps",
             ["detect", str(work / "slow.mp4"), "--checkpoint", str(work / "tiny.pt"), "--out", str(work / "det"),
              "--device", "cpu"], None),
            ("evaluate: a JSON integer of 5,000 digits",
             ["evaluate", str(corpus / "detections/ground_truth.json"),
              str(corpus / "detections/int_5000_digits.json")], None),
            ("bench: model.fsa.layers=100000",
             ["bench", "--device", "cpu", "--config", "demo", "model.fsa.layers=100000"], None),
        ]  # fmt: skip
        if args.only:
            probes = [p for p in probes if any(o in p[0] for o in args.only)]
        rows = []
        for name, argv, size in probes:
            results = {}
            for tree in ([args.baseline_src] if args.baseline_src else []) + [None]:
                for leftover in ("prepared", "det"):  # each run starts from the same state
                    subprocess.run(["rm", "-rf", str(work / leftover)], check=False)
                results[tree] = run(argv, work, tree, args.memory_gib, args.timeout)
                r = results[tree]
                print(f"{'baseline' if tree else 'this tree'}: {name}: exit {r['exit']}, {r['seconds']:.1f} s, "
                      f"{r['rss']:.0f} MiB; {r['last']}", file=sys.stderr, flush=True)  # fmt: skip
            rows.append((name, size, results))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}, "
          f"Python {platform.python_version()}; memory limit {args.memory_gib:g} GiB, timeout {args.timeout:g} s")  # fmt: skip
    head = "| probe | input MB |"
    if args.baseline_src:
        head += " before: exit | s | peak MiB | x input |"
    head += " exit | s | peak MiB | x input | stderr lines |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, size, results in rows:
        cells = [name, f"{size / 1e6:.0f}" if size else "< 0.01"]
        for tree in ([args.baseline_src] if args.baseline_src else []) + [None]:
            r = results[tree]
            ratio = f"{r['rss'] * 1048576 / size:.1f}" if size else "-"
            cells += [str(r["exit"]), f"{r['seconds']:.1f}", f"{r['rss']:.0f}", ratio]
        cells.append(str(results[None]["lines"]))
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
