"""tvl1-torch as a flow method: batched streaming, the record's flow families, prepare with --device (flow in
this process while workers decode), --shard K/N and prepare-merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from talmts.cli import main as cli_main
from talmts.data.flow import compute_flow, default_batch, uint8_to_flow, with_flow
from talmts.data.prepare import PrepareOptions, prepare_dataset
from talmts.data.record import PreparationMismatch, check_same_preparation, read_record, write_record
from talmts.data.shards import Shard
from talmts.data.synth import write_mp4
from talmts.engine.inference.predictor import raw_video_flow_method

NAMES = ("clip_a", "clip_b", "clip_c", "clip_d", "clip_e")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: a second thread only waits


def moving_texture(n: int, seed: int, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 255, (size // 2 + 10, size // 2 + n + 10, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    return np.stack([big[6 : 6 + size, 2 * k : 2 * k + size] for k in range(n)])


def opencv_flow_uint8(frames: np.ndarray, method: str) -> np.ndarray:
    """The expected flow file, written without talmts: OpenCV's TV-L1 (default parameters) or DIS (medium) on the
    gray frames, each pair t -> t + 1, the last flow repeated, clipped to +-20 px and mapped to 0..255."""
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    if method == "dis":
        algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    else:
        algo = cv2.optflow.DualTVL1OpticalFlow_create()
    flows = [algo.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:])]
    flows.append(flows[-1])
    return np.rint((np.clip(np.stack(flows), -20, 20) + 20) * (255 / 40)).astype(np.uint8)


def assert_close_to_opencv_tvl1(flow: np.ndarray, frames: np.ndarray) -> None:
    """tvl1-torch against OpenCV's TV-L1: the stated tolerance, >= 98.5 % of the uint8 values within one level."""
    diff = np.abs(flow.astype(int) - opencv_flow_uint8(frames, "tvl1"))
    assert (diff <= 1).mean() >= 0.985, (diff <= 1).mean()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    for i, name in enumerate(NAMES):
        write_mp4(d / f"{name}.mp4", iter(list(moving_texture(12 + 3 * i, i))), fps=25)
    return d


def test_with_flow_batches_give_the_pair_by_pair_flow() -> None:
    frames = moving_texture(5, 0, size=24)
    one_by_one = compute_flow(frames, "tvl1-torch", batch=1)
    assert_close_to_opencv_tvl1(one_by_one, frames)
    np.testing.assert_array_equal(compute_flow(frames, "tvl1-torch", batch=3), one_by_one)  # 3 + 1 pairs
    np.testing.assert_array_equal(one_by_one[-1], one_by_one[-2])  # the last flow repeated
    np.testing.assert_array_equal(compute_flow(frames, "tvl1"), opencv_flow_uint8(frames, "tvl1"))
    assert abs(np.median(uint8_to_flow(one_by_one[:, 4:-4, 4:-4, 0])) + 2) < 0.2  # the window slides right: -2 px
    # OpenCV's methods ignore the device (detect on a GPU with a DIS-trained flow stream)
    np.testing.assert_array_equal(compute_flow(frames, "dis", device="cuda"), opencv_flow_uint8(frames, "dis"))
    pairs = list(with_flow(iter(frames[:1]), "tvl1-torch"))
    assert len(pairs) == 1 and (pairs[0][1] == 128).all()  # a lone frame: zero flow


def test_flow_families_in_the_prepare_record() -> None:
    tvl1, torch_tvl1, dis = (PrepareOptions(flow=m) for m in ("tvl1", "tvl1-torch", "dis"))
    check_same_preparation(tvl1, torch_tvl1, flow=True, where="here", source="ckpt")  # accepted both ways
    check_same_preparation(torch_tvl1, tvl1, flow=True, where="here", source="ckpt")
    with pytest.raises(PreparationMismatch, match="flow='dis'"):
        check_same_preparation(tvl1, dis, flow=True, where="here", source="ckpt")
    # a raw video's TV-L1 runs in PyTorch whichever implementation prepared the training data; DIS stays DIS
    assert raw_video_flow_method("tvl1") == raw_video_flow_method("tvl1-torch") == "tvl1-torch"
    assert raw_video_flow_method("dis") == "dis"


def test_default_batch_holds_a_cache_sized_number_of_pixels() -> None:
    assert default_batch("tvl1-torch", None, (112, 112)) == 5  # 65536 / 12544 pixels
    assert default_batch("tvl1-torch", "cpu", (56, 56, 3)) == 21
    assert default_batch("tvl1-torch", "cpu", (480, 640)) == 1
    assert default_batch("tvl1-torch", "cuda:0", (112, 112)) == 1024
    assert default_batch("tvl1", None, (56, 56)) == default_batch("dis", "cuda", (56, 56)) == 1  # OpenCV: pair by pair


