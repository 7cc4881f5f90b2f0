"""AttentionFlash / AttentionFlashCausal (com.kaio, layout "bshd", float16 in and out) vs ORT's
com.microsoft MultiHeadAttention and ONNX Attention (opset 23), the same Q, K, V bytes, on the CUDA EP;
AttentionTc / AttentionTcCausal (scores in shared memory) too where Sk is short enough for it
(TC_MAX_SK; the device's cap may be lower: a refusal is recorded as None with the error printed).

Q [B, Sq, H, D] (bshd) is byte-identical to MultiHeadAttention's query [B, Sq, H*D] and to
Attention-23's 3-D Q [B, Sq, H*D] (q_num_heads = kv_num_heads = H), so all three read the same
buffers reshaped (Attention-23 falls back to 4-D [B, H, S, D] inputs, transposed once on the host,
if ORT refuses the 3-D form). Causal: unidirectional=1 / is_causal=1, only where Sq == Sk (the
decode rows, Sq = 1, see every key and run non-causal). An op whose session cannot be built or run
for a shape is recorded as None, with the error printed.

Usage: python bench/bench_attention.py [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import kaio_ort  # noqa: E402

# (B, Sq, Sk, H, D, causal)
SHAPES = [(b, s, s, h, d, causal) for b, s, h, d in ((4, 2048, 32, 128), (1, 8192, 32, 128), (8, 2048, 16, 64))
          for causal in (False, True)]
SHAPES += [(1, 1, 4096, 32, 128, False), (16, 1, 4096, 32, 128, False)]
SHAPES += [(4, s, s, 32, 128, causal) for s in (384, 1024) for causal in (False, True)]  # AttentionTc's range
TC_MAX_SK = 3072  # AttentionTc is tried up to here (H100: 3008 keys at D = 128; A100: 1984)
F16 = TensorProto.FLOAT16


def _model(node, ins, outs, opsets, ir_version):
    g = helper.make_graph([node], node.op_type, ins, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], ir_version=ir_version)


def kaio_model(b, sq, sk, h, d, causal, elem=F16, family="Flash"):
    op = f"Attention{family}" + ("Causal" if causal else "")
    node = helper.make_node(op, ["Q", "K", "V"], ["O"], domain=kaio_ort.DOMAIN, layout="bshd",
                            out_dtype=elem)
    ins = [helper.make_tensor_value_info(n, elem, [b, s, h, d]) for n, s in (("Q", sq), ("K", sk), ("V", sk))]
    outs = [helper.make_tensor_value_info("O", elem, [b, sq, h, d])]
    return _model(node, ins, outs, [("", 17), (kaio_ort.DOMAIN, kaio_ort.OPSET_VERSION)], 8)


def mha_model(b, sq, sk, h, d, causal, elem=F16):
    """com.microsoft MultiHeadAttention with separate query / key / value [B, S, H*D]."""
    node = helper.make_node("MultiHeadAttention", ["query", "key", "value"], ["output"], domain="com.microsoft",
                            num_heads=h, unidirectional=int(causal))
    ins = [helper.make_tensor_value_info(n, elem, [b, s, h * d]) for n, s in (("query", sq), ("key", sk),
                                                                              ("value", sk))]
    outs = [helper.make_tensor_value_info("output", elem, [b, sq, h * d])]
    return _model(node, ins, outs, [("", 17), ("com.microsoft", 1)], 8)


def attn23_model(b, sq, sk, h, d, causal, form="3d", elem=F16):
    """ONNX Attention (opset 23): 3-D [B, S, H*D] with q_num_heads / kv_num_heads, or 4-D [B, H, S, D]."""
    attrs = {"is_causal": int(causal)}
    if form == "3d":
        attrs |= {"q_num_heads": h, "kv_num_heads": h}
        shape = lambda s: [b, s, h * d]  # noqa: E731
    else:
        shape = lambda s: [b, h, s, d]  # noqa: E731
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], **attrs)
    ins = [helper.make_tensor_value_info(n, elem, shape(s)) for n, s in (("Q", sq), ("K", sk), ("V", sk))]
    outs = [helper.make_tensor_value_info("Y", elem, shape(sq))]
    return _model(node, ins, outs, [("", 23)], 11)


def ort_inputs(kind: str, qkv: list[np.ndarray]) -> list[np.ndarray]:
    """The bshd Q, K, V as the op `kind` takes them (views where the bytes are the same)."""
    if kind == "kaio":
        return qkv
    if kind == "attn23_4d":
        return [np.ascontiguousarray(x.transpose(0, 2, 1, 3)) for x in qkv]
    return [x.reshape(x.shape[0], x.shape[1], -1) for x in qkv]  # mha, attn23_3d


def as_bshd(kind: str, y: np.ndarray, b, sq, h, d) -> np.ndarray:
    return y.transpose(0, 2, 1, 3) if kind == "attn23_4d" else y.reshape(b, sq, h, d)


def time_op(kind: str, model, input_sets, iters: int):
    """(device times, first set's output) or (None, None) when ORT refuses or fails the op."""
    try:
        sess = harness.cuda_session(model, register=(kind == "kaio"))
        binds = harness.bindings(sess, [ort_inputs(kind, s) for s in input_sets])
        times = harness.device_times_us(sess, binds, iters=iters)
        sess.run_with_iobinding(binds[0])
        return times, binds[0].copy_outputs_to_cpu()[0]
    except Exception as e:  # noqa: BLE001: any failure of ORT's op for this shape is a result to record
        print(f"  {kind}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        return None, None


def max_diff(a, b):
    if a is None or b is None:
        return None
    return float(f"{np.max(np.abs(a.astype(np.float32) - b.astype(np.float32))):.3g}")


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--decode", action="store_true", help="only the decode shapes (Sq = 1), their own result file")
    decode = ap.parse_args().decode
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    rows = []
    for b, sq, sk, h, d, causal in [x for x in SHAPES if x[1] == 1] if decode else SHAPES:
        case = f"b{b} sq{sq} sk{sk} h{h} d{d}" + (" causal" if causal else "")
        print(case, flush=True)
        bytes_ = 2 * (2 * b * sq * h * d + 2 * b * sk * h * d)  # Q, O, K, V in float16
        flops = 4.0 * b * h * sq * sk * d / (2 if causal and sq == sk else 1)
        sets = harness.sets_for_cold_l2(bytes_, max_sets=4)
        input_sets = [[(rng.standard_normal((b, s, h, d), np.float32)).astype(np.float16) for s in (sq, sk, sk)]
                      for _ in range(sets)]
        kaio_t, kaio_y = time_op("kaio", kaio_model(b, sq, sk, h, d, causal), input_sets, iters)
        tc_t, tc_y = (time_op("kaio", kaio_model(b, sq, sk, h, d, causal, family="Tc"), input_sets, iters)
                      if sk <= TC_MAX_SK else (None, None))
        mha_t, mha_y = time_op("mha", mha_model(b, sq, sk, h, d, causal), input_sets, iters)
        form = "3d"
        attn_t, attn_y = time_op("attn23_3d", attn23_model(b, sq, sk, h, d, causal, "3d"), input_sets, iters)
        if attn_t is None:
            form = "4d"
            attn_t, attn_y = time_op("attn23_4d", attn23_model(b, sq, sk, h, d, causal, "4d"), input_sets, iters)
        ref = None if kaio_y is None else kaio_y.astype(np.float32)
        attn_us = None if attn_t is None else attn_t["median_us"]
        extra = {"attn23_us": None if attn_us is None else round(attn_us, 2),
                 "kaio_vs_attn23": round(attn_us / kaio_t["median_us"], 3) if attn_t and kaio_t else None,
                 "attn23_form": form if attn_t else None,
                 "mha_max_diff": max_diff(ref, None if mha_y is None else mha_y.reshape(b, sq, h, d)),
                 "attn23_max_diff": max_diff(ref, None if attn_y is None else as_bshd(f"attn23_{form}", attn_y,
                                                                                      b, sq, h, d)),
                 "tc_us": None if tc_t is None else round(tc_t["median_us"], 2),
                 "tc_vs_mha": round(mha_t["median_us"] / tc_t["median_us"], 3) if tc_t and mha_t else None,
                 "tc_max_diff": max_diff(ref, tc_y),
                 "sets": sets}
        rows.append(harness.Row(case, kaio_t, mha_t, flops, bytes_, extra))
        print(rows[-1].summary(), flush=True)
        del input_sets, kaio_y, tc_y, mha_y, attn_y, ref
    harness.write_results("attention_decode" if decode else "attention", rows,
                          "AttentionFlash[Causal] (bshd, f16) vs ORT MultiHeadAttention and ONNX Attention-23",
                          "ort = com.microsoft MultiHeadAttention (query/key/value [B, S, H*D], the same bytes as "
                          "bshd); attn23 = ONNX Attention opset 23 (3-D [B, S, H*D] with q/kv_num_heads, or 4-D "
                          "[B, H, S, D] where ORT refuses 3-D: attn23_form); tc = AttentionTc[Causal] (same "
                          "inputs, Sk <= TC_MAX_SK and the device's cap); *_max_diff = max |O - kaio's O|. "
                          "FLOPs = 4*B*H*Sq*Sk*D (halved when causal); bytes = Q + K + V + O in float16. "
                          "Empty: ORT could not build or run that op for the shape.")


if __name__ == "__main__":
    main()
