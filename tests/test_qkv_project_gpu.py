"""QkvProjectInt4 on the CUDA EP (decode regimes M <= 16, GEMM regime M > 16) against the float64
reference of the weights as the kernel forms them; IOBinding with NaN-poisoned, guarded outputs
(bfloat16 too), bitwise agreement with three MatmulInt4 nodes, CUDA-graph replay, repeated
runs, the CUDA-side validation and an empty M. QkvProjectInt8 on the CUDA EP at the end (its three
projections as three launches of MatmulInt8's kernels: against the float64 reference, bitwise against
three MatmulInt8 nodes, CUDA-graph replay, K = 0)."""
import re

import numpy as np
import pytest
from gpu_harness import (BoundRun, bind_input_at_offset, chain_ref_codes, cuda_graph_test, cuda_session,
                         int4_weights_rounded, our_kernel_launches, run_op_cuda)
from op_harness import BF16, CUDA, build_model, error_pattern, randn, rel_err, rng, run_op

from kaio_ort.reference import qkv_project_int4, quantize_int4

pytestmark = pytest.mark.gpu

OP = "QkvProjectInt4"
# Against _chain_ref_qkv (the weights rounded as the kernel rounds them): f32 accumulation, then one
# rounding to X's type (bf16: 8-bit mantissa). Against the contract's reference (exact weights) the
# weight rounding adds to that, which a single badly conditioned element (M = N = 1, a bias that
# cancels the product) can blow up: PLAIN_TOL, checked on shapes with many elements only.
TOL = {np.float16: 2e-3, BF16: 8e-3}
PLAIN_TOL = 1e-2

# (lead dims, M, K, (Nq, Nk, Nv)); K as a multiple of the group ("g": one group, "3g") or absolute.
# M = 1, 2, 7, 8, 9, 16: the decode kernels (both m16 halves from M = 9); M = 17, 100, 129: the
# GEMM regime with row tails; batch dims on X (15 and 80 rows); GQA widths (256, 64, 64) and
# Llama-like ones (512, 128, 128) at small K; unequal odd widths, not multiples of 8 (the fallbacks).
SHAPES = [
    ((), 1, 4096, (256, 64, 64)),
    ((), 1, "g", (1, 1, 1)),
    ((), 1, "3g", (40, 13, 7)),
    ((), 2, 512, (512, 128, 128)),
    ((), 3, "g", (4096, 1536, 1536)),  # >= 3 column tiles per SM: the decode kernel's 4-warp blocks
    ((), 7, "3g", (257, 33, 24)),
    ((), 8, 4096, (256, 64, 64)),
    ((), 9, "3g", (40, 13, 7)),
    ((), 16, 512, (512, 128, 128)),
    ((), 16, "g", (1, 1, 1)),
    ((3,), 5, "3g", (64, 16, 16)),
    ((), 17, "3g", (257, 33, 24)),
    ((2,), 40, "g", (40, 13, 7)),
    ((), 100, 512, (512, 128, 128)),
    ((), 129, "3g", (256, 64, 64)),
    ((), 64, 2048, (256, 64, 64)),       # GEMM, one row block, long K
    ((2,), 24, 1024, (136, 40, 24)),     # GEMM, segments of unequal tile counts
    ((), 128, 4096, (2048, 2048, 2048)),  # sm_90, no bias: one Hopper GEMM launch per projection
    ((), 1, 4224, (4104, 4099, 2056)),  # sm_90: 323 blocks of 32 columns, unsplit; odd widths, K = 33 chunks
]
BF16_SHAPES = [
    ((), 1, 4096, (256, 64, 64)),
    ((), 3, "3g", (40, 13, 7)),
    ((), 12, "g", (1, 1, 1)),
    ((2,), 40, "3g", (257, 33, 24)),
    ((), 129, "g", (512, 128, 128)),
    ((), 64, 2048, (256, 64, 64)),
    ((), 1, 4224, (4104, 4099, 2056)),
]


