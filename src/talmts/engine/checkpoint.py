"""Checkpoints: safe to load, checked for integrity, written atomically, enough to resume training exactly.

A checkpoint is the zip file ``torch.save`` writes, holding a dict of plain values and tensors only (so it loads
with ``torch.load(..., weights_only=True)``: no object of the file is ever constructed by running its code):
  format      CHECKPOINT_FORMAT, bumped when the layout changes
  config      the resolved config as a plain dict (Config.to_dict())
  classes     action class names in index order (1..C)
  in_channels 3 (RGB) or 2 (flow)
  prepare     the options ``talmts prepare`` recorded for the training data, or None
  model       the network's state_dict (unwrapped from DDP)
  optimizer, scheduler   their state_dicts (training only)
  rng         python / numpy / torch (/ cuda) RNG states as lists, ints and tensors (see :func:`rng_state`)
  epoch       epochs completed; step: optimiser steps completed; epoch_step: steps done inside ``epoch``
  hooks       each training hook's own state under its name: ema {"decay", "updates", "weights"},
              loss_log {"history"}, validation {"validation", "best"} (talmts 0.1 kept these flat beside the
              loop's entries as ema, history, validation, best; both layouts load: :func:`averaged_weights`)

One more zip member, ``<archive>/talmts.json``, is appended after ``torch.save``: the sha256 of every other member
(name, size and bytes, in file order) and the epoch and step, readable without unpickling anything. Loading
recomputes the digest first, so a truncated or corrupted file is refused before torch parses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talmts.errors import TalmtsError
from talmts.fileio import atomic_path

CHECKPOINT_FORMAT = 2  # 2: plain values only (weights_only) and a sha256 member; 1: pickled numpy RNG state
RECORD = "talmts.json"
_CHUNK = 1 << 20


class CheckpointError(TalmtsError, ValueError):
    """A checkpoint that cannot be used: foreign, from an older talmts, corrupted or truncated (names the file)."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No checkpoint at the given path."""


class CheckpointCorrupted(CheckpointError):
    """The file is truncated or its bytes differ from the checksum written with it."""


class UnsafeCheckpoint(CheckpointError):
    """The file holds Python objects that only full unpickling (which can run code) would rebuild."""


TRUST_MEANS = "--trust: talmts unpickles the file fully, which runs any code it holds"


def convert_command(path: str | Path, *, trust: bool = False) -> str:
    p = Path(path)
    return f"talmts convert-checkpoint {p} {p.with_name(p.stem + '-v2' + p.suffix)}" + (" --trust" if trust else "")


# ------------------------------------------------------------------------------------------------ writing
def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with numpy scalars and arrays turned into python numbers and tensors; anything that is not a plain
    value, container or tensor is refused (it would need unsafe unpickling to load)."""
    if obj is None or type(obj) in (bool, int, float, str, bytes, torch.Size):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        items = ((k, plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
        if not isinstance(obj, OrderedDict):
            return dict(items)
        out = OrderedDict(items)
        if hasattr(obj, "_metadata"):  # a state_dict's per-module versions, read by load_state_dict
            out._metadata = plain(obj._metadata, f"{where}._metadata")  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list | tuple):
        out = [plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return out if isinstance(obj, list) else tuple(out)
    raise TypeError(f"{where}: a {type(obj).__name__} cannot go into a checkpoint (plain values and tensors only)")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file in the same folder, fsync, then os.replace), with
    its checksum member. A crash during the write leaves the previous file (if any) untouched and no partial file
    under ``path``."""
    path = Path(path)
    payload = plain({"format": CHECKPOINT_FORMAT, **state})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
        _append_record(tmp, {"epoch": payload.get("epoch"), "step": payload.get("step")})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())  # on disk before the rename makes it the checkpoint
    return path


def _append_record(path: str | Path, summary: dict[str, Any]) -> None:
    with zipfile.ZipFile(path, "a") as z:
        digest = _digest(z)
        prefix = z.infolist()[0].filename.split("/", 1)[0]
        record = {"format": CHECKPOINT_FORMAT, "sha256": digest, **summary}
        z.writestr(f"{prefix}/{RECORD}", json.dumps(record))


def _digest(z: zipfile.ZipFile) -> str:
    """sha256 over every member except the record: name, size and bytes, in file order."""
    h = hashlib.sha256()
    for info in z.infolist():
        if info.filename.endswith("/" + RECORD):
            continue
        h.update(info.filename.encode() + b"\0" + info.file_size.to_bytes(8, "little"))
        with z.open(info) as member:
            while chunk := member.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ reading
