"""Atomic file writes, used by every stage that writes: a reader never sees half a file, and a crash leaves the
previous file (if any) untouched.

The temporary file lives in the same folder (``os.replace`` is atomic only within one file system) and is named
``.<name>.tmp-<pid>-<random>`` so that an interrupted run's leftovers are recognisable (:data:`TMP_MARK`). It is
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a name nobody can predict: a file or a symbolic link planted
beside the target can neither receive the data nor redirect it elsewhere.

A write that fails for want of room or rights (a full disk, a file size limit, a read-only folder, ...) removes
its temporary and raises :class:`WriteError`, which names the final path; the previous file stays as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from talmts.errors import TalmtsError

TMP_MARK = ".tmp-"
logger = logging.getLogger(__name__)

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


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read 1 MiB at a time (weights, exported graphs: hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def is_write_failure(e: BaseException) -> bool:
    """True for the OSErrors that mean "this file cannot be written here" (full disk, size limit, rights)."""
    return isinstance(e, WriteError) or (isinstance(e, OSError) and e.errno in _WRITE_ERRNOS)


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_temporary(path: Path, keep_suffix: bool) -> tuple[Path, int]:
    """A new, empty file beside ``path`` and its descriptor. ``O_EXCL`` refuses any name that exists (a planted
    file or symbolic link among them) and ``O_NOFOLLOW`` refuses a link; the random part makes the name unknown
    in advance, so a clash only means another name is drawn."""
    for _ in range(100):
        tag = f"{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        name = f".{path.stem}{tag}{path.suffix}" if keep_suffix else f".{path.name}{tag}"
        tmp = path.with_name(name)
        try:
            return tmp, os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name beside it", str(path))


@contextmanager
def _temporary(path: str | Path, keep_suffix: bool) -> Iterator[tuple[Path, int]]:
    """(temporary path, its open descriptor); renamed over ``path`` on success, removed on error. The descriptor
    is the caller's to close (``atomic_path`` closes it at once, ``atomic_open`` writes through it)."""
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temporary(path, keep_suffix)
        yield tmp, fd
        os.replace(tmp, path)
    except OSError as e:
        if isinstance(e, WriteError) or not is_write_failure(e):
            raise
        raise WriteError(path, e) from e
    finally:
        if tmp is not None:
            with suppress(OSError):  # the folder itself is gone or unwritable: nothing of ours is left in it
                tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (the file exists, empty); on success it is renamed over ``path``, on
    error removed.

    ``keep_suffix`` puts the suffix last (``.clip.tmp-12-9f3a.mp4``) for writers that pick a format by file name.
    A full disk (or any write failure of :func:`is_write_failure`) becomes a :class:`WriteError` naming ``path``.
    """
    with _temporary(path, keep_suffix) as (tmp, fd):
        os.close(fd)
        yield tmp


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """``open`` for writing through the descriptor of the new temporary (never reopened by name); the data is
    flushed to disk before the rename."""
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    with _temporary(path, keep_suffix=False) as (_tmp, fd), open(fd, mode, encoding=encoding) as f:
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


# ------------------------------------------------------------------------------------------------ folder locks
LOCK_FILE = ".talmts-lock"


class FolderBusy(TalmtsError):
    """Another talmts process writes into the same output folder; the message names the folder and that process."""


@contextmanager
def folder_lock(folder: str | Path, command: str, *, shared: bool = False, name: str = LOCK_FILE) -> Iterator[Path]:
    """Hold a lock on ``folder`` (created if need be) while the block runs, or refuse at once with
    :class:`FolderBusy` naming the folder and the process that holds it.

    The lock is ``flock`` on ``FOLDER/.talmts-lock``: the kernel drops it when its holder exits in any way, a kill
    included, so no stale lock outlives a crash. ``shared``: several holders at once (the ``--shard`` runs of one
    prepare), none while an exclusive holder runs. The exclusive holder writes ``command`` and its pid into the
    file, for the message another run prints. ``name``: another lock file of the folder (one shard's runs).
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise FolderBusy(f"{path} is a symbolic link: remove it (talmts keeps its lock file there)") from None
        raise
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holders(fd) or "another talmts process"
        os.close(fd)
        raise FolderBusy(f"{folder} is in use by {holder}; wait for it to end or write into another folder") from None
    except OSError as e:  # a file system without locks (some network mounts): go on, and say what is not guarded
        logger.warning("%s cannot be locked (%s): do not run two talmts commands into it at once", folder, e.strerror)
    try:
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{command} (pid {os.getpid()})\n".encode(), 0)
        yield path
    finally:
        if not shared:
            with suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


def _lock_holders(fd: int) -> str:
    """Who holds the lock on ``fd``'s file: from /proc/locks (Linux: every holder, shared ones too), else what the
    exclusive holder wrote into the file."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list[int] = []
    with suppress(OSError), open("/proc/locks", encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == key and parts[4].lstrip("-").isdigit():
                pids.append(int(parts[4]))
    described = [_describe_process(p) for p in sorted(set(pids)) if p > 0 and p != os.getpid()]
    if described:
        return ", ".join(described[:4]) + (f" and {len(described) - 4} more" if len(described) > 4 else "")
    with suppress(OSError):
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    return ""


def _describe_process(pid: int) -> str:
    """``pid 123 (talmts prepare videos out)``: the command line, shortened, when it can be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = [a.decode("utf-8", "replace") for a in f.read(400).split(b"\0") if a]
    except OSError:
        return f"pid {pid}"
    words = [os.path.basename(a) if i < 2 else a for i, a in enumerate(args)]
    if len(words) > 1 and words[0].startswith("python"):
        words = words[1:]
    return f"pid {pid} ({' '.join(' '.join(words).split())[:120]})"
