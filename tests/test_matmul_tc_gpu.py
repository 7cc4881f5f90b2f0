"""MatmulTc and MatmulTcAsync (f16), MatmulTcBf16 and MatmulTcBf16Async, and MatmulTcGrad on the CUDA
EP against the float64 reference: the mma.sync kernel, and on sm_90 the Async ops' TMA + wgmma kernel (shapes with
K % 8 or N % 8 != 0 fall back to mma.sync there too); IOBinding, poisoned guarded outputs, CUDA-graph
replay, and the CUDA-side validation rules."""
import re

import numpy as np
import pytest
from gpu_harness import (BoundRun, cuda_graph_test, cuda_session, launched_kernels, our_kernel_launches, require_sm90,
                         run_op_cuda)
from op_harness import BF16, build_model, randn, rel_err, rng

from kaio_ort.reference import matmul, matmul_grad

pytestmark = pytest.mark.gpu

# (batch_a, M, K, N, batch_b) derived from the 128 x 128 x 32 tile (wgmma: 128 or 256 x 128 x 64): exact multiples, one past,
# smaller than a tile, K not a multiple of 8 (element-load path), M = 1 (decode), batch + broadcast.
SHAPES = [
    ((), 1, 4096, 4096, ()),
    ((), 1, 16, 8, ()),
    ((), 7, 40, 33, ()),
    ((), 128, 128, 128, ()),
    ((), 129, 160, 257, ()),
    ((), 127, 131, 130, ()),      # K % 8 != 0: element loads
    ((), 1000, 72, 1000, ()),
    ((), 4096, 384, 512, ()),
    ((2, 3), 65, 48, 33, ()),     # B broadcast over batch
    ((2, 1), 31, 64, 40, (4,)),   # both broadcast
    ((3,), 200, 256, 96, (3,)),
    ((), 300, 520, 264, ()),      # wgmma: K and N tails inside a tile (520 = 8 x 64 + 8, 264 = 2 x 128 + 8)
    ((2,), 129, 1032, 136, ()),   # wgmma: batches of B broadcast, row tail of one, long K with a tail
    ((), 2048, 256, 2048, ()),    # wgmma: more tiles than SMs (the persistent loop's second round)
    ((), 2200, 264, 2048, ()),    # wgmma with 256-row tiles (>= 1 per SM), row and K tails
    ((), 129, 72, 72, ()),        # wgmma: boxes partly past M, N and K ([K, N] B: the second box from column 64)
    ((), 16, 2048, 520, ()),      # split K (few tiles): 4 slices, a column tail
    ((), 5, 1100, 37, ()),        # split K on the mma.sync kernel (K % 8 != 0): 2 slices
    ((), 34000, 72, 120, ()),     # wgmma 256-row tiles, one tile column: single CTAs (no pair)
    ((), 3900, 136, 1032, ()),    # wgmma in CTA pairs: odd tile columns, the last tile's second A half past M
    ((2,), 1100, 72, 2048, ()),   # CTA pairs over two batches of A, B broadcast
    # wgmma, [K, N] B with K >= 2048 in wide tiles: run as Y^T = B^T A^T, Y stored transposed
    ((2,), 1100, 2056, 2184, ()),  # batches of B broadcast, row / column / K tails
    ((3,), 800, 2048, 1544, (3,)),  # a B per batch
]
F16_OPS, BF16_OPS = ["MatmulTc", "MatmulTcAsync"], ["MatmulTcBf16", "MatmulTcBf16Async"]
# f32 accumulation of exact f16 products: far below 1e-4 in f32; f16 outputs add one rounding.
TOL = {np.float32: 1e-4, np.float16: 2e-3}

# The Async ops' pipelines: the default (TMA + wgmma on sm_90, where it applies; else the multi-stage
# cp.async ring) and the cp.async ring forced (matmul_tc_kernel.cuh, kCpStages = 4; KAIO_WGMMA=0 so
# that a Hopper runs it too; KAIO_MATMUL_CP_ASYNC=0 would take the register-prefetch kernel). The
# switches are read at each launch.
PIPELINES = {"default": {}, "cp_async": {"KAIO_MATMUL_CP_ASYNC": "1", "KAIO_WGMMA": "0"}}


