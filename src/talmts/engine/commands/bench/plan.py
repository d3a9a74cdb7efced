"""The measurements ``talmts bench`` makes: the options checked and turned into a plan, then run one row at a time
(each row is handed out as soon as it is measured, so a run stopped by a time limit keeps what it had)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from talmts.config import MODALITY_CHANNELS, Config, load_config, resolve_config_path
from talmts.engine.commands.bench.options import FAST_FLAGS
from talmts.engine.distributed import resolve_device
from talmts.errors import InputError
from talmts.models.levers import FAST, LeverRunner, Levers

AFSD_OFF = ["model.rfp.enabled=false", "model.stt.enabled=false", "model.fsa.enabled=false"]
Row = dict[str, Any]


@dataclass
class BenchPlan:
    cfg: Config
    device: torch.device
    batches: list[int]
    levers: dict[str, Levers]  # dtype -> the levers measured with it
    streams: list[str]  # modalities, each its own network
    preset: str = "talmts"  # or "afsd": AFSD's network and timing protocol
    part: str = "network"  # or "backbone"
    warmup: int = 3
    iters: int = 20
    statistic: str = "median"
    flops: bool = True
    check: bool = False  # compare each measured model's scores with the fp32 eager one
    postprocess: bool = False
    train_variants: list[str] = field(default_factory=list)  # training lever sets to time (none: no training step)
    train_presets: list[str] = field(default_factory=list)
    inference: bool = True
    compile_cache: str | None = None


def plan_bench(
    config: str | None,
    overrides: Sequence[str],
    batch: Sequence[str],
    *,
    device: str = "auto",
    dtypes: Sequence[str] = ("fp32",),
    switches: dict[str, Any] | None = None,
    fast: bool = False,
    streams: str = "rgb",
    preset: str = "talmts",
    backbone_only: bool = False,
    warmup: int = 3,
    iters: int = 20,
    **rest: Any,
) -> BenchPlan:
    """The plan of ``talmts bench``'s options; a bad combination is an InputError before anything is measured.
    ``batch``: batch sizes, and key=value items after them (argparse hands them over together) as overrides."""
    overrides = [*overrides, *(b for b in batch if "=" in b)]
    try:
        batches = [int(b) for b in batch if "=" not in b]
    except ValueError:
        raise InputError(f"--batch takes integers (and key=value overrides), got {list(batch)}") from None
    extra = ["model.backbone.weights=null"]  # speed does not depend on the weights' values
    cfg = load_config(
        resolve_config_path(config or "thumos14_rgb"), extra + overrides + (AFSD_OFF if preset == "afsd" else [])
    )
    switches = dict(switches or {})
    if fast:  # the FAST preset's levers, set as if given
        dtypes = [FAST.dtype]
        switches.update({flag: True for flag in FAST_FLAGS})
    try:
        levers = {dtype: Levers(dtype=dtype, **switches) for dtype in dtypes}
    except ValueError as err:
        raise InputError(str(err)) from None
    if preset == "afsd":  # AFSD's own timing protocol
        warmup, iters, statistic = 2, 20, "mean"
    else:
        statistic = "median"
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    modalities = {"rgb": ["rgb"], "flow": ["flow"], "both": ["rgb", "flow"]}[streams]
    part = "backbone" if backbone_only else "network"
    return BenchPlan(cfg, dev, batches, levers, modalities, preset, part, warmup, iters, statistic, **rest)


def run_bench(plan: BenchPlan, emit: Callable[[Row], None]) -> None:
    """Every measurement of ``plan``, each row handed to ``emit`` as soon as it is measured."""
    from talmts.engine.commands.bench.network import (
        load_compile_cache,
        matmul_peak_tflops,
        measure_network,
        measure_postprocess,
        save_compile_cache,
    )

    compiled = any(lv.compile for lv in plan.levers.values())
    cache = plan.compile_cache if compiled else None
    if cache:
        emit({"compile_cache": cache, "loaded": load_compile_cache(cache)})
    peaks: dict[str, float] = {}
    for dtype, levers in plan.levers.items() if plan.inference else ():
        if plan.flops and dtype not in peaks:
            peaks[dtype] = matmul_peak_tflops(plan.device, levers.torch_dtype)
        for batch in plan.batches:
            per_stream = []
            for m in plan.streams:
                channels = MODALITY_CHANNELS[m]
                reference = _reference(plan.cfg, channels, plan.device, plan.part) if plan.check else None
                per_stream.append(
                    measure_network(
                        plan.cfg, batch=batch, device=plan.device, levers=levers, in_channels=channels,
                        warmup=plan.warmup, iters=plan.iters, peak_tflops=peaks.get(dtype), flops=plan.flops,
                        statistic=plan.statistic, check_against=reference, part=plan.part,
                    )
                )  # fmt: skip
            for m, r in zip(plan.streams, per_stream):
                row = {"stream": m, "preset": plan.preset, **vars(r)}
                row.pop("times_ms")
                emit(row)
            if cache:  # after every compile, in case a later one runs out of time
                save_compile_cache(cache)
            if len(per_stream) == 2:  # two streams run one after the other on the same clips
                fps = 1 / sum(1 / r.frames_per_s for r in per_stream)
                emit({"stream": "both", "preset": plan.preset, "part": plan.part, "batch": batch, "frames_per_s": fps})
    if plan.postprocess:
        emit({"postprocess": measure_postprocess(plan.cfg)})
    if plan.train_variants:
        _train_steps(plan, emit)
    if peaks:
        emit({"peak_tflops": peaks, "device": str(plan.device)})
    if cache:
        emit({"compile_cache": cache, "bytes": save_compile_cache(cache)})


def _train_steps(plan: BenchPlan, emit: Callable[[Row], None]) -> None:
    """One row per (network, stream, batch, lever set); a lever set that fails is reported as a row, not fatal."""
    from talmts.engine.commands.bench import training

    nets = {"talmts": plan.cfg, "afsd": training.with_changes(plan.cfg, training.AFSD_MODULES_OFF)}
    for preset in plan.train_presets:
        for m in plan.streams:
            net_cfg = training.with_changes(nets[preset], {"data.modality": m})
            for batch in plan.batches:
                for variant in plan.train_variants:
                    try:
                        row = training.measure_train_variant(
                            net_cfg, variant, device=plan.device, batch=batch, steps=plan.iters, warmup=plan.warmup
                        )
                    except Exception as err:  # one lever failing (out of memory, a compile error) keeps the rest
                        row = training.failed_variant(variant, batch, err)
                    emit({"preset": preset, "stream": m, **row})


def _reference(cfg: Config, in_channels: int, device: torch.device, part: str = "network") -> LeverRunner:
    """The fp32 eager model (or backbone) with the same (seeded) weights as the measured one."""
    from talmts.engine.commands.bench.network import prepare_model

    return prepare_model(cfg, 20, in_channels, device, Levers(), part)[1]


def format_row(row: Row) -> str:
    """One measurement as a line of text (a JSON object for the rows that have no line of their own)."""
    if "frames_per_s" in row and "median_ms" in row:
        lev = row["levers"]
        keys = ("channels_last", "fold_bn", "fuse_pointwise", "stem_s2d", "pointwise_matmul", "fused_pools")
        on = [k for k in (*keys, "compile", "cuda_graph") if lev.get(k)]
        if lev.get("compile"):
            tag = "compile"
            if lev.get("compile_backend", "inductor") != "inductor":
                tag += f"[{lev['compile_backend']}]"
            if lev.get("compile_mode", "default") != "default":
                tag += f"={lev['compile_mode']}"
            on[on.index("compile")] = tag
        frac = f"  {row['peak_fraction'] * 100:.1f}% of peak" if row.get("peak_fraction") else ""
        mem = f"  peak {row['peak_mem_mb']:.0f} MB" if row.get("peak_mem_mb") else ""
        gf = f"  {row['gflop_per_clip']:.1f} GFLOP/clip" if row.get("gflop_per_clip") else ""
        agree = row.get("agreement")
        chk = ""
        if agree and "max_score_diff" in agree:
            chk = f"  [vs fp32: dscore {agree['max_score_diff']:.1e}, top-20 {agree['top_overlap']:.0%}]"
        elif agree:
            chk = f"  [vs fp32: max relative feature diff {agree['max_rel_feature_diff']:.1e}]"
        return (
            f"{row['preset']:7s} {row['stream']:4s} {row['part']:8s} b={row['batch']:<3d} {lev['dtype']} {'+'.join(on) or 'eager'}: "
            f"{row['frames_per_s']:,.0f} frames/s ({row['median_ms']:.2f} ms median){gf}{frac}{mem}{chk}"
        )
    if "train_step" in row and "clips_per_s" in row:
        mem = f"  peak {row['peak_mem_mb']:,.0f} MB ({row['peak_mem_kind']})" if row.get("peak_mem_mb") else ""
        return (
            f"{row['preset']:7s} {row['stream']:4s} train    b={row['batch']:<3d} {row['train_step']:16s}: "
            f"{row['clips_per_s']:,.2f} clips/s, {row['frames_per_s']:,.0f} frames/s "
            f"({row['seconds_per_step'] * 1e3:.1f} ms/step, first step {row['first_step_s']:.1f} s){mem}"
        )
    if "compile_cache" in row and "loaded" in row:
        return f"compile cache {row['compile_cache']}: {'loaded' if row['loaded'] else 'none'}"
    return json.dumps(row)
