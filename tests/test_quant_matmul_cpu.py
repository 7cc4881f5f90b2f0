"""MatmulInt4 and MatmulInt8 on the CPU EP against the float64 reference, and their validation."""

import numpy as np
import pytest
from op_harness import VALIDATION_PROVIDERS, error_pattern, BF16, assert_close, randn, rng, run_op

from kaio_ort.packing import pack_int4
from kaio_ort.reference import matmul_int4, matmul_int8, quantize_int4, quantize_int8

# The CPU kernel rounds the exact (float64) result once to the output type.
TOL = {np.float32: 1e-6, np.float16: 1e-3, BF16: 8e-3}
ONNX_TYPE = {np.float32: 1, np.float16: 10, BF16: 16}
DTYPES = [np.float16, BF16]

# (A shape, N): M = 1, N = 1, odd N, batch dims, empty M, K = 0 (zeros). K % 128 == 0 so every
# INT4 group size applies.
INT4_SHAPES = [
    ((1, 128), 8),
    ((3, 128), 1),
    ((5, 256), 7),
    ((2, 3, 4, 128), 13),
    ((4, 384), 33),
    ((0, 128), 5),
    ((3, 0), 4),
]


def _weights_int4(g, k, n, group_size, with_zp, dtype):
    b, scales, zp = quantize_int4(g.standard_normal((k, n)), group_size, symmetric=not with_zp)
    return b, scales.astype(dtype), (zp.astype(dtype) if with_zp else None)


