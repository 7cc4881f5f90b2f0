#!/usr/bin/env bash
# On the GPU machine, after install.sh: benchmarks through ORT with two library builds, the one in
# .device/abl/old (e.g. an older commit's libkaio_ort_ops.so beside its COMMIT) and HEAD's in
# .device/lib (prepare.sh), alternated over two rounds so that a drift of the machine shows. The
# benchmark scripts are HEAD's (the Python API must match both builds). Each argument is one benchmark
# command line (default: the quantized K-slice and small dense shapes of 2026-11-28_epilogue_ab_h100.md).
# Usage: bash bench/device/ab_libs.sh ["bench/bench_quant_matmul.py --bits 8 --shapes 128x4096x4096" ...]
#        (carry .device/lib .device/abl; prints each benchmark's table rows)
. /tmp/ort-env.sh
export PYTHONPATH=$PWD/python:${PYTHONPATH:-}
benches=("$@")
if [[ ${#benches[@]} -eq 0 ]]; then
  benches=("bench/bench_quant_matmul.py --bits 8 --shapes 128x4096x4096,128x4096x14336"
           "bench/bench_quant_matmul.py --bits 4 --shapes 128x4096x4096"
           "bench/bench_matmul_tc.py --op MatmulTcAsync --shapes 16x4096x4096,7x2056x1032")
fi
for round in 1 2; do
  for lib in abl/old lib; do
    echo "== round $round lib $lib ($(cat .device/$lib/COMMIT))"
    export KAIO_ORT_LIBRARY=$PWD/.device/$lib/libkaio_ort_ops.so
    for b in "${benches[@]}"; do python3 $b 2>&1 | grep "^| [0-9]"; done
  done
done
