"""A new user's first hour, through the command line only, on a dataset laid out unlike the demo: a plain CSV
annotation file, subsets called training / testing, videos at 25 and 15 fps written with PyAV, one video without
actions. init -> prepare -> dataset-stats -> train -> eval -> detect on a raw video; each step's files and numbers
are checked."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from talmts.cli import main
from talmts.config import load_config
from talmts.data.synth import write_mp4
from talmts.evaluation import evaluate_detections
from talmts.formats import read_annotations, read_detections

H, W = 48, 64
# id -> (subset as the user wrote it, fps, seconds, [(label, start, end)])
VIDEOS = {
    "kitchen_01": ("training", 25.0, 12.0, [("wave", 1.0, 3.0), ("jump", 6.0, 8.5)]),
    "kitchen_02": ("training", 15.0, 10.0, [("jump", 2.0, 4.0), ("wave", 5.0, 7.0)]),
    "kitchen_03": ("training", 25.0, 8.0, [("wave", 3.0, 5.0)]),
    "garden_01": ("testing", 15.0, 10.0, [("wave", 1.0, 3.0), ("jump", 5.0, 7.5)]),
    "garden_02": ("testing", 25.0, 8.0, []),  # a video without actions
}
# Sizes only, so that a few steps run in seconds; every data setting is the one `talmts init` chose.
TINY_MODEL = [
    "model.backbone.width=0.125",
    "model.channels=32",
    "model.groups=8",
    "model.stt.dim=32",
    "model.stt.heads=4",
    "model.fsa.dim=32",
    "model.fsa.heads=4",
    "model.fsa.out_channels=32",
    "train.device=cpu",
]


def _frames(fps: float, seconds: float, actions: list[tuple[str, float, float]]):
    """A grey background with a square that moves up (wave) or right (jump) while an action lasts."""
    for i in range(round(fps * seconds)):
        t = i / fps
        image = np.full((H, W, 3), 90, dtype=np.uint8)
        for label, start, end in actions:
            if start <= t < end:
                p = (t - start) / (end - start)
                y, x = (int(30 - 20 * p), 20) if label == "wave" else (20, int(5 + 40 * p))
                image[y : y + 12, x : x + 12] = (230, 60, 40) if label == "wave" else (40, 200, 60)
        yield image


def _write_dataset(folder: Path) -> None:
    (folder / "videos").mkdir(parents=True)
    with open(folder / "labels.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["video", "subset", "label", "start", "end"])
        for vid, (subset, fps, seconds, actions) in VIDEOS.items():
            write_mp4(folder / "videos" / f"{vid}.mp4", _frames(fps, seconds, actions), fps)
            for label, start, end in actions or [("", "", "")]:
                out.writerow([vid, subset, label, start, end])


def _run(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.slow
def test_a_new_user_from_annotation_file_to_detections(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the printed commands use paths as the user typed them
    _write_dataset(Path("mydata"))
    raw = tmp_path / "new_video.mp4"  # a video the dataset does not know
    write_mp4(raw, _frames(15.0, 9.0, [("jump", 2.0, 4.5)]), 15.0)

    # ---- init: a config chosen from the file and the videos, and the next three commands -----------------------
    out = _run(capsys, "init", "mydata", "--recipe", "paper")  # the end-to-end path (small data: test_features)
    config = Path("mydata/talmts.yaml")
    commands = [line.split(". ", 1)[1] for line in out.splitlines() if line.startswith(("  1.", "  2.", "  3."))]
    assert commands == [
        "talmts prepare mydata/videos mydata/prepared --fps 10 --size 56 --flow dis",
        f"talmts dataset-stats {config}",
        f"talmts train {config}",
    ]
    cfg = load_config(config)
    d = cfg.data
    # longest action 2.5 s: 1.25 x 2.5 s x 10 fps = 31 frames -> T = 128, the smallest multiple of 128
    assert (d.fps, d.clip_frames, d.train_stride, d.test_stride) == (10.0, 128, 15, 64)
    assert (d.stored_size, d.frame_size, cfg.model.fsa.patch) == (56, 48, 16)  # 48 px videos: no upscaling
    assert d.classes == ["jump", "wave"] and (d.train_subset, d.val_subset, d.test_subset) == ("train", None, "test")
    assert cfg.model.backbone.weights is None and not cfg.model.backbone.freeze_bn
    text = config.read_text()
    assert "smallest multiple of 128" in text and "frame rates [15.0, 25.0]" in text
    assert main(["init", "mydata"]) == 2 and "exists" in capsys.readouterr().err  # never overwritten silently

    # ---- prepare: the printed command; both frame rates sampled to 10 fps ------------------------------------
    _run(capsys, *shlex.split(commands[0])[1:], "--workers", "2", "--quiet")
    with open("mydata/prepared/video_info.csv") as f:
        info = {r["video"]: r for r in csv.DictReader(f)}
    assert set(info) == set(VIDEOS)
    for vid, (_, fps, seconds, _) in VIDEOS.items():
        assert float(info[vid]["fps"]) == pytest.approx(fps, abs=0.01) and int(info[vid]["count"]) == fps * seconds
        assert int(info[vid]["sample_count"]) == 10 * seconds
    assert np.load("mydata/prepared/frames/garden_02.npy", mmap_mode="r").shape == (80, 56, 56, 3)

    # ---- dataset-stats: annotations and frame counts from the config alone ------------------------------------
    stats = json.loads(_run(capsys, *shlex.split(commands[1])[1:], "--json"))
    # every video is shorter than a 12.8 s window: one window each, holding all its actions
    assert (stats["train_videos"], stats["train_clips"], stats["train_instances"], stats["train_frames"]) == (
        3, 3, 5, 300,
    )  # fmt: skip
    assert (stats["test_videos"], stats["test_clips"], stats["test_frames"], stats["classes"]) == (2, 2, 180, 2)

    # ---- train: a few steps; batch 2 with the lr tuned for batch 1 prints the effective rate --------------------
    run = Path("runs/mydata_rgb")
    argv = [*shlex.split(commands[2])[1:], *TINY_MODEL, "train.max_steps=2", "train.batch_size=2", "--quiet"]
    out = _run(capsys, *argv)
    assert f"effective learning rate {1e-5 * 2**0.5:.4g}" in out and "trained 2 steps" in out
    assert (run / "last.pt").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["test_subset"] == "test"

    # ---- eval: the file's own spelling of the test subset works, and the garden videos are scored ---------------
    out = _run(capsys, "eval", str(config), "--checkpoint", str(run / "last.pt"), "--out", "ev", "--quiet",
               "data.test_subset=testing", *TINY_MODEL)  # fmt: skip
    metrics = json.loads(Path("ev/metrics.json").read_text())
    assert metrics["subset"] == "test" and metrics["metric"] == "detection mAP"
    assert set(metrics["per_class"]) == {"jump", "wave"} and len(metrics["mAP"]) == 7
    detections = read_detections("ev/detections.json")
    assert set(detections) == {"garden_01", "garden_02"}
    # the numbers eval wrote are the evaluator's score of its detections against the user's own CSV file
    rescored = evaluate_detections(read_annotations("mydata/labels.csv"), detections, metrics["tiou"], subset="test")
    assert metrics["mAP"] == pytest.approx(rescored.mAP, abs=1e-12)
    assert metrics["per_class"].keys() == rescored.per_class.keys()
    for label, ap in rescored.per_class.items():
        assert metrics["per_class"][label] == pytest.approx(ap, abs=1e-12), label
    for vid, dets in detections.items():
        assert all(0.0 <= x.start <= x.end <= VIDEOS[vid][2] + 1e-6 and x.label in {"jump", "wave"} for x in dets)
    assert "detection mAP (%):" in out

    # ---- detect on a raw video the dataset does not know -----------------------------------------------------
    out = _run(capsys, "detect", str(raw), "--checkpoint", str(run / "last.pt"), "--out", "det", "--device", "cpu")
    (found,) = read_detections("det/detections.json").values()
    assert list(read_detections("det/detections.json")) == ["new_video"] and found
    assert all(0.0 <= x.start <= x.end <= 9.0 + 1e-6 and x.label in {"jump", "wave"} for x in found)
    assert len(Path("det/detections.csv").read_text().splitlines()) == len(found) + 1
    page = Path("det/index.html").read_text()
    assert "new_video" in page and "new_video" in out and f"{len(found)} detections" in out
