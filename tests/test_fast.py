"""The fast inference path (engine/fast.py, `--fast`): same outputs as the exact path, short batches padded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talmts.config import load_config, resolve_config_path
from talmts.data.windows import cut_windows, frames_of
from talmts.engine.bench import compare_scores
from talmts.engine.fast import FastForward, speed_up_detector
from talmts.engine.predictor import Stream, network_outputs, use_fast_path
from talmts.models import build_detector
from talmts.models.i3d_rewrites import StemSpaceToDepth
from talmts.schema import ClassMap


@pytest.fixture(scope="module")
def stream() -> Stream:
    cfg = load_config(resolve_config_path("demo"), ["model.backbone.weights=null", "data.clip_frames=32"])
    torch.manual_seed(0)
    model = build_detector(cfg, 3, 3).eval()
    return Stream(model=model, cfg=cfg, classes=ClassMap(("a", "b", "c")))


def _video(frames: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(frames, 48, 48, 3), dtype=np.uint8)


def test_fast_forward_pads_short_batches_and_matches_the_exact_model(stream: Stream) -> None:
    fast = FastForward(stream.model, batch_size=4, dtype=torch.float32, compile_backend="eager", cuda_graph=False)
    assert isinstance(fast.model.backbone.Conv3d_1a_7x7, StemSpaceToDepth)  # the rewrites are applied
    assert not isinstance(stream.model.backbone.Conv3d_1a_7x7, StemSpaceToDepth)  # on a copy
    clip = torch.rand(3, 3, 32, 48, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        want, got = stream.model(clip), fast(clip)
        alone = stream.model(clip[2:])
    assert got.conf.shape[0] == 3  # the padding clip is dropped
    agree = compare_scores(want, got)
    assert agree["max_score_diff"] < 1e-5 and agree["max_boundary_diff_frames"] < 1e-3
    # the padded batch does not leak into the real clips: the last clip alone gives the same outputs
    torch.testing.assert_close(got.conf[2:], alone.conf, rtol=1e-4, atol=1e-5)


def test_network_outputs_through_the_fast_path(stream: Stream) -> None:
    infer = stream.cfg.infer
    infer.batch_size = 4
    arrays = [_video(32 + 16 * 5)]  # 6 windows at stride 16: batches of 4 and 2 (padded to 4)
    exact = network_outputs([stream], cut_windows(frames_of(arrays), 32, 16), infer.batch_size)
    fast_stream = Stream(stream.model, stream.cfg, stream.classes)
    fast_stream.forward = FastForward(stream.model, 4, compile_backend="eager", cuda_graph=False)  # bf16
    fast = network_outputs([fast_stream], cut_windows(frames_of(arrays), 32, 16), infer.batch_size)
    assert [b.offsets for b in fast] == [b.offsets for b in exact] == [[0, 16, 32, 48], [64, 80]]
    for a, b in zip(exact, fast):
        agree = compare_scores(a.outputs[0], b.outputs[0], top=5)
        assert agree["max_score_diff"] < 1e-2  # bf16 against fp32 (the tolerance)
        assert b.outputs[0].conf.dtype == torch.float32


def test_fast_path_is_for_cuda(stream: Stream) -> None:
    s = Stream(stream.model, stream.cfg, stream.classes)
    why = use_fast_path([s], 4, torch.device("cpu"))
    assert why is not None and "CUDA" in why and s.forward is None


def test_speed_up_detector_leaves_a_non_i3d_model_alone() -> None:
    model = torch.nn.Conv3d(3, 4, 1)
    fast = speed_up_detector(model)
    x = torch.rand(1, 3, 2, 4, 4)
    torch.testing.assert_close(fast(x), model(x))
