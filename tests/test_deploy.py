"""`talmts export` and `--model DIR`: the exported graphs run through the same predictor give the checkpoint's
detections and mAP row; the contract (talmts-model.json) says what a runtime needs; the example of docs/DEPLOY.md
reproduces `talmts detect` with onnxruntime and numpy alone; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from support.tiny_model import TINY, _demo, tiny_checkpoint
from support.videogen import write_video
from talmts.cli import main
from talmts.config import load_config
from talmts.engine.checkpoint import load_checkpoint, save_checkpoint
from talmts.models import build_detector

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4


def flow_checkpoint(path: Path, seed: int = 1) -> Path:
    """A random tiny flow stream (2 channels) that fuses with :func:`tiny_checkpoint`'s RGB stream."""
    torch.manual_seed(seed)
    cfg = load_config(_demo(), [*TINY, "data.modality=flow", "data.fps=10.0"])
    state = {
        "config": cfg.to_dict(),
        "classes": ["jump", "wave"],
        "in_channels": 2,
        "prepare": {"fps": 10.0, "size": 32, "max_frames": None, "flow": "dis"},
        "model": build_detector(cfg, 2, 2).state_dict(),
        "ema": None,
    }
    return save_checkpoint(state, path)


@pytest.fixture(scope="module")
def work(tmp_path_factory, one_thread) -> dict[str, Path]:
    """Two tiny streams, their ONNX export (both, fused), a TorchScript export of the RGB one, and videos."""
    root = tmp_path_factory.mktemp("deploy")
    rgb = tiny_checkpoint(root / "rgb.pt", flow="dis")
    flow = flow_checkpoint(root / "flow.pt")
    assert main(["export", str(rgb), "--flow-checkpoint", str(flow), "--out", str(root / "onnx")]) == 0
    assert main(["export", str(rgb), "--format", "torchscript", "--out", str(root / "ts")]) == 0
    videos = root / "videos"
    for i, frames in enumerate((100, 75)):  # 25 fps -> 40 and 30 frames at 10 fps: two windows, then one padded
        write_video(videos / f"v{i}.mp4", frames=frames, fps=25.0, size=(48, 48), codec="libx264")
    return {"root": root, "rgb": rgb, "flow": flow, "onnx": root / "onnx", "ts": root / "ts", "videos": videos}


def detections(path: Path) -> list[dict]:
    (rows,) = json.loads(path.read_text())["results"].values()
    return rows


def assert_same_detections(got: list[dict], want: list[dict]) -> None:
    """Same count, labels and order; segments and scores within 1e-4."""
    assert len(got) == len(want) > 0
    assert [d["label"] for d in got] == [d["label"] for d in want]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(got, want)) <= TOL
    assert max(abs(p - q) for a, b in zip(got, want) for p, q in zip(a["segment"], b["segment"])) <= TOL


@pytest.mark.parametrize("kind", ["onnx", "ts"])
def test_detect_with_the_model_folder_gives_the_checkpoints_detections(work, kind, tmp_path, capsys):
    video = work["videos"] / "v0.mp4"
    ckpt = ["--checkpoint", str(work["rgb"])] + (["--flow-checkpoint", str(work["flow"])] if kind == "onnx" else [])
    assert main(["detect", str(video), *ckpt, "--out", str(tmp_path / "ckpt"), "--device", "cpu"]) == 0
    assert main(["detect", str(video), "--model", str(work[kind]), "--out", str(tmp_path / "model")]) == 0
    assert_same_detections(
        detections(tmp_path / "model" / "detections.json"), detections(tmp_path / "ckpt" / "detections.json")
    )


def test_the_contract_describes_the_graphs(work):
    folder = work["onnx"]
    meta = json.loads((folder / "talmts-model.json").read_text())
    cfg = load_checkpoint(work["rgb"])["config"]
    assert meta["format"] == "talmts-model" and meta["version"] == 1
    assert meta["classes"] == ["jump", "wave"]
    assert meta["sampling"] | {"how": None} == {
        "fps": 10.0,
        "max_frames": None,
        "frame_size": 32,
        "crop": 32,
        "recorded": True,
        "how": None,
    }
    assert meta["windows"]["clip_frames"] == 32 and meta["windows"]["test_stride"] == 16
    assert meta["normalization"]["scale"] * 255 + meta["normalization"]["shift"] == pytest.approx(1.0)
    assert meta["input"] == {"name": "clip", "shape": ["batch", 3, 32, 32, 32], "dtype": "float32"}
    # three levels of 8, 4, 2 anchors (T=32: Mixed_4f is T/4, then halved), centres (c + 0.5) * T / t_l
    want = [(c + 0.5) * 32 / t for t in (8, 4, 2) for c in range(t)]
    assert meta["outputs"]["anchors"] == want and meta["outputs"]["level_sizes"] == [8, 4, 2]
    shapes = {t["name"]: t["shape"] for t in meta["outputs"]["tensors"]}
    assert shapes == {
        "loc": ["batch", 14, 2], "conf": ["batch", 14, 3], "prop_loc": ["batch", 14, 2],
        "prop_conf": ["batch", 14, 3], "quality": ["batch", 14],
    }  # fmt: skip
    post, infer = meta["postprocess"], cfg["infer"]
    assert post["conf_thresh"] == infer["conf_thresh"] and post["fusion"] == infer["fusion"]
    nms = post["soft_nms"]
    assert (nms["sigma"], nms["iou_gate"], nms["score_thresh"], nms["top_k"]) == (
        infer["nms_sigma"], infer["nms_iou_gate"], infer["nms_score_thresh"], infer["nms_top_k"]
    )  # fmt: skip
    assert [s["modality"] for s in meta["streams"]] == ["rgb", "flow"]
    for s in meta["streams"]:
        assert s["sha256"] == hashlib.sha256((folder / s["file"]).read_bytes()).hexdigest()
        assert s["format"] == "onnx" and s["opset"] >= 17 and s["flow"] == "dis"
    assert "talmts." not in json.dumps(meta)  # numbers and formulas, no name of the Python package's code


