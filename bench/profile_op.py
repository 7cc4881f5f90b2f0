"""Runs one benchmark case a few times, for a profiler (ncu) wrapped around this process: the same
models and weights as bench_quant_matmul.py / bench_qkv_project.py, inputs on the GPU (IOBinding).

Usage: python bench/profile_op.py CASE [CASE ...]
  CASE = quant:<bits>:<op>:<M>x<N>x<K>        op: kaio or ort (MatmulInt4/Int8 vs MatMulNBits)
       | qkv:<bits>:<op>:<M>x<K>-><Nq>/<Nk>/<Nv>  op: kaio, kaio_three or ort
e.g. quant:4:kaio:1x14336x4096 qkv:4:kaio:1x4096->4096/4096/4096. bench/device/ncu_profile.sh runs it
under ncu on the device machine."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_qkv_project  # noqa: E402
import bench_quant_matmul  # noqa: E402
import harness  # noqa: E402

RUNS = 6  # ncu picks one launch of these (--launch-skip)


def case_model(case: str):
    """(model, input sets) of one CASE."""
    kind, bits, op, dims = case.split(":")
    bits, rng = int(bits), np.random.default_rng(0)
    if kind == "quant":
        m, n, k = map(int, dims.split("x"))
        return bench_quant_matmul.model(op, bits, m, n, k), bench_quant_matmul.input_sets(rng, bits, m, n, k, 3)[op]
    if kind == "qkv":
        left, right = dims.split("->")
        m, k = map(int, left.split("x"))
        ns = tuple(map(int, right.split("/")))
        return bench_qkv_project.model(op, bits, m, k, ns), bench_qkv_project.input_sets(rng, bits, m, k, ns, 3)[op]
    raise SystemExit(f"unknown case kind {kind!r}: quant or qkv")


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for case in sys.argv[1:]:
        model, sets = case_model(case)
        sess = harness.cuda_session(model, register="kaio" in case.split(":")[2])
        binds = harness.bindings(sess, sets)
        for i in range(RUNS):
            sess.run_with_iobinding(binds[i % len(binds)])
        print(f"{case}: {RUNS} runs")


if __name__ == "__main__":
    main()
