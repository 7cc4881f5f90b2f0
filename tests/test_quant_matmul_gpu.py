"""MatmulInt4 (split decode kernel M <= 16; KAIO_INT4_DECODE=0: FMA GEMV, decode and mma GEMV; GEMM regime M > 16) and MatmulInt8 W8A16
(GEMV M <= 16 with split K; tensor-core GEMM above) on the CUDA EP against the float64
reference of the dequantised weights; MatmulInt8 W8A8 (int8 wgmma on sm_90, mma.sync elsewhere)
bit for bit against the float64 reference rounded as the CPU kernel rounds it; IOBinding with NaN-poisoned, guarded outputs (bfloat16 too),
CUDA-graph replay and repeated runs."""
import re

import numpy as np
import pytest
from gpu_harness import (BoundRun, bind_input_at_offset, chain_ref_codes, cuda_graph_test, cuda_session,
                         int4_weights_rounded, launched_kernels, our_kernel_launches, require_sm90, run_op_cuda)
from op_harness import BF16, CUDA, build_model, randn, rel_err, rng

from kaio_ort.reference import matmul_int4, matmul_int8, quantize_int4, quantize_int8

pytestmark = pytest.mark.gpu

ONNX_TYPE = {np.float32: 1, np.float16: 10, BF16: 16}
# Against _chain_ref (the weights rounded as the kernel rounds them, or exact where it applies the
# scales in f32): f32 accumulation, then one rounding to the output type (bf16: 8-bit mantissa).
TOL = {np.float32: 1e-3, np.float16: 2e-3, BF16: 8e-3}

# (lead dims, M, K, N); K as a multiple of the group ("g", "3g") or absolute. Derived from the
# tiles: the FMA GEMV (M = 1) streams 32-k pieces, 32 per warp load (K = g, 3g: one partial load;
# K = 11008: 11 loads, the last partial; N = 1000: warps with 1 or more columns; K = 60160: A does
# not fit in shared memory, the mma GEMV takes M = 1); the mma GEMV covers 16 columns per block,
# 8 warps x 128-k chunks (K = g, 3g: partial chunks, idle warps), M <= 8 (rows 0-7) and 9..16 (both
# m16 halves); the GEMM covers 64 rows x 64 or 128 columns per block (M = 17, 129: row tails; N odd,
# 1, not a multiple of 8 or of the tile); on sm_90 outputs of enough 128 x 128 tiles take the TMA +
# wgmma GEMM (matmul_int4_sm90.cu).
SHAPES = [
    ((), 1, 4096, 1000),
    ((), 1, 11008, 40),
    ((), 1, "3g", 300),
    ((), 1, 60160, 8),            # A over 227 KB of shared memory: mma GEMV
    ((), 2, 4096, 72),            # first M on the mma GEMV
    ((), 1, "3g", 6400),          # decode, >= 3 column tiles per SM: 4-warp blocks (fewer: 8-warp)
    ((2,), 3, 1152, 6400),       # (6 rows, K a tail of the 1024-k stage)
    ((), 1, "g", 1),
    ((), 2, "3g", 13),
    ((), 3, "g", 40),
    ((), 7, "3g", 257),
    ((), 8, 4096, 40),
    ((), 9, "3g", 33),
    ((), 16, 4096, 72),
    ((3,), 5, "3g", 16),          # batch dims: 15 rows, GEMV
    ((), 17, "3g", 257),
    ((2,), 32, "g", 65),          # batch dims: 64 rows, GEMM
    ((), 129, "3g", 200),
    ((), 100, 4096, 136),
    ((), 40, 2048, 264),          # GEMM, one row block, long K
    ((), 200, 1024, 72),          # GEMM, four row blocks, one tile of columns
    ((), 300, 1024, 3208),        # sm_90 wgmma GEMM (>= 66 tiles of 128 x 128): row and column tails
    ((2,), 260, "3g", 2056),      # wgmma GEMM, K = 3g (a half 64-k tile at g = 32), batch dims
    # sm_90 wgmma GEMM in K slices (too few tiles for half the SMs; f32 slices, then a combine kernel)
    ((), 64, 2048, 2056),         # 17 tiles in 4 slices of 512 k, row tail
    ((), 100, 8320, 1032),        # 9 tiles in 14 slices (of 9-10 64-k steps), row and column tails
    ((2,), 520, 1152, 1032),      # sm_90, >= 1024 rows: weights dequantised first, then the dense GEMM
    # Split decode kernel (M <= 16, any N): 16-column tiles at M <= 8, 32 at 9..16; K split over a
    # cluster of up to 8 CTAs (sm_90; 2 at M = 9..16, there with A prefetched where the tiles fit one
    # wave of 3 blocks per SM) when tiles x slices fit one wave; 128-k chunks to 4 warps in turn.
    ((), 1, 4096, 4104),          # N % 16 = 8: a half tile; 257 tiles (sm_90: the tiles kernel below, 2 slices)
    ((), 8, 14336, 24),           # last M with one token tile; long K in 8 slices (2 tiles)
    ((), 9, 4096, 4099),          # first M with two token tiles; N odd, % 32 = 3
    ((), 16, "3g", 4104),         # K = 3g: < 4 chunks (idle warps, no slices at g = 32), N % 32 = 8
    ((), 12, 1280, 17),           # 10 chunks in up to 2 slices: warps with 2 and 3 chunks
    ((), 16, 4096, 4096),         # two token tiles: 128 tiles in 2 slices (at most 2 at M = 9..16)
    ((), 13, 9216, 2056),         # 65 tiles, long K in 2 slices of 36 chunks, N % 32 = 8
    ((2,), 8, 4096, 40),          # batch dims: 16 rows (two token tiles)
    # M = 1 on sm_90, 32 columns a block, unsplit at 2-3 blocks per SM or in 2 K slices (a cluster) at
    # 1.9-3: MatmulInt4OneRowTilesKernel
    ((), 1, 4224, 9000),          # 282 blocks, N % 32 = 8 (a half tile), K = 33 chunks (a part step)
    ((), 1, 4224, 4099),          # 129 blocks in 2 slices of 16 / 17 chunks (K = 33 chunks), N odd
]


