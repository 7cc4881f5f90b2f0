"""MatmulTcGrad (com.kaio: dA and dB of Y = A·B in one node) vs the two cuBLAS GEMMs it replaces,
through ORT (com.microsoft FusedMatMul with transB / transA, so neither side materialises a
transpose), float16 or bfloat16 on the CUDA EP.

Shapes are a linear layer's backward over T tokens: A [T, K] (activations), B [K, N] (the weight),
dY [T, N]; dA = dY·Bᵀ [T, K], dB = Aᵀ·dY [K, N].

Usage: python bench/bench_matmul_tc_grad.py [--bf16] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

SHAPES = [  # (T, K, N)
    (4096, 4096, 4096),
    (4096, 4096, 14336),  # Llama-3-8B's MLP up projection
    (4096, 14336, 4096),  # and its down projection
    (2048, 4096, 4096),
]


def model(ours: bool, t: int, k: int, n: int, elem: int):
    """ours: one MatmulTcGrad node; else ORT's two FusedMatMul nodes. Outputs dA, dB."""
    if ours:
        nodes = [helper.make_node("MatmulTcGrad", ["dY", "A", "B"], ["dA", "dB"], domain="com.kaio")]
    else:
        nodes = [helper.make_node("FusedMatMul", ["dY", "B"], ["dA"], domain="com.microsoft", transB=1),
                 helper.make_node("FusedMatMul", ["A", "dY"], ["dB"], domain="com.microsoft", transA=1)]
    inputs = [helper.make_tensor_value_info("dY", elem, [t, n]), helper.make_tensor_value_info("A", elem, [t, k]),
              helper.make_tensor_value_info("B", elem, [k, n])]
    outputs = [helper.make_tensor_value_info("dA", elem, [t, k]), helper.make_tensor_value_info("dB", elem, [k, n])]
    g = helper.make_graph(nodes, "grad", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1),
                                               helper.make_opsetid("com.microsoft", 1)], ir_version=8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bf16", action="store_true")
    bf16 = ap.parse_known_args()[0].bf16
    elem = TensorProto.BFLOAT16 if bf16 else TensorProto.FLOAT16
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    rows = []
    for t, k, n in SHAPES:
        bytes_ = 2 * 2 * (t * n + t * k + k * n)  # inputs once, outputs once
        sets = harness.sets_for_cold_l2(bytes_)
        input_sets = [[harness.as_elem(rng.standard_normal(s, np.float32), bf16) for s in ((t, n), (t, k), (k, n))]
                      for _ in range(sets)]
        sessions = {}
        for who in ("kaio", "ort"):
            sess = harness.cuda_session(model(who == "kaio", t, k, n, elem), register=(who == "kaio"))
            sessions[who] = (sess, harness.bindings(sess, input_sets))
        times = harness.interleaved_times_us(sessions, iters=iters)
        rows.append(harness.Row(f"{t}x{k}x{n}", times["kaio"], times["ort"], 2 * 2.0 * t * k * n, bytes_,
                                {"weight_sets": sets}))
        print(rows[-1].summary(), flush=True)
    ty = "bf16" if bf16 else "f16"
    harness.write_results("matmul_tc_grad" + ("_bf16" if bf16 else ""), rows,
                          f"MatmulTcGrad ({ty}) vs ORT's two GEMMs (FusedMatMul transB / transA, cuBLAS)",
                          "Cases are T x K x N: A [T, K], B [K, N], dY [T, N]; FLOPs count both products. "
                          "Issue 3's target: kaio_vs_ort >= 0.8.")


if __name__ == "__main__":
    main()
