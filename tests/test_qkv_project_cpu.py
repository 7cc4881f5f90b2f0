"""QkvProjectInt8 and QkvProjectInt4 on the CPU EP against the float64 reference, and their validation."""

import numpy as np
import pytest
from op_harness import VALIDATION_PROVIDERS, error_pattern, BF16, assert_close, randn, rng, run_op

from kaio_ort.reference import qkv_project_int4, qkv_project_int8, quantize_int4, quantize_int8

# Outputs are in X's type: the exact result rounded once.
TOL = {np.float16: 1e-3, BF16: 8e-3}
DTYPES = [np.float16, BF16]

# (X shape, (Nq, Nk, Nv)): GQA (Nq != Nk == Nv), equal N, N = 1 and odd N, M = 1, batch dims,
# empty M, K = 0 (zeros plus bias). K % 128 == 0 so every INT4 group size applies.
SHAPES = [
    ((1, 128), (16, 8, 8)),
    ((3, 128), (8, 8, 8)),
    ((5, 256), (7, 1, 1)),
    ((2, 3, 4, 128), (12, 4, 4)),
    ((0, 128), (4, 2, 2)),
    ((3, 0), (4, 2, 2)),
]


def _biases(g, ns, dtype, with_bias):
    return [randn(g, (n,), dtype) for n in ns] if with_bias else [None] * 3