def _chain_ref(a, b, scales, zp, group_size=128):
    """chain_ref_codes for MatmulInt4's packed weights, rounded as the regime the shape takes rounds them."""
    from kaio_ort.packing import unpack_int4

    q = unpack_int4(b)
    rows = int(np.prod(a.shape[:-1]))
    rounded = int4_weights_rounded(rows, q.shape[0], [q.shape[1]], group_size)
    return chain_ref_codes(a, q, scales, zp, group_size, rounded)


def _k(k, group_size):
    return {"g": group_size, "3g": 3 * group_size}.get(k, k)


def _operands(g, lead, m, k, n, group_size, with_zp, dtype, frac_zp=False):
    a = randn(g, (*lead, m, k), dtype)
    b, scales, zp = quantize_int4(g.standard_normal((k, n)), group_size, symmetric=not with_zp)
    if with_zp and frac_zp:
        zp = zp + g.uniform(-0.5, 0.5, zp.shape)
    return a, b, scales.astype(dtype), (zp.astype(dtype) if with_zp else None)


@pytest.mark.parametrize("lead,m,k,n", SHAPES)
@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("with_zp", [False, True])
@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
def test_matmul_int4_cuda_f16(lead, m, k, n, group_size, with_zp, out_dtype):
    g = rng()
    k = _k(k, group_size)
    a, b, scales, zp = _operands(g, lead, m, k, n, group_size, with_zp, np.float16)
    ref = _chain_ref(a, b, scales, zp, group_size)
    attrs = {"group_size": group_size} | ({"out_dtype": 10} if out_dtype == np.float16 else {})
    inputs = [a, b, scales] + ([zp] if with_zp else [])
    (y,) = run_op_cuda("MatmulInt4", inputs, attrs, [ref.shape], [out_dtype])
    err = rel_err(y, ref)
    assert err <= TOL[out_dtype], f"relative error {err:.2e}"


@pytest.mark.parametrize("lead,m,k,n", [((), 1, 4096, 300), ((), 1, "3g", 40), ((), 3, "3g", 13), ((), 12, "g", 40),
                                        ((2,), 40, "3g", 33), ((), 129, "g", 72), ((), 40, 2048, 264),
                                        ((), 300, 1024, 3208), ((), 1, 4224, 9000)])
@pytest.mark.parametrize("group_size", [32, 128])
@pytest.mark.parametrize("with_zp", [False, True])
@pytest.mark.parametrize("out_float", [True, False])
def test_matmul_int4_cuda_bf16(lead, m, k, n, group_size, with_zp, out_float):
    g = rng()
    k = _k(k, group_size)
    a, b, scales, zp = _operands(g, lead, m, k, n, group_size, with_zp, BF16)
    ref = _chain_ref(a, b, scales, zp, group_size)
    out_t = np.float32 if out_float else BF16
    attrs = {"group_size": group_size} | ({} if out_float else {"out_dtype": 16})
    (y,) = run_op_cuda("MatmulInt4", [a, b, scales, zp], attrs, [ref.shape], [out_t])
    err = rel_err(y, ref)
    assert err <= TOL[BF16], f"relative error {err:.2e}"


