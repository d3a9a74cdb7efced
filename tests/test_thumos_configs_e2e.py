"""The bundled paper configs end to end: `talmts train` and `talmts eval` on tiny fake prepared datasets laid out
exactly like the real THUMOS14 and ActivityNet-1.3 ones, so the configs never rot.

Only sizes are overridden (frames, pixels, widths, steps) and the data paths; every other setting comes from the
config files, and the tests check that the paper's values (section IV-B) reached the optimiser, the loss and the
Soft-NMS. The arrays are random: the assertions are about the form of the outputs and the settings used, not about
accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml

from support.prepared import FakeVideo, write_prepared
from talmts.cli import main
from talmts.config import load_config
from talmts.engine.checkpoint import load_checkpoint
from talmts.evaluation import evaluate_detections
from talmts.formats import THUMOS14_CLASSES, read_annotations, read_detections

pytestmark = pytest.mark.slow  # end to end: minutes of CPU; `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"

# Sizes only. THUMOS14: 128-frame windows need 5 levels (32..2); ActivityNet: 512 frames keep the config's 6
# levels (64..2) and so its 6 per-level regression ranges.
SMALL = [
    "data.frame_size=32",
    "data.stored_size=40",
    "model.fsa.patch=16",
    "model.backbone.width=0.125",
    "model.backbone.weights=null",
    "model.channels=32",
    "train.epochs=1",
    "train.max_steps=2",
    "train.device=cpu",
]
THUMOS_SMALL = [*SMALL, "data.clip_frames=128", "model.levels=5"]
ANET_SMALL = [*SMALL, "data.clip_frames=512"]
STORED = 40  # data.stored_size: the side of the fake prepared frames

# THUMOS14: id -> (ActionFormer subset, original fps, original frame count, [(label, start s, end s)])
THUMOS_VIDEOS = {
    "video_validation_0000051": ("Validation", 30.0, 540, [("BaseballPitch", 2.0, 5.5), ("BaseballPitch", 9.0, 11.5)]),
    "video_validation_0000052": ("Validation", 29.97, 480, [("CliffDiving", 3.1, 6.0), ("Diving", 8.0, 12.2)]),
    "video_test_0000004": ("Test", 30.0, 600, [("CricketBowling", 0.2, 1.1), ("CricketShot", 1.0, 1.5),
                                               ("CricketBowling", 11.4, 12.2)]),
    "video_test_0000270": ("Test", 29.97, 450, [("HammerThrow", 4.0, 9.5)]),  # not in thumos_gt.json (as AFSD's)
}  # fmt: skip
NOT_IN_AFSD_GT = {"video_test_0000270"}

# ActivityNet-1.3 (prepared with --max-frames 512 here): id -> (subset, fps, frame count, [(label, start, end)])
ANET_VIDEOS = {
    "c2Hb5pSYxbU": ("training", 25.0, 1500, [("Long jump", 10.0, 24.0), ("Long jump", 40.0, 51.5)]),
    "Jm3zEi6HfWs": ("training", 30.0, 300, [("Shot put", 1.5, 8.0)]),
    "bXkG7q2rVnc": ("validation", 29.97, 1200, [("Long jump", 5.0, 30.0)]),
    "R4sPq0oW1Ls": ("validation", 30.0, 450, [("Shot put", 2.0, 9.0), ("Shot put", 10.5, 14.0)]),
}
ANET_CLASSES = ["Archery", "Long jump", "Playing polo", "Shot put"]  # real ActivityNet-1.3 names
# CUHK-layout video-level scores: the first validation video's top class is right, the second's is wrong.
VIDEO_SCORES = {"bXkG7q2rVnc": [0.1, 0.7, 0.05, 0.15], "R4sPq0oW1Ls": [0.6, 0.02, 0.08, 0.3]}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """The tiny networks run fastest on one thread, and stay fast when other processes load the machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ fake datasets
def _write_prepared(root: Path, videos: dict[str, tuple], max_frames: int | None) -> None:
    """frames/<id>.npy uint8 [T, S, S, 3], flow/<id>.npy uint8 [T, S, S, 2] and video_info.csv, as `talmts prepare`
    writes them (10 fps for THUMOS14; dynamic fps, at most ``max_frames`` frames, for ActivityNet)."""
    rng = np.random.default_rng(0)
    fake = {}
    for vid, (subset, fps, count, _) in videos.items():
        if max_frames is None:
            sample_fps = 10.0
            n = round(count * sample_fps / fps)
        else:
            sample_fps = fps * min(max_frames / count, 1.0)
            n = min(count, max_frames)
        frames = rng.integers(0, 256, (n, STORED, STORED, 3), dtype=np.uint8)
        flow = rng.integers(108, 149, (n, STORED, STORED, 2), dtype=np.uint8)
        fake[vid] = FakeVideo(subset, frames, flow, fps=fps, sample_fps=sample_fps, count=count)
    write_prepared(root, fake)


