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

    from support.tiny_model import TINY, _demo
    from talmts.config import load_config
    from talmts.engine.inference.predictor import Stream
    from talmts.models.detector import build_detector
    from talmts.schema import ClassMap

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
    from talmts.engine.inference.predictor import Predictor
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


def test_fused_streams_must_agree() -> None:
    """Classes, window geometry and sampling must agree between fused streams (each stream against the first);
    the flow method may differ (it matters to a flow stream only)."""
    from dataclasses import replace

    from talmts.config import ConfigError
    from talmts.data.record import PreparationMismatch, PrepareOptions
    from talmts.engine.inference.predictor import Predictor, check_compatible
    from talmts.postprocess import VideoScores
    from talmts.schema import ClassMap

    rgb, flow = _tiny_streams()
    rgb.source, flow.source = "rgb.pt", "flow.pt"
    rgb.prepare = PrepareOptions(fps=10.0, size=32, flow="dis")
    flow.prepare = PrepareOptions(fps=10.0, size=32, flow="tvl1")
    check_compatible([rgb, flow])  # flow methods differ: fine
    third = replace(flow, source="third.pt", classes=ClassMap(("jump", "run")))
    with pytest.raises(ConfigError, match=r"^third\.pt and rgb\.pt have different classes; they cannot be fused$"):
        check_compatible([rgb, flow, third])
    with pytest.raises(ConfigError, match="different classes"):
        check_compatible([third, rgb])
    other = replace(flow, cfg=replace(flow.cfg, data=replace(flow.cfg.data, clip_frames=64)))
    with pytest.raises(
        ConfigError, match=r"^rgb\.pt has data\.clip_frames=32 but flow\.pt has 64; fused streams must agree$"
    ):
        check_compatible([rgb, other])
    resampled = replace(flow, prepare=PrepareOptions(fps=5.0, size=32, flow="tvl1"))
    with pytest.raises(PreparationMismatch, match=r"flow\.pt.*fps=5\.0.*rgb\.pt.*fps=10\.0"):
        check_compatible([rgb, resampled])
    with pytest.raises(PreparationMismatch, match="fps"):
        check_compatible([resampled, rgb])

    agnostic = replace(rgb, classes=ClassMap(("action",)))
    scores = VideoScores({"v": np.array([0.5, 0.5])}, ["A", "B"])
    Predictor([agnostic], rgb.cfg.infer, STRIDE, "sliding", torch.device("cpu"), scores)  # one class: labelled
    with pytest.raises(
        ConfigError,
        match=r"^video-level scores label a class-agnostic detector, but rgb\.pt has 2 classes \(its own labels "
        r"are used\): drop --video-scores / infer\.video_scores$",
    ):
        Predictor([rgb, flow], rgb.cfg.infer, STRIDE, "sliding", torch.device("cpu"), scores)


@pytest.mark.usefixtures("one_thread")
def test_the_whole_protocol_refuses_a_video_longer_than_one_window() -> None:
    from talmts.data.windows import WholeVideoTooLong
    from talmts.engine.inference.predictor import Predictor

    (rgb,) = _tiny_streams()[:1]
    predictor = Predictor([rgb], rgb.cfg.infer, STRIDE, "whole", torch.device("cpu"))
    frames = [(np.zeros((32, 32, 3), np.uint8),)] * (CLIP + 1)
    with pytest.raises(WholeVideoTooLong, match=r"^clip_7: more than data\.clip_frames=32 frames"):
        predictor.outputs(iter(frames), "clip_7")
    (batch,) = predictor.outputs(iter(frames[:20]), "clip_7")  # fits: one window at 0 with 20 real frames
    assert batch.offsets == [0] and batch.num_frames == [20]


