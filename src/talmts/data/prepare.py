"""Turn a folder of raw videos into the prepared layout: frames/, flow/, video_info.csv (see contracts).

One job per video, run in a process pool. Each array is written under a temporary name and renamed when whole,
then a small record ``meta/<video>.json`` marks the video finished; a rerun skips finished videos, so an
interrupted run resumes where it stopped. ``video_info.csv`` is rebuilt (atomically) from the existing file and
all records, so rows of earlier runs are never lost. A video that fails is reported with its reason and the
run goes on.
"""

from __future__ import annotations

import csv
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from talmts.data.flow import FLOW_METHODS, compute_flow
from talmts.data.video import VIDEO_EXTENSIONS, VideoDecodeError, read_video
from talmts.fileio import TMP_MARK, atomic_open, atomic_write_bytes

INFO_COLUMNS = ("video", "fps", "sample_fps", "count", "sample_count")
OPTIONS_FILE = "prepare.json"
CSV_REWRITE_SECONDS = 30.0


@dataclass(frozen=True)
class PrepareOptions:
    fps: float | None = 10.0  # sample rate; None with max_frames = the video's own rate (AFSD's ANet scheme)
    size: int = 112
    flow: str = "tvl1"  # "tvl1", "dis" or "none"
    max_frames: int | None = None  # ActivityNet dynamic fps: at most this many frames per video
    threads: int = 0  # decoder threads per video (0: FFmpeg decides; pool workers use 1)


@dataclass(frozen=True)
class InfoRow:
    video: str
    fps: float
    sample_fps: float
    count: int
    sample_count: int


@dataclass
class VideoResult:
    video: str
    status: str  # "done", "skipped" or "failed"
    reason: str = ""
    row: InfoRow | None = None


@dataclass
class PrepareSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video -> reason

    @property
    def ok(self) -> bool:
        return not self.failed

    def report(self) -> str:
        lines = [f"prepared {len(self.done)}, already done {len(self.skipped)}, failed {len(self.failed)}"]
        lines += [f"  FAILED {name}: {reason}" for name, reason in sorted(self.failed.items())]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- files
def find_videos(videos_dir: str | Path) -> dict[str, Path]:
    """video_id -> path of every video file directly in ``videos_dir`` (ids must be unique)."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"{videos_dir}: not a directory (give the folder that holds the video files)")
    found: dict[str, Path] = {}
    for path in sorted(videos_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith("."):
            if path.stem in found:
                raise ValueError(
                    f"{videos_dir}: two videos share the id {path.stem!r} ({found[path.stem].name}, {path.name});"
                    " video ids are file names without extension, rename one"
                )
            found[path.stem] = path
    return found


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save, atomically: the final name only ever holds a whole file."""
    with atomic_open(path, "wb") as f:
        np.save(f, array)


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete temporary files left by a crashed run (one prepare per OUT_DIR at a time)."""
    n = 0
    for sub in ("frames", "flow", "meta", "."):
        d = out_dir / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.name.startswith(".") and TMP_MARK in p.name:
                    p.unlink()
                    n += 1
    return n


def read_video_info(path: str | Path) -> dict[str, InfoRow]:
    """Rows of a video_info.csv (AFSD columns), keyed by video."""
    path = Path(path)
    rows: dict[str, InfoRow] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in INFO_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}; expected header {','.join(INFO_COLUMNS)}")
        for i, rec in enumerate(reader, start=2):
            try:
                rows[rec["video"]] = InfoRow(
                    rec["video"],
                    float(rec["fps"]),
                    float(rec["sample_fps"]),
                    int(float(rec["count"])),
                    int(float(rec["sample_count"])),
                )
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: line {i} (video {rec.get('video')!r}): {e}") from e
    return rows


def write_video_info(rows: dict[str, InfoRow], path: str | Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(INFO_COLUMNS)
    for name in sorted(rows):
        r = rows[name]
        writer.writerow([r.video, repr(r.fps), repr(r.sample_fps), r.count, r.sample_count])
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def _paths(out_dir: Path, video: str) -> tuple[Path, Path, Path]:
    return out_dir / "frames" / f"{video}.npy", out_dir / "flow" / f"{video}.npy", out_dir / "meta" / f"{video}.json"


def is_finished(out_dir: Path, video: str, flow: str) -> bool:
    frames, flow_path, meta = _paths(out_dir, video)
    return meta.is_file() and frames.is_file() and (flow == "none" or flow_path.is_file())


def _read_meta(path: Path) -> InfoRow:
    rec = json.loads(path.read_text())
    return InfoRow(**{k: rec[k] for k in INFO_COLUMNS})


# ----------------------------------------------------------------------------------------------- one video
def prepare_video(path: str | Path, out_dir: str | Path, options: PrepareOptions) -> VideoResult:
    """Decode, sample, resize and (optionally) compute flow for one video; never raises for a bad video."""
    path, out_dir = Path(path), Path(out_dir)
    video = path.stem
    frames_path, flow_path, meta_path = _paths(out_dir, video)
    try:
        if frames_path.is_file() and meta_path.is_file():
            # Frames already there (e.g. an earlier run with --flow none): flow comes from them.
            row = _read_meta(meta_path)
            frames = np.load(frames_path)
        else:
            sampled = read_video(path, options.fps, options.size, options.max_frames, threads=options.threads)
            frames = sampled.frames
            row = InfoRow(video, sampled.fps, sampled.sample_fps, sampled.count, sampled.sample_count)
            save_array(frames_path, frames)
        if options.flow != "none" and not flow_path.is_file():
            save_array(flow_path, compute_flow(frames, options.flow))
        atomic_write_bytes(meta_path, json.dumps(asdict(row)).encode())
        return VideoResult(video, "done", row=row)
    except VideoDecodeError as e:
        return VideoResult(video, "failed", reason=e.reason)
    except Exception as e:  # noqa: BLE001 - one bad video must not stop the run
        return VideoResult(video, "failed", reason=f"{type(e).__name__}: {e}")


def _worker_init() -> None:
    import signal

    import cv2

    cv2.setNumThreads(1)  # one process per core: no nested thread pools
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the workers)


# ----------------------------------------------------------------------------------------------- dataset
def check_options(out_dir: Path, options: PrepareOptions) -> None:
    """Refuse to mix sample rates, sizes or flow methods in one OUT_DIR; record the options on first use."""
    path = out_dir / OPTIONS_FILE
    want = {"fps": options.fps, "size": options.size, "max_frames": options.max_frames, "flow": options.flow}
    if path.is_file():
        have = json.loads(path.read_text())
        for key in ("fps", "size", "max_frames"):
            if have.get(key) != want[key]:
                raise ValueError(
                    f"{out_dir} was prepared with {key}={have.get(key)!r}, this run asks {key}={want[key]!r};"
                    " use another output folder or the same options"
                )
        old_flow = have.get("flow", "none")
        if want["flow"] != "none" and old_flow not in ("none", want["flow"]):
            raise ValueError(
                f"{out_dir} holds {old_flow} flow, this run asks --flow {want['flow']};"
                " use another output folder or the same method"
            )
        if want["flow"] == "none":
            want["flow"] = old_flow
    atomic_write_bytes(path, json.dumps(want, indent=1).encode())


def collect_rows(out_dir: Path) -> dict[str, InfoRow]:
    """Rows of the existing video_info.csv updated with every finished video's record."""
    csv_path = out_dir / "video_info.csv"
    rows = read_video_info(csv_path) if csv_path.is_file() else {}
    meta_dir = out_dir / "meta"
    if meta_dir.is_dir():
        for p in sorted(meta_dir.glob("*.json")):
            if (out_dir / "frames" / f"{p.stem}.npy").is_file():
                rows[p.stem] = _read_meta(p)
    return rows


