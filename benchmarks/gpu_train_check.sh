#!/usr/bin/env bash
# Issue 5 GPU check: a short SegResNet-DS training on phantoms through AutoRunner, then the
# 11-step interactive evaluation (model vs suv-threshold). Writes under ${OUT:-/tmp/out}.
#   bash benchmarks/gpu_train_check.sh [CASES] [SHAPE_X SHAPE_Y SHAPE_Z]
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
cases=${1:-48}; sx=${2:-128}; sy=${3:-128}; sz=${4:-160}
timeout "${LIMIT:-420}" python -m petclick demo --out /tmp/gpu_demo --data /tmp/gpu_phantoms --input benchmarks/gpu_phantom_training.yaml \
  --cases "$cases" --seed 11 --shape "$sx" "$sy" "$sz" --device cuda 2>&1 | grep --line-buffered -v Warning > "$OUT/demo.log"
tail -40 "$OUT/demo.log"
cp /tmp/gpu_demo/demo_timing.json "$OUT/" || true
cp -r /tmp/gpu_demo/report "$OUT/report" || true
find /tmp/gpu_demo/work_dir -name "progress.yaml" -exec cp {} "$OUT/" \; || true
find /tmp/gpu_demo/work_dir -name "*.log" -exec cp {} "$OUT/" \; ; ls -la "$OUT"
