"""``talmts stream SOURCE --checkpoint CKPT``: detect actions as the video plays, one JSON line per detection.

SOURCE is a video file (read as fast as it decodes, or at its own pace with --realtime), ``-`` for a container
stream on standard input (e.g. ``ffmpeg -i CAMERA -f matroska - | talmts stream - ...``), or any URL or device
FFmpeg opens (rtsp://, http://, tcp://, /dev/video0 with --format v4l2). Each detection is printed once it is final
(docs/DESIGN.md, "Streaming"): {"type": "detection", ...} with its stream time; --every adds status lines; the last
line is {"type": "end", ...}. Ctrl-C (SIGINT) or SIGTERM ends the stream cleanly, with the files written.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from talmts.engine.inference.stream_settings import StreamSettings  # without torch: every --help builds this

    d = StreamSettings()
    parser.add_argument("source", help="a video file, '-' for standard input, or a URL or device FFmpeg opens")
    parser.add_argument("overrides", nargs="*", help="inference overrides, e.g. infer.conf_thresh=0.05")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `talmts train`")
    parser.add_argument("--flow-checkpoint", help="the flow stream's checkpoint: the two streams are fused")
    parser.add_argument("--out", help="also write detect's files (JSON, CSV, subtitles, timeline, page) at the end")
    parser.add_argument("--realtime", action="store_true", help="read a file at its own pace, as a camera would")
    parser.add_argument("--every", type=float, metavar="SECONDS", help="a status line every SECONDS of wall time")
    parser.add_argument(
        "--min-score",
        type=float,
        default=d.min_score,
        help=f"detections below are neither printed nor written ({d.min_score:g}); lower takes longer to settle",
    )
    parser.add_argument(
        "--horizon",
        type=float,
        default=d.horizon,
        metavar="SECONDS",
        help='a detection leaves at the latest one window + SECONDS after its end, marked "exact": false if not '
        f"proven final by then ({d.horizon:g}); bounds latency and memory",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=d.stall_timeout,
        metavar="SECONDS",
        help=f"end the stream when no frame arrives for this long ({d.stall_timeout:g})",
    )
    parser.add_argument(
        "--reconnect", type=int, default=0, metavar="N", help="reopen a network source up to N times after a failure"
    )
    parser.add_argument("--format", dest="fmt", help="FFmpeg input format of SOURCE (e.g. v4l2 for a camera)")
    parser.add_argument("--video-id", help="the video's id in the files (default: the file's name, else 'stream')")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (TV-L1 flow runs there too)")
    parser.add_argument(
        "--threads", type=int, help="torch threads for the network (default: all cores but one, which decodes)"
    )


def run(args: argparse.Namespace) -> int:
    from talmts.engine.inference.stream import Emitted, StreamSettings, StreamStatus, run_stream

    def detection(e: Emitted) -> None:
        d = e.detection
        line = {"type": "detection", "label": d.label, "start": round(d.start, 3), "end": round(d.end, 3)}
        line.update(score=round(d.score, 5), stream_time=round(e.stream_time, 3), exact=e.exact)
        print(json.dumps(line), flush=True)

    def status(s: StreamStatus) -> None:
        line = {"type": "status", "stream_time": round(s.stream_time, 2), "rate": round(s.rate, 2)}
        line.update(lag=round(s.lag, 2), emitted=s.emitted, held=s.held)
        print(json.dumps(line), flush=True)

    settings = StreamSettings(
        realtime=args.realtime,
        every=args.every,
        stall_timeout=args.stall_timeout,
        reconnect=args.reconnect,
        min_score=args.min_score,
        horizon=args.horizon,
        fmt=args.fmt,
        video_id=args.video_id,
        threads=args.threads,
    )
    checkpoints = [args.checkpoint] + ([args.flow_checkpoint] if args.flow_checkpoint else [])
    res = run_stream(
        args.source,
        checkpoints,
        settings=settings,
        out=args.out,
        device=args.device,
        overrides=args.overrides,
        on_detection=detection,
        on_status=status,
    )
    end = {"type": "end", "reason": res.reason, "stream_time": round(res.stream_time, 3), "emitted": res.emitted}
    end.update(inexact=res.inexact, peak_held=res.peak_held, files=[str(p) for p in res.files.values()])
    print(json.dumps(end), flush=True)
    if res.reason in ("stalled", "source error"):
        print(f"talmts stream: {res.message}; {res.emitted} detections kept", file=sys.stderr)
        return 2
    return 0
