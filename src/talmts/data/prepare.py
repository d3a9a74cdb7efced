"""Turn a folder of raw videos into the prepared layout: frames/, flow/, video_info.csv (see contracts).

One job per video, run in a process pool. Each array is written under a temporary name and renamed when whole,
then a small record ``meta/<video>.json`` marks the video finished; a rerun skips finished videos, so an
interrupted run resumes where it stopped. ``video_info.csv`` is rebuilt (atomically) from the existing file and
all records, so rows of earlier runs are never lost. A video that fails is reported with its reason and the
run goes on.

With a ``device`` (tvl1-torch flow), the worker processes only decode; this process computes each decoded video's
flow on the device in large batches while the workers decode the next ones. ``shard`` takes a fixed part of the
videos (data/shards.py); :func:`merge_shards` completes a split run.

The per-video job, the folder's bookkeeping (temporary names, meta records, video_info.csv rebuilds, stale files)
and the pool that runs the jobs form one resumable protocol, so they share this module.

A video that decodes far shorter than its container declares (data.completeness) is kept with a warning, recorded
in its ``meta/<video>.json``, or fails under ``strict``. A write that fails for want of room
(:class:`talmts.fileio.WriteError`) stops the run: the next video would fail the same way.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from talmts.data.completeness import DECODE_FIELDS, DecodeCheck
from talmts.data.flow import BATCHED_METHODS, compute_flow
from talmts.data.record import PrepareOptions, claim_folder
from talmts.data.shards import Shard, check_shard_reports, write_shard_report
from talmts.data.video import VIDEO_EXTENSIONS, VideoDecodeError, read_video
from talmts.errors import InputError
from talmts.fileio import TMP_MARK, atomic_open, atomic_write_json, folder_lock, is_write_failure
from talmts.formats.common import as_float, load_json
from talmts.formats.video_info import AFSD_COLUMNS, VideoInfo, read_video_info, write_video_info
from talmts.processes import stop_workers, worker_pool
from talmts.schema import SchemaError, check_video_id, video_file

__all__ = ["PrepareOptions", "PrepareSummary", "find_videos", "merge_shards", "prepare_dataset", "prepare_video"]

CSV_REWRITE_SECONDS = 30.0
MAX_FLOW_BATCH = 65536  # --flow-batch: 65,536 pairs of 112 px frames are 6.6 GB of float32 flow
INFO_FILE = "video_info.csv"


@dataclass
class VideoResult:
    video: str
    status: str  # "done", "skipped", "failed", or "decoded" (frames stored, flow still to compute)
    reason: str = ""
    row: VideoInfo | None = None
    decode: dict | None = None  # data.completeness.DecodeCheck.record(), stored in the meta record
    short: str = ""  # decoded far shorter than declared, kept with this warning


@dataclass
class PrepareSummary:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # video -> reason
    short: dict[str, str] = field(default_factory=dict)  # video -> decoded vs declared length (kept, warned)

    @property
    def ok(self) -> bool:
        return not self.failed

    def report(self) -> str:
        lines = [f"prepared {len(self.done)}, already done {len(self.skipped)}, failed {len(self.failed)}"]
        if self.short:
            lines[0] += f", decoded short {len(self.short)} (kept; --strict fails them)"
        lines += [f"  FAILED {name}: {reason}" for name, reason in sorted(self.failed.items())]
        lines += [f"  SHORT {name}: {problem}" for name, problem in sorted(self.short.items())]
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
            check_video_id(path.stem, file=str(path), record=path.name)  # the id names frames/, flow/ and meta/ files
            if path.stem in found:
                raise InputError(
                    f"{videos_dir}: two videos share the id {path.stem!r} ({found[path.stem].name}, {path.name});"
                    " video ids are file names without extension, rename one"
                )
            found[path.stem] = path
    return found


def save_array(path: Path, array: np.ndarray) -> None:
    """np.save, atomically: the final name only ever holds a whole file."""
    with atomic_open(path, "wb") as f:
        np.save(_WriteOnly(f), array)


class _WriteOnly:
    """A file seen through ``write``: numpy then writes in chunks with it, where on a real file it uses
    ``ndarray.tofile``, whose short write on a full disk raises an OSError without an errno (not recognisable)."""

    def __init__(self, f: io.BufferedIOBase):
        self._file = f

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def __getattr__(self, name: str) -> object:  # flush, tell, ... of the file (not a file type numpy knows)
        return getattr(self._file, name)


def remove_stale_temporaries(out_dir: Path, videos: set[str] | None = None) -> int:
    """Delete temporary files left by a crashed run (one prepare per OUT_DIR at a time, or per shard: then only
    the temporaries of ``videos``, the shard's own)."""
    n = 0
    for sub in ("frames", "flow", "meta", "."):
        d = out_dir / sub
        if d.is_dir():
            for p in d.iterdir():
                owner = p.name[1:].split(TMP_MARK)[0].rsplit(".", 1)[0]  # ".<video>.npy.tmp-<pid>" -> video
                if videos is not None and owner not in videos:
                    continue
                if p.name.startswith(".") and TMP_MARK in p.name:
                    p.unlink()
                    n += 1
    return n


def _paths(out_dir: Path, video: str) -> tuple[Path, Path, Path]:
    return (
        video_file(out_dir / "frames", video, ".npy"),
        video_file(out_dir / "flow", video, ".npy"),
        video_file(out_dir / "meta", video, ".json"),
    )


def is_finished(out_dir: Path, video: str, flow: str) -> bool:
    frames, flow_path, meta = _paths(out_dir, video)
    return meta.is_file() and frames.is_file() and (flow == "none" or flow_path.is_file())


def _read_meta(path: Path) -> VideoInfo:
    rec = load_json(path)
    if not isinstance(rec, dict) or not isinstance(rec.get("video"), str):
        raise SchemaError(
            str(path), "<top level>", "video", "not a video record", "delete it to prepare the video again"
        )
    values = {k: as_float(rec.get(k), file=str(path), record=path.stem, field_name=k) for k in AFSD_COLUMNS[1:]}
    for key, value in values.items():
        if not value > 0 or (key.endswith("count") and value != int(value)):
            raise SchemaError(str(path), path.stem, key, f"{value!r} is out of range", "delete it to prepare again")
    return VideoInfo(
        rec["video"], values["fps"], values["sample_fps"], int(values["count"]), int(values["sample_count"])
    )


def read_decode_check(out_dir: str | Path, video: str) -> dict | None:
    """What decoding found for ``video`` (data.completeness.DecodeCheck.record()), None for an older folder."""
    path = video_file(Path(out_dir) / "meta", video, ".json")
    rec = load_json(path) if path.is_file() else None
    decode = rec.get("decode") if isinstance(rec, dict) else None
    if decode is None:
        return None
    if not isinstance(decode, dict) or any(
        not isinstance(decode.get(k), int | float | None) or isinstance(decode.get(k), bool) for k in DECODE_FIELDS
    ):
        raise SchemaError(str(path), "decode", "-", f"malformed: {decode!r}", "delete it to prepare the video again")
    return decode


def _finish(out_dir: Path, video: str, row: VideoInfo, decode: dict | None) -> VideoResult:
    """Write the meta record that marks ``video`` finished; "done", with the short-decode warning if any."""
    meta = {**asdict(row), **({"decode": decode} if decode else {})}
    atomic_write_json(_paths(out_dir, video)[2], meta, indent=None)
    short = DecodeCheck(**{k: decode[k] for k in DECODE_FIELDS}).problem() if decode and decode["short"] else ""
    return VideoResult(video, "done", row=row, decode=decode, short=short)


# ----------------------------------------------------------------------------------------------- one video
def prepare_video(
    path: str | Path,
    out_dir: str | Path,
    options: PrepareOptions,
    threads: int = 0,
    defer_flow: bool = False,
    strict: bool = False,
) -> VideoResult:
    """Decode, sample, resize and (optionally) compute flow for one video; never raises for a bad video, only for
    a write that fails (:class:`talmts.fileio.WriteError`).

    ``threads``: decoder threads (0: FFmpeg decides; pool workers use 1, one process per core). ``defer_flow``:
    store the frames only and return "decoded"; :func:`add_flow` finishes the video. ``strict``: a video that
    decodes far shorter than its container declares fails (else it is kept, with ``short`` saying so)."""
    path, out_dir = Path(path), Path(out_dir)
    video = path.stem
    frames_path, flow_path, meta_path = _paths(out_dir, video)
    try:
        if frames_path.is_file() and meta_path.is_file():
            # Frames already there (e.g. an earlier run with --flow none): flow comes from them.
            row, decode = _read_meta(meta_path), read_decode_check(out_dir, video)
            frames = np.load(frames_path)
        else:
            sampled = read_video(path, options.fps, options.size, options.max_frames, threads=threads, strict=strict)
            frames = sampled.frames
            row = VideoInfo(video, sampled.fps, sampled.sample_fps, sampled.count, sampled.sample_count)
            decode = sampled.check.record() if sampled.check else None
            save_array(frames_path, frames)
        if options.flow != "none" and not flow_path.is_file():
            if defer_flow:
                return VideoResult(video, "decoded", row=row, decode=decode)
            save_array(flow_path, compute_flow(frames, options.flow))
        return _finish(out_dir, video, row, decode)
    except VideoDecodeError as e:
        return VideoResult(video, "failed", reason=e.reason)
    except Exception as e:  # one bad video must not stop the run
        if is_write_failure(e):
            raise  # a full disk is not the video's fault, and the next video would fail the same way
        return VideoResult(video, "failed", reason=f"{type(e).__name__}: {e}")


def add_flow(
    decoded: VideoResult, out_dir: Path, options: PrepareOptions, device: str | None, batch: int | None
) -> VideoResult:
    """Flow of a video whose frames :func:`prepare_video` stored (``defer_flow``), computed on ``device``."""
    if decoded.status != "decoded" or decoded.row is None:
        return decoded
    frames_path, flow_path, _ = _paths(out_dir, decoded.video)
    try:
        flow = compute_flow(np.load(frames_path), options.flow, device=device, batch=batch)
        save_array(flow_path, flow)
        return _finish(out_dir, decoded.video, decoded.row, decoded.decode)
    except Exception as e:  # one bad video must not stop the run
        if is_write_failure(e):
            raise  # as in prepare_video: a full disk stops the run
        return VideoResult(decoded.video, "failed", reason=f"flow: {type(e).__name__}: {e}")


def _worker_init(flow: str = "tvl1") -> None:
    import signal

    import cv2

    cv2.setNumThreads(1)  # one process per core: no nested thread pools
    if flow in BATCHED_METHODS:
        import torch

        torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the workers)


