"""QkvProjectInt4 / QkvProjectInt8 (com.kaio, one node for the three projections) vs three single
com.kaio projections and vs three ORT com.microsoft MatMulNBits nodes, float16 in and out, the same
symmetric weights (kaio_ort.packing.to_matmulnbits), no bias, weights cold in L2, on the CUDA EP.
  --bits 4 (default): QkvProjectInt4 (W4A16, group 128) vs three MatmulInt4 vs MatMulNBits bits 4.
  --bits 8: QkvProjectInt8 (int8 weights, per-channel float32 scales) vs three MatmulInt8 W8A16
            (per channel: group_size 0, scales in X's type) vs MatMulNBits bits 8, block 128 with the
            per-channel scale in every block (the same dequantised weights).

Usage: python bench/bench_qkv_project.py [--quick] [--bits 4|8] [--dry-run]
(--dry-run: builds every case's models and one input set and checks them with onnx, no GPU needed.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, checker, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from kaio_ort.packing import to_matmulnbits  # noqa: E402

GROUP = 128
# (K, (Nq, Nk, Nv)): Llama-3-8B's attention projections (32 query heads, 8 kv heads of 128) and a
# square one.
LAYERS = [(4096, (4096, 1024, 1024)), (4096, (4096, 4096, 4096))]
SHAPES = [(m, k, ns) for k, ns in LAYERS for m in (1, 4, 16, 128)]
OPS = ("kaio", "kaio_three", "ort")


def model(op: str, bits: int, m: int, k: int, ns: tuple):
    """Inputs X, Wq, Wk, Wv, sq, sk, sv (in that order for every op); outputs Q, K, V float16."""
    f16 = TensorProto.FLOAT16
    ws, ss, outs = ["Wq", "Wk", "Wv"], ["sq", "sk", "sv"], ["Q", "K", "V"]
    x = helper.make_tensor_value_info("X", f16, [m, k])
    if op == "kaio":
        fused = "QkvProjectInt4" if bits == 4 else "QkvProjectInt8"
        attrs = {"group_size": GROUP} if bits == 4 else {}
        nodes = [helper.make_node(fused, ["X", *ws, *ss], outs, domain="com.kaio", **attrs)]
    elif op == "kaio_three":
        single, group = ("MatmulInt4", GROUP) if bits == 4 else ("MatmulInt8", 0)  # MatmulInt8: per channel
        nodes = [helper.make_node(single, ["X", w, s], [o], domain="com.kaio", group_size=group, out_dtype=f16)
                 for w, s, o in zip(ws, ss, outs)]
    else:
        nodes = [helper.make_node("MatMulNBits", ["X", w, s], [o], domain="com.microsoft", K=k, N=n, bits=bits,
                                  block_size=GROUP) for w, s, o, n in zip(ws, ss, outs, ns)]
    if op == "ort":
        w_in = [helper.make_tensor_value_info(w, TensorProto.UINT8, [n, k // GROUP, GROUP * bits // 8])
                for w, n in zip(ws, ns)]
        s_in = [helper.make_tensor_value_info(s, f16, [n * (k // GROUP)]) for s, n in zip(ss, ns)]
    elif bits == 4:
        w_in = [helper.make_tensor_value_info(w, TensorProto.UINT32, [n, k // 8]) for w, n in zip(ws, ns)]
        s_in = [helper.make_tensor_value_info(s, f16, [k // GROUP, n]) for s, n in zip(ss, ns)]
    else:
        w_in = [helper.make_tensor_value_info(w, TensorProto.INT8, [k, n]) for w, n in zip(ws, ns)]
        s_in = [helper.make_tensor_value_info(s, TensorProto.FLOAT, [n]) if op == "kaio" else
                helper.make_tensor_value_info(s, f16, [1, n]) for s, n in zip(ss, ns)]
    y = [helper.make_tensor_value_info(o, f16, [m, n]) for o, n in zip(outs, ns)]
    g = helper.make_graph(nodes, op, [x, *w_in, *s_in], y)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1),
                                               helper.make_opsetid("com.microsoft", 1)], ir_version=8)


def projection(rng, bits: int, k: int, n: int) -> tuple:
    """One projection's weights: (fused op's [W, s], single op's [W, s], MatMulNBits' [B, scales])."""
    if bits == 4:
        b = rng.integers(0, 2**32, size=(n, k // 8), dtype=np.uint32)
        s = (rng.uniform(0.5, 1.5, (k // GROUP, n)) / np.sqrt(k) / 4).astype(np.float16)
        w = to_matmulnbits(b, s, None, group_size=GROUP, bits=4)
        return [b, s], [b, s], [w.B, w.scales]
    # Codes in [-127, 127] (std ~73) and per-channel scales keeping the sums' std near 0.5.
    b = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    s = (rng.uniform(0.5, 1.5, n) / (73.0 * np.sqrt(k))).astype(np.float16)
    w = to_matmulnbits(b, np.repeat(s[None, :], k // GROUP, axis=0), None, group_size=GROUP, bits=8)
    return [b, s.astype(np.float32)], [b, s.reshape(1, n)], [w.B, w.scales]


def input_sets(rng, bits: int, m: int, k: int, ns: tuple, sets: int) -> dict:
    """op -> list of input lists; every op's set i holds the same X and the same weights."""
    result = {op: [] for op in OPS}
    for _ in range(sets):
        a = (rng.standard_normal((m, k), np.float32) * 0.5).astype(np.float16)
        per_op = {op: ([], []) for op in OPS}  # op -> (weights, scales)
        for n in ns:
            for op, (w, s) in zip(OPS, projection(rng, bits, k, n)):
                per_op[op][0].append(w)
                per_op[op][1].append(s)
        for op in OPS:
            result[op].append([a, *per_op[op][0], *per_op[op][1]])
    return result


