"""One small valid node of each op the library has a CUDA kernel for: (inputs, attributes, output
types) from a random generator. The threads test runs some of them on both EPs; the rules over every
CUDA op (test_every_cuda_op_gpu.py) need one of each, so a new CUDA op gets its entry here."""
from __future__ import annotations

import numpy as np
from op_harness import BF16, randn

from kaio_ort.reference import attention, quantize_int4, quantize_int8


def _matmul_tc(dtype):
    def build(g):
        return [randn(g, (3, 37, 64), dtype), randn(g, (64, 24), dtype)], {}, [np.float32]
    return build


def _matmul_tc_grad(g):
    dy = randn(g, (3, 37, 24), np.float32)
    return [dy, randn(g, (3, 37, 64), np.float16), randn(g, (64, 24), np.float16)], {}, [np.float16, np.float16]


def _matmul_int4(g):
    a = randn(g, (5, 256), np.float16)
    b, s, z = quantize_int4(g.standard_normal((256, 72)), 64, symmetric=False)
    return [a, b, s.astype(np.float16), z.astype(np.float16)], {"group_size": 64}, [np.float32]


def _matmul_int8(g):
    a = randn(g, (3, 192), np.float16)
    b, s, _ = quantize_int8(g.standard_normal((192, 40)), 64)
    return [a, b, s.astype(np.float16)], {"group_size": 64}, [np.float32]


def _qkv_int4(g):
    x = randn(g, (2, 256), np.float16)
    ws, ss = [], []
    for n in (64, 16, 16):
        b, s, _ = quantize_int4(g.standard_normal((256, n)), 128)
        ws.append(b)
        ss.append(s.astype(np.float16))
    return [x, *ws, *ss], {}, [np.float16] * 3


def _qkv_int8(g):
    x = randn(g, (2, 256), np.float16)
    ws, ss = [], []
    for n in (64, 16, 16):
        w, s, _ = quantize_int8(g.standard_normal((256, n)))
        ws.append(w)
        ss.append(s.reshape(n).astype(np.float32))  # per channel
    return [x, *ws, *ss], {}, [np.float16] * 3


def _attention(g):
    q = randn(g, (2, 4, 33, 64), np.float16)
    k = randn(g, (2, 2, 47, 64), np.float16)
    v = randn(g, (2, 2, 47, 64), np.float16)
    return [q, k, v], {"out_dtype": 10}, [np.float16, np.float32]


def _attention_tc(g):
    q = randn(g, (2, 4, 33, 64), np.float16)
    k = randn(g, (2, 4, 47, 64), np.float16)
    v = randn(g, (2, 4, 47, 64), np.float16)
    return [q, k, v], {"out_dtype": 10}, [np.float16]


def _attention_grad(g):
    q = randn(g, (2, 4, 33, 64), np.float16)
    k = randn(g, (2, 2, 47, 64), np.float16)
    v = randn(g, (2, 2, 47, 64), np.float16)
    o, lse = attention(q, k, v, None, True)
    d_o = randn(g, o.shape, np.float16)
    return [d_o, q, k, v, o.astype(np.float16), lse.astype(np.float32)], {"causal": 1}, [np.float16] * 3


SMALL_NODES = {
    "MatmulTc": _matmul_tc(np.float16), "MatmulTcBf16": _matmul_tc(BF16),
    "MatmulTcAsync": _matmul_tc(np.float16), "MatmulTcBf16Async": _matmul_tc(BF16),
    "MatmulTcGrad": _matmul_tc_grad,
    "MatmulInt4": _matmul_int4, "MatmulInt8": _matmul_int8,
    "QkvProjectInt4": _qkv_int4, "QkvProjectInt8": _qkv_int8,
    "AttentionTc": _attention_tc, "AttentionTcCausal": _attention_tc,
    "AttentionFlash": _attention, "AttentionFlashCausal": _attention, "AttentionFlashGrad": _attention_grad,
}
