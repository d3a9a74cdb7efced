"""The inference path: decoding and flow on the fly equal to what `talmts prepare` stores, the test-time transform,
the prepare-record check, and the predictor against a slow reference written another way."""

from __future__ import annotations

import io
import sys

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


def _reference_detections(
    streams: list, arrays: list[np.ndarray], offsets: list[int], fps: float, count: int, rate: float | None = None
):
    """The predictor's job done another way: a loop over the given window starts (:func:`_reference_window` each),
    Soft-NMS per class (``soft_nms``, checked against the textbook loop in test_softnms.py), best first, capped,
    clipped to the video's duration. ``rate``: sample frames per second; by default the sliding protocol's."""
    from talmts.postprocess import soft_nms

    if rate is None:
        rate = fps * len(arrays[0]) / count  # the sampled frames span count / fps seconds
    infer = streams[0].cfg.infer
    found = [row for offset in offsets for row in _reference_window(streams, arrays, offset)]
    seg = np.array([(s / rate, e / rate) for (s, e), _, _ in found])
    score, label = np.array([p for _, p, _ in found]), np.array([c for _, _, c in found])
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


def _reference_window(streams: list, arrays: list[np.ndarray], offset: int, outputs: list | None = None) -> list:
    """Eq. 13 candidates of the window at ``offset`` in sample frames of the video, ((start, end), score, class):
    the window's tensor made by hand (no crop at 32 px, x / 255 * 2 - 1, zeros past the end), each stream on it
    alone (or its given ``outputs``, batch 1), the raw outputs averaged, eq. 13 in the paper's boundary form in
    float64, segments clamped to the window's real frames."""
    real = min(CLIP, len(arrays[0]) - offset)
    infer = streams[0].cfg.infer
    if outputs is None:
        outputs = []
        for stream, arr in zip(streams, arrays):
            x = np.zeros((CLIP, *arr.shape[1:]), np.float32)
            x[:real] = arr[offset : offset + real] / 255.0 * 2.0 - 1.0
            clip = torch.from_numpy(x).permute(3, 0, 1, 2)[None]  # [1, C, T, H, W]
            with torch.no_grad():
                outputs.append(stream.model(clip))
    raw = outputs
    mean = {
        k: np.mean([getattr(o, k)[0].double().numpy() for o in raw], axis=0)
        for k in ("loc", "conf", "prop_loc", "prop_conf", "quality")
    }
    out = []
    for k, a in enumerate(raw[0].anchors.double().numpy()):
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
        eps = 1.0 / (1.0 + np.exp(-mean["quality"][k]))
        for c in range(1, len(coarse)):
            score = 0.5 * (coarse[c] + refined[c]) * eps
            if score > infer.conf_thresh:
                out.append(((p_s + offset, p_e + offset), score, c))
    return out


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

    # the whole protocol (ActivityNet): seconds = sample frames / the nominal sample_fps, clipped to count / fps;
    # 20 frames at a nominal 5 per second span 4 s of a 2 s video, so the clip to the duration bites
    write_video_info({"short": VideoInfo("short", 25.0, 5.0, 50, 20)}, tmp_path / "video_info.csv")
    whole = Predictor(streams, infer, STRIDE, "whole", torch.device("cpu")).prepared_videos(tmp_path, ["short"])
    want = _reference_detections(streams, arrays["short"], [0], 25.0, 50, rate=5.0)
    assert len(whole["short"]) == len(want) >= 10 and max(d.end for d in whole["short"]) == 2.0
    for d, (s, e, name, p) in zip(whole["short"], want):
        assert (d.label, d.start, d.end, d.score) == (name, pytest.approx(s, abs=1e-5), pytest.approx(e, abs=1e-5),
                                                      pytest.approx(p, abs=1e-5))  # fmt: skip


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
    model = replace(flow.cfg.model, backbone=replace(flow.cfg.model.backbone, context="video"))
    with pytest.raises(
        ConfigError,
        match=r"^rgb\.pt has model\.backbone\.context=window but flow\.pt has video; fused streams must agree$",
    ):
        check_compatible([rgb, replace(flow, cfg=replace(flow.cfg, model=model))])
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
    assert with_infer_overrides(stream.cfg, ["infer.video_scores=s=1.json"]).infer.video_scores == "s=1.json"
    with pytest.raises(ConfigError, match=r"^inference overrides: infer\.conf_thresh must be a number, got 'abc'$"):
        with_infer_overrides(stream.cfg, ["infer.conf_thresh=abc"])
    with pytest.raises(ConfigError, match=r"^inference overrides: unknown key \(a key that is no config name\)"):
        with_infer_overrides(
            stream.cfg, ["infer.conf_thresh.x=1"]
        )  # the key "conf_thresh.x", neither "x" nor "conf_thresh"


