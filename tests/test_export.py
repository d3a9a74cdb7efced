"""The exported graphs (models/export.py) against the PyTorch network they come from: every output within 1e-4
(fp32) at batch 1 and 4, on random clips and on a real one, for ONNX (run by ONNX Runtime) and TorchScript; the
ONNX graph holds standard ops only; what cannot be exported faithfully is refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support.tiny_model import TINY, _demo
from talmts.config import load_config
from talmts.models import build_detector
from talmts.models.export import (
    OPSET,
    OUTPUT_NAMES,
    ExportError,
    check_exportable,
    export_onnx,
    export_torchscript,
    input_shape,
    output_shapes,
)
from talmts.models.levers import FAST, INFERENCE, apply_levers

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TOL = 1e-4
# the tiny network with every part on (RFP, STT on Mixed_4f cells, FSA); a second one with frame-token STT, RFP off
# and no FSA (AFSD's pyramid and f_ca alone)
VARIANTS = {
    "all_parts": [],
    "frame_tokens": [
        "model.stt.tokens=frames",
        "model.stt.patch=16",
        "model.rfp.enabled=false",
        "model.fsa.enabled=false",
    ],
}


def tiny_network(extra: list[str], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = load_config(_demo(), [*TINY, *extra])
    net = build_detector(cfg, 2, 3)
    with torch.no_grad():  # GroupNorm / LayerNorm at their init are the identity: give them real affine values
        for m in net.modules():
            if isinstance(m, torch.nn.GroupNorm | torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return apply_levers(net, INFERENCE)  # what inference runs: eval mode, BatchNorm folded


def reference(net: torch.nn.Module, clip: torch.Tensor) -> list[np.ndarray]:
    """The PyTorch network as the predictor runs it (no_grad, CPU: the shifted-max pools)."""
    with torch.no_grad():
        out = net(clip)
    return [getattr(out, name).numpy() for name in OUTPUT_NAMES]


def random_clips(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 32, 32, 32, generator=g) * 2 - 1


def real_clips(shared: Path, batch: int) -> torch.Tensor:
    """Windows of the I3D authors' cricket clip (79 frames at 224 px), shrunk to the tiny network's 32 px."""
    from talmts.engine.commands.backbone_check import read_clip

    gif = shared / "kinetics" / "v_CricketShot_g04_c01_rgb.gif"

    video = read_clip(gif)[0]  # [3, 79, 224, 224] in [-1, 1]
    small = F.interpolate(video.transpose(0, 1), size=(32, 32), mode="area").transpose(0, 1)  # [3, 79, 32, 32]
    starts = [0, 15, 30, 47][:batch]
    return torch.stack([small[:, s : s + 32] for s in starts]).contiguous()


@pytest.fixture(
    scope="module", params=[pytest.param(v, marks=[pytest.mark.slow] if v != "all_parts" else []) for v in VARIANTS]
)
def exported(request, tmp_path_factory, one_thread):
    """(network, ONNX Runtime session, loaded TorchScript module, onnx path) of one variant, exported once."""
    net = tiny_network(VARIANTS[request.param])
    folder = tmp_path_factory.mktemp(request.param)
    export_onnx(net, folder / "net.onnx")
    export_torchscript(net, folder / "net.ts")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "net.onnx"), options, providers=["CPUExecutionProvider"])
    return net, session, torch.jit.load(str(folder / "net.ts")), folder / "net.onnx"


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    for name, g, w in zip(OUTPUT_NAMES, got, want, strict=True):
        assert g.shape == w.shape, (what, name, g.shape, w.shape)
        err = float(np.abs(g - w).max())
        assert err <= TOL, f"{what}: {name} differs by {err:.2e}"


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("source", ["random", "real"])
def test_onnx_and_torchscript_outputs_equal_pytorch(exported, batch, source, request):
    net, session, scripted, _ = exported
    clips = (
        random_clips(batch, seed=batch)
        if source == "random"
        else real_clips(request.getfixturevalue("shared_data"), batch)
    )
    want = reference(net, clips)
    got_onnx = session.run(list(OUTPUT_NAMES), {"clip": clips.numpy()})
    _assert_close(got_onnx, want, f"onnx {source} batch {batch}")
    with torch.no_grad():
        got_ts = [t.numpy() for t in scripted(clips)]
    _assert_close(got_ts, want, f"torchscript {source} batch {batch}")


def test_onnx_graph_has_standard_ops_and_a_dynamic_batch_axis(exported):
    net, _, _, path = exported
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", 0) >= 17 and opsets[""] == OPSET
    assert {n.domain for n in model.graph.node} <= {""}, "a node outside the default ONNX domain (a custom op)"
    assert not model.functions, "local functions would hide ops from the check above"
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)

    def dims(value_info) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    (inp,) = model.graph.input
    assert inp.name == "clip" and dims(inp)[1:] == input_shape(net)[1:] and isinstance(dims(inp)[0], str)
    shapes = output_shapes(net)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    for o in model.graph.output:
        assert dims(o)[0] == dims(inp)[0] and dims(o)[1:] == shapes[o.name][1:], o.name
    # the declared shapes are the real ones: K = the network's anchors
    out = net(random_clips(1, 0))
    assert shapes["conf"][1:] == list(out.conf.shape[1:]) and shapes["quality"][1] == out.anchors.numel()


def test_speed_rewrites_are_refused_by_module_name():
    net = tiny_network([])
    fast = apply_levers(net, FAST.replace(compile=False, cuda_graph=False, dtype="fp32"))
    with pytest.raises(ExportError, match=r"module backbone\.\S+ \(talmts\.models\.\S+\) has no checked export"):
        check_exportable(fast)


def test_a_module_without_a_checked_export_is_refused_by_name(tmp_path):
    net = tiny_network([])
    net.coarse.loc_tower[0][2] = torch.nn.SiLU()  # any module the parity tests do not cover
    with pytest.raises(ExportError, match=r"module coarse\.loc_tower\.0\.2 \(torch\.nn\.modules\.activation\.SiLU\)"):
        export_onnx(net, tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="coarse.loc_tower.0.2"):
        export_torchscript(net, tmp_path / "x.ts")
    assert not list(tmp_path.iterdir())  # nothing written
