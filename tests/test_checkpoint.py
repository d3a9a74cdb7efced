"""Checkpoints: atomic writes, clear errors on foreign files, RNG round trips, latest-epoch lookup."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from talmts.engine import checkpoint as ck


def test_save_load_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "config": {"name": "x"}, "epoch": 3}
    path = ck.save_checkpoint(state, tmp_path / "sub" / "checkpoint-3.pt")
    back = ck.load_checkpoint(path)
    assert torch.equal(back["model"]["w"], torch.arange(4.0)) and back["epoch"] == 3
    assert back["format"] == ck.CHECKPOINT_FORMAT


def test_crash_during_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = ck.save_checkpoint({"model": {"w": torch.zeros(3)}, "config": {}}, tmp_path / "last.pt")
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left behind


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        ck.load_checkpoint(tmp_path / "nothere.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="junk.pt.*cannot be read"):
        ck.load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a talmts checkpoint"):
        ck.load_checkpoint(foreign)
    future = tmp_path / "future.pt"
    torch.save({"model": {}, "config": {}, "format": ck.CHECKPOINT_FORMAT + 1}, future)
    with pytest.raises(ValueError, match="format"):
        ck.load_checkpoint(future)


def test_rng_state_round_trip():
    state = ck.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(3))
    ck.set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_latest_checkpoint(tmp_path):
    assert ck.latest_checkpoint(tmp_path) is None
    for name in ("checkpoint-2.pt", "checkpoint-10.pt", "checkpoint-9.pt", "last.pt", "checkpoint-x.pt"):
        (tmp_path / name).write_bytes(b"")
    assert ck.latest_checkpoint(tmp_path).name == "checkpoint-10.pt"
