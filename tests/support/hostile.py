"""The hostile-input corpus (tests/hostile/) and what it needs made at test time, run by tests/test_hostile_input.py
and timed by bench/bench_hostile_resources.py.

A probe is one talmts command line on careless or hostile input, run in a sandbox folder holding a copy of the
corpus; it must end with exit 0 and a correct result, or exit 2 and one line, write nothing outside its named
output and leave nothing running. Binary inputs (videos, arrays, checkpoints) are made here, never committed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CORPUS = Path(__file__).resolve().parents[1] / "hostile"
OUT = "work/run/out"  # the output a probe names; anything else in the sandbox must stay as it was
ESCAPED = "work/escaped"  # where a path that climbs out of OUT by three folders lands
HANG_GUARD = 120  # seconds: a probe still running then is a hang (the goal is seconds)
MEMORY_GUARD = 3 << 30  # address space of a probe run as a child process: a regressed bomb fails, not the machine
SECRETS = ("SECRET_TOKEN", "hunter2", "root:")  # text of files that are no config: never printed


@dataclass(frozen=True)
class Probe:
    """One command line on hostile input. ``exit``: 0 (a correct result) or 2 (one line matching ``message``).
    ``setup(sandbox)`` makes generated inputs; ``check(sandbox, stdout, stderr)`` asserts the result. ``child``:
    run as a separate process under MEMORY_GUARD (a probe that, unfixed, allocates gigabytes)."""

    id: str
    argv: tuple[str, ...]
    exit: int
    message: str = ""
    writes: bool = False  # may write into OUT (else nothing may change anywhere, OUT included)
    child: bool = False
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, str, str], None] | None = None
    hole: str = ""  # what the probe guards (the table in docs/RELIABILITY.md)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ inputs
def sandbox_for(root: Path) -> Path:
    """A copy of the corpus under ``root``/corpus and the folders a probe's paths point into."""
    shutil.copytree(CORPUS, root / "corpus")
    (root / "work" / "run").mkdir(parents=True)
    return root


def write_declared_rate_video(path: Path, fps: Fraction, frames: int = 3) -> Path:
    """A tiny video whose container declares ``fps`` (e.g. 1/65535: three frames that claim 55 hours)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_climbing_dataset(sandbox: Path) -> None:
    """data/root/video_info.csv with the id ``x/../../../escaped/ID``, and the array that id reaches from
    data/root/frames (data/escaped/ID.npy): an unchecked run reads it and writes OUT/x/../../../escaped/ID.npy,
    which is work/escaped/ID.npy, outside OUT."""
    root = sandbox / "data" / "root"
    (root / "frames" / "x").mkdir(parents=True)
    shutil.copy(sandbox / "corpus" / "ids" / "video_info.csv", root / "video_info.csv")
    (sandbox / "data" / "escaped").mkdir()
    np.save(sandbox / "data" / "escaped" / "ID.npy", np.zeros((20, 32, 32, 3), np.uint8))


class RunsCommand:
    """A pickle payload: unpickling it runs ``touch MARKER``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def write_pickle_checkpoint(path: Path, marker: Path) -> Path:
    """A torch zip whose unpickling runs a command (a talmts-looking checkpoint of an 'older' talmts)."""
    import torch

    torch.save({"model": RunsCommand(marker), "config": {}, "format": 1}, path)
    return path


HOSTILE_CLASSES = ["=1+2+cmd|x!A0", "@SUM(1)\n2\n00:00:00,000 --> 00:09:59,000\nINJECTED"]


def write_hostile_detector(sandbox: Path) -> None:
    """A tiny random TAL-MTS whose class names are a spreadsheet formula and a label that spells subtitle cues,
    and a 3 s video for it."""
    from support.tiny_model import tiny_checkpoint
    from support.videogen import write_video
    from talmts.engine.checkpoint import load_checkpoint, save_checkpoint

    ckpt = tiny_checkpoint(sandbox / "hostile.pt")
    state = load_checkpoint(ckpt)
    state["classes"] = HOSTILE_CLASSES
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, ckpt)
    write_video(sandbox / "clip.avi", frames=30, fps=10.0, size=(32, 32))


