"""Training one stream: the loop, checkpoints, exact resume, held-out evaluation, loss logs and curves.

Run as one process or under torchrun (see engine/distributed.py). Every process builds the same model from
the same seed; DDP averages gradients; only process 0 writes files.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from talmts.config import Config, LossConfig
from talmts.engine import distributed
from talmts.engine.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from talmts.engine.distributed import DistContext, ResumableSampler
from talmts.engine.ema import ModelEMA
from talmts.engine.report import ScalarLogger, write_json, write_loss_log
from talmts.errors import TalmtsError
from talmts.fileio import atomic_write_text
from talmts.outputs import DetectorOutput
from talmts.schema import ClassMap

LossFn = Callable[[DetectorOutput, list[torch.Tensor], LossConfig], dict[str, torch.Tensor]]


class NonFiniteLossError(TalmtsError, RuntimeError):
    """A loss term became NaN or Inf; training stopped before the bad update touched any weight or file."""


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    rank: int = 0  # the process that returns this (only rank 0 writes files)


def per_sample_losses(
    output: DetectorOutput, targets: list[torch.Tensor], cfg: LossConfig, loss_fn: LossFn | None = None
) -> dict[str, torch.Tensor]:
    """Losses of each clip normalised on its own, then averaged over the batch.

    With batch 1 (the paper) this is exactly ``compute_losses``; with larger batches it makes a batch of P * b
    on one process equal to P processes with b each (DDP averages gradients), see docs/DESIGN.md.
    """
    if loss_fn is None:
        from talmts.losses import compute_losses as loss_fn
    b = output.conf.shape[0]
    if b == 1:
        return loss_fn(output, targets, cfg)
    terms: dict[str, torch.Tensor] = {}
    for i in range(b):
        one = loss_fn(output.map(lambda t, i=i: t[i : i + 1]), [targets[i]], cfg)
        for k, v in one.items():
            terms[k] = terms[k] + v if k in terms else v
    return {k: v / b for k, v in terms.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's base seed (from the per-epoch loader generator); numpy and
    # python's random follow it, so augmentation in workers is reproducible across a resume at an epoch end.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def dataset_classes(dataset: Dataset, cfg: Config) -> ClassMap:
    """The class map of a training set: its own ``classes`` attribute, else the config's list."""
    classes = getattr(dataset, "classes", None)
    if isinstance(classes, ClassMap):
        return classes
    if classes is not None:
        return ClassMap(tuple(classes))
    if cfg.data.classes:
        return ClassMap(tuple(cfg.data.classes))
    raise ValueError("the training set has no class map and data.classes is empty; name the classes in the config")