def prepare_dataset(
    videos_dir: str | Path,
    out_dir: str | Path,
    options: PrepareOptions = PrepareOptions(),  # noqa: B008 - frozen dataclass
    workers: int = 1,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare every video of ``videos_dir`` into ``out_dir``; returns what was done, skipped and failed."""
    from tqdm import tqdm

    if options.flow not in (*FLOW_METHODS, "none"):
        raise ValueError(f"unknown flow method {options.flow!r}; choose one of {[*FLOW_METHODS, 'none']}")
    if options.size < 1:
        raise ValueError(f"size must be positive, got {options.size}")
    out_dir = Path(out_dir)
    videos = find_videos(videos_dir)
    if not videos:
        raise ValueError(f"{videos_dir}: no video files ({' '.join(VIDEO_EXTENSIONS)})")
    for sub in ("frames", "flow", "meta") if options.flow != "none" else ("frames", "meta"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    check_options(out_dir, options)
    remove_stale_temporaries(out_dir)

    summary = PrepareSummary()
    todo = []
    for video, path in videos.items():
        if is_finished(out_dir, video, options.flow):
            summary.skipped.append(video)
        else:
            todo.append(path)

    bar = tqdm(total=len(todo), unit="video", disable=not progress, desc="prepare")
    last_write = time.monotonic()

    def record(result: VideoResult) -> None:
        nonlocal last_write
        if result.status == "done":
            summary.done.append(result.video)
        else:
            summary.failed[result.video] = result.reason
            bar.write(f"FAILED {result.video}: {result.reason}")
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed))
        if time.monotonic() - last_write > CSV_REWRITE_SECONDS:
            write_video_info(collect_rows(out_dir), out_dir / "video_info.csv")
            last_write = time.monotonic()

    try:
        if workers <= 1 or len(todo) <= 1:
            for path in todo:
                record(prepare_video(path, out_dir, options))
        else:
            _run_pool(todo, out_dir, options, workers, record)
    finally:
        bar.close()
        write_video_info(collect_rows(out_dir), out_dir / "video_info.csv")
    return summary


def _run_pool(todo: list[Path], out_dir: Path, options: PrepareOptions, workers: int, record) -> None:  # noqa: ANN001
    pool_options = PrepareOptions(**{**asdict(options), "threads": 1})
    ctx = get_context("spawn")  # no fork: OpenCV / FFmpeg thread pools do not survive fork
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
    try:
        futures = {pool.submit(prepare_video, p, out_dir, pool_options): p for p in todo}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                result = VideoResult(futures[fut].stem, "failed", reason="a worker process died; rerun to resume")
            record(result)
    except BaseException:
        # Ctrl-C (workers ignore it) or an error here: stop the workers now rather than finish the queue;
        # a worker killed mid-write leaves only a temporary file, removed by the next run.
        terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
        if terminate is not None:
            terminate()
        else:
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
