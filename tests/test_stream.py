"""``talmts stream``: the same detections as ``talmts detect`` on the same video, through a file, a pipe and a
loopback TCP connection; a source that stalls, one that ends mid-window, reconnects, SIGINT, and memory that does
not grow with the stream.

The reference is the offline path (Predictor.raw_video, or the predictor's outputs + finish over the frames that
arrived), which tests/test_cli_e2e.py checks against a slow reference of its own. Tiny random networks
(tests/support/tiny_model.py, RGB + DIS flow, fused) and generated videos (tests/support/videogen.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from support.tiny_model import tiny_checkpoint
from support.videogen import write_video
from talmts.data.video import DecodeInfo, sampled_frames
from talmts.engine.inference.predictor import Predictor, load_predictor
from talmts.engine.inference.stream import Emitted, StreamSettings, stream_detections
from talmts.formats import read_detections
from talmts.formats.video_info import VideoInfo
from talmts.schema import Detection

pytestmark = pytest.mark.usefixtures("one_thread")

EXACT = StreamSettings(min_score=0.0, horizon=1e6, stall_timeout=20.0)  # every detection, nothing forced out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("models")
    return [
        tiny_checkpoint(d / "rgb.pt", flow="dis"),
        tiny_checkpoint(d / "flow.pt", flow="dis", modality="flow", seed=1),
    ]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    # 233 frames at 25 fps -> 93 sampled at 10 fps: regular windows of 32 at 0, 16, 32, 48, then the end-aligned
    # one at 61 (the video ends mid-window). Matroska streams: it needs no seek, so a pipe can carry it.
    return write_video(tmp_path_factory.mktemp("video") / "clip.mkv", frames=233, fps=25.0, size=(48, 64))


@pytest.fixture(scope="module")
def predictor(models) -> Predictor:
    return load_predictor(models, device="cpu", overrides=["infer.batch_size=1"])


@pytest.fixture(scope="module")
def offline(predictor, video) -> list[Detection]:
    dets, _ = predictor.raw_video(video)
    assert len(dets) > 20
    return dets


def stream(predictor: Predictor, source: str, out: Path, settings: StreamSettings = EXACT):
    emitted: list[Emitted] = []
    res = stream_detections(predictor, source, settings, out=out, on_detection=emitted.append)
    return res, emitted


def offline_prefix(predictor: Predictor, path: Path, info: DecodeInfo) -> list[Detection]:
    """The offline path over the first ``info.sample_count`` sampled frames of ``path``: what detect gives for a
    video that holds only the frames that arrived."""
    frames = list(sampled_frames(path, predictor.preparation.fps, predictor.preparation.size))[: info.sample_count]
    batches = predictor.outputs(predictor.stream_frames(iter(frames)), "prefix")
    return predictor.finish(batches, VideoInfo("prefix", info.fps, info.sample_fps, info.count, info.sample_count))


def assert_emitted_match(emitted: list[Emitted], written: list[Detection], fps: float, rate: float) -> None:
    """The lines emitted are the detections written: the same labels and scores, bit for bit, and the same
    sample frames (seconds at the sample rate while streaming, at the video's rate in the files)."""
    assert sorted((e.detection.label, e.detection.score) for e in emitted) == sorted(
        (d.label, d.score) for d in written
    )
    got = sorted((e.detection.score, e.detection.start * fps, e.detection.end * fps) for e in emitted)
    want = sorted((d.score, d.start * rate, d.end * rate) for d in written)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=1e-9)


def test_a_file_streams_to_the_offline_detections(predictor, video, offline, tmp_path):
    res, emitted = stream(predictor, str(video), tmp_path / "out")
    assert res.reason == "end" and res.info.sample_count == 93
    assert res.detections == offline  # the files: the same detections, order and floats
    assert read_detections(tmp_path / "out" / "detections.json")["clip"] == offline
    info = res.info
    assert_emitted_match(emitted, offline, info.sample_fps, info.fps * info.sample_count / info.count)
    assert all(e.exact for e in emitted) and res.inexact == 0
    # some leave before the end, and none before every window that could still reach it has run
    early = [e for e in emitted if e.stream_time < res.stream_time]
    assert early
    clip = predictor.streams[0].cfg.data.clip_frames / info.sample_fps
    assert all(e.detection.end <= e.stream_time - clip + 1e-9 for e in early)