@pytest.mark.usefixtures("one_thread")
def test_load_predictor_wires_devices_video_scores_and_exported_models(tmp_path, monkeypatch) -> None:
    """The device each stream is loaded on ("auto" by default), an exported model folder read by the runtime,
    video-level scores from the argument or from infer.video_scores, a stored config's errors named by the file,
    a checkpoint without a preparation record."""
    import json
    import re

    from support.tiny_model import tiny_checkpoint
    from talmts.config import ConfigError
    from talmts.engine import distributed
    from talmts.engine.checkpoint import load_checkpoint, save_checkpoint
    from talmts.engine.inference import predictor as P
    from talmts.engine.inference import runtime
    from talmts.errors import InputError

    path = tiny_checkpoint(tmp_path / "rgb.pt")
    devices = []
    load_stream = P.load_stream

    def spy(c, device="cpu", use_ema=True):
        devices.append(device)
        return load_stream(c, device, use_ema)

    monkeypatch.setattr(P, "load_stream", spy)
    assert P.load_predictor([path]).device == distributed.resolve_device("auto")
    assert P.load_predictor([path], device="cpu").device == torch.device("cpu")
    assert devices == [distributed.resolve_device("auto"), torch.device("cpu")]
    (stream,) = P.load_predictor([path], device="cpu").streams

    exported = []
    monkeypatch.setattr(runtime, "load_model_streams", lambda m, d: exported.append((m, d)) or [stream])
    assert P.load_predictor(model="folder", device="cpu").streams == [stream]
    assert exported == [("folder", torch.device("cpu"))]

    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"results": {"v": [0.5, 0.5]}, "class": ["A", "B"]}))
    why = r"^video-level scores label a class-agnostic detector, but .*rgb\.pt has 2 classes"
    with pytest.raises(ConfigError, match=why):  # the scores were read: a two-class detector refuses them
        P.load_predictor([path], device="cpu", video_scores=scores)
    with pytest.raises(ConfigError, match=why):
        P.load_predictor([path], device="cpu", overrides=[f"infer.video_scores={scores}"])

    state = load_checkpoint(path)
    del state["prepare"]  # a checkpoint from before preparation records
    save_checkpoint(state, tmp_path / "old.pt")
    assert load_stream(tmp_path / "old.pt").prepare is None
    state["prepare"] = {"fps": 0.0, "size": 32}  # not options `talmts prepare` accepts
    save_checkpoint(state, tmp_path / "odd.pt")
    odd = re.escape(str(tmp_path / "odd.pt"))
    with pytest.raises(InputError, match=rf"^{odd} \(prepare record\): .*fps"):
        load_stream(tmp_path / "odd.pt")
    del state["prepare"]
    state["config"]["infer"]["conf_thresh"] = "x"
    save_checkpoint(state, tmp_path / "bad.pt")
    bad = re.escape(str(tmp_path / "bad.pt"))
    with pytest.raises(ConfigError, match=rf"^{bad} \(stored config\): infer\.conf_thresh must be a number"):
        load_stream(tmp_path / "bad.pt")


class _Terminal(io.StringIO):
    """stderr as a terminal: progress_bar draws a live tqdm bar on it."""

    def isatty(self) -> bool:
        return True