@pytest.mark.parametrize("m,k,n", [(16, 4096, 4096), (9, 14336, 4096), (16, 4096, 14336)])
@pytest.mark.parametrize("prefetch", ["1", "0"])
def test_int4_two_token_tiles_kernel_choice(m, k, n, prefetch, monkeypatch):
    """M = 9..16 (two token tiles) takes the split decode kernel, K in at most two slices on sm_90, also
    where N % 8 == 0 would let the older decode kernel run (4096 columns: 128 tiles): one launch. On
    sm_90 it prefetches A with the weights (its last template argument) where the tiles fit one wave
    of 3 blocks per SM (not 14336 columns: 448 tiles), unless KAIO_INT4_PREFETCH_A=0."""
    monkeypatch.setenv("KAIO_INT4_PREFETCH_A", prefetch)
    props = pytest.importorskip("torch").cuda.get_device_properties(0)
    tiles = (n + 31) // 32
    prefetched = prefetch == "1" and (props.major, props.minor) == (9, 0) and tiles <= 3 * props.multi_processor_count
    g = rng()
    a, b, scales, zp = _operands(g, (), m, k, n, 128, False, np.float16)
    ref = _chain_ref(a, b, scales, zp, 128)
    run = BoundRun(cuda_session(build_model("MatmulInt4", [a, b, scales], {"group_size": 128}, [np.float32])),
                   [a, b, scales], [ref.shape], [np.float32])
    (y,) = run.run()
    assert rel_err(y, ref) <= TOL[np.float32]
    ours = our_kernel_launches(run.run)
    assert list(ours.values()) == [1], ours
    name = next(iter(ours))
    assert "MatmulInt4SplitDecodeKernel" in name, ours
    assert re.search(r"MatmulInt4SplitDecodeKernel<.*, (true|false)>", name).group(1) == str(prefetched).lower(), ours


@pytest.mark.parametrize("m", [4, 48])
def test_fractional_zero_points(m):
    """Zero points need not be integers (the contract allows any value of A's type)."""
    g = rng()
    a, b, scales, zp = _operands(g, (), m, 256, 24, 64, True, np.float16, frac_zp=True)
    ref = _chain_ref(a, b, scales, zp, 64)
    (y,) = run_op_cuda("MatmulInt4", [a, b, scales, zp], {"group_size": 64}, [ref.shape], [np.float32])
    assert rel_err(y, ref) <= TOL[np.float32]


def test_large_m_once():
    g = rng()
    a, b, scales, zp = _operands(g, (), 2050, 512, 96, 128, False, np.float16)
    ref = matmul_int4(a, b, scales, None, 128)
    (y,) = run_op_cuda("MatmulInt4", [a, b, scales], {"out_dtype": 10}, [ref.shape], [np.float16])
    assert rel_err(y, ref) <= TOL[np.float16]


@pytest.mark.parametrize("m,n", [(9, 3), (40, 3), (1, 16), (9, 16), (16, 24)])  # GEMV, GEMM, decode
@pytest.mark.parametrize("group_size", [32, 128])  # decode: scales before / after the mma
@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_nibble_order_one_hot(m, n, group_size, dtype):
    """Each nibble of a word is its own K row: one-hot rows of A pick single rows of q exactly
    (each kernel pairs the codes of a word its own way; a wrong pairing moves a row)."""
    from kaio_ort.packing import pack_int4

    g = rng()
    k = 256
    q = g.integers(-8, 8, size=(k, n))
    a = np.zeros((m, k), np.float32)
    a[np.arange(m), g.choice(k, m, replace=False)] = 1.0
    rows = np.argmax(a, axis=1)  # the K row each row of A picks
    scales = np.ones((k // group_size, n), dtype)
    (y,) = run_op_cuda("MatmulInt4", [a.astype(dtype), pack_int4(q), scales], {"group_size": group_size}, [(m, n)],
                       [np.float32])
    np.testing.assert_array_equal(y, q[rows].astype(np.float32))


@cuda_graph_test("MatmulInt4")
@pytest.mark.parametrize("m", [2, 70])
def test_cuda_graph_replay_matches_eager(m):
    g = rng()
    k, n = 384, 136
    a, b, scales, zp = _operands(g, (), m, k, n, 128, True, np.float16)
    model = build_model("MatmulInt4", [a, b, scales, zp], {}, [np.float32])
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), [a, b, scales, zp], [(m, n)], [np.float32])
    first = graph_run.run()[0]  # captures the graph
    a2, b2, s2, z2 = _operands(g, (), m, k, n, 128, True, np.float16)
    graph_run.update_inputs([a2, b2, s2, z2])
    replay = graph_run.run()[0]
    eager = BoundRun(cuda_session(model), [a2, b2, s2, z2], [(m, n)], [np.float32]).run()[0]
    assert rel_err(first, matmul_int4(a, b, scales, zp)) <= TOL[np.float32]
    np.testing.assert_array_equal(replay, eager)


