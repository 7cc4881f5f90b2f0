"""MatmulTc and its variants (com.kaio) vs ORT MatMul (cuBLAS), float16 or bfloat16 in and out, on
the CUDA EP.

Usage: python bench/bench_matmul_tc.py [--op MatmulTc|MatmulTcAsync|MatmulTcBf16|MatmulTcBf16Async|all] [--quick]
--op all: the four ops and ORT MatMul in f16 and bf16 on square sizes, in one run; writes the
TFLOP/s-against-size chart (matmul_tc_all_<date>_<commit>.png) the README shows.
"""
from __future__ import annotations

import argparse
import json
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


KERNELS = {"MatmulTc": "mma.sync", "MatmulTcBf16": "mma.sync", "MatmulTcAsync": "TMA + wgmma on sm_90",
           "MatmulTcBf16Async": "TMA + wgmma on sm_90"}


def model(op: str, m: int, n: int, k: int, elem: int):
    """`op` = one of KERNELS (ours) or "ort" (ORT's MatMul); Y in the inputs' type."""
    if op == "ort":
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
    else:
        node = helper.make_node(op, ["A", "B"], ["Y"], domain="com.kaio", out_dtype=elem)
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("A", elem, [m, k]),
                                       helper.make_tensor_value_info("B", elem, [k, n])],
                          [helper.make_tensor_value_info("Y", elem, [m, n])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1)],
                             ir_version=8)


SQUARE_SIZES = [512, 1024, 2048, 4096, 8192]


def all_ops() -> None:
    """Every op and ORT MatMul of both types on square sizes, in one process; one chart."""
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    series = {name: [] for name in [*KERNELS, "ORT MatMul f16", "ORT MatMul bf16"]}
    rows = []
    for size in SQUARE_SIZES:
        bytes_ = 2 * 3 * size * size
        sets = harness.sets_for_cold_l2(bytes_)
        for bf16 in (False, True):
            elem = TensorProto.BFLOAT16 if bf16 else TensorProto.FLOAT16
            inputs = [[harness.as_elem(rng.standard_normal((size, size), np.float32), bf16) for _ in range(2)]
                      for _ in range(sets)]
            ops = [o for o in KERNELS if ("Bf16" in o) == bf16]
            sessions = {}
            for name in ["ort", *ops]:
                sess = harness.cuda_session(model(name, size, size, size, elem), register=(name != "ort"))
                sessions[name] = (sess, harness.bindings(sess, inputs))
            times = harness.interleaved_times_us(sessions, iters=iters)  # ORT and both ops taking turns
            ort_t = times["ort"]
            series["ORT MatMul bf16" if bf16 else "ORT MatMul f16"].append(2.0 * size ** 3 / ort_t["median_us"] / 1e6)
            for op in ops:
                t = times[op]
                series[op].append(2.0 * size ** 3 / t["median_us"] / 1e6)
                rows.append(harness.Row(f"{op} {size}^3", t, ort_t, 2.0 * size ** 3, bytes_, {"weight_sets": sets}))
                print(rows[-1].summary(), flush=True)
    md = harness.write_results("matmul_tc_all", rows, "MatmulTc, MatmulTcAsync, MatmulTcBf16, MatmulTcBf16Async vs "
                               "ORT MatMul (cuBLAS) of the same type, square sizes, one run",
                               "Each row: one op against ORT MatMul in its input type; Y in the inputs' type.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, tflops in series.items():
        ax.plot(SQUARE_SIZES, tflops, marker="o", ls="--" if name.startswith("ORT") else "-", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(SQUARE_SIZES, [str(x) for x in SQUARE_SIZES])
    ax.set_xlabel("M = N = K")
    ax.set_ylabel("TFLOP/s (device time)")
    meta = json.loads(md.with_suffix(".json").read_text())["meta"]
    ax.set_title(f"Dense matmul, {meta['device']}, {meta['commit'][:8]}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(md.with_name(md.stem + "_tflops.png"), dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", choices=[*sorted(KERNELS), "all"], default="MatmulTc")
    ap.add_argument("--shapes", default="", help="MxNxK,... (or MxNxK+... where commas separate arguments, as in the device runs) instead of SHAPES")
    args = ap.parse_known_args()[0]
    op = args.op
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.replace("+", ",").split(",")] if args.shapes else SHAPES
    if op == "all":
        all_ops()
        return
    bf16 = "Bf16" in op
    elem = TensorProto.BFLOAT16 if bf16 else TensorProto.FLOAT16
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in shapes:
        bytes_ = 2 * (m * k + k * n + m * n)
        sets = harness.sets_for_cold_l2(bytes_)
        input_sets = [[harness.as_elem(rng.standard_normal((m, k), np.float32), bf16),
                       harness.as_elem(rng.standard_normal((k, n), np.float32), bf16)] for _ in range(sets)]
        sessions = {}
        for who, name in (("kaio", op), ("ort", "ort")):
            sess = harness.cuda_session(model(name, m, n, k, elem), register=(who == "kaio"))
            sessions[who] = (sess, harness.bindings(sess, input_sets))
        times = harness.interleaved_times_us(sessions, iters=iters)
        rows.append(harness.Row(f"{m}x{n}x{k}", times["kaio"], times["ort"], 2.0 * m * n * k, bytes_,
                                {"weight_sets": sets}))
        print(rows[-1].summary(), flush=True)
    t = "bf16" if bf16 else "f16"
    file = "matmul_tc" + ("_bf16" if bf16 else "") + ("_async" if "Async" in op else "")
    harness.write_results(file, rows, f"{op} ({KERNELS[op]}, {t}) vs ORT MatMul (cuBLAS, {t})",
                          f"Both write {t} Y. On sm_80-89 the Async ops run the mma.sync kernel (no cp.async "
                          "pipeline yet).")


if __name__ == "__main__":
    main()