def _write_thumos(root: Path) -> dict[str, str]:
    """ActionFormer's thumos14.json (training and test windows) and AFSD's thumos_gt.json (scored by mAP)."""
    _write_prepared(root / "prepared", THUMOS_VIDEOS, max_frames=None)
    names = sorted(THUMOS14_CLASSES)  # ActionFormer's label_id: alphabetical index
    actionformer: dict[str, Any] = {"version": "Thumos14-30fps", "database": {}}
    afsd: dict[str, Any] = {"database": {}}
    for vid, (subset, fps, count, anns) in THUMOS_VIDEOS.items():
        actionformer["database"][vid] = {
            "subset": subset,
            "duration": round(count / fps + 0.1, 2),  # container duration, a little longer than count / fps
            "fps": fps,
            "annotations": [
                {"label": c, "segment": [s, e], "segment(frames)": [s * fps, e * fps], "label_id": names.index(c)}
                for c, s, e in anns
            ],
        }
        if vid not in NOT_IN_AFSD_GT:
            afsd["database"][vid] = {
                "subset": "train" if subset == "Validation" else "test",
                "annotations": [{"segment": [str(s), str(e)], "label": c} for c, s, e in anns],  # strings, as AFSD's
            }
    (root / "thumos14.json").write_text(json.dumps(actionformer))
    (root / "thumos_gt.json").write_text(json.dumps(afsd))
    return {
        "data.root": str(root / "prepared"),
        "data.annotations": str(root / "thumos14.json"),
        "data.eval_annotations": str(root / "thumos_gt.json"),
    }


