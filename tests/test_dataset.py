"""ClipDataset / VideoClips on a tiny prepared dataset laid out exactly like `talmts prepare` writes it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from support.prepared import FakeVideo, write_ground_truth, write_prepared
from talmts.config import load_config
from talmts.data.dataset import ClipDataset, collate_clips
from talmts.data.transforms import PAD_VALUE, center_crop_box, flip_horizontal, normalize

S, F, T = 12, 8, 32  # stored size, crop, clip frames
VIDEOS = {  # video -> (subset, frames, seconds->frames rate at 2 fps sampling, annotations in seconds)
    "v_a": ("train", 70, [(1.0, 5.0, "jump"), (20.0, 24.0, "run")]),
    "v_b": ("train", 20, [(2.0, 6.0, "run")]),
    "v_c": ("test", 45, [(3.0, 9.0, "jump")]),
}


def _frames(n: int, channels: int, seed: int) -> np.ndarray:
    """Pixel (t, y, x, c) = distinct per frame and position, so crops and flips can be told apart."""
    t, y, x, c = np.meshgrid(np.arange(n), np.arange(S), np.arange(S), np.arange(channels), indexing="ij")
    return ((t * 7 + y * S + x + c * 50 + seed) % 256).astype(np.uint8)


@pytest.fixture()
def prepared(tmp_path: Path) -> Path:
    videos = {  # sampled at 2 fps from 30 fps videos: rate = 30 * n / (15 n) = 2
        vid: FakeVideo(subset, _frames(n, 3, i), _frames(n, 2, i), fps=30.0, sample_fps=2.0, annotations=anns)
        for i, (vid, (subset, n, anns)) in enumerate(VIDEOS.items())
    }
    write_prepared(tmp_path / "prepared", videos)
    write_ground_truth(tmp_path / "gt.json", videos)
    return tmp_path


def _cfg(base: Path, *extra: str):
    return load_config(
        None,
        [
            f"data.root={base / 'prepared'}",
            f"data.annotations={base / 'gt.json'}",
            f"data.clip_frames={T}",
            "data.train_stride=8",
            "data.test_stride=16",
            f"data.frame_size={F}",
            f"data.stored_size={S}",
            "model.levels=2",
            "model.fsa.patch=8",
            *extra,
        ],
    )


def test_test_windows_centre_crop_padding_and_targets(prepared):
    ds = ClipDataset(_cfg(prepared), "test", train=False)
    assert ds.classes.names == ("jump", "run") and ds.num_classes == 2 and ds.in_channels == 3
    assert [(p.window.video, p.window.offset) for p in ds.plans] == [("v_c", 0), ("v_c", 13)]  # 45 frames
    stored = np.load(prepared / "prepared" / "frames" / "v_c.npy")
    y, x = center_crop_box(S, S, F)
    for i, offset in enumerate([0, 13]):
        item = ds[i]
        assert item["clip"].shape == (3, T, F, F) and item["clip"].dtype == torch.float32
        want = normalize(stored[offset : offset + T, y : y + F, x : x + F])
        np.testing.assert_allclose(item["clip"].numpy(), want, atol=1e-6)
        assert item["video"] == "v_c" and item["offset"] == offset and item["fps"] == pytest.approx(2.0)
        assert item["frames"] == min(T, 45 - offset)
    # [3 s, 9 s] at 2 frames/s = [6, 18]: inside window 0 wholly; 5/12 inside window 13 (< 0.5: left out)
    np.testing.assert_allclose(ds[0]["targets"].numpy(), [[6, 18, 1]])
    assert ds[1]["targets"].shape == (0, 3)


def test_short_video_is_padded_with_the_same_value_in_training_and_testing(prepared):
    ds = ClipDataset(_cfg(prepared), "train", train=True)
    b = next(i for i, p in enumerate(ds.plans) if p.window.video == "v_b")  # 20 frames < 32
    assert ds.plans[b].window.offset == 0
    clip = ds[b]["clip"]
    assert torch.all(clip[:, 20:] == PAD_VALUE) and not torch.all(clip[:, :20] == PAD_VALUE)
    np.testing.assert_allclose(ds[b]["targets"].numpy(), [[4, 12, 2]])
    test_like = ClipDataset(_cfg(prepared), "train", train=False)
    i = next(i for i, p in enumerate(test_like.plans) if p.window.video == "v_b")
    assert torch.all(test_like[i]["clip"][:, 20:] == PAD_VALUE)


def test_training_windows_and_targets(prepared):
    ds = ClipDataset(_cfg(prepared), "train", train=True)
    # v_a: 70 frames, offsets 0, 8, 16, 24, 32, 38; actions [2, 10] (jump) and [40, 48] (run) in frames.
    # Window 8 = [8, 40] holds neither wholly and is dropped; the others hold exactly one.
    got = {p.window.offset: p.targets.tolist() for p in ds.plans if p.window.video == "v_a"}
    assert got == {0: [[2, 10, 1]], 16: [[24, 32, 2]], 24: [[16, 24, 2]], 32: [[8, 16, 2]], 38: [[2, 10, 2]]}
    assert len(ds) == len(got) + 1  # plus v_b's single window


def test_random_crop_is_a_window_of_the_stored_frames_and_flip_mirrors(prepared):
    cfg = _cfg(prepared)
    ds = ClipDataset(cfg, "train", train=True)
    stored = np.load(prepared / "prepared" / "frames" / "v_a.npy")
    seen_flip, seen_plain, boxes = False, False, set()
    for seed in range(40):
        torch.manual_seed(seed)
        clip = ds[0]["clip"].numpy()  # window v_a @ 0
        matched = False
        for yy in range(S - F + 1):
            for xx in range(S - F + 1):
                ref = normalize(stored[:T, yy : yy + F, xx : xx + F])
                if np.allclose(clip, ref, atol=1e-6):
                    seen_plain, matched = True, True
                elif np.allclose(clip, flip_horizontal(ref, negate_flow_x=False), atol=1e-6):
                    seen_flip, matched = True, True
                if matched:
                    boxes.add((yy, xx))
                    break
            if matched:
                break
        assert matched, f"seed {seed}: the clip is no crop of the stored frames"
    assert seen_flip and seen_plain and len(boxes) > 3


def test_flow_flip_negates_x_unless_disabled(prepared):
    stored = np.load(prepared / "prepared" / "flow" / "v_a.npy")
    crops = [normalize(stored[:T, y : y + F, x : x + F]) for y in range(S - F + 1) for x in range(S - F + 1)]
    for negate in (True, False):
        ds = ClipDataset(_cfg(prepared, "data.modality=flow", f"data.flip_negates_flow={negate}"), "train", True)
        assert ds.in_channels == 2
        flipped = 0
        for seed in range(30):
            torch.manual_seed(seed)
            clip = ds[0]["clip"].numpy()
            mirrored = [c[:, :, :, ::-1] for c in crops if np.allclose(clip[1], c[1, :, :, ::-1], atol=1e-6)]
            if mirrored:  # the y channel is mirrored (never negated): x must be mirrored and, if asked, negated
                np.testing.assert_allclose(clip[0], -mirrored[0][0] if negate else mirrored[0][0], atol=1e-6)
                flipped += 1
            else:
                assert any(np.allclose(clip, c, atol=1e-6) for c in crops)
        assert 5 < flipped < 25


def test_class_agnostic_and_fixed_class_order(prepared):
    ds = ClipDataset(_cfg(prepared, "data.class_agnostic=true"), "train", train=True)
    assert ds.num_classes == 1 and all(set(p.targets[:, 2]) <= {1.0} for p in ds.plans)
    ds = ClipDataset(_cfg(prepared, "data.classes=[run, jump, swim]"), "train", train=True)
    assert ds.classes.index("run") == 1 and ds.plans[0].targets[0, 2] == 2  # jump is class 2 now
    with pytest.raises(Exception, match="swim|not in"):
        ClipDataset(_cfg(prepared, "data.classes=[swim]"), "train", train=True)


def test_collate_and_dataloader(prepared):
    ds = ClipDataset(_cfg(prepared), "train", train=True)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_clips)))
    assert batch["clip"].shape == (3, 3, T, F, F)
    assert isinstance(batch["targets"], list) and all(t.shape[1] == 3 for t in batch["targets"])
    assert len(batch["video"]) == 3 and len(batch["offset"]) == 3 and len(batch["fps"]) == 3
    ds.array("v_a")
    clone = pickle.loads(pickle.dumps(ds))  # worker processes get the dataset without open memory maps
    assert len(clone._arrays) == 0 and torch.equal(clone[0]["targets"], ds[0]["targets"])


def test_inference_windows_are_the_test_dataset_clips(prepared):
    """Training's test-mode plan (random access) and inference's cutter (streaming) give the same clips."""
    from talmts.data.windows import cut_windows, frames_of
    from talmts.engine.inference.predictor import window_tensor

    cfg = _cfg(prepared)
    d = cfg.data
    ds = ClipDataset(cfg, "test", train=False)
    frames = np.load(prepared / "prepared" / "frames" / "v_c.npy")
    windows = list(cut_windows(frames_of([frames]), d.clip_frames, d.test_stride, d.protocol))
    assert len(windows) == len(ds) > 1
    for i, (offset, (w,)) in enumerate(windows):
        item = ds[i]
        assert item["offset"] == offset and item["frames"] == len(w)
        assert torch.equal(item["clip"], window_tensor(w, d.clip_frames, d.frame_size))


def test_errors_name_the_file_and_the_fix(prepared):
    root = prepared / "prepared"
    np.save(root / "frames" / "v_c.npy", _frames(44, 3, 0))  # one frame short of video_info.csv
    ds = ClipDataset(_cfg(prepared), "test", train=False)
    with pytest.raises(ValueError, match=r"v_c\.npy.*sample_count=45"):
        ds[0]
    (root / "frames" / "v_c.npy").unlink()
    with pytest.raises(FileNotFoundError, match="talmts prepare"):
        ClipDataset(_cfg(prepared), "test", train=False)[0]
    with pytest.raises(ValueError, match="no video in subset 'validation'"):
        ClipDataset(_cfg(prepared), "validation", train=False)
    with pytest.raises(ValueError, match="data.root"):
        ClipDataset(_cfg(prepared, "data.root="), "train", train=True)


def test_unprepared_videos_are_skipped_with_a_warning(prepared):
    gt = json.loads((prepared / "gt.json").read_text())
    gt["database"]["v_missing"] = {"subset": "train", "annotations": [{"segment": [1, 2], "label": "run"}]}
    (prepared / "gt.json").write_text(json.dumps(gt))
    with pytest.warns(UserWarning, match="1 of 3 'train' videos"):
        ds = ClipDataset(_cfg(prepared), "train", train=True)
    assert ds.missing == ["v_missing"] and {p.window.video for p in ds.plans} == {"v_a", "v_b"}


def test_bundled_thumos_config_reads_a_fake_prepared_thumos_layout(tmp_path):
    """configs/thumos14_rgb.yaml against tiny arrays with THUMOS names and subsets (paths and sizes overridden)."""
    root = tmp_path / "prepared"
    videos = {
        vid: FakeVideo(subset, np.zeros((n, 112, 112, 3), np.uint8), fps=30.0, annotations=[(2.0, 6.0, "Diving")])
        for vid, subset, n in (("video_validation_0000051", "Validation", 300), ("video_test_0000004", "Test", 260))
    }
    write_prepared(root, videos)
    write_ground_truth(tmp_path / "thumos14.json", videos)
    cfg = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "thumos14_rgb.yaml",
        [f"data.root={root}", f"data.annotations={tmp_path / 'thumos14.json'}"],
    )
    train = ClipDataset(cfg, cfg.data.train_subset, train=True)
    test = ClipDataset(cfg, cfg.data.test_subset, train=False)
    assert train.num_classes == 20 and train.classes.index("Diving") == 8
    assert [p.window.offset for p in train.plans] == [0]  # 300 frames: offsets 0, 30, 44; only 0 holds [20, 60]
    assert [p.window.offset for p in test.plans] == [0, 4]
    assert train[0]["clip"].shape == (3, 256, 96, 96)
