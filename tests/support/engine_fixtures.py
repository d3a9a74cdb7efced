"""Tiny stand-ins for the engine tests: a network that returns a DetectorOutput, a loss, a random dataset.

They let the training loop (resume, NaN handling, DDP) be tested in seconds and independently of the real
network; tests of the whole path use the real modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from talmts.config import Config, load_config
from talmts.outputs import DetectorOutput
from talmts.schema import ClassMap

T, S, C = 16, 8, 3
NUM_CLASSES = 2


class TinyNet(nn.Module):
    """Conv3d + GroupNorm (per-sample, so batches split across processes give the same result) + 1x1 heads."""

    def __init__(self, in_channels: int = C, num_classes: int = NUM_CLASSES, dropout: float = 0.2):
        super().__init__()
        self.backbone = nn.Conv3d(in_channels, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.drop = nn.Dropout(dropout)  # draws from the RNG: resume must restore it
        self.head = nn.Conv1d(8, 2 + 2 + 2 * (num_classes + 1) + 1, 1)
        self.nc = num_classes + 1

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        f = F.relu(self.norm(self.backbone(x))).mean((3, 4))  # [B, C, T, H, W] -> [B, 8, T]
        f = F.avg_pool1d(self.drop(f), 4)  # [B, 8, T/4]
        h = self.head(f).transpose(1, 2)  # [B, K, D]
        k = h.shape[1]
        nc = self.nc
        return DetectorOutput(
            loc=F.softplus(h[..., 0:2]),
            conf=h[..., 4 : 4 + nc],
            prop_loc=h[..., 2:4],
            prop_conf=h[..., 4 + nc : 4 + 2 * nc],
            quality=h[..., -1],
            anchors=(torch.arange(k) + 0.5) * T / k,
            level_sizes=(k,),
            clip_frames=T,
        )


def tiny_loss(out: DetectorOutput, targets: list[torch.Tensor], cfg) -> dict[str, torch.Tensor]:
    """A loss of the right shape: anchors inside a target get its class and distances, the others background."""
    assert out.conf.shape[0] == len(targets)
    terms = {"coarse_cls": 0.0, "refined_cls": 0.0, "coarse_loc": 0.0, "refined_loc": 0.0, "quality": 0.0}
    for b, tg in enumerate(targets):
        labels = torch.zeros(out.anchors.shape[0], dtype=torch.long)
        dist = torch.zeros(out.anchors.shape[0], 2)
        for s, e, c in tg.tolist():
            inside = (out.anchors >= s) & (out.anchors <= e)
            labels[inside] = int(c)
            dist[inside, 0] = out.anchors[inside] - s
            dist[inside, 1] = e - out.anchors[inside]
        terms["coarse_cls"] = terms["coarse_cls"] + F.cross_entropy(out.conf[b], labels)
        terms["refined_cls"] = terms["refined_cls"] + F.cross_entropy(out.prop_conf[b], labels)
        terms["coarse_loc"] = terms["coarse_loc"] + F.smooth_l1_loss(out.loc[b], dist)
        terms["refined_loc"] = terms["refined_loc"] + out.prop_loc[b].pow(2).mean()
        terms["quality"] = terms["quality"] + F.binary_cross_entropy_with_logits(out.quality[b], (labels > 0).float())
    n = len(targets)
    terms = {k: v / n for k, v in terms.items()}
    terms["total"] = sum(terms.values())
    return terms


class RandomClips(Dataset):
    """Deterministic clips and targets per index; a random flip draws from torch's global RNG (like the real
    augmentation), so exact resume needs the RNG state restored."""

    classes = ClassMap(("a", "b"))

    def __init__(self, n: int = 12, flip: bool = True):
        self.n, self.flip = n, flip

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(1000 + i)
        clip = torch.rand(C, T, S, S, generator=g) * 2 - 1
        if self.flip and torch.rand(()).item() < 0.5:
            clip = clip.flip(-1)
        start = float(torch.randint(0, T // 2, (), generator=g))
        targets = torch.tensor([[start, start + T / 2, 1 + i % NUM_CLASSES]])
        return {"clip": clip, "targets": targets, "video": f"v{i}", "offset": 0, "fps": 10.0}


def collate(items: list[dict]) -> dict:
    return {
        "clip": torch.stack([it["clip"] for it in items]),
        "targets": [it["targets"] for it in items],
        "video": [it["video"] for it in items],
        "offset": [it["offset"] for it in items],
        "fps": [it["fps"] for it in items],
    }


def tiny_config(out_dir, **train) -> Config:
    """A config the tiny stand-ins satisfy (validation needs clip_frames to fit the pyramid)."""
    overrides = [
        f"train.out_dir={out_dir}",
        "train.device=cpu",
        "train.lr=0.01",
        "train.log_every=1",
        "data.clip_frames=16",
        "data.frame_size=8",
        "data.stored_size=8",
        "model.levels=2",
        "model.fsa.enabled=false",
    ]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return load_config(None, overrides)


def ddp_worker(rank: int, world: int, port: int, out_dir: str, steps: int, batch: int) -> None:
    """One torchrun-like process (env:// rendezvous on localhost) training the tiny net with gloo."""
    import os

    from talmts.engine.training.loop import train

    torch.set_num_threads(1)
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.manual_seed(0)
    cfg = tiny_config(out_dir, epochs=1, batch_size=batch, max_steps=steps, lr_scaling="none")
    # no dropout, no flips: random draws differ between one process and two, the arithmetic must not
    train(
        cfg,
        model=TinyNet(dropout=0.0),
        dataset=RandomClips(16, flip=False),
        collate=collate,
        loss_fn=tiny_loss,
        progress=False,
    )


def assert_same_training_state(a: dict, b: dict) -> None:
    """Two checkpoints hold bit-identical training states: weights, EMA, optimiser, scheduler, RNGs, loss log."""
    assert (a["epoch"], a["step"], a["epoch_step"]) == (b["epoch"], b["step"], b["epoch_step"])
    for part in ("model", "optimizer", "scheduler", "rng"):
        _assert_equal(a[part], b[part], part)
    _assert_equal(a["hooks"].get("ema"), b["hooks"].get("ema"), "hooks.ema")
    history = [[r["total"] for r in s["hooks"]["loss_log"]["history"]] for s in (a, b)]
    assert history[0] == history[1]


def _assert_equal(x, y, where: str) -> None:
    if isinstance(x, torch.Tensor):
        assert isinstance(y, torch.Tensor) and torch.equal(x, y), where
    elif isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), where
        for k in x:
            _assert_equal(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list | tuple):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_equal(u, v, f"{where}[{i}]")
    else:
        assert x == y, (where, x, y)
