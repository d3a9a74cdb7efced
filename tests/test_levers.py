"""The inference levers (models/levers.py): one value, the presets, the one rewrite function and the runner give the
plain model's outputs; short batches are padded; `--fast` is for CUDA."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from talmts.config import load_config, resolve_config_path
from talmts.data.windows import cut_windows, frames_of
from talmts.engine.commands.bench.network import compare_scores
from talmts.engine.inference.predictor import Stream, network_outputs, use_fast_path
from talmts.models import build_detector
from talmts.models.i3d_rewrites import StemSpaceToDepth
from talmts.models.levers import (
    EXACT,
    FAST,
    INFERENCE,
    PRESETS,
    BackboneOnly,
    LeverRunner,
    Levers,
    apply_levers,
)
from talmts.schema import ClassMap

DRY = {"compile_backend": "eager", "cuda_graph": False}  # FAST's code path, traced only: quick on a CPU


@pytest.fixture(scope="module")
def stream() -> Stream:
    cfg = load_config(resolve_config_path("demo"), ["model.backbone.weights=null", "data.clip_frames=32"])
    torch.manual_seed(0)
    model = build_detector(cfg, 3, 3).eval()
    return Stream(model=model, cfg=cfg, classes=ClassMap(("a", "b", "c")))


def _video(frames: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(frames, 48, 48, 3), dtype=np.uint8)


def _clip(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 32, 48, 48, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_levers_are_a_validated_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAST.dtype = "fp32"  # type: ignore[misc]
    assert Levers(fuse_pointwise=True).fold_bn and EXACT.replace(fuse_pointwise=True).fold_bn
    with pytest.raises(ValueError, match="dtype"):
        FAST.replace(dtype="fp16")
    assert FAST.torch_dtype == torch.bfloat16 and EXACT.torch_dtype == torch.float32
    assert PRESETS["inference"] == INFERENCE == Levers(fold_bn=True)  # load_stream's levers: BN folded, no more
    on = {f.name for f in dataclasses.fields(FAST) if getattr(FAST, f.name) is True}
    assert FAST.dtype == "bf16" and on == {  # the fastest measured GPU row of docs/PERFORMANCE.md
        *("channels_last", "fold_bn", "fuse_pointwise", "stem_s2d", "pointwise_matmul", "fused_pools"),
        *("compile", "cuda_graph"),
    }


def test_inference_levers_fold_the_batchnorm_exactly_as_before(stream: Stream) -> None:
    model = apply_levers(stream.model, INFERENCE)
    assert model is not stream.model and stream.model.backbone.Conv3d_1a_7x7.bn is not None  # a copy
    assert model.backbone.Conv3d_1a_7x7.bn is None and not model.training
    want = stream.model.backbone.fold_batchnorm()
    for (name, a), (_, b) in zip(model.backbone.state_dict().items(), want.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        torch.testing.assert_close(model(_clip(2)).conf, stream.model(_clip(2)).conf, rtol=1e-4, atol=1e-5)


def test_fast_runner_pads_short_batches_and_matches_the_exact_model(stream: Stream) -> None:
    fast = LeverRunner(stream.model, FAST.replace(dtype="fp32", **DRY), batch_size=4)
    assert isinstance(fast.model.backbone.Conv3d_1a_7x7, StemSpaceToDepth)  # the rewrites are applied
    assert not isinstance(stream.model.backbone.Conv3d_1a_7x7, StemSpaceToDepth)  # on a copy
    clip = _clip(3)
    with torch.inference_mode():
        want, got = stream.model(clip), fast(clip)
        alone = stream.model(clip[2:])
    assert got.conf.shape[0] == 3  # the padding clip is dropped
    agree = compare_scores(want, got)
    assert agree["max_score_diff"] < 1e-5 and agree["max_boundary_diff_frames"] < 1e-3
    # the padded batch does not leak into the real clips: the last clip alone gives the same outputs
    torch.testing.assert_close(got.conf[2:], alone.conf, rtol=1e-4, atol=1e-5)


def test_network_outputs_through_the_fast_path(stream: Stream) -> None:
    arrays = [_video(32 + 16 * 5)]  # 6 windows at stride 16: batches of 4 and 2 (padded to 4)
    exact = network_outputs([stream], cut_windows(frames_of(arrays), 32, 16), 4)
    fast_stream = Stream(stream.model, stream.cfg, stream.classes)
    fast_stream.forward = LeverRunner(stream.model, FAST.replace(**DRY), 4)  # bf16
    fast = network_outputs([fast_stream], cut_windows(frames_of(arrays), 32, 16), 4)
    assert [b.offsets for b in fast] == [b.offsets for b in exact] == [[0, 16, 32, 48], [64, 80]]
    for a, b in zip(exact, fast):
        agree = compare_scores(a.outputs[0], b.outputs[0], top=5)
        assert agree["max_score_diff"] < 1e-2  # bf16 against fp32
        assert b.outputs[0].conf.dtype == torch.float32


def test_fast_path_is_for_cuda(stream: Stream) -> None:
    s = Stream(stream.model, stream.cfg, stream.classes)
    why = use_fast_path([s], 4, torch.device("cpu"))
    assert why is not None and "CUDA" in why and s.forward is None


def test_runner_of_the_backbone_alone_returns_the_endpoints(stream: Stream) -> None:
    backbone = BackboneOnly(stream.model.backbone, stream.model.endpoints).eval()
    fast = LeverRunner(backbone, FAST.replace(dtype="fp32", **DRY), batch_size=2)
    assert isinstance(fast.model.backbone.Conv3d_1a_7x7, StemSpaceToDepth)
    clip = _clip(1)
    with torch.inference_mode():
        want, got = backbone(clip), fast(clip)
    assert isinstance(got, tuple) and len(got) == len(want) == 2
    for a, b in zip(want, got):
        assert b.shape == a.shape  # batch 1 again after padding to 2
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_levers_apply_to_a_bare_i3d(stream: Stream) -> None:
    i3d = stream.model.backbone
    fast = apply_levers(i3d, FAST)
    assert isinstance(fast.Conv3d_1a_7x7, StemSpaceToDepth) and fast.Conv3d_1a_7x7.bn is None  # folded, rewritten
    x = _clip(1)
    with torch.no_grad():
        torch.testing.assert_close(
            fast(x.contiguous(memory_format=torch.channels_last_3d)), i3d(x), rtol=1e-4, atol=1e-4
        )


def test_levers_leave_a_non_i3d_model_alone() -> None:
    model = torch.nn.Conv3d(3, 4, 1)
    fast = apply_levers(model, FAST)
    x = torch.rand(1, 3, 2, 4, 4)
    torch.testing.assert_close(fast(x), model(x))
    assert fast.weight.is_contiguous(memory_format=torch.channels_last_3d)  # the layout lever still applies
