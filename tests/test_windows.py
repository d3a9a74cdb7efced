"""Clip protocols: window offsets, the streaming window cutter, training windows and their targets, video_info
reading, clip planning."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talmts.data.windows import (
    WholeVideoTooLong,
    WindowCutter,
    cut_windows,
    frames_of,
    inference_offsets,
    inside_fraction,
    plan_clips,
    train_windows,
    whole_video_targets,
    window_offsets,
    window_targets,
)
from talmts.formats.video_info import VideoInfo, read_video_info
from talmts.schema import SchemaError, Segment, Video


# ------------------------------------------------------------------------------------------ offsets
def test_offsets_hand_cases():
    assert window_offsets(100, 256, 30) == [0]  # shorter than a clip: one padded window
    assert window_offsets(256, 256, 30) == [0]
    assert window_offsets(286, 256, 30) == [0, 30]  # the stride lands exactly on the end
    assert window_offsets(300, 256, 30) == [0, 30, 44]  # last window aligned to the end
    assert window_offsets(301, 256, 30) == [0, 30, 45]  # an odd end-aligned start: no grid by default
    assert inference_offsets(600, 256, 128) == [0, 128, 256, 344]


def test_offsets_on_a_grid_round_the_last_window_up():
    # one backbone pass per video: every start a multiple of 8; the end-aligned window moves right, into padding
    assert window_offsets(300, 256, 32, align=8) == [0, 32, 48]  # 300 - 256 = 44 -> 48: 4 frames of padding
    assert window_offsets(288, 256, 32, align=8) == [0, 32]  # 32 is on the grid: no extra window
    assert window_offsets(100, 256, 32, align=8) == [0]
    assert inference_offsets(601, 128, 64, align=8) == [0, 64, 128, 192, 256, 320, 384, 448, 480]
    assert inference_offsets(601, 128, 64, "whole", align=8) == [0]


@pytest.mark.parametrize("n", [1, 5, 16, 17, 23, 24, 40, 41, 100])
@pytest.mark.parametrize(("clip", "stride"), [(16, 8), (16, 5), (8, 8)])
def test_cut_windows_streams_the_protocol_windows(n, clip, stride):
    frames = np.arange(n)[:, None] * np.ones((1, 2))  # frame i holds the value i
    got = list(cut_windows(((f, -f) for f in frames), clip, stride))
    assert [o for o, _ in got] == inference_offsets(n, clip, stride) == _offsets_reference(n, clip, stride)
    for offset, (a, b) in got:
        assert np.array_equal(a[:, 0], np.arange(offset, min(offset + clip, n)))
        assert np.array_equal(b, -a)
    stored = list(cut_windows(frames_of([frames, -frames]), clip, stride))  # the same cutter over stored arrays
    assert [o for o, _ in stored] == [o for o, _ in got]
    assert all(np.array_equal(w[0], g[0]) and np.array_equal(w[1], g[1]) for (_, w), (_, g) in zip(stored, got))


def test_cut_windows_whole_protocol_and_empty_input():
    assert list(cut_windows(iter([]), 16, 8)) == []
    frames = np.arange(10)[:, None]
    ((offset, (w,)),) = cut_windows(frames_of([frames]), 16, 8, "whole")
    assert offset == 0 and np.array_equal(w, frames)
    assert inference_offsets(1000, 16, 8, "whole") == [0]
    with pytest.raises(WholeVideoTooLong, match=r"v7: more than data.clip_frames=8 .*--max-frames 8"):
        list(cut_windows(frames_of([frames]), 8, 8, "whole", video="v7"))
    # exactly one window's worth under the whole protocol: one window, not two
    ((offset, (w,)),) = cut_windows(frames_of([frames]), 10, 4, "whole")
    assert offset == 0 and np.array_equal(w, frames)
    # the smallest clip and stride are 1; below that, the message names both
    assert [o for o, _ in cut_windows(frames_of([frames[:3]]), 1, 1)] == [0, 1, 2]


def test_whole_protocol_message_names_the_default_video():
    frames = np.arange(10)[:, None]
    with pytest.raises(WholeVideoTooLong, match=r"^video: more than data.clip_frames=8 "):
        list(cut_windows(frames_of([frames]), 8, 8, "whole"))
    cutter = WindowCutter(8, 8, "whole")
    for f in frames[:8]:
        assert cutter.push((f,)) is None
    with pytest.raises(WholeVideoTooLong, match=r"^video: more than data.clip_frames=8 "):
        cutter.push((frames[8],))


def test_earliest_next_offset_is_the_end_aligned_start_or_zero():
    # clip 4, stride 3: regular windows at 0, 3, 6, ...; should the input end after n frames, the last one is n - 4
    cutter = WindowCutter(4, 3)
    assert cutter.earliest_next_offset() == 0  # nothing pushed yet
    frame = (np.zeros(1),)
    for n, want in ((1, 0), (3, 0), (4, 0), (5, 1), (7, 3), (9, 5)):
        while cutter.count < n:
            cutter.push(frame)
        assert cutter.earliest_next_offset() == want, n


def test_clip_and_stride_below_one_are_refused():
    frames = np.arange(10)[:, None]
    for clip, stride in ((0, 4), (4, 0)):
        with pytest.raises(ValueError, match=rf"^clip \({clip}\) and stride \({stride}\) must be >= 1$"):
            list(cut_windows(frames_of([frames]), clip, stride))
        with pytest.raises(ValueError, match=rf"^clip \({clip}\) and stride \({stride}\) must be >= 1$"):
            window_offsets(10, clip, stride)


def test_frames_of_stops_at_the_shortest_array():
    a, b = np.zeros((5, 2)), np.ones((4, 2))
    assert len(list(frames_of([a, b]))) == 4


def _offsets_reference(n: int, clip: int, stride: int) -> list[int]:
    out, o = [], 0
    while True:
        if o + clip >= n:  # this window reaches the end: align it and stop
            out.append(max(n - clip, 0))
            break
        out.append(o)
        o += stride
    return sorted(set(out))


@given(st.integers(1, 2000), st.integers(1, 300), st.integers(1, 300))
@settings(max_examples=300, deadline=None)
def test_offsets_match_reference_and_cover_the_video(n, clip, stride):
    offs = window_offsets(n, clip, stride)
    assert offs == _offsets_reference(n, clip, stride)
    assert offs[-1] == max(n - clip, 0) and all(b - a <= stride for a, b in zip(offs, offs[1:]))
    if stride <= clip:  # the protocols' case: every frame lies in some window
        covered = np.zeros(n, bool)
        for o in offs:
            covered[o : o + clip] = True
        assert covered.all()


# ------------------------------------------------------------------------------------------ targets
def test_train_windows_hand_case():
    # 600 frames, clip 256, stride 30: offsets 0, 30, ..., 330, 344
    seg = np.array([[10.0, 50.0], [240.0, 270.0], [250.0, 270.0], [400.0, 590.0]])
    lab = np.array([1, 2, 3, 4])
    wins = dict((o, t) for o, t in train_windows(600, seg, lab, 256, 30, 0.5))
    # window 0 holds [10, 50] wholly; [240, 270] is 16/30 inside (joins, clipped); [250, 270] is 6/20 inside (not)
    np.testing.assert_allclose(wins[0], [[10, 50, 1], [240, 256, 2]])
    # [400, 590] (190 frames) is wholly inside windows with offset in [334, 400]: only the aligned one, 344
    np.testing.assert_allclose(wins[344], [[56, 246, 4]])
    # offsets 30..240 hold [240, 270] wholly (offset 14..240); at 240 [400, 590] is 96/190 inside and joins
    assert sorted(wins) == [0, 30, 60, 90, 120, 150, 180, 210, 240, 344]
    np.testing.assert_allclose(wins[240], [[0, 30, 2], [10, 30, 3], [160, 256, 4]])
    np.testing.assert_allclose(wins[210], [[30, 60, 2], [40, 60, 3]])  # [400, 590]: 66/190 inside, left out


def test_afsd_left_edge_drops_an_action_starting_on_the_window_edge():
    seg, lab = np.array([[0.0, 40.0]]), np.array([5])
    assert [o for o, _ in train_windows(300, seg, lab, 256, 30)] == [0]
    assert train_windows(300, seg, lab, 256, 30, afsd_left_edge=True) == []  # AFSD: left edge is offset + 1
    t = window_targets(np.array([[0.0, 40.0]]), lab, 0, 256, 0.5, afsd_left_edge=True)
    np.testing.assert_allclose(t, [[1, 40, 5]])  # 39/40 inside, clipped to [1, 256]
    # offset 30: AFSD's window is [31, 286], so an action starting at 30.5 is not wholly inside it
    seg = np.array([[30.5, 40.0], [20.0, 31.5]])
    wins = dict(train_windows(300, seg, np.array([5, 6]), 256, 30, afsd_left_edge=True))
    assert sorted(wins) == [0]  # [30.5, 40] starts before 31: not wholly inside the window at 30
    np.testing.assert_allclose(wins[0], [[30.5, 40, 5], [20, 31.5, 6]])
    wins = dict(train_windows(300, np.array([[31.0, 40.0]]), np.array([5]), 256, 30, afsd_left_edge=True))
    assert sorted(wins) == [0, 30]  # starting on offset + 1: wholly inside AFSD's window at 30
    np.testing.assert_allclose(wins[30], [[1, 10, 5]])
    t = window_targets(np.array([[29.0, 41.0]]), [5], 30, 256, 0.5, afsd_left_edge=True)
    np.testing.assert_allclose(t, [[1, 11, 5]])  # 10 / 12 inside [31, 286], clipped to the edge 1
    assert window_targets(np.array([[20.0, 40.0]]), [5], 30, 256, 0.5, afsd_left_edge=True).shape == (0, 3)  # 9 / 20
    # train_windows passes the edge on: [25, 40] joins the window at 30 clipped to 1, not 0
    wins = dict(
        train_windows(300, np.array([[25.0, 40.0], [40.0, 50.0]]), np.array([5, 6]), 256, 30, afsd_left_edge=True)
    )
    np.testing.assert_allclose(wins[30], [[1, 10, 5], [10, 20, 6]])


def test_inside_fraction_is_float64_whatever_the_input_dtype():
    # 1 of 3 frames inside [0, 1]: exactly the float64 1 / 3, also from float32 or integer frames
    for dtype in (np.float32, np.int64, np.float64):
        got = inside_fraction(np.array([[0, 3], [-2, 4]], dtype), 0, 1)
        assert got.dtype == np.float64 and got.tolist() == [1 / 3, 1 / 6]


def test_zero_length_actions_are_dropped_without_a_division_warning():
    # a zero-length segment has no inside fraction (0 / 0): it is dropped before the division, silently
    seg, lab = np.array([[40.0, 40.0], [10.0, 20.0], [400.0, 400.0]]), np.array([1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(whole_video_targets(seg, lab, 256), [[10, 20, 2]])
        assert [o for o, _ in train_windows(300, seg, lab, 256, 30)] == [0]
        infos = {"a": VideoInfo("a", 1.0, 1.0, 500.0, 500)}  # rate 1: seconds are frames
        video = [_video("a", [(40.0, 40.0, "x"), (10.0, 20.0, "x"), (400.0, 400.0, "x")])]
        for protocol in ("sliding", "whole"):
            plans = plan_clips(
                video, infos, lambda _: 1, protocol=protocol, clip=512, stride=256, min_overlap=0.5, train=False
            )
            np.testing.assert_allclose(plans[0].targets, [[10, 20, 1]])


def test_window_targets_boundaries():
    # exactly min_overlap inside joins; touching the window joins nothing, even at min_overlap 0
    seg, lab = np.array([[240.0, 272.0], [256.0, 300.0], [-10.0, 0.0]]), np.array([1, 2, 3])
    np.testing.assert_allclose(window_targets(seg, lab, 0, 256, 0.5), [[240, 256, 1]])
    np.testing.assert_allclose(window_targets([[0.0, 10.0]], [4], 0, 256, 0.5), [[0, 10, 4]])  # no AFSD edge by default
    np.testing.assert_allclose(window_targets(seg, lab, 0, 256, 0.0), [[240, 256, 1]])
    assert window_targets(seg, lab, 0, 256, 0.51).shape == (0, 3)
    for empty in (window_targets(np.zeros((0, 2)), [], 0, 256, 0.5), window_targets(seg[1:], lab[1:], 0, 256, 0.5)):
        assert empty.shape == (0, 3) and empty.dtype == np.float32
    assert window_targets(seg, lab, 0, 256, 0.5).dtype == np.float32


def test_train_windows_defaults_and_zero_length_actions():
    seg = np.array([[10.0, 20.0], [250.0, 262.0]])  # the second: 6 / 12 inside the window at 0
    wins = dict(train_windows(300, seg, np.array([2, 1]), 256, 30))  # min_overlap 0.5 by default
    np.testing.assert_allclose(wins[0], [[10, 20, 2], [250, 256, 1]])
    # 301 frames: windows at 0, 30 and the end-aligned 45 (no grid by default); [45, 301] fills the last one exactly
    assert [(o, t.tolist()) for o, t in train_windows(301, np.array([[45.0, 301.0]]), np.array([4]), 256, 30)] == [
        (45, [[0.0, 256.0, 4.0]])
    ]
    # a zero-length action is no action: no window is kept for it alone
    assert train_windows(300, np.array([[40.0, 40.0]]), np.array([1]), 256, 30) == []


def test_float32_frames_are_compared_and_shifted_exactly_far_into_a_long_video():
    # float32 frames past 2**24 are even numbers; the window starts are integers compared exactly (in float64):
    # the action [2**24, 2**24 + 100] lies wholly in the window at 2**24, not in the end-aligned one at 2**24 + 1
    n = 2**24 + 257
    wins = train_windows(n, np.array([[2**24, 2**24 + 100]], np.float32), np.array([3]), 256, 2**22)
    assert [o for o, _ in wins] == [2**24]
    np.testing.assert_allclose(wins[0][1], [[0, 100, 3]])
    # the same action seen from the window at 2**24 + 1: 99 of its 100 frames inside, [0, 99] in window frames
    t = window_targets(np.array([[2**24, 2**24 + 100]], np.float32), np.array([3]), 2**24 + 1, 256, 0.5)
    np.testing.assert_array_equal(t, [[0, 99, 3]])


def _targets_reference(seg, lab, offset, clip, min_overlap):
    """Exact rational arithmetic, one segment at a time."""
    rows = []
    for (s, e), c in zip(seg.tolist(), lab.tolist()):
        s, e = Fraction(s), Fraction(e)
        lo, hi = max(s, Fraction(offset)), min(e, Fraction(offset + clip))
        if hi > lo and (hi - lo) / (e - s) >= Fraction(min_overlap):
            rows.append([float(lo - offset), float(hi - offset), c])
    return np.array(rows, np.float64).reshape(-1, 3)


segments_st = st.lists(
    st.tuples(st.integers(0, 1190), st.integers(1, 400)).map(lambda p: (p[0] / 2, p[0] / 2 + p[1] / 2)),
    min_size=1,
    max_size=8,
)


@given(st.integers(50, 800), segments_st, st.sampled_from([0.3, 0.5, 0.75]))
@settings(max_examples=150, deadline=None)
def test_train_windows_match_reference(n, segs, min_overlap):
    seg = np.array(segs, np.float64)
    lab = np.arange(1, len(seg) + 1)
    got = train_windows(n, seg, lab, 128, 16, min_overlap)
    expected = []
    for o in _offsets_reference(n, 128, 16):
        if any(s >= o and e <= o + 128 for s, e in segs):
            expected.append((o, _targets_reference(seg, lab, o, 128, min_overlap)))
    assert [o for o, _ in got] == [o for o, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)  # float32 targets


def test_whole_video_targets_clip_and_drop_empty():
    seg = np.array([[10.0, 20.0], [5.0, 5.0], [760.0, 790.0], [800.0, 900.0], [30.0, 12.0]])
    t = whole_video_targets(seg, np.array([1, 1, 2, 3, 1]), 768)  # [30, 12] ends before it starts: dropped
    np.testing.assert_allclose(t, [[10, 20, 1], [760, 768, 2]])


# ------------------------------------------------------------------------------------------ video info
def test_rates_convert_seconds_to_sample_frames():
    info = VideoInfo("v", fps=30.0, sample_fps=10.0, count=5091.0, sample_count=1697)
    assert info.rate("sliding") == pytest.approx(30.0 * 1697 / 5091)
    assert 67.5 * info.rate("sliding") == pytest.approx(2025 * 1697 / 5091)  # AFSD: startFrame * sample/count
    dyn = VideoInfo("a", fps=30.0, sample_fps=7.2, count=3200.0, sample_count=768)
    assert dyn.rate("whole") == 7.2


def test_read_video_info_layouts(tmp_path):
    afsd = tmp_path / "video_info.csv"
    afsd.write_text("video,fps,sample_fps,count,sample_count\nv1,30.0,10.0,5091.0,1697\nv2,25,10,250,100\n")
    rows = read_video_info(afsd)
    assert rows["v1"] == VideoInfo("v1", 30.0, 10.0, 5091.0, 1697) and rows["v2"].sample_count == 100
    bsn = tmp_path / "video_info_new.csv"
    bsn.write_text(
        "video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
        "v_abc,3072,102.4,30.0,30.0,training,3072\nv_short,300,10.0,30.0,30.0,validation,304\n"
    )
    rows = read_video_info(bsn, max_frames=768)
    assert rows["abc"].sample_count == 768 and rows["abc"].sample_fps == pytest.approx(7.5)
    assert rows["short"].sample_count == 300 and rows["short"].sample_fps == 30.0  # short videos keep their rate
    assert read_video_info(bsn)["abc"].sample_count == 3072


@pytest.mark.parametrize(
    "text, field",
    [
        ("video,fps,sample_fps,count,sample_count\nv1,30,10,abc,10\n", "count"),
        ("video,fps,sample_fps,count,sample_count\nv1,30,10,0,10\n", "count"),
        ("video,fps,sample_fps,count,sample_count\nv1,30,10,90,10\nv1,30,10,90,10\n", "video"),
        ("name,frames\nv1,10\n", "name,frames"),
    ],
)
def test_read_video_info_errors_name_the_record(tmp_path, text, field):
    p = tmp_path / "video_info.csv"
    p.write_text(text)
    with pytest.raises(SchemaError) as e:
        read_video_info(p)
    assert str(p) in str(e.value) and field in str(e.value)


# ------------------------------------------------------------------------------------------ planning
def _video(vid, segs, subset="train"):
    return Video(vid, subset, annotations=[Segment(s, e, lab) for s, e, lab in segs])


def test_plan_clips_sliding_converts_seconds_with_each_videos_rate():
    infos = {
        "a": VideoInfo("a", 30.0, 10.0, 3000.0, 1000),  # rate 10
        "b": VideoInfo("b", 25.0, 10.0, 1000.0, 400),  # rate 10
        "c": VideoInfo("c", 30.0, 10.0, 300.0, 100),  # no action wholly inside any window
    }
    videos = [_video("a", [(2.0, 4.0, "x")]), _video("b", [(30.0, 31.0, "y")]), _video("c", [])]
    index = {"x": 1, "y": 2}.__getitem__
    plans = plan_clips(videos, infos, index, protocol="sliding", clip=256, stride=30, min_overlap=0.5, train=True)
    assert {p.window.video for p in plans} == {"a", "b"}
    a0 = next(p for p in plans if p.window.video == "a" and p.window.offset == 0)
    np.testing.assert_allclose(a0.targets, [[20, 40, 1]])
    assert a0.rate == pytest.approx(10.0) and a0.num_frames == 1000
    test = plan_clips(videos, infos, index, protocol="sliding", clip=256, stride=128, min_overlap=0.5, train=False)
    assert [(p.window.video, p.window.offset) for p in test] == [
        ("a", 0), ("a", 128), ("a", 256), ("a", 384), ("a", 512), ("a", 640), ("a", 744),
        ("b", 0), ("b", 128), ("b", 144), ("c", 0),
    ]  # fmt: skip
    # "b" at 10 frames/s: [24.5, 26.5] s is frames [245, 265], 11 / 20 inside the window at 0: joins at
    # min_overlap 0.5, not at 0.6; [5, 3] s ends before it starts and never joins
    half = [_video("b", [(1.0, 2.0, "y"), (24.5, 26.5, "x"), (5.0, 3.0, "x")])]
    for overlap, want in ((0.5, [[10, 20, 2], [245, 256, 1]]), (0.6, [[10, 20, 2]])):
        for train in (True, False):
            got = plan_clips(
                half, infos, index, protocol="sliding", clip=256, stride=128, min_overlap=overlap, train=train
            )
            first = next(p for p in got if p.window.offset == 0)
            np.testing.assert_allclose(sorted(first.targets.tolist()), want)


def test_plan_clips_whole_protocol():
    # "a": 760 frames sampled at a nominal 7.5 fps (the sliding rate would be 30 * 760 / 3072 = 7.42)
    infos = {"a": VideoInfo("a", 30.0, 7.5, 3072.0, 760), "b": VideoInfo("b", 30.0, 30.0, 300.0, 300)}
    videos = [_video("a", [(10.0, 20.0, "x")]), _video("b", [])]
    plans = plan_clips(videos, infos, lambda _: 1, protocol="whole", clip=768, stride=768, min_overlap=0.5, train=True)
    assert len(plans) == 1 and plans[0].window.offset == 0 and plans[0].window.length == 768
    assert plans[0].rate == 7.5 and plans[0].num_frames == 760
    np.testing.assert_allclose(plans[0].targets, [[75, 150, 1]])  # seconds * sample_fps
    test = plan_clips(videos, infos, lambda _: 1, protocol="whole", clip=768, stride=768, min_overlap=0.5, train=False)
    assert [p.window.video for p in test] == ["a", "b"]
    too_long = {"a": VideoInfo("a", 30.0, 30.0, 3072.0, 3072)}
    with pytest.raises(ValueError, match="max-frames"):
        plan_clips(videos[:1], too_long, lambda _: 1, protocol="whole", clip=768, stride=768, min_overlap=0.5,
                   train=True)  # fmt: skip


def test_plan_clips_align_places_the_last_window_on_the_grid():
    # 1001 frames at rate 10, clip 256, stride 128: regular starts 0..640; the end-aligned one at 1001 - 256 = 745,
    # on a grid of 8 rounded up to 752. The action [90, 100] s = frames [900, 1000] lies wholly in that window only.
    infos = {"a": VideoInfo("a", 30.0, 10.0, 3003.0, 1001)}
    videos = [_video("a", [(90.0, 100.0, "x")])]
    kw = dict(protocol="sliding", clip=256, stride=128, min_overlap=0.5)
    regular = [0, 128, 256, 384, 512, 640]
    for align, last in ((None, 745), (1, 745), (8, 752)):
        extra = {} if align is None else {"align": align}
        test = plan_clips(videos, infos, lambda _: 1, train=False, **kw, **extra)
        assert [p.window.offset for p in test] == regular + [last]
        np.testing.assert_allclose(test[-1].targets, [[900 - last, 1000 - last, 1]])
        (train,) = plan_clips(videos, infos, lambda _: 1, train=True, **kw, **extra)
        assert train.window.offset == last
        for p in [*test, train]:  # every clip: the clip length, the video's rate (10) and frame count
            assert (p.window.length, p.rate, p.num_frames) == (256, pytest.approx(10.0), 1001)
        np.testing.assert_allclose(train.targets, [[900 - last, 1000 - last, 1]])


def test_plan_clips_whole_protocol_takes_a_video_of_exactly_one_clip():
    infos = {"a": VideoInfo("a", 30.0, 30.0, 768.0, 768)}
    videos = [_video("a", [(1.0, 2.0, "x")])]
    (plan,) = plan_clips(
        videos, infos, lambda _: 1, protocol="whole", clip=768, stride=768, min_overlap=0.5, train=True
    )
    assert plan.num_frames == 768 and plan.window.offset == 0
    np.testing.assert_allclose(plan.targets, [[30, 60, 1]])
    with pytest.raises(ValueError, match="769 prepared frames exceed data.clip_frames=768"):
        plan_clips(
            videos, {"a": VideoInfo("a", 30.0, 30.0, 769.0, 769)}, lambda _: 1, protocol="whole", clip=768,
            stride=768, min_overlap=0.5, train=True,
        )  # fmt: skip
