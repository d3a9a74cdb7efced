"""Atomic writes: the final name holds the old file or the whole new one, never a part, and no temporary stays."""

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