def _id(shape):
    lead, m, k, ns = shape
    return "x".join(map(str, (*lead, m))) + f"-k{k}-n" + ".".join(map(str, ns))


def _k(k, group_size):
    return {"g": group_size, "3g": 3 * group_size}.get(k, k)


def _operands(g, lead, m, k, ns, group_size, dtype, with_bias):
    """X, [Wq, Wk, Wv], [sq, sk, sv], [bq, bk, bv] (empty without bias); biases of the products' size."""
    x = randn(g, (*lead, m, k), dtype)
    ws, ss = [], []
    for n in ns:
        b, s, _ = quantize_int4(g.standard_normal((k, n)), group_size)
        ws.append(b)
        ss.append(s.astype(dtype))
    bs = [randn(g, (n,), dtype, scale=np.sqrt(max(k, 1))) for n in ns] if with_bias else []
    return x, ws, ss, bs


def _chain_ref_qkv(x, ws, ss, bs, group_size):
    """float64 (Q, K, V): gpu_harness.chain_ref_codes (the weights as the kernel forms them, no zero
    points; rounded or exact as the regime of the shape) of each projection, plus its bias."""
    from kaio_ort.packing import unpack_int4

    qs = [unpack_int4(b) for b in ws]
    rows = int(np.prod(x.shape[:-1]))
    rounded = int4_weights_rounded(rows, x.shape[-1], [q.shape[1] for q in qs], group_size)
    return [chain_ref_codes(x, q, s, None, group_size, rounded) + (0.0 if bias is None else
                                                                   np.asarray(bias, np.float64))
            for q, s, bias in zip(qs, ss, bs or [None] * 3)]


def _check(outs, refs, tol, shapes, what=""):
    """Every output: its shape, and its relative error (a NaN, i.e. an unwritten element, never passes)."""
    assert len(outs) == 3
    for name, y, ref, shape in zip("QKV", outs, refs, shapes):
        assert y.shape == ref.shape == tuple(shape), f"{name}: shape {y.shape}, expected {tuple(shape)}"
        err = rel_err(y, ref)
        assert err <= tol, f"{what}{name}: relative error {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize("lead,m,k,ns", SHAPES, ids=[_id(s) for s in SHAPES])
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("with_bias", [False, True])
def test_qkv_project_int4_cuda_f16(lead, m, k, ns, group_size, with_bias):
    g = rng()
    k = _k(k, group_size)
    x, ws, ss, bs = _operands(g, lead, m, k, ns, group_size, np.float16, with_bias)
    shapes = [(*lead, m, n) for n in ns]
    outs = run_op_cuda(OP, [x, *ws, *ss, *bs], {"group_size": group_size}, shapes, [np.float16] * 3)
    assert all(y.dtype == np.float16 for y in outs)
    _check(outs, _chain_ref_qkv(x, ws, ss, bs, group_size), TOL[np.float16], shapes)


@pytest.mark.parametrize("lead,m,k,ns", BF16_SHAPES, ids=[_id(s) for s in BF16_SHAPES])
@pytest.mark.parametrize("group_size", [32, 128])
@pytest.mark.parametrize("with_bias", [False, True])
def test_qkv_project_int4_cuda_bf16(lead, m, k, ns, group_size, with_bias):
    """bfloat16 X, scales, biases and outputs bound as such."""
    g = rng()
    k = _k(k, group_size)
    x, ws, ss, bs = _operands(g, lead, m, k, ns, group_size, BF16, with_bias)
    shapes = [(*lead, m, n) for n in ns]
    outs = run_op_cuda(OP, [x, *ws, *ss, *bs], {"group_size": group_size}, shapes, [BF16] * 3)
    _check(outs, _chain_ref_qkv(x, ws, ss, bs, group_size), TOL[BF16], shapes)


