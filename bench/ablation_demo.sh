#!/usr/bin/env bash
# The paper's Table VI (baseline, +RFP, +STT, +RFP+STT, all three) on the demo's synthetic dataset, RGB stream,
# several seeds: a template for ablations on real data, and a check that each module can be switched off.
#
#   make demo                              # once: the dataset in demo_out/ (synth + prepared)
#   bash bench/ablation_demo.sh [SEEDS...] # default seeds 0 1; two runs at a time, one thread each
#
# Writes ablation_out/<variant>-s<seed>/ (run + eval-test/detections.json) and prints, per variant, each seed's
# row and the mean and standard deviation (`talmts evaluate GT RUN1.json RUN2.json ...`).
set -euo pipefail
DATA=${DATA:-demo_out}
OUT=${OUT:-ablation_out}
TALMTS=${TALMTS:-talmts}
SEEDS=("${@:-0 1}")
read -r -a SEEDS <<<"${SEEDS[*]}"
declare -A VARIANTS=(
  [baseline]="model.rfp.enabled=false model.stt.enabled=false model.fsa.enabled=false"
  [rfp]="model.stt.enabled=false model.fsa.enabled=false"
  [stt]="model.rfp.enabled=false model.fsa.enabled=false"
  [rfp_stt]="model.fsa.enabled=false"
  [all]=""
)
ORDER=(baseline rfp stt rfp_stt all)
common=("data.root=$DATA/prepared" "data.annotations=$DATA/synth/annotations.json" "data.modality=rgb")

one() {  # variant seed: train, then evaluate on the test split
  local v=$1 s=$2 dir="$OUT/$1-s$2"
  # shellcheck disable=SC2086  # the overrides are separate words
  OMP_NUM_THREADS=1 $TALMTS train demo "${common[@]}" ${VARIANTS[$v]} "train.seed=$s" "train.out_dir=$dir" --quiet \
    >"$dir.train.log" 2>&1
  OMP_NUM_THREADS=1 $TALMTS eval demo "${common[@]}" --checkpoint "$dir/last.pt" --out "$dir/eval-test" --quiet \
    >"$dir.eval.log" 2>&1
}

mkdir -p "$OUT"
jobs_list=()
for v in "${ORDER[@]}"; do for s in "${SEEDS[@]}"; do jobs_list+=("$v $s"); done; done
start=$(date +%s)
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do  # two at a time: one per core
  pids=()
  for j in "${jobs_list[@]:i:2}"; do
    # shellcheck disable=SC2086
    one $j &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "[$(($(date +%s) - start)) s] done: ${jobs_list[*]:i:2}"
done
for v in "${ORDER[@]}"; do
  echo "== $v: ${VARIANTS[$v]:-every module on}"
  files=()
  for s in "${SEEDS[@]}"; do files+=("$OUT/$v-s$s/eval-test/detections.json"); done
  $TALMTS evaluate "$DATA/synth/annotations.json" "${files[@]}" --subset test --dataset thumos
done