def _screen(written: str) -> list[str]:
    """The lines a terminal shows after ``written``: a carriage return moves back to the start of the line, and what
    follows overwrites it."""
    lines: list[list[str]] = [[]]
    column = 0
    for ch in written:
        if ch == "\n":
            lines.append([])
            column = 0
        elif ch == "\r":
            column = 0
        else:
            line = lines[-1]
            line[column : column + 1] = [ch]
            column += 1
    return ["".join(line).rstrip() for line in lines]


@pytest.mark.usefixtures("one_thread")
def test_prepared_videos_checks_each_streams_record_the_split_and_the_arrays(tmp_path, capsys, monkeypatch) -> None:
    """Before any network runs: each stream's preparation against the prepare.json of its folder (the flow method
    matters to a flow stream only), every video of the split in video_info.csv, video-level scores for each; then
    each array's frame count against video_info.csv; progress on request only: a line in a log, a bar on a terminal
    that is cleared when done (it would stack up above the results of a split or of every video of a folder)."""
    import re
    from dataclasses import replace

    from talmts.config import ConfigError
    from talmts.data.record import PreparationMismatch, PrepareOptions, write_record
    from talmts.data.windows import WholeVideoTooLong
    from talmts.engine.inference.predictor import Predictor
    from talmts.errors import InputError
    from talmts.formats.video_info import VideoInfo, write_video_info
    from talmts.models.detector import build_detector
    from talmts.postprocess import VideoScores
    from talmts.schema import ClassMap

    rgb, flow = _tiny_streams()
    rgb.source, flow.source = "rgb.pt", "flow.pt"
    rgb.prepare = flow.prepare = PrepareOptions(fps=10.0, size=32, flow="tvl1")
    rng = np.random.default_rng(4)
    for folder, channels in (("frames", 3), ("flow", 2)):
        (tmp_path / folder).mkdir()
        for vid, n in (("a", 40), ("b", 40)):
            np.save(tmp_path / folder / f"{vid}.npy", rng.integers(0, 256, (n, 32, 32, channels), dtype=np.uint8))
    infos = {"a": VideoInfo("a", 25.0, 10.0, 100, 40), "b": VideoInfo("b", 25.0, 10.0, 100, 41)}
    write_video_info(infos, tmp_path / "video_info.csv")
    write_record(tmp_path, PrepareOptions(fps=10.0, size=32, flow="dis"))
    cpu = torch.device("cpu")
    alone = Predictor([rgb], rgb.cfg.infer, STRIDE, "sliding", cpu)
    quiet = alone.prepared_videos(tmp_path, ["a"])  # another flow method: fine for an RGB stream
    assert len(quiet["a"]) > 0 and capsys.readouterr().err == ""
    shown = alone.prepared_videos(tmp_path, ["a"], progress=True)
    assert re.match(r"^inference: 1/1 video \(100%\)", capsys.readouterr().err)
    assert [(d.label, d.start, d.score) for d in shown["a"]] == [(d.label, d.start, d.score) for d in quiet["a"]]
    terminal = _Terminal()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        alone.prepared_videos(tmp_path, ["a"], progress=True)
    assert "inference:" in terminal.getvalue()  # a live bar while it runs, and none left when done
    assert _screen(terminal.getvalue()) == [""]
    where = re.escape(str(tmp_path / "prepare.json"))
    with pytest.raises(PreparationMismatch, match=rf"^{where}: flow='dis', but flow\.pt was trained on"):
        Predictor([rgb, flow], rgb.cfg.infer, STRIDE, "sliding", cpu).prepared_videos(tmp_path, ["a"])
    with pytest.raises(
        ConfigError,
        match=rf"^2 video\(s\) of the split are not in {re.escape(str(tmp_path))}/video_info\.csv \(first: 'zz'\); "
        r"run `talmts prepare` on them first$",
    ):
        alone.prepared_videos(tmp_path, ["a", "zz", "yy"])
    with pytest.raises(InputError, match=r"b\.npy: 40 frames but video_info\.csv says sample_count=41"):
        alone.prepared_videos(tmp_path, ["b"])
    with pytest.raises(WholeVideoTooLong, match=r"^a: more than data\.clip_frames=32 frames"):
        Predictor([rgb], rgb.cfg.infer, STRIDE, "whole", cpu).prepared_videos(tmp_path, ["a"])

    agnostic = replace(rgb, model=build_detector(rgb.cfg, 1, 3).eval(), classes=ClassMap(("action",)))
    scores = VideoScores({"v_a": np.array([1.0])}, ["A"], "scores.json")
    labelled = Predictor([agnostic], rgb.cfg.infer, STRIDE, "sliding", cpu, scores)
    with pytest.raises(ConfigError, match=r"^scores\.json: no scores for video 'b'"):
        labelled.prepared_videos(tmp_path, ["a", "b"])  # before b's array is read


