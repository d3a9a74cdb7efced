"""Training one stream: the step loop, with checkpoints, resume, validation, logs, EMA and the NaN guard as hooks.

Run as one process or under torchrun (see engine/distributed.py). Every process builds the same model from
the same seed; DDP averages gradients; only process 0 writes files. The hooks live in engine/training/hooks/, the
training levers (channels-last, compile, the Adam implementation) in engine/training/speedups.py, the choice of the
checkpoint to resume from in engine/training/resume.py.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from talmts.config import MODALITY_CHANNELS, Config, LossConfig
from talmts.data.device_transforms import batch_clips
from talmts.engine import distributed
from talmts.engine.checkpoint import CheckpointError, rng_state, set_rng_state
from talmts.engine.distributed import DistContext, ResumableSampler
from talmts.engine.training.hooks import (
    Checkpointer,
    EMAHook,
    Hook,
    LossLog,
    NaNGuard,
    NonFiniteLossError,
    ProgressBar,
    StopSignals,
    Validation,
)
from talmts.engine.training.hooks.preemption import EXIT_STOPPED, STOP_SIGNALS, TrainingStopped, ignore_stop_signals
from talmts.engine.training.resume import ResumeSettingsWarning, changed_settings, open_resume, resume_target
from talmts.engine.training.speedups import adam_options, amp_context, amp_enabled, for_training, network_call
from talmts.fileio import atomic_write_text
from talmts.outputs import DetectorOutput
from talmts.processes import exit_with_parent
from talmts.schema import ClassMap

log = logging.getLogger(__name__)

LossFn = Callable[[DetectorOutput, list[torch.Tensor], LossConfig], dict[str, torch.Tensor]]


__all__ = ["EXIT_STOPPED", "NonFiniteLossError", "TrainResult", "TrainingStopped", "train"]


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    rank: int = 0  # the process that returns this (only rank 0 writes files)
    resumed_from: Path | None = None  # the checkpoint the run started from (None: a fresh start)


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
    exit_with_parent(grace=0)  # a loader worker holds no state: it ends as soon as the training process is gone
    # torch seeds each worker from the loader's base seed (from the per-epoch loader generator); numpy and
    # python's random follow it, so augmentation in workers is reproducible across a resume at an epoch end.
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    ignore_stop_signals()


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
    """Adam (L2 weight decay, as AFSD and the paper) over trainable parameters; the backbone may get its own lr.

    ``train.adam`` picks the implementation (loop, foreach, fused): the same update up to float rounding.
    """
    backbone = getattr(model, "backbone", None)
    bb_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    bb = [p for p in model.parameters() if p.requires_grad and id(p) in bb_ids]
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in bb_ids]
    groups = [{"params": head, "lr": lr}]
    if bb:
        groups.append({"params": bb, "lr": lr * cfg.train.backbone_lr_mult})
    return torch.optim.Adam(groups, lr=lr, weight_decay=cfg.train.weight_decay, **adam_options(cfg))


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
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train one stream as ``cfg`` says.

    ``resume``: a checkpoint; a run folder (its newest good checkpoint); or "auto" (the newest good one in
    train.out_dir, else a fresh start; also what a torchrun restart does). ``model``, ``dataset``, ``collate``,
    ``loss_fn`` and ``validate`` replace the defaults built from the config (tests use tiny stand-ins); ``hooks``
    run after the standard ones and before the checkpoint is written (engine/training/hooks/base.py says when).
    Raises NonFiniteLossError on a NaN/Inf loss and TrainingStopped after a stop signal (SIGTERM, SIGUSR1) once
    its checkpoint is written.
    """
    ctx = distributed.setup(cfg.train.device)
    try:
        loop = TrainLoop(cfg, ctx, model, dataset, collate, loss_fn)
        ema = EMAHook(loop.model, cfg.train.ema) if cfg.train.ema else None
        log = LossLog(loop.out, cfg.data.modality, cfg.train.log_every, ctx.is_main)
        val = Validation(validate or _default_validate, (lambda: ema.module) if ema else (lambda: loop.model), log)
        saver = Checkpointer(cfg.train.checkpoint_every_steps, StopSignals(STOP_SIGNALS), cfg.train.keep_checkpoints)
        bar = [ProgressBar(cfg.train.batch_size * ctx.world_size)] if progress and ctx.is_main else []
        # order matters: the EMA and the log are up to date before a checkpoint is written
        loop.hooks = [*([ema] if ema else []), NaNGuard(), log, *bar, val, *hooks, saver]
        seconds = loop.run(resume_target(resume))
        return TrainResult(
            loop.out, saver.last, log.history, val.scores, seconds, loop.step, ctx.rank, loop.resumed_from
        )
    finally:
        distributed.cleanup(ctx)


