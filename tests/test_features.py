"""Frozen-backbone training on cached features: the cache is exactly the backbone's output on each window (plain and
mirrored), the head on it gives the full network's outputs and loss, a cached run evaluates through `talmts eval`,
and the snippet files match a hand computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from support.prepared import FakeVideo, write_ground_truth, write_prepared
from talmts.cli import main
from talmts.config import load_config
from talmts.data.feature_cache import CachedFeatureDataset, CachedInput, collate_cached
from talmts.data.transforms import make_clip
from talmts.engine.checkpoint import load_checkpoint
from talmts.engine.commands.snippets import extract_snippet_features, snippet_starts
from talmts.engine.inference.predictor import load_stream
from talmts.engine.training.cached_features import extract_window_features, frozen_detector
from talmts.engine.training.loop import per_sample_losses
from talmts.errors import InputError
from talmts.evaluation import evaluate_detections
from talmts.formats import read_annotations, read_detections
from talmts.models.head_only import build_head, head_into_detector

S = 40  # stored frame size
VIDEOS = {  # id: (subset, sample frames, [(start s, end s, label)])
    "v_a": ("train", 100, [(1.0, 3.0, "jump"), (6.0, 9.0, "run")]),
    "v_b": ("train", 40, [(0.5, 2.5, "run")]),
    "v_c": ("test", 50, [(2.0, 4.0, "jump")]),
}
TINY = [
    "data.clip_frames=32",
    "data.frame_size=32",
    f"data.stored_size={S}",
    "data.train_stride=8",
    "data.test_stride=16",
    "data.fps=10.0",
    "model.levels=3",
    "model.fsa.patch=16",
    "train.batch_size=2",
    "train.warmup_steps=0",
    "train.device=cpu",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: a second thread only waits


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("features")
    rng, flow_rng = np.random.default_rng(0), np.random.default_rng(1)
    videos = {
        vid: FakeVideo(
            subset,
            rng.integers(0, 256, (n, S, S, 3), dtype=np.uint8),
            flow=flow_rng.integers(0, 256, (n, S, S, 2), dtype=np.uint8),
            annotations=anns,
        )
        for vid, (subset, n, anns) in VIDEOS.items()
    }
    write_prepared(base / "prepared", videos)
    write_ground_truth(base / "gt.json", videos)
    return base


def _overrides(base: Path, *extra: str) -> list[str]:
    return [f"data.root={base / 'prepared'}", f"data.annotations={base / 'gt.json'}", *TINY, *extra]


def _cfg(base: Path, *extra: str):
    from talmts.config import resolve_config_path

    return load_config(resolve_config_path("demo"), _overrides(base, *extra))


@pytest.mark.parametrize(("modality", "stt_tokens"), [("rgb", "features"), ("rgb", "frames"), ("flow", "features")])
def test_head_on_cached_features_equals_the_full_network(prepared, tmp_path, modality, stt_tokens):
    dtype = "float32"  # exactly the backbone's output (float16 is checked against it below)
    channels = {"rgb": 3, "flow": 2}[modality]
    cfg = _cfg(
        prepared, f"data.modality={modality}", f"model.stt.tokens={stt_tokens}", "model.stt.patch=16",
        "model.backbone.freeze_bn=true",
    )  # fmt: skip
    summary = extract_window_features(cfg, tmp_path / "cache", dtype=dtype)
    torch.manual_seed(0)
    head = build_head(cfg, 2, channels)
    data = CachedFeatureDataset(cfg, tmp_path / "cache", "train", train=True, endpoints=head.endpoints)
    assert summary.windows == len(data) > 2 and sorted(summary.done) == ["train/v_a", "train/v_b"]
    full = frozen_detector(cfg, 2, channels)
    head_into_detector(full, head.state_dict())
    head.train()
    full.train()  # the head in training mode; the frozen backbone stays in eval mode
    flips = set()
    for index in range(len(data)):
        torch.manual_seed(index)
        item = data[index]
        flips.add(item["flip"])
        plan = data.clips.plans[index]
        frames = data.clips.array(plan.window.video)
        clip = make_clip(frames, plan.window.offset, 32, 32, train=False)
        assert clip.shape[0] == channels
        if item["flip"]:
            clip = torch.flip(clip, dims=[-1])  # a mirror image, written another way
            if modality == "flow":
                clip[0] = -clip[0]  # mirroring reverses horizontal motion: flow's x changes sign, y does not
        assert torch.equal(item["frames"], clip)
        with torch.no_grad():
            ref_feats = full.backbone.extract_features(clip[None], full.endpoints)
            for e, f in ref_feats.items():  # the backbone's output (batched differently: float rounding only)
                torch.testing.assert_close(item["features"][e], f[0], rtol=1e-5, atol=1e-9)
            batch = collate_cached([item])
            got, want = head(batch["clip"]), full(clip[None])
        for name in ("loc", "conf", "prop_loc", "prop_conf", "quality"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-4, atol=1e-5)
        lg = per_sample_losses(got, batch["targets"], cfg.loss)
        lw = per_sample_losses(want, batch["targets"], cfg.loss)
        for k in lw:
            torch.testing.assert_close(lg[k], lw[k], rtol=1e-4, atol=1e-6)
    assert flips == {False, True}


def test_extract_features_command_writes_both_layouts_and_reports_a_foreign_cache(prepared, tmp_path, capsys):
    cache, snippets = tmp_path / "cache", tmp_path / "snippets"
    argv = ["extract-features", "demo", *_overrides(prepared), "--out", str(cache), "--snippets", str(snippets)]
    assert main([*argv, "--quiet"]) == 0
    assert sorted(p.name for p in (cache / "train").iterdir()) == ["v_a.npz", "v_b.npz"]
    assert sorted(p.name for p in snippets.iterdir()) == ["features.json", "v_a.npy", "v_b.npy", "v_c.npy"]
    capsys.readouterr()
    assert main([*argv[:2], *_overrides(prepared, "data.frame_size=16", "model.fsa.patch=8"), "--out", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cache.json" in err and "frame_size" in err


def test_float16_cache_is_the_float32_one_rounded(prepared, tmp_path):
    cfg = _cfg(prepared)
    extract_window_features(cfg, tmp_path / "c16", dtype="float16")
    extract_window_features(cfg, tmp_path / "c32", dtype="float32")
    for video in ("v_a", "v_b"):
        a, b = (
            np.load(tmp_path / "c16" / "train" / f"{video}.npz"),
            np.load(tmp_path / "c32" / "train" / f"{video}.npz"),
        )
        assert np.array_equal(a["offsets"], b["offsets"])
        for e in ("Mixed_4f", "Mixed_5c"):
            assert a[e].dtype == np.float16 and b[e].dtype == np.float32 and a[e].shape[1] == 2
            np.testing.assert_allclose(a[e].astype(np.float32), b[e].astype(np.float16).astype(np.float32), atol=6e-8)


def test_cached_input_moves_like_a_tensor():
    x = CachedInput({"Mixed_5c": torch.zeros(1, 2, 3, 1, 1)}, torch.zeros(1, 3, 4, 8, 8))
    y = x.to("cpu")
    assert torch.equal(y.features["Mixed_5c"], x.features["Mixed_5c"]) and y.clip.shape == x.clip.shape


def test_extraction_resumes_and_refuses_a_foreign_cache(prepared, tmp_path):
    cfg = _cfg(prepared)
    first = extract_window_features(cfg, tmp_path / "c")
    again = extract_window_features(cfg, tmp_path / "c")
    assert again.done == [] and sorted(again.skipped) == sorted(first.done)
    with pytest.raises(InputError, match=r"cache\.json.*frame_size"):
        extract_window_features(_cfg(prepared, "data.frame_size=16", "model.fsa.patch=8"), tmp_path / "c")


@pytest.mark.slow
def test_cached_training_run_evaluates_through_talmts_eval(prepared, tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = _overrides(prepared, f"train.out_dir={out}", f"train.feature_cache={cache}", "train.epochs=2")
    assert main(["train", "demo", *args, "--quiet"]) == 0
    head_state = load_checkpoint(out / "checkpoint-2.pt")["model"]
    assert not any(k.startswith("backbone.") for k in head_state)
    stream = load_stream(out / "last.pt")
    full = stream.model.state_dict()
    for k, v in head_state.items():  # last.pt is the full network carrying the trained head
        assert torch.equal(full[k], v), k
    capsys.readouterr()
    assert main(["eval", "demo", *_overrides(prepared), "--checkpoint", str(out / "last.pt"), "--json", "--quiet"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the printed numbers are the evaluator's score of the detections eval wrote for the test video
    detections = read_detections(out / "eval-test" / "detections.json")
    assert set(detections) == {"v_c"} and detections["v_c"]
    rescored = evaluate_detections(read_annotations(prepared / "gt.json"), detections, metrics["tiou"], subset="test")
    assert metrics["mAP"] == pytest.approx(rescored.mAP, abs=1e-12)
    assert metrics["average_mAP"] == pytest.approx(rescored.average_mAP, abs=1e-12)


@pytest.mark.slow
def test_finetune_stage_starts_from_the_trained_head(prepared, tmp_path):
    out = tmp_path / "run"
    args = _overrides(
        prepared, f"train.out_dir={out}", f"train.feature_cache={tmp_path / 'cache'}", "train.epochs=1",
        "train.finetune_epochs=1", "train.max_steps=1", "train.lr=1e-3",
    )  # fmt: skip
    assert main(["train", "demo", *args, "--quiet"]) == 0
    stage1 = load_checkpoint(out / "last.pt")
    stage2 = load_checkpoint(out / "finetune" / "last.pt")
    assert stage1["stage"] == "cached_head" and stage2["config"]["train"]["lr"] == pytest.approx(1e-4)
    moved = [k for k, v in stage2["model"].items() if k.startswith("backbone.") and v.dtype.is_floating_point
             and not torch.equal(v, stage1["model"][k])]  # fmt: skip
    assert moved, "the fine-tune stage trains the backbone"


def test_snippet_features_match_a_hand_computation(prepared, tmp_path):
    cfg = _cfg(prepared)
    backbone = frozen_detector(cfg, 1, 3).backbone
    out = tmp_path / "snippets"
    summary = extract_snippet_features(cfg, backbone, out, window=16, stride=4, videos=["v_b", "v_c"])
    meta = json.loads((out / "features.json").read_text())
    assert (meta["window"], meta["stride"], meta["endpoint"]) == (16, 4, "Mixed_5c")
    frames = np.load(prepared / "prepared" / "frames" / "v_b.npy")
    feats = np.load(out / "v_b.npy")
    starts = list(range(0, 40 - 16 + 1, 4))  # 0, 4, ..., 24: 7 snippets
    assert feats.dtype == np.float32 and feats.shape == (7, meta["feature_dim"]) and meta["feature_dim"] == 256
    assert meta["videos"]["v_b"] == {"fps": 10.0, "num_snippets": 7, "num_frames": 40}
    assert summary.snippets == 7 + len(range(0, 50 - 16 + 1, 4))
    c = (S - 32) // 2
    for i, s in enumerate(starts):
        x = frames[s : s + 16, c : c + 32, c : c + 32].astype(np.float64) / 255 * 2 - 1  # [16, 32, 32, 3]
        x = torch.from_numpy(x.transpose(3, 0, 1, 2)[None].astype(np.float32))
        with torch.no_grad():
            ref = backbone(x)[0].mean(dim=(1, 2, 3))  # Mixed_5c [C, t, h, w] averaged over time and space
        np.testing.assert_allclose(feats[i], ref.numpy(), rtol=1e-4, atol=1e-5)


def test_snippet_starts():
    assert snippet_starts(40, 16, 4) == [0, 4, 8, 12, 16, 20, 24]
    assert snippet_starts(10, 16, 4) == [0] and snippet_starts(16, 16, 4) == [0]
    with pytest.raises(ValueError):
        snippet_starts(10, 16, 0)