# ------------------------------------------------------------------------------------------------ running
def run_child(argv: tuple[str, ...], cwd: Path, timeout: float = HANG_GUARD) -> Outcome:
    """``python -m talmts ARGV`` in its own session under MEMORY_GUARD; killed with its whole group on a hang.
    ``extra``: peak RSS (KiB) and seconds, for the benchmark."""
    import time

    def limits() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_GUARD, MEMORY_GUARD))

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "talmts", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limits,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        return Outcome(-1, out, err + f"\n(hung: killed after {timeout} s)")
    finally:
        kill_group(proc.pid)  # whatever it left in its group
    return Outcome(proc.returncode, out, err, {"seconds": time.perf_counter() - start})


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc; empty elsewhere)."""
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = child_pids(todo.pop())
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every path under ``root`` (not following links) with what identifies its contents; ``skip``'s tree left out."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if skip is not None and p == skip:
                continue
            st = p.lstat()
            target = os.readlink(p) if p.is_symlink() else None
            size = st.st_size if p.is_file() and not p.is_symlink() else None
            seen[str(p.relative_to(root))] = (st.st_mode, size, st.st_mtime_ns if size is not None else None, target)
    return seen


# ------------------------------------------------------------------------------------------------ the probes
BOMB = (
    "name=[&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], "
    "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
    "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]]"
)
GT = "corpus/detections/ground_truth.json"
FORMULA = "corpus/detections/formula.json"
PREPARE = ("prepare", "videos", OUT, "--flow", "none", "--workers", "1", "--quiet")


def _one_video(sandbox: Path) -> None:
    from support.videogen import write_video

    write_video(sandbox / "videos" / "a.avi", frames=20, fps=10.0, size=(32, 32))


def _declared_rates(sandbox: Path) -> None:
    _one_video(sandbox)
    write_declared_rate_video(sandbox / "videos" / "b.mp4", Fraction(1, 65535))


def _slow_clock(sandbox: Path) -> None:
    from support.tiny_model import tiny_checkpoint

    tiny_checkpoint(sandbox / "tiny.pt")
    write_declared_rate_video(sandbox / "slow.mp4", Fraction(1, 1000))


def _pickle(sandbox: Path) -> None:
    write_pickle_checkpoint(sandbox / "old.pt", sandbox / "marker")


def _no_marker(sandbox: Path, out: str, err: str) -> None:
    assert not (sandbox / "marker").exists(), "the payload ran"


def _strict_json(sandbox: Path, out: str, err: str) -> None:
    import json

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    json.loads(out, parse_constant=refuse)


def _site(sandbox: Path, out: str, err: str) -> None:
    assert (sandbox / OUT / "index.html").is_file() and (sandbox / OUT / "videos").is_dir()
    assert not (sandbox / OUT / "videos").is_symlink()


def _first_site(sandbox: Path) -> None:
    """OUT holds a site of three videos (clip, long, quiet) from an earlier run."""
    from support.view_fixtures import write_result_set
    from talmts.cli import main

    f = write_result_set(sandbox / "earlier")
    assert main(["view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--out", str(sandbox / OUT)]) == 0


def _stale_pages_gone(sandbox: Path, out: str, err: str) -> None:
    _site(sandbox, out, err)
    pages = sorted(p.name for p in (sandbox / OUT / "videos").iterdir())
    assert "clip.html" in pages and "long.html" not in pages and "quiet.html" not in pages, pages  # long, quiet: stale


def _planted_link(sandbox: Path, with_site: bool) -> None:
    if with_site:
        _first_site(sandbox)
        shutil.rmtree(sandbox / OUT / "videos")
    else:
        (sandbox / OUT).mkdir(parents=True)
    (sandbox / "work" / "elsewhere").mkdir()
    (sandbox / "work" / "elsewhere" / "keep.txt").write_text("the user's own file")
    (sandbox / OUT / "videos").symlink_to(sandbox / "work" / "elsewhere", target_is_directory=True)


def _hostile_outputs(sandbox: Path, out: str, err: str) -> None:
    """detections.csv: no text cell a spreadsheet evaluates; subtitles: one line a cue, no injected cue."""
    import csv

    with open(sandbox / OUT / "detections.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) > 1, "the probe needs detections"
    for row in rows[1:]:
        for cell in row[:2]:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n")), row
    for name in ("detections.srt", "detections.vtt"):
        text = (sandbox / OUT / name).read_text(encoding="utf-8")
        blocks = [b for b in text.split("\n\n") if b.strip() and b.strip() != "WEBVTT"]
        assert blocks, f"{name}: the probe needs cues"
        for block in blocks:
            lines = block.strip().split("\n")
            assert len(lines) == 3 and lines[0].isdigit() and "-->" in lines[1] and "-->" not in lines[2], block
            assert "INJECTED" not in lines[0] + lines[1]


PROBES: list[Probe] = [
    Probe("convert-pickle-payload", ("convert-checkpoint", "old.pt", f"{OUT}/new.pt"), 2, r"add --trust",
          setup=_pickle, check=_no_marker, hole="1"),
    Probe("config-alias-bomb", ("train", "corpus/configs/alias_bomb.yaml"), 2, r"YAML aliases expand", child=True,
          hole="4"),
    Probe("override-alias-bomb", ("train", "demo", BOMB), 2, r"YAML aliases expand", child=True, hole="4"),
    Probe("config-self-reference", ("train", "corpus/configs/self_reference.yaml"), 2, r"alias|name", hole="4"),
    Probe("config-huge-int", ("train", "corpus/configs/huge_int.yaml"), 2, r"huge_int.yaml: a number too long",
          hole="9"),
    Probe("config-base-shadow", ("train", "corpus/configs/base_shadow.yaml"), 2, r"_base_: /etc/shadow is not a "
          "YAML config", hole="12"),
    Probe("config-base-not-yaml", ("train", "corpus/configs/base_not_yaml.yaml"), 2, r"notes.txt is not a YAML "
          "config", hole="12"),
    Probe("size-channels", ("bench", "--device", "cpu", "--config", "demo", "model.channels=1048576"), 2,
          r"model.channels=1048576 is out of range", child=True, hole="9"),
    Probe("size-clip-frames", ("bench", "--device", "cpu", "--config", "demo", "data.clip_frames=1073741824"), 2,
          r"data.clip_frames=1073741824 is out of range", child=True, hole="9"),
    Probe("size-fsa-layers", ("bench", "--device", "cpu", "--config", "demo", "model.fsa.layers=100000"), 2,
          r"model.fsa.layers=100000 is out of range", child=True, hole="9"),
    Probe("size-seed", ("train", "demo", "train.seed=18446744073709551616"), 2, r"train.seed=.* is out of range",
          child=True, hole="9"),
    Probe("json-int-5000-digits", ("evaluate", GT, "corpus/detections/int_5000_digits.json"), 2,
          r"int_5000_digits.json: .*4,300 digits", hole="9"),
    Probe("view-min-score-nan", ("view", FORMULA, "--ground-truth", GT, "--out", OUT, "--min-score", "nan"), 2,
          r"--min-score nan", hole="9"),
    Probe("evaluate-tiou-nan", ("evaluate", GT, FORMULA, "--tiou", "nan", "--json"), 2, r"tIoU thresholds",
          hole="10"),
    Probe("evaluate-json-is-json", ("evaluate", GT, FORMULA, "--json"), 0, check=_strict_json, hole="10"),
    Probe("extract-features-climbing-id", ("extract-features", "corpus/ids/config.yaml", "--snippets", OUT,
          "--quiet"), 2, r"x/\.\./\.\./\.\./escaped/ID.* cannot name a file", writes=True,
          setup=write_climbing_dataset, hole="3"),
    *[
        Probe(f"prepare{opt}", (*PREPARE, *opt.split()), 2, message, setup=_one_video, hole="6")
        for opt, message in [
            (" --fps inf", r"fps=inf"),
            (" --fps 0", r"fps=0"),
            (" --fps nan", r"fps=nan"),
            (" --fps 1e-300", r"fps=1e-300"),
            (" --max-frames 0", r"max_frames=0"),
            (" --size 100000", r"size=100000"),
        ]
    ],
    # prepare's exit code 1: some videos failed, each named with its reason; the others are prepared
    Probe("prepare-declared-1/65535-fps", PREPARE, 1, writes=True, child=True, setup=_declared_rates,
          check=lambda s, out, err: _prepared_but_b(s, out), hole="5"),
    Probe("detect-declared-1/1000-fps", ("detect", "slow.mp4", "--checkpoint", "tiny.pt", "--out", OUT,
          "--device", "cpu"), 2, r"declares 0.001 fps", writes=True, child=True, setup=_slow_clock, hole="5"),
    Probe("detect-hostile-labels", ("detect", "clip.avi", "infer.conf_thresh=0", "--checkpoint", "hostile.pt",
          "--out", OUT, "--device", "cpu", "--min-score", "0"), 0, writes=True, setup=write_hostile_detector,
          check=_hostile_outputs, hole="13"),
    Probe("view-formula-labels", ("view", FORMULA, "--ground-truth", GT, "--out", OUT), 0, writes=True, check=_site,
          hole="8"),
    Probe("view-stale-pages", ("view", FORMULA, "--ground-truth", GT, "--out", OUT), 0, writes=True,
          setup=_first_site, check=_stale_pages_gone, hole="8"),
    Probe("view-link-planted-in-site", ("view", FORMULA, "--ground-truth", GT, "--out", OUT), 0, writes=True,
          setup=lambda s: _planted_link(s, with_site=True), check=_site, hole="15"),
    Probe("view-link-planted-in-new-folder", ("view", FORMULA, "--ground-truth", GT, "--out", OUT), 2,
          r"videos exists and .* holds no site", setup=lambda s: _planted_link(s, with_site=False), hole="15"),
]  # fmt: skip


def _prepared_but_b(sandbox: Path, out: str) -> None:
    assert "FAILED b: the container declares 1.53e-05 fps" in out, out
    assert (sandbox / OUT / "frames" / "a.npy").is_file()