def test_repeated_runs_are_bitwise_identical():
    g = rng()
    a, b, scales, _ = _operands(g, (), 5, 1024, 300, 128, False, np.float16)
    run = BoundRun(cuda_session(build_model("MatmulInt4", [a, b, scales], {}, [np.float32])), [a, b, scales],
                   [(5, 300)], [np.float32])
    first = run.run()[0]
    for _ in range(3):
        np.testing.assert_array_equal(run.run()[0], first)


def test_empty_and_k_zero():
    g = rng()
    b = np.zeros((4, 0), np.uint32)
    (y,) = run_op_cuda("MatmulInt4", [randn(g, (3, 0), np.float16), b, np.zeros((0, 4), np.float16)], {},
                       [(3, 4)], [np.float32])
    np.testing.assert_array_equal(y, np.zeros((3, 4), np.float32))


def test_misaligned_a_is_refused():
    """A bound at an address that is 2-byte but not 16-byte aligned (a view into a larger buffer):
    the CUDA kernels read A in 16-byte pieces, so the op refuses it by name instead of faulting."""
    g = rng()
    m, k, n = 3, 256, 64
    a, b, scales, _ = _operands(g, (), m, k, n, 128, False, np.float16)
    run = BoundRun(cuda_session(build_model("MatmulInt4", [a, b, scales], {}, [np.float32])), [a, b, scales],
                   [(m, n)], [np.float32])
    bind_input_at_offset(run, 0, a, 2)
    with pytest.raises(Exception, match="inputs 'A' and 'B_packed' must be 16-byte aligned on CUDA"):
        run.run()


# ---- MatmulInt8 W8A16: (lead, M, K, N, group_size). The GEMV takes M <= 16 (256 columns a block,
# rows in blocks of 1, 4 or 8; K split over blocks where the columns alone do not fill the GPU: N =
# 264 / 40 split K = 4096 into 64-row slices, combined in a second pass), the tensor-core kernel
# M > 16 (128 x 128 x 32 tiles, K split over blocks when the tiles are few: M = 40 / 130 with K =
# 4096 and M = 17 with K = 1000; M = 130 row tail, N = 264 column tail). K % 8 != 0 or N % 8 != 0
# take element loads; group sizes need not be powers of two (100), 0 is per channel.
# M <= 16 with N % 16 == 0, K % 8 == 0 and group_size % 8 == 0 take the decode kernel instead (one
# m16n8k16 per 16 columns x 8 tokens, K split over a cluster's CTAs on sm_90): one token tile
# (M <= 8) or two, K not a multiple of its 32-row steps (2056, 1000, 24), group 8, long K; blocks of
# 8 warps where the 128-column tiles exceed 2/3 of the SMs (sm_90, M <= 8, no zero points: N =
# 12288 is 96 tiles, 11392 the first count over 88 on 132 SMs).
INT8_DECODE_SHAPES = [
    ((), 1, 4096, 4096, 0),
    ((), 1, 1000, 272, 8),
    ((2,), 3, 4096, 4112, 128),   # batch dims: 6 rows
    ((), 8, 2056, 2048, 0),
    ((), 9, 4096, 1024, 128),
    ((), 12, 24, 16, 8),
    ((), 16, 8192, 512, 64),
    ((), 2, 1000, 12288, 0),      # sm_90, M <= 8, no zero points: 96 / 89 column blocks, one per SM in
    ((), 1, 520, 11392, 8),       # 16-warp blocks (with zero points 4 warps); K tails of the 32-row step
]
INT8_SHAPES = INT8_DECODE_SHAPES + [
    ((), 1, 4096, 264, 0),
    ((), 1, 4096, 40, 128),
    ((), 1, 1000, 4096, 100),
    ((), 1, 100, 13, 0),          # K, N % 8 != 0: element loads
    ((), 3, 4096, 264, 32),
    ((2,), 2, 512, 1000, 64),     # batch dims: 4 rows
    ((), 4, 96, 7, 0),
    ((), 5, 512, 264, 128),       # row blocks of 8
    ((), 9, 4096, 264, 128),      # two row blocks, split K
    ((), 16, 1000, 40, 100),
    ((), 17, 1000, 13, 100),      # first M on the tensor-core kernel; K split in 4
    ((), 40, 4096, 136, 0),       # K split in 16
    ((3,), 43, 256, 136, 0),      # batch dims: 129 rows, no split
    ((), 130, 4096, 264, 128),
    ((), 301, 1024, 3216, 0),     # sm_90 wgmma GEMM (>= 66 tiles of 128 x 128), per channel, row tail
    ((), 520, 1056, 2064, 32),    # wgmma GEMM, group 32 (two scale rows a stage), K a half 64-k tile
    ((2,), 260, 1024, 2048, 128),  # wgmma GEMM, batch dims
    ((), 301, 1000, 3216, 0),     # wgmma GEMM with K % 64 != 0 per channel (with zero points: mma.sync)
    ((), 77, 4160, 2064, 64),     # wgmma GEMM in 7 K slices (17 tiles), row tail
    ((), 128, 2048, 4096, 128),   # wgmma GEMM in 4 K slices (32 tiles)
    ((), 1100, 1056, 2064, 32),   # >= 1024 rows: weights dequantised first, then the dense wgmma GEMM
]


