#!/usr/bin/env bash
# bench_pass.py on a lent GPU, in two parts that each fit one device call (writes under ${OUT:-/tmp/out}):
#   bash benchmarks/gpu_bench_pass.sh            # about 8 minutes on an H100/H200
# Part 1: every setting but torch.compile, with the bf16 + channels_last_3d diagnostics.
# Part 2: the torch.compile / CUDA-graph settings (compilation dominates; run it in a second call
#         with PART=2 if part 1 used up the first).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PART=${PART:-all}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
COMMON=(--device cuda --preset autopet --shape 400 400 326 --no-crop --rounds 3)
COMPILED=(compile compile-max-autotune cuda-graphs fp16-cl-benchmark-sw2-compile bf16-cl-benchmark-sw2-compile
          fp16-cl-benchmark-sw2-graphs fp16-cl-benchmark-sw4-overlap0.5-compile)
if [ "$PART" = all ] || [ "$PART" = 1 ]; then
  timeout 540 python benchmarks/bench_pass.py "${COMMON[@]}" --skip "${COMPILED[@]}" --diagnose \
    --json "$OUT/pass_segresnet.json" 2>&1 | grep -v Warning | tee "$OUT/pass_segresnet.txt"
fi
if [ "$PART" = all ] || [ "$PART" = 2 ]; then
  timeout 540 python benchmarks/bench_pass.py "${COMMON[@]}" --rounds 2 \
    --variants petclick-torch fp16-benchmark-sw2 "${COMPILED[@]}" \
    --json "$OUT/pass_segresnet_compiled.json" 2>&1 | grep -v Warning | tee "$OUT/pass_segresnet_compiled.txt"
fi
if [ "$PART" = 3 ]; then  # DiNTS and SwinUNETR by the same means (issue 20)
  for net in dints swinunetr; do
    timeout 280 python benchmarks/bench_pass.py "${COMMON[@]}" --rounds 2 --network "$net" \
      --variants stock petclick-torch bf16 channels-last cudnn-benchmark sw2 fp16-benchmark-sw2 bf16-cl-benchmark \
      --json "$OUT/pass_$net.json" 2>&1 | grep -v Warning | tee "$OUT/pass_$net.txt"
  done
fi