def _prepared_dataset(work: dict[str, Path], root: Path) -> tuple[Path, Path]:
    gt = {"version": "t", "database": {}}
    for name, anns in (("v0", [[0.4, 1.6], [2.0, 3.5]]), ("v1", [[0.5, 2.5]])):
        rows = [{"segment": s, "label": lab} for s, lab in zip(anns, ["jump", "wave"])]
        gt["database"][name] = {"subset": "test", "annotations": rows}
    (root / "gt.json").write_text(json.dumps(gt))
    prepare = ["prepare", str(work["videos"]), str(root / "prepared"), "--size", "32", "--flow", "dis"]
    assert main([*prepare, "--workers", "1", "--quiet"]) == 0
    return root / "prepared", root / "gt.json"


@pytest.mark.slow  # prepares a dataset, then runs both paths
def test_eval_with_the_model_folder_gives_the_checkpoints_map_row(work, tmp_path, capsys):
    prepared, gt = _prepared_dataset(work, tmp_path)
    base = ["eval", "demo", *TINY, f"data.root={prepared}", f"data.annotations={gt}", "--quiet", "--json"]
    ckpt = ["--checkpoint", str(work["rgb"]), "--flow-checkpoint", str(work["flow"])]
    capsys.readouterr()
    assert main([*base, *ckpt, "--out", str(tmp_path / "e1")]) == 0
    by_ckpt = capsys.readouterr().out
    assert main([*base, "--model", str(work["onnx"]), "--out", str(tmp_path / "e2")]) == 0
    by_model = capsys.readouterr().out
    m1 = json.loads(by_ckpt.strip().splitlines()[-1])
    m2 = json.loads(by_model.strip().splitlines()[-1])
    assert m1["mAP"] == pytest.approx(m2["mAP"], abs=1e-9) and max(m1["mAP"]) > 0  # not a row of zeros
    table = lambda text: text.split("(%):", 1)[1].strip().splitlines()[:-1]  # noqa: E731  (the printed table)
    assert table(by_ckpt) == table(by_model)
    for video in ("v0", "v1"):  # and the detections behind the row
        got = json.loads((tmp_path / "e2" / "detections.json").read_text())["results"][video]
        assert_same_detections(got, json.loads((tmp_path / "e1" / "detections.json").read_text())["results"][video])


@pytest.mark.slow  # prepares a dataset, then runs both paths
def test_the_deploy_example_reproduces_detect_with_numpy_and_onnxruntime(work, tmp_path):
    example = REPO / "docs" / "deploy_example.py"
    doc = (REPO / "docs" / "DEPLOY.md").read_text()
    assert example.read_text().strip() in doc  # the page shows exactly the code that is tested
    prepared, _ = _prepared_dataset(work, tmp_path)
    assert (
        main(["detect", str(work["videos"] / "v0.mp4"), "--model", str(work["onnx"]), "--out", str(tmp_path / "d")])
        == 0
    )
    code = f"""
import csv, json, sys
import numpy as np
sys.modules["talmts"] = None  # the example must not need talmts
sys.path.insert(0, {str(example.parent)!r})
from deploy_example import detect
row = next(r for r in csv.DictReader(open({str(prepared / "video_info.csv")!r})) if r["video"] == "v0")
fps, count, samples = float(row["fps"]), int(row["count"]), int(row["sample_count"])
arrays = {{"rgb": np.load({str(prepared / "frames" / "v0.npy")!r}), "flow": np.load({str(prepared / "flow" / "v0.npy")!r})}}
print(json.dumps(detect({str(work["onnx"])!r}, arrays, fps * samples / count, count / fps)))
"""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert_same_detections(got, detections(tmp_path / "d" / "detections.json"))