def _int8_operands(g, lead, m, k, n, group_size, with_zp, dtype, channel_vector=False):
    a = randn(g, (*lead, m, k), dtype)
    b, scales, zp = quantize_int8(g.standard_normal((k, n)), group_size, symmetric=not with_zp)
    if group_size == 0 and channel_vector:  # [N] instead of [1, N]
        scales = scales.reshape(n)
        zp = None if zp is None else zp.reshape(n)
    return a, b, scales.astype(dtype), (zp.astype(dtype) if with_zp else None)


@pytest.mark.parametrize("lead,m,k,n,group_size", INT8_SHAPES)
@pytest.mark.parametrize("with_zp", [False, True])
@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
def test_matmul_int8_w8a16_cuda_f16(lead, m, k, n, group_size, with_zp, out_dtype):
    g = rng()
    a, b, scales, zp = _int8_operands(g, lead, m, k, n, group_size, with_zp, np.float16, channel_vector=m % 2 == 1)
    ref = chain_ref_codes(a, b, scales, zp, group_size)
    attrs = {"group_size": group_size} | ({"out_dtype": 10} if out_dtype == np.float16 else {})
    inputs = [a, b, scales] + ([zp] if with_zp else [])
    (y,) = run_op_cuda("MatmulInt8", inputs, attrs, [ref.shape], [out_dtype])
    err = rel_err(y, ref)
    assert err <= TOL[out_dtype], f"relative error {err:.2e}"
    assert rel_err(y, matmul_int8(a, b, scales, zp, group_size)) <= 1e-2  # the contract's reference


@pytest.mark.parametrize("lead,m,k,n,group_size", [((), 1, 4096, 264, 0), ((), 4, 100, 13, 0), ((), 3, 1000, 40, 100),
                                                   ((), 1, 4096, 272, 0), ((), 13, 1000, 144, 8),
                                                   ((), 40, 512, 136, 128), ((2,), 70, 96, 264, 32),
                                                   ((), 1, 1000, 12288, 0)])  # 16-warp decode blocks (sm_90)
@pytest.mark.parametrize("with_zp", [False, True])
def test_matmul_int8_w8a16_cuda_bf16(lead, m, k, n, group_size, with_zp):
    g = rng()
    a, b, scales, zp = _int8_operands(g, lead, m, k, n, group_size, with_zp, BF16)
    ref = chain_ref_codes(a, b, scales, zp, group_size)
    (y,) = run_op_cuda("MatmulInt8", [a, b, scales, zp], {"group_size": group_size, "out_dtype": 16}, [ref.shape],
                       [BF16])
    err = rel_err(y, ref)
    assert err <= TOL[BF16], f"relative error {err:.2e}"


@pytest.mark.parametrize("lead,m,k,n,group_size", INT8_DECODE_SHAPES[:5])
@pytest.mark.parametrize("decode", ["1", "0"])
def test_matmul_int8_w8a16_decode_kernel_choice(lead, m, k, n, group_size, decode, monkeypatch):
    """The decode kernel's shapes run it, one launch and nothing else of ours; KAIO_INT8_DECODE=0
    (read at each launch) puts them on the older GEMV. Both right on these shapes."""
    monkeypatch.setenv("KAIO_INT8_DECODE", decode)
    g = rng()
    a, b, scales, zp = _int8_operands(g, lead, m, k, n, group_size, True, np.float16)
    ref = chain_ref_codes(a, b, scales, zp, group_size)
    model = build_model("MatmulInt8", [a, b, scales, zp], {"group_size": group_size}, [np.float32])
    run = BoundRun(cuda_session(model), [a, b, scales, zp], [ref.shape], [np.float32])
    (y,) = run.run()
    err = rel_err(y, ref)
    assert err <= TOL[np.float32], f"relative error {err:.2e}"
    ours = our_kernel_launches(run.run)
    if decode == "1":
        assert list(ours.values()) == [1] and "MatmulInt8DecodeKernel" in next(iter(ours)), ours
    else:
        assert ours and not any("MatmulInt8DecodeKernel" in name for name in ours), ours