class TrainLoop:
    """The step loop: data, forward, losses, update; everything else is a hook (engine/training/hooks)."""

    def __init__(
        self,
        cfg: Config,
        ctx: DistContext,
        model: nn.Module | None,
        dataset: Dataset | None,
        collate: Callable | None,
        loss_fn: LossFn | None,
    ):
        self.cfg, self.ctx = cfg, ctx
        self.out = Path(cfg.train.out_dir)
        self.hooks: list[Hook] = []
        seed_everything(cfg.train.seed)  # identical initial weights on every process
        if dataset is None:
            from talmts.data.dataset import ClipDataset, collate_clips

            dataset = ClipDataset(cfg, cfg.data.train_subset, train=True, raw=cfg.data.transform == "device")
            collate = collate or collate_clips
        self.classes = dataset_classes(dataset, cfg)
        self.in_channels = MODALITY_CHANNELS[cfg.data.modality]
        self.prepare = _prepare_record(cfg.data.root)  # detect samples raw videos the same way
        if model is None:
            from talmts.models import build_detector

            model = build_detector(cfg, len(self.classes), self.in_channels)
        self.model = for_training(model.to(ctx.device), cfg)
        self.loss_fn = loss_fn
        t = cfg.train
        self.sampler = ResumableSampler(dataset, ctx, shuffle=True, seed=t.seed)
        # The loader draws its workers' base seed from this generator, reseeded every epoch, instead of the
        # global RNG: a run resumed mid-epoch then draws the same numbers as one never stopped.
        self.loader_rng = torch.Generator()
        workers = cfg.data.workers
        self.loader = DataLoader(
            dataset,
            batch_size=t.batch_size,
            sampler=self.sampler,
            collate_fn=collate,
            num_workers=workers,
            prefetch_factor=cfg.data.prefetch if workers else None,
            persistent_workers=cfg.data.persistent_workers and workers > 0,
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
            log.info(
                "effective learning rate %.4g: train.lr=%g scaled (%s) from train.lr_batch=%d to a global batch of %d",
                self.lr,
                t.lr,
                t.lr_scaling,
                t.lr_batch,
                t.batch_size * ctx.world_size,
            )
        self.optimizer = build_optimizer(self.model, cfg, self.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, cfg)
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.epoch = self.step = self.epoch_step = 0
        self.resumed_from: Path | None = None

    # ------------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """Everything a checkpoint holds: the loop's state and every hook's."""
        state = {
            "config": self.cfg.to_dict(),
            "classes": list(self.classes.names),
            "in_channels": self.in_channels,
            "prepare": self.prepare,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
        }
        names = [h.name for h in self.hooks if h.name]
        if len(set(names)) != len(names):
            raise ValueError(f"two training hooks keep their state under one name: {sorted(names)}")
        state["hooks"] = {h.name: h.state_dict() for h in self.hooks if h.name}
        return state

    def load_state(self, path: Path, state: dict[str, Any]) -> None:
        if list(state["classes"]) != list(self.classes.names):
            raise CheckpointError(f"--resume {path}: its classes {state['classes']} differ from this dataset's")
        self.model.load_state_dict(state["model"])
        self._load_optimisation(path, state)
        set_rng_state(state["rng"])
        self.epoch, self.step, self.epoch_step = state["epoch"], state["step"], state["epoch_step"]
        namespaces = state.get("hooks")
        for hook in self.hooks:
            if hook.name:
                own = namespaces.get(hook.name, {}) if namespaces is not None else hook.legacy_state(state)
                hook.load_state_dict(own)
        self.resumed_from = Path(path)
        if self.ctx.is_main:
            log.info("resumed from %s: epoch %d, step %d", path, self.epoch, self.step)

    def _load_optimisation(self, path: Path, state: dict[str, Any]) -> None:
        """The optimiser's moments and the scheduler's step from the checkpoint; the lr and weight decay from this
        run's config (docs/DESIGN.md, "Checkpoints"), with a warning naming each setting that changed. With the
        settings unchanged this is the checkpoint's state bit for bit."""
        fresh = [{k: g[k] for k in ("initial_lr", "weight_decay")} for g in self.optimizer.param_groups]
        saved_lr = [g.get("initial_lr") for g in state["optimizer"]["param_groups"]]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for group, values in zip(self.optimizer.param_groups, fresh):
            group.update(values)
        self.scheduler.base_lrs = [v["initial_lr"] for v in fresh]
        at = self.scheduler.last_epoch
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas):
            group["lr"] = base * factor(at)
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        changes = changed_settings(state.get("config", {}).get("train", {}), self.cfg.to_dict()["train"])
        if saved_lr[0] != self.lr and not changes:  # same config, another number of processes (the lr rule)
            global_batch = self.cfg.train.batch_size * self.ctx.world_size
            changes = [f"the global batch, now {global_batch} (processes x train.batch_size)"]
        if changes and self.ctx.is_main:
            warnings.warn(
                ResumeSettingsWarning(
                    f"--resume {path}: optimisation settings differ from the checkpoint's ({'; '.join(changes)}); "
                    f"this run's apply from step {state['step']} on (effective lr {saved_lr[0]:.4g} -> {self.lr:.4g})"
                ),
                stacklevel=2,
            )

    def _call(self, event: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self, *args)

    # ------------------------------------------------------------------------------------------- loop
    def run(self, resume: str | Path | None) -> float:
        """Train to the end (or to the first error); returns the seconds it took."""
        cfg, ctx = self.cfg, self.ctx
        # The checkpoint to resume from is read (and checked) first: a wrong --resume leaves the run folder as it was
        found = open_resume(resume, self.out, self.steps_per_epoch) if resume is not None else None
        if found is not None:
            self.load_state(*found)
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", cfg.to_yaml())
        net = network_call(distributed.wrap_model(self.model, ctx, cfg.train.find_unused_parameters), cfg)
        start = time.perf_counter()
        try:
            self._call("start")
            while self.epoch < cfg.train.epochs and self.step < self.total_steps:
                self._epoch(net)
                if self.epoch_step >= self.steps_per_epoch:
                    self.epoch += 1
                    self.epoch_step = 0
                    self._call("after_epoch")
            self._call("after_run")
        finally:
            try:
                for hook in reversed(self.hooks):
                    hook.close(self)
            finally:
                self._stop_loader_workers()
        ctx.barrier()
        return time.perf_counter() - start

    def _stop_loader_workers(self) -> None:
        """End persistent loader workers now. They ignore SIGTERM (stop signals are the training process's), so
        multiprocessing's exit handler, which terminates them with SIGTERM and then joins them, would wait forever
        if they were still alive when the interpreter exits. DataLoader has no public call for this."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None:
            iterator._shutdown_workers()
            self.loader._iterator = None

    def _epoch(self, net: nn.Module) -> None:  # net: the (compiled) network
        t = self.cfg.train
        self.sampler.set_epoch(self.epoch)
        self.loader_rng.manual_seed(t.seed + 1_000_003 * self.epoch + 7919 * self.ctx.rank)
        self.sampler.set_start(self.epoch_step * t.batch_size)
        if self.epoch_step >= self.steps_per_epoch:
            return  # resumed from the epoch's last step: only its end (validation, checkpoint) is left
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
            self._call("after_step", row)
            if self.step >= self.total_steps:
                break  # before the loader draws (and augments) another batch

    def _step(self, net: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        dev, cfg = self.ctx.device, self.cfg
        flow_sign = cfg.data.modality == "flow" and cfg.data.flip_negates_flow
        clip = batch_clips(batch, dev, cfg.data.frame_size, flow_sign=flow_sign, channels_last=cfg.train.channels_last)
        targets = [t.to(dev) for t in batch["targets"]]
        with amp_context(cfg, dev):
            out = net(clip)
        if amp_enabled(cfg, dev):
            out = out.map(lambda t: t.float())
        losses = per_sample_losses(out, targets, self.cfg.loss, self.loss_fn)
        self._call("before_update", losses)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.cfg.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return self.ctx.mean_over_processes({k: v.detach() for k, v in losses.items()})


def _prepare_record(root: str) -> dict[str, Any] | None:
    """The options ``talmts prepare`` recorded for the training data (rate, size, flow method), if any, as the plain
    dict a checkpoint stores."""
    from talmts.data.record import read_record

    record = read_record(root) if root else None
    return record.to_dict() if record is not None else None


def _default_validate(model: nn.Module, cfg: Config, classes: ClassMap) -> dict[str, Any]:
    """mAP of ``model`` on cfg.data.val_subset (a held-out split, never the test split: validate() forbids it)."""
    from talmts.engine.inference.eval_checkpoints import evaluate_streams
    from talmts.engine.inference.predictor import Stream

    result, _ = evaluate_streams([Stream(model, cfg, classes, "training")], cfg, cfg.data.val_subset)
    return result.to_json()