def test_prepare_without_flow_keeps_the_folders_method(videos: Path, tmp_path: Path) -> None:
    """A new folder gets tvl1-torch; one that OpenCV's TV-L1 began is resumed with OpenCV's TV-L1 (no mixing)."""
    one = tmp_path / "videos"
    one.mkdir()
    shutil.copy(videos / "clip_a.mp4", one)
    for method in ("tvl1-torch", "tvl1"):
        out = tmp_path / method
        if method == "tvl1":
            out.mkdir()
            write_record(out, PrepareOptions(size=24, flow="tvl1"))  # as a run before the default changed left it
        assert cli_main(["prepare", str(one), str(out), "--size", "24", "--quiet", "--workers", "1"]) == 0
        assert read_record(out) == PrepareOptions(size=24, flow=method)
        frames = np.load(out / "frames" / "clip_a.npy")
        flow = np.load(out / "flow" / "clip_a.npy")
        if method == "tvl1":
            np.testing.assert_array_equal(flow, opencv_flow_uint8(frames, "tvl1"))
        else:
            assert_close_to_opencv_tvl1(flow, frames)
            np.testing.assert_array_equal(flow, compute_flow(frames, method))  # as detect computes it


def test_prepare_with_device_computes_tvl1_torch_after_decoding(videos: Path, tmp_path: Path) -> None:
    two = tmp_path / "videos"
    two.mkdir()
    for name in NAMES[:2]:
        shutil.copy(videos / f"{name}.mp4", two)
    options = PrepareOptions(size=24, flow="tvl1-torch")
    out = tmp_path / "out"
    summary = prepare_dataset(two, out, options, workers=2, progress=False, device="cpu", flow_batch=4)
    assert sorted(summary.done) == list(NAMES[:2]) and summary.ok
    assert read_record(out) == options
    for name in NAMES[:2]:
        frames = np.load(out / "frames" / f"{name}.npy")
        flow = np.load(out / "flow" / f"{name}.npy")
        assert_close_to_opencv_tvl1(flow, frames)
        np.testing.assert_array_equal(flow, compute_flow(frames, "tvl1-torch"))  # as without --device
        assert (out / "meta" / f"{name}.json").is_file()
    with pytest.raises(ValueError, match="--device computes tvl1-torch"):
        prepare_dataset(videos, tmp_path / "x", PrepareOptions(size=32, flow="tvl1"), device="cpu", progress=False)
    with pytest.raises(ValueError, match="not a device name"):
        prepare_dataset(videos, tmp_path / "x", options, device="gpu0", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            prepare_dataset(videos, tmp_path / "x", options, device="cuda", progress=False)


def test_shards_split_the_videos_and_merge_checks_them(videos: Path, tmp_path: Path) -> None:
    assert Shard.parse("1/3") == Shard(1, 3)
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(ValueError, match="K/N"):
            Shard.parse(bad)
    held = [[v for v in NAMES if Shard(k, 2).holds(v)] for k in range(2)]
    assert sorted(held[0] + held[1]) == list(NAMES) and held[0] and held[1]  # a partition, both shards busy

    out = tmp_path / "out"
    argv = ["prepare", str(videos), str(out), "--size", "24", "--flow", "dis", "--quiet", "--workers", "1"]
    assert cli_main([*argv, "--shard", "0/2"]) == 0
    assert sorted(p.stem for p in (out / "meta").glob("*.json")) == held[0]
    assert cli_main(["prepare-merge", str(out)]) == 2  # shard 1 has not reported
    assert cli_main([*argv, "--shard", "1/2"]) == 0
    assert cli_main(["prepare-merge", str(out)]) == 0
    rows = (out / "video_info.csv").read_text().splitlines()
    assert sorted(r.split(",")[0] for r in rows[1:]) == list(NAMES)
    report = json.loads(Shard(1, 2).report_path(out).read_text())
    assert sorted(report["done"]) == held[1] and report["options"]["flow"] == "dis"

    # a report written with other options is refused by the merge
    report["options"]["size"] = 48
    Shard(1, 2).report_path(out).write_text(json.dumps(report))
    assert cli_main(["prepare-merge", str(out)]) == 2
    shutil.rmtree(out / "shards")
    assert cli_main(["prepare-merge", str(out)]) == 2  # no reports at all