def test_a_min_score_keeps_exactly_the_offline_detections_above_it(predictor, video, offline, tmp_path):
    scores = sorted(d.score for d in offline)
    cut = scores[len(scores) // 2]
    settings = StreamSettings(min_score=cut, horizon=1e6)
    res, emitted = stream(predictor, str(video), tmp_path / "out", settings)
    assert res.detections == [d for d in offline if d.score >= cut]
    assert len(emitted) == len(res.detections)


def test_the_default_batch_agrees_to_the_last_bits(models, video, predictor, tmp_path):
    """detect with the checkpoint's own infer.batch_size (2) batches windows; the stream runs them one at a time,
    and batched CPU convolutions differ in the last bits: the same detections, scores within 1e-5."""
    batched, _ = load_predictor(models, device="cpu").raw_video(video)
    res, _ = stream(predictor, str(video), tmp_path / "out")
    assert [d.label for d in res.detections] == [d.label for d in batched]
    got = np.array([(d.start, d.end, d.score) for d in res.detections])
    np.testing.assert_allclose(got, np.array([(d.start, d.end, d.score) for d in batched]), atol=1e-5)


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny networks: a second torch thread only waits


def run_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "talmts", "stream", *args]
    return subprocess.run(argv, capture_output=True, timeout=180, env=ONE_THREAD, **kwargs)


def test_a_pipe_streams_to_the_offline_detections(models, video, offline, tmp_path):
    out = tmp_path / "out"
    args = ["-", "--checkpoint", str(models[0]), "--flow-checkpoint", str(models[1]), "--out", str(out)]
    done = run_cli([*args, "--min-score", "0", "--horizon", "1e6", "--every", "0.5"], stdin=video.open("rb"))
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines[-1]["type"] == "end" and lines[-1]["reason"] == "end" and lines[-1]["inexact"] == 0
    assert read_detections(out / "detections.json")["stream"] == offline
    found = [x for x in lines if x["type"] == "detection"]
    assert len(found) == len(offline) == lines[-1]["emitted"]
    assert sorted(x["score"] for x in found) == pytest.approx(sorted(d.score for d in offline), abs=1e-5)
    assert [x for x in lines if x["type"] == "status"][-1]["stream_time"] == pytest.approx(9.3)


class Sender:
    """A loopback TCP server (127.0.0.1 only) that sends ``parts`` of bytes to each connection in turn: after each
    part ``then`` says what to do: "close", "reset" (an abrupt drop), or "hold" (send nothing more until stopped)."""

    def __init__(self, parts: list[tuple[bytes, str]]):
        self.parts = parts
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(30)
        self.port = self.server.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        try:
            for data, then in self.parts:
                conn, _ = self.server.accept()
                conn.sendall(data)
                if then == "hold":
                    self.done.wait(60)
                elif then == "reset":  # RST instead of FIN: the reader sees an error, not the end of the stream
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    time.sleep(0.5)
                conn.close()
        except OSError:
            pass

    def close(self) -> None:
        self.done.set()
        self.server.close()
        self.thread.join(10)


def test_a_tcp_source_streams_to_the_offline_detections(predictor, video, offline, tmp_path):
    sender = Sender([(video.read_bytes(), "close")])
    try:
        res, emitted = stream(predictor, sender.url, tmp_path / "out")
    finally:
        sender.close()
    assert res.reason == "end" and res.detections == offline
    assert len(emitted) == len(offline)


