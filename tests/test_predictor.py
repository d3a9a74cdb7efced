"""The inference path: decoding and flow on the fly equal to what `talmts prepare` stores, the test-time transform,
the prepare-record check, and the predictor against a slow reference written another way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from talmts.data.flow import compute_flow, flow_to_uint8, make_flow_fn, with_flow
from talmts.data.synth import write_mp4
from talmts.data.transforms import make_clip
from talmts.data.video import DecodeInfo, read_video, sampled_frames
from talmts.engine.inference.predictor import window_tensor


def test_window_tensor_is_the_dataset_transform():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    x = window_tensor(frames[4:10], 8, 8)
    assert torch.equal(x, make_clip(frames, 4, 8, 8, train=False))
    assert x.shape == (3, 8, 8, 8) and torch.all(x[:, 6:] == 0)  # 2 padded frames


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    frames = [np.roll(base, 2 * i, axis=1) for i in range(37)]  # panning texture: real motion for the flow
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(path, iter(frames), fps=25.0)
    return path


def test_streamed_decoding_equals_read_video(small_video):
    info = DecodeInfo()
    streamed = np.stack(list(sampled_frames(small_video, 10.0, 32, info=info)))
    whole = read_video(small_video, 10.0, 32)
    assert np.array_equal(streamed, whole.frames)
    assert (info.fps, info.sample_fps, info.count, info.sample_count) == (
        whole.fps,
        whole.sample_fps,
        whole.count,
        whole.sample_count,
    )


def test_flow_is_consecutive_gray_pairs(small_video):
    import cv2

    frames = read_video(small_video, 10.0, 32).frames
    fn = make_flow_fn("dis")
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    expect = [flow_to_uint8(fn(gray[i], gray[i + 1])) for i in range(len(frames) - 1)]
    expect.append(expect[-1])  # the last frame repeats the last flow
    pairs = list(with_flow(iter(frames), "dis"))
    assert np.array_equal(np.stack([p[0] for p in pairs]), frames)
    assert np.array_equal(np.stack([p[1] for p in pairs]), np.stack(expect))
    assert np.array_equal(compute_flow(frames, "dis"), np.stack(expect))
    (one,) = list(with_flow(iter(frames[:1]), "dis"))
    assert np.all(one[1] == 128)  # a lone frame has no motion


def test_test_data_prepared_unlike_the_training_data_is_an_error(tmp_path):
    from talmts.data.record import (
        PreparationMismatch,
        PrepareOptions,
        check_same_preparation,
        read_record,
        write_record,
    )

    trained = PrepareOptions(fps=10.0, size=112, flow="tvl1")

    def check(flow: bool, source: str) -> None:
        check_same_preparation(trained, read_record(tmp_path), flow=flow, where="prepare.json", source=source)

    check(True, "flow.pt")  # no prepare.json: nothing to compare
    write_record(tmp_path, trained)
    check(True, "flow.pt")
    write_record(tmp_path, PrepareOptions(fps=10.0, size=112, flow="dis"))
    check(False, "rgb.pt")  # the flow method does not matter to an RGB stream
    with pytest.raises(
        PreparationMismatch, match=r"prepare\.json: flow='dis', but flow\.pt was trained on .* flow='tvl1'"
    ):
        check(True, "flow.pt")
    write_record(tmp_path, PrepareOptions(fps=5.0))
    with pytest.raises(PreparationMismatch, match=r"fps=5\.0, but rgb\.pt .* fps=10\.0"):
        check(False, "rgb.pt")
    check_same_preparation(None, read_record(tmp_path), flow=True, where="-", source="old.pt")  # no record: fine


# ------------------------------------------------------------------------- the predictor against a slow reference
CLIP, STRIDE = 32, 16  # tiny_model.TINY's data.clip_frames and data.test_stride


def _tiny_streams() -> list:
    """An RGB and a flow stream of the tiny network (random weights, eval mode), as a checkpoint would give them."""
    from dataclasses import replace

    from talmts.config import load_config
    from talmts.engine.predictor import Stream
    from talmts.models.detector import build_detector
    from talmts.schema import ClassMap
    from tiny_model import TINY, _demo

    streams = []
    for seed, (modality, channels) in enumerate((("rgb", 3), ("flow", 2))):
        torch.manual_seed(seed)
        cfg = load_config(_demo(), [*TINY, f"data.modality={modality}"])
        # a per-class cap and a per-video cap that bite, so the reference has to apply them too
        cfg.infer = replace(cfg.infer, batch_size=3, nms_top_k=40, max_per_video=60)
        model = build_detector(cfg, 2, channels).eval()
        streams.append(Stream(model=model, cfg=cfg, classes=ClassMap(("jump", "wave"))))
    return streams


def _reference_detections(streams: list, arrays: list[np.ndarray], offsets: list[int], fps: float, count: int):
    """The predictor's job done another way: a loop over the given window starts, each window's tensor made by hand
    (no crop at 32 px, x / 255 * 2 - 1, zeros past the end), each stream on it alone, the raw outputs averaged,
    eq. 13 in the paper's boundary form in float64, Soft-NMS per class (``soft_nms``, checked against the textbook
    loop in test_softnms.py), best first, capped, clipped to the video's duration."""
    from talmts.postprocess import soft_nms

    n = len(arrays[0])
    rate = fps * n / count  # sample frames per second of video time (the sliding protocol)
    infer = streams[0].cfg.infer
    pool_seg, pool_score, pool_label = [], [], []
    for offset in offsets:
        real = min(CLIP, n - offset)
        raw = []
        for stream, arr in zip(streams, arrays):
            x = np.zeros((CLIP, *arr.shape[1:]), np.float32)
            x[:real] = arr[offset : offset + real] / 255.0 * 2.0 - 1.0
            clip = torch.from_numpy(x).permute(3, 0, 1, 2)[None]  # [1, C, T, H, W]
            with torch.no_grad():
                raw.append(stream.model(clip))
        mean = {k: np.mean([getattr(o, k)[0].double().numpy() for o in raw], axis=0) for k in ("loc", "conf")}
        mean |= {
            k: np.mean([getattr(o, k)[0].double().numpy() for o in raw], axis=0) for k in ("prop_loc", "prop_conf")
        }
        quality = np.mean([o.quality[0].double().numpy() for o in raw], axis=0)
        anchors = raw[0].anchors.double().numpy()
        for k, a in enumerate(anchors):
            d_s, d_e = mean["loc"][k]
            t_s, t_e = a - d_s, a + d_e  # coarse boundaries
            width = t_e - t_s
            # eq. 13: t^p = t^c + 0.5 d^c dt^r, where the network's start offset is -dt^r_s (docs/DESIGN.md)
            p_s = t_s + 0.5 * width * -mean["prop_loc"][k][0]
            p_e = t_e + 0.5 * width * mean["prop_loc"][k][1]
            p_s, p_e = min(max(p_s, 0.0), real), min(max(p_e, 0.0), real)
            if p_e <= p_s:
                continue
            coarse = np.exp(mean["conf"][k]) / np.exp(mean["conf"][k]).sum()
            refined = np.exp(mean["prop_conf"][k]) / np.exp(mean["prop_conf"][k]).sum()
            eps = 1.0 / (1.0 + np.exp(-quality[k]))
            for c in range(1, len(coarse)):
                score = 0.5 * (coarse[c] + refined[c]) * eps
                if score > infer.conf_thresh:
                    pool_seg.append(((p_s + offset) / rate, (p_e + offset) / rate))
                    pool_score.append(score)
                    pool_label.append(c)
    seg, score, label = np.array(pool_seg), np.array(pool_score), np.array(pool_label)
    rows = []
    for c, name in ((1, "jump"), (2, "wave")):
        kept_seg, kept_score = soft_nms(
            seg[label == c], score[label == c], infer.nms_sigma, infer.nms_iou_gate, infer.nms_score_thresh,
            infer.nms_top_k,
        )  # fmt: skip
        rows += [(s, e, name, p) for (s, e), p in zip(kept_seg.tolist(), kept_score.tolist())]
    rows.sort(key=lambda r: -r[3])
    duration = count / fps
    rows = [(min(max(s, 0.0), duration), min(max(e, 0.0), duration), name, p) for s, e, name, p in rows[:60]]
    return [r for r in rows if r[1] > r[0]]


