"""MatmulTc (com.kaio, mma.sync) vs ORT MatMul (cuBLAS), float16 in and out, on the CUDA EP.

Usage: python bench/bench_matmul_tc.py [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

SHAPES = [  # (M, N, K): the anchors' shapes first
    (4096, 4096, 4096),
    (8192, 8192, 8192),
    (16, 4096, 4096),
    (1, 4096, 4096),
    (2048, 4096, 4096),
]


def model(op: str, m: int, n: int, k: int):
    if op == "kaio":
        node = helper.make_node("MatmulTc", ["A", "B"], ["Y"], domain="com.kaio", out_dtype=TensorProto.FLOAT16)
    else:
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("A", TensorProto.FLOAT16, [m, k]),
                                       helper.make_tensor_value_info("B", TensorProto.FLOAT16, [k, n])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, [m, n])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1)],
                             ir_version=8)


def main() -> None:
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in SHAPES:
        bytes_ = 2 * (m * k + k * n + m * n)
        sets = harness.sets_for_cold_l2(bytes_)
        input_sets = [[rng.standard_normal((m, k), np.float32).astype(np.float16),
                       rng.standard_normal((k, n), np.float32).astype(np.float16)] for _ in range(sets)]
        times = {}
        for op in ("kaio", "ort"):
            sess = harness.cuda_session(model(op, m, n, k), register=(op == "kaio"))
            times[op] = harness.device_times_us(sess, harness.bindings(sess, input_sets), iters=iters)
        rows.append(harness.Row(f"{m}x{n}x{k}", times["kaio"], times["ort"], 2.0 * m * n * k, bytes_,
                                {"weight_sets": sets}))
        print(rows[-1].summary(), flush=True)
    harness.write_results("matmul_tc", rows, "MatmulTc (mma.sync, f16) vs ORT MatMul (cuBLAS, f16)",
                          "Both write float16 Y. MatmulTc is the sync (no cp.async) variant; the pipelined "
                          "Async/wgmma variants are the dense-matmul issue's work.")


if __name__ == "__main__":
    main()