# (M, K, widths): the decode kernels (M = 1, 16) and the fused mma.sync GEMM (M = 70) at two width
# sets; M = 128 with 3 x 2048 columns at K = 4096 takes one Hopper GEMM launch per projection on
# sm_90 (16 tiles in 8 K slices each; elsewhere the fused launch).
BITWISE_CASES = [(m, k, ns) for m in (1, 16, 70) for k, ns in ((1024, (256, 64, 64)), (512, (512, 128, 128)))]
BITWISE_CASES.append((128, 4096, (2048, 2048, 2048)))


@pytest.mark.parametrize("m,k,ns", BITWISE_CASES, ids=[_id(((), *c)) for c in BITWISE_CASES])
@pytest.mark.parametrize("group_size", [32, 128])
def test_matches_three_matmul_int4_bitwise(m, k, ns, group_size):
    """Without bias, Q, K, V are exactly what three MatmulInt4 nodes (out_dtype X's type) give for the
    same weights. Nothing in the contract demands bitwise equality, but the fused kernel is designed
    to use MatmulInt4's arithmetic per column (same weight rounding, same f32 accumulation order,
    one rounding at the end), and where it runs one launch per projection it runs MatmulInt4's own,
    so this is asserted bitwise on purpose: a difference means the two paths diverged. Widths are
    multiples of 8 (the main path, not the fallbacks)."""
    g = rng()
    x, ws, ss, _ = _operands(g, (), m, k, ns, group_size, np.float16, False)
    shapes = [(m, n) for n in ns]
    fused = run_op_cuda(OP, [x, *ws, *ss], {"group_size": group_size}, shapes, [np.float16] * 3)
    for name, y, b, s, shape in zip("QKV", fused, ws, ss, shapes):
        (single,) = run_op_cuda("MatmulInt4", [x, b, s], {"group_size": group_size, "out_dtype": 10}, [shape],
                                [np.float16])
        assert np.all(np.isfinite(y)), f"{name}: unwritten (NaN) or non-finite elements"
        np.testing.assert_array_equal(y, single, err_msg=f"{name} differs from MatmulInt4")


@cuda_graph_test(OP)
@pytest.mark.parametrize("m", [2, 70])
def test_cuda_graph_replay_matches_eager(m):
    g = rng()
    k, ns = 384, (256, 64, 64)
    x, ws, ss, bs = _operands(g, (), m, k, ns, 128, np.float16, True)
    inputs = [x, *ws, *ss, *bs]
    shapes = [(m, n) for n in ns]
    model = build_model(OP, inputs, {}, [np.float16] * 3)
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), inputs, shapes, [np.float16] * 3)
    first = graph_run.run()  # captures the graph
    x2, ws2, ss2, bs2 = _operands(g, (), m, k, ns, 128, np.float16, True)
    inputs2 = [x2, *ws2, *ss2, *bs2]
    graph_run.update_inputs(inputs2)
    replay = graph_run.run()
    eager = BoundRun(cuda_session(model), inputs2, shapes, [np.float16] * 3).run()
    _check(first, _chain_ref_qkv(x, ws, ss, bs, 128), TOL[np.float16], shapes)
    _check(first, qkv_project_int4(x, *ws, *ss, *bs), PLAIN_TOL, shapes, "contract reference: ")
    _check(replay, _chain_ref_qkv(x2, ws2, ss2, bs2, 128), TOL[np.float16], shapes)
    for name, a, b in zip("QKV", replay, eager):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: replay differs from eager")


@pytest.mark.parametrize("m", [5, 70])
def test_repeated_runs_are_bitwise_identical(m):
    g = rng()
    x, ws, ss, bs = _operands(g, (), m, 1024, (40, 13, 7), 64, np.float16, True)
    inputs = [x, *ws, *ss, *bs]
    shapes = [(m, n) for n in (40, 13, 7)]
    run = BoundRun(cuda_session(build_model(OP, inputs, {"group_size": 64}, [np.float16] * 3)), inputs, shapes,
                   [np.float16] * 3)
    first = run.run()
    _check(first, _chain_ref_qkv(x, ws, ss, bs, 64), TOL[np.float16], shapes)
    _check(first, qkv_project_int4(x, *ws, *ss, *bs, group_size=64), PLAIN_TOL, shapes, "contract reference: ")
    for _ in range(3):
        for a, b in zip(run.run(), first):
            np.testing.assert_array_equal(a, b)