@pytest.mark.parametrize("a_shape,n", INT4_SHAPES)
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("with_zp", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_float", [True, False])
def test_matmul_int4(a_shape, n, group_size, with_zp, dtype, out_float):
    g = rng()
    a = randn(g, a_shape, dtype)
    b, scales, zp = _weights_int4(g, a_shape[-1], n, group_size, with_zp, dtype)
    out_t = np.float32 if out_float else dtype
    attrs = {"group_size": group_size} | ({} if out_float else {"out_dtype": ONNX_TYPE[dtype]})
    (y,) = run_op("MatmulInt4", [a, b, scales, zp], attrs, [out_t])
    ref = matmul_int4(a, b, scales, zp, group_size)
    assert y.shape == ref.shape == a_shape[:-1] + (n,)
    assert_close(y, ref, TOL[out_t], "MatmulInt4")


def test_matmul_int4_default_group_and_nibble_order():
    """Each nibble of a word is its own K row: one-hot codes pick single rows of A."""
    g = rng()
    k, n = 128, 3
    q = g.integers(-8, 8, size=(k, n))
    a = np.eye(k, dtype=np.float16)[:9]
    scales = np.ones((1, n), np.float16)
    (y,) = run_op("MatmulInt4", [a, pack_int4(q), scales])   # group_size 128, out float by default
    np.testing.assert_array_equal(y, q[:9].astype(np.float32))


# (A shape, N) for W8A16; group sizes are filtered to those dividing K.
INT8_SHAPES = [
    ((1, 64), 8),
    ((3, 33), 1),
    ((5, 128), 7),
    ((2, 3, 4, 64), 13),
    ((0, 64), 5),
    ((3, 0), 4),
]
# scale layout: "row" [1, N] and "vec" [N] per channel (group_size 0), or a group size.
SCALE_FORMS = ["row", "vec", 32, 64]
W8A16_CASES = [(s, n, f) for s, n in INT8_SHAPES for f in SCALE_FORMS
               if isinstance(f, str) or (s[-1] % f == 0)]


@pytest.mark.parametrize("a_shape,n,form", W8A16_CASES)
@pytest.mark.parametrize("with_zp", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_float", [True, False])
def test_matmul_int8_w8a16(a_shape, n, form, with_zp, dtype, out_float):
    g = rng()
    k = a_shape[-1]
    group_size = 0 if isinstance(form, str) else form
    a = randn(g, a_shape, dtype)
    b, scales, zp = quantize_int8(g.standard_normal((k, n)), group_size, symmetric=not with_zp)
    scales = scales.astype(dtype)
    zp = zp.astype(dtype) if with_zp else None
    if form == "vec":
        scales = scales.reshape(n)
        zp = None if zp is None else zp.reshape(n)
    out_t = np.float32 if out_float else dtype
    attrs = {"group_size": group_size} | ({} if out_float else {"out_dtype": ONNX_TYPE[dtype]})
    (y,) = run_op("MatmulInt8", [a, b, scales, zp], attrs, [out_t])
    ref = matmul_int8(a, b, scales, zp, group_size)
    assert y.shape == ref.shape == a_shape[:-1] + (n,)
    assert_close(y, ref, TOL[out_t], "MatmulInt8 W8A16")


W8A8_SHAPES = [((1, 32), 8), ((3, 33), 1), ((2, 3, 5, 64), 13), ((4, 4096), 9), ((0, 32), 5), ((2, 0), 3)]


@pytest.mark.parametrize("a_shape,n", W8A8_SHAPES)
@pytest.mark.parametrize("scale_shape", [(), (1,)])
@pytest.mark.parametrize("out_t", [np.float32, np.float16])
def test_matmul_int8_w8a8(a_shape, n, scale_shape, out_t):
    g = rng()
    a = g.integers(-127, 128, size=a_shape, dtype=np.int8)
    b = g.integers(-128, 128, size=(a_shape[-1], n), dtype=np.int8)
    scale = np.full(scale_shape, g.uniform(1e-4, 1e-2), np.float32)
    attrs = {} if out_t == np.float32 else {"out_dtype": 10}
    (y,) = run_op("MatmulInt8", [a, b, scale], attrs, [out_t])
    ref = matmul_int8(a, b, scale)
    assert y.shape == ref.shape
    # Exact integer sums (K = 4096 overflows f32's 24-bit mantissa): only the final rounding differs.
    assert_close(y, ref, TOL[out_t], "MatmulInt8 W8A8")


# ---- Validation: one row per rule. Each row: (id, op, inputs, attrs, input_shapes, input, #, rule).
F16 = np.float16


def _int4_inputs(k=128, n=8, groups=1, dtype=F16):
    return [np.zeros((4, k), dtype), np.zeros((n, k // 8), np.uint32), np.ones((groups, n), dtype),
            np.zeros((groups, n), dtype)]


def _w8a16_inputs(k=64, n=8, dtype=F16):
    return [np.zeros((4, k), dtype), np.zeros((k, n), np.int8), np.ones((1, n), dtype), np.zeros((1, n), dtype)]


def _w8a8_inputs(k=32, n=8):
    return [np.zeros((4, k), np.int8), np.zeros((k, n), np.int8), np.ones((1,), np.float32)]


def _with(inputs, i, x):
    inputs = list(inputs)
    inputs[i] = x
    return inputs


I4, W16, W8 = _int4_inputs(), _w8a16_inputs(), _w8a8_inputs()
VALIDATION = [
    # MatmulInt4
    ("i4-A-dtype", "MatmulInt4", _with(I4, 0, np.zeros((4, 128), np.float32)), {}, None,
     "A", 0, "element type must be float16, bfloat16, got float"),
    ("i4-A-rank", "MatmulInt4", _with(I4, 0, np.zeros((128,), F16)), {}, None,
     "A", 0, "rank must be at least 2 ([..., M, K]), got shape [128]"),
    ("i4-K-group", "MatmulInt4", _int4_inputs(k=96, groups=1), {"group_size": 64}, None,
     "A", 0, "K (96) must be a multiple of group_size (64)"),
    ("i4-K-default-group", "MatmulInt4", _int4_inputs(k=64), {}, None,
     "A", 0, "K (64) must be a multiple of group_size (128)"),
    ("i4-B-shape", "MatmulInt4", _with(I4, 1, np.zeros((8, 15), np.uint32)), {}, None,
     "B_packed", 1, "shape must be [N, K/8] = [N, 16] (8 INT4 values per word, K = 128), got [8, 15]"),
    ("i4-B-rank", "MatmulInt4", _with(I4, 1, np.zeros((1, 8, 16), np.uint32)), {}, None,
     "B_packed", 1, "shape must be [N, K/8] = [N, 16]"),
    ("i4-scales-dtype", "MatmulInt4", _with(I4, 2, np.ones((1, 8), BF16)), {}, None,
     "scales", 2, "element type must be A's type (float16), got bfloat16"),
    ("i4-scales-groups", "MatmulInt4", _with(I4, 2, np.ones((2, 8), F16)), {}, None,
     "scales", 2, "shape must be [K/group_size, N] = [1, 8], got [2, 8]"),
    ("i4-scales-N", "MatmulInt4", _with(I4, 2, np.ones((1, 7), F16)), {}, None,
     "scales", 2, "shape must be [K/group_size, N] = [1, 8], got [1, 7]"),
    ("i4-scales-rank", "MatmulInt4", _with(I4, 2, np.ones((8,), F16)), {}, None,
     "scales", 2, "shape must be [K/group_size, N] = [1, 8], got [8]"),
    ("i4-zp-dtype", "MatmulInt4", _with(I4, 3, np.zeros((1, 8), np.float32)), {}, None,
     "zero_points", 3, "element type must be float16, bfloat16, got float"),
    ("i4-zp-type-vs-A", "MatmulInt4", _with(I4, 3, np.zeros((1, 8), BF16)), {}, None,
     "zero_points", 3, "element type must be A's type (float16), got bfloat16"),
    ("i4-zp-shape", "MatmulInt4", _with(I4, 3, np.zeros((1, 9), F16)), {}, None,
     "zero_points", 3, "shape must be [K/group_size, N] = [1, 8], got [1, 9]"),
    ("i4-group-size", "MatmulInt4", I4, {"group_size": 16}, None,
     None, None, "attribute 'group_size': must be 32, 64 or 128, got 16"),
    ("i4-out-dtype-other", "MatmulInt4", I4, {"out_dtype": 16}, None,
     None, None, "attribute 'out_dtype': must be 1 (float) or A's type (10, float16), got 16 (bfloat16)"),
    ("i4-out-dtype-bad", "MatmulInt4", I4, {"out_dtype": 7}, None,
     None, None, "attribute 'out_dtype': must be one of 1 (float), 10 (float16), 16 (bfloat16), got 7"),
    ("i4-runtime-B-shape", "MatmulInt4", _with(I4, 1, np.zeros((8, 15), np.uint32)), {}, [None, None, None, None],
     "B_packed", 1, "shape must be [N, K/8] = [N, 16] (8 INT4 values per word, K = 128), got [8, 15]"),
    ("i4-runtime-K-group", "MatmulInt4", _int4_inputs(k=64), {}, [None, [8, 8], [1, 8], [1, 8]],
     "A", 0, "K (64) must be a multiple of group_size (128)"),
    # MatmulInt8 W8A16
    ("w16-A-dtype", "MatmulInt8", _with(W16, 0, np.zeros((4, 64), np.float32)), {}, None,
     "A", 0, "element type must be int8, float16, bfloat16, got float"),
    ("w16-A-rank", "MatmulInt8", _with(W16, 0, np.zeros((64,), F16)), {}, None,
     "A", 0, "rank must be at least 2 ([..., M, K]), got shape [64]"),
    ("w16-B-dtype", "MatmulInt8", _with(W16, 1, np.zeros((64, 8), np.uint8)), {}, None,
     None, None, r"Type 'tensor\(uint8\)' of input parameter \(in1\) of operator \(MatmulInt8\)"),
    ("w16-B-K", "MatmulInt8", _with(W16, 1, np.zeros((63, 8), np.int8)), {}, None,
     "B", 1, "shape must be [K, N] = [64, N], got [63, 8]"),
    ("w16-B-rank", "MatmulInt8", _with(W16, 1, np.zeros((64,), np.int8)), {}, None,
     "B", 1, "shape must be [K, N] = [64, N], got [64]"),
    ("w16-scales-dtype", "MatmulInt8", _with(W16, 2, np.ones((1, 8), np.float32)), {}, None,
     "scales", 2, "element type must be A's type (float16), got float"),
    ("w16-scales-per-channel", "MatmulInt8", _with(W16, 2, np.ones((2, 8), F16)), {}, None,
     "scales", 2, "shape must be [1, N] or [N] (per channel, group_size 0) with N = 8, got [2, 8]"),
    ("w16-scales-scalar", "MatmulInt8", _with(W16, 2, np.ones((), F16)), {}, None,
     "scales", 2, "shape must be [1, N] or [N] (per channel, group_size 0) with N = 8, got []"),
    ("w16-scales-groups", "MatmulInt8", _with(W16, 2, np.ones((1, 8), F16)), {"group_size": 32}, None,
     "scales", 2, "shape must be [K/group_size, N] = [2, 8], got [1, 8]"),
    ("w16-scales-vector-grouped", "MatmulInt8", _with(_with(W16, 2, np.ones((8,), F16)), 3, None),
     {"group_size": 64}, None, "scales", 2, "shape must be [K/group_size, N] = [1, 8], got [8]"),
    ("w16-zp-shape", "MatmulInt8", _with(W16, 3, np.zeros((1, 7), F16)), {}, None,
     "zero_points", 3, "shape must be [1, N] or [N] (per channel, group_size 0) with N = 8, got [1, 7]"),
    ("w16-zp-type", "MatmulInt8", _with(W16, 3, np.zeros((1, 8), BF16)), {}, None,
     "zero_points", 3, "element type must be A's type (float16), got bfloat16"),
    ("w16-K-group", "MatmulInt8", W16, {"group_size": 48}, None,
     "A", 0, "K (64) must be a multiple of group_size (48)"),
    ("w16-group-negative", "MatmulInt8", W16, {"group_size": -1}, None,
     None, None, "attribute 'group_size': must be >= 0 (0: per channel), got -1"),
    ("w16-out-dtype", "MatmulInt8", W16, {"out_dtype": 16}, None,
     None, None, "attribute 'out_dtype': must be 1 (float) or A's type (10, float16), got 16 (bfloat16)"),
    ("w16-runtime-scales", "MatmulInt8", _with(W16, 2, np.ones((2, 8), F16)), {}, [None, [64, 8], [2, 8], [1, 8]],
     "scales", 2, "shape must be [1, N] or [N] (per channel, group_size 0) with N = 8, got [2, 8]"),
    # MatmulInt8 W8A8
    ("w8-scales-dtype", "MatmulInt8", _with(W8, 2, np.ones((1,), F16)), {}, None,
     "scales", 2, "element type must be float for W8A8 (A int8), got float16"),
    ("w8-scales-shape", "MatmulInt8", _with(W8, 2, np.ones((8,), np.float32)), {}, None,
     "scales", 2, "must hold one element (shape [] or [1]), got shape [8]"),
    ("w8-scales-2d", "MatmulInt8", _with(W8, 2, np.ones((1, 1), np.float32)), {}, None,
     "scales", 2, "must hold one element (shape [] or [1]), got shape [1, 1]"),
    ("w8-zero-points", "MatmulInt8", W8 + [np.zeros((1, 8), F16)], {}, None,
     "zero_points", 3, "must be absent for W8A8 (A int8: symmetric)"),
    ("w8-B-shape", "MatmulInt8", _with(W8, 1, np.zeros((31, 8), np.int8)), {}, None,
     "B", 1, "shape must be [K, N] = [32, N], got [31, 8]"),
    ("w8-out-dtype", "MatmulInt8", W8, {"out_dtype": 16}, None,
     None, None, "attribute 'out_dtype': must be 1 (float) or 10 (float16) for W8A8 (A int8), got 16 (bfloat16)"),
    ("w8-group-size", "MatmulInt8", W8, {"group_size": 32}, None,
     None, None, "attribute 'group_size': must be 0 for W8A8 (A int8: one per-tensor scale), got 32"),
    ("w8-runtime-scales", "MatmulInt8", _with(W8, 2, np.ones((8,), np.float32)), {}, [None, [32, 8], [8]],
     "scales", 2, "must hold one element (shape [] or [1]), got shape [8]"),
]


@pytest.mark.parametrize("case", VALIDATION, ids=[c[0] for c in VALIDATION])
@pytest.mark.parametrize("provider", VALIDATION_PROVIDERS)
def test_validation(case, provider):
    _, op, inputs, attrs, input_shapes, name, index, rule = case
    # Y declared in the type the op's out_dtype gives it (float by default): the rule itself fails
    # (when the session is created, or when the kernel runs), not ORT's output type check. With an
    # input of unknown rank our inference cannot type Y, and ORT types it like the last input
    # declared with several types (A, scales, zero_points): the run-time rows declare that.
    if input_shapes is None:
        out_t = {10: np.float16, 16: BF16}.get(attrs.get("out_dtype", 1), np.float32)
    else:
        out_t = [x for i, x in enumerate(inputs) if i != 1 and x is not None][-1].dtype
    with pytest.raises(Exception, match=error_pattern(op, name, index, rule)):
        run_op(op, inputs, attrs, [out_t], provider=provider, input_shapes=input_shapes)


@pytest.mark.parametrize("bits,group_size", [(4, 32), (4, 128), (8, 0), (8, 64)])
@pytest.mark.parametrize("symmetric", [True, False])
def test_reference_quantizers_round_trip(bits, group_size, symmetric):
    """The test quantizers: dequantize(quantize(w)) is within half a step of w."""
    from kaio_ort.reference import dequantize_int4, dequantize_int8

    w = rng().standard_normal((128, 9))
    quantize, dequantize = (quantize_int4, dequantize_int4) if bits == 4 else (quantize_int8, dequantize_int8)
    b, scales, zp = quantize(w, group_size, symmetric=symmetric)
    err = np.abs(dequantize(b, scales, zp, group_size) - w)
    step = np.repeat(scales, group_size, axis=0) if group_size else scales
    assert np.all(err <= step / 2 + 1e-12)
