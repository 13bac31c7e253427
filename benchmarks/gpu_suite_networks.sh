#!/usr/bin/env bash
# GPU measurements for docs/benchmarks/networks.md (run on the lent device; writes tables under ${OUT:-/tmp/out}).
#   bash benchmarks/gpu_suite_networks.sh
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
run() { echo "+ $*" | tee -a "$OUT/networks.txt"; "$@" 2>&1 | grep -v Warning | tee -a "$OUT/networks.txt"; }
# SegResNetDS whole-body: the stock reference setting (ROI 192x192x384, overlap 0.625, fp16), then tuned settings.
run python benchmarks/bench_networks.py --networks segresnet --device cuda --amp --amp-dtype fp16 --roi 192 192 384 --overlap 0.625 --whole-body --train-step --repeats 3
run python benchmarks/bench_networks.py --networks segresnet --device cuda --amp --amp-dtype bf16 --channels-last --roi 192 192 384 --overlap 0.625 --sw-batch-size 2 --whole-body --repeats 3
run python benchmarks/bench_networks.py --networks dints swinunetr --device cuda --amp --amp-dtype fp16 --whole-body --train-step --repeats 2
run python benchmarks/bench_click_encoding.py --device cuda --repeats 20
run python -m pytest -q tests/test_clicks_encoding.py -k cuda
