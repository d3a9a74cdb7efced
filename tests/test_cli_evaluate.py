"""``talmts evaluate``: JSON and table output, dataset guess, strict mode and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talmts.cli import main
from talmts.formats import write_detections, write_ground_truth
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt = AnnotationSet(
        {
            "video_test_1": Video(
                "video_test_1", "test", 60.0, 30.0, [Segment(0, 10, "Diving"), Segment(20, 30, "Diving")]
            ),
            "video_validation_1": Video("video_validation_1", "validation", 60.0, 30.0, [Segment(0, 5, "Shotput")]),
        },
        ClassMap(("Diving", "Shotput")),
    )
    write_ground_truth(gt, tmp_path / "gt.json")
    # The same detections as the hand case of test_evaluation: AP 5/6 at 0.5 and 1/2 at 0.7.
    dets = [Detection(0, 10, "Diving", 0.9), Detection(1, 10, "Diving", 0.8), Detection(20, 25, "Diving", 0.7)]
    write_detections({"video_test_1": dets}, tmp_path / "pred.json")
    return tmp_path / "gt.json", tmp_path / "pred.json"


def test_json_output(files, capsys) -> None:
    gt, pred = files
    assert main(["evaluate", str(gt), str(pred), "--tiou", "0.5", "0.7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"tiou", "mAP", "average_mAP", "per_class"}
    assert out["tiou"] == [0.5, 0.7] and out["mAP"] == pytest.approx([5 / 6, 1 / 2])
    assert list(out["per_class"]) == ["Diving"]  # default subset for THUMOS-like data: test


def test_table_output_and_defaults(files, capsys) -> None:
    gt, pred = files
    assert main(["evaluate", str(gt), str(pred)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-2:] == ["Avg{0.1:0.5}", "Avg{0.3:0.7}"]  # guessed THUMOS: Table I columns
    # thresholds 0.1..0.5: AP 5/6 each (d3 has tIoU 0.5); 0.6, 0.7: 1/2; Avg{0.3:0.7} = (3 * 5/6 + 2 * 1/2) / 5 = 0.7
    assert lines[2].split() == ["83.3"] * 5 + ["50.0", "50.0", "83.3", "70.0"]
    assert main(["evaluate", str(gt), str(pred), "--dataset", "anet", "--subset", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["0.5", "0.75", "0.95", "Avg"]


def test_strict_and_errors(files, tmp_path, capsys) -> None:
    gt, _ = files
    pred = tmp_path / "other.json"
    write_detections({"video_test_1": [Detection(0, 10, "Diving", 0.9), Detection(0, 10, "Shotput", 0.5)]}, pred)
    with pytest.warns(UserWarning, match="Shotput"):
        assert main(["evaluate", str(gt), str(pred), "--json"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(gt), str(pred), "--strict"]) == 2
    assert "Shotput" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": {"v": [{"label": "Diving", "segment": [1, 2]}]}}')
    assert main(["evaluate", str(gt), str(bad)]) == 2
    assert "'v detection 0', field 'score': missing key" in capsys.readouterr().err


def test_proposals_mode(files, capsys) -> None:
    gt, pred = files
    assert main(["evaluate", str(gt), str(pred), "--proposals", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"AR@1", "AR@100", "AUC", "average_recall"} <= set(out)
    # THUMOS-like ground truth: the test subset by default, as for detection scoring (its validation subset is
    # THUMOS's training data). pred holds 3 proposals on the one test video: 0-10 (score 0.9) and 20-25 (0.7,
    # tIoU 0.5 with 20-30, recalled only at 0.5 of the ten thresholds 0.5:0.95); AN_max = 100 keeps all three.
    # AR@100 = (2 at 0.5 + 1 at the nine others) / 2 ground truths / 10 thresholds = 11 / 20.
    assert out["AR@100"] == pytest.approx(11 / 20)
    assert main(["evaluate", str(gt), str(pred), "--proposals"]) == 0
    assert capsys.readouterr().out.startswith("proposals on test of")


def test_proposals_of_a_perfect_file_score_full_recall_on_thumos(files, tmp_path, capsys) -> None:
    gt, _ = files
    perfect = tmp_path / "perfect.json"
    write_detections({"video_test_1": [Detection(0, 10, "Diving", 0.9), Detection(20, 30, "Diving", 0.8)]}, perfect)
    assert main(["evaluate", str(gt), str(perfect), "--proposals", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["AR@100"] == 1.0
    # an explicit --dataset anet picks ActivityNet's default subset (validation), where the file has nothing
    assert main(["evaluate", str(gt), str(perfect), "--proposals", "--json", "--dataset", "anet"]) == 0
    assert json.loads(capsys.readouterr().out)["AR@100"] == 0.0


def test_several_runs_mean_and_std(files, tmp_path, capsys) -> None:
    gt, pred = files
    seed2 = tmp_path / "seed2.json"  # only the first detection: AP = 1 x recall 1/2 = 1/2 at both thresholds
    write_detections({"video_test_1": [Detection(0, 10, "Diving", 0.9)]}, seed2)
    assert main(["evaluate", str(gt), str(pred), str(seed2), "--tiou", "0.5", "0.7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"] == ["0.5", "0.7", "Avg"]
    assert [r["file"] for r in out["runs"]] == [str(pred), str(seed2)]
    assert out["runs"][0]["mAP"] == pytest.approx([5 / 6, 1 / 2]) and out["runs"][1]["mAP"] == pytest.approx([0.5, 0.5])
    # by hand: mean of (5/6, 1/2) = 2/3, sample std = (5/6 - 1/2) / sqrt(2); at 0.7 both 1/2; Avg: 2/3 and 1/2
    assert out["mean"] == pytest.approx([2 / 3, 1 / 2, 7 / 12])
    assert out["std"] == pytest.approx([(1 / 3) / 2**0.5, 0.0, (1 / 6) / 2**0.5])
    assert main(["evaluate", str(gt), str(pred), str(seed2), "--tiou", "0.5", "0.7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[-4:-2]] == ["pred", "seed2"]  # rows named by what differs
    assert lines[-2].split() == ["mean", "66.7", "50.0", "58.3"]
    assert lines[-1].split() == ["std", "±23.6", "±0.0", "±11.8"]
    assert main(["evaluate", str(gt), str(pred), str(seed2), "--proposals"]) == 2
    assert "one detection file" in capsys.readouterr().err


def test_run_names_drop_the_shared_parts() -> None:
    from talmts.engine.commands.evaluate import short_names

    runs = ["out/all-s0/eval-test/detections.json", "out/all-s1/eval-test/detections.json"]
    assert short_names(runs) == ["s0", "s1"]
    assert short_names(["a/seed1.json", "a/seed2.json", "a/seed10.json"]) == ["seed1", "seed2", "seed10"]
    assert short_names(["same.json", "same.json"]) == ["same.json", "same.json"]  # nothing left: full paths


def test_diagnose_prints_detads_analysis_and_writes_its_plots(files, tmp_path, capsys) -> None:
    gt, pred = files
    out = tmp_path / "diag"
    assert main(["evaluate", str(gt), str(pred), "--tiou", "0.5", "--diagnose", str(out)]) == 0
    text = capsys.readouterr().out
    # the hand case: 0-10 TP, 1-10 a double detection (tIoU 0.9 with the taken 0-10), 20-25 TP (tIoU 0.5)
    assert "double detection" in text and "thumos bins" in text
    assert "per-class AP (%): Diving 83.3" in text
    assert sorted(p.name for p in out.iterdir()) == ["class_ap.png", "false_positives.png", "sensitivity.png"]
    assert main(["evaluate", str(gt), str(pred), "--tiou", "0.5", "--json", "--diagnose", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["diagnosis"]["error_counts"]["double detection"] == [1]
    assert doc["diagnosis"]["map_gain"]["double detection"] == pytest.approx(1 / 6)  # AP 5/6 -> 1
    assert main(["evaluate", str(gt), str(pred), str(pred), "--diagnose", str(out)]) == 2
    assert "one detection file" in capsys.readouterr().err
