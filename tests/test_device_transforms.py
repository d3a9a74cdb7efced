"""Clips made on the device from uint8 windows equal make_clip's, draw for draw (same seeds, torch.equal); so do
FSA's patches cut from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talmts.data.device_transforms import batch_clips, clips_from_windows, raw_window, window_patches
from talmts.data.transforms import draw_clip_params, make_clip
from talmts.models.transformer import patchify

S, SIZE, L = 12, 8, 16  # stored size, crop, window length


def _video(n: int, channels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, channels), dtype=np.uint8)


CASES = [  # (frames in the video, window offset, channels, train, flip, flow, negate_flow_x)
    (40, 0, 3, True, True, False, True),
    (40, 30, 3, True, True, False, True),  # 10 real frames, 6 padded
    (40, 30, 2, True, True, True, True),  # flow: a mirrored clip negates x
    (40, 30, 2, True, True, True, False),  # flow without the negation (AFSD)
    (40, 5, 3, True, False, False, True),  # no flip drawn at all
    (40, 28, 2, False, True, True, True),  # test mode: centre crop, never mirrored
]


@pytest.mark.parametrize("case", CASES)
def test_device_clip_equals_make_clip_for_the_same_seed(case) -> None:
    n, offset, ch, train, flip, flow, negate = case
    video = _video(n, ch, seed=n + offset + ch)
    for seed in range(12):  # enough seeds that both flip outcomes and several crop corners occur
        torch.manual_seed(seed)
        want = make_clip(video, offset, L, SIZE, train=train, flip=flip, flow=flow, negate_flow_x=negate)
        torch.manual_seed(seed)
        crop, flipped = draw_clip_params(S, S, SIZE, train=train, flip=flip)
        window = torch.from_numpy(raw_window(video, offset, L))[None]
        real = min(L, n - offset)
        for channels_last in (False, True):
            got = clips_from_windows(
                window, [crop], [flipped], [real], SIZE, negate_flow_x=flow and negate, channels_last=channels_last
            )
            assert got.dtype == torch.float32 and got.shape == (1, ch, L, SIZE, SIZE)
            assert torch.equal(got[0], want), (case, seed, channels_last)
            assert got.is_contiguous(memory_format=torch.channels_last_3d) == channels_last


def test_both_flip_outcomes_and_padding_are_exercised() -> None:
    """The equality above is not vacuous: the seeds draw both flips, and padding really changes the clip."""
    draws = []
    for seed in range(12):
        torch.manual_seed(seed)
        draws.append(draw_clip_params(S, S, SIZE, train=True, flip=True))
    assert {f for _, f in draws} == {True, False} and len({c for c, _ in draws}) > 3
    video = _video(40, 2, 0)
    window = torch.from_numpy(raw_window(video, 30, L))[None]
    clip = clips_from_windows(window, [(0, 0)], [True], [10], SIZE, negate_flow_x=True)
    assert torch.all(clip[0, :, 10:] == 0.0)
    unflipped = clips_from_windows(window, [(0, 0)], [False], [10], SIZE, negate_flow_x=True)
    assert torch.equal(clip[0, 0, :10], -unflipped[0, 0, :10].flip(-1))  # x negated and mirrored
    assert torch.equal(clip[0, 1, :10], unflipped[0, 1, :10].flip(-1))  # y only mirrored


def test_a_batch_mixes_windows_and_matches_each_clip() -> None:
    videos = [_video(40, 3, i) for i in range(3)]
    offsets, wants, crops, flips, reals = [0, 30, 12], [], [], [], []
    for i, (v, off) in enumerate(zip(videos, offsets)):
        torch.manual_seed(100 + i)
        wants.append(make_clip(v, off, L, SIZE, train=True))
        torch.manual_seed(100 + i)
        c, f = draw_clip_params(S, S, SIZE, train=True, flip=True)
        crops.append(c), flips.append(f), reals.append(min(L, 40 - off))
    batch = {
        "window": torch.stack([torch.from_numpy(raw_window(v, o, L)) for v, o in zip(videos, offsets)]),
        "crop": torch.tensor(crops),
        "flip": torch.tensor(flips),
        "frames": reals,
    }
    got = batch_clips(batch, torch.device("cpu"), SIZE, flow_sign=False, channels_last=True)
    assert torch.equal(got, torch.stack(wants))
    # a float32 batch goes through unchanged, in the layout asked for
    same = batch_clips({"clip": got.contiguous()}, torch.device("cpu"), SIZE, flow_sign=False, channels_last=True)
    assert torch.equal(same, got) and same.is_contiguous(memory_format=torch.channels_last_3d)


def test_bad_windows_are_refused_with_the_reason() -> None:
    window = torch.zeros(1, L, S, S, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        clips_from_windows(window.float(), [(0, 0)], [False], [L], SIZE, negate_flow_x=False)
    with pytest.raises(ValueError, match="outside"):
        clips_from_windows(window, [(5, 0)], [False], [L], SIZE, negate_flow_x=False)
    with pytest.raises(ValueError, match="2 crops"):
        clips_from_windows(window, [(0, 0), (0, 0)], [False], [L], SIZE, negate_flow_x=False)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("patch", [2, 4, 8])
def test_window_patches_are_the_patches_of_make_clip(case, patch) -> None:
    """Cut on the uint8 frames, then normalised: the patches the model's patchify cuts from make_clip's float clip,
    bit for bit (mirroring, the flow sign and the padding included)."""
    n, offset, ch, train, flip, flow, negate = case
    videos = [_video(n, ch, seed=n + offset + ch + k) for k in range(3)]
    wants, crops, flips = [], [], []
    for k, video in enumerate(videos):
        torch.manual_seed(k)
        wants.append(make_clip(video, offset, L, SIZE, train=train, flip=flip, flow=flow, negate_flow_x=negate))
        torch.manual_seed(k)
        crop, flipped = draw_clip_params(S, S, SIZE, train=train, flip=flip)
        crops.append(crop), flips.append(flipped)
    windows = torch.stack([torch.from_numpy(raw_window(v, offset, L)) for v in videos])
    real = [min(L, n - offset)] * len(videos)
    got = window_patches(windows, crops, flips, real, SIZE, patch, negate_flow_x=flow and negate)
    want = patchify(torch.stack(wants), patch)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got, want), (case, patch)


def test_window_patches_refuse_a_patch_that_does_not_divide_the_crop() -> None:
    window = torch.zeros(1, L, S, S, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="patch size 3"):
        window_patches(window, [(0, 0)], [False], [L], SIZE, 3, negate_flow_x=False)
