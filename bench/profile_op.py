"""Runs one benchmark case a few times, for a profiler (ncu) wrapped around this process: the same
models and weights as bench_quant_matmul.py / bench_qkv_project.py, inputs on the GPU (IOBinding).

Usage: python bench/profile_op.py CASE [CASE ...]
  CASE = quant:<bits>:<op>:<M>x<N>x<K>        op: kaio or ort (MatmulInt4/Int8 vs MatMulNBits)
       | qkv:<bits>:<op>:<M>x<K>-><Nq>/<Nk>/<Nv>  op: kaio, kaio_three or ort
       | dense:<f16|bf16>:<op>:<M>x<N>x<K>     op: MatmulTc, MatmulTcAsync, ... or ort (MatMul)
       | attn:<causal 0|1>:<op>:<B>x<Sq>x<Sk>x<H>x<D>  op: kaio (AttentionFlash), mha or attn23_3d
e.g. quant:4:kaio:1x14336x4096 qkv:4:kaio:1x4096->4096/4096/4096 dense:f16:MatmulTcAsync:16x4096x4096
attn:0:kaio:1x1x4096x32x128. bench/device/ncu_profile.sh runs it under ncu on the device machine."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_attention  # noqa: E402
import bench_matmul_tc  # noqa: E402
import bench_qkv_project  # noqa: E402
import bench_quant_matmul  # noqa: E402
import harness  # noqa: E402
from onnx import TensorProto  # noqa: E402

RUNS = 6  # ncu picks one launch of these (--launch-skip)


def case_model(case: str):
    """(model, input sets) of one CASE."""
    kind, bits, op, dims = case.split(":")
    rng = np.random.default_rng(0)
    if kind in ("quant", "qkv"):
        bits = int(bits)
    if kind == "quant":
        m, n, k = map(int, dims.split("x"))
        return bench_quant_matmul.model(op, bits, m, n, k), bench_quant_matmul.input_sets(rng, bits, m, n, k, 3)[op]
    if kind == "qkv":
        left, right = dims.split("->")
        m, k = map(int, left.split("x"))
        ns = tuple(map(int, right.split("/")))
        return bench_qkv_project.model(op, bits, m, k, ns), bench_qkv_project.input_sets(rng, bits, m, k, ns, 3)[op]
    if kind == "dense":
        m, n, k = map(int, dims.split("x"))
        bf16 = bits == "bf16"
        elem = TensorProto.BFLOAT16 if bf16 else TensorProto.FLOAT16
        sets = [[harness.as_elem(rng.standard_normal(s).astype(np.float32), bf16) for s in ((m, k), (k, n))]
                for _ in range(3)]
        return bench_matmul_tc.model(op, m, n, k, elem), sets
    if kind == "attn":
        b, sq, sk, h, d = map(int, dims.split("x"))
        causal = bool(int(bits))
        models = {"kaio": bench_attention.kaio_model, "mha": bench_attention.mha_model,
                  "attn23_3d": bench_attention.attn23_model}
        qkv = [[rng.standard_normal((b, s, h, d)).astype(np.float16) for s in (sq, sk, sk)] for _ in range(3)]
        return models[op](b, sq, sk, h, d, causal), [bench_attention.ort_inputs(op, x) for x in qkv]
    raise SystemExit(f"unknown case kind {kind!r}: quant, qkv, dense or attn")


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for case in sys.argv[1:]:
        model, sets = case_model(case)
        op = case.split(":")[2]
        sess = harness.cuda_session(model, register="kaio" in op or op.startswith("Matmul"))
        binds = harness.bindings(sess, sets)
        for i in range(RUNS):
            sess.run_with_iobinding(binds[i % len(binds)])
        print(f"{case}: {RUNS} runs")


if __name__ == "__main__":
    main()
