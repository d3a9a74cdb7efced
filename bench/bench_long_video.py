"""Peak memory of `talmts detect` against the video's length: it must stay flat (frames stream window by window).

Writes low-resolution videos (32 x 32 px mpeg4, 2 fps, a moving square) of several lengths and a random tiny
TAL-MTS checkpoint (tests/support/tiny_model.py: 32-frame windows every 32 frames, sampled at 1 fps), runs ``python -m talmts detect VIDEO`` in a child
per length and reads the child's peak RSS from ``os.wait4``. Prints a Markdown table.

    .venv/bin/python bench/bench_long_video.py                   # 1, 15 and 60 minutes
    .venv/bin/python bench/bench_long_video.py --minutes 1 5      # quicker
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.tiny_model import tiny_checkpoint  # noqa: E402
from support.videogen import write_video  # noqa: E402

VIDEO_FPS, SAMPLE_FPS = 2.0, 1.0


def peak_rss_mib(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, seconds, exit code) of ``cmd`` run as a child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        print(err, file=sys.stderr)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode  # ru_maxrss is KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 15, 60])
    parser.add_argument("--keep", help="folder to keep the videos in (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt = tiny_checkpoint(work / "tiny.pt", fps=SAMPLE_FPS, overrides=("data.test_stride=32",))
        rows = []
        for minutes in args.minutes:
            frames = int(minutes * 60 * VIDEO_FPS)
            video = work / f"long_{minutes:g}min.avi"
            if not video.is_file():
                write_video(video, frames=frames, fps=VIDEO_FPS, size=(32, 32), codec="mpeg4")
            cmd = [sys.executable, "-m", "talmts", "detect", str(video), "--checkpoint", str(ckpt)]
            cmd += ["--out", str(work / f"det_{minutes:g}"), "--device", "cpu"]
            rss, seconds, code = peak_rss_mib(cmd)
            rows.append((minutes, frames, int(frames * SAMPLE_FPS / VIDEO_FPS), rss, seconds, code))
            print(f"{minutes:g} min: {rss:.0f} MiB, {seconds:.0f} s", file=sys.stderr, flush=True)
    print("| video | decoded frames | sampled frames | peak RSS (MiB) | ratio to the first | seconds | exit |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for minutes, frames, sampled, rss, seconds, code in rows:
        print(
            f"| {minutes:g} min | {frames} | {sampled} | {rss:.0f} | {rss / rows[0][3]:.2f} | {seconds:.0f} | {code} |"
        )
    return 0 if all(r[-1] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