# ------------------------------------------------------------------------------------------------ bad input
def _one_line_exit_2(capsys, argv: list[str], *needles: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def test_export_refuses_what_is_not_a_usable_pair_of_checkpoints(work, tmp_path, capsys):
    out = tmp_path / "out"
    other = tmp_path / "other.pt"
    torch.save({"state_dict": torch.zeros(2)}, other)  # another tool's checkpoint
    _one_line_exit_2(capsys, ["export", str(other), "--out", str(out)], str(other))
    missing = tmp_path / "nope.pt"
    _one_line_exit_2(
        capsys, ["export", str(work["rgb"]), "--flow-checkpoint", str(missing), "--out", str(out)], str(missing)
    )
    _one_line_exit_2(
        capsys,
        ["export", str(work["flow"]), "--flow-checkpoint", str(work["rgb"]), "--out", str(out)],
        "RGB.pt --flow-checkpoint FLOW.pt",
    )
    _one_line_exit_2(
        capsys,
        ["export", str(work["rgb"]), "--format", "torchscript", "--quantize", "--out", str(out)],
        "--format onnx",
    )
    assert not out.exists()
    keep = tmp_path / "full"
    keep.mkdir()
    (keep / "mine.txt").write_text("x")
    _one_line_exit_2(capsys, ["export", str(work["rgb"]), "--out", str(keep)], str(keep), "new folder")
    assert [p.name for p in keep.iterdir()] == ["mine.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_export_refuses_the_current_folder_before_exporting(work, tmp_path, capsys, monkeypatch):
    """``--out .`` (empty): the export replaces its folder whole, which the shell's own folder cannot be; said at
    once, not after the export as the rename's "Invalid argument"."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", "../here"):
        _one_line_exit_2(capsys, ["export", str(work["rgb"]), "--out", out], f"--out {out}", "new folder")
    assert list(tmp_path.iterdir()) == [here] and list(here.iterdir()) == []


def _copy(work: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(work["onnx"], folder)
    return folder


@pytest.mark.parametrize(
    "damage", ["missing_stream", "changed_graph", "newer_json", "no_onnxruntime", "no_clip_frames", "bad_sections"]
)
def test_a_bad_model_folder_is_one_line_and_nothing_is_written(work, tmp_path, capsys, monkeypatch, damage):
    folder = _copy(work, tmp_path)
    needles: tuple[str, ...]
    if damage == "missing_stream":
        (folder / "flow.onnx").unlink()
        needles = (str(folder / "flow.onnx"), "copy the whole model folder")
    elif damage == "changed_graph":
        data = bytearray((folder / "rgb.onnx").read_bytes())
        data[len(data) // 2] ^= 1  # one bit of one weight
        (folder / "rgb.onnx").write_bytes(bytes(data))
        needles = (str(folder / "rgb.onnx"), "sha256", "export it again")
    elif damage == "newer_json":
        meta = json.loads((folder / "talmts-model.json").read_text())
        meta["version"], meta["written_by"] = 2, "talmts 9.0"
        (folder / "talmts-model.json").write_text(json.dumps(meta))
        needles = ("talmts-model.json", "version 2", "upgrade talmts")
    elif damage == "no_clip_frames":  # the contract is plain JSON a user may edit: a field lost in the edit
        meta = json.loads((folder / "talmts-model.json").read_text())
        del meta["windows"]["clip_frames"]
        (folder / "talmts-model.json").write_text(json.dumps(meta))
        needles = ("talmts-model.json", "windows.clip_frames", "export the model again")
    elif damage == "bad_sections":
        meta = json.loads((folder / "talmts-model.json").read_text())
        meta["postprocess"], meta["streams"][1]["flow"] = [], 7
        (folder / "talmts-model.json").write_text(json.dumps(meta))
        needles = ("talmts-model.json", "postprocess", "export the model again")
    else:
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the [onnx] extra were not installed
        needles = ("onnxruntime", "pip install 'talmts[onnx]'")
    out = tmp_path / "out"
    _one_line_exit_2(
        capsys, ["detect", str(work["videos"] / "v0.mp4"), "--model", str(folder), "--out", str(out)], *needles
    )
    assert not out.exists()


def test_a_video_the_sampling_cannot_serve_is_one_line_and_nothing_is_written(work, tmp_path, capsys):
    video = write_video(tmp_path / "blink.mp4", frames=2, fps=30.0, size=(48, 48), codec="libx264")
    out = tmp_path / "out"
    # 2 frames at 30 fps last 1/15 s: sampling at 10 fps keeps no frame
    _one_line_exit_2(
        capsys,
        ["detect", str(video), "--model", str(work["ts"]), "--out", str(out)],
        str(video),
        "no frame kept at 10 fps",
    )
    assert not out.exists()


def test_model_and_checkpoint_options_exclude_each_other(work, tmp_path, capsys):
    video = str(work["videos"] / "v0.mp4")
    _one_line_exit_2(capsys, ["detect", video, "--out", str(tmp_path / "o")], "--checkpoint CKPT", "--model DIR")
    both = ["--model", str(work["onnx"]), "--checkpoint", str(work["rgb"])]
    _one_line_exit_2(capsys, ["detect", video, *both, "--out", str(tmp_path / "o")], "name the network once")
    flow = ["--model", str(work["onnx"]), "--flow-checkpoint", str(work["flow"])]
    _one_line_exit_2(capsys, ["detect", video, *flow, "--out", str(tmp_path / "o")], "holds both streams")
    assert not (tmp_path / "o").exists()