def use_pipeline(monkeypatch, name):
    for var in ("KAIO_MATMUL_CP_ASYNC", "KAIO_WGMMA"):
        monkeypatch.delenv(var, raising=False)
    for var, value in PIPELINES[name].items():
        monkeypatch.setenv(var, value)


def with_pipelines(ops):
    """(op, pipeline) pairs: the sync ops on their one kernel, the Async ops on each pipeline."""
    return [(op, pl) for op in ops for pl in (PIPELINES if "Async" in op else ["default"])]


@pytest.mark.parametrize("batch_a,m,k,n,batch_b", SHAPES)
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("op,pipeline", with_pipelines(F16_OPS))
def test_matmul_tc_cuda(op, pipeline, batch_a, m, k, n, batch_b, trans_b, out_dtype, monkeypatch):
    use_pipeline(monkeypatch, pipeline)
    g = rng()
    a = randn(g, (*batch_a, m, k), np.float16)
    b = randn(g, (*batch_b, k, n), np.float16)
    b_in = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if trans_b else b
    ref = matmul(a, b)
    attrs = {"trans_b": trans_b} | ({"out_dtype": 10} if out_dtype == np.float16 else {})
    (y,) = run_op_cuda(op, [a, b_in], attrs, [ref.shape], [out_dtype])
    err = rel_err(y, ref)
    assert err <= TOL[out_dtype], f"relative error {err:.2e}"


@cuda_graph_test(*F16_OPS)
@pytest.mark.parametrize("op", F16_OPS)
def test_cuda_graph_replay_matches_eager(op):
    g = rng()
    m, k, n = 96, 200, 136
    a, b = randn(g, (m, k), np.float16), randn(g, (k, n), np.float16)
    model = build_model(op, [a, b], {}, [np.float32])
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), [a, b], [(m, n)], [np.float32])
    first = graph_run.run()[0]  # captures the graph
    a2, b2 = randn(g, (m, k), np.float16), randn(g, (k, n), np.float16)
    graph_run.update_inputs([a2, b2])
    replay = graph_run.run()[0]
    eager = BoundRun(cuda_session(model), [a2, b2], [(m, n)], [np.float32]).run()[0]
    assert rel_err(first, matmul(a, b)) <= TOL[np.float32]
    np.testing.assert_array_equal(replay, eager)


@pytest.mark.parametrize("op", F16_OPS)
def test_repeated_runs_are_bitwise_identical(op):
    g = rng()
    a, b = randn(g, (300, 520), np.float16), randn(g, (520, 264), np.float16)
    run = BoundRun(cuda_session(build_model(op, [a, b], {}, [np.float32])), [a, b], [(300, 264)],
                   [np.float32])
    first = run.run()[0]
    for _ in range(3):
        np.testing.assert_array_equal(run.run()[0], first)


def test_too_many_batch_dims_is_refused_on_cuda():
    g = rng()
    a = randn(g, (1, 1, 1, 1, 1, 1, 1, 4, 8), np.float16)
    b = randn(g, (8, 4), np.float16)
    with pytest.raises(Exception, match=r"MatmulTc.*input 'A'.*at most 6 batch dims"):
        run_op_cuda("MatmulTc", [a, b], {}, [(1, 1, 1, 1, 1, 1, 1, 4, 4)], [np.float32])


def test_k_mismatch_is_refused_on_cuda():
    g = rng()
    a, b = randn(g, (4, 8), np.float16), randn(g, (9, 4), np.float16)
    with pytest.raises(Exception, match=r"MatmulTc.*input 'B'.*K of B \(9\) must equal K of A \(8\)"):
        run_op_cuda("MatmulTc", [a, b], {}, [(4, 4)], [np.float32])


@pytest.mark.parametrize("batch_a,m,k,n,batch_b", SHAPES[1:])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("out_bf16", [False, True])
@pytest.mark.parametrize("op,pipeline", with_pipelines(BF16_OPS))
def test_matmul_tc_bf16_cuda(op, pipeline, batch_a, m, k, n, batch_b, trans_b, out_bf16, monkeypatch):
    """The same kernels on bfloat16, bound as such."""
    use_pipeline(monkeypatch, pipeline)
    g = rng()
    a = randn(g, (*batch_a, m, k), BF16)
    b = randn(g, (*batch_b, k, n), BF16)
    b_in = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if trans_b else b
    ref = matmul(a, b)
    out_t = BF16 if out_bf16 else np.float32
    attrs = {"trans_b": trans_b} | ({"out_dtype": 16} if out_bf16 else {})
    (y,) = run_op_cuda(op, [a, b_in], attrs, [ref.shape], [out_t])
    err = rel_err(y, ref)
    # f32 accumulation of exact bf16 products; a bf16 output adds one rounding (8-bit mantissa).
    assert err <= (8e-3 if out_bf16 else 1e-4), f"relative error {err:.2e}"


