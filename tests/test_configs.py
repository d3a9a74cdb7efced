"""Bundled configs: every one loads and validates, encodes the paper's section IV-B, and the documented commands
(docs/REPRODUCE.md) use only configs, overrides and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from talmts.cli import _load, build_parser
from talmts.config import ConfigError, load_config, resolve_config_path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "src" / "talmts" / "config" / "bundled"
CONFIGS = sorted(BUNDLED.glob("*.yaml"))


def test_configs_link_points_at_the_package_folder():
    assert (REPO / "configs").resolve() == BUNDLED.resolve()
    assert {p.stem for p in CONFIGS} >= {"thumos14_rgb", "thumos14_flow", "anet13_rgb", "anet13_flow", "generic"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_bundled_config_loads(path):
    cfg = load_config(path)
    assert cfg.name == path.stem
    assert load_config(resolve_config_path(path.stem)).to_dict() == cfg.to_dict()  # found by name too


def test_section_iv_b_settings():
    for name in ("thumos14_rgb", "thumos14_flow", "anet13_rgb", "anet13_flow"):
        cfg = load_config(BUNDLED / f"{name}.yaml")
        t = cfg.train
        assert (t.lr, t.weight_decay, t.batch_size, t.epochs, t.schedule) == (1e-5, 1e-3, 1, 25, "constant")
        assert cfg.loss.beta == 1.0 and cfg.model.fsa.patch == 24 and cfg.data.frame_size == 96
        assert cfg.model.rfp.enabled and cfg.model.stt.enabled and cfg.model.fsa.enabled
        assert cfg.data.modality == ("flow" if name.endswith("flow") else "rgb")
        assert Path(cfg.model.backbone.weights).name == f"{cfg.data.modality}_imagenet.pt"
        assert cfg.train.out_dir == f"runs/{name}"
        assert t.feature_cache == "" and t.finetune_epochs == 0 and t.backbone_lr_mult == 1.0  # end to end
    th = load_config(BUNDLED / "thumos14_rgb.yaml")
    assert (th.loss.alpha, th.infer.nms_sigma, th.infer.nms_iou_gate) == (10.0, 0.3, None)
    assert (th.data.protocol, th.data.fps, th.data.clip_frames, th.data.train_stride, th.data.test_stride) == (
        "sliding", 10.0, 256, 30, 128,
    )  # fmt: skip
    assert th.data.min_overlap == 0.5 and th.model.variant == "two_endpoint" and len(th.data.classes) == 20
    assert th.data.train_subset == "validation" and th.data.test_subset == "test" and th.eval.table == "thumos"
    assert th.eval.tiou == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    an = load_config(BUNDLED / "anet13_rgb.yaml")
    assert (an.loss.alpha, an.infer.nms_sigma, an.data.protocol, an.data.clip_frames) == (1.0, 0.85, "whole", 768)
    assert an.model.variant == "single_endpoint" and an.data.class_agnostic and an.data.test_subset == "validation"
    assert an.eval.table == "anet" and an.eval.tiou == pytest.approx([0.5 + 0.05 * i for i in range(10)])
    assert len(an.loss.ranges) == an.model.levels == 6


def test_flow_configs_inherit_everything_but_the_stream():
    for rgb, flow in (("thumos14_rgb", "thumos14_flow"), ("anet13_rgb", "anet13_flow")):
        a, b = load_config(BUNDLED / f"{rgb}.yaml").to_dict(), load_config(BUNDLED / f"{flow}.yaml").to_dict()
        for section in ("loss", "infer", "eval"):
            assert a[section] == b[section]
        differing = {k for k in a["data"] if a["data"][k] != b["data"][k]}
        assert differing == {"modality"}
        assert {k for k in a["train"] if a["train"][k] != b["train"][k]} == {"out_dir"}


def test_bad_key_names_the_key_and_the_allowed_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: " + str(BUNDLED / "thumos14_rgb.yaml") + "\ndata:\n  clip_lenght: 128\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "data.clip_lenght" in msg and "clip_frames" in msg and str(bad) in msg
    with pytest.raises(ConfigError, match=r"model\.fsa\.patchsize.*'patch'"):
        load_config(BUNDLED / "thumos14_rgb.yaml", ["model.fsa.patchsize=24"])


def test_bad_value_names_the_allowed_values():
    with pytest.raises(ConfigError, match=r"data\.protocol='windows'.*\['sliding', 'whole'\]"):
        load_config(BUNDLED / "thumos14_rgb.yaml", ["data.protocol=windows"])
    with pytest.raises(ConfigError, match=r"model\.fsa\.patch=40.*\[96, 48, 32, 24, 16, 12, 8\]"):
        load_config(BUNDLED / "thumos14_rgb.yaml", ["model.fsa.patch=40"])
    with pytest.raises(ConfigError, match=r"train\.epochs must be int"):
        load_config(BUNDLED / "thumos14_rgb.yaml", ["train.epochs=many"])


def test_overrides_apply_on_top_of_the_file():
    cfg = load_config(BUNDLED / "thumos14_rgb.yaml", ["model.fsa.patch=48", "train.epochs=5", "data.root=/x"])
    assert (cfg.model.fsa.patch, cfg.train.epochs, cfg.data.root) == (48, 5, "/x")
    assert cfg.train.lr == 1e-5  # untouched keys keep the file's values


# ------------------------------------------------------------------------------------------ REPRODUCE.md
OVERRIDE = re.compile(r"^[a-z_]+(\.[a-z_]+)+=\S*$")


def _documented_commands() -> list[list[str]]:
    text = (REPO / "docs" / "REPRODUCE.md").read_text()
    blocks = re.findall(r"```\n(.*?)```", text, flags=re.S)
    lines = [ln.split(" #")[0].strip() for b in blocks for ln in b.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.startswith("talmts ")]


def test_documented_commands_use_real_configs_overrides_and_options():
    commands = _documented_commands()
    assert sum(c[1] == "train" for c in commands) >= 8 and sum(c[1] == "eval" for c in commands) >= 8
    parser = build_parser()
    for argv in commands:
        overrides = [a for a in argv if OVERRIDE.match(a)]
        if argv[1] in ("train", "eval", "dataset-stats"):
            load_config(resolve_config_path(argv[2]), overrides)  # raises on a bad key or value
        module = {
            "train": "train",
            "eval": "eval_checkpoints",
            "dataset-stats": "dataset_stats",
            "prepare": "prepare",
        }.get(argv[1])
        if module and _load(module) is not None:  # the command exists in this build: its options must parse
            _, extra = parser.parse_known_args(argv[1:])
            assert all(OVERRIDE.match(e) for e in extra), (argv, extra)


def test_documented_override_columns_load():
    text = (REPO / "docs" / "REPRODUCE.md").read_text()
    sets = [s.split() for s in re.findall(r"`((?:[a-z_]+(?:\.[a-z_]+)+=\S+ ?)+)`", text)]
    assert any("model.fsa.enabled=false" in s for s in sets) and any("infer.nms_iou_gate=0.3" in s for s in sets)
    for overrides in sets:
        load_config(BUNDLED / "thumos14_rgb.yaml", overrides)


def test_fast_recipes_change_only_speed_and_the_batch_with_its_lr_rule():
    for name in ("thumos14_rgb", "thumos14_flow"):
        paper, fast = load_config(BUNDLED / f"{name}.yaml"), load_config(BUNDLED / f"{name}_fast.yaml")
        a, b = paper.to_dict(), fast.to_dict()
        for section in ("model", "loss", "infer", "eval"):
            assert a[section] == b[section]
        assert {k for k in a["data"] if a["data"][k] != b["data"][k]} == {"workers", "prefetch", "transform"}
        changed = {k for k in a["train"] if a["train"][k] != b["train"][k]}
        assert changed == {"batch_size", "channels_last", "compile", "adam", "out_dir"}
        t = fast.train
        assert (t.batch_size, t.lr, t.lr_batch, t.lr_scaling, t.epochs) == (8, 1e-5, 1, "sqrt", 25)