def _write_anet(root: Path) -> dict[str, str]:
    """The official activity_net.v1-3.min.json layout (taxonomy tree, training/validation subsets)."""
    _write_prepared(root / "prepared", ANET_VIDEOS, max_frames=512)
    taxonomy = [
        {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
        {"nodeId": 1, "nodeName": "Sports, Exercise, and Recreation", "parentId": 0, "parentName": "Root"},
    ] + [
        {"nodeId": 10 + i, "nodeName": c, "parentId": 1, "parentName": "Sports, Exercise, and Recreation"}
        for i, c in enumerate(ANET_CLASSES)
    ]
    database = {
        vid: {
            "subset": subset,
            "duration": count / fps,
            "resolution": "640x360",
            "url": f"https://www.youtube.com/watch?v={vid}",
            "annotations": [{"segment": [s, e], "label": c} for c, s, e in anns],
        }
        for vid, (subset, fps, count, anns) in ANET_VIDEOS.items()
    }
    gt = {"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}
    (root / "activity_net.v1-3.min.json").write_text(json.dumps(gt))
    (root / "cuhk_val_simp_share.json").write_text(json.dumps({"results": VIDEO_SCORES, "class": ANET_CLASSES}))
    return {"data.root": str(root / "prepared"), "data.annotations": str(root / "activity_net.v1-3.min.json")}


# ------------------------------------------------------------------------------------------ spies
@contextmanager
def _record_settings(log: dict[str, list]) -> Iterator[None]:
    """Record the LossConfig every loss call gets and the InferConfig every video's Soft-NMS gets."""
    import talmts.engine.inference.predictor as infer
    import talmts.losses as losses

    real_loss, real_merge = losses.compute_losses, infer.detections_for_video

    def loss_spy(output, targets, cfg):  # noqa: ANN001, ANN202
        log.setdefault("loss", []).append(cfg)
        return real_loss(output, targets, cfg)

    def merge_spy(candidates, classes, cfg, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        log.setdefault("infer", []).append(cfg)
        return real_merge(candidates, classes, cfg, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(losses, "compute_losses", loss_spy)
        mp.setattr(infer, "detections_for_video", merge_spy)
        yield


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _changed_keys(config: Path, resolved: dict[str, Any]) -> set[str]:
    file_values = _flat(load_config(config).to_dict())
    return {k for k, v in _flat(resolved).items() if file_values[k] != v}


def _overrides(paths: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in paths.items()]


def _last_json_line(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def _check_paper_optimiser(checkpoint: dict[str, Any]) -> None:
    """Adam with lr 1e-5 and weight decay 1e-3 is what the optimiser really ran with (state in the checkpoint)."""
    groups = checkpoint["optimizer"]["param_groups"]
    assert groups and all("betas" in g for g in groups)  # Adam
    assert {(g["lr"], g["weight_decay"]) for g in groups} == {(1e-5, 1e-3)}
    assert checkpoint["step"] == 2


# ------------------------------------------------------------------------------------------ THUMOS14
@pytest.fixture(scope="module")
def thumos(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("thumos14")
    paths = _write_thumos(root)
    log: dict[str, list] = {}
    runs = {}
    with _record_settings(log):
        for stream in ("rgb", "flow"):
            run_dir = root / "runs" / f"thumos14_{stream}"
            argv = ["train", str(CONFIGS / f"thumos14_{stream}.yaml"), *_overrides(paths), *THUMOS_SMALL]
            assert main([*argv, f"train.out_dir={run_dir}", "--quiet"]) == 0
            runs[stream] = run_dir
    return {"root": root, "paths": paths, "runs": runs, "train_log": log}


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_thumos_train_uses_the_config_files_settings(thumos, stream):
    config = CONFIGS / f"thumos14_{stream}.yaml"
    run_dir = thumos["runs"][stream]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    ck = load_checkpoint(run_dir / "last.pt")
    log = json.loads((run_dir / "losses.json").read_text())  # 2 steps (the small settings), each logged once
    assert [r["step"] for r in log] == [1, 2] and len((run_dir / "losses.csv").read_text().splitlines()) == 3
    curves = mpimg.imread(run_dir / "loss_curves.png")
    assert curves.shape == (462, 1320, 4) and (curves[..., :3] < 0.5).mean() > 0.005  # drawn, not blank
    assert ck["config"] == resolved  # the checkpoint carries the config it was trained with
    # nothing but the sizes and paths differ from the file
    small = {o.split("=")[0] for o in THUMOS_SMALL} | set(thumos["paths"]) | {"train.out_dir"}
    assert _changed_keys(config, resolved) <= small
    assert (resolved["name"], resolved["data"]["modality"]) == (f"thumos14_{stream}", stream)
    assert (resolved["train"]["lr"], resolved["train"]["weight_decay"], resolved["train"]["batch_size"]) == (
        1e-5, 1e-3, 1,
    )  # fmt: skip
    assert (resolved["loss"]["alpha"], resolved["loss"]["beta"], resolved["infer"]["nms_sigma"]) == (10.0, 1.0, 0.3)
    assert ck["classes"] == list(THUMOS14_CLASSES) and ck["in_channels"] == (3 if stream == "rgb" else 2)
    _check_paper_optimiser(ck)


def test_thumos_train_loss_got_alpha_10(thumos):
    used = thumos["train_log"]["loss"]
    assert len(used) == 4  # 2 streams x 2 steps, batch 1
    assert {(c.alpha, c.beta, c.refined_iou, c.ranges) for c in used} == {(10.0, 1.0, 0.5, None)}


def test_thumos_eval_fused_with_both_checkpoints(thumos, capsys):
    out = thumos["root"] / "eval"
    runs = thumos["runs"]
    log: dict[str, list] = {}
    with _record_settings(log):
        code = main(
            [
                "eval",
                str(CONFIGS / "thumos14_rgb.yaml"),
                *_overrides(thumos["paths"]),  # the eval config is the file itself, only the paths change
                "--checkpoint",
                str(runs["rgb"] / "last.pt"),
                "--flow-checkpoint",
                str(runs["flow"] / "last.pt"),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--json",
                "--quiet",
            ]
        )
    assert code == 0
    printed = capsys.readouterr().out
    thresholds = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    metrics = _last_json_line(printed)
    assert metrics["tiou"] == pytest.approx(thresholds) and len(metrics["mAP"]) == 7
    header = printed.strip().splitlines()[-3]  # the paper's Table I header, its row, then the JSON line
    assert header.split()[:7] == [str(t) for t in thresholds] and "Avg{0.3:0.7}" in header
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["tiou"] == pytest.approx(thresholds) and saved["subset"] == "test"
    assert saved["streams"] == "rgb (last.pt) + flow (last.pt) fused"
    # scored per class on AFSD's ground truth: the classes of its one test video
    assert set(saved["per_class"]) == {"CricketBowling", "CricketShot"}

    raw = json.loads((out / "detections.json").read_text())
    assert set(raw) == {"version", "results", "external_data"}  # the ActivityNet results layout
    detections = read_detections(out / "detections.json")
    test_videos = {v for v, (subset, *_) in THUMOS_VIDEOS.items() if subset == "Test"} - NOT_IN_AFSD_GT
    assert set(detections) == test_videos
    for vid, dets in detections.items():
        _, fps, count, _ = THUMOS_VIDEOS[vid]
        assert dets, vid
        assert all(d.label in THUMOS14_CLASSES for d in dets)
        assert all(0.0 <= d.start < d.end <= count / fps + 1e-9 for d in dets)
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    # the printed table is AFSD's ground truth scoring the written detections
    rescored = evaluate_detections(
        read_annotations(thumos["paths"]["data.eval_annotations"]), detections, thresholds, subset="test"
    )
    assert metrics["mAP"] == pytest.approx(rescored.mAP, abs=1e-12)
    # Soft-NMS ran with the config's setting (sigma 0.3, no gate) on every video
    assert {(c.nms_sigma, c.nms_iou_gate, c.conf_thresh, c.nms_top_k, c.fusion) for c in log["infer"]} == {
        (0.3, None, 0.01, 5000, "logits")
    }
    assert len(log["infer"]) == len(test_videos)


# ------------------------------------------------------------------------------------------ ActivityNet-1.3
@pytest.fixture(scope="module")
def anet(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("anet13")
    paths = _write_anet(root)
    runs = {}
    log: dict[str, list] = {}
    with _record_settings(log):
        for stream in ("rgb", "flow"):
            runs[stream] = root / "runs" / f"anet13_{stream}"
            argv = ["train", str(CONFIGS / f"anet13_{stream}.yaml"), *_overrides(paths), *ANET_SMALL]
            assert main([*argv, f"train.out_dir={runs[stream]}", "--quiet"]) == 0
    return {"root": root, "paths": paths, "run": runs["rgb"], "runs": runs, "train_log": log}


def _anet_eval(anet: dict[str, Any], name: str, *extra: str) -> tuple[dict[str, Any], dict]:
    out = anet["root"] / name
    argv = ["eval", str(CONFIGS / "anet13_rgb.yaml"), *_overrides(anet["paths"]), *extra]
    argv += ["--checkpoint", str(anet["run"] / "last.pt"), "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text()), read_detections(out / "detections.json")


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_anet_train_uses_the_config_files_settings(anet, stream):
    run_dir = anet["runs"][stream]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    small = {o.split("=")[0] for o in ANET_SMALL} | set(anet["paths"]) | {"train.out_dir"}
    assert _changed_keys(CONFIGS / f"anet13_{stream}.yaml", resolved) <= small
    assert (resolved["data"]["protocol"], resolved["model"]["variant"]) == ("whole", "single_endpoint")
    ck = load_checkpoint(run_dir / "last.pt")
    assert ck["classes"] == ["action"] and ck["in_channels"] == (3 if stream == "rgb" else 2)  # class-agnostic
    epoch = load_checkpoint(run_dir / "checkpoint-1.pt")  # 2 training videos = 2 steps = one whole epoch
    assert (epoch["epoch"], epoch["step"]) == (1, 2)
    _check_paper_optimiser(ck)


def test_anet_train_loss_got_afsd_activitynet_values(anet):
    ranges = [[0, 30], [15, 60], [30, 120], [60, 240], [96, 768], [256, 768]]
    used = anet["train_log"]["loss"]
    assert len(used) == 4  # 2 streams x 2 steps
    for c in used:
        assert (c.alpha, c.beta, c.refined_iou, c.refined_iou_mode, c.refined_loc) == (
            1.0, 1.0, 0.6, "min_max", "smooth_l1",
        )  # fmt: skip
        assert c.ranges == ranges


def test_anet_eval_class_agnostic_and_with_video_scores(anet, capsys):
    log: dict[str, list] = {}
    with _record_settings(log):
        plain, agnostic = _anet_eval(anet, "eval-agnostic")
        scores_file = anet["root"] / "cuhk_val_simp_share.json"
        labelled_metrics, labelled = _anet_eval(anet, "eval-top1", "--video-scores", str(scores_file))
        _, top2 = _anet_eval(anet, "eval-top2", "--video-scores", str(scores_file), "infer.video_top_k=2")
    settings = {(c.nms_sigma, c.nms_iou_gate, c.nms_score_thresh, c.conf_thresh, c.nms_top_k) for c in log["infer"]}
    assert settings == {(0.85, None, 1e-9, 1e-9, 5000)}  # AFSD-ANet's test settings
    thresholds = [0.5 + 0.05 * i for i in range(10)]
    assert plain["tiou"] == pytest.approx(thresholds) and labelled_metrics["tiou"] == pytest.approx(thresholds)
    captured = capsys.readouterr()
    assert "0.5  0.75  0.95   Avg" in captured.out  # the paper's Table II columns
    # without video scores the table is labelled for what it is, with a warning; with them it is detection mAP
    assert captured.out.count("class-agnostic (proposal) mAP (%):") == 1
    assert captured.out.count("detection mAP (%):") == 2
    assert captured.err.count("warning: a class-agnostic model without video-level scores") == 1
    assert (plain["metric"], labelled_metrics["metric"]) == ("class-agnostic (proposal) mAP", "detection mAP")

    validation = {v for v, (subset, *_) in ANET_VIDEOS.items() if subset == "validation"}
    assert set(agnostic) == set(labelled) == set(top2) == validation
    # without scores: localisation alone, every ground truth counts as the one class
    assert set(plain["per_class"]) == {"action"} and "video_scores" not in plain
    assert all(d.label == "action" for dets in agnostic.values() for d in dets)
    # with scores: the real labels are scored, and every proposal takes its video's top-1 class and score
    assert set(labelled_metrics["per_class"]) == {"Long jump", "Shot put"}
    assert labelled_metrics["video_scores"] == str(scores_file)
    for vid in validation:
        scores = VIDEO_SCORES[vid]
        best = int(np.argmax(scores))
        assert len(labelled[vid]) == len(agnostic[vid]) > 0
        for a, b in zip(agnostic[vid], labelled[vid], strict=True):
            assert (b.label, b.start, b.end) == (ANET_CLASSES[best], a.start, a.end)
            assert b.score == pytest.approx(a.score * scores[best], rel=1e-12)
        # top-2: each proposal once per class of the two best, best score first
        second = int(np.argsort(scores)[-2])
        assert len(top2[vid]) == 2 * len(agnostic[vid])
        assert [d.score for d in top2[vid]] == sorted((d.score for d in top2[vid]), reverse=True)
        for k in (best, second):
            mine = [d for d in top2[vid] if d.label == ANET_CLASSES[k]]
            assert [(d.start, d.end) for d in mine] == [(a.start, a.end) for a in agnostic[vid]]
            assert [d.score for d in mine] == pytest.approx([a.score * scores[k] for a in agnostic[vid]], rel=1e-12)
    # R4sPq0oW1Ls's top-1 class is wrong (Archery), so no detection carries its true class Shot put
    assert labelled_metrics["per_class"]["Shot put"] == [0.0] * 10
    assert not any(d.label == "Shot put" for dets in labelled.values() for d in dets)


def test_video_scores_errors_name_the_file_and_the_problem(anet, capsys):
    base = ["eval", str(CONFIGS / "anet13_rgb.yaml"), *_overrides(anet["paths"])]
    base += ["--checkpoint", str(anet["run"] / "last.pt"), "--device", "cpu", "--quiet"]
    missing = anet["root"] / "nope.json"
    assert main([*base, "--out", str(anet["root"] / "e1"), "--video-scores", str(missing)]) == 2
    assert "nope.json" in capsys.readouterr().err
    partial = anet["root"] / "partial.json"
    partial.write_text(json.dumps({"results": {"bXkG7q2rVnc": [1, 0, 0, 0]}, "class": ANET_CLASSES}))
    assert main([*base, "--out", str(anet["root"] / "e2"), "--video-scores", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "R4sPq0oW1Ls" in err and "partial.json" in err
    other = anet["root"] / "other.json"
    other.write_text(json.dumps({"results": VIDEO_SCORES, "class": ["a", "b", "c", "d"]}))
    assert main([*base, "--out", str(anet["root"] / "e3"), "--video-scores", str(other)]) == 2
    assert "none of its 4 class names" in capsys.readouterr().err


def test_anet_eval_fused_with_video_scores(anet):
    scores_file = anet["root"] / "cuhk_val_simp_share.json"
    flow = str(anet["runs"]["flow"] / "last.pt")
    metrics, detections = _anet_eval(anet, "eval-fused", "--flow-checkpoint", flow, "--video-scores", str(scores_file))
    assert metrics["streams"] == "rgb (last.pt) + flow (last.pt) fused"
    assert set(metrics["per_class"]) == {"Long jump", "Shot put"} and len(metrics["mAP"]) == 10
    for vid, dets in detections.items():
        assert dets and {d.label for d in dets} == {ANET_CLASSES[int(np.argmax(VIDEO_SCORES[vid]))]}
        assert all(0.0 < d.score <= max(VIDEO_SCORES[vid]) for d in dets)
        _, fps, count, _ = ANET_VIDEOS[vid]
        assert all(0.0 <= d.start < d.end <= count / fps + 1e-9 for d in dets)


def test_video_scores_with_a_multi_class_checkpoint_is_an_error(thumos, capsys):
    scores = thumos["root"] / "scores.json"
    scores.write_text(json.dumps({"results": {"video_test_0000004": [1.0] * 20}, "class": list(THUMOS14_CLASSES)}))
    argv = ["eval", str(CONFIGS / "thumos14_rgb.yaml"), *_overrides(thumos["paths"])]
    argv += ["--checkpoint", str(thumos["runs"]["rgb"] / "last.pt"), "--video-scores", str(scores), "--quiet"]
    assert main([*argv, "--out", str(thumos["root"] / "e-multi"), "--device", "cpu"]) == 2
    assert "class-agnostic" in capsys.readouterr().err


def test_anet_detect_on_a_raw_video_with_video_scores(anet, capsys):
    """`talmts detect --video-scores`: a class-agnostic checkpoint's detections in a raw video take the video's
    top class from the score file, scores multiplied, exactly as `talmts eval --video-scores` labels them."""
    from talmts.data.synth import write_mp4

    rng = np.random.default_rng(0)
    video = anet["root"] / "my clip.mp4"  # the file's name is not the id in the score file
    write_mp4(video, (rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(60)), fps=10.0)
    base = ["detect", str(video), "--checkpoint", str(anet["runs"]["rgb"] / "last.pt"), "--device", "cpu"]
    scores_file = anet["root"] / "cuhk_val_simp_share.json"
    assert main([*base, "--out", str(anet["root"] / "d-plain")]) == 0
    argv = [*base, "--out", str(anet["root"] / "d-scored"), "--video-scores", str(scores_file)]
    assert main([*argv, "--video-id", "bXkG7q2rVnc"]) == 0
    plain = read_detections(anet["root"] / "d-plain" / "detections.json")["my clip"]
    scored = read_detections(anet["root"] / "d-scored" / "detections.json")["bXkG7q2rVnc"]  # named by its id
    scores = VIDEO_SCORES["bXkG7q2rVnc"]
    best = int(np.argmax(scores))
    assert len(scored) == len(plain) > 0 and {d.label for d in plain} == {"action"}
    for a, b in zip(plain, scored, strict=True):
        assert (b.label, b.start, b.end) == (ANET_CLASSES[best], a.start, a.end)
        assert b.score == pytest.approx(a.score * scores[best], rel=1e-9)
    capsys.readouterr()
    # without --video-id the file's name is looked up, and the error says how to fix it
    assert main([*base, "--out", str(anet["root"] / "d-missing"), "--video-scores", str(scores_file)]) == 2
    err = capsys.readouterr().err
    assert "my clip" in err and "--video-id" in err and not (anet["root"] / "d-missing").exists()