@cuda_graph_test(*BF16_OPS)
@pytest.mark.parametrize("out_bf16", [False, True])
@pytest.mark.parametrize("op", BF16_OPS)
def test_bf16_cuda_graph_replay_matches_eager(op, out_bf16):
    """bfloat16 in the graph (Casts from and to float32 I/O, captured with the op): capture matches the
    reference, replay with new inputs at the same addresses equals an eager run bit for bit."""
    g = rng()
    m, k, n = 70, 136, 200
    a, b = randn(g, (m, k), BF16), randn(g, (k, n), BF16)
    attrs = {"out_dtype": 16} if out_bf16 else {}
    model = build_model(op, [a, b], attrs, [BF16 if out_bf16 else np.float32])
    f32 = lambda *xs: [x.astype(np.float32) for x in xs]  # noqa: E731  the graph's float32 inputs
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), f32(a, b), [(m, n)], [np.float32])
    first = graph_run.run()[0]  # captures the graph
    tol = 8e-3 if out_bf16 else 1e-4
    assert rel_err(first, matmul(a, b)) <= tol
    a2, b2 = randn(g, (m, k), BF16), randn(g, (k, n), BF16)
    graph_run.update_inputs(f32(a2, b2))
    replay = graph_run.run()[0]
    eager = BoundRun(cuda_session(model), f32(a2, b2), [(m, n)], [np.float32]).run()[0]
    assert rel_err(replay, matmul(a2, b2)) <= tol
    np.testing.assert_array_equal(replay, eager)


@pytest.mark.parametrize("m,k,n,trans_b", [(256, 264, 256, 0), (256, 264, 256, 1), (16, 2048, 520, 0)])
@pytest.mark.parametrize("op", ["MatmulTcAsync", "MatmulTcBf16Async"])
def test_async_ops_take_the_wgmma_kernel_on_sm90(op, m, k, n, trans_b):
    """On Hopper the Async ops run the TMA + wgmma kernel (a fallback to mma.sync would pass the
    accuracy tests silently); 16 x 2048 x 520 takes it with split K (the sum of the slices after)."""
    require_sm90()
    g = rng()
    t = BF16 if "Bf16" in op else np.float16
    a, b = randn(g, (m, k), t), randn(g, (k, n), t)
    b_in = np.ascontiguousarray(b.T) if trans_b else b
    model = build_model(op, [a, b_in], {"trans_b": trans_b}, [np.float32], bf16_io=True)
    run = BoundRun(cuda_session(model), [a, b_in], [(m, n)], [np.float32])
    names = launched_kernels(run.run)
    assert any("MatmulWgmmaKernel" in x and ("DenseB" in x or "DecodeB" in x) for x in names), names
    assert rel_err(run.run()[0], matmul(a, b)) <= TOL[np.float32]


# MatmulTcGrad: (A shape, B shape as [..., K, N]): the wgmma path (dims % 8 == 0) and the mma.sync one,
# M = 1, a weight B broadcast over batch dims (the batch joins dB's reduction, with a K tail), both
# batched, both broadcasting (dA and dB summed from per-batch products), A broadcast (dA summed),
# tiles in several persistent rounds, split K (a long reduction over few output tiles), and with
# trans_b dA = dY B over N = 2184 in wide tiles (B as stored [N, K]: the swapped kernel on sm_90).
GRAD_SHAPES = [
    ((64, 128), (128, 96)),
    ((1, 40), (40, 24)),
    ((7, 33), (33, 17)),
    ((3, 77, 136), (136, 264)),
    ((2, 3, 65, 48), (48, 40)),
    ((3, 200, 256), (3, 256, 96)),
    ((2, 1, 31, 64), (4, 64, 40)),
    ((40, 64), (2, 64, 48)),
    ((2048, 512), (512, 1024)),
    ((8, 512, 128), (128, 64)),
    ((16, 4096), (4096, 520)),
    ((2200, 2048), (2048, 2184)),
]
# dY (float or the operands' type) times 16-bit operands, f32 sums, one rounding to dA / dB's type; a
# float dY is rounded to the operands' type first.
GRAD_TOL = {np.float16: 3e-3, BF16: 8e-3}