# The quantized ops' Hopper regimes past the decode kernels (quant_wgmma.cuh): (op, regime) ->
# ((lead, M, K, N, group size), its switch). "slices": too few 128 x 128 tiles for half the SMs, so
# the wgmma GEMM in K slices plus the combine kernel; "dequant first": from 1024 rows, the weights
# dequantised once into scratch, then the dense wgmma GEMM.
QUANT_HOPPER_CASES = {
    ("MatmulInt4", "slices"): (((), 64, 2048, 2056, 128), "KAIO_QUANT_WGMMA_SPLIT"),
    ("MatmulInt8", "slices"): (((), 77, 4160, 2064, 64), "KAIO_QUANT_WGMMA_SPLIT"),
    ("MatmulInt4", "dequant first"): (((2,), 520, 1152, 1032, 128), "KAIO_QUANT_DEQUANT_FIRST"),
    ("MatmulInt8", "dequant first"): (((), 1100, 1056, 2064, 32), "KAIO_QUANT_DEQUANT_FIRST"),
}


@pytest.mark.parametrize("op,regime", list(QUANT_HOPPER_CASES))
@pytest.mark.parametrize("on", ["1", "0"])
def test_quant_hopper_regimes(op, regime, on, monkeypatch):
    """On Hopper each regime runs its kernels, one launch each, and its switch (read at each launch)
    turns it off: no K slices -> the mma.sync GEMM; no dequantising first -> the quantized wgmma GEMM.
    Right either way."""
    require_sm90()
    (lead, m, k, n, group_size), switch = QUANT_HOPPER_CASES[op, regime]
    monkeypatch.setenv(switch, on)
    g = rng()
    if op == "MatmulInt4":
        a, b, scales, zp = _operands(g, lead, m, k, n, group_size, True, np.float16)
        ref = _chain_ref(a, b, scales, zp, group_size)
    else:
        a, b, scales, zp = _int8_operands(g, lead, m, k, n, group_size, True, np.float16)
        ref = chain_ref_codes(a, b, scales, zp, group_size)
    model = build_model(op, [a, b, scales, zp], {"group_size": group_size}, [np.float32])
    run = BoundRun(cuda_session(model), [a, b, scales, zp], [ref.shape], [np.float32])
    (y,) = run.run()
    assert rel_err(y, ref) <= TOL[np.float32]
    ours = our_kernel_launches(run.run)
    assert set(ours.values()) == {1}, ours
    wgmma = [name for name in ours if "MatmulWgmmaKernel" in name]
    if regime == "slices" and on == "1":
        assert len(ours) == 2 and len(wgmma) == 1 and any("CombineKernel" in x for x in ours), ours
    elif regime == "slices":
        assert not wgmma, ours
    elif on == "1":
        assert len(ours) == 2 and len(wgmma) == 1 and "DenseB" in wgmma[0], ours
        assert any("DequantInt" in x for x in ours), ours
    else:
        assert len(ours) == 1 and len(wgmma) == 1 and "DenseB" not in wgmma[0], ours


@pytest.mark.parametrize("n", [24, 32])  # the GEMV; the decode kernel (N % 16 == 0)
def test_int8_codes_exact(n):
    """Every int8 code (-128..127) dequantises exactly: one-hot rows of A pick single weight rows."""
    k = 256
    q = (np.arange(k * n).reshape(k, n) % 256 - 128).astype(np.int8)
    for m, dtype in ((1, np.float16), (4, np.float16), (9, np.float16), (1, BF16), (9, BF16)):
        a = np.eye(k, dtype=np.float32)[:m].astype(dtype)
        (y,) = run_op_cuda("MatmulInt8", [a, q, np.ones((1, n), dtype)], {}, [(m, n)], [np.float32])
        np.testing.assert_array_equal(y, q[:m].astype(np.float32))


@cuda_graph_test("MatmulInt8")
@pytest.mark.parametrize("m", [1, 3, 70])
def test_int8_cuda_graph_replay_and_repeat(m):
    """Capture and replay equal eager runs; repeated runs (split-K partials combined in a fixed
    order) are bitwise identical."""
    g = rng()
    k, n = 2048, 136
    a, b, scales, zp = _int8_operands(g, (), m, k, n, 128, True, np.float16)
    model = build_model("MatmulInt8", [a, b, scales, zp], {"group_size": 128}, [np.float32])
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), [a, b, scales, zp], [(m, n)], [np.float32])
    first = graph_run.run()[0]
    assert rel_err(first, chain_ref_codes(a, b, scales, zp, 128)) <= TOL[np.float32]
    a2, b2, s2, z2 = _int8_operands(g, (), m, k, n, 128, True, np.float16)
    graph_run.update_inputs([a2, b2, s2, z2])
    replay = graph_run.run()[0]
    eager = BoundRun(cuda_session(model), [a2, b2, s2, z2], [(m, n)], [np.float32])
    once = eager.run()[0]
    np.testing.assert_array_equal(replay, once)
    for _ in range(3):
        np.testing.assert_array_equal(eager.run()[0], once)