def read_record(path: str | Path) -> dict[str, Any] | None:
    """The checksum record of a checkpoint (format, sha256, epoch, step), or None when it has none (an older or
    foreign file). Raises CheckpointCorrupted when the file is not a readable zip (truncated, overwritten)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [i.filename for i in z.infolist() if i.filename.endswith("/" + RECORD)]
            record = json.loads(z.read(names[-1])) if names else None
        if record is not None and not isinstance(record, dict):
            raise ValueError(f"{RECORD} holds a {type(record).__name__}, not a mapping")
        return record
    except Exception as e:  # whatever the zip reader trips on, the file cannot be used
        raise CheckpointCorrupted(
            f"checkpoint {path} cannot be read: truncated, corrupted or not a checkpoint ({type(e).__name__}: {e})"
        ) from None


def verify_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """Recompute the checksum of ``path``; returns its record, None for a file without one, or raises
    CheckpointCorrupted naming the file."""
    record = read_record(path)
    if record is None:
        return None
    try:
        with zipfile.ZipFile(path) as z:
            actual = _digest(z)
    except Exception as e:  # a bad CRC, a cut member, an unsupported compression: the same to the user
        raise CheckpointCorrupted(f"checkpoint {path} cannot be read to the end ({type(e).__name__}: {e})") from None
    if actual != record.get("sha256"):
        raise CheckpointCorrupted(
            f"checkpoint {path} is corrupted: its contents hash to sha256 {actual[:16]}..., the checksum written "
            f"with it is {str(record.get('sha256'))[:16]}...; use an earlier checkpoint"
        )
    return record


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: checksum first, then ``torch.load`` with
    ``weights_only=True``. Every failure is a CheckpointError naming the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointMissing(f"checkpoint {path} does not exist (train writes OUT_DIR/checkpoint-<epoch>.pt)")
    record = verify_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpoint(
            f"checkpoint {path} holds Python objects that talmts does not unpickle, since unpickling can run code "
            f"hidden in the file ({_refused_global(e)}). A checkpoint of an older talmts is converted once with: "
            f"`{convert_command(path, trust=True)}` - only for a file whose source you trust ({TRUST_MEANS})"
        ) from None
    except Exception as e:  # any other failure to parse means the same thing to the user
        raise CheckpointCorrupted(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); is it a talmts checkpoint?"
        ) from None
    _check_layout(state, path, has_record=record is not None)
    return state


def _refused_global(error: Exception) -> str:
    """The line of torch's weights_only error that names the refused object (e.g. "GLOBAL posix.system")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line]
    return (named or lines or [type(error).__name__])[0][:200]


def _check_layout(state: Any, path: Path, has_record: bool) -> None:
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(
            f"checkpoint {path} is not a talmts checkpoint (no 'model'/'config' entries); "
            "talmts eval/detect need a checkpoint written by `talmts train`"
        )
    fmt = state.get("format", 0)
    if not isinstance(fmt, int) or fmt > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {fmt}; this talmts reads <= {CHECKPOINT_FORMAT}: upgrade talmts"
        )
    if not has_record:
        raise CheckpointError(
            f"checkpoint {path} carries no checksum (written by an older talmts or another tool); "
            f"convert it once with `{convert_command(path)}`"
        )


def convert_checkpoint(
    src: str | Path, dst: str | Path, *, trust: bool = False, announce: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Rewrite an older (format 1) or checksum-less checkpoint ``src`` as a current one at ``dst`` and check that
    it reads back; returns the state.

    ``src`` is read with ``weights_only=True`` when that suffices; a file that needs full unpickling (which runs
    whatever code the file carries) only with ``trust=True``, after telling ``announce``; without it the file is
    refused and nothing is written. ``src`` itself is never written.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise CheckpointMissing(f"checkpoint {src} does not exist")
    if dst.resolve() == src.resolve():
        raise CheckpointError(f"convert-checkpoint: NEW must differ from OLD ({src} is kept as it is)")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust:
            raise UnsafeCheckpoint(
                f"checkpoint {src} holds Python objects that only full unpickling rebuilds ({_refused_global(e)}); "
                f"refused: add --trust only if you trust where the file comes from ({TRUST_MEANS})"
            ) from None
        if announce is not None:
            announce(f"{src} needs full unpickling: any code it holds runs now (--trust was given)")
        state = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointCorrupted(f"checkpoint {src} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"checkpoint {src} is not a talmts checkpoint (no 'model'/'config' entries)")
    if isinstance(state.get("rng"), dict):
        state["rng"] = _plain_rng(state["rng"])
    try:
        save_checkpoint({k: v for k, v in state.items() if k != "format"}, dst)
    except TypeError as e:
        raise CheckpointError(f"checkpoint {src} cannot be converted: {e}") from None
    load_checkpoint(dst)  # what was written reads back safely and its checksum holds
    return state


# ------------------------------------------------------------------------------------------------ RNG states
def averaged_weights(state: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The EMA weights a checkpoint holds, if any, in either layout (hooks/ema, or the flat ``ema`` of 0.1)."""
    ema = (state.get("hooks") or {}).get("ema") if "hooks" in state else state.get("ema")
    return ema.get("weights") if ema else None


def rng_state() -> dict[str, Any]:
    """Every global RNG state that training draws from (data augmentation, dropout, sampler seeds), as plain
    lists, ints and tensors so that the checkpoint loads with ``weights_only=True``."""
    return _plain_rng(
        {"python": random.getstate(), "numpy": np.random.get_state(legacy=True), "torch": torch.get_rng_state()}
        | ({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {})
    )


def _plain_rng(state: dict[str, Any]) -> dict[str, Any]:
    """python's getstate() tuple and numpy's get_state() tuple (with its uint32 array) -> lists and ints."""
    out = dict(state)
    py = state["python"]
    if isinstance(py, tuple):
        out["python"] = [py[0], list(py[1]), py[2]]
    npy = state["numpy"]
    if isinstance(npy, tuple):
        name, keys, pos, has_gauss, gauss = npy
        out["numpy"] = {
            "bit_generator": str(name),
            "keys": [int(k) for k in keys],
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        }
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = np.asarray(n["keys"], dtype=np.uint32)
    np.random.set_state((n["bit_generator"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
