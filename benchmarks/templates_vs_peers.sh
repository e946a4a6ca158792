#!/usr/bin/env bash
# The README's speed table: zoo Small and Large at 224 built for this machine with the kernel
# templates (int8 integer kernels and fp32) and, for comparison, with TVM's default schedules;
# one interleaved 'mnv3compile bench' run per model with onnxruntime; per-kernel profiles of Small.
# Usage: bash benchmarks/templates_vs_peers.sh [OUT_DIR] [RUNS]   (about 8 minutes on 2 cores)
set -euo pipefail
out=${1:-build/bench}
runs=${2:-200}
for model in small large; do
  mnv3compile build --model "$model" --quant int8 -o "$out/$model-int8"
  mnv3compile build --model "$model" --quant none -o "$out/$model-fp32"
  mnv3compile build --model "$model" --quant int8 --schedule default -o "$out/$model-int8-default"
done
for model in small large; do
  mnv3compile bench "$out/$model-int8" "$out/$model-fp32" "$out/$model-int8-default" --vs-onnxruntime --runs "$runs"
done
mnv3compile profile "$out/small-fp32" --png "$out/profile-small-fp32.png"
mnv3compile profile "$out/small-int8" --png "$out/profile-small-int8.png"
