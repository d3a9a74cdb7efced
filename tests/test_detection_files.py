"""Detections as CSV (formats.detections) and as subtitles (formats.subtitles), by hand-written expected text."""

from __future__ import annotations

from talmts.formats.detections import write_detections_csv
from talmts.formats.subtitles import srt_time, write_detections_srt, write_detections_vtt
from talmts.schema import Detection


def test_srt_time_by_hand():
    assert srt_time(0.0) == "00:00:00,000"
    assert srt_time(3.2) == "00:00:03,200"
    assert srt_time(61.0005) == "00:01:01,000"  # rounded to the millisecond
    assert srt_time(3725.4567) == "01:02:05,457"
    assert srt_time(-0.01) == "00:00:00,000"


def test_srt_cues_in_time_order_above_min_score(tmp_path):
    dets = [
        Detection(10.0, 12.5, "spin", 0.9),
        Detection(1.25, 4.0, "bounce", 0.55),
        Detection(1.25, 3.0, "cross", 0.7),
        Detection(20.0, 21.0, "spin", 0.05),  # below min_score
    ]
    path = write_detections_srt(dets, tmp_path / "out" / "d.srt", min_score=0.1)
    assert path.read_text() == (
        "1\n00:00:01,250 --> 00:00:03,000\ncross (0.70)\n\n"
        "2\n00:00:01,250 --> 00:00:04,000\nbounce (0.55)\n\n"
        "3\n00:00:10,000 --> 00:00:12,500\nspin (0.90)\n"
    )


def test_csv_rows_best_first(tmp_path):
    dets = {"v1": [Detection(1.0, 2.0, "a", 0.2), Detection(0.5, 1.5, "b", 0.8)], "v2": []}
    path = write_detections_csv(dets, tmp_path / "d.csv")
    assert path.read_text() == "video,label,start,end,score\nv1,b,0.500,1.500,0.800000\nv1,a,1.000,2.000,0.200000\n"


def test_vtt_is_the_srt_with_a_header_and_dots(tmp_path):
    dets = [Detection(1.25, 3.0, "cross", 0.7), Detection(3725.5, 3726.0, "spin", 0.3)]
    vtt = write_detections_vtt(dets, tmp_path / "d.vtt").read_text()
    assert vtt == (
        "WEBVTT\n\n1\n00:00:01.250 --> 00:00:03.000\ncross (0.70)\n\n2\n01:02:05.500 --> 01:02:06.000\nspin (0.30)\n"
    )