@pytest.mark.parametrize("a_shape,b_shape", GRAD_SHAPES)
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("dy_float", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("pipeline", list(PIPELINES))
def test_matmul_tc_grad_cuda(pipeline, dtype, a_shape, b_shape, trans_b, dy_float, monkeypatch):
    """Both gradients (dB with A read MN-major: trans_a) on each of the Async pipelines."""
    use_pipeline(monkeypatch, pipeline)
    g = rng()
    a, b = randn(g, a_shape, dtype), randn(g, b_shape, dtype)
    b_in = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if trans_b else b
    dy = randn(g, matmul(a, b).shape, np.float32 if dy_float else dtype)
    ref_da, ref_db = matmul_grad(dy, a, b_in, trans_b=bool(trans_b))
    da, db = run_op_cuda("MatmulTcGrad", [dy, a, b_in], {"trans_b": trans_b}, [a.shape, b_in.shape], [dtype, dtype])
    for name, got, ref in (("dA", da, ref_da), ("dB", db, ref_db)):
        err = rel_err(got, ref)
        assert err <= GRAD_TOL[dtype], f"{name}: relative error {err:.2e}"


@cuda_graph_test("MatmulTcGrad")
def test_grad_cuda_graph_replay_matches_eager():
    g = rng()
    a, b = randn(g, (2, 96, 200), np.float16), randn(g, (200, 136), np.float16)
    dy = randn(g, (2, 96, 136), np.float32)
    model = build_model("MatmulTcGrad", [dy, a, b], {}, [np.float16, np.float16])
    shapes, types = [a.shape, b.shape], [np.float16, np.float16]
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), [dy, a, b], shapes, types)
    first = graph_run.run()  # captures the graph
    for got, ref in zip(first, matmul_grad(dy, a, b)):
        assert rel_err(got, ref) <= GRAD_TOL[np.float16]
    new = [randn(g, dy.shape, np.float32), randn(g, a.shape, np.float16), randn(g, b.shape, np.float16)]
    graph_run.update_inputs(new)
    replay = graph_run.run()
    eager = BoundRun(cuda_session(model), new, shapes, types).run()
    for r, e in zip(replay, eager):
        np.testing.assert_array_equal(r, e)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_grad_takes_the_wgmma_kernels_on_sm90(trans_b):
    """On Hopper both gradients run the TMA + wgmma kernel, dB with A (or dY) read MN-major."""
    require_sm90()
    g = rng()
    a, b = randn(g, (2, 256, 264), np.float16), randn(g, (264, 512), np.float16)
    b_in = np.ascontiguousarray(b.T) if trans_b else b
    dy = randn(g, (2, 256, 512), np.float16)
    model = build_model("MatmulTcGrad", [dy, a, b_in], {"trans_b": trans_b}, [np.float16, np.float16])
    run = BoundRun(cuda_session(model), [dy, a, b_in], [a.shape, b_in.shape], [np.float16, np.float16])
    names = [x for x in launched_kernels(run.run) if "MatmulWgmmaKernel" in x]
    # the kernel name ends "<T, BOp, kConsumers, kTransA, kCluster, kTransposeY>"
    assert any(", true, 1, false>" in x for x in names) and any(", false, 1, false>" in x for x in names), names
    for got, ref in zip(run.run(), matmul_grad(dy, a, b_in, trans_b=bool(trans_b))):
        assert rel_err(got, ref) <= GRAD_TOL[np.float16]


# The Hopper GEMM's tile shapes (matmul_tc_sm90.cu) under each setting of its switches (read at each
# launch): case -> (switches, M x K x N, the kernel name's tail "DenseB<trans_b, tile N>, consumers,
# trans_a, cluster, transposed Y>"). K < 2048: [K, N] B is not swapped (test_kn_b_swapped_on_sm90).
TILE_SWITCHES = ("KAIO_WGMMA_CLUSTER", "KAIO_WGMMA_WIDE", "KAIO_WGMMA_SKINNY", "KAIO_WGMMA_SWAP", "KAIO_WGMMA_NARROW",
                 "KAIO_WGMMA_DECODE")
