"""Every command reports bad input as one line on stderr with exit code 2, and anything else as a short message that
points at --debug (which shows the traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from talmts.cli import main


def _one_line_error(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"talmts {argv[0]}: ")
    for w in words:
        assert w in err
    return err


def test_dataset_stats_reports_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    # a missing base config
    (tmp_path / "mine.yaml").write_text("_base_: missing_base.yaml\n")
    _one_line_error(
        capsys, ["dataset-stats", str(tmp_path / "mine.yaml"), "--annotations", str(tmp_path)], "missing_base"
    )
    # a bad annotation file
    (tmp_path / "gt.json").write_text(json.dumps({"database": {"v": {"subset": "train", "annotations": [{}]}}}))
    _one_line_error(capsys, ["dataset-stats", "generic", "--annotations", str(tmp_path / "gt.json")], "'label'")
    # a missing video-info file
    db = {"v": {"subset": "train", "annotations": [{"segment": [1, 2], "label": "x"}]}}
    (tmp_path / "gt.json").write_text(json.dumps({"database": db}))
    argv = ["dataset-stats", "generic", "--annotations", str(tmp_path / "gt.json"), "--video-info", "nope.csv"]
    _one_line_error(capsys, argv, "nope.csv")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", "no_such_config"], ["no_such_config", "not found"]),
        (["eval", "generic", "--checkpoint", "missing.pt"], []),
        (["evaluate", "missing_gt.json", "missing_pred.json"], ["missing_gt.json"]),
        (["init", "no_such_folder"], ["no_such_folder"]),
        (["backbone-check", "--clip", "none.gif"], ["none.gif"]),
    ],
)
def test_every_command_reports_bad_input_in_one_line(argv: list[str], words: list[str], capsys) -> None:
    _one_line_error(capsys, argv, *words)


def test_unexpected_errors_point_at_debug_which_shows_the_traceback(monkeypatch, capsys) -> None:
    import talmts.cli.train as train_cmd

    def broken(args):  # noqa: ANN001, ANN202
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(train_cmd, "run", broken)
    assert main(["train", "demo"]) == 1
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError: a bug" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        main(["train", "demo", "--debug"])
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "train", "demo"])


def test_warnings_print_as_one_line_each(tmp_path: Path) -> None:
    gt = {"database": {"v": {"subset": "test", "duration": 10, "annotations": [{"segment": [1, 4], "label": "a"}]}}}
    pred = {"results": {"v": [{"label": "a", "score": 0.9, "segment": [-1, 4]}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    # a real process: pytest records warnings itself, so only a subprocess shows what a user sees
    argv = [
        sys.executable,
        "-m",
        "talmts",
        "evaluate",
        str(tmp_path / "gt.json"),
        str(tmp_path / "pred.json"),
        "--json",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("talmts evaluate: warning: of 1 detections, 1 start before 0 s")
    assert len(done.stderr.strip().splitlines()) == 1
    assert json.loads(done.stdout)["mAP"][0] == pytest.approx(1.0)  # tIoU 3/5 = 0.6 >= 0.5
