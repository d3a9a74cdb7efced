"""Atomic writes: the final name holds the old file or the whole new one, never a part, and no temporary stays."""

import os

import pytest

from talmts.fileio import TMP_MARK, atomic_open, atomic_path, atomic_write_text


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_success_replaces_and_keep_suffix_names_the_temporary_last(tmp_path):
    target = tmp_path / "sub" / "clip.mp4"
    with atomic_path(target, keep_suffix=True) as tmp:
        assert tmp.name.startswith(".clip" + TMP_MARK) and tmp.suffix == ".mp4"
        assert not target.exists()
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x" and not tmp.exists()


def test_folder_lock_names_its_holder_and_goes_on_where_locks_do_not_exist(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from talmts.fileio import FolderBusy, folder_lock

    with folder_lock(tmp_path, "talmts prepare"), pytest.raises(FolderBusy) as busy, folder_lock(tmp_path, "again"):
        pass  # a second open of the lock file conflicts even in one process
    assert f"{tmp_path} is in use by talmts prepare (pid {os.getpid()})" in str(busy.value)
    with folder_lock(tmp_path, "talmts view"):  # released: taken again at once
        pass

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="talmts.fileio"), folder_lock(tmp_path, "talmts view"):
        pass
    assert "cannot be locked" in caplog.text
