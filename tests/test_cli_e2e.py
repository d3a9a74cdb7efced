"""The commands end to end on a tiny synthetic dataset: train both streams, eval fused, detect on a raw video.

Sizes are minimal (a few steps); the assertions are about the outputs' form and the agreement of the paths, not
about accuracy (the demo checks that).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml

from support.view_fixtures import page_data
from talmts.cli import main
from talmts.data.prepare import PrepareOptions, prepare_dataset
from talmts.data.synth import SynthConfig, generate_dataset
from talmts.engine.checkpoint import load_checkpoint
from talmts.evaluation import evaluate_detections
from talmts.formats import read_annotations, read_detections

pytestmark = pytest.mark.slow  # end to end: minutes of CPU; `make test-fast` leaves it out

TINY = [
    "data.clip_frames=32",
    "data.frame_size=32",
    "data.stored_size=40",
    "data.train_stride=8",
    "data.test_stride=16",
    "model.levels=3",
    "train.epochs=1",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.warmup_steps=0",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    synth = SynthConfig(videos=5, height=48, min_video_s=6.0, max_video_s=8.0, max_action_s=3.0, splits=(3, 1, 1))
    generate_dataset(root / "synth", synth)
    summary = prepare_dataset(
        root / "synth" / "videos", root / "prepared", PrepareOptions(fps=10.0, size=40, flow="dis"), workers=1
    )
    assert summary.ok
    return root


def _common(root: Path) -> list[str]:
    return [f"data.root={root / 'prepared'}", f"data.annotations={root / 'synth' / 'annotations.json'}", *TINY]


@pytest.fixture(scope="module")
def checkpoints(dataset) -> dict[str, Path]:
    out = {}
    for modality in ("rgb", "flow"):
        run_dir = dataset / modality
        code = main(
            ["train", "demo", *_common(dataset), f"data.modality={modality}", f"train.out_dir={run_dir}", "--quiet"]
        )
        assert code == 0
        out[modality] = run_dir / "last.pt"
    return out


def test_train_writes_a_self_describing_run(dataset, checkpoints):
    ck = load_checkpoint(checkpoints["flow"])
    assert ck["in_channels"] == 2 and ck["config"]["data"]["modality"] == "flow"
    assert ck["classes"] == sorted(SynthConfig().classes)
    assert ck["prepare"] == {"fps": 10.0, "size": 40, "max_frames": None, "flow": "dis"}
    run_dir = checkpoints["flow"].parent
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == ck["config"]
    assert ck["step"] == 2 and load_checkpoint(run_dir / "checkpoint-1.pt")["epoch"] == 1  # train.max_steps=2
    log = json.loads((run_dir / "losses.json").read_text())
    assert [r["step"] for r in log] == [1, 2] and len((run_dir / "losses.csv").read_text().splitlines()) == 3
    curves = mpimg.imread(run_dir / "loss_curves.png")
    assert curves.shape == (462, 1320, 4) and (curves[..., :3] < 0.5).mean() > 0.005  # drawn, not blank


def test_eval_fused_and_detect_agree(dataset, checkpoints, capsys):
    out = dataset / "eval"
    code = main(
        [
            "eval",
            "demo",
            *_common(dataset),
            "--checkpoint",
            str(checkpoints["rgb"]),
            "--flow-checkpoint",
            str(checkpoints["flow"]),
            "--out",
            str(out),
            "--per-class",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(lines[-1])
    assert metrics["tiou"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert "Avg{0.3:0.7}" in lines[-3]  # the paper's Table I header, then its row, then the JSON
    assert json.loads((out / "metrics.json").read_text())["streams"].endswith("fused")
    evaluated = read_detections(out / "detections.json")
    # the printed table is the evaluator's score of the written detections
    gt = read_annotations(dataset / "synth" / "annotations.json")
    rescored = evaluate_detections(gt, evaluated, metrics["tiou"], subset="test")
    assert metrics["mAP"] == pytest.approx(rescored.mAP, abs=1e-12)
    (video,) = evaluated  # the one test video (splits 3/1/1 of 5)

    det_dir = dataset / "detect"
    code = main(
        [
            "detect",
            str(dataset / "synth" / "videos" / f"{video}.mp4"),
            "--checkpoint",
            str(checkpoints["rgb"]),
            "--flow-checkpoint",
            str(checkpoints["flow"]),
            "--out",
            str(det_dir),
            "--annotations",
            str(dataset / "synth" / "annotations.json"),
        ]
    )
    assert code == 0
    timeline = mpimg.imread(det_dir / "timeline.png")  # the annotations' bars in grey, one row per class at most
    truth = gt.videos[video].annotations
    assert timeline.shape[1] == 1320 and timeline.shape[0] <= round((1.2 + 0.6 * len(gt.classes.names)) * 110)
    assert (np.abs(timeline[..., :3] - 0.35).max(axis=-1) < 0.02).sum() > 100 * len(truth)
    # decoding, flow and windows streamed from the raw video give exactly what eval finds on prepared arrays
    detected = read_detections(det_dir / "detections.json")[video]
    assert len(detected) == len(evaluated[video]) > 0
    for a, b in zip(detected, evaluated[video]):
        assert (a.label, a.start, a.end) == (b.label, b.start, b.end)
        assert a.score == pytest.approx(b.score, rel=1e-9)
    rows = (det_dir / "detections.csv").read_text().splitlines()
    assert rows[0] == "video,label,start,end,score" and len(rows) == len(detected) + 1
    cues = (det_dir / "detections.srt").read_text().split("\n\n")  # one subtitle per detection scoring >= 0.1
    assert len(cues) == sum(d.score >= 0.1 for d in detected) > 0
    page = page_data(det_dir / "index.html")  # the view's page for the video, judged against the annotations
    assert page["has_ground_truth"] and page["src"] == f"../synth/videos/{video}.mp4"
    assert len(page["detections"]) == sum(d.score >= 0.01 for d in detected)
    assert str(dataset.resolve()) not in (det_dir / "index.html").read_text()  # relative paths only


def test_eval_fast_on_cpu_says_so_and_runs_the_exact_path(dataset, checkpoints, capsys):
    runs = {}
    for name, extra in (("exact", []), ("fast", ["--fast"])):
        argv = ["eval", "demo", *_common(dataset), "--checkpoint", str(checkpoints["rgb"]), "--quiet", *extra]
        assert main([*argv, "--out", str(dataset / f"eval-{name}")]) == 0
        runs[name] = read_detections(dataset / f"eval-{name}" / "detections.json")
        err = capsys.readouterr().err
        assert ("--fast applies on a CUDA device" in err) == (name == "fast")
    assert runs["fast"] == runs["exact"] and sum(len(d) for d in runs["exact"].values()) > 0


def test_bad_override_names_the_key(dataset, capsys):
    assert main(["train", "demo", "train.epochz=3"]) == 2
    err = capsys.readouterr().err
    assert "epochz" in err and "allowed keys" in err


def test_eval_missing_checkpoint_is_a_clear_error(dataset, capsys):
    code = main(["eval", "demo", *_common(dataset), "--checkpoint", str(dataset / "nope.pt")])
    assert code == 2
    assert "nope.pt does not exist" in capsys.readouterr().err


def test_held_out_evaluation_during_training(dataset, capsys):
    """data.val_subset: the validation split is scored after each epoch; best.pt is the best epoch's state."""
    run_dir = dataset / "val_run"
    code = main(
        [
            "train",
            "demo",
            *_common(dataset),
            "data.val_subset=validation",
            "train.epochs=2",
            "train.max_steps=null",
            "data.train_stride=16",
            f"train.out_dir={run_dir}",
            "--quiet",
        ]
    )
    assert code == 0
    history = json.loads((run_dir / "validation.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert "held-out (validation) average mAP after epoch 2" in capsys.readouterr().out
    # each epoch's score is what `talmts eval` of that epoch's checkpoint gives on the validation split
    for h in history:
        argv = ["eval", "demo", *_common(dataset), "--checkpoint", str(run_dir / f"checkpoint-{h['epoch']}.pt")]
        assert main([*argv, "--subset", "validation", "--out", str(run_dir / f"eval-{h['epoch']}"), "--quiet"]) == 0
        scored = json.loads((run_dir / f"eval-{h['epoch']}" / "metrics.json").read_text())
        assert scored["subset"] == "validation" and h["mAP"] == pytest.approx(scored["mAP"], abs=1e-9)
    capsys.readouterr()
    best = load_checkpoint(run_dir / "best.pt")
    best_score = best["hooks"]["validation"]["best"]
    assert best_score == max(h["average_mAP"] for h in history)
    assert best["epoch"] == 1 + [h["average_mAP"] for h in history].index(best_score)


def test_detect_a_folder_equals_one_video_at_a_time(dataset, checkpoints, capsys):
    import shutil

    folder = dataset / "folder"
    folder.mkdir()
    videos = sorted((dataset / "synth" / "videos").glob("*.mp4"))[:2]
    for v in videos:
        shutil.copy(v, folder / v.name)
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    (folder / "notes.txt").write_text("not a video file: ignored")
    ckpt = ["--checkpoint", str(checkpoints["rgb"]), "--flow-checkpoint", str(checkpoints["flow"]), "--quiet"]
    assert main(["detect", str(folder), *ckpt, "--out", str(dataset / "det-folder")]) == 1  # one video failed
    err = capsys.readouterr().err
    assert "broken" in err
    out = dataset / "det-folder"
    combined = read_detections(out / "detections.json")
    assert sorted(combined) == [v.stem for v in videos]
    page = page_data(out / "index.html")
    assert [r["href"] for r in page["rows"]] == [f"{v.stem}/index.html" for v in videos]
    for v in videos:
        video_page = page_data(out / v.stem / "index.html")
        assert video_page["video"] == v.stem
        assert len(video_page["detections"]) == sum(d.score >= 0.01 for d in combined[v.stem])
        assert main(["detect", str(v), *ckpt[:4], "--out", str(dataset / f"det-{v.stem}")]) == 0
        alone = read_detections(dataset / f"det-{v.stem}" / "detections.json")[v.stem]
        assert [(d.label, d.start, d.end) for d in alone] == [(d.label, d.start, d.end) for d in combined[v.stem]]
        assert [d.score for d in alone] == pytest.approx([d.score for d in combined[v.stem]], rel=1e-9)
    assert list(page["failed"]) == ["broken"] and str(folder.resolve()) not in str(page["failed"])
    assert main(["detect", str(folder), *ckpt, "--video-id", "x"]) == 2
    assert "--video-id names one video" in capsys.readouterr().err


def test_predictor_equals_a_slow_reference(dataset, checkpoints):
    """The predictor's detections on prepared arrays, recomputed another way: every window cut by hand with the
    protocol's offsets, each stream run on it alone (batch 1), raw outputs averaged, eq. 13, Soft-NMS."""
    import numpy as np
    import torch

    from talmts.data.transforms import make_clip
    from talmts.data.windows import window_offsets
    from talmts.engine.inference.predictor import Predictor, load_stream
    from talmts.formats.video_info import read_video_info
    from talmts.outputs import DetectorOutput
    from talmts.postprocess import decode_clip, detections_for_video

    streams = [load_stream(checkpoints[m]) for m in ("rgb", "flow")]
    cfg = streams[0].cfg
    d, infer = cfg.data, cfg.infer
    root = dataset / "prepared"
    video = sorted(read_annotations(dataset / "synth" / "annotations.json").subset("test").videos)[0]
    info = read_video_info(root / "video_info.csv")[video]
    predictor = Predictor(streams, infer, d.test_stride, d.protocol, torch.device("cpu"))
    got = predictor.prepared_videos(root, [video])[video]

    arrays = [np.load(root / sub / f"{video}.npy") for sub in ("frames", "flow")]
    candidates = []
    for offset in window_offsets(info.sample_count, d.clip_frames, d.test_stride):
        outs = []
        for stream, arr in zip(streams, arrays):
            clip = make_clip(arr, offset, d.clip_frames, d.frame_size, train=False)[None]
            with torch.no_grad():
                outs.append(stream.model(clip))
        fused = DetectorOutput.average(outs)
        real = min(d.clip_frames, info.sample_count - offset)
        candidates.append(decode_clip(fused, 0, offset, info.rate(d.protocol), infer.conf_thresh, real))
    want = detections_for_video(candidates, streams[0].classes, infer, info.count / info.fps)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a.label == b.label
        assert (a.start, a.end, a.score) == pytest.approx((b.start, b.end, b.score), abs=1e-5)