TILE_CASES = {
    "wide": ({}, (3900, 136, 1032), "DenseB<{tb}, 256>, 2, false, 1, false>"),
    "tall": ({"KAIO_WGMMA_WIDE": "0"}, (3900, 136, 1032), "DenseB<{tb}, 128>, 4, false, 1, false>"),
    "pairs": ({"KAIO_WGMMA_CLUSTER": "1"}, (3900, 136, 1032), "DenseB<{tb}, 128>, 4, false, 2, false>"),
    # M <= 64 with K slices capped by K: narrow 64 x 64 tiles (17 here in clusters of 2 slices: 34
    # CTAs, not 18); M <= 16 otherwise: decode tiles with [K, N] B (16 A rows a stage; the slices
    # through the partial buffer), skinny tiles with [N, K] B and from M = 17
    "narrow": ({}, (40, 1032, 1032), "DenseB<{tb}, 64>, 1, false, 1, false>"),
    "decode": ({}, (16, 4096, 4096), "{decode}, 1, false, 1, false>"),
    "skinny_past_decode_rows": ({}, (17, 4096, 4096), "DenseB<{tb}, 128>, 1, false, 1, false>"),
    "skinny": ({"KAIO_WGMMA_NARROW": "0"}, (40, 1032, 1032), "DenseB<{tb}, 128>, 1, false, 1, false>"),
    "skinny_m16": ({"KAIO_WGMMA_DECODE": "0"}, (16, 4096, 4096), "DenseB<{tb}, 128>, 1, false, 1, false>"),
    "small": ({"KAIO_WGMMA_SKINNY": "0"}, (40, 1032, 1032), "DenseB<{tb}, 128>, 2, false, 1, false>"),
}


def _b_as_stored(trans_b):
    """B [K, N] as the op takes it: itself, or [N, K] with trans_b."""
    return (lambda x: np.ascontiguousarray(x.T)) if trans_b else (lambda x: x)


def _matmul_case(m, k, n, trans_b, op="MatmulTcAsync", out_t=np.float32):
    """Fresh f16 operands of an M x K x N `op` (B as [N, K] with trans_b), its model with Y of out_t
    (float32 or float16) and an eager BoundRun of it: (rng, a, b, model, run)."""
    g = rng()
    a, b = randn(g, (m, k), np.float16), randn(g, (k, n), np.float16)
    b_in = _b_as_stored(trans_b)(b)
    attrs = {"trans_b": trans_b} | ({"out_dtype": 10} if out_t == np.float16 else {})
    model = build_model(op, [a, b_in], attrs, [out_t])
    return g, a, b, model, BoundRun(cuda_session(model), [a, b_in], [(m, n)], [out_t])


def _right_and_graph_replays_eager(model, run, a, b, trans_b, g, out_t=np.float32):
    """The op's eager run (`run`) and a CUDA graph's capturing run on (a, b) against the
    float64 reference; then the graph replayed on new inputs equals an eager run on them, bit for bit.
    Returns the graph's BoundRun (its inputs the new ones)."""
    m, n = a.shape[0], b.shape[1]
    b_op = _b_as_stored(trans_b)
    assert rel_err(run.run()[0], matmul(a, b)) <= TOL[out_t]
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), [a, b_op(b)], [(m, n)], [out_t])
    assert rel_err(graph_run.run()[0], matmul(a, b)) <= TOL[out_t]
    a2, b2 = randn(g, a.shape, np.float16), randn(g, b.shape, np.float16)
    graph_run.update_inputs([a2, b_op(b2)])
    replay = graph_run.run()[0]
    eager = BoundRun(cuda_session(model), [a2, b_op(b2)], [(m, n)], [out_t]).run()[0]
    np.testing.assert_array_equal(replay, eager)
    return graph_run


