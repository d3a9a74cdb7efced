"""``talmts view`` without a browser: what the pages embed, that they stand alone, and the command's errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.view_fixtures import DETECTIONS, ground_truth, page_data, view_site, write_result_set
from talmts.cli import main
from talmts.engine.site import _page_names, write_video_view
from talmts.evaluation import evaluate_detections
from talmts.formats import write_ground_truth
from talmts.schema import AnnotationSet, Detection, Segment, Video


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return view_site(tmp_path_factory.mktemp("results"))


def test_the_index_counts_each_video_at_the_chosen_tiou(site):
    data = page_data(site / "index.html")
    rows = {r["video"]: r for r in data["rows"]}
    assert set(rows) == {"clip", "long", "quiet"}
    assert (rows["clip"]["tp"], rows["clip"]["fp"], rows["clip"]["missed"], rows["clip"]["ap"]) == (2, 3, 0, 1.0)
    assert (rows["long"]["tp"], rows["long"]["fp"], rows["long"]["missed"]) == (1, 3, 2)
    assert rows["long"]["ap"] == pytest.approx(1 / 3)  # spin found, bounce and cross missed
    assert (rows["quiet"]["detections"], rows["quiet"]["missed"], rows["quiet"]["ap"]) == (0, 1, 0.0)
    assert rows["clip"]["types"] == {"double detection": 1, "confusion": 1, "background": 1}
    assert rows["long"]["types"] == {"wrong label": 1, "localization": 1, "background": 1}
    assert rows["clip"]["href"] == "videos/clip.html" and (site / "videos" / "clip.html").is_file()
    assert [3, "true positives"] in data["stats"] and data["tiou"] == 0.5


def test_the_view_scores_the_subset_the_detections_cover_and_says_so(tmp_path, capsys):
    """The result set's 3 test videos plus 2 training videos in the ground truth; the detections cover the test
    videos only (as a file `talmts eval` wrote). By default the view scores the test subset, as evaluate with
    --subset test does, and its headers and the command say so; it used to score every video (the training videos
    all missed) and report a lower mAP over 5 videos."""
    f = write_result_set(tmp_path)
    gt = ground_truth()
    train = {f"train{i}": Video(f"train{i}", "train", 10.0, annotations=[Segment(1, 3, "spin")]) for i in range(2)}
    gt = AnnotationSet(gt.videos | train, gt.classes)
    write_ground_truth(gt, tmp_path / "gt_splits.json")
    args = ["view", str(f["detections"]), "--ground-truth", str(tmp_path / "gt_splits.json")]
    assert main([*args, "--out", str(tmp_path / "site")]) == 0
    expected = evaluate_detections(gt, DETECTIONS, [0.5], subset="test").mAP[0]
    assert expected == pytest.approx(evaluate_detections(ground_truth(), DETECTIONS, [0.5]).mAP[0])
    assert capsys.readouterr().out.startswith(f"mAP at tIoU 0.5: {100 * expected:.1f} % on the test subset (3 videos)")
    index = tmp_path / "site" / "index.html"
    data = page_data(index)
    assert {r["video"] for r in data["rows"]} == {"clip", "long", "quiet"}
    assert data["stats"][:2] == [[f"{100 * expected:.1f} %", "mAP at tIoU 0.5"], [3, "videos scored (the test subset)"]]
    header = f"scored on the test subset: 3 videos, mAP {100 * expected:.1f} % at tIoU 0.5"
    assert header in index.read_text() and header in (tmp_path / "site" / "diagnosis.html").read_text()
    # a subset named on the command line wins: the training videos, all missed; a subset the file lacks is an error
    assert main([*args, "--out", str(tmp_path / "train_site"), "--subset", "training"]) == 0
    assert "0.0 % on the train subset (2 videos)" in capsys.readouterr().out
    rows = {r["video"]: r for r in page_data(tmp_path / "train_site" / "index.html")["rows"]}
    assert (rows["train0"]["missed"], rows["train1"]["missed"]) == (1, 1)
    assert main([*args, "--out", str(tmp_path / "x"), "--subset", "validation"]) == 2
    assert "no video in subset 'validation'" in capsys.readouterr().err


def test_a_video_page_embeds_each_detection_with_its_type_and_match(site):
    data = page_data(site / "videos" / "clip.html")
    assert data["src"] == "../../videos/clip.mp4"  # relative to the page
    types = [d["type"] for d in data["detections"]]
    assert types == ["true positive", "true positive", "double detection", "confusion", "background"]
    assert [d["matched"] for d in data["detections"]] == [0, 1, None, None, None]
    assert data["detections"][1]["matched_tiou"] == pytest.approx(1.0 / 1.1)
    assert [g["matched_by"] for g in data["ground_truth"]] == [0, 1]
    assert data["classes"] == ["bounce", "cross", "spin"]
    assert page_data(site / "videos" / "long.html")["src"] is None  # no video file for it


def test_the_diagnosis_page_and_its_pictures(site):
    data = page_data(site / "diagnosis.html")
    counts = data["diagnosis"]["error_counts"]
    assert {k: v[0] for k, v in counts.items()} == {
        "true positive": 3,
        "double detection": 1,
        "wrong label": 1,
        "localization": 1,
        "confusion": 1,
        "background": 2,
    }
    assert data["pictures"] == ["diagnosis/false_positives.png", "diagnosis/sensitivity.png", "diagnosis/class_ap.png"]
    for p in data["pictures"]:
        assert (site / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pages_stand_alone_and_show_nothing_of_the_machine(site):
    root = str(site.parent.resolve())
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert root not in text and str(Path.home()) not in text, page
        assert not re.search(r"(src|href|url)\s*[=(]\s*['\"]?(https?:)?//", text), page  # no CDN, no network
        assert "fetch(" not in text and "XMLHttpRequest" not in text and "import(" not in text, page
        assert "<script src" not in text and "<link" not in text, page  # script and style inlined


def test_a_detect_page_without_ground_truth_and_one_with(tmp_path):
    dets = [Detection(0.5, 1.5, "bounce", 0.9), Detection(2, 3, "spin", 0.4)]
    page = write_video_view(tmp_path / "a.html", "a", dets, duration=4.0, notes={"checkpoint": "rgb.pt"})
    data = page_data(page)
    assert [d["type"] for d in data["detections"]] == [None, None] and not data["has_ground_truth"]
    assert data["notes"] == {"checkpoint": "rgb.pt"}
    page = write_video_view(tmp_path / "b.html", "b", dets, ground_truth=[Segment(0.4, 1.5, "bounce")])
    data = page_data(page)
    assert [d["type"] for d in data["detections"]] == ["true positive", "background"]
    assert data["ap"] == 1.0


def test_names_from_the_data_cannot_break_out_of_the_page(tmp_path):
    evil = "</script><script>alert(1)</script>"
    page = write_video_view(tmp_path / "e.html", evil, [Detection(0, 1, evil, 0.5)], notes={evil: evil})
    text = page.read_text()
    assert "<script>alert" not in text and text.count("</script>") == 2  # the data's and the code's
    data = page_data(page)
    assert data["detections"][0]["label"] == evil and data["video"] == evil


def test_page_names_are_safe_and_distinct():
    assert _page_names(["a/b", "a_b", "../x", "ok-1.mp4"]) == {
        "a/b": "a_b",
        "a_b": "a_b-2",
        "../x": "_x",
        "ok-1.mp4": "ok-1.mp4",
    }


def test_bad_input_names_the_file(tmp_path, capsys):
    f = write_result_set(tmp_path)
    assert main(["view", str(f["detections"]), "--ground-truth", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
    assert main(["view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--tiou", "1.5"]) == 2
    assert "--tiou" in capsys.readouterr().err
    assert main(["view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--videos", str(tmp_path / "x")]) == 2
    assert "--videos" in capsys.readouterr().err


def _site_files(out: Path) -> dict[Path, bytes]:
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("error", "code"), [(OSError(28, "No space left on device"), 2), (KeyboardInterrupt(), 130)], ids=["disk", "ctrl-c"]
)
def test_a_swap_that_stops_midway_leaves_the_old_site_whole(tmp_path, monkeypatch, error, code):
    """The new site's entries are moved in one by one; when that stops (a failed move, Ctrl-C), the old site comes
    back as it was."""
    import os

    f = write_result_set(tmp_path)
    out = tmp_path / "site"
    argv = ["view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--out", str(out)]
    assert main(argv) == 0
    before = _site_files(out)
    real_replace, failed = os.replace, []

    def failing_replace(src, dst):  # noqa: ANN001, ANN202
        src = Path(src)
        if src.name == "videos" and src.parent.parent == out and src.parent.name.startswith(".site"):
            failed.append(src)  # moving the new videos/ in: index.html and diagnosis.html are swapped already
            raise error
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    assert main([*argv, "--title", "another"]) == code
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(failed) == 1 and _site_files(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith((".site", ".replaced"))]


def test_what_a_rollback_cannot_put_back_is_kept_and_named(tmp_path, monkeypatch, capsys):
    """A rollback that fails too (the old index.html cannot move back) keeps the old entries in the folder it named,
    and the next run refuses to delete them."""
    import os

    f = write_result_set(tmp_path)
    out = tmp_path / "site"
    argv = ["view", str(f["detections"]), "--ground-truth", str(f["gt"]), "--out", str(out)]
    assert main(argv) == 0
    old_index = (out / "index.html").read_bytes()
    real_replace = os.replace

    def failing_replace(src, dst):  # noqa: ANN001, ANN202
        src, dst = Path(src), Path(dst)
        if src.name == "videos" and src.parent.name.startswith(".site"):
            raise OSError(28, "No space left on device")
        if src.name == "index.html" and src.parent.name.startswith(".replaced"):
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    capsys.readouterr()
    assert main([*argv, "--title", "another"]) == 2
    monkeypatch.setattr(os, "replace", real_replace)
    err = capsys.readouterr().err
    (kept,) = [p for p in out.iterdir() if p.name.startswith(".replaced")]
    assert f"the earlier entries are in {kept}" in err and (kept / "index.html").read_bytes() == old_index
    assert main(argv) == 2  # refused: the kept folder is not cleaned up
    assert (kept / "index.html").read_bytes() == old_index
