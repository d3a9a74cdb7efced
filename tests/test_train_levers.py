"""Training speed levers give the plain loop's losses and updates: bit for bit where the arithmetic is the same
(foreach Adam, clips made on the device), within stated tolerances where kernels or traced graphs may differ
(fused Adam, channels-last convolutions, a trace-only compile)."""

from __future__ import annotations

import typing

import pytest
import torch

from support.engine_fixtures import RandomClips, TinyNet, collate, tiny_config, tiny_loss
from talmts.config import TrainConfig, load_config, resolve_config_path
from talmts.engine.checkpoint import load_checkpoint
from talmts.engine.training.loop import per_sample_losses, train
from talmts.engine.training.speedups import ADAM_OPTIONS, compile_levers, for_training, network_call
from talmts.models import build_detector
from talmts.models.levers import COMPILE_BACKENDS, COMPILE_MODES
from test_dataset import _cfg, prepared  # noqa: F401  (the fixture: a tiny prepared dataset)


def _run(tmp_path, tag: str, **train_opts):
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path / tag, epochs=1, batch_size=2, max_steps=4, **train_opts)
    r = train(cfg, model=TinyNet(), dataset=RandomClips(8), collate=collate, loss_fn=tiny_loss, progress=False)
    return [h["total"] for h in r.history], load_checkpoint(r.last_checkpoint)["model"]


def _max_param_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("plain"), "plain", adam="loop")


@pytest.mark.parametrize(
    ("opts", "loss_tol", "param_tol"),
    [
        ({"adam": "foreach"}, 0.0, 0.0),  # the same per-element arithmetic, batched over tensors: bit for bit
        ({"adam": "torch"}, 0.0, 0.0),  # torch's default on CPU is the loop
        # traced forward + backward, eager kernels: bit for bit alone, 1e-8 apart after other compiles in a process
        ({"compile": True, "compile_backend": "aot_eager"}, 1e-6, 1e-6),
        ({"adam": "fused"}, 1e-6, 1e-6),  # one fused kernel: rounding may differ in the last bit
        ({"channels_last": True}, 1e-5, 1e-6),  # other convolution kernels for the channels-last layout
    ],
)
def test_lever_gives_the_plain_losses_and_updates(tmp_path, plain, opts, loss_tol, param_tol) -> None:
    losses, weights = _run(tmp_path, "lever", **opts)
    assert max(abs(a - b) for a, b in zip(losses, plain[0])) <= loss_tol
    assert _max_param_diff(weights, plain[1]) <= param_tol
    if loss_tol == 0.0:
        assert losses == plain[0]


def test_the_weights_really_moved(plain, tmp_path) -> None:
    """The comparisons above are between trained weights, not the initial ones."""
    torch.manual_seed(0)
    start = TinyNet().state_dict()
    assert _max_param_diff(start, plain[1]) > 1e-3


def test_device_transform_run_gives_the_loader_runs_losses(prepared, tmp_path) -> None:  # noqa: F811
    """data.transform=device: the same clips (same draws), so the same losses bit for bit."""
    histories = []
    for where in ("loader", "device"):
        cfg = _cfg(prepared, f"train.out_dir={tmp_path / where}", "train.device=cpu", "train.max_steps=3",
                   "train.batch_size=2", f"data.transform={where}")  # fmt: skip
        torch.manual_seed(0)
        r = train(cfg, model=TinyNet(), loss_fn=tiny_loss, progress=False)
        histories.append([h["total"] for h in r.history])
    assert len(histories[0]) == 3 and histories[0] == histories[1]


def _choices(field: str) -> tuple:
    return typing.get_args(typing.get_type_hints(TrainConfig)[field])


def test_lever_fields_use_the_inference_vocabulary() -> None:
    assert _choices("compile_mode") == COMPILE_MODES
    assert _choices("compile_backend") == COMPILE_BACKENDS
    assert _choices("adam") == tuple(ADAM_OPTIONS)
    cfg = load_config(None, ["train.compile=true", "train.compile_mode=max-autotune"])
    assert compile_levers(cfg).compile and compile_levers(cfg).compile_mode == "max-autotune"


def _detector_grads(cfg):
    """Losses and gradients of the real (tiny) detector for one batch, with ``cfg``'s levers."""
    torch.manual_seed(0)
    model = for_training(build_detector(cfg, 3, 3).train(), cfg)
    net = network_call(model, cfg)
    g = torch.Generator().manual_seed(1)
    t, s = cfg.data.clip_frames, cfg.data.frame_size
    clip = torch.rand(2, 3, t, s, s, generator=g) * 2 - 1
    if cfg.train.channels_last:
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    targets = [torch.tensor([[t * 0.2, t * 0.6, 1.0]]), torch.tensor([[t * 0.1, t * 0.3, 2.0]])]
    losses = per_sample_losses(net(clip), targets, cfg.loss)
    losses["total"].backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


# Tiny detector: every module on, I3D at an eighth of its width, 32 frames of 32 px, BN frozen as in the paper's
# configs (training-mode BatchNorm's channels-last CPU kernel is less exact: see docs/DESIGN.md "Training speed").
TINY_DETECTOR = [
    "model.backbone.weights=null",
    "model.backbone.freeze_bn=true",
    "data.clip_frames=32",
    "data.frame_size=32",
    "data.stored_size=40",
    "model.backbone.width=0.125",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("levers", "rel"),
    [
        (["train.channels_last=true"], 1e-4),  # other convolution kernels
        (["train.compile=true", "train.compile_backend=aot_eager"], 1e-6),  # traced, eager kernels
        # inductor itself is not run here: its CPU code generation fails on this network's backward in torch
        # 2.13 (docs/DESIGN.md "Training speed"); bench/gpu_train_speed.py exercises it on CUDA
    ],
)
def test_real_detector_levered_step_matches_the_plain_step(levers, rel) -> None:
    """Losses and gradients of one step. Gradients, not weights after Adam: Adam's first steps divide each
    gradient by its own size, so a rounding-level change of a near-zero gradient can move its weight by 2 x lr."""
    plain_losses, plain_grads = _detector_grads(load_config(resolve_config_path("demo"), TINY_DETECTOR))
    losses, grads = _detector_grads(load_config(resolve_config_path("demo"), [*TINY_DETECTOR, *levers]))
    assert losses == pytest.approx(plain_losses, rel=rel)
    assert grads.keys() == plain_grads.keys() and len(grads) > 50
    norm = torch.cat([g.flatten() for g in plain_grads.values()]).norm()
    diff = torch.cat([(grads[k] - plain_grads[k]).flatten() for k in grads]).norm()
    assert float(diff / norm) <= rel


def test_worker_loader_with_prefetch_ships_windows_to_the_trainer(prepared, tmp_path) -> None:  # noqa: F811
    """One worker, prefetch 1, uint8 windows: the loader options reach the DataLoader and a run trains twice
    with the same draws (workers are reseeded from the run's seed every epoch)."""
    runs = []
    for i in range(2):
        cfg = _cfg(prepared, f"train.out_dir={tmp_path / str(i)}", "train.device=cpu", "train.max_steps=2",
                   "data.transform=device", "data.workers=1", "data.prefetch=1")  # fmt: skip
        torch.manual_seed(0)
        runs.append([h["total"] for h in train(cfg, model=TinyNet(), loss_fn=tiny_loss, progress=False).history])
    assert len(runs[0]) == 2 and runs[0] == runs[1]
