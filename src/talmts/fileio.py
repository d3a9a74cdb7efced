"""Atomic file writes, used by every stage that writes: a reader never sees half a file, and a crash leaves the
previous file (if any) untouched.

The temporary file lives in the same folder (``os.replace`` is atomic only within one file system) and is named
``.<name>.tmp-<pid>`` so that an interrupted run's leftovers are recognisable (:data:`TMP_MARK`).

A write that fails for want of room or rights (a full disk, a file size limit, a read-only folder, ...) removes
its temporary and raises :class:`WriteError`, which names the final path; the previous file stays as it was.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from talmts.errors import TalmtsError

TMP_MARK = ".tmp-"

# errno -> what the user can do about it
_WRITE_ERRNOS = {
    errno.ENOSPC: "free some disk space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up: free some space or write elsewhere",
    errno.EFBIG: "the file size limit of this process, `ulimit -f`, was reached",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EACCES: "check the folder's permissions",
    errno.EPERM: "check the folder's permissions",
    errno.EIO: "the device reported an I/O error: check the disk",
}


class WriteError(TalmtsError, OSError):
    """Writing ``path`` failed (disk full, file too large, no permission, ...); nothing partial was left there."""

    def __init__(self, path: str | Path, cause: OSError):
        self.path, self.cause_errno = str(path), cause.errno
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        fix = _WRITE_ERRNOS.get(cause.errno or 0, "")
        self.message = f"cannot write {path}: {reason}" + (f" ({fix})" if fix else "")
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple:  # pickled back from a worker process with the same path and errno
        return (type(self), (self.path, OSError(self.cause_errno, os.strerror(self.cause_errno or 0))))


def is_write_failure(e: BaseException) -> bool:
    """True for the OSErrors that mean "this file cannot be written here" (full disk, size limit, rights)."""
    return isinstance(e, WriteError) or (isinstance(e, OSError) and e.errno in _WRITE_ERRNOS)


@contextmanager
def atomic_path(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error removed.

    ``keep_suffix`` puts the suffix last (``.clip.tmp-12.mp4``) for writers that pick a format by file name.
    A full disk (or any write failure of :func:`is_write_failure`) becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    name = (
        f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}" if keep_suffix else f".{path.name}{TMP_MARK}{os.getpid()}"
    )
    tmp = path.with_name(name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if isinstance(e, WriteError) or not is_write_failure(e):
            raise
        raise WriteError(path, e) from e
    finally:
        with suppress(OSError):  # the folder itself is gone or unwritable: nothing of ours is left in it
            tmp.unlink(missing_ok=True)


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


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 1) -> Path:
    """JSON (and a final newline) written atomically; the one JSON writer of talmts."""
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")
    return Path(path)
