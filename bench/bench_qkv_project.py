"""QkvProjectInt4 (com.kaio, W4A16, one node for the three projections) vs three MatmulInt4 nodes and
vs three ORT com.microsoft MatMulNBits nodes (bits 4, block 128), float16 in and out, the same
symmetric weights (kaio_ort.packing.to_matmulnbits), no bias, weights cold in L2, on the CUDA EP.

Usage: python bench/bench_qkv_project.py [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from kaio_ort.packing import to_matmulnbits  # noqa: E402

GROUP = 128
# (K, (Nq, Nk, Nv)): Llama-3-8B's attention projections (32 query heads, 8 kv heads of 128) and a
# square one.
LAYERS = [(4096, (4096, 1024, 1024)), (4096, (4096, 4096, 4096))]
SHAPES = [(m, k, ns) for k, ns in LAYERS for m in (1, 4, 16, 128)]
OPS = ("kaio", "kaio_three", "ort")


def model(op: str, m: int, k: int, ns: tuple):
    """Inputs X, Wq, Wk, Wv, sq, sk, sv (in that order for every op); outputs Q, K, V float16."""
    f16 = TensorProto.FLOAT16
    ws, ss, outs = ["Wq", "Wk", "Wv"], ["sq", "sk", "sv"], ["Q", "K", "V"]
    x = helper.make_tensor_value_info("X", f16, [m, k])
    if op == "kaio":
        nodes = [helper.make_node("QkvProjectInt4", ["X", *ws, *ss], outs, domain="com.kaio", group_size=GROUP)]
    elif op == "kaio_three":
        nodes = [helper.make_node("MatmulInt4", ["X", w, s], [o], domain="com.kaio", group_size=GROUP, out_dtype=f16)
                 for w, s, o in zip(ws, ss, outs)]
    else:
        nodes = [helper.make_node("MatMulNBits", ["X", w, s], [o], domain="com.microsoft", K=k, N=n, bits=4,
                                  block_size=GROUP) for w, s, o, n in zip(ws, ss, outs, ns)]
    if op == "ort":
        w_in = [helper.make_tensor_value_info(w, TensorProto.UINT8, [n, k // GROUP, GROUP // 2])
                for w, n in zip(ws, ns)]
        s_in = [helper.make_tensor_value_info(s, f16, [n * (k // GROUP)]) for s, n in zip(ss, ns)]
    else:
        w_in = [helper.make_tensor_value_info(w, TensorProto.UINT32, [n, k // 8]) for w, n in zip(ws, ns)]
        s_in = [helper.make_tensor_value_info(s, f16, [k // GROUP, n]) for s, n in zip(ss, ns)]
    y = [helper.make_tensor_value_info(o, f16, [m, n]) for o, n in zip(outs, ns)]
    g = helper.make_graph(nodes, op, [x, *w_in, *s_in], y)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1),
                                               helper.make_opsetid("com.microsoft", 1)], ir_version=8)


def input_sets(rng, m: int, k: int, ns: tuple, sets: int) -> dict:
    """op -> list of input lists; every op's set i holds the same X and the same weights."""
    result = {op: [] for op in OPS}
    for _ in range(sets):
        a = (rng.standard_normal((m, k), np.float32) * 0.5).astype(np.float16)
        bs, ss, nbits = [], [], []
        for n in ns:
            b = rng.integers(0, 2**32, size=(n, k // 8), dtype=np.uint32)
            s = (rng.uniform(0.5, 1.5, (k // GROUP, n)) / np.sqrt(k) / 4).astype(np.float16)
            bs.append(b)
            ss.append(s)
            nbits.append(to_matmulnbits(b, s, None, group_size=GROUP, bits=4))
        result["kaio"].append([a, *bs, *ss])
        result["kaio_three"].append([a, *bs, *ss])
        result["ort"].append([a, *(w.B for w in nbits), *(w.scales for w in nbits)])
    return result


def main() -> None:
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    rows = []
    for m, k, ns in SHAPES:
        weight_bytes = sum(n * k // 2 + 2 * (k // GROUP) * n for n in ns)
        bytes_ = weight_bytes + 2 * m * k + 2 * m * sum(ns)
        sets = harness.sets_for_cold_l2(weight_bytes, max_sets=16)
        inputs = input_sets(rng, m, k, ns, sets)
        times = {}
        for op in OPS:
            sess = harness.cuda_session(model(op, m, k, ns), register=(op != "ort"))
            # device_times_us sums the kernels of one run: the three nodes' kernels for kaio_three / ort.
            times[op] = harness.device_times_us(sess, harness.bindings(sess, inputs[op]), iters=iters)
        three, fused = times["kaio_three"]["median_us"], times["kaio"]["median_us"]
        rows.append(harness.Row(f"{m}x{k}->{'/'.join(map(str, ns))}", times["kaio"], times["ort"],
                                2.0 * m * k * sum(ns), bytes_,
                                {"kaio_three_us": round(three, 2), "fused_vs_three": round(three / fused, 3),
                                 "weight_sets": sets}))
        print(rows[-1].summary(), flush=True)
    harness.write_results("qkv_project_int4", rows,
                          "QkvProjectInt4 (W4A16, group 128) vs three MatmulInt4 and three ORT MatMulNBits, f16",
                          "kaio = one QkvProjectInt4 node; ort = three com.microsoft MatMulNBits nodes (bits 4, "
                          "block 128) on the same X; kaio_three_us = three com.kaio MatmulInt4 nodes (out_dtype "
                          "float16) on the same X; fused_vs_three = kaio_three_us / kaio_us (> 1: the fused op is "
                          "faster). Times of three nodes are the sum of their kernels per run. All read the same "
                          "symmetric weights (MatMulNBits' via kaio_ort.packing.to_matmulnbits) and write float16 "
                          "Q, K, V; no bias. Cases are M x K -> Nq/Nk/Nv; FLOPs = 2*M*K*(Nq+Nk+Nv); bytes = "
                          "the three weights (N*K/2 each) + scales + X + Q, K, V; weight_sets input sets are "
                          "cycled so the weights are read from HBM.")


if __name__ == "__main__":
    main()
