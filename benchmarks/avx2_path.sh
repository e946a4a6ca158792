#!/usr/bin/env bash
# The AVX2 code path (no AVX-512, no VNNI) measured on an AVX-512 machine: zoo Small and Large at 224
# built for the host preset with LLVM's znver3 (AMD Zen 3, AVX2 + FMA) instead of this CPU: int8
# (8-bit weights: pointwise convs on vpmaddwd pairs), int8 --weight-bits 7 (pointwise convs on
# vpmaddubsw) and fp32, then one interleaved 'mnv3compile bench' per model against onnxruntime
# (which still uses this CPU's AVX-512: the ratios are pessimistic for an AVX2 machine).
# On an AVX2-only machine templates_vs_peers.sh measures the same path natively.
# Usage: bash benchmarks/avx2_path.sh [OUT_DIR] [RUNS]   (about 8 minutes on 2 cores)
set -euo pipefail
out=${1:-build/avx2}
runs=${2:-200}
export MNV3COMPILE_HOST_CPU=${MNV3COMPILE_HOST_CPU:-znver3}
for model in small large; do
  mnv3compile build --model "$model" --quant int8 -o "$out/$model-int8"
  mnv3compile build --model "$model" --quant int8 --weight-bits 7 -o "$out/$model-int8-w7"
  mnv3compile build --model "$model" --quant none -o "$out/$model-fp32"
  mnv3compile bench "$out/$model-int8-w7" "$out/$model-int8" "$out/$model-fp32" --vs-onnxruntime --runs "$runs"
done
