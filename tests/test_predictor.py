"""The inference path: decoding and flow on the fly equal to what `talmts prepare` stores, the test-time transform,
the prepare-record check, and the predictor against a slow reference written another way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talmts.data.flow import compute_flow, flow_to_uint8, make_flow_fn, with_flow
from talmts.data.synth import write_mp4
from talmts.data.transforms import make_clip
from talmts.data.video import DecodeInfo, read_video, sampled_frames
from talmts.engine.inference.predictor import window_tensor


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
    streamed = np.stack(list(sampled_frames(small_video, 10.0, 32, info=info)))
    whole = read_video(small_video, 10.0, 32)
    assert np.array_equal(streamed, whole.frames)
    assert (info.fps, info.sample_fps, info.count, info.sample_count) == (
        whole.fps,
        whole.sample_fps,
        whole.count,
        whole.sample_count,
    )


def test_flow_is_consecutive_gray_pairs(small_video):
    import cv2

    frames = read_video(small_video, 10.0, 32).frames
    fn = make_flow_fn("dis")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    expect = [flow_to_uint8(fn(gray[i], gray[i + 1])) for i in range(len(frames) - 1)]
    expect.append(expect[-1])  # the last frame repeats the last flow
    pairs = list(with_flow(iter(frames), "dis"))
    assert np.array_equal(np.stack([p[0] for p in pairs]), frames)
    assert np.array_equal(np.stack([p[1] for p in pairs]), np.stack(expect))
    assert np.array_equal(compute_flow(frames, "dis"), np.stack(expect))
    (one,) = list(with_flow(iter(frames[:1]), "dis"))
    assert np.all(one[1] == 128)  # a lone frame has no motion


def test_test_data_prepared_unlike_the_training_data_is_an_error(tmp_path):
    from talmts.data.record import (
        PreparationMismatch,
        PrepareOptions,
        check_same_preparation,
        read_record,
        write_record,
    )

    trained = PrepareOptions(fps=10.0, size=112, flow="tvl1")

    def check(flow: bool, source: str) -> None:
        check_same_preparation(trained, read_record(tmp_path), flow=flow, where="prepare.json", source=source)

    check(True, "flow.pt")  # no prepare.json: nothing to compare
    write_record(tmp_path, trained)
    check(True, "flow.pt")
    write_record(tmp_path, PrepareOptions(fps=10.0, size=112, flow="dis"))
    check(False, "rgb.pt")  # the flow method does not matter to an RGB stream
    with pytest.raises(
        PreparationMismatch, match=r"prepare\.json: flow='dis', but flow\.pt was trained on .* flow='tvl1'"
    ):
        check(True, "flow.pt")
    write_record(tmp_path, PrepareOptions(fps=5.0))
    with pytest.raises(PreparationMismatch, match=r"fps=5\.0, but rgb\.pt .* fps=10\.0"):
        check(False, "rgb.pt")
    check_same_preparation(None, read_record(tmp_path), flow=True, where="-", source="old.pt")  # no record: fine
