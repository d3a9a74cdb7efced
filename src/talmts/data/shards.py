"""One prepare job split over a job array: ``talmts prepare --shard K/N`` takes a fixed part of the videos, and
``talmts prepare-merge OUT_DIR`` checks that every shard finished with the same options and rebuilds video_info.csv.

All shards write into the same OUT_DIR (a shared file system): every array and record there is written atomically
under its own name, so shards never touch each other's files. A video belongs to shard crc32(video id) mod N: the
split needs no coordination, does not depend on the order of a directory listing, and a video keeps its shard when
others are added. Each shard writes ``shards/K-of-N.json`` when it ends: its options and what it did.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

from talmts.data.record import PreparationMismatch, PrepareOptions, read_record
from talmts.errors import InputError
from talmts.fileio import atomic_write_json

SHARD_DIR = "shards"


@dataclass(frozen=True)
class Shard:
    index: int  # K, 0-based (a job array's task id)
    count: int  # N

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 0 <= K < N."""
        k, sep, n = text.partition("/")
        try:
            shard = cls(int(k), int(n))
        except ValueError:
            shard = None
        if not sep or shard is None or not 0 <= shard.index < shard.count:
            raise InputError(f"--shard {text!r}: expected K/N with 0 <= K < N, e.g. --shard 0/8 ... --shard 7/8")
        return shard

    def holds(self, video: str) -> bool:
        return zlib.crc32(video.encode("utf-8")) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def lock_name(self) -> str:
        """The lock file of this shard's runs in OUT_DIR (fileio.folder_lock): one run per shard at a time."""
        return f".talmts-lock-shard-{self.index}-of-{self.count}"

    def report_path(self, out_dir: str | Path) -> Path:
        return Path(out_dir) / SHARD_DIR / f"{self.index}-of-{self.count}.json"


def write_shard_report(
    out_dir: str | Path, shard: Shard, options: PrepareOptions, done: list[str], skipped: list[str], failed: dict
) -> None:
    report = {"shard": shard.index, "shards": shard.count, "options": options.to_dict()}
    report |= {"done": sorted(done), "skipped": sorted(skipped), "failed": dict(sorted(failed.items()))}
    atomic_write_json(shard.report_path(out_dir), report)


def check_shard_reports(out_dir: str | Path) -> dict[str, str]:
    """Raise unless OUT_DIR holds one report per shard of one split, all with the folder's prepare options;
    returns the videos that failed in some shard (video -> reason)."""
    out_dir = Path(out_dir)
    paths = sorted((out_dir / SHARD_DIR).glob("*-of-*.json"))
    if not paths:
        raise FileNotFoundError(f"{out_dir / SHARD_DIR}: no shard reports; run `talmts prepare --shard K/N` first")
    record = read_record(out_dir)
    reports = {}
    for path in paths:
        try:
            rep = json.loads(path.read_text())
            reports[path] = (int(rep["shard"]), int(rep["shards"]), PrepareOptions.from_dict(rep["options"]), rep)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PreparationMismatch(f"{path}: unreadable shard report ({e}); rerun that shard") from None
    counts = {n for _, n, _, _ in reports.values()}
    if len(counts) != 1:
        raise PreparationMismatch(
            f"{out_dir}: shard reports of different splits ({sorted(counts)} shards); remove "
            f"the stale ones from {out_dir / SHARD_DIR}"
        )
    n = counts.pop()
    missing = sorted(set(range(n)) - {k for k, _, _, _ in reports.values()})
    if missing:
        raise PreparationMismatch(f"{out_dir}: shards {missing} of {n} have not finished (no report); run them")
    for path, (_, _, options, _) in reports.items():
        if record is not None and options != record:
            raise PreparationMismatch(
                f"{path}: prepared with {options.to_dict()}, but {out_dir}/prepare.json says {record.to_dict()};"
                " rerun that shard with the folder's options"
            )
    return {v: why for *_, rep in reports.values() for v, why in rep.get("failed", {}).items()}
