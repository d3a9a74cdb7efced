#!/usr/bin/env bash
# Issue 7, second device session (run 2026-11-26: docs/PERFORMANCE.md, "Second GPU session"): the levers added
# after bench/gpu_speed.sh, on top of its best setting (bf16 autocast, channels-last 3D, BatchNorm folded,
# torch.compile, CUDA graph). Full TAL-MTS, RGB, 256x96x96.
#
#   GPU:  bash bench/gpu_speed_next.sh            (JSON lines in $OUT/bench.jsonl, log in $OUT/log.txt,
#         per-layer times in $OUT/layers.txt); at most BUDGET (400 s) + the machine's start: a 460 s command limit
#   CPU smoke run of every command line (tiny demo network, 32 frames, batch 2, one timed pass, compile traced
#   with the eager backend except in the step named by SMOKE_INDUCTOR_STEP):
#         DEVICE=cpu OUT=/tmp/smoke bash bench/gpu_speed_next.sh
#
# Levers: models/i3d_rewrites.py (space-to-depth stem, pointwise matmuls, fused pools) and fuse_pointwise.
# Steps run in order of importance; each gets at most its own limit and what is left of BUDGET seconds, and is
# skipped when less than 30 s are left, so the whole script ends inside BUDGET (default 400 s). Compiled steps
# save their torch.compile artifacts under $CACHE_DIR (an ignored folder of the repository) and the script packs
# them into $OUT/compile_cache.tar: unpack it into .cache/compile and carry ".cache/compile" in the next session
# to skip the compiles.
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-bench_out}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-400}
if [ "$DEVICE" = cuda ]; then CACHE_DIR=${CACHE_DIR:-.cache/compile}; else CACHE_DIR=${CACHE_DIR:-$OUT/cache}; fi
SMOKE_INDUCTOR_STEP=${SMOKE_INDUCTOR_STEP:-compile_all}
mkdir -p "$OUT" "$CACHE_DIR"
LOG="$OUT/log.txt"
STEP=$(mktemp)  # one step's output (kept out of $OUT: at most 8 files come back)
START=$(date +%s)

BEST="--dtype bf16 --channels-last --fold-bn"  # + --compile --cuda-graph where named below
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

run() {  # step name, seconds allowed, bench arguments (options first, --batch last)
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - ($(date +%s) - START)))
  if [ "$left" -lt 30 ]; then
    echo "== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
    echo "{\"step\": \"$name\", \"skipped\": true}" >>"$OUT/bench.jsonl"
    return
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  local tail=()
  if [ "$DEVICE" != cuda ]; then  # smoke: same flags, tiny sizes; later options override earlier ones
    tail=(--iters 1 --warmup 1 --config demo)
    [ "$name" != "$SMOKE_INDUCTOR_STEP" ] && tail+=(--compile-backend eager)
    tail+=(--batch 2 data.clip_frames=32)
  fi
  echo "== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0=$(date +%s)
  timeout "$limit" python3 -m talmts bench --device "$DEVICE" --save "$OUT/bench.jsonl" "$@" "${tail[@]}" \
    >"$STEP" 2>&1
  local rc=$?
  cat "$STEP" >>"$LOG"
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $(($(date +%s) - t0))}" >>"$OUT/bench.jsonl"
  grep -E "frames/s|Error|error:" "$STEP" | tail -n 4
  echo "   rc=$rc after $(($(date +%s) - t0))s"
}

cache() { echo "--compile-cache $CACHE_DIR/$1.bin"; }

# 0. where the time goes: per-layer times of the eager variants side by side, and the top operators
t0=$(date +%s)
if [ "$DEVICE" = cuda ]; then layer_args=(--batch 32); else layer_args=(--device cpu --config demo --batch 2 --iters 1 --top 0 data.clip_frames=32); fi
echo "== layers: bench/gpu_layers.py ${layer_args[*]}" | tee -a "$LOG"
timeout 120 python3 bench/gpu_layers.py "${layer_args[@]}" >"$OUT/layers.txt" 2>&1
echo "   rc=$? after $(($(date +%s) - t0))s"; grep -A 30 "== per layer" "$OUT/layers.txt"
# 1. every rewrite, eager + CUDA graph (cheap, a clean ratio against last session's 66,756 at batch 8 eager+graph)
run graph_all 60 $BEST --fuse-pointwise --stem-s2d --pointwise-matmul --cuda-graph --no-flops --check --batch 32
# 2. the headline: the best setting + every rewrite, compiled, batch 32 and 64
ALL="--fuse-pointwise --stem-s2d --pointwise-matmul --fused-pools"
run compile_all 220 $BEST $ALL --compile --cuda-graph --check $(cache compile_all) --batch 32 64
# 3. the same-session baseline: the best setting of gpu_speed.sh (86,664 frames/s at batch 32 last time)
run compile_base 150 $BEST --compile --cuda-graph --check $(cache compile_base) --batch 32
# 4. the stem alone under compile (is the stem the lever?)
run compile_s2d 150 $BEST --stem-s2d --compile --cuda-graph $(cache compile_s2d) --batch 32

size=$(du -sk "$CACHE_DIR" | cut -f1)
if [ "$size" -lt 15000 ]; then
  tar -cf "$OUT/compile_cache.tar" -C "$CACHE_DIR" .
else
  echo "compile cache ${size} KiB: too large to bring back (16 MiB per file)" | tee -a "$LOG"
fi
echo "total $(($(date +%s) - START))s" | tee -a "$LOG"
grep -E "frames/s" "$LOG"
