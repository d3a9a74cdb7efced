"""A video that decodes only in part: the decoded length is compared with the declared one, warned about (or
failed under --strict), recorded by prepare, and ground truth beyond the decoded end is reported."""

from __future__ import annotations

import json
import logging
import warnings

import av
import pytest

from support.videogen import truncated_with_header, write_video
from talmts.cli import main
from talmts.config import load_config
from talmts.data.completeness import DecodeCheck, ground_truth_beyond_end
from talmts.data.dataset import ClipDataset
from talmts.data.prepare import read_decode_check
from talmts.data.video import VideoDecodeError, read_video
from talmts.schema import Segment, Video


@pytest.mark.parametrize(
    ("decoded", "frames", "seconds", "short"),
    [
        (95, 100, None, False),  # 5 of 100 missing: exactly 5 %, not more
        (94, 100, None, True),  # 6 missing: > 5 % and > 2 frames
        (18, 20, None, False),  # 2 missing: 10 % but only 2 frames
        (17, 20, None, True),  # 3 missing
        (100, 100, 50.0, False),  # the frame count wins over a (wrong) duration
        (40, None, 5.0, True),  # 4 s of 5 s decoded at 10 fps
        (48, None, 5.0, False),  # 4.8 s of 5 s: 0.2 s = 2 frames, not more
        (3, None, None, False),  # nothing declared: nothing to compare
        (200, 100, None, False),  # more than declared is not short
    ],
)
def test_short_needs_more_than_five_percent_and_more_than_two_frames(decoded, frames, seconds, short):
    check = DecodeCheck(decoded, 10.0, frames, seconds)
    assert check.short is short
    assert check.decoded_seconds == decoded / 10.0


def test_a_file_cut_short_still_declares_its_length_and_is_reported(tmp_path):
    path = truncated_with_header(tmp_path / "cut.avi", frames=60, keep=0.3)
    with av.open(str(path)) as c:  # the header survives the cut: PyAV reports the full length
        assert c.streams.video[0].frames == 60
    sampled = read_video(path, 10.0, 32)  # decoding ends early without any error
    assert 0 < sampled.count < 30
    assert sampled.check.short and sampled.check.declared_frames == 60
    assert f"decoded {sampled.count} frames" in sampled.check.problem()
    assert "60 frames (6.00 s)" in sampled.check.problem()
    with pytest.raises(VideoDecodeError, match="container declares 60 frames"):
        read_video(path, 10.0, 32, strict=True)
    whole = read_video(write_video(tmp_path / "whole.avi", frames=60, codec="cinepak", size=(48, 64)), 10.0, 32)
    assert whole.count == 60 and not whole.check.short


@pytest.fixture(scope="module")
def cut_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cut")
    truncated_with_header(root / "videos" / "cut.avi", frames=60, keep=0.3)
    write_video(root / "videos" / "whole.avi", frames=60, codec="cinepak", size=(48, 64))
    gt = {
        "version": "t",
        "database": {
            "cut": {"subset": "test", "annotations": [{"segment": [0.1, 0.5], "label": "a"}]},
            "whole": {"subset": "test", "annotations": [{"segment": [3.0, 5.0], "label": "a"}]},
        },
    }
    gt["database"]["cut"]["annotations"].append({"segment": [4.0, 5.5], "label": "a"})  # after the decoded end
    (root / "gt.json").write_text(json.dumps(gt))
    return root


def test_prepare_records_and_strict_fails_a_short_video(cut_dataset, tmp_path, capsys):
    videos = cut_dataset / "videos"
    common = ["--size", "32", "--flow", "none", "--workers", "1", "--quiet"]
    assert main(["prepare", str(videos), str(tmp_path / "strict"), "--strict", *common]) == 1
    out = capsys.readouterr().out
    assert "FAILED cut:" in out and "container declares 60 frames" in out
    assert not (tmp_path / "strict" / "frames" / "cut.npy").exists()
    assert main(["prepare", str(videos), str(tmp_path / "lenient"), *common]) == 0
    out = capsys.readouterr().out
    assert "SHORT cut:" in out and "decoded short 1" in out
    record = read_decode_check(tmp_path / "lenient", "cut")
    assert record["short"] and record["declared_frames"] == 60 and record["decoded_frames"] < 30
    assert not read_decode_check(tmp_path / "lenient", "whole")["short"]


def test_flow_computed_apart_keeps_the_decode_record(cut_dataset, tmp_path, capsys):
    """prepare --device: the workers decode, the flow comes later; the record still reaches meta/<video>.json."""
    args = ["prepare", str(cut_dataset / "videos"), str(tmp_path / "p"), "--size", "32", "--device", "cpu"]
    assert main([*args, "--flow", "tvl1-torch", "--workers", "1", "--quiet"]) == 0
    assert "SHORT cut:" in capsys.readouterr().out
    assert read_decode_check(tmp_path / "p", "cut")["short"] and (tmp_path / "p" / "flow" / "cut.npy").is_file()


def test_dataset_stats_and_training_data_report_ground_truth_beyond_the_decoded_end(
    cut_dataset, tmp_path, capsys, caplog
):
    from talmts.engine.commands.dataset_stats import dataset_stats

    prepared = tmp_path / "prepared"
    assert main(["prepare", str(cut_dataset / "videos"), str(prepared), "--size", "32", "--flow", "none"]) == 0
    capsys.readouterr()
    overrides = [f"data.root={prepared}", f"data.annotations={cut_dataset / 'gt.json'}", "data.clip_frames=32"]
    overrides += ["data.frame_size=32", "data.stored_size=32", "model.levels=3", "model.fsa.patch=16"]
    cfg = load_config(None, overrides)
    with caplog.at_level(logging.WARNING, logger="talmts"):
        stats = dataset_stats(cfg, cut_dataset / "gt.json", prepared / "video_info.csv")
    assert stats["test_instances_beyond_decoded_end"] == 1  # cut's [4.0, 5.5]; whole's [3, 5] is reachable
    assert "cut: 1 ground-truth instance(s) end after the decoded end" in caplog.text
    with pytest.warns(UserWarning, match="lie beyond what was decoded"):
        ds = ClipDataset(cfg, "test", train=False)
    assert [b.video for b in ds.beyond_end] == ["cut"]


def test_ground_truth_beyond_end_allows_one_second():
    videos = [Video("a", "test", annotations=[Segment(0, 10.9, "x"), Segment(5, 11.5, "x")]), Video("b", "test")]
    late = ground_truth_beyond_end(videos, {"a": 10.0, "b": 1.0})
    assert [(b.video, b.instances, b.last_end) for b in late] == [("a", 1, 11.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ground_truth_beyond_end(videos, {}) == []
