#!/usr/bin/env bash
# One device session for issue 7: the speed table of docs/PERFORMANCE.md, each inference lever measured on its own.
# Run from the repository root on a CUDA machine: `bash bench/gpu_speed.sh` (writes JSON lines under $OUT).
# Full TAL-MTS, RGB stream, one 256x96x96 clip per batch element, random weights (speed does not depend on them).
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-bench_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
run() {  # name, seconds allowed, bench arguments...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" python3 -m talmts bench --device cuda --save "$OUT/bench.jsonl" "$@" 2>&1 | grep -v Warning | tail -6
}
run afsd_protocol 90 --preset afsd --batch 1 8
run eager_fp32 90 --batch 1 8 --check
run bf16 90 --dtype bf16 --batch 1 8 32 --check
run bf16_cl 90 --dtype bf16 --channels-last --batch 1 8 32
run bf16_cl_fold 120 --dtype bf16 --channels-last --fold-bn --batch 1 8 32 64 --check
run graph_b1 90 --dtype bf16 --channels-last --fold-bn --cuda-graph --batch 1 8 --check
run compile 240 --dtype bf16 --channels-last --fold-bn --compile --cuda-graph --batch 1 32 --check
