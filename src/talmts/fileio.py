"""Atomic file writes, used by every stage that writes: a reader never sees half a file, and a crash leaves the
previous file (if any) untouched.

The temporary file lives in the same folder (``os.replace`` is atomic only within one file system) and is named
``.<name>.tmp-<pid>`` so that an interrupted run's leftovers are recognisable (:data:`TMP_MARK`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TMP_MARK = ".tmp-"


@contextmanager
def atomic_path(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error removed.

    ``keep_suffix`` puts the suffix last (``.clip.tmp-12.mp4``) for writers that pick a format by file name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = (
        f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}" if keep_suffix else f".{path.name}{TMP_MARK}{os.getpid()}"
    )
    tmp = path.with_name(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """``open`` for writing through :func:`atomic_path`; the data is flushed to disk before the rename."""
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