# ----------------------------------------------------------------------------------------------- dataset
def collect_rows(out_dir: Path) -> dict[str, VideoInfo]:
    """Rows of the existing video_info.csv updated with every finished video's record."""
    csv_path = out_dir / INFO_FILE
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
    device: str | None = None,
    flow_batch: int | None = None,
    shard: Shard | None = None,
    strict: bool = False,
) -> PrepareSummary:
    """Prepare every video of ``videos_dir`` (or of its ``shard``) into ``out_dir``; returns what was done,
    skipped and failed. With ``device``, tvl1-torch flow is computed there, ``flow_batch`` pairs at a time.
    ``strict``: a video that decodes far shorter than its container declares fails (else: kept, warned)."""
    # Every check before anything is written: options (PrepareOptions checked its own), device, the videos
    if device is not None and options.flow not in (*BATCHED_METHODS, "none"):
        raise InputError(f"--device computes {'/'.join(BATCHED_METHODS)} flow; --flow {options.flow} runs on the CPU")
    if device is not None:
        _check_device(device)
    if flow_batch is not None and not 1 <= flow_batch <= MAX_FLOW_BATCH:
        raise InputError(f"--flow-batch {flow_batch}: frame pairs per batch, 1 to {MAX_FLOW_BATCH}")
    out_dir = Path(out_dir)
    videos = find_videos(videos_dir)
    if not videos:
        raise InputError(f"{videos_dir}: no video files ({' '.join(VIDEO_EXTENSIONS)})")
    if shard is not None:
        videos = {v: p for v, p in videos.items() if shard.holds(v)}
    # One prepare per folder at a time (or one per shard: the shards of a split share the folder), refused at once
    with ExitStack() as held:
        held.enter_context(folder_lock(out_dir, "talmts prepare", shared=shard is not None))
        if shard is not None:
            held.enter_context(folder_lock(out_dir, f"talmts prepare --shard {shard}", name=shard.lock_name))
        return _prepare_locked(videos, out_dir, options, workers, progress, device, flow_batch, shard, strict)


