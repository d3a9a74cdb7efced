"""Small videos written with PyAV at test time (never committed): good ones, and a corpus of bad ones.

Each bad video is one way a real file goes wrong: cut short, empty, no picture, one frame, an irregular clock,
odd sizes, a display rotation, or a codec other than H.264. ``truncated_with_header`` reproduces a video that
decodes only in part: its header still declares the full length but the data stops early.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# codec -> (container suffix, pixel format); the ones PyAV's FFmpeg build can encode
CODECS = {
    "mpeg4": (".avi", "yuv420p"),
    "libx264": (".mp4", "yuv420p"),
    "mjpeg": (".avi", "yuvj420p"),
    "cinepak": (".avi", "rgb24"),
    "mpeg2video": (".mpg", "yuv420p"),
    "libvpx": (".webm", "yuv420p"),
    "ffv1": (".mkv", "yuv420p"),
}


def available_codecs() -> list[str]:
    return [c for c in CODECS if c in av.codecs_available]


def moving_frame(i: int, height: int, width: int) -> np.ndarray:
    """A bright square that moves one step per frame over a gradient: decodable content with motion."""
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    image = np.stack([np.broadcast_to(y, (height, width)), np.broadcast_to(x, (height, width))] * 2, -1)[..., :3]
    image = image.astype(np.uint8).copy()
    s = max(1, min(height, width) // 4)
    top, left = (i * 2) % max(1, height - s), (i * 3) % max(1, width - s)
    image[top : top + s, left : left + s] = 255
    return image


def write_video(
    path: str | Path,
    frames: int = 30,
    fps: float = 10.0,
    size: tuple[int, int] = (32, 32),  # (height, width)
    codec: str = "mpeg4",
    *,
    pts: list[int] | None = None,  # frame times in 1/(1000 fps)-ish ticks of the stream time base (VFR)
    rotation: int | None = None,  # display rotation (degrees) stored in the container, as phones do
    audio: bool = False,
    frame_fn: Callable[[int, int, int], np.ndarray] = moving_frame,
) -> Path:
    """Encode ``frames`` frames; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = h, w
        stream.pix_fmt = CODECS.get(codec, ("", "yuv420p"))[1]
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        a_stream = container.add_stream("aac", rate=8000) if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, h, w), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if a_stream is not None:
            _write_silence(container, a_stream, frames / fps)
    return path


def write_audio_only(path: str | Path, seconds: float = 2.0) -> Path:
    path = Path(path)
    with av.open(str(path), "w") as container:
        _write_silence(container, container.add_stream("aac", rate=8000), seconds)
    return path


def _write_silence(container, stream, seconds: float) -> None:  # noqa: ANN001
    samples = int(seconds * stream.rate)
    for start in range(0, samples, 1024):
        n = min(1024, samples - start)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = stream.rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def truncated_with_header(path: str | Path, frames: int = 60, keep: float = 0.3, codec: str = "cinepak") -> Path:
    """A video whose header declares ``frames`` frames but whose data stops after about ``keep`` of them
    (the file's tail cut off, as a download or a copy that stopped early): decoders return the first part."""
    path = Path(path)
    write_video(path, frames=frames, codec=codec, size=(48, 64))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def bad_video_corpus(folder: str | Path, *, big: bool = True) -> dict[str, str]:
    """Write one file per way a video goes wrong into ``folder``; returns {file name: what it is}.

    ``big`` adds the frames that are costly to decode (4K, 4000x2).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    def add(name: str, what: str, fn: Callable[[Path], object]) -> None:
        try:
            fn(folder / name)
        except (av.FFmpegError, ValueError) as e:  # this FFmpeg build refuses that case: say so, skip it
            made[name] = f"SKIPPED ({what}): {e}"
            (folder / name).unlink(missing_ok=True)
            return
        made[name] = what

    good = folder / ".good.avi"
    write_video(good, frames=30)
    data = good.read_bytes()
    good.unlink()
    add("zero_bytes.mp4", "an empty file", lambda p: p.write_bytes(b""))
    add("garbage.mp4", "random bytes", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)))
    add("cut_header.avi", "only the first 200 bytes", lambda p: p.write_bytes(data[:200]))
    add("cut_half.avi", "the second half cut off", lambda p: p.write_bytes(data[: len(data) // 2]))
    add("audio_only.mp4", "an audio track and no video", lambda p: write_audio_only(p))
    add("one_frame.avi", "a single frame", lambda p: write_video(p, frames=1))
    add("with_audio.mp4", "video plus an audio track", lambda p: write_video(p, codec="libx264", audio=True))
    vfr = [0, 40, 200, 210, 220, 600, 620, 1000, 1500, 1510, 1520, 1530, 2500, 2600, 2700]
    add("vfr.mkv", "variable frame rate", lambda p: write_video(p, frames=len(vfr), codec="ffv1", pts=vfr))
    add("tiny_2x2.avi", "2x2 pixels", lambda p: write_video(p, frames=8, size=(2, 2), codec="mjpeg"))
    add("tiny_1x1.mkv", "1x1 pixel", lambda p: write_video(p, frames=8, size=(1, 1), codec="ffv1"))
    add("odd_33x17.mp4", "odd width and height", lambda p: write_video(p, frames=8, size=(17, 33), codec="mpeg4"))
    add("rotated.mp4", "display rotation 90", lambda p: write_video(p, codec="libx264", size=(32, 48), rotation=90))
    for codec in available_codecs():
        suffix = CODECS[codec][0]
        add(f"codec_{codec}{suffix}", f"{codec} codec", lambda p, c=codec: write_video(p, frames=12, codec=c))
    if big:
        add("wide_4000x2.mkv", "4000x2 pixels", lambda p: write_video(p, frames=3, size=(2, 4000), codec="ffv1"))
        add("uhd_4k.mp4", "3840x2160, two frames", lambda p: write_video(p, frames=2, size=(2160, 3840), codec="mpeg4"))
    add("declares_more.avi", "header declares 60 frames, data holds ~20", lambda p: truncated_with_header(p))
    return made
