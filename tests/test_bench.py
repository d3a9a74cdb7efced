"""``talmts bench`` and engine.bench: the inference levers give the same detections as the plain model, the
backbone-only part, lever validation, every flag of the GPU scripts accepted on the CPU, and every script in bench/
still importing what it uses from the package."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from talmts.cli import bench as cli_bench
from talmts.cli import main
from talmts.config import load_config, resolve_config_path
from talmts.engine.commands.bench import network as bench
from talmts.models.i3d import InceptionModule
from talmts.models.i3d_rewrites import PointwiseMatmul, StemSpaceToDepth
from talmts.models.levers import COMPILE_BACKENDS, COMPILE_MODES, FAST, Levers
from talmts.models.same import FusedMaxPool

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY = ["model.backbone.weights=null", "data.clip_frames=32"]  # the demo network (I3D width 0.25, 48 px), 32 frames


def _cfg():
    return load_config(resolve_config_path("demo"), TINY)


def test_fused_pointwise_detector_gives_the_plain_detections() -> None:
    cfg, cpu = _cfg(), torch.device("cpu")
    plain, _ = bench.prepare_model(cfg, 3, 3, cpu, Levers())
    fused, _ = bench.prepare_model(cfg, 3, 3, cpu, Levers(fuse_pointwise=True, channels_last=True))
    blocks = [m for m in fused.backbone.modules() if isinstance(m, InceptionModule)]
    assert blocks and all(b.pointwise is not None for b in blocks)  # the lever really was applied
    clip = torch.rand(2, 3, 32, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        agree = bench.compare_scores(plain(clip), fused(clip.contiguous(memory_format=torch.channels_last_3d)))
    assert agree["max_score_diff"] < 1e-5 and agree["max_boundary_diff_frames"] < 1e-3
    assert agree["top_overlap"] == 1.0


def test_rewritten_detector_gives_the_plain_detections() -> None:
    cfg, cpu = _cfg(), torch.device("cpu")
    plain, _ = bench.prepare_model(cfg, 3, 3, cpu, Levers())
    levers = Levers(fuse_pointwise=True, stem_s2d=True, pointwise_matmul=True, fused_pools=True)
    fast, _ = bench.prepare_model(cfg, 3, 3, cpu, levers)
    assert isinstance(fast.backbone.Conv3d_1a_7x7, StemSpaceToDepth)  # the levers really were applied
    assert any(isinstance(m, PointwiseMatmul) for m in fast.modules())
    assert any(isinstance(m, FusedMaxPool) for m in fast.modules())
    clip = torch.rand(2, 3, 32, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        agree = bench.compare_scores(plain(clip), fast(clip))
    assert agree["max_score_diff"] < 1e-5 and agree["max_boundary_diff_frames"] < 1e-3
    assert agree["top_overlap"] == 1.0


def test_backbone_only_returns_the_endpoints_the_head_reads() -> None:
    cfg, cpu = _cfg(), torch.device("cpu")
    model, _ = bench.prepare_model(cfg, 3, 3, cpu, Levers(), part="backbone")
    detector, _ = bench.prepare_model(cfg, 3, 3, cpu, Levers())
    clip = torch.rand(1, 3, 32, 48, 48)
    with torch.inference_mode():
        feats = model(clip)
        want = detector.backbone.extract_features(clip, detector.endpoints)
    assert len(feats) == len(detector.endpoints) == 2
    for f, name in zip(feats, detector.endpoints):
        torch.testing.assert_close(f, want[name])
    assert bench.compare_outputs(feats, feats) == {"max_rel_feature_diff": 0.0}
    off = tuple(f * 1.01 for f in feats)
    assert bench.compare_outputs(feats, off)["max_rel_feature_diff"] == pytest.approx(0.01, rel=1e-3)


def test_lever_validation() -> None:
    assert Levers(fuse_pointwise=True).fold_bn  # the fused conv carries the folded BN
    with pytest.raises(ValueError, match="captures CUDA graphs itself"):
        Levers(compile=True, compile_mode="reduce-overhead", cuda_graph=True)
    with pytest.raises(ValueError, match="compile_mode"):
        Levers(compile_mode="fastest")
    with pytest.raises(ValueError, match="dtype"):
        Levers(dtype="fp16")
    Levers(compile=True, compile_mode="max-autotune-no-cudagraphs", cuda_graph=True)
    parser = argparse.ArgumentParser()
    cli_bench.add_arguments(parser)
    choices = {a.dest: a.choices for a in parser._actions}
    assert choices["compile_mode"] == COMPILE_MODES and choices["compile_backend"] == COMPILE_BACKENDS


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_backbone_only_fused_check_and_overrides_after_batch(tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    argv = ["bench", "--device", "cpu", "--config", "demo", "--iters", "1", "--warmup", "0", "--no-flops"]
    argv += ["--fuse-pointwise", "--backbone-only", "--check", "--json", "--save", str(out)]
    assert main([*argv, "--batch", "1", "2", "data.clip_frames=32"]) == 0  # the override after --batch is kept
    rows = [r for r in _rows(out) if "frames_per_s" in r]
    assert [r["batch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["part"] == "backbone" and r["frames"] == 32
        assert r["levers"]["fuse_pointwise"] and r["levers"]["fold_bn"]
        assert r["agreement"]["max_rel_feature_diff"] < 1e-5


def test_cli_gpu_flags_dry_run_on_cpu(tmp_path: Path) -> None:
    # every GPU lever at once; the compile traces only (eager backend) to keep the test short
    out, cache = tmp_path / "b.jsonl", tmp_path / "cache" / "cc.bin"
    argv = ["bench", "--device", "cpu", "--config", "demo", "data.clip_frames=32", "--iters", "1", "--warmup", "1"]
    argv += ["--dtype", "bf16", "--channels-last", "--fold-bn", "--fuse-pointwise", "--compile", "--cuda-graph"]
    argv += ["--stem-s2d", "--pointwise-matmul", "--fused-pools"]
    argv += ["--compile-mode", "max-autotune-no-cudagraphs", "--compile-backend", "eager"]
    argv += ["--compile-cache", str(cache), "--check", "--json", "--save", str(out), "--batch", "2"]
    assert main(argv) == 0
    rows = _rows(out)
    net = next(r for r in rows if "frames_per_s" in r)
    assert net["levers"]["compile_mode"] == "max-autotune-no-cudagraphs" and net["levers"]["cuda_graph"]
    assert net["levers"]["stem_s2d"] and net["levers"]["pointwise_matmul"] and net["levers"]["fused_pools"]
    assert net["agreement"]["max_score_diff"] < 1e-2  # bf16 vs the fp32 eager model
    assert any("compile_cache" in r for r in rows)


def test_cli_fast_sets_every_lever_of_the_best_row(tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    argv = ["bench", "--device", "cpu", "--config", "demo", "--iters", "1", "--warmup", "1", "--no-flops", "--fast"]
    argv += ["--compile-backend", "eager", "--json", "--save", str(out), "--batch", "1", "data.clip_frames=32"]
    assert main(argv) == 0
    (row,) = [r for r in _rows(out) if "frames_per_s" in r]
    lev = row["levers"]
    assert lev["dtype"] == "bf16" and all(lev[k] for k in cli_bench.FAST_FLAGS)
    assert set(cli_bench.FAST_FLAGS) <= set(lev)  # every name is a real lever
    assert Levers(**{**lev, "compile_backend": "inductor"}) == FAST  # the preset `eval --fast` applies


def test_cli_rejects_bad_combinations(capsys: pytest.CaptureFixture) -> None:
    base = ["bench", "--device", "cpu", "--config", "demo", "--no-flops"]
    assert main([*base, "--compile", "--compile-mode", "reduce-overhead", "--cuda-graph"]) == 2
    assert "captures CUDA graphs itself" in capsys.readouterr().err
    assert main([*base, "--batch", "1", "x"]) == 2
    assert "--batch takes integers" in capsys.readouterr().err


def test_compile_cache_missing_or_damaged(tmp_path: Path) -> None:
    assert not bench.load_compile_cache(tmp_path / "none.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a cache")
    with pytest.warns(UserWarning, match="compile cache not loaded"):
        assert not bench.load_compile_cache(bad)


def test_cli_train_step_rows_per_lever_for_both_networks(tmp_path: Path) -> None:
    """--train-step --train-only: one row per network and lever set, the all-levers one traced (eager backend)."""
    out = tmp_path / "t.jsonl"
    argv = ["bench", "--device", "cpu", "--config", "demo", "--train-step", "--train-only", "--iters", "1"]
    argv += ["--warmup", "1", "--train-variants", "plain", "all", "--json", "--save", str(out), "--batch", "1"]
    argv += ["data.clip_frames=32", "data.frame_size=32", "data.stored_size=40", "model.backbone.width=0.125"]
    argv += ["model.stt.enabled=false", "train.compile_backend=eager"]
    assert main(argv) == 0
    rows = _rows(out)
    assert not any("median_ms" in r for r in rows)  # --train-only: no inference rows
    got = {(r["preset"], r["train_step"]): r for r in rows}
    assert set(got) == {("talmts", "plain"), ("talmts", "all"), ("afsd", "plain"), ("afsd", "all")}
    for r in rows:
        assert r["clips_per_s"] > 0 and r["frames_per_s"] == pytest.approx(r["clips_per_s"] * 32)
        assert r["peak_mem_mb"] > 0 and math.isfinite(r["loss"])
    assert got[("talmts", "all")]["levers"]["train.compile"] and got[("talmts", "all")]["compile_backend"] == "eager"


def test_train_variants_change_only_their_fields() -> None:
    from talmts.engine.commands.bench.training import PLAIN, TRAIN_VARIANTS, with_changes

    cfg = _cfg()
    for name, changes in TRAIN_VARIANTS.items():
        assert set(changes) <= set(PLAIN), name  # every lever is reset by the plain step
        changed = with_changes(cfg, {**PLAIN, **changes})
        assert with_changes(cfg, PLAIN).to_dict() != changed.to_dict() or name == "plain"
    assert cfg.train.compile is False  # the original is not touched
    with pytest.raises(KeyError, match="train.compil"):
        with_changes(cfg, {"train.compil": True})
    with pytest.raises(ValueError, match="one of"):
        bench_train_variant_unknown()


def bench_train_variant_unknown() -> None:
    from talmts.engine.commands.bench.training import measure_train_variant

    measure_train_variant(_cfg(), "fastest", device=torch.device("cpu"), batch=1)


def test_a_failing_lever_is_a_row_not_the_end_of_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from talmts.engine.commands.bench import training as bench_train

    def broken(cfg, variant, **kw):  # noqa: ANN001, ANN003, ANN202
        raise RuntimeError(f"codegen failed for {variant}\nlong traceback text")

    monkeypatch.setattr(bench_train, "measure_train_variant", broken)
    out = tmp_path / "t.jsonl"
    argv = ["bench", "--device", "cpu", "--config", "demo", "--train-step", "--train-only", "--json"]
    argv += ["--train-variants", "plain", "compile", "--train-presets", "afsd", "--save", str(out), "--batch", "1"]
    assert main(argv) == 0
    rows = _rows(out)
    assert [r["train_step"] for r in rows] == ["plain", "compile"]
    assert rows[1]["error"] == "RuntimeError: codegen failed for compile" and rows[1]["preset"] == "afsd"


def load_bench_script(script: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - a module
    monkeypatch.syspath_prepend(str(BENCH))  # scripts import their siblings
    spec = importlib.util.spec_from_file_location(f"bench_script_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_every_bench_script_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Benchmarks run by hand and rarely: a name renamed in the package must fail here, not on the day one is run."""
    assert callable(load_bench_script(script, monkeypatch).main)


def test_pipeline_bench_reports_every_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from talmts.data.synth import write_mp4

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (48, 48 + 80, 3), dtype=np.uint8)
    video = tmp_path / "slide.mp4"
    write_mp4(video, (wide[:, k : k + 48].copy() for k in range(80)), fps=10)  # 8 s
    module = load_bench_script(BENCH / "bench_pipeline.py", monkeypatch)
    monkeypatch.setattr(
        sys, "argv", ["bench_pipeline.py", str(video), "--size", "48", "--flow", "dis", "--threads", "1"]
    )
    module.main()
    out = capsys.readouterr().out
    assert "80 frames at 10 fps -> 80 frames at 10 fps, 48 px; flow dis" in out
    stages = dict(re.findall(r"^\| ([^|*]+?) \| ([0-9.]+) \|", out, re.M))
    assert set(stages) == {"decode", "sample + resize", "flow (dis)", "network (RGB + flow)", "decode + Soft-NMS"}
    total = float(re.search(r"\*\*total\*\* \| \*\*([0-9.]+)\*\*", out).group(1))
    assert total == pytest.approx(sum(float(v) for v in stages.values()), abs=5e-3)