def _prepare_locked(
    videos: dict[str, Path],
    out_dir: Path,
    options: PrepareOptions,
    workers: int,
    progress: bool,
    device: str | None,
    flow_batch: int | None,
    shard: Shard | None,
    strict: bool,
) -> PrepareSummary:
    """:func:`prepare_dataset` once its checks passed and it holds the folder's lock."""
    from talmts.progress import progress_bar

    for sub in ("frames", "flow", "meta") if options.flow != "none" else ("frames", "meta"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    claim_folder(out_dir, options)
    remove_stale_temporaries(out_dir, set(videos) if shard is not None else None)
    defer = device is not None and options.flow != "none"

    summary = PrepareSummary()
    todo = []
    for video, path in videos.items():
        if is_finished(out_dir, video, options.flow):
            summary.skipped.append(video)
        else:
            todo.append(path)

    bar = progress_bar(total=len(todo), unit="video", disable=not progress, desc="prepare")
    last_write = time.monotonic()

    def record(result: VideoResult) -> None:
        nonlocal last_write
        result = add_flow(result, out_dir, options, device, flow_batch) if defer else result
        if result.status == "done":
            summary.done.append(result.video)
            if result.short:
                summary.short[result.video] = result.short
                bar.write(f"WARNING {result.video}: {result.short}")
        else:
            summary.failed[result.video] = result.reason
            bar.write(f"FAILED {result.video}: {result.reason}")
        bar.update(1)
        bar.set_postfix(failed=len(summary.failed))
        if time.monotonic() - last_write > CSV_REWRITE_SECONDS:
            write_video_info(collect_rows(out_dir), out_dir / INFO_FILE)
            last_write = time.monotonic()

    stopped_by: BaseException | None = None
    try:
        if workers <= 1 or len(todo) <= 1:
            for path in todo:
                record(prepare_video(path, out_dir, options, defer_flow=defer, strict=strict))
        else:
            _run_pool(todo, out_dir, options, workers, record, defer, strict)
    except BaseException as e:
        stopped_by = e
        raise
    finally:
        bar.close()
        try:
            write_video_info(collect_rows(out_dir), out_dir / INFO_FILE)
        except OSError as e:
            if stopped_by is None or not is_write_failure(e):
                raise
            # the disk that stopped the run refuses this file too: report the first failure, the old CSV stays
    if shard is not None:
        write_shard_report(out_dir, shard, options, summary.done, summary.skipped, summary.failed)
    return summary


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"--device {device!r}: not a device name (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"--device {device}: no CUDA device here (torch.cuda.is_available() is False); use --device cpu"
        )