def _kernel_choice_right_in_graphs(monkeypatch, switches, m, k, n, trans_b, tail):
    """With the Hopper GEMM's switches as `switches` (the others unset): every wgmma kernel the op
    launches ends in `tail`, and the op is right eagerly and in a CUDA graph."""
    require_sm90()
    for v in TILE_SWITCHES:
        if v in switches:
            monkeypatch.setenv(v, switches[v])
        else:
            monkeypatch.delenv(v, raising=False)
    g, a, b, model, run = _matmul_case(m, k, n, trans_b)
    names = [x for x in launched_kernels(run.run) if "MatmulWgmmaKernel" in x]
    assert names and all(tail in x for x in names), (tail, names)
    _right_and_graph_replays_eager(model, run, a, b, trans_b, g)


@cuda_graph_test("MatmulTcAsync")
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("case", list(TILE_CASES))
def test_tile_shapes_on_sm90(case, trans_b, monkeypatch):
    """On Hopper: 128 x 256 tiles where large tiles fill the GPU (256 x 128 with KAIO_WGMMA_WIDE=0, in
    CTA pairs sharing A tiles with KAIO_WGMMA_CLUSTER=1), for M <= 64 64 x 128 (narrow 64 x 64 where
    that gives more CTAs, decode tiles loading 16 A rows for M <= 16; KAIO_WGMMA_NARROW=0 /
    KAIO_WGMMA_DECODE=0 keep 64 x 128, KAIO_WGMMA_SKINNY=0 128 x 128); each right and, captured in a
    CUDA graph (the clusters' occupancy query happens once, outside the capture), replaying what eager
    runs compute."""
    switches, (m, k, n), tail = TILE_CASES[case]
    want = tail.format(tb="true" if trans_b else "false", decode="DenseB<true, 128>" if trans_b else "DecodeB<false>")
    _kernel_choice_right_in_graphs(monkeypatch, switches, m, k, n, trans_b, want)


# [K, N] B in wide tiles (matmul_tc_sm90.cu, SwapOperands): case -> (switches, M x K x N, the kernel
# name's tail). From K = 2048 the kernel computes Y^T = B^T A^T (B as the MN-major A operand,
# A as [N, K]-style B) and stores Y transposed through shared memory; 3900 x 1032 is 144 wide tiles
# with row, column and K tails.
SWAP_CASES = {
    "swapped": ({}, (3900, 2056, 1032), "DenseB<true, 256>, 2, true, 1, true>"),
    "unswapped_by_switch": ({"KAIO_WGMMA_SWAP": "0"}, (3900, 2056, 1032), "DenseB<false, 256>, 2, false, 1, false>"),
    "short_k": ({}, (3900, 1032, 1032), "DenseB<false, 256>, 2, false, 1, false>"),
    "swapped_by_switch": ({"KAIO_WGMMA_SWAP": "1"}, (3900, 1032, 1032), "DenseB<true, 256>, 2, true, 1, true>"),
}


@cuda_graph_test("MatmulTcAsync")
@pytest.mark.parametrize("case", list(SWAP_CASES))
def test_kn_b_swapped_on_sm90(case, monkeypatch):
    """On Hopper, [K, N] B with K >= 2048 in wide tiles runs as the transposed product (wgmma reads
    MN-major B slower than MN-major A); each kernel choice right and, in a CUDA graph, replaying what
    eager runs compute."""
    switches, (m, k, n), tail = SWAP_CASES[case]
    _kernel_choice_right_in_graphs(monkeypatch, switches, m, k, n, 0, tail)


# The sync kernel's tiles (matmul_tc_sm80.cu, WideTileFor): case -> (KAIO_MATMUL_WIDE, M x K x N, the
# tile in the kernel's name). 3900 x 1032 is 155 wide tiles (>= one per SM up to 155 SMs) with row, column
# and K tails; 1000 x 1000 is 32.
SYNC_TILE_CASES = {
    "wide": (None, (3900, 136, 1032), "SyncTile<256, 1>"),
    "narrow_by_switch": ("0", (3900, 136, 1032), "SyncTile<128, 2>"),
    "narrow_few_tiles": (None, (1000, 72, 1000), "SyncTile<128, 2>"),
}


