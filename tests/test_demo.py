"""`talmts demo --quick`: the CI path through every stage (synth, prepare, train RGB and flow, fused eval,
detect, report). Checks the outputs exist and are well formed; the full demo's accuracy is not tested here."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import pytest

from support.view_fixtures import page_data
from talmts.cli import main
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
    for png in ("loss_curves.png", "detect/timeline.png"):
        assert mpimg.imread(out / png).ndim == 3
    for stream in ("rgb", "flow"):
        assert (out / stream / "last.pt").is_file() and (out / stream / "losses.json").is_file()
    # the printed mAP is the evaluator's score of the written test detections
    gt = read_annotations(out / "synth" / "annotations.json")
    rescored = evaluate_detections(gt, read_detections(out / "detections_test.json"), metrics["tiou"], subset="test")
    assert metrics["mAP"] == pytest.approx(rescored.mAP, abs=1e-12)
    assert (out / "detect" / "index.html").is_file() and (out / "detect" / "detections.csv").is_file()
    # the results site of the test split: linked from the report, a page per test video with its player
    assert "[view/index.html](view/index.html)" in report and "[view/diagnosis.html](view/diagnosis.html)" in report
    assert "![false positives](view/diagnosis/false_positives.png)" in report
    index = page_data(out / "view" / "index.html")
    assert {r["video"] for r in index["rows"]} >= set(read_detections(out / "detections_test.json"))
    first = index["rows"][0]
    video_page = page_data(out / "view" / first["href"])
    assert video_page["src"] == f"../../synth/videos/{first['video']}.mp4" and video_page["has_ground_truth"]
    assert mpimg.imread(out / "view" / "diagnosis" / "sensitivity.png").ndim == 3