def test_a_stalled_source_ends_with_the_detections_so_far(predictor, video, tmp_path):
    data = video.read_bytes()
    sender = Sender([(data[: len(data) // 2], "hold")])
    settings = StreamSettings(min_score=0.0, horizon=1e6, stall_timeout=1.5)
    try:
        res, emitted = stream(predictor, sender.url, tmp_path / "out", settings)
    finally:
        sender.close()
    assert res.reason == "stalled" and "1.5 s" in res.message  # ended by the stall timeout, not by the source
    assert 20 < res.info.sample_count < 93
    assert res.detections == offline_prefix(predictor, video, res.info)  # detect on the frames that arrived
    assert len(emitted) == len(res.detections) and (tmp_path / "out" / "detections.json").is_file()


def test_a_source_that_ends_mid_window_runs_the_last_short_window(predictor, video, tmp_path):
    data = video.read_bytes()
    sender = Sender([(data[: int(len(data) * 0.6)], "close")])  # the stream stops mid-cluster, mid-window
    try:
        res, _ = stream(predictor, sender.url, tmp_path / "out")
    finally:
        sender.close()
    n = res.info.sample_count
    assert res.reason in ("end", "source error") and 32 < n < 93 and (n - 32) % 16
    assert res.detections == offline_prefix(predictor, video, res.info)


def test_a_dropped_network_source_reconnects(predictor, video, tmp_path):
    data = video.read_bytes()
    sender = Sender([(data[: len(data) // 2], "reset"), (data, "close")])
    settings = StreamSettings(min_score=0.0, horizon=1e6, stall_timeout=10.0, reconnect=2)
    try:
        res, emitted = stream(predictor, sender.url, tmp_path / "out", settings)
    finally:
        sender.close()
    assert res.reason == "end"
    assert res.info.sample_count > 93  # the part before the drop, then the whole video again
    assert res.detections and emitted


def test_sigint_ends_the_stream_with_the_files_written(models, tmp_path):
    long_video = write_video(tmp_path / "long.mkv", frames=600, fps=25.0, size=(48, 64))  # 24 s at its own pace
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "talmts", "stream", str(long_video), "--realtime", "--min-score", "0"]
    argv += ["--checkpoint", str(models[0]), "--out", str(out), "--every", "0.5"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ONE_THREAD)
    try:
        first = json.loads(proc.stdout.readline())  # the first status: frames are flowing
        assert first["type"] == "status"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    end = json.loads(rest.decode().splitlines()[-1])
    assert end["reason"] == "interrupted" and 0 < end["stream_time"] < 20
    written = read_detections(out / "detections.json")["long"]
    # nothing past the frames that went through (the files' seconds run at the decoded frames' rate: within one
    # sample period of the stream clock)
    assert written and all(d.end <= end["stream_time"] + 0.1 for d in written)
    assert {p.name for p in out.iterdir()} >= {"detections.json", "detections.csv", "timeline.png", "index.html"}


def test_memory_does_not_grow_with_the_stream(tmp_path):
    """A 4x longer stream holds no more: the peak resident memory of the whole process (frames sampled at 128 px,
    48 KiB each: a stream that kept them would add 43 MiB) and the candidates Soft-NMS holds (it forgets past the
    horizon). The files' detections are bounded by the top-k per class (tests/test_settle.py); a 60-minute stream is
    in bench/bench_stream.py."""
    ckpt = tiny_checkpoint(tmp_path / "tiny.pt", size=128)

    def run(seconds: int) -> tuple[dict, float]:
        """The end line and the peak RSS (MiB) of ``talmts stream`` on a ``seconds``-long video, in a child."""
        video = write_video(tmp_path / f"v{seconds}.mkv", frames=seconds * 10, fps=10.0, size=(64, 64))
        argv = [sys.executable, "-m", "talmts", "stream", str(video), "--checkpoint", str(ckpt)]
        out, err = tmp_path / f"out{seconds}.jsonl", tmp_path / f"err{seconds}.txt"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [*argv, "--min-score", "0", "--horizon", "3"], stdout=stdout, stderr=stderr, env=ONE_THREAD
            )
            _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, err.read_text()
        end = json.loads(out.read_text().splitlines()[-1])
        assert end["stream_time"] == seconds
        return end, usage.ru_maxrss / 1024  # KiB on Linux

    (short, rss_short), (long, rss_long) = run(30), run(120)
    assert long["peak_held"] <= short["peak_held"] * 1.1
    assert rss_long <= rss_short + 10


def test_bad_sources_and_options_are_one_line(models, video, tmp_path, capsys):
    from talmts.cli import main

    out = ["--out", str(tmp_path / "out")]
    ckpt = ["--checkpoint", str(models[0])]
    cases = [
        ([str(tmp_path / "missing.mkv"), *ckpt], "missing.mkv: no such video file"),
        ([str(video), *ckpt, "--reconnect", "2"], "--reconnect applies to network sources"),
        ([str(video), *ckpt, "--horizon", "0"], "--horizon 0: must be a positive number"),
        (["-", *ckpt, "--realtime"], "--realtime paces a file"),
    ]
    whole = tiny_checkpoint(tmp_path / "whole.pt", overrides=("data.protocol=whole",))
    cases.append(([str(video), "--checkpoint", str(whole)], "a stream needs sliding windows"))
    video_map = ("model.backbone.context=video", "model.backbone.freeze_bn=true")
    context = tiny_checkpoint(tmp_path / "context.pt", overrides=video_map)
    cases.append(([str(video), "--checkpoint", str(context)], "needs a checkpoint trained with model.backbone.context"))
    for args, message in cases:
        assert main(["stream", *args, *out]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_an_out_that_cannot_be_a_folder_is_refused_before_the_stream_runs(models, video, tmp_path, capsys):
    """The files are written when the stream ends, which for a camera may be hours later: an --out that can never
    hold them is named before the first frame is read."""
    from talmts.cli import main

    taken = tmp_path / "taken"
    taken.write_text("mine")
    assert main(["stream", str(video), "--checkpoint", str(models[0]), "--out", str(taken)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not one detection line: nothing ran
    assert f"--out {taken}" in captured.err and captured.err.count("\n") == 1
    assert taken.read_text() == "mine"


def test_stopping_the_reader_waits_until_it_has_closed_the_source(monkeypatch):
    """A reader blocked in a read when the stream stops (a signal, a stall seen by the main thread) is waited for
    until its read returns and it closes the source; it does not outlive the stream."""
    import talmts.engine.inference.stream as stream_module

    reading, closed = threading.Event(), threading.Event()

    def blocking_source(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            reading.set()
            time.sleep(0.5)  # a read that returns when FFmpeg's timeout passes
            yield np.zeros((4, 4, 3), np.uint8)
        finally:
            closed.set()

    monkeypatch.setattr(stream_module, "live_frames", blocking_source)
    reader = stream_module._Reader("src", 10.0, 4, DecodeInfo(10.0, 10.0, 0, 0), StreamSettings(stall_timeout=2.0), 4)
    reader.start(threading.Event())
    assert reading.wait(10)
    reader.stop()
    assert closed.is_set() and not reader._thread.is_alive()


def test_a_stopped_reader_does_not_reconnect(monkeypatch):
    """A network source that keeps failing is reopened up to --reconnect times; once the stream has stopped, the
    reader gives up at its next reconnect instead of reopening the source behind the stream's back."""
    import talmts.engine.inference.stream as stream_module

    attempts = []

    def failing_source(*args, on_reconnect, **kwargs):  # noqa: ANN002, ANN003, ANN202
        for attempt in range(1, 1000):  # every read times out at once; reconnect without end
            time.sleep(0.05)
            on_reconnect(attempt, "no data")
            attempts.append(attempt)
        yield np.zeros((4, 4, 3), np.uint8)

    monkeypatch.setattr(stream_module, "live_frames", failing_source)
    settings = StreamSettings(stall_timeout=0.5, reconnect=1000)
    reader = stream_module._Reader("tcp://x", 10.0, 4, DecodeInfo(10.0, 10.0, 0, 0), settings, 1)
    reader.start(threading.Event())
    while not attempts:  # the first reconnect fills the queue (one item): the reader waits in the second
        time.sleep(0.01)
    time.sleep(0.2)
    reader.stop()
    assert not reader._thread.is_alive() and attempts == [1]