@cuda_graph_test("MatmulTc")
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("case", list(SYNC_TILE_CASES))
def test_sync_tile_shapes(case, trans_b, monkeypatch):
    """MatmulTc takes the 128 x 256 tile (one block per SM, dynamic shared memory) where its blocks
    fill the GPU, else (or with KAIO_MATMUL_WIDE=0) the 128 x 128 one; each right and, captured in a
    CUDA graph, replaying what eager runs compute."""
    switch, (m, k, n), want = SYNC_TILE_CASES[case]
    sms = pytest.importorskip("torch").cuda.get_device_properties(0).multi_processor_count
    if case == "wide" and sms > 155:
        pytest.skip(f"3900 x 1032 is 155 wide tiles, fewer than this GPU's {sms} SMs")
    if switch is None:
        monkeypatch.delenv("KAIO_MATMUL_WIDE", raising=False)
    else:
        monkeypatch.setenv("KAIO_MATMUL_WIDE", switch)
    g, a, b, model, run = _matmul_case(m, k, n, trans_b, op="MatmulTc")
    names = [x for x in launched_kernels(run.run) if "MatmulTcSyncKernel" in x]
    assert names and all(want in x for x in names), (want, names)
    _right_and_graph_replays_eager(model, run, a, b, trans_b, g)


@cuda_graph_test("MatmulTcAsync")
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("slice_cluster", ["1", "0"])
def test_k_slices_summed_in_a_cluster_on_sm90(slice_cluster, trans_b, monkeypatch):
    """On Hopper, skinny tiles with K split (40 x 1032 x 1032: 17 narrow tiles, 2 slices) run each tile's
    slices as one thread-block cluster that adds them in shared memory: one launch, no combine kernel; with
    KAIO_WGMMA_SLICE_CLUSTER=0 (read at each launch) f32 slices and the combine kernel. Both right,
    and a CUDA-graph replay computes what eager runs do."""
    require_sm90()
    monkeypatch.setenv("KAIO_WGMMA_SLICE_CLUSTER", slice_cluster)
    monkeypatch.setenv("KAIO_WGMMA_TILE_COUNTERS", "0")  # (the other way to one launch)
    for v in TILE_SWITCHES:
        monkeypatch.delenv(v, raising=False)
    m, k, n = 40, 1032, 1032
    g, a, b, model, run = _matmul_case(m, k, n, trans_b)
    names = list(our_kernel_launches(run.run))
    combine = [x for x in names if "CombineKernel" in x]
    assert any("MatmulWgmmaKernel" in x for x in names), names
    assert (not combine) if slice_cluster == "1" else combine, names
    _right_and_graph_replays_eager(model, run, a, b, trans_b, g)


# K-sliced products whose slices go through the partial buffer (no cluster of slices): 32 decode tiles
# in 4 slices (the 32 clusters of 4 would not all be resident), 128 x 128 tiles in 5 slices with row
# and column tails, and 16 slices (past the largest cluster) with a column tail.
COUNTED_SLICE_SHAPES = [(16, 4096, 4096), (100, 3000, 264), (7, 8192, 136)]


@cuda_graph_test("MatmulTcAsync")
@pytest.mark.parametrize("out_t", [np.float32, np.float16])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("m,k,n", COUNTED_SLICE_SHAPES)
def test_k_slices_summed_by_the_last_slice_on_sm90(m, k, n, trans_b, out_t, monkeypatch):
    """On Hopper, the CTA that finishes a tile's last K slice adds the slices into Y (counted on the
    stream's tile counters, which it returns to zero): one launch, no combine kernel. Right on fresh
    inputs run after run (a counter left nonzero would leave Y unwritten), bit for bit what
    KAIO_WGMMA_TILE_COUNTERS=0 (the combine kernel, the same order of sums) gives, and a CUDA graph
    captures the one launch and replays what eager runs compute."""
    require_sm90()
    for v in TILE_SWITCHES:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("KAIO_WGMMA_TILE_COUNTERS", "1")
    g, a, b, model, run = _matmul_case(m, k, n, trans_b, out_t=out_t)
    names = list(our_kernel_launches(run.run))
    assert any("MatmulWgmmaKernel" in x for x in names) and not any("CombineKernel" in x for x in names), names
    b_op = _b_as_stored(trans_b)
    for _ in range(3):
        a, b = randn(g, (m, k), np.float16), randn(g, (k, n), np.float16)
        run.update_inputs([a, b_op(b)])
        counted = run.run()[0]
        assert rel_err(counted, matmul(a, b)) <= TOL[out_t]
    monkeypatch.setenv("KAIO_WGMMA_TILE_COUNTERS", "0")
    assert any("CombineKernel" in x for x in our_kernel_launches(run.run))
    np.testing.assert_array_equal(run.run()[0], counted)
    monkeypatch.setenv("KAIO_WGMMA_TILE_COUNTERS", "1")
    graph_run = _right_and_graph_replays_eager(model, run, a, b, trans_b, g, out_t)
    assert not any("CombineKernel" in x for x in our_kernel_launches(graph_run.run))