def weight_bytes(bits: int, k: int, ns: tuple) -> int:
    """Bytes of the fused op's three weights and scales (INT4: group-128 f16 scales; INT8: f32 per channel)."""
    if bits == 4:
        return sum(n * k // 2 + 2 * (k // GROUP) * n for n in ns)
    return sum(n * k + 4 * n for n in ns)


def dry_run(bits: int) -> None:
    """Every case's three models checked by onnx and fed one input set of the declared shapes and types."""
    rng = np.random.default_rng(0)
    for m, k, ns in SHAPES:
        inputs = input_sets(rng, bits, m, k, ns, 1)
        for op in OPS:
            mdl = model(op, bits, m, k, ns)
            checker.check_model(mdl)
            for vi, x in zip(mdl.graph.input, inputs[op][0]):
                t = vi.type.tensor_type
                assert helper.tensor_dtype_to_np_dtype(t.elem_type) == x.dtype, (op, vi.name, x.dtype)
                assert [d.dim_value for d in t.shape.dim] == list(x.shape), (op, vi.name, x.shape)
        print(f"{m}x{k}->{'/'.join(map(str, ns))}: models and inputs consistent", flush=True)


def main() -> None:
    iters = harness.iterations()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bits", type=int, choices=(4, 8), default=4)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    bits = args.bits
    if args.dry_run:
        dry_run(bits)
        return
    fused_op, single_op = ("QkvProjectInt4", "MatmulInt4") if bits == 4 else ("QkvProjectInt8", "MatmulInt8")
    rng = np.random.default_rng(0)
    rows = []
    for m, k, ns in SHAPES:
        wbytes = weight_bytes(bits, k, ns)
        bytes_ = wbytes + 2 * m * k + 2 * m * sum(ns)
        sets = harness.sets_for_cold_l2(wbytes, max_sets=16)
        inputs = input_sets(rng, bits, m, k, ns, sets)
        times = {}
        for op in OPS:
            sess = harness.cuda_session(model(op, bits, m, k, ns), register=(op != "ort"))
            # device_times_us sums the kernels of one run: the three nodes' kernels for kaio_three / ort.
            times[op] = harness.device_times_us(sess, harness.bindings(sess, inputs[op]), iters=iters)
        three, fused = times["kaio_three"]["median_us"], times["kaio"]["median_us"]
        rows.append(harness.Row(f"{m}x{k}->{'/'.join(map(str, ns))}", times["kaio"], times["ort"],
                                2.0 * m * k * sum(ns), bytes_,
                                {"kaio_three_us": round(three, 2), "fused_vs_three": round(three / fused, 3),
                                 "weight_sets": sets}))
        print(rows[-1].summary(), flush=True)
    common = (f"kaio = one {fused_op} node; kaio_three_us = three com.kaio {single_op} nodes (out_dtype float16) "
              "on the same X; fused_vs_three = kaio_three_us / kaio_us (> 1: the fused op is faster). Times of "
              "three nodes are the sum of their kernels per run. All read the same symmetric weights "
              "(MatmulNBits' via kaio_ort.packing.to_matmulnbits) and write float16 Q, K, V; no bias. Cases are "
              "M x K -> Nq/Nk/Nv; FLOPs = 2*M*K*(Nq+Nk+Nv); ")
    if bits == 4:
        harness.write_results("qkv_project_int4", rows,
                              "QkvProjectInt4 (W4A16, group 128) vs three MatmulInt4 and three ORT MatMulNBits, f16",
                              "ort = three com.microsoft MatMulNBits nodes (bits 4, block 128) on the same X; " + common
                              + "bytes = the three weights (N*K/2 each) + scales + X + Q, K, V; weight_sets input "
                              "sets are cycled so the weights are read from HBM.")
    else:
        harness.write_results("qkv_project_int8", rows,
                              "QkvProjectInt8 (int8 weights, per-channel scales) vs three MatmulInt8 W8A16 and "
                              "three ORT MatMulNBits (bits 8), f16",
                              "ort = three com.microsoft MatMulNBits nodes (bits 8, block 128, every block's scale "
                              "the column's per-channel scale, default zero point 128: the same dequantised "
                              "weights) on the same X; the kaio ops' scales are per channel (QkvProjectInt8: "
                              "float32 [N], applied to the f32 sum; MatmulInt8: group_size 0, float16 [1, N]); "
                              + common + "bytes = the three weights (N*K each) + QkvProjectInt8's scales + X + Q, "
                              "K, V; weight_sets input sets are cycled so the weights are read from HBM.")


if __name__ == "__main__":
    main()
