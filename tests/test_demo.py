"""`talmts demo --quick`: the CI path through every stage (synth, prepare, train RGB and flow, fused eval,
detect, report). Checks that the outputs agree with each other and with what the quick settings ask for.

The quick model's accuracy is not tested: after 3 steps a stream its mAP at tIoU 0.5 is 0 and at 0.1 it is below
what the same detections with random scores reach (37.5 % against a mean of 59 % over 200 random scorings, seed 0
of the demo), so no floor would separate a working pipeline from a broken one; the printed numbers are instead
checked to be the evaluator's score of the written detections.
"""

from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from support.view_fixtures import page_data
from talmts.cli import main
from talmts.engine.checkpoint import load_checkpoint
from talmts.evaluation import evaluate_detections
from talmts.formats import read_annotations, read_detections

pytestmark = pytest.mark.slow  # end to end: minutes of CPU; `make test-fast` leaves it out


def test_quick_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--json", "--quiet", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert set(metrics) == {"tiou", "mAP", "average_mAP", "seconds"}
    assert metrics["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert metrics["seconds"] > 0
    assert abs(metrics["average_mAP"] - sum(metrics["mAP"]) / 7) < 1e-9
    assert lines[-2].split()[:2] == [f"{100 * metrics['mAP'][0]:.1f}", f"{100 * metrics['mAP'][1]:.1f}"]

    report = (out / "report.md").read_text()
    assert "RGB + flow (fused)" in report and "![loss curves](loss_curves.png)" in report
    assert "![timeline](detect/timeline.png)" in report
    gt = read_annotations(out / "synth" / "annotations.json")
    for stream in ("rgb", "flow"):  # --quick: 3 steps a stream
        ck = load_checkpoint(out / stream / "last.pt")
        assert (
            ck["step"] == 3 and ck["config"]["data"]["modality"] == stream and ck["classes"] == list(gt.classes.names)
        )
        log = json.loads((out / stream / "losses.json").read_text())
        assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["total"]) for r in log)
    curves = mpimg.imread(out / "loss_curves.png")
    assert curves.shape == (462, 1320, 4)  # 12 x 4.2 inches at 110 dpi
    for k in (0, 1):  # the total loss of rgb and of flow, each in its colour, in the left panel
        colour = np.asarray(plt.get_cmap("tab10")(k)[:3])
        assert (np.abs(curves[:, :660, :3] - colour).max(axis=-1) < 0.05).sum() > 20, k
    # the printed mAP is the evaluator's score of the written test detections
    rescored = evaluate_detections(gt, read_detections(out / "detections_test.json"), metrics["tiou"], subset="test")
    assert metrics["mAP"] == pytest.approx(rescored.mAP, abs=1e-12)
    # detect on one raw test video: the table, the page and the timeline hold its detections and ground truth
    ((video, detected),) = read_detections(out / "detect" / "detections.json").items()
    rows = (out / "detect" / "detections.csv").read_text().splitlines()
    assert rows[0] == "video,label,start,end,score" and len(rows) == len(detected) + 1 > 1
    assert all(row.startswith(f"{video},") for row in rows[1:])
    page = page_data(out / "detect" / "index.html")
    assert page["video"] == video and page["has_ground_truth"]
    assert len(page["detections"]) == sum(d.score >= 0.01 for d in detected)
    truth = gt.videos[video].annotations
    drawn = {d.label for d in detected if d.score >= 0.1} | {s.label for s in truth}  # a row per class
    timeline = mpimg.imread(out / "detect" / "timeline.png")
    assert timeline.shape == (round((1.2 + 0.6 * len(drawn)) * 110), 1320, 4)
    assert (np.abs(timeline[..., :3] - 0.35).max(axis=-1) < 0.02).sum() > 100 * len(truth)  # ground-truth bars
    # the results site of the test split: linked from the report, a page per test video with its player
    assert "[view/index.html](view/index.html)" in report and "[view/diagnosis.html](view/diagnosis.html)" in report
    assert "![false positives](view/diagnosis/false_positives.png)" in report
    index = page_data(out / "view" / "index.html")
    tests = {v.id for v in gt.videos.values() if v.subset == "test"}
    assert {r["video"] for r in index["rows"]} == tests | set(read_detections(out / "detections_test.json"))
    at_half = metrics["tiou"].index(0.5)
    assert index["stats"][:2] == [
        [f"{100 * metrics['mAP'][at_half]:.1f} %", "mAP at tIoU 0.5"],
        [len(tests), "videos scored (the test subset)"],
    ]
    first = index["rows"][0]
    video_page = page_data(out / "view" / first["href"])
    assert video_page["src"] == f"../../synth/videos/{first['video']}.mp4" and video_page["has_ground_truth"]
    sensitivity = mpimg.imread(out / "view" / "diagnosis" / "sensitivity.png")
    assert sensitivity.shape[:2] == (396, 1320) and (sensitivity[..., :3] < 0.5).mean() > 0.005  # not blank