@pytest.mark.usefixtures("one_thread")
def test_load_predictor_reads_the_checkpoint_its_ema_weights_and_infer_overrides(tmp_path) -> None:
    """The network a checkpoint describes, with its EMA weights (the raw ones on request), BN folded for
    inference; ``infer.*`` overrides on its stored config; anything else refused with the reason."""
    from support.tiny_model import tiny_checkpoint
    from talmts.config import ConfigError
    from talmts.engine.checkpoint import load_checkpoint, save_checkpoint
    from talmts.engine.inference.predictor import load_predictor, load_stream, with_infer_overrides

    path = tiny_checkpoint(tmp_path / "rgb.pt", overrides=("data.test_stride=8",))
    state = load_checkpoint(path)
    ema = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    state["ema"] = {"weights": ema}
    save_checkpoint(state, path)
    p = load_predictor([path], device="cpu", overrides=["infer.conf_thresh=0.2", "infer.nms_top_k=7"])
    assert (p.infer.conf_thresh, p.infer.nms_top_k, p.stride, p.protocol) == (0.2, 7, 8, "sliding")
    assert p.device == torch.device("cpu") and p.scores is None and p.classes.names == ("jump", "wave")
    (stream,) = p.streams
    assert stream.source == str(path) and stream.modality == "rgb" and stream.cfg.model.backbone.weights is None
    assert stream.prepare is not None and stream.prepare.fps == 10.0 and stream.prepare.size == 32
    x = torch.randn(1, 3, 32, 32, 32, generator=torch.Generator().manual_seed(0))

    def conf(s) -> torch.Tensor:
        with torch.no_grad():
            return s.model(x).conf

    raw = load_stream(path, use_ema=False)
    assert not torch.allclose(conf(stream), conf(raw), atol=1e-4)  # EMA weights by default
    from talmts.models import build_detector

    for weights, loaded in ((ema, stream), (state["model"], raw)):
        plain = build_detector(stream.cfg, 2, 3)
        plain.load_state_dict(weights)
        torch.testing.assert_close(conf(loaded), conf(type("S", (), {"model": plain.eval()})), atol=1e-4, rtol=1e-4)
    for bad, why in (("data.fps=5", "only infer"), ("infer.conf_thresh", "only infer")):
        with pytest.raises(
            ConfigError, match=rf"^override '{bad}': {why}\.<key>=<value> applies to a trained network$"
        ):
            with_infer_overrides(stream.cfg, [bad])
    assert with_infer_overrides(stream.cfg, []).infer == stream.cfg.infer


@pytest.mark.usefixtures("one_thread")
def test_a_raw_video_gives_the_detections_of_its_prepared_arrays(small_video, tmp_path) -> None:
    """detect on a video file = eval on the arrays `talmts prepare` would store (decoded and sampled as the
    checkpoint's data was prepared, DIS flow as recorded); video-level scores checked before the network runs."""
    from dataclasses import replace

    from talmts.config import ConfigError
    from talmts.data.record import PrepareOptions
    from talmts.engine.inference.predictor import Predictor, raw_video_flow_method
    from talmts.formats.video_info import VideoInfo, write_video_info
    from talmts.postprocess import VideoScores

    streams = _tiny_streams()
    for s in streams:
        s.prepare = PrepareOptions(fps=10.0, size=32, flow="dis")
    predictor = Predictor(streams, streams[0].cfg.infer, STRIDE, "sliding", torch.device("cpu"))
    got, decoded = predictor.raw_video(small_video)
    video = read_video(small_video, 10.0, 32)
    assert (decoded.fps, decoded.sample_count) == (video.fps, video.sample_count)
    (tmp_path / "frames").mkdir()
    (tmp_path / "flow").mkdir()
    np.save(tmp_path / "frames" / "clip.npy", video.frames)
    np.save(tmp_path / "flow" / "clip.npy", compute_flow(video.frames, "dis"))
    info = VideoInfo("clip", video.fps, video.sample_fps, video.count, video.sample_count)
    write_video_info({"clip": info}, tmp_path / "video_info.csv")
    want = predictor.prepared_videos(tmp_path, ["clip"])["clip"]
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert (a.label, a.start, a.end) == (b.label, b.start, b.end) and a.score == pytest.approx(b.score, abs=1e-6)
    assert raw_video_flow_method("tvl1") == "tvl1-torch" and raw_video_flow_method("none") == "tvl1-torch"

    from talmts.models.detector import build_detector
    from talmts.schema import ClassMap

    one_class = build_detector(streams[0].cfg, 1, 3).eval()
    agnostic = replace(streams[0], model=one_class, classes=ClassMap(("action",)))
    scores = VideoScores({"v_x": np.array([1.0])}, ["A"], "scores.json")
    labelled = Predictor([agnostic], agnostic.cfg.infer, STRIDE, "sliding", torch.device("cpu"), scores)
    with pytest.raises(ConfigError, match=r"^scores\.json: no scores for video 'clip' .*the score file must cover"):
        labelled.raw_video(small_video)
    dets, _ = labelled.raw_video(small_video, video="x")  # "x" matches "v_x"; every detection labelled "A"
    assert dets and {d.label for d in dets} == {"A"}
