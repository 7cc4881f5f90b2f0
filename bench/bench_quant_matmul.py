"""MatmulInt4 (com.kaio, W4A16; --bits 4, the default) or MatmulInt8 W8A16 (--bits 8) vs ORT
com.microsoft MatMulNBits (bits 4 / 8, block 128), float16 in and out, the same weights
(kaio_ort.packing.to_matmulnbits), weights cold in L2, on the CUDA EP.
--w8a8: MatmulInt8 W8A8 (int8 A and B, one f32 scale, float16 Y) vs ORT's MatMulInteger (int8 x
int8 -> int32, where the CUDA EP takes it; else its column is empty), with our MatmulTcAsync f16
(float16 A and B, float16 Y) on the same shapes beside them (extra columns f16_us, vs_f16 = f16 time
/ W8A8 time: > 1, W8A8 faster).

Usage: python bench/bench_quant_matmul.py [--quick] [--bits 4|8] [--w8a8]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_matmul_tc  # noqa: E402
import harness  # noqa: E402

from kaio_ort.packing import to_matmulnbits  # noqa: E402
from kaio_ort.reference import quantize_int8  # noqa: E402

GROUP = 128
SHAPES = [(m, n, k) for m in (1, 4, 16, 128) for n, k in ((4096, 4096), (14336, 4096), (4096, 14336))]
SHAPES += [(32, 4096, 4096), (64, 4096, 4096), (2048, 4096, 4096)]


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


W8A8_SHAPES = [(m, n, k) for m in (1, 16, 128) for n, k in ((4096, 4096), (14336, 4096))]
W8A8_SHAPES += [(2048, 4096, 4096), (4096, 4096, 4096), (8192, 8192, 8192)]


def w8a8_model(op: str, m: int, n: int, k: int):
    """op: "kaio" (MatmulInt8 W8A8, float16 Y), "ort" (MatMulInteger, int32 Y), "f16" (MatmulTcAsync)."""
    f16, i8 = TensorProto.FLOAT16, TensorProto.INT8
    if op == "kaio":
        node = helper.make_node("MatmulInt8", ["A", "B", "S"], ["Y"], domain="com.kaio", out_dtype=f16)
        ins = [helper.make_tensor_value_info("A", i8, [m, k]), helper.make_tensor_value_info("B", i8, [k, n]),
               helper.make_tensor_value_info("S", TensorProto.FLOAT, [])]
        y = f16
    elif op == "ort":
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        ins = [helper.make_tensor_value_info("A", i8, [m, k]), helper.make_tensor_value_info("B", i8, [k, n])]
        y = TensorProto.INT32
    else:
        return bench_matmul_tc.model("MatmulTcAsync", m, n, k, f16)
    g = helper.make_graph([node], op, ins, [helper.make_tensor_value_info("Y", y, [m, n])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1)],
                             ir_version=8)


def w8a8_main(iters: int) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in W8A8_SHAPES:
        bytes_ = n * k + m * k + 2 * m * n  # int8 B and A, float16 Y (the transpose's B^T round trip not counted)
        sets = harness.sets_for_cold_l2(bytes_, max_sets=16)
        ins = {"kaio": [], "ort": [], "f16": []}
        for _ in range(sets):
            a = rng.integers(-128, 128, (m, k)).astype(np.int8)
            b = rng.integers(-128, 128, (k, n)).astype(np.int8)
            ins["kaio"].append([a, b, np.array(1.0 / (128 * 128 * np.sqrt(k)), np.float32)])
            ins["ort"].append([a, b])
            ins["f16"].append([(a / 128).astype(np.float16), (b / 128).astype(np.float16)])
        times = {}
        for op in ("kaio", "ort", "f16"):
            try:
                sess = harness.cuda_session(w8a8_model(op, m, n, k), register=(op != "ort"))
                times[op] = harness.device_times_us(sess, harness.bindings(sess, ins[op]), iters=iters)
            except Exception as e:  # MatMulInteger not on this build's CUDA EP (CPU fallback is disabled)
                print(f"{op} {m}x{n}x{k}: {str(e).splitlines()[0][:200]}", flush=True)
                times[op] = None
        extra = {"weight_sets": sets}
        f16 = times["f16"]["median_us"] if times["f16"] else None
        w8 = times["kaio"]["median_us"] if times["kaio"] else None
        extra["f16_us"] = None if f16 is None else round(f16, 2)
        extra["vs_f16"] = round(f16 / w8, 3) if f16 and w8 else None
        rows.append(harness.Row(f"{m}x{n}x{k}", times["kaio"], times["ort"], 2.0 * m * n * k, bytes_, extra))
        print(rows[-1].summary(), flush=True)
    harness.write_results("quant_matmul_w8a8", rows,
                          "MatmulInt8 W8A8 vs ORT MatMulInteger (int8 x int8 -> int32), with MatmulTcAsync f16",
                          "The same int8 A and B for both (MatMulInteger writes int32 Y, W8A8 float16 Y scaled "
                          "once); f16_us: MatmulTcAsync on A/128 and B/128 in float16; vs_f16 = f16_us / kaio_us. "
                          "Shapes are M x N x K; bytes = N*K + M*K + 2*M*N; kaio_tflops counts int8 ops (TOP/s).")


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
    ap.add_argument("--w8a8", action="store_true", help="MatmulInt8 W8A8 vs MatMulInteger and MatmulTcAsync f16")
    ap.add_argument("--old-decode", action="store_true", help="KAIO_INT4_DECODE=0: the previous MatmulInt4 decode kernels")
    ap.add_argument("--no-split", action="store_true",
                    help="KAIO_QUANT_WGMMA_SPLIT=0: no K slices on the Hopper GEMM (the mma.sync GEMM there)")
    ap.add_argument("--no-dequant-first", action="store_true",
                    help="KAIO_QUANT_DEQUANT_FIRST=0: the quantized Hopper GEMM at every M (no dequantised copy first)")
    ap.add_argument("--shapes", default="", help="MxNxK,... (or MxNxK+... where commas separate arguments, as in the device runs) instead of SHAPES")
    args = ap.parse_args()
    if args.old_decode:
        os.environ["KAIO_INT4_DECODE"] = "0"  # read by the library at each MatmulInt4 launch
    if args.no_split:
        os.environ["KAIO_QUANT_WGMMA_SPLIT"] = "0"  # read by the library at each launch
    if args.no_dequant_first:
        os.environ["KAIO_QUANT_DEQUANT_FIRST"] = "0"
    if args.w8a8:
        w8a8_main(iters)
        return
    bits = args.bits
    rng = np.random.default_rng(0)
    rows = []
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.replace("+", ",").split(",")] if args.shapes else SHAPES
    for m, n, k in shapes:
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
    # Side-by-side switches (KAIO_INT4_DECODE=0: the previous decode kernels; KAIO_QUANT_WGMMA_SPLIT=0:
    # no K slices on the Hopper GEMM; KAIO_QUANT_DEQUANT_FIRST=0: no dequantised copy first) get their
    # own files.
    old = bits == 4 and os.environ.get("KAIO_INT4_DECODE") == "0"
    no_split = os.environ.get("KAIO_QUANT_WGMMA_SPLIT") == "0"
    no_first = os.environ.get("KAIO_QUANT_DEQUANT_FIRST") == "0"
    suffix = ("_old_decode" if old else "") + ("_no_split" if no_split else "") + ("_no_dequant_first" if no_first else "")
    switches = ((", KAIO_INT4_DECODE=0 (the previous decode kernels)" if old else "")
                + (", KAIO_QUANT_WGMMA_SPLIT=0 (no K slices on the Hopper GEMM)" if no_split else "")
                + (", KAIO_QUANT_DEQUANT_FIRST=0 (no dequantised copy first)" if no_first else ""))
    if bits == 4:
        harness.write_results("quant_matmul_int4" + suffix, rows,
                              "MatmulInt4 (W4A16, group 128) vs ORT MatMulNBits (bits 4, block 128), f16" + switches,
                              "Both read the same weights (MatmulNBits' via kaio_ort.packing.to_matmulnbits) and "
                              "write float16 Y; shapes are M x N x K; bytes = N*K/2 + scales + A + Y.")
    else:
        harness.write_results("quant_matmul_int8" + suffix, rows,
                              "MatmulInt8 W8A16 (group 128) vs ORT MatMulNBits (bits 8, block 128), f16" + switches,
                              "Both read the same weights (MatmulNBits' via kaio_ort.packing.to_matmulnbits, "
                              "symmetric: its default zero point 128) and write float16 Y; shapes are M x N x K; "
                              "bytes = N*K + scales + A + Y.")

if __name__ == "__main__":
    main()