@pytest.mark.usefixtures("one_thread")
def test_a_raw_video_gives_the_detections_of_its_prepared_arrays(small_video, tmp_path) -> None:
    """detect on a video file = eval on the arrays `talmts prepare` would store (decoded and sampled as the
    checkpoint's data was prepared, DIS flow as recorded); video-level scores checked before the network runs."""
    from dataclasses import replace

    from talmts.config import ConfigError
    from talmts.data.record import PrepareOptions
    from talmts.data.windows import WholeVideoTooLong
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

    # the whole protocol reads the decoder's nominal sample rate (the sliding one does not)
    whole = Predictor(streams, streams[0].cfg.infer, STRIDE, "whole", torch.device("cpu"))
    got, _ = whole.raw_video(small_video)
    want = whole.prepared_videos(tmp_path, ["clip"])["clip"]
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert (a.label, a.start, a.end) == (b.label, b.start, b.end) and a.score == pytest.approx(b.score, abs=1e-6)
    for s in streams:  # all 37 frames: too many for one window, and the message names the video
        s.prepare = PrepareOptions(fps=25.0, size=32, flow="dis")
    with pytest.raises(WholeVideoTooLong, match=r"^clip: more than data\.clip_frames=32 frames"):
        whole.raw_video(small_video)
    for s in streams:  # ActivityNet's dynamic fps: at most 10 sample frames
        s.prepare = PrepareOptions(fps=10.0, size=32, flow="dis", max_frames=10)
    _, decoded = predictor.raw_video(small_video)
    assert decoded.sample_count == 10 < video.sample_count

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
    two = VideoScores({"v_x": np.array([0.25, 1.0])}, ["A", "B"], "scores.json")
    top2 = replace(agnostic.cfg.infer, video_top_k=2)
    both, _ = Predictor([agnostic], top2, STRIDE, "sliding", torch.device("cpu"), two).raw_video(small_video, "x")
    assert len(both) == 2 * len(dets) and sorted(d.score for d in both if d.label == "B") == sorted(
        d.score for d in dets
    )  # infer.video_top_k=2: each proposal once per class, times the class score


@pytest.mark.usefixtures("one_thread")
def test_window_candidates_are_one_windows_eq13_candidates_in_sample_frames() -> None:
    """What the stream pools per window: eq. 13 candidates of that window alone (batch 1), in sample frames of the
    video (offset added), clamped to the window's real frames; against the hand-written reference."""
    from talmts.engine.inference.predictor import Predictor
    from talmts.postprocess import Candidates

    streams = _tiny_streams()
    predictor = Predictor(streams, streams[0].cfg.infer, STRIDE, "sliding", torch.device("cpu"))
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (60, 32, 32, c), dtype=np.uint8) for c in (3, 2)]
    for offset in (16, 40):  # a full window, and one of 20 real frames
        got = Candidates.concat(predictor.window_candidates(offset, [a[offset : offset + CLIP] for a in arrays]))
        rows = sorted(zip(got.labels.tolist(), got.segments.tolist(), got.scores.tolist()))
        want = sorted((c, list(seg), p) for seg, p, c in _reference_window(streams, arrays, offset))
        assert len(rows) == len(want) > 10, (len(rows), len(want))
        for (c, seg, p), (wc, wseg, wp) in zip(rows, want):
            assert c == wc and seg == pytest.approx(wseg, abs=1e-4) and p == pytest.approx(wp, abs=1e-6)
        assert got.segments.min() >= offset and got.segments.max() <= min(offset + CLIP, 60)


