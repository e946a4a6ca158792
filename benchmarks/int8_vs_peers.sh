#!/usr/bin/env bash
# The README's int8 table: zoo Small and Large at 224 built three ways (integer int8, fake-quant
# int8, fp32) for this machine, then one interleaved 'mnv3compile bench' run with onnxruntime.
# Usage: bash benchmarks/int8_vs_peers.sh [OUT_DIR] [RUNS]   (about 10 minutes on 2 cores)
set -euo pipefail
out=${1:-build/bench}
runs=${2:-100}
for model in small large; do
  mnv3compile build --model "$model" --quant int8 -o "$out/$model-int8"
  mnv3compile build --model "$model" --quant int8 --int8-lowering fake -o "$out/$model-int8-fake"
  mnv3compile build --model "$model" --quant none -o "$out/$model-fp32"
done
for model in small large; do
  mnv3compile bench "$out/$model-int8" "$out/$model-int8-fake" "$out/$model-fp32" --vs-onnxruntime --runs "$runs"
done
