"""MatmulInt4 (com.kaio, W4A16; --bits 4, the default) or MatmulInt8 W8A16 (--bits 8) vs ORT
com.microsoft MatMulNBits (bits 4 / 8, block 128), float16 in and out, the same weights
(kaio_ort.packing.to_matmulnbits), weights cold in L2, on the CUDA EP.

Usage: python bench/bench_quant_matmul.py [--quick] [--bits 4|8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from kaio_ort.packing import to_matmulnbits  # noqa: E402
from kaio_ort.reference import quantize_int8  # noqa: E402

GROUP = 128
SHAPES = [(m, n, k) for m in (1, 4, 16, 128) for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))]
SHAPES += [(2048, 4096, 4096)]


def model(op: str, bits: int, m: int, n: int, k: int):
    f16 = TensorProto.FLOAT16
    if op == "kaio" and bits == 4:
        node = helper.make_node("MatmulInt4", ["A", "B", "S"], ["Y"], domain="com.kaio", group_size=GROUP,
                                out_dtype=f16)
        ins = [helper.make_tensor_value_info("A", f16, [m, k]),
               helper.make_tensor_value_info("B", TensorProto.UINT32, [n, k // 8]),
               helper.make_tensor_value_info("S", f16, [k // GROUP, n])]
    elif op == "kaio":
        node = helper.make_node("MatmulInt8", ["A", "B", "S"], ["Y"], domain="com.kaio", group_size=GROUP,
                                out_dtype=f16)
        ins = [helper.make_tensor_value_info("A", f16, [m, k]),
               helper.make_tensor_value_info("B", TensorProto.INT8, [k, n]),
               helper.make_tensor_value_info("S", f16, [k // GROUP, n])]
    else:
        node = helper.make_node("MatMulNBits", ["A", "B", "S"], ["Y"], domain="com.microsoft", K=k, N=n, bits=bits,
                                block_size=GROUP)
        ins = [helper.make_tensor_value_info("A", f16, [m, k]),
               helper.make_tensor_value_info("B", TensorProto.UINT8, [n, k // GROUP, GROUP * bits // 8]),
               helper.make_tensor_value_info("S", f16, [n * (k // GROUP)])]
    g = helper.make_graph([node], op, ins, [helper.make_tensor_value_info("Y", f16, [m, n])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1),
                                               helper.make_opsetid("com.microsoft", 1)], ir_version=8)


def weights(rng, bits: int, n: int, k: int):
    """(kaio inputs after A, MatMulNBits inputs after A) of one random weight set."""
    if bits == 4:
        b = rng.integers(0, 2**32, size=(n, k // 8), dtype=np.uint32)
        s = (rng.uniform(0.5, 1.5, (k // GROUP, n)) / np.sqrt(k) / 4).astype(np.float16)
    else:
        b, s, _ = quantize_int8(rng.standard_normal((k, n), np.float32), GROUP)
        s = s.astype(np.float16)
    w = to_matmulnbits(b, s, None, group_size=GROUP, bits=bits)
    return [b, s], [w.B, w.scales]


def input_sets(rng, bits: int, m: int, n: int, k: int, sets: int) -> dict:
    """op ("kaio", "ort") -> list of input lists; set i of both holds the same A and the same weights."""
    result = {"kaio": [], "ort": []}
    for _ in range(sets):
        a = (rng.standard_normal((m, k), np.float32) * 0.5).astype(np.float16)
        kw, ow = weights(rng, bits, n, k)
        result["kaio"].append([a, *kw])
        result["ort"].append([a, *ow])
    return result


def main() -> None:
    iters = harness.iterations()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bits", type=int, choices=(4, 8), default=4)
    bits = ap.parse_args().bits
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in SHAPES:
        bytes_ = n * k * bits // 8 + 2 * (k // GROUP) * n + 2 * m * k + 2 * m * n
        sets = harness.sets_for_cold_l2(bytes_, max_sets=16)
        per_op = input_sets(rng, bits, m, n, k, sets)
        times = {}
        for op in ("kaio", "ort"):
            sess = harness.cuda_session(model(op, bits, m, n, k), register=(op == "kaio"))
            times[op] = harness.device_times_us(sess, harness.bindings(sess, per_op[op]), iters=iters)
        rows.append(harness.Row(f"{m}x{n}x{k}", times["kaio"], times["ort"], 2.0 * m * n * k, bytes_,
                                {"weight_sets": sets}))
        print(rows[-1].summary(), flush=True)
    if bits == 4:
        harness.write_results("quant_matmul_int4", rows,
                              "MatmulInt4 (W4A16, group 128) vs ORT MatMulNBits (bits 4, block 128), f16",
                              "Both read the same weights (MatmulNBits' via kaio_ort.packing.to_matmulnbits) and "
                              "write float16 Y; shapes are M x N x K; bytes = N*K/2 + scales + A + Y.")
    else:
        harness.write_results("quant_matmul_int8", rows,
                              "MatmulInt8 W8A16 (group 128) vs ORT MatMulNBits (bits 8, block 128), f16",
                              "Both read the same weights (MatmulNBits' via kaio_ort.packing.to_matmulnbits, "
                              "symmetric: its default zero point 128) and write float16 Y; shapes are M x N x K; "
                              "bytes = N*K + scales + A + Y.")


if __name__ == "__main__":
    main()
