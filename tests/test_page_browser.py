"""The ``talmts detect`` page (the view's page for one video) in a real browser: headless Chromium (Debian's
`chromium` package) when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from support.browser import CHROMIUM, Browser
from talmts.data.synth import write_mp4
from talmts.engine.site import write_video_view
from talmts.formats.subtitles import write_detections_vtt
from talmts.schema import Detection

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")

# rows are listed best first: 1 bounce 0.5-1.5 s, 2 spin 2.5-3.5 s, 3 a hostile label 1.0-3.0 s
EVIL = "<img src=x onerror=alert(1)>"
DETECTIONS = [Detection(0.5, 1.5, "bounce", 0.9), Detection(2.5, 3.5, "spin", 0.8), Detection(1.0, 3.0, EVIL, 0.3)]

CLICK_ROW_2 = """(async () => {
  const video = document.querySelector('video');
  if (video.readyState < 1) await new Promise(r => video.addEventListener('loadedmetadata', r, {once: true}));
  const seeked = new Promise(r => video.addEventListener('seeked', r, {once: true}));
  document.querySelectorAll('#detections tbody tr')[1].click();
  await seeked;
  video.pause();
  video.dispatchEvent(new Event('timeupdate'));
  const bar = document.querySelector('#timeline rect.det[data-id="2"]');
  bar.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: 10, clientY: 10}));
  const tip = document.getElementById('tip');
  return {
    duration: video.duration,
    time: video.currentTime,
    highlighted: Array.from(document.querySelectorAll('#detections tr.now')).map(r => r.rowIndex),
    track: video.textTracks.length ? video.textTracks[0].mode : null,
    bars: document.querySelectorAll('#timeline rect.det').length,
    lanes: Array.from(document.querySelectorAll('#timeline rect.lane')).map(r => r.dataset.label),
    images: document.querySelectorAll('img').length,
    tip: tip.textContent,
    notes: document.querySelector('dl.notes').textContent,
  };
})()"""


def test_clicking_a_detection_plays_it_and_highlights_the_rows_under_the_playhead(tmp_path):
    rng = np.random.default_rng(0)
    write_mp4(tmp_path / "clip.mp4", (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40)), fps=10.0)
    write_detections_vtt(DETECTIONS, tmp_path / "detections.vtt")
    page = write_video_view(
        tmp_path / "index.html",
        "clip",
        DETECTIONS,
        video_src="clip.mp4",
        captions_src="detections.vtt",
        notes={"checkpoints": "rgb.pt"},
    )
    with Browser(tmp_path / "profile") as browser:
        browser.open(page)
        result = browser.evaluate(CLICK_ROW_2)
    assert result["duration"] == pytest.approx(4.0, abs=0.05)  # the 4 s video loaded
    assert result["time"] == pytest.approx(2.5, abs=0.1)  # row 2 (spin) starts at 2.5 s
    assert result["highlighted"] == [2, 3]  # spin and the 1-3 s detection hold the playhead; bounce does not
    assert result["track"] == "showing"  # the captions are on by default
    assert result["bars"] == 3 and result["lanes"] == sorted(["bounce", "spin", EVIL])  # drawn in the page
    assert result["images"] == 0  # the hostile label stayed text: no <img> was made of it
    assert EVIL in result["tip"] and "score 0.300" in result["tip"]
    assert "rgb.pt" in result["notes"]
