#!/usr/bin/env bash
# On the GPU machine, after install.sh: the same benchmark shapes through ORT with two library builds
# carried in .device/abl/old (e.g. an older commit's libkaio_ort_ops.so and its COMMIT) and .device/lib
# (HEAD's, prepare.sh), alternated over two rounds so a drift of the machine shows. The benchmark
# scripts are HEAD's (the Python API must match both builds).
# Usage: bash bench/device/ab_libs.sh   (carry .device/lib .device/abl; prints the table rows)
. /tmp/ort-env.sh
export PYTHONPATH=$PWD/python:${PYTHONPATH:-}
for round in 1 2; do
  for lib in abl/old lib; do
    echo "== round $round lib $lib ($(cat .device/$lib/COMMIT))"
    export KAIO_ORT_LIBRARY=$PWD/.device/$lib/libkaio_ort_ops.so
    python3 bench/bench_quant_matmul.py --bits 8 --shapes 128x4096x4096,128x4096x14336 2>&1 | grep "^| [0-9]"
    python3 bench/bench_quant_matmul.py --bits 4 --shapes 128x4096x4096 2>&1 | grep "^| [0-9]"
    python3 bench/bench_matmul_tc.py --op MatmulTcAsync --shapes 16x4096x4096,7x2056x1032 2>&1 | grep "^| [0-9]"
  done
done