# MatmulInt8 W8A8 (int8 A and B, one f32 scale) on the CUDA EP: exact s32 sums, so Y must equal the
# float64 reference rounded as the CPU kernel rounds it (to float32, then float16), bit for bit.
# (lead dims, M, K, N). On sm_90 the TMA + wgmma GEMM takes K % 16 == 0 and N % 8 == 0 with
# 16-byte aligned A and Y (tiles: skinny 64 x 128 for M <= 64, 128 x 128, wide 128 x 256 where
# 256-row tiles would fill the SMs; K tile 128, so K = 16, 144, 1040 leave partial K tiles); every
# other shape (and sm_80-89) runs the mma.sync kernel (128 x 128 tiles, K tile 64: cp.async where
# K % 16 == 0, element loads otherwise). The transpose of B runs on 64 x 64 tiles, 16-byte rows
# where N % 16 == 0 and K % 16 == 0.
W8A8_SHAPES = [
    ((), 1, 16, 8),               # M = 1, one partial K tile (wgmma, skinny)
    ((), 1, 4096, 1000),          # decode: N % 16 != 0 (8-byte rows of B: element loads in the transpose)
    ((), 3, 33, 5),               # odd K, N: mma.sync with element loads
    ((), 7, 1, 1),                # K = 1
    ((2, 3), 5, 144, 24),         # batch dims on A (30 rows); wgmma
    ((), 65, 1040, 136),          # 128 x 128 tiles, row and column tails, partial K tile
    ((), 129, 77, 257),           # mma.sync: every edge
    ((2,), 300, 256, 3208),       # 600 rows, column tails inside a tile
    ((), 2048, 256, 2056),        # wide 128 x 256 tiles (>= one 256-row tile per SM), a 256-wide tail
    ((), 100, 4100, 64),          # K % 16 == 4: mma.sync with element loads, long K
]


def _w8a8_operands(g, lead, m, k, n, extreme=False):
    lo, hi = (-128, -127) if extreme else (-128, 128)
    a = g.integers(lo, hi, (*lead, m, k)).astype(np.int8)
    b = g.integers(lo, hi, (k, n)).astype(np.int8)
    scale = np.array(g.uniform(0.5, 2.0) * 1e-3, np.float32)
    return a, b, scale


def _w8a8_expected(a, b, scale, out_t):
    """The CPU kernel's rounding of the exact float64 result: to float32, then (float16) to float16."""
    y = matmul_int8(a, b, scale).astype(np.float32)
    return y.astype(np.float16) if out_t == np.float16 else y


@pytest.mark.parametrize("lead,m,k,n", W8A8_SHAPES)
@pytest.mark.parametrize("out_t", [np.float32, np.float16])
@pytest.mark.parametrize("wgmma", ["1", "0"])
def test_int8_w8a8_matches_the_reference_exactly(lead, m, k, n, out_t, wgmma, monkeypatch):
    """KAIO_WGMMA=0 keeps a Hopper off the int8 wgmma kernel: the mma.sync kernel (its cp.async tiles
    too) on every shape."""
    monkeypatch.setenv("KAIO_WGMMA", wgmma)
    g = rng()
    a, b, scale = _w8a8_operands(g, lead, m, k, n)
    (y,) = run_op_cuda("MatmulInt8", [a, b, scale], {"out_dtype": ONNX_TYPE[out_t]}, [(*lead, m, n)], [out_t])
    np.testing.assert_array_equal(y, _w8a8_expected(a, b, scale, out_t))


@pytest.mark.parametrize("k", [4096, 131071])
def test_int8_w8a8_extreme_sums_stay_exact(k):
    """Every product -128 * -128 = 2^14: the largest sums s32 holds (K = 2^17 - 1, the CUDA limit:
    2^31 - 2^14), on both kernels (K % 16 == 0: wgmma on sm_90; 131071: mma.sync)."""
    g = rng()
    m, n = 3, 40
    a, b, scale = _w8a8_operands(g, (), m, k, n, extreme=True)
    scale = np.array(1.0, np.float32)
    (y,) = run_op_cuda("MatmulInt8", [a, b, scale], {}, [(m, n)], [np.float32])
    np.testing.assert_array_equal(y, _w8a8_expected(a, b, scale, np.float32))


