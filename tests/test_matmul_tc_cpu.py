"""MatmulTc family and MatmulTcGrad on the CPU EP against the float64 reference."""
import numpy as np
import pytest
from op_harness import VALIDATION_PROVIDERS, input_rule, BF16, assert_close, randn, rng, run_op

from kaio_ort.reference import matmul, matmul_grad

FWD_OPS = [("MatmulTc", np.float16), ("MatmulTcAsync", np.float16),
           ("MatmulTcBf16", BF16), ("MatmulTcBf16Async", BF16)]
# (A shape, B shape as [.., K, N]): M=1, K not a multiple of 16, odd N, batch dims, broadcast B.
SHAPES = [
    ((1, 16), (16, 8)),
    ((1, 33), (33, 7)),
    ((5, 17), (17, 1)),
    ((37, 64), (64, 45)),
    ((2, 3, 9, 31), (31, 13)),
    ((2, 1, 7, 24), (3, 24, 5)),
    ((4, 10, 8), (4, 8, 19)),
    ((3, 0, 8), (8, 4)),      # empty M
]
# The CPU kernel rounds the exact (float64) result once to the output type.
TOL = {np.float32: 1e-6, np.float16: 1e-3, BF16: 8e-3}


@pytest.mark.parametrize("op,dtype", FWD_OPS)
@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("out_float", [True, False])
def test_forward(op, dtype, a_shape, b_shape, trans_b, out_float):
    g = rng()
    a = randn(g, a_shape, dtype)
    b = randn(g, b_shape, dtype)
    b_in = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if trans_b else b
    out_t = np.float32 if out_float else dtype
    attrs = {"trans_b": trans_b} | ({} if out_float else {"out_dtype": 10 if dtype == np.float16 else 16})
    (y,) = run_op(op, [a, b_in], attrs, [out_t])
    ref = matmul(a, b)
    assert y.shape == ref.shape
    assert_close(y, ref, TOL[out_t], op)


@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("a_shape,b_shape", SHAPES[:-1])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("dy_float", [True, False])
def test_grad(dtype, a_shape, b_shape, trans_b, dy_float):
    g = rng()
    a = randn(g, a_shape, dtype)
    b = randn(g, b_shape, dtype)
    b_in = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if trans_b else b
    dy = randn(g, matmul(a, b).shape, np.float32 if dy_float else dtype)
    da, db = run_op("MatmulTcGrad", [dy, a, b_in], {"trans_b": trans_b}, [dtype, dtype])
    ref_da, ref_db = matmul_grad(dy, a, b_in, trans_b=bool(trans_b))
    assert_close(da, ref_da, TOL[dtype], "dA")
    assert_close(db, ref_db, TOL[dtype], "dB")


def test_reference_grad_matches_finite_differences():
    """The float64 reference itself, checked by central differences of sum(Y * dY)."""
    g = rng()
    a, b, dy = g.standard_normal((2, 3, 4)), g.standard_normal((1, 4, 5)), g.standard_normal((2, 3, 5))
    da, db = matmul_grad(dy, a, b)
    h = 1e-6
    for x, grad in ((a, da), (b, db)):
        idx = tuple(g.integers(0, s) for s in x.shape)
        x[idx] += h
        fp = np.sum(matmul(a, b) * dy)
        x[idx] -= 2 * h
        fm = np.sum(matmul(a, b) * dy)
        x[idx] += h
        assert abs((fp - fm) / (2 * h) - grad[idx]) < 1e-6


def _f16(*shape):
    return randn(rng(), shape, np.float16)