def test_the_fast_path_is_for_checkpoints_on_cuda_only() -> None:
    """--fast: on a CPU, or with an exported model, the reason it does not apply; else every stream's forward is the
    FAST levers with batches padded to the batch size (built here without running: no GPU needed)."""
    from dataclasses import replace

    from talmts.engine.inference.predictor import use_fast_path
    from talmts.models.levers import FAST, LeverRunner

    streams = _tiny_streams()
    assert use_fast_path(streams, 3, torch.device("cpu")) == (
        "--fast applies on a CUDA device; on cpu the exact fp32 path (BN folded) is already the fastest measured, "
        "and is used"
    )
    exported = replace(streams[1], model=None, forward=lambda clip: clip)
    for mixed in ([streams[0], exported], [exported]):
        assert use_fast_path(mixed, 3, torch.device("cuda")) == (
            "--fast applies to checkpoints; an exported model runs as it was exported"
        )
    assert all(s.forward is None for s in streams)
    assert use_fast_path(streams, 3, torch.device("cuda")) is None
    for s in streams:
        assert isinstance(s.forward, LeverRunner) and s.forward.levers == FAST and s.forward.batch_size == 3


def test_stream_frames_gives_each_stream_its_array_with_the_flow_as_prepared(small_video, monkeypatch) -> None:
    """A raw video's frames become one array per stream, in the streams' order: the RGB frame itself, and the flow
    computed as the checkpoint's data was prepared (DIS here), ``flow_batch`` pairs at a time on the device."""
    from talmts.data.record import PrepareOptions
    from talmts.engine.inference import predictor as P

    frames = read_video(small_video, 10.0, 32).frames
    rgb, flow = _tiny_streams()
    rgb.prepare = flow.prepare = PrepareOptions(fps=10.0, size=32, flow="dis")
    cpu = torch.device("cpu")
    got = list(P.Predictor([rgb], rgb.cfg.infer, STRIDE, "sliding", cpu).stream_frames(iter(frames)))
    assert [len(g) for g in got] == [1] * len(frames)
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), frames)

    calls = []

    def spy(frames, method, device=None, batch=None):
        calls.append((method, device, batch))
        return with_flow(frames, method, device=device, batch=batch)

    monkeypatch.setattr(P, "with_flow", spy)
    got = list(P.Predictor([flow, rgb], rgb.cfg.infer, STRIDE, "sliding", cpu).stream_frames(iter(frames), 3))
    assert calls == [("dis", "cpu", 3)]
    assert [len(g) for g in got] == [2] * len(frames)
    np.testing.assert_array_equal(np.stack([g[0] for g in got]), compute_flow(frames, "dis"))
    np.testing.assert_array_equal(np.stack([g[1] for g in got]), frames)
    rgb.prepare = flow.prepare = None  # no record: the flow `talmts prepare` computes by default
    next(P.Predictor([rgb, flow], rgb.cfg.infer, STRIDE, "sliding", cpu).stream_frames(iter(frames[:1])))
    assert calls[-1] == ("tvl1-torch", "cpu", None)


def _video_context_streams() -> list:
    """The tiny RGB and flow streams with model.backbone.context=video (the backbone once per video)."""
    from dataclasses import replace

    from support.tiny_model import TINY, _demo
    from talmts.config import load_config
    from talmts.engine.inference.predictor import Stream
    from talmts.models.detector import build_detector
    from talmts.schema import ClassMap

    streams = []
    for seed, (modality, channels) in enumerate((("rgb", 3), ("flow", 2))):
        torch.manual_seed(seed)
        extra = [f"data.modality={modality}", "model.backbone.context=video", "model.backbone.freeze_bn=true"]
        cfg = load_config(_demo(), [*TINY, *extra])
        cfg.infer = replace(cfg.infer, batch_size=3)
        model = build_detector(cfg, 2, channels).eval()
        streams.append(Stream(model=model, cfg=cfg, classes=ClassMap(("jump", "wave")), source=f"{modality}.pt"))
    return streams


