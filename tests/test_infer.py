"""Streaming inference pieces: windows without knowing the length, decoding and flow on the fly, equal to the
whole-video functions that `talmts prepare` and the datasets use."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talmts.data.flow import compute_flow
from talmts.data.synth import write_mp4
from talmts.data.transforms import make_clip
from talmts.data.video import read_video
from talmts.data.windows import test_windows as protocol_windows
from talmts.engine.detect import DecodeInfo, sampled_frames, sliding_windows, with_flow
from talmts.engine.infer import array_windows, window_tensor


@pytest.mark.parametrize("n", [1, 5, 16, 17, 23, 24, 40, 41, 100])
@pytest.mark.parametrize(("clip", "stride"), [(16, 8), (16, 5), (8, 8)])
def test_streamed_windows_match_the_protocol(n, clip, stride):
    frames = np.arange(n)[:, None] * np.ones((1, 2))  # frame i holds the value i
    got = list(sliding_windows(((f, -f) for f in frames), clip, stride))
    assert [o for o, _ in got] == protocol_windows(n, clip, stride)
    for offset, (a, b) in got:
        assert np.array_equal(a[:, 0], np.arange(offset, min(offset + clip, n)))
        assert np.array_equal(b, -a)
    whole = list(array_windows([frames], clip, stride))
    assert [o for o, _ in whole] == [o for o, _ in got]
    assert all(np.array_equal(w[0], g[0]) for (_, w), (_, g) in zip(whole, got))


def test_no_frames_no_windows():
    assert list(sliding_windows(iter([]), 16, 8)) == []


def test_window_tensor_is_the_dataset_transform():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    x = window_tensor(frames[4:10], 8, 8)
    assert torch.equal(x, make_clip(frames, 4, 8, 8, train=False))
    assert x.shape == (3, 8, 8, 8) and torch.all(x[:, 6:] == 0)  # 2 padded frames


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frames = [np.roll(base, 2 * i, axis=1) for i in range(37)]  # panning texture: real motion for the flow
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(path, iter(frames), fps=25.0)
    return path


def test_streamed_decoding_equals_read_video(small_video):
    info = DecodeInfo()
    streamed = np.stack(list(sampled_frames(small_video, {"fps": 10.0, "size": 32}, info)))
    whole = read_video(small_video, 10.0, 32)
    assert np.array_equal(streamed, whole.frames)
    assert (info.fps, info.sample_fps, info.count, info.sample_count) == (
        whole.fps,
        whole.sample_fps,
        whole.count,
        whole.sample_count,
    )


def test_streamed_flow_equals_compute_flow(small_video):
    frames = read_video(small_video, 10.0, 32).frames
    pairs = list(with_flow(iter(frames), "dis"))
    assert np.array_equal(np.stack([p[0] for p in pairs]), frames)
    assert np.array_equal(np.stack([p[1] for p in pairs]), compute_flow(frames, "dis"))
    (one,) = list(with_flow(iter(frames[:1]), "dis"))
    assert np.array_equal(one[1], compute_flow(frames[:1], "dis")[0])


def test_test_data_prepared_unlike_the_training_data_is_an_error(tmp_path):
    import json

    from talmts.config import load_config
    from talmts.engine.infer import Stream, check_prepared_like_training
    from talmts.schema import ClassMap

    trained = {"fps": 10.0, "size": 112, "max_frames": None, "flow": "tvl1"}
    rgb = Stream(
        torch.nn.Identity(), load_config(None, ["data.modality=rgb"]), ClassMap(("a",)), "rgb.pt", None, trained
    )
    flow = Stream(
        torch.nn.Identity(), load_config(None, ["data.modality=flow"]), ClassMap(("a",)), "flow.pt", None, trained
    )
    check_prepared_like_training([rgb, flow], tmp_path)  # no prepare.json: nothing to compare
    (tmp_path / "prepare.json").write_text(json.dumps(trained))
    check_prepared_like_training([rgb, flow], tmp_path)
    (tmp_path / "prepare.json").write_text(json.dumps({**trained, "flow": "dis"}))
    check_prepared_like_training([rgb], tmp_path)  # the flow method does not matter to an RGB stream
    with pytest.raises(ValueError, match=r"prepare\.json: flow='dis', but flow\.pt was trained on .* flow='tvl1'"):
        check_prepared_like_training([rgb, flow], tmp_path)
    (tmp_path / "prepare.json").write_text(json.dumps({**trained, "fps": 5.0}))
    with pytest.raises(ValueError, match=r"fps=5\.0, but rgb\.pt .* fps=10\.0"):
        check_prepared_like_training([rgb], tmp_path)
    old = Stream(torch.nn.Identity(), rgb.cfg, rgb.classes, "old.pt")  # a checkpoint without the record
    check_prepared_like_training([old], tmp_path)
