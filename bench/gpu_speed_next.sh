#!/usr/bin/env bash
# Issue 7, next device session: the levers prepared after bench/gpu_speed.sh, on top of its best setting
# (bf16 autocast, channels-last 3D, BatchNorm folded, torch.compile, CUDA graph). Full TAL-MTS, RGB, 256x96x96.
#
#   GPU:  bash bench/gpu_speed_next.sh            (JSON lines in $OUT/bench.jsonl, log in $OUT/log.txt)
#         about 7 min (BUDGET) + the machine's start; run it with a 480 s command limit
#   CPU smoke run of every command line (tiny demo network, 32 frames, batch 2, one timed pass, compile traced
#   with the eager backend except in the step named by SMOKE_INDUCTOR_STEP):
#         DEVICE=cpu OUT=/tmp/smoke bash bench/gpu_speed_next.sh
#
# Steps run in order of importance; each gets at most its own limit and what is left of BUDGET seconds, and is
# skipped when less than 30 s are left, so the whole script ends inside BUDGET (default 420 s). Compiled steps
# save their torch.compile artifacts under $CACHE_DIR (an ignored folder of the repository) and the script packs
# them into $OUT/compile_cache.tar: unpack it into .cache/compile and carry ".cache/compile" in the next session
# to skip the compiles.
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-bench_out}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-420}
if [ "$DEVICE" = cuda ]; then CACHE_DIR=${CACHE_DIR:-.cache/compile}; else CACHE_DIR=${CACHE_DIR:-$OUT/cache}; fi
SMOKE_INDUCTOR_STEP=${SMOKE_INDUCTOR_STEP:-compile_fused}
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

# 1. the fusion alone, without compile: eager + CUDA graph, unfused vs fused (cheap, a clean ratio)
run graph_base 60 $BEST --cuda-graph --no-flops --batch 32
run graph_fused 60 $BEST --fuse-pointwise --cuda-graph --no-flops --check --batch 32
# 2. the headline: the best setting + fused pointwise, compiled, batch 32 and 64
run compile_fused 240 $BEST --fuse-pointwise --compile --cuda-graph --check $(cache compile_fused) --batch 32 64
# 3. the same-session baseline: the best setting of gpu_speed.sh (86,664 frames/s at batch 32 last time)
run compile_base 150 $BEST --compile --cuda-graph --check $(cache compile_base) --batch 32
# 4. max-autotune (without its own CUDA graphs: the bench captures one) at the best batch of step 2
best=$(python3 - "$OUT/bench.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if '"frames_per_s"' in line]
rows = [r for r in rows if r.get("levers", {}).get("fuse_pointwise") and r["levers"].get("compile")]
print(max(rows, key=lambda r: r["frames_per_s"])["batch"] if rows else 32)
EOF
)
run autotune_fused 240 $BEST --fuse-pointwise --compile --compile-mode max-autotune-no-cudagraphs --cuda-graph \
  --check $(cache autotune_fused) --batch "$best"
# 5. larger batch, compiled
run compile_fused_b128 150 $BEST --fuse-pointwise --compile --cuda-graph $(cache compile_fused_b128) --batch 128
# 6. the backbone alone at the same settings, for reference (eager + CUDA graph, fused vs unfused; cheap)
run backbone_base 45 $BEST --backbone-only --cuda-graph --no-flops --batch 32
run backbone_fused 45 $BEST --backbone-only --fuse-pointwise --cuda-graph --check --batch 32

size=$(du -sk "$CACHE_DIR" | cut -f1)
if [ "$size" -lt 15000 ]; then
  tar -cf "$OUT/compile_cache.tar" -C "$CACHE_DIR" .
else
  echo "compile cache ${size} KiB: too large to bring back (16 MiB per file)" | tee -a "$LOG"
fi
echo "total $(($(date +%s) - START))s" | tee -a "$LOG"
grep -E "frames/s" "$LOG"