def _hand_video_map(backbone, frames: np.ndarray, length: int, endpoints: list[str]) -> dict:
    """One backbone call over the whole video: 36 px frames centre-cropped to 32 by hand, x / 255 * 2 - 1, zero
    padding (in normalised space) up to ``length`` frames."""
    x = np.zeros((frames.shape[-1], length, 32, 32), np.float32)
    x[:, : len(frames)] = frames[:, 2:34, 2:34].transpose(3, 0, 1, 2) / 255.0 * 2.0 - 1.0
    with torch.no_grad():
        return backbone.extract_features(torch.from_numpy(x)[None], endpoints)


def _assert_hand_window_outputs(got, i: int, stream, array: np.ndarray, fmap: dict, offset: int) -> None:
    """Row ``i`` of ``got`` is the head on the window at ``offset``: the hand map's slice (Mixed_4f steps from
    offset / 4, Mixed_5c from offset / 8) and the window's own frames cropped by hand, zeros past the video's end."""
    feats = {"Mixed_4f": fmap["Mixed_4f"][:, :, offset // 4 : offset // 4 + 8],
             "Mixed_5c": fmap["Mixed_5c"][:, :, offset // 8 : offset // 8 + 4]}  # fmt: skip
    clip = np.zeros((CLIP, 32, 32, array.shape[-1]), np.float32)
    real = min(CLIP, len(array) - offset)
    clip[:real] = array[offset : offset + real, 2:34, 2:34] / 255.0 * 2.0 - 1.0
    with torch.no_grad():
        want = stream.model.forward_features(
            {e: feats[e] for e in stream.model.endpoints}, torch.from_numpy(clip).permute(3, 0, 1, 2)[None]
        )
    for name in ("loc", "conf", "prop_loc", "prop_conf", "quality"):
        torch.testing.assert_close(getattr(got, name)[i : i + 1], getattr(want, name), rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("one_thread")
def test_video_context_runs_the_head_on_slices_of_one_backbone_pass() -> None:
    """model.backbone.context=video: each stream's backbone over the whole video (padded to the grid of 8), the head
    on each window's slice (Mixed_4f steps from offset / 4, Mixed_5c from offset / 8) with the window's own frames;
    windows at 0, 16, 32 and the last start rounded up to the grid (75 frames: 48, 27 real frames), three a batch;
    the streams read as many frames as the shorter holds; frames given one by one give the same."""
    from talmts.data.windows import WholeVideoTooLong
    from talmts.engine.inference.predictor import Predictor

    streams = _video_context_streams()
    cpu = torch.device("cpu")
    predictor = Predictor(streams, streams[0].cfg.infer, STRIDE, "sliding", cpu)
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (n, 36, 36, c), dtype=np.uint8) for n, c in ((75, 3), (80, 2))]
    batches = predictor.array_outputs(arrays, "v")
    assert [b.offsets for b in batches] == [[0, 16, 32], [48]]
    assert [b.num_frames for b in batches] == [[32, 32, 32], [27]]
    maps = [_hand_video_map(s.model.backbone, a[:75], 80, s.model.endpoints) for s, a in zip(streams, arrays)]
    for b in batches:
        for k, (stream, array, fmap) in enumerate(zip(streams, arrays, maps)):
            for i, o in enumerate(b.offsets):
                _assert_hand_window_outputs(b.outputs[k], i, stream, array[:75], fmap, o)
    frames = [(arrays[0][t], arrays[1][t]) for t in range(75)]
    again = predictor.outputs(iter(frames), "v")
    for b, c in zip(batches, again, strict=True):
        assert (b.offsets, b.num_frames) == (c.offsets, c.num_frames)
        torch.testing.assert_close(b.outputs[0].conf, c.outputs[0].conf, rtol=0, atol=0)
    assert predictor.outputs(iter([]), "v") == [] and predictor.array_outputs([arrays[0][:0], arrays[1]], "v") == []

    whole = Predictor(streams, streams[0].cfg.infer, STRIDE, "whole", cpu)
    with pytest.raises(WholeVideoTooLong, match=r"^v_9: more than data\.clip_frames=32 frames under the 'whole'"):
        whole.array_outputs([a[:33] for a in arrays], "v_9")
    with pytest.raises(WholeVideoTooLong, match=r"^v_8: more than data\.clip_frames=32 frames under the 'whole'"):
        whole.outputs(iter(frames[:33]), "v_8")
    (one,) = whole.array_outputs([a[:32] for a in arrays], "v_9")
    assert one.offsets == [0] and one.num_frames == [32]
    (short,) = predictor.array_outputs([a[:20] for a in arrays], "v")
    assert short.offsets == [0] and short.num_frames == [20]
    fmap = _hand_video_map(streams[0].model.backbone, arrays[0][:20], 32, streams[0].model.endpoints)
    clip = np.zeros((CLIP, 32, 32, 3), np.float32)
    clip[:20] = arrays[0][:20, 2:34, 2:34] / 255.0 * 2.0 - 1.0
    with torch.no_grad():
        want = streams[0].model.forward_features(fmap, torch.from_numpy(clip).permute(3, 0, 1, 2)[None])
    torch.testing.assert_close(short.outputs[0].conf, want.conf, rtol=1e-4, atol=1e-5)

    from talmts.config import ConfigError

    with pytest.raises(ConfigError, match=r"^rgb\.pt: model\.backbone\.context=video has no per-window path$"):
        predictor.window_candidates(0, [a[:32] for a in arrays])


@pytest.mark.usefixtures("one_thread")
def test_one_stream_alone_on_the_video_context_path() -> None:
    """A single stream (RGB, nothing fused) under model.backbone.context=video: its backbone once over its video,
    the head on each window's slice, as the hand reference gives them; frames given one by one give the same."""
    from talmts.engine.inference.predictor import Predictor

    (stream,) = streams = _video_context_streams()[:1]
    predictor = Predictor(streams, stream.cfg.infer, STRIDE, "sliding", torch.device("cpu"))
    array = np.random.default_rng(6).integers(0, 256, (75, 36, 36, 3), dtype=np.uint8)
    batches = predictor.array_outputs([array], "v")
    assert [b.offsets for b in batches] == [[0, 16, 32], [48]]
    assert [b.num_frames for b in batches] == [[32, 32, 32], [27]]
    fmap = _hand_video_map(stream.model.backbone, array, 80, stream.model.endpoints)
    for b in batches:
        assert len(b.outputs) == 1
        for i, o in enumerate(b.offsets):
            _assert_hand_window_outputs(b.outputs[0], i, stream, array, fmap, o)
    again = predictor.outputs(iter([(frame,) for frame in array]), "v")
    assert [(b.offsets, b.num_frames) for b in again] == [(b.offsets, b.num_frames) for b in batches]
    for b, c in zip(batches, again):
        torch.testing.assert_close(b.outputs[0].conf, c.outputs[0].conf, rtol=0, atol=0)


@pytest.mark.usefixtures("one_thread")
def test_a_long_videos_map_reads_each_chunks_own_frames(monkeypatch) -> None:
    """A video longer than one backbone pass is mapped in chunks with context frames each side: each chunk reads its
    own frames of the stored video (centre crop, normalised), so the map is the one-pass map to float rounding.
    Chunks of 64 frames stand in for the default 512 (a short video). Without a device, the clips go to the CPU."""
    from functools import partial

    from talmts.engine.inference import predictor as P
    from talmts.models.video_features import video_feature_map

    stream = _video_context_streams()[0]
    frames = np.random.default_rng(5).integers(0, 256, (198, 36, 36, 3), dtype=np.uint8)
    monkeypatch.setattr(P, "video_feature_map", partial(video_feature_map, chunk=64, margin=64))
    got = P.stream_feature_map(stream, frames, 200)  # the default device; 3 chunks, the last reads from frame 64 on
    want = _hand_video_map(stream.model.backbone, frames, 200, stream.model.endpoints)
    for e in stream.model.endpoints:
        scale = float(want[e].abs().max())
        assert got[e].shape == want[e].shape and float((got[e] - want[e]).abs().max()) <= 1e-5 * scale, e
        assert got[e].device == torch.device("cpu"), e
