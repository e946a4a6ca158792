#!/usr/bin/env bash
# The AVX2 code path (no AVX-512, no VNNI) measured on an AVX-512 machine: zoo Small and Large at 224
# built for the host preset with LLVM's znver3 (AMD Zen 3, AVX2 + FMA) instead of this CPU: int8
# (8-bit weights: pointwise convs on vpmaddwd pairs), int8 --weight-bits 7 (pointwise convs on
# vpmaddubsw) and fp32, then one interleaved 'mnv3compile bench' per model against onnxruntime.
# The bench runs with hide_avx512.so preloaded (CPUID faulting hides AVX-512 and VNNI from the
# process), so onnxruntime takes its AVX2 kernels too: both sides on the ISA of an AVX2-only host.
# Without CPUID faulting (no "cpuid_fault" in /proc/cpuinfo) onnxruntime keeps AVX-512, and the
# script says so. On an AVX2-only machine templates_vs_peers.sh measures the same path natively.
# Usage: bash benchmarks/avx2_path.sh [OUT_DIR] [RUNS]   (about 8 minutes on 2 cores)
set -euo pipefail
out=${1:-build/avx2}
runs=${2:-200}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
preload=""
if grep -qw cpuid_fault /proc/cpuinfo; then
  gcc -O2 -shared -fPIC -o "$out/hide_avx512.so" "$here/hide_avx512.c" -ldl
  preload="$(cd "$out" && pwd)/hide_avx512.so"
else
  echo "note: this CPU has no CPUID faulting; onnxruntime will use AVX-512 where the CPU has it" >&2
fi
for model in small large; do
  MNV3COMPILE_HOST_CPU=znver3 mnv3compile build --model "$model" --quant int8 -o "$out/$model-int8"
  MNV3COMPILE_HOST_CPU=znver3 mnv3compile build --model "$model" --quant int8 --weight-bits 7 -o "$out/$model-int8-w7"
  MNV3COMPILE_HOST_CPU=znver3 mnv3compile build --model "$model" --quant none -o "$out/$model-fp32"
  LD_PRELOAD=$preload mnv3compile bench "$out/$model-int8-w7" "$out/$model-int8" "$out/$model-fp32" \
    --vs-onnxruntime --runs "$runs"
done