@pytest.mark.usefixtures("one_thread")
def test_predictor_equals_a_slow_per_window_reference(tmp_path):
    """Prepared arrays of two videos: 75 sample frames (windows at 0, 16, 32 and the end-aligned 43, off the
    stride grid) and 20 frames (one window, 12 frames of padding, segments clamped to the 20 real frames)."""
    from talmts.engine.predictor import Predictor
    from talmts.formats.video_info import VideoInfo, write_video_info

    streams = _tiny_streams()
    rng = np.random.default_rng(0)
    videos = {"long": (75, 25.0, 180), "short": (20, 25.0, 50)}  # sample frames, fps, original frame count
    (tmp_path / "frames").mkdir()
    (tmp_path / "flow").mkdir()
    arrays = {}
    for vid, (n, _, _) in videos.items():
        rgb = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        flow = rng.integers(0, 256, (n, 32, 32, 2), dtype=np.uint8)
        np.save(tmp_path / "frames" / f"{vid}.npy", rgb)
        np.save(tmp_path / "flow" / f"{vid}.npy", flow)
        arrays[vid] = [rgb, flow]
    write_video_info(
        {v: VideoInfo(v, fps, 10.0, count, n) for v, (n, fps, count) in videos.items()}, tmp_path / "video_info.csv"
    )

    infer = streams[0].cfg.infer
    predictor = Predictor(streams, infer, STRIDE, "sliding", torch.device("cpu"))
    got = predictor.prepared_videos(tmp_path, list(videos))
    hand_offsets = {"long": [0, 16, 32, 43], "short": [0]}
    for vid, (_, fps, count) in videos.items():
        want = _reference_detections(streams, arrays[vid], hand_offsets[vid], fps, count)
        assert len(got[vid]) == len(want) > 10, (vid, len(got[vid]), len(want))
        scores = [d.score for d in got[vid]]
        assert scores == sorted(scores, reverse=True)
        for d, (s, e, name, p) in zip(got[vid], want):
            assert d.label == name
            assert (d.start, d.end, d.score) == pytest.approx((s, e, p), abs=1e-5)
    assert max(d.end for d in got["short"]) <= 20 / (25.0 * 20 / 50) + 1e-9  # clamped to the real frames
