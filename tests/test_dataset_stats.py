"""`talmts dataset-stats`: clip counts from annotation files alone, checked against AFSD's published protocol counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from talmts.cli import main


def _stats(capsys, *argv: str) -> dict:
    assert main(["dataset-stats", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _windows_reference(n: int, segs: list[tuple[float, float]], clip: int, stride: int, edge: int) -> int:
    """A slow count written independently: walk every window start, test each action."""
    starts, o = [], 0
    while True:
        if o + clip >= n:
            starts.append(max(n - clip, 0))
            break
        starts.append(o)
        o += stride
    return sum(any(s >= o + edge and e <= o + clip for s, e in segs) for o in sorted(set(starts)))


def test_thumos14_counts_match_afsd(capsys, shared_data):
    """AFSD's protocol: 7,842 training windows over 196 of the 200 validation videos, 3,485 test windows over the
    212 test videos (459,253 frames). talmts' own training windows convert the seconds and use the true window edge.
    """
    folder = shared_data / "thumos14"
    stats = _stats(capsys, "thumos14_rgb", "--annotations", str(folder))
    assert stats["afsd_reference"]["train_clips"] == 7842
    assert stats["afsd_reference"]["train_videos_with_clips"] == 196
    assert (stats["test_clips"], stats["test_videos"], stats["test_frames"]) == (3485, 212, 459253)
    assert stats["train_videos"] == 200 and stats["train_instances"] == 3007 and stats["classes"] == 20

    info = {r["video"]: r for r in csv.DictReader((folder / "val_video_info.csv").read_text().splitlines())}
    seconds: dict[str, list[tuple[float, float]]] = {}
    frames: dict[str, list[tuple[float, float]]] = {}
    for r in csv.DictReader((folder / "val_Annotation_ours.csv").read_text().splitlines()):
        i = info[r["video"]]
        ratio = int(i["sample_count"]) / float(i["count"])
        seconds.setdefault(r["video"], []).append(
            (float(r["start"]) * float(i["fps"]) * ratio, float(r["end"]) * float(i["fps"]) * ratio)
        )
        frames.setdefault(r["video"], []).append((float(r["startFrame"]) * ratio, float(r["endFrame"]) * ratio))
    ours = sum(_windows_reference(int(info[v]["sample_count"]), s, 256, 30, 0) for v, s in seconds.items())
    afsd = sum(_windows_reference(int(info[v]["sample_count"]), s, 256, 30, 1) for v, s in frames.items())
    assert stats["train_clips"] == ours and afsd == 7842
    # the flow config shares the protocol
    assert _stats(capsys, "thumos14_flow", "--annotations", str(folder))["train_clips"] == ours


def test_thumos14_with_afsd_ground_truth_file(capsys, shared_data):
    """AFSD's thumos_gt.json lacks two test videos (0000270, 0001496): 210 test videos."""
    stats = _stats(capsys, "thumos14_rgb", "--annotations", str(shared_data / "thumos14" / "thumos_gt.json"),
                   "data.train_subset=train")  # fmt: skip
    assert stats["test_videos"] == 210 and stats["test_instances"] == 3311 and stats["train_videos"] == 200


def test_activitynet_counts(capsys, shared_data):
    folder = shared_data / "anet"
    stats = _stats(capsys, "anet13_rgb", "--annotations", str(folder))
    db = json.loads((folder / "anet1.3_gt_derived_from_bsn.json").read_text())["database"]
    usable = sum(
        v["subset"] == "training" and any(a["segment"][1] > a["segment"][0] for a in v["annotations"])
        for v in db.values()
    )  # AFSD drops annotations with end <= start and videos left without any
    assert stats["train_clips"] == usable and stats["train_videos"] == 9649
    assert stats["test_clips"] == stats["test_videos"] == 4728 and stats["classes"] == 1
    assert stats["test_frames"] <= 768 * 4728 and "afsd_reference" not in stats


def test_small_folder_by_hand(capsys, tmp_path: Path):
    """A generic dataset: a prepared-style video_info.csv and an ActivityNet-layout file with its own classes."""
    (tmp_path / "video_info.csv").write_text(
        "video,fps,sample_fps,count,sample_count\na,25.0,10.0,1000,400\nb,30.0,10.0,900,300\nc,30.0,10.0,300,100\n"
    )
    db = {
        "a": {"subset": "training", "annotations": [{"segment": [1.0, 3.0], "label": "x"}]},
        "b": {"subset": "training", "annotations": [{"segment": [25.0, 29.0], "label": "y"}]},
        "c": {"subset": "testing", "annotations": []},
    }
    (tmp_path / "annotations.json").write_text(json.dumps({"database": db}))
    stats = _stats(capsys, "generic", "--annotations", str(tmp_path), "data.annotations=annotations.json")
    # a: 400 frames, windows 0, 30, 60, ..., 120, 144: only 0 holds [10, 30]. b: 300 frames, windows 0, 30, 44: [250, 290]
    # is wholly inside 44 only. Test: c has 100 frames, one window.
    assert stats["train_clips"] == 2 and stats["train_videos_with_clips"] == 2 and stats["test_clips"] == 1
    assert stats["train_frames"] == 700 and stats["classes"] == 2
    assert main(["dataset-stats", "generic", "--annotations", str(tmp_path)]) == 0  # the table form
    assert "train_clips" in capsys.readouterr().out


def test_missing_files_are_reported(tmp_path: Path, capsys):
    assert main(["dataset-stats", "thumos14_rgb", "--annotations", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "thumos14.json" in err and len(err.strip().splitlines()) == 1


def test_video_info_from_option_or_data_root(capsys, tmp_path: Path):
    root = tmp_path / "prepared"
    root.mkdir()
    (root / "video_info.csv").write_text("video,fps,sample_fps,count,sample_count\na,30.0,10.0,3000,1000\n")
    db = {"a": {"subset": "train", "annotations": [{"segment": [1.0, 3.0], "label": "x"}]}}
    (tmp_path / "gt.json").write_text(json.dumps({"database": db}))
    gt = str(tmp_path / "gt.json")
    by_root = _stats(capsys, "generic", "--annotations", gt, f"data.root={root}", "data.test_subset=train")
    by_option = _stats(capsys, "generic", "--annotations", gt, "--video-info", str(root / "video_info.csv"),
                       "data.test_subset=train")  # fmt: skip
    assert by_root["train_frames"] == by_option["train_frames"] == 1000 and by_root["train_clips"] == 1
    assert by_root["test_clips"] == len(range(0, 1000 - 256 + 1, 128)) + 1  # 0..640 and the aligned 744
