"""Frozen-backbone training on cached features: the cache is the backbone's output over each whole video (plain and
mirrored), the head on a window's slice gives the full network's outputs and loss, validation on the cache gives
`talmts eval`'s detections, the cache follows the content it was made from, and the snippet files match a hand
computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from support.prepared import FakeVideo, write_ground_truth, write_prepared
from talmts.cli import main
from talmts.config import load_config
from talmts.data.feature_cache import CachedFeatureDataset, CachedInput, cached_collate
from talmts.data.transforms import make_clip
from talmts.engine.checkpoint import load_checkpoint
from talmts.engine.commands.snippets import extract_snippet_features, snippet_starts
from talmts.engine.inference.predictor import load_stream
from talmts.engine.training.cached_features import (
    CachedValidator,
    export_detector,
    extract_video_features,
    frozen_detector,
)
from talmts.engine.training.loop import per_sample_losses
from talmts.errors import InputError
from talmts.evaluation import evaluate_detections
from talmts.formats import read_annotations, read_detections
from talmts.formats.video_info import VideoInfo, read_video_info, write_video_info
from talmts.models.head_only import build_head, head_into_detector
from talmts.models.transformer import patchify

S = 40  # stored frame size
VIDEOS = {  # id: (subset, sample frames, [(start s, end s, label)])
    "v_a": ("train", 100, [(1.0, 3.0, "jump"), (6.0, 9.0, "run")]),
    "v_b": ("train", 40, [(0.5, 2.5, "run")]),
    "v_c": ("test", 50, [(2.0, 4.0, "jump")]),
    "v_d": ("validation", 70, [(1.0, 2.5, "run"), (4.0, 6.0, "jump")]),
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
    "model.backbone.freeze_bn=true",
    "model.backbone.context=video",
    "data.val_subset=validation",
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
    root = write_prepared(base / "prepared", videos)
    (root / "prepare.json").write_text(json.dumps({"fps": 10.0, "size": S, "flow": "dis", "max_frames": None}))
    write_ground_truth(base / "gt.json", videos)
    return base


def _overrides(base: Path, *extra: str) -> list[str]:
    return [f"data.root={base / 'prepared'}", f"data.annotations={base / 'gt.json'}", *TINY, *extra]


def _cfg(base: Path, *extra: str):
    from talmts.config import resolve_config_path

    return load_config(resolve_config_path("demo"), _overrides(base, *extra))


def _whole_video_map(backbone, frames: np.ndarray, length: int, endpoints: list[str], flip: bool = False):
    """The reference: one backbone call over the whole video padded to ``length`` (no chunks), written by hand."""
    c, channels = (S - 32) // 2, frames.shape[-1]
    x = np.zeros((channels, length, 32, 32), np.float32)  # padding: 0 in normalised space
    x[:, : len(frames)] = frames[:, c : c + 32, c : c + 32].transpose(3, 0, 1, 2).astype(np.float32) / 255 * 2 - 1
    x = torch.from_numpy(x)
    if flip:
        x = torch.flip(x, dims=[-1])  # a mirror image, written another way
        if channels == 2:
            x[0] = -x[0]  # mirroring reverses horizontal motion: flow's x changes sign, y does not
    with torch.no_grad():
        return backbone.extract_features(x[None], endpoints)


@pytest.mark.parametrize(("modality", "stt_tokens"), [("rgb", "features"), ("rgb", "frames"), ("flow", "features")])
def test_head_on_cached_features_equals_the_full_network_on_the_video_map(prepared, tmp_path, modality, stt_tokens):
    channels = {"rgb": 3, "flow": 2}[modality]
    cfg = _cfg(prepared, f"data.modality={modality}", f"model.stt.tokens={stt_tokens}", "model.stt.patch=16")
    summary = extract_video_features(cfg, tmp_path / "cache", dtype="float32")  # exactly the backbone's output
    assert sorted(summary.done) == ["v_a", "v_b", "v_d"]
    assert summary.frames == 2 * 104 + 2 * 40 + 72  # training videos twice (mirrored), padded to the grid
    torch.manual_seed(0)
    head = build_head(cfg, 2, channels)
    data = CachedFeatureDataset(cfg, tmp_path / "cache", "train", train=True, endpoints=head.endpoints)
    full = frozen_detector(cfg, 2, channels)
    head_into_detector(full, head.state_dict())
    head.train()
    full.train()  # the head in training mode; the frozen backbone stays in eval mode
    maps = {}
    flips = set()
    for index in range(len(data)):
        torch.manual_seed(index)
        item = data[index]
        flips.add(item["flip"])
        w = data.clips.plans[index].window
        assert w.offset % 8 == 0
        frames = data.clips.array(w.video)
        key = (w.video, item["flip"])
        if key not in maps:
            length = 8 * -(-len(frames) // 8) if len(frames) > 32 else 32
            maps[key] = _whole_video_map(full.backbone, frames, length, full.endpoints, flip=item["flip"])
        clip = make_clip(frames, w.offset, 32, 32, train=False)
        assert clip.shape[0] == channels
        if item["flip"]:
            clip = torch.flip(clip, dims=[-1])  # a mirror image, written another way
            if modality == "flow":
                clip[0] = -clip[0]  # mirroring reverses horizontal motion: flow's x changes sign, y does not
        batch = cached_collate(cfg)([item])
        assert torch.equal(batch["clip"].clip[0], clip)  # made from the uint8 window when the batch is read
        assert torch.equal(batch["clip"].fsa_patches(8), patchify(clip[None], 8))
        ref = {"Mixed_4f": maps[key]["Mixed_4f"][:, :, w.offset // 4 : w.offset // 4 + 8],
               "Mixed_5c": maps[key]["Mixed_5c"][:, :, w.offset // 8 : w.offset // 8 + 4]}  # fmt: skip
        for e, f in ref.items():  # the backbone's output (BN folded at extraction: float rounding only)
            torch.testing.assert_close(item["features"][e], f[0], rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            got, want = head(batch["clip"]), full.forward_features(ref, clip[None])
        for name in ("loc", "conf", "prop_loc", "prop_conf", "quality"):
            torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-4, atol=1e-5)
        lg = per_sample_losses(got, batch["targets"], cfg.loss)
        lw = per_sample_losses(want, batch["targets"], cfg.loss)
        for k in lw:
            torch.testing.assert_close(lg[k], lw[k], rtol=1e-4, atol=1e-6)
    assert flips == {False, True}


def test_a_window_of_the_video_map_is_its_own_pass_away_from_its_edges(prepared):
    """The grid: a window starting on a multiple of 8 reads the steps its own pass computes; only the steps whose
    receptive field reaches past the window's inner edges differ (the video map sees the neighbouring frames)."""
    cfg = _cfg(prepared)
    backbone = frozen_detector(cfg, 2, 3).backbone
    frames = np.random.default_rng(1).integers(0, 256, (200, S, S, 3), dtype=np.uint8)
    video = _whole_video_map(backbone, frames, 200, ["Mixed_4f"])["Mixed_4f"][0]
    offset, clip = 40, 128
    with torch.no_grad():
        own = backbone.extract_features(make_clip(frames, offset, clip, 32, train=False)[None], ["Mixed_4f"])
    own = own["Mixed_4f"][0]  # [C, 32, h, w]
    sliced = video[:, offset // 4 : (offset + clip) // 4]
    diff = (own - sliced).abs().amax(dim=(0, 2, 3))
    scale = float(video.abs().max())
    # Mixed_4f sees 63 frames: steps 10-21 (frames 40-88 of the window, +-31) never reach its edges
    assert float(diff[10:22].max()) <= 1e-5 * scale  # the same input positions, the same values
    assert float(diff[0]) > 1e-3 * scale and float(diff[-1]) > 1e-3 * scale  # the edges: padding vs real frames


def test_a_long_video_in_chunks_is_one_pass():
    from talmts.models.i3d import InceptionI3d
    from talmts.models.video_features import video_feature_map

    torch.manual_seed(0)
    backbone = InceptionI3d(width=0.25).eval()
    x = torch.randn(3, 336, 32, 32)
    endpoints = ["Mixed_4f", "Mixed_5c"]
    whole = video_feature_map(backbone, lambda a, b: x[:, a:b], 336, endpoints, chunk=10**6)
    with torch.no_grad():
        direct = backbone.extract_features(x[None], endpoints)
    chunked = video_feature_map(backbone, lambda a, b: x[:, a:b], 336, endpoints, chunk=64)  # five chunks, margins
    for e in endpoints:
        torch.testing.assert_close(whole[e], direct[e], rtol=0, atol=0)
        scale = float(direct[e].abs().max())
        assert float((chunked[e] - direct[e]).abs().max()) <= 1e-5 * scale, e


def test_validation_on_the_cache_gives_the_detections_of_talmts_eval(prepared, tmp_path):
    """CachedValidator (head on cached slices) against the full network through the normal predictor (backbone run
    over each validation video, BN folded, `talmts eval`'s path): same detections, float32 cache exactly, float16 to
    its rounding."""
    from talmts.engine.inference.eval_checkpoints import evaluate_streams
    from talmts.schema import ClassMap

    cfg = _cfg(prepared, f"train.out_dir={tmp_path / 'run'}")
    torch.manual_seed(3)
    head = build_head(cfg, 2, 3).eval()
    classes = ClassMap(("jump", "run"))
    (tmp_path / "run").mkdir()
    state = {"config": cfg.to_dict(), "classes": list(classes.names), "in_channels": 3, "prepare": None,
             "model": head.state_dict(), "ema": None, "epoch": 1, "step": 1, "epoch_step": 0}  # fmt: skip
    from talmts.engine.checkpoint import save_checkpoint

    save_checkpoint(state, tmp_path / "run" / "last.pt")
    export_detector(tmp_path / "run" / "last.pt", frozen_detector(cfg, 2, 3))
    stream = load_stream(tmp_path / "run" / "last.pt")
    want, want_dets = evaluate_streams([stream], cfg, "validation")
    assert sum(len(d) for d in want_dets.values()) > 10  # something to compare
    # float16: the random test backbone's features are ~1e-4, where float16 is subnormal: a coarser rounding than
    # real I3D features (~1) get
    for dtype, tol, seconds in (("float32", 1e-5, 1e-3), ("float16", 1e-2, 0.1)):
        extract_video_features(cfg, tmp_path / dtype, dtype=dtype)
        validator = CachedValidator(cfg, tmp_path / dtype, head.endpoints)
        got_dets = validator.detections(head, cfg, classes)
        assert sorted(got_dets) == sorted(want_dets) == ["v_d"]
        got, ref = got_dets["v_d"], want_dets["v_d"]
        assert len(got) == len(ref)
        for a in got[:30]:  # the best (a random head has near ties, so match each to its twin, not by rank)
            twin = min(ref, key=lambda b: abs(b.start - a.start) + abs(b.end - a.end) + (b.label != a.label))
            assert twin.label == a.label and twin.score == pytest.approx(a.score, abs=tol), dtype
            assert (twin.start, twin.end) == pytest.approx((a.start, a.end), abs=seconds)
        if dtype == "float32":
            metrics = validator(head, cfg, classes)
            assert metrics["average_mAP"] == pytest.approx(want.to_json()["average_mAP"], abs=1e-9)


def test_extract_features_command_writes_both_layouts_and_reports_a_foreign_cache(prepared, tmp_path, capsys):
    cache, snippets = tmp_path / "cache", tmp_path / "snippets"
    argv = ["extract-features", "demo", *_overrides(prepared), "--out", str(cache), "--snippets", str(snippets)]
    assert main([*argv, "--quiet"]) == 0
    names = sorted(p.name for p in (cache / "videos").iterdir())
    assert names == sorted(f"{v}.{x}" for v in ("v_a", "v_b", "v_d") for x in ("json", "Mixed_4f.npy", "Mixed_5c.npy"))
    assert sorted(p.name for p in snippets.iterdir()) == ["features.json", *(f"v_{c}.npy" for c in "abcd")]
    capsys.readouterr()
    assert main([*argv[:2], *_overrides(prepared, "data.frame_size=16", "model.fsa.patch=8"), "--out", str(cache)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cache.json" in err and "frame_size" in err


def test_float16_cache_is_the_float32_one_rounded(prepared, tmp_path):
    cfg = _cfg(prepared)
    extract_video_features(cfg, tmp_path / "c16", dtype="float16")
    extract_video_features(cfg, tmp_path / "c32", dtype="float32")
    for video, views in (("v_a", 2), ("v_b", 2), ("v_d", 1)):
        for e in ("Mixed_4f", "Mixed_5c"):
            a = np.load(tmp_path / "c16" / "videos" / f"{video}.{e}.npy")
            b = np.load(tmp_path / "c32" / "videos" / f"{video}.{e}.npy")
            assert a.dtype == np.float16 and b.dtype == np.float32 and a.shape[0] == views
            np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float16).astype(np.float32), atol=6e-8)


def test_cached_input_moves_like_a_tensor():
    windows = torch.randint(0, 256, (1, 4, 10, 10, 3), dtype=torch.uint8)
    x = CachedInput({"Mixed_5c": torch.zeros(1, 2, 3, 1, 1)}, windows, [(1, 1)], [True], [3], 8, False)
    y = x.to("cpu")
    assert torch.equal(y.features["Mixed_5c"], x.features["Mixed_5c"]) and torch.equal(y.windows, windows)
    assert y.clip.shape == (1, 3, 4, 8, 8) and torch.equal(y.clip, x.clip)


def test_extraction_resumes_and_refuses_a_foreign_cache(prepared, tmp_path):
    cfg = _cfg(prepared)
    first = extract_video_features(cfg, tmp_path / "c")
    again = extract_video_features(cfg, tmp_path / "c")
    assert again.done == [] and sorted(again.skipped) == sorted(first.done)
    with pytest.raises(InputError, match=r"cache\.json.*frame_size"):
        extract_video_features(_cfg(prepared, "data.frame_size=16", "model.fsa.patch=8"), tmp_path / "c")


def test_a_cached_training_run_plans_its_cache_once(prepared, tmp_path, monkeypatch):
    """The start of a cached run reads and hashes each video's frames once to plan the cache (the plan it logs is
    the one it extracts), and the extraction follows that plan: every map is in the cache before training."""
    from talmts.engine.training import cached_features

    digests: list[int] = []
    real_digest = cached_features.array_digest
    monkeypatch.setattr(cached_features, "array_digest", lambda a: digests.append(len(a)) or real_digest(a))

    class Started(Exception):
        pass

    def stop_at_training(*args, **kwargs):
        raise Started

    monkeypatch.setattr(cached_features, "train", stop_at_training)
    cache = tmp_path / "cache"
    cfg = _cfg(prepared, f"train.out_dir={tmp_path / 'run'}", f"train.feature_cache={cache}")
    with pytest.raises(Started):
        cached_features.train_cached(cfg, progress=False)
    cached = ["v_a", "v_b", "v_d"]  # the training and validation videos
    assert sorted(digests) == sorted(VIDEOS[v][1] for v in cached)  # one digest per video, of all its frames
    data = CachedFeatureDataset(cfg, cache, "train", train=True, endpoints=["Mixed_4f", "Mixed_5c"])
    assert sorted(data.lengths) == ["v_a", "v_b"]  # extracted from that plan: the maps cover their videos
    assert extract_video_features(cfg, cache).done == []


def _copy_dataset(prepared: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(prepared, dst)
    return dst


def test_edited_annotations_need_no_new_extraction_and_a_changed_video_is_extracted_again(prepared, tmp_path):
    """A changed window plan (annotations edited) is served by the maps already there; a video whose map no longer
    covers it (re-prepared longer) is extracted again, not skipped."""
    base = _copy_dataset(prepared, tmp_path / "data")
    cache = tmp_path / "cache"
    cfg = _cfg(base)
    extract_video_features(cfg, cache)
    gt = json.loads((base / "gt.json").read_text())
    gt["database"]["v_a"]["annotations"].append({"segment": [7.2, 8.8], "label": "jump"})  # a new window: 64
    (base / "gt.json").write_text(json.dumps(gt))
    data = CachedFeatureDataset(cfg, cache, "train", train=True, endpoints=["Mixed_4f", "Mixed_5c"])
    assert ("v_a", 64) in {(p.window.video, p.window.offset) for p in data.clips.plans}
    assert extract_video_features(cfg, cache).done == []  # nothing to redo

    frames = np.load(base / "prepared" / "frames" / "v_b.npy")
    longer = np.concatenate([frames, frames[:20]])  # v_b re-prepared: 60 frames instead of 40
    np.save(base / "prepared" / "frames" / "v_b.npy", longer)
    infos = read_video_info(base / "prepared" / "video_info.csv")
    infos["v_b"] = VideoInfo("v_b", 10.0, 10.0, 60, 60)
    write_video_info(infos, base / "prepared" / "video_info.csv")
    with pytest.raises(InputError, match="v_b"):
        CachedFeatureDataset(cfg, cache, "train", train=True, endpoints=["Mixed_4f", "Mixed_5c"])
    redo = extract_video_features(cfg, cache)
    assert redo.done == ["v_b"]
    data = CachedFeatureDataset(cfg, cache, "train", train=True, endpoints=["Mixed_4f", "Mixed_5c"])
    assert np.load(cache / "videos" / "v_b.Mixed_5c.npy").shape[2] == 64 // 8  # the map of the 60 frames (64)


def test_the_cache_follows_content_not_paths(prepared, tmp_path):
    """Frames re-prepared in place (same names, other pixels) are extracted again; another prepare record or other
    weights in the same file are refused by the fingerprint."""
    base = _copy_dataset(prepared, tmp_path / "data")
    cache = tmp_path / "cache"
    weights = tmp_path / "i3d.pt"
    torch.save(frozen_detector(_cfg(base), 2, 3).backbone.state_dict(), weights)
    cfg = _cfg(base, f"model.backbone.weights={weights}")
    extract_video_features(cfg, cache)
    before = np.load(cache / "videos" / "v_a.Mixed_5c.npy")

    frames = np.load(base / "prepared" / "frames" / "v_a.npy")
    np.save(base / "prepared" / "frames" / "v_a.npy", (frames // 2 + 40).astype(np.uint8))  # same shape, new pixels
    redo = extract_video_features(cfg, cache)
    assert redo.done == ["v_a"] and not np.array_equal(np.load(cache / "videos" / "v_a.Mixed_5c.npy"), before)

    record = base / "prepared" / "prepare.json"
    saved = record.read_text()
    record.write_text(saved.replace('"fps": 10.0', '"fps": 12.0'))
    with pytest.raises(InputError, match=r"cache\.json.*prepare"):
        extract_video_features(cfg, cache)
    record.write_text(saved)

    state = torch.load(weights, weights_only=True)
    state = {k: v * 1.01 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, weights)  # the same path, other weights
    with pytest.raises(InputError, match=r"cache\.json.*weights"):
        extract_video_features(cfg, cache)


@pytest.mark.slow
def test_cached_training_run_evaluates_through_talmts_eval(prepared, tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = _overrides(prepared, f"train.out_dir={out}", f"train.feature_cache={cache}", "train.epochs=3")
    assert main(["train", "demo", *args, "train.keep_checkpoints=1"]) == 0
    printed = capsys.readouterr().out
    assert "plan: 2 training videos" in printed and "3 videos to pass once" in printed
    assert printed.count("left") >= 4  # the features, then after every epoch
    assert sorted(p.name for p in out.glob("*.pt")) == ["best.pt", "checkpoint-3.pt", "last.pt"]
    head_state = load_checkpoint(out / "checkpoint-3.pt")["model"]
    assert not any(k.startswith("backbone.") for k in head_state)
    stream = load_stream(out / "last.pt")
    full = stream.model.state_dict()
    for k, v in head_state.items():  # last.pt is the full network carrying the trained head
        assert torch.equal(full[k], v), k
    validated = json.loads((out / "validation.json").read_text())[-1]["average_mAP"]
    assert main(["eval", "demo", *_overrides(prepared), "--checkpoint", str(out / "last.pt"), "--json", "--quiet",
                 "--subset", "validation"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["average_mAP"] == pytest.approx(validated, abs=0.02)  # the cache's float16 rounding
    # the printed numbers are the evaluator's score of the detections eval wrote for the validation video
    detections = read_detections(out / "eval-validation" / "detections.json")
    assert set(detections) == {"v_d"} and detections["v_d"]
    gt = read_annotations(prepared / "gt.json")
    rescored = evaluate_detections(gt, detections, metrics["tiou"], subset="validation")
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
    assert stage2["config"]["model"]["backbone"]["context"] == "window"  # the backbone trains window by window
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


def test_a_cached_map_cut_short_is_named_as_damaged(tmp_path):
    """A cache file cut short (its header promises more bytes than it holds) is a user error naming the file."""
    from talmts.data.feature_cache import endpoint_path, read_video_map, write_video_map
    from talmts.errors import InputError

    write_video_map(tmp_path, "v1", {"views": 1}, {"Mixed_5c": np.ones((1, 4, 2, 3, 3), np.float16)})
    path = endpoint_path(tmp_path, "v1", "Mixed_5c")
    assert read_video_map(tmp_path, "v1", ["Mixed_5c"])["Mixed_5c"].shape == (1, 4, 2, 3, 3)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(
        InputError,
        match=r"v1\.Mixed_5c\.npy: damaged cached features \(mmap length .*\); delete it and run `talmts extract-features` again$",
    ):
        read_video_map(tmp_path, "v1", ["Mixed_5c"])
    path.write_bytes(b"")  # a copy stopped before its first byte
    with pytest.raises(InputError, match=r"v1\.Mixed_5c\.npy: damaged cached features \(No data left in file\)"):
        read_video_map(tmp_path, "v1", ["Mixed_5c"])
