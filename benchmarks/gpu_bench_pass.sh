#!/usr/bin/env bash
# bench_pass.py on a lent GPU, in parts that each fit one device call (writes under ${OUT:-/tmp/out}):
#   bash benchmarks/gpu_bench_pass.sh            # part 1 (at most 8 min): every setting but
#                                                #   torch.compile, with the bf16 + channels_last_3d diagnostics
#   PART=2 bash benchmarks/gpu_bench_pass.sh     # torch.compile / CUDA graphs (compilation dominates)
#   PART=3 bash benchmarks/gpu_bench_pass.sh     # DiNTS and SwinUNETR by the same means
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PART=${PART:-1}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
COMMON=(--device cuda --preset autopet --shape 400 400 326 --no-crop --rounds 3)
COMPILED=(compile compile-max-autotune cuda-graphs fp16-cl-benchmark-sw2-compile bf16-cl-benchmark-sw2-compile
          fp16-cl-benchmark-sw2-graphs fp16-cl-benchmark-sw4-overlap0.5-compile)
if [ "$PART" = 1 ]; then
  timeout 480 python benchmarks/bench_pass.py "${COMMON[@]}" --skip "${COMPILED[@]}" --diagnose \
    --json "$OUT/pass_segresnet.json" 2>&1 | grep -v Warning | tee "$OUT/pass_segresnet.txt"
fi
if [ "$PART" = 2 ]; then
  timeout 480 python benchmarks/bench_pass.py "${COMMON[@]}" --rounds 2 \
    --variants petclick-torch fp16-benchmark-sw2 "${COMPILED[@]}" \
    --json "$OUT/pass_segresnet_compiled.json" 2>&1 | grep -v Warning | tee "$OUT/pass_segresnet_compiled.txt"
fi
if [ "$PART" = 3 ]; then
  for net in dints swinunetr; do
    timeout 230 python benchmarks/bench_pass.py "${COMMON[@]}" --rounds 2 --network "$net" \
      --variants stock petclick-torch bf16 channels-last cudnn-benchmark sw2 fp16-benchmark-sw2 bf16-cl-benchmark \
      --json "$OUT/pass_$net.json" 2>&1 | grep -v Warning | tee "$OUT/pass_$net.txt"
  done
fi
