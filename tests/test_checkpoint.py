"""Checkpoints: safe loading (no code from the file runs), checksums, atomic writes, clear errors, conversion of
older files, RNG round trips."""

from __future__ import annotations

import pickle
import random
import zipfile

import numpy as np
import pytest
import torch

from talmts.engine import checkpoint as ck
from talmts.errors import TalmtsError


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


# ---------------------------------------------------------------------------------------- safe loading
class _RunsCommand:
    """What an attacker puts into a checkpoint: unpickling it runs a shell command (here: touch a marker)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _crafted_files(tmp_path):
    """The same payload three ways: a bare pickle, a torch zip, and a torch zip with a valid talmts checksum."""
    marker = tmp_path / "marker"
    payload = {"model": _RunsCommand(marker), "config": {}, "format": ck.CHECKPOINT_FORMAT}
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps(payload))
    zipped = tmp_path / "zipped.pt"
    torch.save(payload, zipped)
    signed = tmp_path / "signed.pt"
    torch.save(payload, signed)
    ck._append_record(signed, {"epoch": 0, "step": 0})  # an attacker can compute the checksum too
    return marker, [bare, zipped, signed]


def test_crafted_checkpoint_runs_no_code(tmp_path):
    marker, files = _crafted_files(tmp_path)
    torch.load(files[1], weights_only=False)  # not vacuous: unsafe loading runs the command
    assert marker.exists()
    marker.unlink()
    for path in files:
        with pytest.raises(TalmtsError, match=path.name):
            ck.load_checkpoint(path)
        assert not marker.exists(), path.name
    with pytest.raises(ck.UnsafeCheckpoint, match="convert-checkpoint"):
        ck.load_checkpoint(files[2])
    with pytest.raises(ck.UnsafeCheckpoint, match="trust"):
        ck.convert_checkpoint(files[2], tmp_path / "out.pt")  # without trust=True it stays safe as well
    assert not marker.exists()


@pytest.mark.parametrize("command", ["eval", "detect"])
def test_crafted_checkpoint_through_the_command_line(tmp_path, command, capsys):
    """`talmts eval --checkpoint crafted.pt` (and detect): a one-line error, exit code 2, and no command run."""
    from talmts.cli import main

    marker, files = _crafted_files(tmp_path)
    (tmp_path / "video.mp4").write_bytes(b"")  # detect reads the checkpoint before it opens the video
    for path in files:
        if command == "eval":
            argv = ["eval", "demo", "--checkpoint", str(path), "--out", str(tmp_path / "eval"), "--quiet"]
        else:
            argv = ["detect", str(tmp_path / "video.mp4"), "--checkpoint", str(path), "--out", str(tmp_path / "d")]
        assert main(argv) == 2, path.name
        err = capsys.readouterr().err
        assert path.name in err and "Traceback" not in err
        assert not marker.exists(), path.name


def test_checkpoint_holds_plain_values_only(tmp_path):
    """numpy values become python numbers and tensors; the file loads with weights_only=True; other objects are
    refused when writing, naming where they are."""
    state = {
        "model": torch.nn.BatchNorm1d(2).state_dict(),
        "config": {"lr": np.float64(0.5), "sizes": (np.int64(3), 4)},
        "rng": ck.rng_state(),
        "extra": np.arange(3),
    }
    path = ck.save_checkpoint(state, tmp_path / "c.pt")
    raw = torch.load(path, weights_only=True)
    assert type(raw["config"]["lr"]) is float and raw["config"]["sizes"] == (3, 4)
    assert torch.equal(raw["extra"], torch.arange(3))
    assert raw["model"]._metadata == {"": {"version": 2}}  # load_state_dict reads the module versions
    with pytest.raises(TypeError, match=r"\['config'\]\['bad'\]"):
        ck.save_checkpoint({"model": {}, "config": {"bad": object()}}, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_checksum_detects_a_changed_byte_in_a_valid_zip(tmp_path):
    """A tensor's bytes changed and the zip rewritten with correct CRCs (what a careless tool would do): only the
    sha256 can tell, and it does."""
    path = ck.save_checkpoint({"model": {"w": torch.zeros(64)}, "config": {}}, tmp_path / "c.pt")
    ck.verify_checkpoint(path)
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data/0"):
                data = b"\x01" + data[1:]
            dst.writestr(info, data)
    with pytest.raises(ck.CheckpointCorrupted, match="forged.pt is corrupted"):
        ck.load_checkpoint(forged)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = ck.save_checkpoint({"model": {"w": torch.zeros(1000)}, "config": {}}, tmp_path / "c.pt")
    data = path.read_bytes()
    for keep in (len(data) - 1, len(data) // 2, 10, 0):
        path.write_bytes(data[:keep])
        with pytest.raises(ck.CheckpointCorrupted, match="c.pt"):
            ck.load_checkpoint(path)


def _old_checkpoint(path):
    """A checkpoint as talmts wrote it before (format 1): the raw numpy/python RNG tuples, no checksum."""
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    state = {"format": 1, "model": {"w": torch.arange(3.0)}, "config": {"name": "x"}, "rng": rng, "step": 7}
    torch.save(state, path)
    return rng


def test_old_checkpoint_gets_a_conversion_command(tmp_path, capsys):
    from talmts.cli import main

    old = tmp_path / "old.pt"
    rng = _old_checkpoint(old)
    with pytest.raises(ck.UnsafeCheckpoint) as err:
        ck.load_checkpoint(old)
    assert f"talmts convert-checkpoint {old} {tmp_path / 'old-v2.pt'} --trust" in str(err.value)
    new = tmp_path / "new.pt"
    assert main(["convert-checkpoint", str(old), str(new)]) == 2  # full unpickling only with --trust
    assert "add --trust only if you trust" in capsys.readouterr().err and not new.exists()
    assert main(["convert-checkpoint", str(old), str(new), "--trust"]) == 0
    assert "any code it holds runs now" in capsys.readouterr().err  # the unsafe read is announced
    state = ck.load_checkpoint(new)
    assert state["format"] == ck.CHECKPOINT_FORMAT and state["step"] == 7
    assert torch.equal(state["model"]["w"], torch.arange(3.0))
    ck.set_rng_state(state["rng"])
    after = (random.random(), np.random.rand())
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    assert after == (random.random(), np.random.rand())
    assert main(["convert-checkpoint", str(old), str(old), "--trust"]) == 2  # never overwrites the original


def test_checksum_less_safe_file_is_refused_with_the_conversion(tmp_path, capsys):
    """A safe file without a checksum (another tool's torch.save) converts without unpickling anything unsafe."""
    from talmts.cli import main

    plain_file = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.ones(2)}, "config": {}}, plain_file)
    with pytest.raises(ck.CheckpointError, match="no checksum.*convert-checkpoint"):
        ck.load_checkpoint(plain_file)
    assert main(["convert-checkpoint", str(plain_file), str(tmp_path / "ok.pt")]) == 0
    assert "runs now" not in capsys.readouterr().err
    assert torch.equal(ck.load_checkpoint(tmp_path / "ok.pt")["model"]["w"], torch.ones(2))
