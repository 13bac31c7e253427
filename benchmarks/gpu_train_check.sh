#!/usr/bin/env bash
# GPU check of issues 5 and 13: a short SegResNet-DS training on phantoms through AutoRunner, then the
# 11-step interactive evaluation (model vs suv-threshold), within one 10-minute command. Writes under ${OUT:-/tmp/out}.
#   bash benchmarks/gpu_train_check.sh [CASES] [SHAPE_X SHAPE_Y SHAPE_Z]
#   BENCH=1 bash benchmarks/gpu_train_check.sh ...   # first: where a training iteration goes at this scale
#                                                     # (benchmarks/bench_training.py --scale gpu, ~2 min)
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
cases=${1:-24}; sx=${2:-96}; sy=${3:-96}; sz=${4:-128}
if [ "${BENCH:-0}" = "1" ]; then
  timeout "${BENCH_LIMIT:-150}" python benchmarks/bench_training.py --scale gpu --device cuda --iterations 20 \
    --variants before after 2>&1 | grep --line-buffered -v Warning | tee "$OUT/bench_training_gpu.txt"
fi
timeout "${LIMIT:-540}" python -m petclick demo --out /tmp/gpu_demo --data /tmp/gpu_phantoms --input benchmarks/gpu_phantom_training.yaml \
  --cases "$cases" --seed 11 --shape "$sx" "$sy" "$sz" --device cuda 2>&1 | grep --line-buffered -v Warning > "$OUT/demo.log"
tail -40 "$OUT/demo.log"
cp /tmp/gpu_demo/demo_timing.json "$OUT/" || true
cp -r /tmp/gpu_demo/report "$OUT/report" || true
find /tmp/gpu_demo/work_dir -name "progress.yaml" -exec cp {} "$OUT/" \; || true
find /tmp/gpu_demo/work_dir -name "*.log" -exec cp {} "$OUT/" \; ; ls -la "$OUT"