def test_int8_w8a8_k_past_the_int32_limit_is_refused():
    """K = 2^17 could overflow the s32 sums: the CUDA kernel refuses it by name (the CPU kernel,
    int64 sums, takes it)."""
    g = rng()
    a, b, scale = _w8a8_operands(g, (), 2, 1 << 17, 8)
    with pytest.raises(Exception, match="exceeds the CUDA W8A8 limit of 131071"):
        run_op_cuda("MatmulInt8", [a, b, scale], {}, [(2, 8)], [np.float32])


def test_int8_w8a8_runs_on_the_cuda_ep():
    """A W8A8 node is placed on the CUDA EP (no CPU fallback needed), and on sm_90 a shape the TMA
    path takes runs the int8 wgmma kernel (a silent fallback would pass the accuracy tests)."""
    from op_harness import session

    g = rng()
    m, k, n = 300, 1024, 3216
    a, b, scale = _w8a8_operands(g, (), m, k, n)
    model = build_model("MatmulInt8", [a, b, scale], {}, [np.float32])
    session(model, CUDA)  # CPU fallback disabled: would raise were the node assigned to the CPU EP
    run = BoundRun(cuda_session(model), [a, b, scale], [(m, n)], [np.float32])
    np.testing.assert_array_equal(run.run()[0], _w8a8_expected(a, b, scale, np.float32))
    require_sm90()
    names = launched_kernels(run.run)
    # T = int8_t: 'signed char' demangled, 'a' mangled
    assert any("MatmulWgmmaKernel" in x and ("signed char" in x or "KernelIa" in x) for x in names), names
    assert any("TransposeS8Kernel" in x for x in names), names


def test_int8_w8a8_misaligned_a():
    """A at an odd device address: the TMA path declines (16-byte bases) and the mma.sync kernel
    reads it with element loads."""
    g = rng()
    m, k, n = 70, 256, 136
    a, b, scale = _w8a8_operands(g, (), m, k, n)
    model = build_model("MatmulInt8", [a, b, scale], {}, [np.float32])
    run = BoundRun(cuda_session(model), [a, b, scale], [(m, n)], [np.float32])
    bind_input_at_offset(run, 0, a, 1)  # odd address
    np.testing.assert_array_equal(run.run()[0], _w8a8_expected(a, b, scale, np.float32))


@pytest.mark.parametrize("m", [1, 70, 600])
def test_int8_w8a8_cuda_graph_replay_and_repeat(m):
    """Capture and replay equal eager runs (the transpose's scratch and the scale read on the
    device), and repeated runs are bitwise identical."""
    g = rng()
    k, n = 1024, 264
    a, b, scale = _w8a8_operands(g, (), m, k, n)
    model = build_model("MatmulInt8", [a, b, scale], {"out_dtype": 10}, [np.float16])
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), [a, b, scale], [(m, n)], [np.float16])
    first = graph_run.run()[0]
    np.testing.assert_array_equal(first, _w8a8_expected(a, b, scale, np.float16))
    a2, b2, s2 = _w8a8_operands(g, (), m, k, n)
    graph_run.update_inputs([a2, b2, s2])
    replay = graph_run.run()[0]
    np.testing.assert_array_equal(replay, _w8a8_expected(a2, b2, s2, np.float16))
    eager = BoundRun(cuda_session(model), [a2, b2, s2], [(m, n)], [np.float16])
    for _ in range(3):
        np.testing.assert_array_equal(eager.run()[0], replay)


@pytest.mark.parametrize("op,group_size,with_zp", [("MatmulInt4", 32, True), ("MatmulInt4", 128, False),
                                                   ("MatmulInt8", 0, True), ("MatmulInt8", 128, False)])
def test_gemm_takes_the_wgmma_kernel_on_sm90(op, group_size, with_zp):
    """On Hopper the GEMM regime runs the TMA + wgmma kernel with B dequantised in shared memory
    where its tiles fill the GPU (a fallback to the mma.sync GEMM would pass the accuracy tests
    silently)."""
    require_sm90()
    g = rng()
    m, k, n = 300, 1024, 3216
    if op == "MatmulInt4":
        a, b, scales, zp = _operands(g, (), m, k, n, group_size, with_zp, np.float16)
        ref = _chain_ref(a, b, scales, zp, group_size)
    else:
        a, b, scales, zp = _int8_operands(g, (), m, k, n, group_size, with_zp, np.float16)
        ref = chain_ref_codes(a, b, scales, zp, group_size)
    inputs = [x for x in (a, b, scales, zp) if x is not None]
    run = BoundRun(cuda_session(build_model(op, inputs, {"group_size": group_size}, [np.float32])), inputs,
                   [(m, n)], [np.float32])
    names = launched_kernels(run.run)
    policy = "Int4B" if op == "MatmulInt4" else "Int8B"
    assert any("MatmulWgmmaKernel" in x and policy in x for x in names), names
    assert rel_err(run.run()[0], ref) <= TOL[np.float32]