def lr_factor(step: int, total: int, cfg: Config) -> float:
    """Multiplier of the base lr at optimiser step ``step``: optional linear warm-up, then constant or cosine."""
    t = cfg.train
    if t.warmup_steps and step < t.warmup_steps:
        return (step + 1) / t.warmup_steps
    if t.schedule == "cosine" and total > t.warmup_steps:
        progress = min(1.0, (step - t.warmup_steps) / max(1, total - t.warmup_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(model: nn.Module, cfg: Config, lr: float) -> torch.optim.Optimizer:
    """Adam (L2 weight decay, as AFSD and the paper) over trainable parameters; the backbone may get its own lr."""
    backbone = getattr(model, "backbone", None)
    bb_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    bb = [p for p in model.parameters() if p.requires_grad and id(p) in bb_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids]
    groups = [{"params": head, "lr": lr}]
    if bb:
        groups.append({"params": bb, "lr": lr * cfg.train.backbone_lr_mult})
    return torch.optim.Adam(groups, lr=lr, weight_decay=cfg.train.weight_decay)


def train(
    cfg: Config,
    *,
    resume: str | Path | None = None,
    progress: bool = True,
    model: nn.Module | None = None,
    dataset: Dataset | None = None,
    collate: Callable | None = None,
    loss_fn: LossFn | None = None,
    validate: Callable[[nn.Module, Config, ClassMap], dict[str, Any]] | None = None,
) -> TrainResult:
    """Train one stream as ``cfg`` says; ``resume`` is a checkpoint (or a run folder: its latest checkpoint).

    ``model``, ``dataset``, ``collate``, ``loss_fn`` and ``validate`` replace the defaults built from the config
    (tests use tiny stand-ins). Raises NonFiniteLossError on a NaN/Inf loss.
    """
    ctx = distributed.setup(cfg.train.device)
    try:
        return _Trainer(cfg, ctx, model, dataset, collate, loss_fn, validate, progress).run(resume)
    finally:
        distributed.cleanup(ctx)


class _Trainer:
    def __init__(self, cfg, ctx: DistContext, model, dataset, collate, loss_fn, validate, progress):  # noqa: ANN001
        self.cfg, self.ctx, self.progress = cfg, ctx, progress and ctx.is_main
        self.out = Path(cfg.train.out_dir)
        seed_everything(cfg.train.seed)  # identical initial weights on every process
        if dataset is None:
            from talmts.data.dataset import ClipDataset, collate_clips

            dataset = ClipDataset(cfg, cfg.data.train_subset, train=True)
            collate = collate or collate_clips
        self.dataset = dataset
        self.classes = dataset_classes(dataset, cfg)
        self.in_channels = 3 if cfg.data.modality == "rgb" else 2
        self.prepare = _prepare_options(cfg.data.root)  # detect samples raw videos the same way
        if model is None:
            from talmts.models import build_detector

            model = build_detector(cfg, len(self.classes), self.in_channels)
        self.model = model.to(ctx.device)
        self.loss_fn = loss_fn
        self.validate = validate if validate is not None else _default_validate
        t = cfg.train
        self.sampler = ResumableSampler(dataset, ctx, shuffle=True, seed=t.seed)
        # The loader draws its workers' base seed from this generator, reseeded every epoch, instead of the
        # global RNG: a run resumed mid-epoch then draws the same numbers as one never stopped.
        self.loader_rng = torch.Generator()
        self.loader = DataLoader(
            dataset,
            batch_size=t.batch_size,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=cfg.data.workers,
            drop_last=True,
            worker_init_fn=_seed_worker,
            generator=self.loader_rng,
            pin_memory=ctx.device.type == "cuda",
        )
        self.steps_per_epoch = self.sampler.num_samples // t.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(dataset)} training clips give no full batch of train.batch_size={t.batch_size} "
                f"on each of {ctx.world_size} process(es); lower the batch size"
            )
        self.total_steps = t.epochs * self.steps_per_epoch
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.lr = distributed.scaled_lr(t.lr, t.batch_size * ctx.world_size, t.lr_batch, t.lr_scaling)
        if ctx.is_main and self.lr != t.lr:  # the lr rule changed train.lr: say what runs
            print(f"effective learning rate {self.lr:.4g}: train.lr={t.lr:g} scaled ({t.lr_scaling}) from train.lr_batch={t.lr_batch} to a global batch of {t.batch_size * ctx.world_size}", flush=True)  # fmt: skip
        self.optimizer = build_optimizer(self.model, cfg, self.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, cfg)
        )
        self.ema = ModelEMA(self.model, t.ema) if t.ema else None
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.epoch = self.step = self.epoch_step = 0
        self.history: list[dict[str, float]] = []
        self.validation: list[dict[str, Any]] = []
        self.best: float | None = None

    # ------------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "classes": list(self.classes.names),
            "in_channels": self.in_channels,
            "prepare": self.prepare,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "history": self.history,
            "validation": self.validation,
            "best": self.best,
        }

    def load(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"--resume {path}: no checkpoint-<epoch>.pt in that folder")
            path = found
        s = load_checkpoint(path)
        if list(s["classes"]) != list(self.classes.names):
            raise ValueError(f"--resume {path}: its classes {s['classes']} differ from this dataset's")
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        if self.ema is not None and s.get("ema"):
            self.ema.load_state_dict(s["ema"])
        set_rng_state(s["rng"])
        self.epoch, self.step, self.epoch_step = s["epoch"], s["step"], s["epoch_step"]
        self.history, self.validation, self.best = list(s["history"]), list(s.get("validation", [])), s.get("best")
        if self.ctx.is_main:
            print(f"resumed from {path}: epoch {self.epoch}, step {self.step}", flush=True)

    def save(self, name: str) -> Path:
        path = self.out / name
        if self.ctx.is_main:
            save_checkpoint(self.state(), path)
        return path

    # ------------------------------------------------------------------------------------------- loop
    def run(self, resume: str | Path | None) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", cfg.to_yaml())
        if resume is not None:
            self.load(resume)
        net = distributed.wrap_model(self.model, ctx, cfg.train.find_unused_parameters)
        logger = ScalarLogger(self.out / "tensorboard" if ctx.is_main else None)
        start = time.perf_counter()
        last: Path | None = None
        try:
            while self.epoch < cfg.train.epochs and self.step < self.total_steps:
                self._epoch(net, logger)
                if self.epoch_step >= self.steps_per_epoch:  # a whole epoch: checkpoint it
                    self.epoch += 1
                    self.epoch_step = 0
                    self._maybe_validate(logger)
                    last = self.save(f"checkpoint-{self.epoch}.pt")
                    if ctx.is_main:
                        write_loss_log(self.history, self.out)  # the log so far, to follow a long run
            last = self.save("last.pt")
        finally:
            logger.close()
            if ctx.is_main and self.history:
                stopping = sys.exc_info()[1]
                try:
                    self._write_logs()
                except OSError:
                    if stopping is None:
                        raise  # else the error that stopped the run (e.g. a full disk) is the one to report
        ctx.barrier()
        seconds = time.perf_counter() - start
        return TrainResult(self.out, last, self.history, self.validation, seconds, self.step, ctx.rank)

    def _epoch(self, net: nn.Module, logger: ScalarLogger) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.sampler.set_epoch(self.epoch)
        self.loader_rng.manual_seed(cfg.train.seed + 1_000_003 * self.epoch + 7919 * ctx.rank)
        self.sampler.set_start(self.epoch_step * cfg.train.batch_size)
        remaining = min(self.steps_per_epoch - self.epoch_step, self.total_steps - self.step)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=remaining, desc=f"epoch {self.epoch + 1}/{cfg.train.epochs}", unit="step", leave=False)
        net.train()
        tick = time.perf_counter()
        for batch in self.loader:
            losses = self._step(net, batch)
            self.step += 1
            self.epoch_step += 1
            now = time.perf_counter()
            row = {"step": self.step, "epoch": self.epoch + self.epoch_step / self.steps_per_epoch}
            row.update({k: float(v) for k, v in losses.items()})
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = now - tick
            tick = now
            self.history.append(row)
            if ctx.is_main and (self.step % cfg.train.log_every == 0 or self.step == 1):
                logger.scalars("train", {k: row[k] for k in losses} | {"lr": row["lr"]}, self.step)
            if bar is not None:
                clips = cfg.train.batch_size * ctx.world_size / max(row["seconds"], 1e-9)
                bar.set_postfix(loss=f"{row['total']:.3f}", clips_s=f"{clips:.2f}")
                bar.update(1)
            if self.step >= self.total_steps:
                break  # before the loader draws (and augments) another batch
        if bar is not None:
            bar.close()

    def _step(self, net: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        dev = self.ctx.device
        clip = batch["clip"].to(dev, non_blocking=True)
        targets = [t.to(dev) for t in batch["targets"]]
        amp = self.cfg.train.amp and dev.type == "cuda"
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            out = net(clip)
        if amp:
            out = out.map(lambda t: t.float())
        losses = per_sample_losses(out, targets, self.cfg.loss, self.loss_fn)
        bad = [k for k, v in losses.items() if not bool(torch.isfinite(v).all())]
        if not self.ctx.all_true(not bad):
            done = latest_checkpoint(self.out)
            where = f"the last good checkpoint {done} is intact" if done else "no checkpoint had been written yet"
            what = ", ".join(f"{k}={float(losses[k].detach())}" for k in bad) if bad else "on another process"
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}): {what}; training stopped "
                f"before this update and {where}. Try a lower train.lr, train.grad_clip, or check the data."
            )
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return self.ctx.mean_over_processes({k: v.detach() for k, v in losses.items()})

    # ------------------------------------------------------------------------------------------- evaluation
    def _maybe_validate(self, logger: ScalarLogger) -> None:
        cfg = self.cfg
        if cfg.data.val_subset is None or self.epoch % max(cfg.train.eval_every, 1):
            return
        if self.ctx.is_main:
            model = self.ema.module if self.ema else self.model
            was_training = model.training
            model.eval()
            metrics = self.validate(model, cfg, self.classes)
            model.train(was_training)
            metrics = {"epoch": self.epoch, "step": self.step, **metrics}
            self.validation.append(metrics)
            write_json(self.validation, self.out / "validation.json")
            logger.scalars("val", {"average_mAP": metrics["average_mAP"]}, self.step)
            print(f"epoch {self.epoch}: {cfg.data.val_subset} average mAP {metrics['average_mAP']:.4f}", flush=True)
            if self.best is None or metrics["average_mAP"] > self.best:
                self.best = metrics["average_mAP"]
                save_checkpoint(self.state(), self.out / "best.pt")
        self.ctx.barrier()

    def _write_logs(self) -> None:
        write_loss_log(self.history, self.out)
        from talmts.viz import plot_loss_curves

        plot_loss_curves({self.cfg.data.modality: self.history}, self.out / "loss_curves.png")


def _prepare_options(root: str) -> dict[str, Any] | None:
    """The options ``talmts prepare`` recorded for the training data (rate, size, flow method), if any."""
    path = Path(root) / "prepare.json" if root else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def _default_validate(model: nn.Module, cfg: Config, classes: ClassMap) -> dict[str, Any]:
    """mAP of ``model`` on cfg.data.val_subset (a held-out split, never the test split: validate() forbids it)."""
    from talmts.engine.evaluate import evaluate_streams
    from talmts.engine.predictor import Stream

    result, _ = evaluate_streams([Stream(model, cfg, classes, "training")], cfg, cfg.data.val_subset)
    return result.to_json()