def merge_shards(out_dir: str | Path) -> dict[str, str]:
    """After every ``--shard K/N`` run into ``out_dir`` ended: check that all shards reported with the folder's
    options, remove leftover temporaries and rebuild video_info.csv. Returns the failed videos (video -> reason)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():  # not created by the lock below
        raise FileNotFoundError(f"{out_dir}: no such folder; give the OUT_DIR the `prepare --shard` runs wrote into")
    with folder_lock(out_dir, "talmts prepare-merge"):  # no shard still running: their temporaries go
        failed = check_shard_reports(out_dir)
        remove_stale_temporaries(out_dir)
        write_video_info(collect_rows(out_dir), out_dir / INFO_FILE)
    return failed


def _run_pool(
    todo: list[Path],
    out_dir: Path,
    options: PrepareOptions,
    workers: int,
    record: Callable[[VideoResult], None],
    defer_flow: bool = False,
    strict: bool = False,
) -> None:
    pool = worker_pool(workers, _worker_init, (options.flow,))  # spawn; the workers end with this process
    try:
        futures = {pool.submit(prepare_video, p, out_dir, options, 1, defer_flow, strict): p for p in todo}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except BrokenProcessPool:
                result = VideoResult(futures[fut].stem, "failed", reason="a worker process died; rerun to resume")
            record(result)
    except BaseException:
        # Ctrl-C (workers ignore it), SIGTERM (processes.Terminated) or an error here: stop the workers now rather
        # than finish the queue; a worker killed mid-write leaves only a temporary file, removed by the next run.
        stop_workers(pool, grace=0)
        raise
    pool.shutdown()
