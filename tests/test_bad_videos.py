"""Bad videos (generated at test time, tests/support/videogen.py): `talmts prepare` and `talmts detect FOLDER` report
each one by name and go on, and the good videos' outputs are identical to a run without the bad ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from support.tiny_model import tiny_checkpoint
from support.videogen import bad_video_corpus, write_video
from support.view_fixtures import page_data
from talmts.cli import main
from talmts.data.prepare import PrepareOptions, prepare_dataset
from talmts.formats import read_detections

UNREADABLE = {"zero_bytes", "garbage", "cut_header", "cut_half", "audio_only"}
SHORT = {"declares_more", "vfr"}  # decoded, kept, with a warning


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(folder with every bad video and two good ones, folder with only the videos that decode)."""
    root = tmp_path_factory.mktemp("bad")
    made = bad_video_corpus(root / "all")
    for i in range(2):
        write_video(root / "all" / f"good_{i}.mp4", frames=40 + 10 * i, codec="libx264", size=(48, 64))
    skipped = [k for k, v in made.items() if v.startswith("SKIPPED")]
    assert not skipped, skipped  # every case is made by this FFmpeg build
    decodable = root / "decodable"
    decodable.mkdir()
    for p in (root / "all").iterdir():
        if p.stem not in UNREADABLE:
            shutil.copy(p, decodable / p.name)
    return root / "all", decodable, made


def test_prepare_reports_each_bad_video_and_the_good_ones_are_untouched(corpus, tmp_path):
    everything, decodable, _ = corpus
    options = PrepareOptions(fps=10.0, size=32, flow="dis")
    mixed = prepare_dataset(everything, tmp_path / "mixed", options, workers=2, progress=False)
    assert set(mixed.failed) == UNREADABLE
    assert all(mixed.failed.values())  # each with its reason
    assert set(mixed.short) == SHORT
    report = mixed.report()
    for name in UNREADABLE:
        assert f"FAILED {name}:" in report
    clean = prepare_dataset(decodable, tmp_path / "clean", options, workers=1, progress=False)
    assert clean.ok and sorted(clean.done) == sorted(mixed.done)
    for video in clean.done:
        for sub in ("frames", "flow"):
            a = np.load(tmp_path / "mixed" / sub / f"{video}.npy")
            b = np.load(tmp_path / "clean" / sub / f"{video}.npy")
            assert a.shape == b.shape and np.array_equal(a, b), (sub, video)
        assert (tmp_path / "mixed" / "meta" / f"{video}.json").read_text() == (
            tmp_path / "clean" / "meta" / f"{video}.json"
        ).read_text()
    assert (tmp_path / "mixed" / "video_info.csv").read_text() == (tmp_path / "clean" / "video_info.csv").read_text()
    with av.open(str(everything / "rotated.mp4")) as c:  # the corpus holds what it says: a rotated stream
        assert next(c.decode(video=0)).rotation == 90
    # odd sizes come out at the asked size: 1x1, 2x2, 4000x2 and 4K alike
    for name in ("tiny_1x1", "tiny_2x2", "wide_4000x2", "uhd_4k", "one_frame"):
        assert np.load(tmp_path / "mixed" / "frames" / f"{name}.npy").shape[1:] == (32, 32, 3)


def test_detect_folder_reports_each_bad_video_and_the_good_ones_match(corpus, tmp_path, capsys):
    everything, _, _ = corpus
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    few = tmp_path / "few"
    few.mkdir()
    for p in everything.iterdir():  # the unreadable ones, a short one and the two good ones: seconds, not minutes
        if p.stem in UNREADABLE | {"declares_more", "good_0", "good_1"}:
            shutil.copy(p, few / p.name)
    good = tmp_path / "good"
    good.mkdir()
    for name in ("good_0.mp4", "good_1.mp4"):
        shutil.copy(everything / name, good / name)
    assert main(["detect", str(few), "--checkpoint", str(ckpt), "--out", str(tmp_path / "d1"), "--quiet"]) == 1
    err = capsys.readouterr().err
    for name in UNREADABLE:
        assert f"talmts detect: {name}:" in err
    assert "declares_more" in err and "60 frames" in err  # the short one: warned, kept
    assert main(["detect", str(good), "--checkpoint", str(ckpt), "--out", str(tmp_path / "d2"), "--quiet"]) == 0
    mixed = read_detections(tmp_path / "d1" / "detections.json")
    clean = read_detections(tmp_path / "d2" / "detections.json")
    assert sorted(mixed) == ["declares_more", "good_0", "good_1"]
    for video in clean:
        assert mixed[video] == clean[video]
        assert (tmp_path / "d1" / video / "detections.csv").read_text() == (
            tmp_path / "d2" / video / "detections.csv"
        ).read_text()
    page = page_data(tmp_path / "d1" / "index.html")
    assert set(page["failed"]) == UNREADABLE and "Decoded only in part: declares_more" in page["note"]
    assert "60 frames" in page_data(tmp_path / "d1" / "declares_more" / "index.html")["notes"]["WARNING"]


@pytest.mark.slow
def test_detect_folder_runs_on_the_whole_corpus(corpus, tmp_path, capsys):
    everything, _, _ = corpus
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt")
    assert main(["detect", str(everything), "--checkpoint", str(ckpt), "--out", str(tmp_path / "d"), "--quiet"]) == 1
    out = read_detections(tmp_path / "d" / "detections.json")
    videos = {p.stem for p in everything.iterdir()}
    assert set(out) == videos - UNREADABLE  # every decodable video has its entry, even with no detection
    for video in videos - UNREADABLE:
        assert (tmp_path / "d" / video / "index.html").is_file()
    err = capsys.readouterr().err
    assert all(f"talmts detect: {name}:" in err for name in UNREADABLE)
