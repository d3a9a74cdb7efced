"""Config fields: bundled bases, ranges checked with the key and the range, sources declared, one subset rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from talmts.cli import main
from talmts.config import Config, ConfigError, load_config
from talmts.config.fields import SOURCES, declared_fields, parse_range, range_errors
from talmts.subsets import SUBSET_ALIASES, canonical_subset


# ---- _base_ names a bundled config ---------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["demo", "generic", "generic.yaml", "thumos14_rgb"])
def test_base_may_name_a_bundled_config(tmp_path: Path, base: str) -> None:
    (tmp_path / "mine.yaml").write_text(f"_base_: {base}\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "mine.yaml")
    assert cfg.train.epochs == 3
    assert (
        cfg.name
        == yaml.safe_load((Path(__file__).parents[1] / "configs" / f"{base.removesuffix('.yaml')}.yaml").read_text())[
            "name"
        ]
    )


def test_a_file_beside_the_users_file_wins_over_a_bundled_one(tmp_path: Path) -> None:
    (tmp_path / "demo.yaml").write_text("name: my_demo\n")
    (tmp_path / "mine.yaml").write_text("_base_: demo\n")
    assert load_config(tmp_path / "mine.yaml").name == "my_demo"


def test_an_unknown_base_lists_the_bundled_configs(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text("_base_: nope\n")
    with pytest.raises(ConfigError, match=r"nope.*bundled config.*'demo'.*'generic'"):
        load_config(tmp_path / "mine.yaml")


# ---- every numeric field has its range checked ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("train.epochs=-1", "train.epochs=-1 is out of range: it must be >= 1"),
        ("train.epochs=0", "train.epochs=0 is out of range: it must be >= 1"),
        ("train.lr=0", "train.lr=0.0 is out of range: it must be > 0"),
        ("data.train_stride=0", "data.train_stride=0 is out of range"),
        ("data.fps=-10", "data.fps=-10.0 is out of range: it must be (0, 120]"),
        ("loss.focal_alpha=1.5", "loss.focal_alpha=1.5 is out of range: it must be [0, 1]"),
        ("train.ema=1.0", "train.ema=1.0 is out of range: it must be (0, 1)"),
        ("model.stt.dropout=1", "model.stt.dropout=1.0 is out of range: it must be [0, 1)"),
        ("eval.tiou=[0.5,1.2]", "eval.tiou[1]=1.2 is out of range: it must be (0, 1]"),
        ("infer.nms_top_k=0", "infer.nms_top_k=0 is out of range"),
        ("data.fps=.nan", "data.fps=nan is out of range"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_range(override: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert words in str(info.value)


def test_train_with_negative_epochs_fails_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "demo", "train.epochs=-1", f"train.out_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "talmts train: train.epochs=-1 is out of range: it must be >= 1"
    assert not out.exists()


def test_every_numeric_field_declares_a_range_and_every_field_a_source() -> None:
    for key, _value, f in declared_fields(Config()):
        assert f.metadata.get("source") in SOURCES, key
        hint = str(f.type)
        if re.search(r"\b(int|float)\b", hint):
            assert f.metadata.get("range") is not None, f"{key} ({hint}) has no declared range"
    assert range_errors(Config()) == []


def test_defaults_name_their_source_truthfully() -> None:
    source = {key: f.metadata["source"] for key, _, f in declared_fields(Config())}
    # the paper's section IV-B and eq. 9; AFSD's code; talmts' own
    assert {
        k: source[k] for k in ("train.epochs", "train.lr", "data.clip_frames", "loss.refined_iou")
    } == dict.fromkeys(("train.epochs", "train.lr", "data.clip_frames", "loss.refined_iou"), "paper")
    assert source["model.levels"] == source["infer.conf_thresh"] == source["data.stored_size"] == "AFSD"
    assert source["train.lr_scaling"] == source["data.flip_negates_flow"] == "talmts"


def test_ranges_parse_as_written() -> None:
    r = parse_range("(0, 1]")
    assert 0.5 in r and 1.0 in r and 0.0 not in r and 1.1 not in r
    assert 1 in parse_range(">= 1") and 0 not in parse_range(">= 1") and 0 not in parse_range("> 0")
    with pytest.raises(ValueError):
        parse_range("between 0 and 1")


# ---- one rule for subset names ---------------------------------------------------------------------------------
def test_config_subsets_take_every_spelling_of_the_files() -> None:
    cfg = load_config(None, ["data.train_subset=Training", "data.test_subset=testing", "data.val_subset=val"])
    assert (cfg.data.train_subset, cfg.data.test_subset, cfg.data.val_subset) == ("train", "test", "validation")
    with pytest.raises(ConfigError, match=r"data.test_subset='fold1' is not a subset name.*test \(test/testing\)"):
        load_config(None, ["data.test_subset=fold1"])
    with pytest.raises(ConfigError, match="test split"):  # the same split under two spellings is still the same
        load_config(None, ["data.val_subset=Testing"])


def test_one_rule_for_files_and_configs() -> None:
    from talmts.schema import normalize_subset

    for spelling, canonical in SUBSET_ALIASES.items():
        for variant in (spelling, spelling.upper(), f" {spelling.title()} "):
            assert canonical_subset(variant) == normalize_subset(variant) == canonical
            assert load_config(None, [f"data.train_subset={variant.strip()}"]).data.train_subset == canonical


def test_the_bundled_configs_say_where_eq9_stands() -> None:
    configs = Path(__file__).parents[1] / "configs"
    anet = (configs / "anet13_rgb.yaml").read_text()
    assert "the paper is silent" not in anet and "eq. 9" in anet
    assert "departs from eq. 9's text, which says 0.5" in anet
    reproduce = " ".join((Path(__file__).parents[1] / "docs" / "REPRODUCE.md").read_text().split())
    assert "the text under eq. 9 says 0.5" in reproduce and "departs from the paper's text" in reproduce


def test_duplicate_classes_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data.classes lists \['a'\] more than once"):
        load_config(None, ["data.classes=[a,b,a]"])
