"""``talmts view``'s pages in a real browser: headless Chromium (Debian's `chromium` package) when it is installed.

Each test also writes a screenshot of its page kind for a person to look at: into $TALMTS_SCREENSHOTS when set,
otherwise into pytest's temporary folder (``screenshots0``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.browser import CHROMIUM, Browser
from support.view_fixtures import view_site

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return view_site(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with Browser(tmp_path_factory.mktemp("profile")) as b:
        b.set_viewport(1200, 900)
        yield b


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("TALMTS_SCREENSHOTS")
    return Path(where) if where else tmp_path_factory.mktemp("screenshots")


def center_of(browser: Browser, selector: str) -> tuple[float, float]:
    box = browser.evaluate(
        f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView({{block: 'center'}});"
        " const r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    return box[0], box[1]


def rows(browser: Browser) -> list[str]:
    return browser.evaluate("Array.from(document.querySelectorAll('#videos tbody tr')).map(r => r.dataset.video)")


def test_the_index_sorts_by_the_clicked_column(site, browser, shots):
    browser.open(site / "index.html")
    assert rows(browser) == ["clip", "long", "quiet"]  # ground-truth order until a column is clicked
    browser.click(*center_of(browser, "th[data-key=missed]"))
    assert rows(browser) == ["long", "quiet", "clip"]  # missed 2, 1, 0: numbers start from the largest
    browser.click(*center_of(browser, "th[data-key=ap]"))
    assert rows(browser) == ["clip", "long", "quiet"]  # AP 100, 33, 0
    browser.click(*center_of(browser, "th[data-key=ap]"))
    assert rows(browser) == ["quiet", "long", "clip"]  # again: ascending
    assert browser.evaluate("document.querySelector('th[data-key=ap] .arrow').textContent") == "▲"
    browser.screenshot(shots / "index.png")


OPEN_CLIP = """(async () => {
  const video = document.querySelector('video');
  if (video.readyState < 2) await new Promise(r => video.addEventListener('loadeddata', r, {once: true}));
  video.muted = true;
  return video.duration;
})()"""

LANES = """(() => ({
  lanes: Array.from(document.querySelectorAll('#timeline rect.lane')).map(r => r.dataset.label),
  bars: document.querySelectorAll('#timeline rect.det').length,
  rows: document.querySelectorAll('#detections tbody tr').length,
  shown: document.getElementById('shown').textContent,
}))()"""


def slide(browser: Browser, value: float) -> dict:
    browser.evaluate(
        f"(() => {{ const s = document.getElementById('threshold'); s.value = {value};"
        " s.dispatchEvent(new Event('input', {bubbles: true})); })()"
    )
    return browser.evaluate(LANES)


def test_the_score_slider_filters_the_lanes_and_the_table(site, browser):
    browser.open(site / "videos" / "clip.html")
    assert browser.evaluate(OPEN_CLIP) == pytest.approx(4.0, abs=0.05)
    start = browser.evaluate(LANES)
    assert start["lanes"] == ["bounce", "cross", "spin"] and start["bars"] == start["rows"] == 4  # scores >= 0.1
    high = slide(browser, 0.6)  # keeps the two true positives (0.9, 0.8)
    assert high["lanes"] == ["bounce", "spin"]  # cross has no ground truth and no detection left: its lane goes
    assert high["bars"] == high["rows"] == 2
    assert high["shown"].startswith("2 of 5 detections shown (2 true, 0 false")
    everything = slide(browser, 0.0)
    assert everything["bars"] == everything["rows"] == 5  # the background detection (0.05) too


PLAY = """(async () => {
  const video = document.querySelector('video');
  const x = () => Number(document.getElementById('playhead').getAttribute('x1'));
  video.currentTime = 0;
  await new Promise(r => video.addEventListener('seeked', r, {once: true}));
  const before = x();
  await video.play();
  await new Promise(r => { const f = () => video.currentTime > 0.5 ? r() : requestAnimationFrame(f); f(); });
  video.pause();
  await new Promise(r => requestAnimationFrame(r));
  return {before, after: x(), expected: window.talmtsView.geometry().x(video.currentTime), t: video.currentTime};
})()"""


def test_playing_moves_the_playhead(site, browser):
    browser.open(site / "videos" / "clip.html")
    browser.evaluate(OPEN_CLIP)
    result = browser.evaluate(PLAY)
    assert result["t"] > 0.5
    assert result["after"] > result["before"] + 10  # pixels: 0.5 s of 4 s on a ~1000 px axis is ~130 px
    assert result["after"] == pytest.approx(result["expected"], abs=0.5)


ARM_SEEK = """(() => {  // not awaited here: the promise waits for the click that follows
  window.__seeked = new Promise(r => document.querySelector('video').addEventListener('seeked', r, {once: true}));
})()"""
AFTER_SEEK = """(async () => {
  await window.__seeked;
  const video = document.querySelector('video');
  video.pause();
  return {
    time: video.currentTime,
    picked: Array.from(document.querySelectorAll('#detections tr.picked')).map(r => Number(r.dataset.id)),
    now: Array.from(document.querySelectorAll('#detections tr.now')).map(r => Number(r.dataset.id)),
  };
})()"""


def test_clicking_a_lane_seeks_and_hovering_tells_the_match(site, browser, shots):
    browser.open(site / "videos" / "clip.html")
    browser.evaluate(OPEN_CLIP)
    browser.evaluate(ARM_SEEK)
    browser.click(*center_of(browser, "#timeline rect.det[data-id='1']"))  # spin 2.4-3.5 s, a true positive
    result = browser.evaluate(AFTER_SEEK)
    assert result["time"] == pytest.approx(2.4, abs=0.1)
    assert result["picked"] == [1]
    assert 1 in result["now"] and 3 in result["now"]  # spin and cross (1-3 s) hold the playhead; bounce does not
    # a click on the empty part of the lane seeks to the time under the mouse
    x_3s = browser.evaluate("window.talmtsView.geometry().x(3.0)")
    lane = browser.evaluate("document.querySelector('#timeline').getBoundingClientRect().top")
    left = browser.evaluate("document.querySelector('#timeline').getBoundingClientRect().left")
    browser.evaluate(ARM_SEEK)
    browser.click(left + x_3s, lane + 60)
    assert browser.evaluate(AFTER_SEEK)["time"] == pytest.approx(3.0, abs=0.1)
    browser.hover(*center_of(browser, "#timeline rect.det[data-id='1']"))
    tip = browser.evaluate("(() => { const t = document.getElementById('tip'); return [t.hidden, t.textContent]; })()")
    assert tip[0] is False
    assert "true positive" in tip[1] and "matches ground truth #2 spin 2.50–3.50 s, tIoU 0.91" in tip[1]
    browser.evaluate("window.scrollTo(0, 0)")
    browser.screenshot(shots / "video.png")


def test_the_diagnosis_page_draws_its_charts(site, browser, shots):
    browser.open(site / "diagnosis.html")
    charts = browser.evaluate("Array.from(document.querySelectorAll('svg.chart')).map(s => s.id)")
    assert charts == [
        "chart-profile",
        "chart-gain",
        "chart-length",
        "chart-coverage",
        "chart-instances",
        "chart-classes",
    ]
    # the profile stacks every type present in 1G and 2G; its bars of one group sum to the full height
    heights = browser.evaluate(
        "Array.from(document.querySelectorAll('#chart-profile rect.bar[data-category=\"1G\"]'))"
        ".reduce((a, r) => a + Number(r.getAttribute('height')), 0)"
    )
    assert heights == pytest.approx(
        browser.evaluate("document.querySelector('#chart-profile').viewBox.baseVal.height - 76")
    )
    counts = browser.evaluate(
        "Array.from(document.querySelectorAll('#types tbody tr')).map(r => r.cells[1].textContent)"
    )
    assert counts == ["3", "1", "1", "1", "1", "2"]
    assert browser.evaluate("document.querySelectorAll('#chart-classes rect.bar').length") == 3
    browser.screenshot(shots / "diagnosis.png")