# One row per validation rule of the MatmulTc family: (op, inputs, attrs, output dtypes, expected
# error: op, input or attribute, rule). Shape inference reports these when the session is created.
# Inputs declared with a single element type are refused by ORT's own schema check before ours
# runs: those rows match ORT's message (which names the op, the node and the offending type).
# Graph outputs are declared in the types the op gives them, so ORT's output type check agrees.
ERROR_CASES = [
    ("MatmulTc", [_f16(4, 8).astype(np.float32), _f16(8, 3)], {}, [np.float32],
     r"Type 'tensor\(float\)' of input parameter \(in0\) of operator \(MatmulTc\)"),
    ("MatmulTcBf16", [_f16(4, 8), _f16(8, 3)], {}, [np.float32],
     r"Type 'tensor\(float16\)' of input parameter \(in0\) of operator \(MatmulTcBf16\)"),
    ("MatmulTc", [_f16(8), _f16(8, 3)], {}, [np.float32],
     r"MatmulTc.*input 'A' \(#0\).*rank must be at least 2"),
    ("MatmulTc", [_f16(4, 8), _f16(8)], {}, [np.float32],
     r"MatmulTc.*input 'B' \(#1\).*rank must be at least 2"),
    ("MatmulTc", [_f16(4, 8), _f16(9, 3)], {}, [np.float32],
     r"MatmulTc.*input 'B' \(#1\): K of B \(9\) must equal K of A \(8\)"),
    ("MatmulTcAsync", [_f16(4, 8), _f16(3, 9)], {"trans_b": 1}, [np.float32],
     r"MatmulTcAsync.*input 'B' \(#1\): K of B \(9\) must equal K of A \(8\).*trans_b=1"),
    ("MatmulTc", [_f16(2, 4, 8), _f16(3, 8, 5)], {}, [np.float32],
     r"MatmulTc.*input 'B' \(#1\): batch dims \[3\] do not broadcast with A's \[2\]"),
    ("MatmulTc", [_f16(4, 8), _f16(8, 3)], {"out_dtype": 16}, [np.float32],
     r"MatmulTc.*attribute 'out_dtype': must be one of 1 \(float\), 10 \(float16\), got 16"),
    ("MatmulTc", [_f16(4, 8), _f16(8, 3)], {"trans_b": 2}, [np.float32],
     r"MatmulTc.*attribute 'trans_b': must be 0 or 1, got 2"),
    ("MatmulTc", [_f16(4, 8), _f16(8, 3)], {"trans_b": 1.0}, [np.float32],
     r"MatmulTc.*attribute 'trans_b': must be of type int, got float"),
    ("MatmulTcGrad", [_f16(4, 3), _f16(4, 8), _f16(8, 3).astype(np.float32)], {}, [np.float16, np.float32],
     input_rule("MatmulTcGrad", "B", 2, "element type must be float16, bfloat16, got float")),
    ("MatmulTcGrad", [_f16(4, 3).astype(BF16), _f16(4, 8), _f16(8, 3)], {}, [np.float16, np.float16],
     r"MatmulTcGrad.*input 'dY' \(#0\): element type must be float or A's type \(float16\), got bfloat16"),
    ("MatmulTcGrad", [_f16(4, 3), _f16(4, 8), _f16(8, 3).astype(BF16)], {}, [np.float16, BF16],
     r"MatmulTcGrad.*input 'B' \(#2\): element type must equal A's \(float16\), got bfloat16"),
    ("MatmulTcGrad", [_f16(4, 4), _f16(4, 8), _f16(8, 3)], {}, [np.float16, np.float16],
     r"MatmulTcGrad.*input 'dY' \(#0\): shape must be the forward output's \[4, 3\], got \[4, 4\]"),
]


@pytest.mark.parametrize("op,inputs,attrs,out_types,match", ERROR_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(ERROR_CASES)])
@pytest.mark.parametrize("provider", VALIDATION_PROVIDERS)
def test_validation_rules(op, inputs, attrs, out_types, match, provider):
    with pytest.raises(Exception, match=match):
        run_op(op, inputs, attrs, out_types, provider=provider)


@pytest.mark.parametrize("provider", VALIDATION_PROVIDERS)
def test_validation_at_run_time_names_the_node(provider):
    """Shapes unknown to shape inference: the kernel's own check fires when it runs, with the node."""
    a, b = _f16(4, 8), _f16(9, 3)
    with pytest.raises(Exception, match=r"\[com.kaio.MatmulTc\] node 'MatmulTc_\d+': input 'B' \(#1\): K of B \(9\) "
                                        r"must equal K of A \(8\)"):
        run_op("MatmulTc", [a, b], {}, [np.float32], provider=provider, input_shapes=[None, None])


@pytest.mark.parametrize("wanted", ["dA", "dB"])
def test_grad_with_one_output_left_out(wanted):
    """ORT training leaves out gradients nobody needs (output name ""): the other is still exact."""
    g = rng()
    a, b = randn(g, (5, 12), np.float16), randn(g, (12, 7), np.float16)
    dy = randn(g, (5, 7), np.float32)
    ref = dict(zip(("dA", "dB"), matmul_grad(dy, a, b)))
    out_types = [np.float16 if name == wanted else None for name in ("dA", "dB")]
    (got,) = run_op("MatmulTcGrad", [dy, a, b], {}, out_types)
    assert_close(got, ref[wanted], TOL[np.float16], wanted)