def _sync_kernels(names):
    return [x for x in names if "MatmulTcSyncKernel" in x]


def _cp_stages(name):
    """The kCpStages argument of a MatmulTcSyncKernel name (0: the register-prefetch pipeline)."""
    m = re.search(r"MatmulTcSyncKernel<.*, (\d+), kaio::matmul_tc::SyncTile<", name)
    assert m, name
    return int(m.group(1))


@pytest.mark.parametrize("m,k,n,trans_b,stages",
                         [(256, 264, 256, 0, 4), (256, 264, 256, 1, 4), (16, 2048, 520, 0, 4), (1, 4096, 4096, 1, 4),
                          (127, 131, 130, 0, 0)])
@pytest.mark.parametrize("op", ["MatmulTcAsync", "MatmulTcBf16Async"])
def test_async_ops_take_the_cp_async_kernel(op, m, k, n, trans_b, stages, monkeypatch):
    """The switches pick the kernel: with the cp.async pipeline's, the Async ops run kCpStages 4 where
    16-byte loads apply (16 x 2048 x 520 with split K, the slices' sum after) and the element-load
    kernel (kCpStages 0) where not (K % 8 != 0); the sync ops never take cp.async; with
    KAIO_MATMUL_CP_ASYNC unset the same (the default), with KAIO_MATMUL_CP_ASYNC=0 (KAIO_WGMMA=0 kept)
    the register-prefetch kernel. Each run right and bitwise repeatable."""
    g = rng()
    t = BF16 if "Bf16" in op else np.float16
    a, b = randn(g, (m, k), t), randn(g, (k, n), t)
    b_in = np.ascontiguousarray(b.T) if trans_b else b
    ref = matmul(a, b)

    def stages_run(op_name):
        model = build_model(op_name, [a, b_in], {"trans_b": trans_b}, [np.float32], bf16_io=True)
        run = BoundRun(cuda_session(model), [a, b_in], [(m, n)], [np.float32])
        first = run.run()[0]
        assert rel_err(first, ref) <= TOL[np.float32]
        np.testing.assert_array_equal(run.run()[0], first)
        names = launched_kernels(run.run)
        assert not any("MatmulWgmmaKernel" in x for x in names), names  # KAIO_WGMMA=0
        assert _sync_kernels(names), names
        return {_cp_stages(x) for x in _sync_kernels(names)}

    use_pipeline(monkeypatch, "cp_async")
    assert stages_run(op) == {stages}
    assert stages_run(op.replace("Async", "")) == {0}
    monkeypatch.delenv("KAIO_MATMUL_CP_ASYNC")
    assert stages_run(op) == {stages}
    monkeypatch.setenv("KAIO_MATMUL_CP_ASYNC", "0")
    assert stages_run(op) == {0}


def test_grad_takes_the_cp_async_kernels(monkeypatch):
    """Both gradients of a 16-byte-load shape on the cp.async kernel, dB's with trans_a."""
    use_pipeline(monkeypatch, "cp_async")
    g = rng()
    a, b = randn(g, (2, 256, 264), np.float16), randn(g, (264, 512), np.float16)
    dy = randn(g, (2, 256, 512), np.float16)
    model = build_model("MatmulTcGrad", [dy, a, b], {}, [np.float16, np.float16])
    run = BoundRun(cuda_session(model), [dy, a, b], [a.shape, b.shape], [np.float16, np.float16])
    names = _sync_kernels(launched_kernels(run.run))
    assert names and all(_cp_stages(x) == 4 for x in names), names
    assert any("true, 4, kaio::matmul_tc::SyncTile<" in x for x in names), names  # trans_a
    for got, ref in zip(run.run(), matmul_grad(dy, a, b)):
        assert rel_err(got, ref) <= GRAD_TOL[np.float16]
