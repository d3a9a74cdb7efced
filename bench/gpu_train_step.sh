#!/usr/bin/env bash
# Device check for docs/REPRODUCE.md: one full-size training step (THUMOS14 and ActivityNet configs, RGB, batch 1),
# fp32 and bf16 autocast; then the compiled network at larger batches. `bash bench/gpu_train_step.sh`
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
B="python3 -m talmts bench --device cuda --no-flops --save $OUT/bench.jsonl"
timeout 60 $B --config thumos14_rgb --train-step --iters 1 --warmup 1 train.amp=false 2>&1 | grep train_step
timeout 60 $B --config thumos14_rgb --train-step --iters 1 --warmup 1 train.amp=true 2>&1 | grep train_step
timeout 60 $B --config anet13_rgb --train-step --iters 1 --warmup 1 train.amp=true 2>&1 | grep train_step
timeout 200 $B --dtype bf16 --channels-last --fold-bn --compile --batch 64 128 2>&1 | grep -v Warning | tail -3
