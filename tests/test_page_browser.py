"""The detect page in a real browser: headless Chromium (Debian's `chromium` package) when it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from browser import CHROMIUM, Browser
from talmts.data.synth import write_mp4
from talmts.engine.report import write_detections_vtt
from talmts.schema import Detection
from talmts.viz import plot_timeline, write_html

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")

# rows are listed best first: 1 bounce 0.5-1.5 s, 2 spin 2.5-3.5 s, 3 cross 1.0-3.0 s
DETECTIONS = [Detection(0.5, 1.5, "bounce", 0.9), Detection(2.5, 3.5, "spin", 0.8), Detection(1.0, 3.0, "cross", 0.3)]

CLICK_ROW_2 = """(async () => {
  const video = document.querySelector('video');
  if (video.readyState < 1) await new Promise(r => video.addEventListener('loadedmetadata', r, {once: true}));
  const seeked = new Promise(r => video.addEventListener('seeked', r, {once: true}));
  document.querySelectorAll('tr[data-start]')[1].click();
  await seeked;
  video.pause();
  video.dispatchEvent(new Event('timeupdate'));
  return {
    duration: video.duration,
    time: video.currentTime,
    highlighted: Array.from(document.querySelectorAll('tr.now')).map(r => r.rowIndex),
    track: video.textTracks.length ? video.textTracks[0].mode : null,
    image_width: document.querySelector('img').naturalWidth,
  };
})()"""


def test_clicking_a_detection_plays_it_and_highlights_the_rows_under_the_playhead(tmp_path):
    rng = np.random.default_rng(0)
    write_mp4(tmp_path / "clip.mp4", (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(40)), fps=10.0)
    write_detections_vtt(DETECTIONS, tmp_path / "detections.vtt")
    page = write_html(
        tmp_path / "index.html",
        title="clip",
        detections=DETECTIONS,
        timeline_png=plot_timeline(DETECTIONS, tmp_path / "timeline.png"),
        video_src="clip.mp4",
        captions_src="detections.vtt",
    )
    with Browser(tmp_path / "profile") as browser:
        browser.open(page)
        result = browser.evaluate(CLICK_ROW_2)
    assert result["duration"] == pytest.approx(4.0, abs=0.05)  # the 4 s video loaded
    assert result["time"] == pytest.approx(2.5, abs=0.1)  # row 2 (spin) starts at 2.5 s
    assert result["highlighted"] == [2, 3]  # spin and cross hold the playhead; bounce does not
    assert result["track"] == "showing"  # the captions are on by default
    assert result["image_width"] > 0  # the embedded timeline decodes