@pytest.mark.parametrize("x_shape,ns", SHAPES)
@pytest.mark.parametrize("scale_form", ["scalar", "one", "channel"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_qkv_project_int8(x_shape, ns, scale_form, with_bias, dtype):
    g = rng()
    k = x_shape[-1]
    x = randn(g, x_shape, dtype)
    ws, ss = [], []
    for n in ns:
        w, s, _ = quantize_int8(g.standard_normal((k, n)))
        s = {"scalar": np.array(s.max(), np.float32), "one": np.array([s.max()], np.float32),
             "channel": s.reshape(n).astype(np.float32)}[scale_form]
        ws.append(w)
        ss.append(s)
    bs = _biases(g, ns, dtype, with_bias)
    outs = run_op("QkvProjectInt8", [x, *ws, *ss, *bs], {}, [dtype] * 3)
    refs = qkv_project_int8(x, *ws, *ss, *bs)
    for name, y, ref, n in zip("QKV", outs, refs, ns):
        assert y.shape == ref.shape == x_shape[:-1] + (n,)
        assert_close(y, ref, TOL[dtype], f"QkvProjectInt8 {name}")


@pytest.mark.parametrize("x_shape,ns", SHAPES)
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_qkv_project_int4(x_shape, ns, group_size, with_bias, dtype):
    g = rng()
    k = x_shape[-1]
    x = randn(g, x_shape, dtype)
    ws, ss = [], []
    for n in ns:
        w, s, _ = quantize_int4(g.standard_normal((k, n)), group_size)
        ws.append(w)
        ss.append(s.astype(dtype))
    bs = _biases(g, ns, dtype, with_bias)
    attrs = {} if group_size == 128 else {"group_size": group_size}
    outs = run_op("QkvProjectInt4", [x, *ws, *ss, *bs], attrs, [dtype] * 3)
    refs = qkv_project_int4(x, *ws, *ss, *bs, group_size=group_size)
    for name, y, ref, n in zip("QKV", outs, refs, ns):
        assert y.shape == ref.shape == x_shape[:-1] + (n,)
        assert_close(y, ref, TOL[dtype], f"QkvProjectInt4 {name}")


# ---- Validation: one row per rule: (id, op, inputs, attrs, input_shapes, input name, #, rule).
F16 = np.float16
NS = (16, 8, 8)


def _int8_inputs(k=64, dtype=F16, bias=True):
    return ([np.zeros((4, k), dtype)] + [np.zeros((k, n), np.int8) for n in NS] +
            [np.ones((1,), np.float32)] * 3 + ([np.zeros((n,), dtype) for n in NS] if bias else []))


def _int4_inputs(k=128, groups=1, dtype=F16, bias=True):
    return ([np.zeros((4, k), dtype)] + [np.zeros((n, k // 8), np.uint32) for n in NS] +
            [np.ones((groups, n), dtype) for n in NS] + ([np.zeros((n,), dtype) for n in NS] if bias else []))


def _with(inputs, i, x):
    inputs = list(inputs)
    inputs[i] = x
    return inputs


I8, I4 = _int8_inputs(), _int4_inputs()
Q8, Q4 = "QkvProjectInt8", "QkvProjectInt4"
VALIDATION = [
    # shared rules (X, biases), checked on both ops
    *[row for op, base in ((Q8, I8), (Q4, I4)) for row in [
        (f"{op}-X-dtype", op, _with(base, 0, base[0].astype(np.float32)), {}, None,
         "X", 0, "element type must be float16, bfloat16, got float"),
        (f"{op}-X-rank", op, _with(base, 0, base[0][0]), {}, None,
         "X", 0, "rank must be at least 2 ([..., M, K]), got shape ["),
        (f"{op}-bias-only-q", op, base[:8], {}, None,
         "bk", 8, "is missing: biases must be given all three (bq, bk, bv) or none"),
        (f"{op}-bias-no-v", op, base[:9], {}, None,
         "bv", 9, "is missing: biases must be given all three (bq, bk, bv) or none"),
        (f"{op}-bias-dtype", op, _with(base, 8, np.zeros((8,), BF16)), {}, None,
         "bk", 8, "element type must be X's type (float16), got bfloat16"),
        (f"{op}-bias-float", op, _with(base, 9, np.zeros((8,), np.float32)), {}, None,
         "bv", 9, "element type must be float16, bfloat16, got float"),
        (f"{op}-bias-shape", op, _with(base, 7, np.zeros((8,), F16)), {}, None,
         "bq", 7, "shape must be [N] = [16] (Wq's output columns), got [8]"),
        (f"{op}-bias-rank", op, _with(base, 9, np.zeros((1, 8), F16)), {}, None,
         "bv", 9, "shape must be [N] = [8] (Wv's output columns), got [1, 8]"),
    ]],
    # QkvProjectInt8
    ("i8-W-dtype", Q8, _with(I8, 2, np.zeros((64, 8), np.uint8)), {}, None,
     None, None, r"Type 'tensor\(uint8\)' of input parameter \(in2\) of operator \(QkvProjectInt8\)"),
    ("i8-Wq-K", Q8, _with(I8, 1, np.zeros((63, 16), np.int8)), {}, None,
     "Wq", 1, "shape must be [K, N] = [64, N], got [63, 16]"),
    ("i8-Wv-rank", Q8, _with(I8, 3, np.zeros((64,), np.int8)), {}, None,
     "Wv", 3, "shape must be [K, N] = [64, N], got [64]"),
    ("i8-s-dtype", Q8, _with(I8, 5, np.ones((1,), F16)), {}, None,
     None, None, r"Type 'tensor\(float16\)' of input parameter \(in5\) of operator \(QkvProjectInt8\)"),
    ("i8-s-shape", Q8, _with(I8, 5, np.ones((16,), np.float32)), {}, None,
     "sk", 5, "must hold one element (shape [] or [1]) or one per output column (shape [N] = [8]), got shape [16]"),
    ("i8-s-2d", Q8, _with(I8, 4, np.ones((1, 16), np.float32)), {}, None,
     "sq", 4, "must hold one element (shape [] or [1]) or one per output column (shape [N] = [16]), got shape [1, 16]"),
    ("i8-runtime-Wk", Q8, _with(I8, 2, np.zeros((63, 8), np.int8)), {}, [None] * 10,
     "Wk", 2, "shape must be [K, N] = [64, N], got [63, 8]"),
    # QkvProjectInt4
    ("i4-W-dtype", Q4, _with(I4, 1, np.zeros((16, 16), np.int32)), {}, None,
     None, None, r"Type 'tensor\(int32\)' of input parameter \(in1\) of operator \(QkvProjectInt4\)"),
    ("i4-K-group", Q4, _int4_inputs(k=64), {}, None,
     "X", 0, "K (64) must be a multiple of group_size (128)"),
    ("i4-K-group-32", Q4, _int4_inputs(k=48, groups=1), {"group_size": 32}, None,
     "X", 0, "K (48) must be a multiple of group_size (32)"),
    ("i4-Wk-shape", Q4, _with(I4, 2, np.zeros((8, 15), np.uint32)), {}, None,
     "Wk", 2, "shape must be [N, K/8] = [N, 16] (8 INT4 values per word, K = 128), got [8, 15]"),
    ("i4-s-dtype", Q4, _with(I4, 6, np.ones((1, 8), np.float32)), {}, None,
     "sv", 6, "element type must be float16, bfloat16, got float"),
    ("i4-s-dtype-bf16", Q4, _with(I4, 4, np.ones((1, 16), BF16)), {}, None,
     "sq", 4, "element type must be X's type (float16), got bfloat16"),
    ("i4-s-groups", Q4, _with(I4, 5, np.ones((2, 8), F16)), {}, None,
     "sk", 5, "shape must be [K/group_size, N] = [1, 8], got [2, 8]"),
    ("i4-s-N", Q4, _with(I4, 4, np.ones((1, 8), F16)), {}, None,
     "sq", 4, "shape must be [K/group_size, N] = [1, 16], got [1, 8]"),
    ("i4-s-groups-attr", Q4, I4, {"group_size": 64}, None,
     "sq", 4, "shape must be [K/group_size, N] = [2, 16], got [1, 16]"),
    ("i4-group-size", Q4, I4, {"group_size": 256}, None,
     None, None, "attribute 'group_size': must be 32, 64 or 128, got 256"),
    ("i4-runtime-sv", Q4, _with(I4, 6, np.ones((2, 8), F16)), {}, [None] * 10,
     "sv", 6, "shape must be [K/group_size, N] = [1, 8], got [2, 8]"),
]


@pytest.mark.parametrize("case", VALIDATION, ids=[c[0] for c in VALIDATION])
@pytest.mark.parametrize("provider", VALIDATION_PROVIDERS)
def test_validation(case, provider):
    _, op, inputs, attrs, input_shapes, name, index, rule = case
    # Outputs declared in X's type, as the op types them, so the rule itself is what fails (when
    # the session is created, or when the kernel runs), not ORT's output type check.
    out_t = inputs[0].dtype
    with pytest.raises(Exception, match=error_pattern(op, name, index, rule)):
        run_op(op, inputs, attrs, [out_t] * 3, provider=provider, input_shapes=input_shapes)
