"""``talmts view`` without a browser: what the pages embed, that they stand alone, and the command's errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.view_fixtures import page_data, view_site, write_result_set
from talmts.cli import main
from talmts.engine.site import _page_names, write_video_view
from talmts.schema import Detection, Segment


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