# CUDA-side validation: with the shapes declared the rule fires when the session is created, with
# unknown input shapes in the CUDA kernel's Compute. (id, inputs, attrs, input name, #, rule)
NS = (16, 8, 8)


def _inputs(k=128, groups=1, bias=True):
    f16 = np.float16
    return ([np.zeros((4, k), f16)] + [np.zeros((n, k // 8), np.uint32) for n in NS] +
            [np.ones((groups, n), f16) for n in NS] + ([np.zeros((n,), f16) for n in NS] if bias else []))


def _with(inputs, i, x):
    inputs = list(inputs)
    inputs[i] = x
    return inputs


VALIDATION = [
    ("K-group", _inputs(k=64), {}, "X", 0, "K (64) must be a multiple of group_size (128)"),
    ("K-group-32", _inputs(k=48), {"group_size": 32}, "X", 0, "K (48) must be a multiple of group_size (32)"),
    ("bias-only-q", _inputs()[:8], {}, "bk", 8, "is missing: biases must be given all three (bq, bk, bv) or none"),
    ("bias-no-v", _inputs()[:9], {}, "bv", 9, "is missing: biases must be given all three (bq, bk, bv) or none"),
    ("Wk-shape", _with(_inputs(), 2, np.zeros((8, 15), np.uint32)), {}, "Wk", 2,
     "shape must be [N, K/8] = [N, 16] (8 INT4 values per word, K = 128), got [8, 15]"),
    ("sv-groups", _with(_inputs(), 6, np.ones((2, 8), np.float16)), {}, "sv", 6,
     "shape must be [K/group_size, N] = [1, 8], got [2, 8]"),
]


@pytest.mark.parametrize("known_shapes", [True, False], ids=["at_session", "at_compute"])
@pytest.mark.parametrize("inputs,attrs,name,index,rule", [v[1:] for v in VALIDATION], ids=[v[0] for v in VALIDATION])
def test_validation_on_cuda(inputs, attrs, name, index, rule, known_shapes):
    shapes = [(4, n) for n in NS]
    with pytest.raises(Exception, match=error_pattern(OP, name, index, rule)):
        model = build_model(OP, inputs, attrs, [np.float16] * 3,
                            input_shapes=None if known_shapes else [None] * len(inputs))
        BoundRun(cuda_session(model), inputs, shapes, [np.float16] * 3).run()


def test_misaligned_x_is_refused():
    """X bound at an address that is 2-byte but not 16-byte aligned: refused by name on CUDA (the
    kernels read X in 16-byte pieces)."""
    g = rng()
    x, ws, ss, _ = _operands(g, (), 4, 128, NS, 128, np.float16, False)
    inputs = [x, *ws, *ss]
    shapes = [(4, n) for n in NS]
    run = BoundRun(cuda_session(build_model(OP, inputs, {}, [np.float16] * 3)), inputs, shapes, [np.float16] * 3)
    bind_input_at_offset(run, 0, x, 2)
    with pytest.raises(Exception, match="inputs 'X', 'Wq', 'Wk' and 'Wv' must be 16-byte aligned on CUDA"):
        run.run()


@pytest.mark.parametrize("with_bias", [False, True])
def test_empty_m(with_bias):
    g = rng()
    x, ws, ss, bs = _operands(g, (), 0, 128, NS, 128, np.float16, with_bias)
    outs = run_op(OP, [x, *ws, *ss, *bs], {}, [np.float16] * 3, provider=CUDA)
    assert [y.shape for y in outs] == [(0, n) for n in NS]
    assert all(y.dtype == np.float16 for y in outs)


# ---- QkvProjectInt8 (W8A16 with a float scale after the sum): MatmulInt8's kernels, one launch of
# the decode kernel over the three projections where it takes them all (M <= 16, every N % 16 == 0,
# K % 8 == 0), else three launches. The integer weights are exact in X's type and the
# scale and bias come after the f32 sum, so the contract's float64 reference is the kernel's
# arithmetic up to f32 accumulation and one rounding. (lead, M, K, (Nq, Nk, Nv)): the decode kernel
# (Llama 3 8B's 4096 -> 4096/1024/1024 at M = 1 and 16, K = 1000 / 24 not multiples of its 32-row
# steps, batch dims), the GEMV (M <= 16 with a width not a multiple of 16;
# K split over blocks at long K; M = 5 and 16: 8-row blocks, 16: two of them)
# and the tensor-core kernel (M > 16, its sums through the one combine pass that applies scale and
# bias); GQA widths (Nk = Nv < Nq), widths below one 256-column GEMV block or one 128-column tile,
# widths straddling blocks (257, 300, 520), and N or K not multiples of 8 (element loads).
INT8_SHAPES = [
    ((), 1, 4096, (4096, 1024, 1024)),
    ((), 16, 4096, (4096, 1024, 1024)),
    ((), 3, 1000, (4096, 4096, 4096)),  # 96 column tiles: the decode kernel's 8-warp blocks (sm_90)
    ((), 7, 1000, (272, 64, 48)),
    ((2,), 5, 24, (32, 16, 16)),
    ((), 1, 4096, (256, 64, 64)),
    ((), 1, 100, (40, 13, 7)),
    ((), 1, 2048, (1024, 256, 256)),
    ((), 4, 512, (512, 128, 128)),
    ((3,), 3, 256, (64, 16, 16)),
    ((), 5, 1000, (300, 44, 44)),
    ((), 5, 96, (40, 13, 7)),
    ((), 16, 1000, (136, 40, 24)),
    ((), 16, 2048, (520, 264, 264)),
    ((), 17, 512, (257, 33, 24)),
    ((), 17, 1024, (512, 128, 128)),
    ((), 64, 2048, (256, 64, 64)),
    ((2,), 32, 1024, (384, 136, 136)),
    ((), 64, 200, (40, 13, 7)),
    ((), 130, 4096, (256, 64, 64)),
]
INT8_BF16_SHAPES = [
    ((), 1, 4096, (256, 64, 64)),
    ((), 1, 264, (4096, 4096, 4096)),
    ((), 11, 1000, (272, 64, 48)),
    ((), 5, 100, (40, 13, 7)),
    ((), 16, 1000, (136, 40, 24)),
    ((), 17, 512, (257, 33, 24)),
    ((), 64, 2048, (256, 64, 64)),
    ((2,), 32, 1024, (384, 136, 136)),
]


def _int8_operands(g, lead, m, k, ns, dtype, scale_form, with_bias):
    from kaio_ort.reference import quantize_int8

    x = randn(g, (*lead, m, k), dtype)
    ws, ss = [], []
    for n in ns:
        w, s, _ = quantize_int8(g.standard_normal((k, n)))
        ws.append(w)
        ss.append({"scalar": np.array(s.max(), np.float32), "one": np.array([s.max()], np.float32),
                   "channel": s.reshape(n).astype(np.float32)}[scale_form])
    bs = [randn(g, (n,), dtype, scale=np.sqrt(max(k, 1))) for n in ns] if with_bias else []
    return x, ws, ss, bs


@pytest.mark.parametrize("lead,m,k,ns", INT8_SHAPES, ids=[_id(s) for s in INT8_SHAPES])
@pytest.mark.parametrize("scale_form", ["scalar", "one", "channel"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_qkv_project_int8_cuda_f16(lead, m, k, ns, scale_form, with_bias):
    from kaio_ort.reference import qkv_project_int8

    g = rng()
    x, ws, ss, bs = _int8_operands(g, lead, m, k, ns, np.float16, scale_form, with_bias)
    shapes = [(*lead, m, n) for n in ns]
    outs = run_op_cuda("QkvProjectInt8", [x, *ws, *ss, *bs], {}, shapes, [np.float16] * 3)
    assert all(y.dtype == np.float16 for y in outs)
    _check(outs, qkv_project_int8(x, *ws, *ss, *(bs or [None] * 3)), TOL[np.float16], shapes)


@pytest.mark.parametrize("lead,m,k,ns", INT8_BF16_SHAPES, ids=[_id(s) for s in INT8_BF16_SHAPES])
@pytest.mark.parametrize("scale_form", ["scalar", "channel"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_qkv_project_int8_cuda_bf16(lead, m, k, ns, scale_form, with_bias):
    """bfloat16 X, biases and outputs bound as such."""
    from kaio_ort.reference import qkv_project_int8

    g = rng()
    x, ws, ss, bs = _int8_operands(g, lead, m, k, ns, BF16, scale_form, with_bias)
    shapes = [(*lead, m, n) for n in ns]
    outs = run_op_cuda("QkvProjectInt8", [x, *ws, *ss, *bs], {}, shapes, [BF16] * 3)
    _check(outs, qkv_project_int8(x, *ws, *ss, *(bs or [None] * 3)), TOL[BF16], shapes)


# (M, K, (Nq, Nk, Nv)): decode kernel (M <= 16, widths % 16 == 0), GEMV (M <= 16, other widths) and
# tensor-core (M > 16) regimes, vectorised and element loads. GEMV and tensor-core: each projection
# is its own launch, planned (K split included) as a MatmulInt8 node of its width is. Decode: one
# launch whose K slices follow the launch's column blocks; on these shapes the fused launch and each
# single node get the same slices (8: K long enough, few blocks), so the sums' order agrees too.
# (Where the fused launch's tiles exceed 2/3 of the SMs it takes 8-warp blocks and a single node of
# one width may not: the warps' partial sums then meet in another order, and the results may differ
# in the last bit. Such widths are not in this table.)
INT8_BITWISE = [
    (1, 4096, (256, 64, 64)),
    (16, 4096, (256, 128, 128)),
    (5, 1000, (40, 13, 7)),
    (16, 2048, (512, 128, 128)),
    (17, 512, (257, 33, 24)),
    (64, 1024, (256, 64, 64)),
]


@pytest.mark.parametrize("m,k,ns", INT8_BITWISE, ids=[_id(((), *s)) for s in INT8_BITWISE])
@pytest.mark.parametrize("dtype", [np.float16, BF16], ids=["f16", "bf16"])
def test_int8_matches_three_matmul_int8_bitwise(m, k, ns, dtype):
    """Without bias and with per-channel power-of-two scales, Q, K, V are exactly what three MatmulInt8
    W8A16 nodes (group_size 0, the same scales in X's type, out_dtype X's type) give for the same
    weights: w = b * s is exact in X's type, and scaling by a power of two commutes with every f32
    rounding, so MatmulInt8's sum of x * (b s) is s times QkvProjectInt8's sum of x * b, bit for bit,
    in the same order (same slices, same combine). A difference means the two paths diverged."""
    g = rng()
    x = randn(g, (m, k), dtype)
    ws = [g.integers(-127, 128, (k, n)).astype(np.int8) for n in ns]
    # sums reach about 127 sqrt(K) ~ 8e3 at K = 4096: scales <= 1/2 keep them inside float16's range
    ss = [np.exp2(g.integers(-6, 0, n)).astype(np.float32) for n in ns]
    shapes = [(m, n) for n in ns]
    out_dtype = 10 if dtype == np.float16 else 16
    fused = run_op_cuda("QkvProjectInt8", [x, *ws, *ss], {}, shapes, [dtype] * 3)
    for name, y, w, s, shape in zip("QKV", fused, ws, ss, shapes):
        scales = s.reshape(1, -1).astype(dtype)
        (single,) = run_op_cuda("MatmulInt8", [x, w, scales], {"out_dtype": out_dtype}, [shape], [dtype])
        assert np.all(np.isfinite(y)), f"{name}: unwritten (NaN) or non-finite elements"
        np.testing.assert_array_equal(y, single, err_msg=f"{name} differs from MatmulInt8")


@cuda_graph_test("QkvProjectInt8")
@pytest.mark.parametrize("m", [1, 5, 64])
def test_int8_cuda_graph_replay_and_repeats(m):
    """CUDA-graph replay with new inputs at the same addresses equals an eager run, and repeated runs
    (scratch from ORT's allocator each time) are bitwise identical; K split in both regimes."""
    from kaio_ort.reference import qkv_project_int8

    g = rng()
    k, ns = 2048, (256, 64, 64)
    x, ws, ss, bs = _int8_operands(g, (), m, k, ns, np.float16, "channel", True)
    inputs = [x, *ws, *ss, *bs]
    shapes = [(m, n) for n in ns]
    model = build_model("QkvProjectInt8", inputs, {}, [np.float16] * 3)
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), inputs, shapes, [np.float16] * 3)
    first = graph_run.run()  # captures the graph
    _check(first, qkv_project_int8(*inputs), TOL[np.float16], shapes)
    x2, ws2, ss2, bs2 = _int8_operands(g, (), m, k, ns, np.float16, "channel", True)
    inputs2 = [x2, *ws2, *ss2, *bs2]
    graph_run.update_inputs(inputs2)
    replay = graph_run.run()
    eager_run = BoundRun(cuda_session(model), inputs2, shapes, [np.float16] * 3)
    eager = eager_run.run()
    _check(replay, qkv_project_int8(*inputs2), TOL[np.float16], shapes)
    for name, a, b in zip("QKV", replay, eager):
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: replay differs from eager")
    for _ in range(3):
        for a, b in zip(eager_run.run(), eager):
            np.testing.assert_array_equal(a, b)


def _decode_warps(name):
    """W, the warps a block, of a MatmulInt8DecodeKernel<T, NT8, kMode, W> kernel name."""
    found = re.search(r"MatmulInt8DecodeKernel<[^,]+, \d+, \d+, (\d+)>", name)
    assert found, name
    return int(found.group(1))


@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("ns", [(4096, 1024, 1024), (4096, 4096, 4096)], ids=["llama", "square"])
@pytest.mark.parametrize("eight,sixteen", [("1", "1"), ("1", "0"), ("0", "1")])
def test_int8_decode_is_one_launch(m, ns, eight, sixteen, monkeypatch):
    """At M <= 16 with widths % 16 == 0 (Llama 3 8B's 4096 -> 4096/1024/1024, and 3 x 4096) the three
    projections are one launch of MatmulInt8's decode kernel, and nothing else of ours runs. Its blocks
    have more than 4 warps exactly where the launcher's rule says (sm_90, M <= 8, no zero points,
    128-column tiles over 2/3 of the SMs: the square widths' 96 on an H100 / H200, not the Llama
    widths' 48): 16 where the tiles fit one per SM (96), else 8. KAIO_INT8_EIGHT_WARPS=0 keeps 4,
    KAIO_INT8_SIXTEEN_WARPS=0 keeps 8."""
    from kaio_ort.reference import qkv_project_int8

    monkeypatch.setenv("KAIO_INT8_EIGHT_WARPS", eight)
    monkeypatch.setenv("KAIO_INT8_SIXTEEN_WARPS", sixteen)
    props = pytest.importorskip("torch").cuda.get_device_properties(0)
    tiles = sum((n + 127) // 128 for n in ns)
    sm90 = (props.major, props.minor) == (9, 0)
    sms = props.multi_processor_count
    eight_warps = eight == "1" and sm90 and m <= 8 and 3 * tiles > 2 * sms
    warps = (16 if sixteen == "1" and tiles <= sms else 8) if eight_warps else 4
    g = rng()
    x, ws, ss, bs = _int8_operands(g, (), m, 4096, ns, np.float16, "channel", True)
    inputs = [x, *ws, *ss, *bs]
    shapes = [(m, n) for n in ns]
    run = BoundRun(cuda_session(build_model("QkvProjectInt8", inputs, {}, [np.float16] * 3)), inputs, shapes,
                   [np.float16] * 3)
    _check(run.run(), qkv_project_int8(*inputs), TOL[np.float16], shapes)
    ours = our_kernel_launches(run.run)
    assert list(ours.values()) == [1] and "MatmulInt8DecodeKernel" in next(iter(ours)), ours
    assert _decode_warps(next(iter(ours))) == warps, ours


@pytest.mark.parametrize("ns", [(4096, 1024, 1024), (4096, 4096, 4096)], ids=["llama", "square"])
@pytest.mark.parametrize("pair", ["1", "0"])
@pytest.mark.parametrize("slices", ["1", "0"])
def test_int4_m1_kernel_choice(ns, pair, slices, monkeypatch):
    """At M = 1 the three projections are one launch. On sm_90 it is the 32-columns-a-block kernel where
    those blocks number more than 2 and at most 3 per SM (the square widths' 384 on 132 SMs), or, with
    K in two slices, more than 1.9 (the Llama widths' 192); else the split decode kernel.
    KAIO_INT4_PAIR=0 keeps the split decode kernel, KAIO_INT4_TILE_SLICES=0 the unsplit rule alone."""
    monkeypatch.setenv("KAIO_INT4_PAIR", pair)
    monkeypatch.setenv("KAIO_INT4_TILE_SLICES", slices)
    props = pytest.importorskip("torch").cuda.get_device_properties(0)
    blocks = sum((n + 31) // 32 for n in ns)
    sms = props.multi_processor_count
    unsplit = 2 * sms < blocks <= 3 * sms
    sliced = not unsplit and slices == "1" and 19 * sms < 20 * blocks and 2 * blocks <= 3 * sms
    paired = pair == "1" and (props.major, props.minor) == (9, 0) and (unsplit or sliced)
    g = rng()
    x, ws, ss, bs = _operands(g, (), 1, 4096, ns, 128, np.float16, True)
    inputs = [x, *ws, *ss, *bs]
    shapes = [(1, n) for n in ns]
    run = BoundRun(cuda_session(build_model(OP, inputs, {"group_size": 128}, [np.float16] * 3)), inputs, shapes,
                   [np.float16] * 3)
    _check(run.run(), _chain_ref_qkv(x, ws, ss, bs, 128), TOL[np.float16], shapes)
    ours = our_kernel_launches(run.run)
    assert list(ours.values()) == [1], ours
    name = next(iter(ours))
    assert ("MatmulInt4OneRowTilesKernel" if paired else "MatmulInt4SplitDecodeKernel") in name, ours
    if paired:  # its last template argument: kSliced
        assert re.search(r"MatmulInt4OneRowTilesKernel<.*, (true|false)>", name).group(1) == str(sliced).lower(), ours


@pytest.mark.parametrize("m", [1, 40])
def test_qkv_project_int8_empty_k_is_bias(m):
    g = rng()
    x, ws, ss, bs = _int8_operands(g, (), m, 0, (16, 8, 8), np.float16, "channel", True)
    outs = run_op_cuda("QkvProjectInt8", [x, *ws, *ss, *bs], {}, [(m, n) for n in (16, 8, 8)], [np.float16] * 3)
    for y, b in zip(outs, bs):
        np.testing.assert_array_equal(y, np.broadcast_to(b, y.shape))
