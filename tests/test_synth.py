"""The synthetic dataset: deterministic, valid ground truth, actions visible where annotated, motions distinct."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from talmts.cli import main as cli_main
from talmts.data.synth import (
    RATES,
    ActionPlan,
    SynthConfig,
    VideoPlan,
    generate_dataset,
    plan_video,
    render_frames,
)
from talmts.data.synth_settings import CLASS_NAMES
from talmts.data.video import iter_frames, to_rgb
from talmts.formats import read_annotations

SMALL = SynthConfig(videos=3, seed=7, height=48, min_video_s=6.0, max_video_s=8.0, max_action_s=3.0)


def saturation(frames: np.ndarray) -> np.ndarray:
    """max - min over RGB: action objects are saturated, background and distractors are grey-ish."""
    f = frames.astype(np.int16)
    return f.max(-1) - f.min(-1)


def decoded(path: Path) -> np.ndarray:
    return np.stack([to_rgb(f, None) for f in iter_frames(path)])


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, SMALL)
    return out


def test_same_seed_same_dataset(small_dataset: Path, tmp_path: Path) -> None:
    # The second copy goes through the command line, which must map its options onto the same config.
    args = ["synth", str(tmp_path), "--videos", "3", "--seed", "7", "--size", "48", "--length", "6", "8"]
    assert cli_main([*args, "--action-length", "1.5", "3", "--workers", "1", "--quiet"]) == 0
    a, b = small_dataset, tmp_path
    assert (a / "annotations.json").read_bytes() == (b / "annotations.json").read_bytes()
    names = sorted(p.name for p in (a / "videos").glob("*.mp4"))
    assert names == ["synth_0000.mp4", "synth_0001.mp4", "synth_0002.mp4"]
    for name in names:
        np.testing.assert_array_equal(decoded(a / "videos" / name), decoded(b / "videos" / name))


def test_plans_depend_on_seed_and_index_only() -> None:
    assert plan_video(SMALL, 2) == plan_video(replace(SMALL, videos=40), 2)
    assert plan_video(SMALL, 2) != plan_video(replace(SMALL, seed=8), 2)
    assert plan_video(SMALL, 1) != plan_video(SMALL, 2)


def test_annotations_read_back(small_dataset: Path) -> None:
    ann = read_annotations(small_dataset / "annotations.json")
    assert ann.classes.names == SMALL.classes
    assert [v.subset for _, v in sorted(ann.videos.items())] == ["train", "train", "train"]
    for vid, video in ann.videos.items():
        plan = plan_video(SMALL, int(vid.split("_")[1]))
        assert video.duration == pytest.approx(plan.frames / SMALL.fps)
        frames = sum(1 for _ in iter_frames(small_dataset / "videos" / f"{vid}.mp4"))
        assert frames == plan.frames  # the mp4 holds exactly the planned frames
        assert video.annotations, "every video has at least one action"
        for seg, act in zip(video.annotations, plan.actions):
            assert 0 <= seg.start < seg.end <= video.duration
            assert (seg.start, seg.end, seg.label) == pytest.approx((act.start / 25, act.end / 25, act.label))


def test_subsets_lengths_overlaps_over_many_plans() -> None:
    cfg = SynthConfig(videos=40)
    plans = [plan_video(cfg, i) for i in range(cfg.videos)]
    assert [sum(p.subset == s for p in plans) for s in ("train", "validation", "test")] == [24, 8, 8]
    lengths = np.array([(a.end - a.start) / cfg.fps for p in plans for a in p.actions])
    assert lengths.min() >= cfg.short_min_s - 0.05 and lengths.max() <= cfg.max_action_s + 0.05
    assert (lengths < 1.0).any() and (lengths > 6.0).any()  # a few frames .. many seconds
    labels = [a.label for p in plans for a in p.actions]
    assert {lab: labels.count(lab) > 20 for lab in cfg.classes} == dict.fromkeys(cfg.classes, True)
    overlapping = 0
    for p in plans:
        for i, a in enumerate(p.actions):
            for b in p.actions[i + 1 :]:
                if a.start < b.end and b.start < a.end:
                    assert a.lane != b.lane  # overlapping actions never share a lane
                    overlapping += 1
    assert 0 < overlapping < len(labels) / 2


def test_actions_visible_exactly_in_their_intervals(tmp_path: Path) -> None:
    cfg = replace(SMALL, videos=1, idle_prob=0.0, seed=3, height=64)
    generate_dataset(tmp_path, cfg)
    plan = plan_video(cfg, 0)
    frames = decoded(tmp_path / "videos" / "synth_0000.mp4")  # through H.264 and back
    sat = saturation(frames)  # [T, H, W]
    h = cfg.height
    for lane in (0, 1):
        band = sat[:, lane * h // 2 + 2 : (lane + 1) * h // 2 - 2]
        strong = (band > 90).sum(axis=(1, 2))  # saturated pixels per frame in this lane
        inside = np.zeros(plan.frames, bool)
        for a in plan.actions:
            if a.lane == lane:
                inside[a.start : a.end] = True
        margin = np.convolve(inside, np.ones(5), "same") > 0  # codec smear around the edges
        if inside.any():
            assert strong[inside].min() > 10
        assert strong[~margin].max() <= 1


def test_idle_object_is_still_outside_the_action() -> None:
    cfg = replace(SMALL, idle_prob=1.0, distractors=(0, 0), background_contrast=0.0)
    plan = next(p for p in (plan_video(cfg, i) for i in range(10)) if len(p.actions) == 1)
    frames = np.stack(list(render_frames(plan)))
    a = plan.actions[0]
    assert a.appear < a.start < a.end < a.vanish
    change = np.abs(np.diff(frames.astype(np.int16), axis=0)).sum(axis=(1, 2, 3))  # change f -> f + 1
    assert change[a.appear : a.start - 1].max() == 0 and change[a.end : a.vanish - 1].max() == 0
    assert (change[a.start : a.end - 1] > 0).mean() > 0.8


def motion_signature(label: str, seconds: float = 3.0) -> dict[str, float]:
    """Track one red bar doing ``label`` on a flat background: centroid ranges, area ratio, total turning."""
    fps, h, w = 25.0, 64, 86
    n = round(seconds * fps)
    act = ActionPlan(label, "bar", (230, 40, 40), 0, 0, 0, n, n, w / 2, 0.26 * h, float(np.mean(RATES[label])), 1, 0.3)
    plan = VideoPlan("x", "train", n, fps, h, w, 0, (128.0, 128.0, 128.0), (0, 0, 0, 0), 0.0, (act,), ())
    xs, ys, areas, angles = [], [], [], []
    for image in render_frames(plan):
        yy, xx = np.nonzero(saturation(image) > 100)
        xs.append(xx.mean())
        ys.append(yy.mean())
        areas.append(len(xx))
        cov = np.cov(np.stack([xx, yy]))
        angles.append(0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))  # axis of the bar
    turn = np.abs((np.diff(angles) + math.pi / 2) % math.pi - math.pi / 2).sum()
    vx = np.sign(np.diff(xs)[np.abs(np.diff(xs)) > 0.05])
    return {
        "x": float(np.ptp(xs)),
        "y": float(np.ptp(ys)),
        "area": max(areas) / min(areas),
        "turn": float(turn),
        "tilt": float(np.ptp(angles)),
        "x_reversals": int((np.diff(vx) != 0).sum()),
    }


def test_each_class_has_its_own_motion_with_the_same_shape() -> None:
    sig = {c: motion_signature(c) for c in CLASS_NAMES}
    still, h = 1.0, 64
    assert sig["bounce"]["y"] > 0.15 * h and sig["bounce"]["x"] < still
    assert sig["spin"]["turn"] > 2 * math.pi and sig["spin"]["x"] < still and sig["spin"]["y"] < still
    assert sig["pulse"]["area"] > 3 and sig["pulse"]["x"] < still and sig["pulse"]["y"] < still
    assert sig["cross"]["x"] > 0.5 * 86 and sig["cross"]["y"] < still and sig["cross"]["x_reversals"] <= 1
    assert sig["orbit"]["x"] > 0.15 * h and sig["orbit"]["y"] > 0.15 * h
    assert sig["shake"]["x_reversals"] >= 6 and sig["shake"]["y"] < still
    for c in ("bounce", "pulse", "cross", "orbit", "shake"):
        assert sig[c]["tilt"] < 0.5, c  # only spin turns
    for c in ("bounce", "spin", "cross", "orbit", "shake"):
        assert sig[c]["area"] < 1.5, c  # only pulse changes size


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="classes"):
        SynthConfig(classes=("bounce", "jump"))
    with pytest.raises(ValueError, match="height"):
        SynthConfig(height=47)
