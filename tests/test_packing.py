"""kaio_ort.packing: exact layout conversions MatMulNBits / GPTQ / INT8 rows <-> KAIO.

(a) round trips are exact both ways; (b) the KAIO layout dequantises to the same float64 weights
as a dequantiser written here straight from each source format's spec; (c) ORT's own CPU
MatMulNBits kernel agrees with A @ (KAIO-dequantised W); (d) every ValueError rule has a row.
No kaio library and no GPU needed.
"""
import zlib

import numpy as np
import pytest

from kaio_ort.packing import (
    Int4Weights, Int8Weights, MatMulNBitsWeights, from_gptq, from_int8_rows, from_matmulnbits, to_gptq, to_int8_rows,
    to_matmulnbits, unpack_int4,
)

try:
    from kaio_ort.reference import quant as _quant
except ImportError:  # written concurrently by another engineer
    _quant = None


# ------------------------------------------------------------------------------------------------
# float64 dequantisers written from each format's spec (independent of packing.py's tricks)
# ------------------------------------------------------------------------------------------------

def mnb_dequant(B, scales, zero_points, K, N, bits, block_size):
    """MatMulNBits -> w [K, N] float64: w[n, k] = (u[n, k] - z[n, k/bs]) * scale[n, k/bs]."""
    kb = -(-K // block_size)
    k = np.arange(K)
    blk, r = k // block_size, k % block_size
    if bits == 4:  # two values per byte, low nibble = even k
        u = (B[:, blk, r // 2] >> (4 * (r % 2))) & 0xF
    else:
        u = B[:, blk, r]
    sc = np.asarray(scales, np.float64).reshape(N, kb)
    if zero_points is None:
        z = np.full((N, kb), 2 ** (bits - 1), np.float64)
    elif zero_points.dtype == np.uint8:  # packed per column, padded to whole bytes
        zb = -(-kb * bits // 8)
        zz = zero_points.reshape(N, zb)
        j = np.arange(kb)
        z = ((zz[:, j // 2] >> (4 * (j % 2))) & 0xF) if bits == 4 else zz[:, j]
    else:
        z = np.asarray(zero_points, np.float64).reshape(N, kb)
    return ((u.astype(np.float64) - z[:, blk]) * sc[:, blk]).T


def gptq_dequant(qweight, qzeros, scales, g_idx, bits, fmt):
    """GPTQ -> w [K, N] float64: w[k, n] = (u[k, n] - z[g_idx[k], n]) * scales[g_idx[k], n]."""
    f, mask = 32 // bits, (1 << bits) - 1
    qw, qz = qweight.view(np.uint32), qzeros.view(np.uint32)
    K, N = qw.shape[0] * f, qw.shape[1]
    k, n = np.arange(K)[:, None], np.arange(N)[None, :]
    u = (qw[k // f, n] >> (bits * (k % f))) & mask
    zz = ((qz[:, n[0] // f] >> (bits * (n[0] % f))) & mask).astype(np.int64) + (1 if fmt == "v1" else 0)
    g = np.asarray(g_idx)
    return (u.astype(np.float64) - zz[g]) * np.asarray(scales, np.float64)[g]


def rows_dequant(q, scales, zero_points, group_size):
    """[N, K] rows -> w [K, N]: w[n, k] = (q[n, k] - z[n, k/g]) * s[n, k/g]."""
    N, K = q.shape
    G = K // group_size if group_size else 1
    idx = np.arange(K) // group_size if group_size else np.zeros(K, int)
    s = np.asarray(scales, np.float64).reshape(N, G)
    default = 128 if q.dtype == np.uint8 else 0
    z = np.full((N, G), default, np.float64) if zero_points is None else np.asarray(zero_points, np.float64).reshape(N, G)
    return ((q.astype(np.float64) - z[:, idx]) * s[:, idx]).T


def kaio_dequant(w):
    """KAIO layout -> w [K, N] float64: w = (q - zp[k/g]) * scale[k/g] (kaio_ort.reference.quant's
    dequantisers when present, else the same formula here)."""
    if _quant is not None:
        f = _quant.dequantize_int4 if isinstance(w, Int4Weights) else _quant.dequantize_int8
        return np.asarray(f(*w[:3], group_size=w.group_size), np.float64)
    q = unpack_int4(w.b_packed) if isinstance(w, Int4Weights) else w.b
    K = q.shape[0]
    idx = np.arange(K) // w.group_size if w.group_size else np.zeros(K, int)
    sc = np.asarray(w.scales, np.float64).reshape(-1, q.shape[1])
    zp = 0.0 if w.zero_points is None else np.asarray(w.zero_points, np.float64).reshape(-1, q.shape[1])[idx]
    return (q.astype(np.float64) - zp) * sc[idx]


# ------------------------------------------------------------------------------------------------
# Random inputs
# ------------------------------------------------------------------------------------------------

def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _scales(rng, shape, dtype):
    return (rng.uniform(0.01, 1.0, shape) * rng.choice([-1, 1], shape)).astype(dtype)


def make_mnb(rng, K, N, bits, bs, zp_kind, dtype=np.float16, random_padding=False):
    """Random MatMulNBits weights; padding (B's last block, odd zero-point nibbles) canonical
    (2^(bits-1), as ORT's quantizer and to_matmulnbits write it) unless random_padding."""
    kb, blob, default = -(-K // bs), bs * bits // 8, 2 ** (bits - 1)
    B = rng.integers(0, 256, (N, kb, blob), dtype=np.uint8)
    if K % bs and not random_padding:  # 8-bit, one padded block
        B.reshape(N, kb * blob)[:, K:] = default
    scales = _scales(rng, N * kb, dtype)
    zp = None
    if zp_kind in ("u8", "u8_default"):
        z = rng.integers(0, 2 ** bits, (N, kb)) if zp_kind == "u8" else np.full((N, kb), default)
        if bits == 4:
            if kb % 2:
                pad = rng.integers(0, 16, (N, 1)) if random_padding else np.full((N, 1), 8)
                z = np.concatenate([z, pad], 1)
            zp = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
        else:
            zp = z.astype(np.uint8).reshape(-1)
    elif zp_kind == "float":  # non-integer, so to_matmulnbits(auto) keeps them float
        zp = (rng.integers(default // 2, 2 * default, N * kb) + rng.choice([0.25, 0.5, 0.75], N * kb)).astype(dtype)
    return B, scales, zp


def make_kaio(rng, K, N, bits, g, zp_kind, dtype=np.float16, zp_range=None):
    G = K // g if g else 1
    if bits == 4:
        b = rng.integers(0, 2 ** 32, (N, K // 8), dtype=np.uint32)
        lo, hi = zp_range or (-8, 7)
    else:
        b = rng.integers(-128, 128, (K, N), dtype=np.int8)
        lo, hi = zp_range or (-128, 127)
    zp = None
    if zp_kind == "int":
        zp = rng.integers(lo, hi + 1, (G, N)).astype(dtype)
    elif zp_kind == "frac":
        zp = (rng.integers(lo, hi, (G, N)) + 0.25).astype(dtype)
    cls = Int4Weights if bits == 4 else Int8Weights
    return cls(b, _scales(rng, (G, N), dtype), zp, g)


def make_gptq(rng, K, N, bits, g, fmt, zp_kind, dtype=np.float16):
    f = 32 // bits
    G = 1 if g == -1 else K // g
    qweight = rng.integers(0, 2 ** 32, (K // f, N), dtype=np.uint32).view(np.int32)
    if zp_kind == "sym":
        stored = np.full((G, N), 2 ** (bits - 1) - (1 if fmt == "v1" else 0))
    else:
        stored = rng.integers(0, 2 ** bits, (G, N))
    shifts = (np.arange(f) * bits).astype(np.uint32)
    qzeros = np.bitwise_or.reduce(stored.reshape(G, N // f, f).astype(np.uint32) << shifts, -1).astype(np.uint32).view(np.int32)
    g_idx = (np.arange(K) // (K if g == -1 else g)).astype(np.int32)
    return qweight, qzeros, _scales(rng, (G, N), dtype), g_idx


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def _same_weights(x, y):
    assert type(x) is type(y) and x.group_size == y.group_size
    for a, b in zip(x[:3], y[:3]):
        assert _same(a, b), (a, b)


# ------------------------------------------------------------------------------------------------
# MatMulNBits
# ------------------------------------------------------------------------------------------------

# (K, N, bits, block_size): k_blocks odd in several rows (zero-point padding); 8-bit block >= K
# is per channel (K = 100: one padded block).
MNB_SHAPES = [
    (96, 5, 4, 32), (64, 3, 4, 32), (192, 7, 4, 64), (128, 16, 4, 64), (384, 4, 4, 128), (256, 9, 4, 128),
    (96, 5, 8, 32), (128, 6, 8, 16), (192, 3, 8, 64), (384, 2, 8, 128), (64, 5, 8, 64), (100, 4, 8, 128),
]
ZP_KINDS = [None, "u8", "u8_default", "float"]


@pytest.mark.parametrize("zp_kind", ZP_KINDS)
@pytest.mark.parametrize("K,N,bits,bs", MNB_SHAPES)
def test_matmulnbits_round_trip_and_values(K, N, bits, bs, zp_kind):
    rng = _rng("mnb", K, N, bits, bs, zp_kind)
    B, scales, zp = make_mnb(rng, K, N, bits, bs, zp_kind)
    kaio = from_matmulnbits(B, scales, zp, K=K, N=N, block_size=bs, bits=bits)
    assert isinstance(kaio, Int4Weights if bits == 4 else Int8Weights)
    per_channel = bits == 8 and bs >= K
    assert kaio.group_size == (0 if per_channel else bs)
    G = 1 if per_channel else K // bs
    assert kaio.scales.shape == (G, N) and kaio.scales.dtype == scales.dtype
    assert (kaio.zero_points is None) == (zp_kind in (None, "u8_default"))
    if kaio.zero_points is not None:
        assert kaio.zero_points.shape == (G, N) and kaio.zero_points.dtype == scales.dtype
    if bits == 4:
        assert kaio.b_packed.dtype == np.uint32 and kaio.b_packed.shape == (N, K // 8)
    else:
        assert kaio.b.dtype == np.int8 and kaio.b.shape == (K, N)
    # (b) the same weights, element for element
    np.testing.assert_array_equal(kaio_dequant(kaio), mnb_dequant(B, scales, zp, K, N, bits, bs))
    # (a) back to MatMulNBits: identical bytes (the default zero points come back as None)
    back = to_matmulnbits(*kaio[:3], group_size=kaio.group_size, bits=bits)
    assert back.attributes() == {"K": K, "N": N, "bits": bits, "block_size": bs}
    assert _same(back.B, B) and _same(back.scales, scales)
    assert _same(back.zero_points, None if zp_kind == "u8_default" else zp)


@pytest.mark.parametrize("zp_kind", [None, "int", "frac"])
@pytest.mark.parametrize("K,N,bits,g", [(96, 5, 4, 32), (192, 7, 4, 64), (256, 3, 4, 128),
                                        (96, 5, 8, 32), (128, 3, 8, 16), (100, 4, 8, 0), (64, 6, 8, 0)])
def test_kaio_to_matmulnbits_round_trip(K, N, bits, g, zp_kind):
    rng = _rng("kaio-mnb", K, N, bits, g, zp_kind)
    kaio = make_kaio(rng, K, N, bits, g, zp_kind)
    m = to_matmulnbits(*kaio[:3], group_size=g, bits=bits)
    if zp_kind is not None:
        assert m.zero_points.dtype == (np.uint8 if zp_kind == "int" else kaio.scales.dtype)
    np.testing.assert_array_equal(mnb_dequant(m.B, m.scales, m.zero_points, K, N, bits, m.block_size), kaio_dequant(kaio))
    _same_weights(from_matmulnbits(m.B, m.scales, m.zero_points, **m.attributes()), kaio)


def test_matmulnbits_padding_and_2d_forms_ignored():
    """Garbage in the zero-point padding nibble / B's padded tail is ignored; 2-D scales and
    zero points (older ORT exports) give the same result; identity g_idx is accepted."""
    for K, N, bits, bs in [(96, 5, 4, 32), (100, 3, 8, 128)]:
        rng = _rng("pad", K, bits)
        B, scales, zp = make_mnb(rng, K, N, bits, bs, "u8", random_padding=True)
        ref = mnb_dequant(B, scales, zp, K, N, bits, bs)
        kb = -(-K // bs)
        for sc, z in [(scales, zp), (scales.reshape(N, kb), zp.reshape(N, -1))]:
            w = from_matmulnbits(B, sc, z, K=K, N=N, block_size=bs, bits=bits, g_idx=np.arange(K) // bs)
            np.testing.assert_array_equal(kaio_dequant(w), ref)


def test_float_zero_points_that_are_integers_pack_to_uint8():
    rng = _rng("fz")
    B, scales, _ = make_mnb(rng, 64, 4, 4, 32, None)
    zf = rng.integers(0, 16, 8).astype(np.float16)
    w = from_matmulnbits(B, scales, zf, K=64, N=4, block_size=32)
    m = to_matmulnbits(*w[:3], group_size=32)
    assert m.zero_points.dtype == np.uint8
    np.testing.assert_array_equal(mnb_dequant(m.B, m.scales, m.zero_points, 64, 4, 4, 32),
                                  mnb_dequant(B, scales, zf, 64, 4, 4, 32))
    mf = to_matmulnbits(*w[:3], group_size=32, zero_points_format="float")
    assert _same(mf.zero_points, zf)


# ------------------------------------------------------------------------------------------------
# (c) ORT's own MatMulNBits (CPU) as ground truth
# ------------------------------------------------------------------------------------------------

try:
    import onnx  # noqa: F401
    import onnxruntime as ort
except ImportError:  # only the ORT ground-truth tests need them
    ort = None
needs_ort = pytest.mark.skipif(ort is None, reason="needs onnx and onnxruntime")
ORT_VERSION = tuple(int(x) for x in ort.__version__.split(".")[:2]) if ort else (0, 0)


def _run_matmulnbits(A, m):
    from onnx import TensorProto, helper, numpy_helper
    M, K = A.shape
    inits = [numpy_helper.from_array(m.B, "B"), numpy_helper.from_array(m.scales, "scales")]
    inputs = ["A", "B", "scales"]
    if m.zero_points is not None:
        inits.append(numpy_helper.from_array(m.zero_points, "zero_points"))
        inputs.append("zero_points")
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft", **m.attributes())
    graph = helper.make_graph([node], "mnb", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [M, K])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [M, m.N])], inits)
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17),
                                                                   helper.make_opsetid("com.microsoft", 1)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"A": A})[0]


ORT_CASES = [  # (K, N, bits, block_size, zp_kind); odd k_blocks: 96/32, 192/64, 384/128
    (96, 5, 4, 32, None), (96, 5, 4, 32, "u8"), (192, 7, 4, 64, "u8"), (256, 6, 4, 64, None),
    (384, 4, 4, 128, "u8"), (256, 9, 4, 128, None), (96, 3, 4, 32, "float"),
    (96, 5, 8, 32, None), (96, 5, 8, 32, "u8"), (192, 3, 8, 64, "u8"), (384, 2, 8, 128, "u8"),
    (256, 4, 8, 128, None), (100, 4, 8, 128, "u8"),
]


@needs_ort
@pytest.mark.parametrize("K,N,bits,bs,zp_kind", ORT_CASES)
def test_against_ort_matmulnbits(K, N, bits, bs, zp_kind):
    if bits == 8 and ORT_VERSION < (1, 20):
        pytest.skip(f"onnxruntime {ort.__version__}'s MatMulNBits CPU kernel takes bits=4 only")
    rng = _rng("ort", K, N, bits, bs, zp_kind)
    B, scales, zp = make_mnb(rng, K, N, bits, bs, zp_kind, dtype=np.float32, random_padding=True)
    kaio = from_matmulnbits(B, scales, zp, K=K, N=N, block_size=bs, bits=bits)
    A = rng.standard_normal((3, K)).astype(np.float32)
    W = kaio_dequant(kaio)
    ref = A.astype(np.float64) @ W
    bound = np.abs(A.astype(np.float64)) @ np.abs(W)
    for m in [to_matmulnbits(*kaio[:3], group_size=kaio.group_size, bits=bits),
              MatMulNBitsWeights(B, scales, zp, K, N, bits, bs)]:  # and the original (padding garbage)
        Y = _run_matmulnbits(A, m)
        assert np.all(np.abs(Y - ref) <= 1e-5 * bound + 1e-6), np.max(np.abs(Y - ref) / (bound + 1e-30))


@needs_ort
def test_ort_quantizer_output_round_trips_byte_for_byte():
    """ORT's own 4-/8-bit blockwise quantizer: odd k_blocks zero points are padded with 8."""
    pb = pytest.importorskip("onnxruntime.capi._pybind_state")
    if not hasattr(pb, "quantize_matmul_8bits"):
        pytest.skip(f"onnxruntime {ort.__version__} has no 4-/8-bit blockwise quantizer bindings")
    rng = _rng("ortq")
    K, N, bs = 96, 6, 32
    kb = K // bs
    w = rng.standard_normal((K, N)).astype(np.float32)
    for bits, quantize in [(4, pb.quantize_matmul_4bits), (8, pb.quantize_matmul_8bits)]:
        B = np.zeros((N, kb, bs * bits // 8), np.uint8)
        scales = np.zeros(N * kb, np.float32)
        zp = np.zeros(N * (-(-kb * bits // 8)), np.uint8)
        quantize(B, w, scales, zp, bs, N, K, False)
        kaio = from_matmulnbits(B, scales, zp, K=K, N=N, block_size=bs, bits=bits)
        back = to_matmulnbits(*kaio[:3], group_size=bs, bits=bits)
        assert _same(back.B, B) and _same(back.scales, scales) and _same(back.zero_points, zp)
        assert np.max(np.abs(kaio_dequant(kaio) - w)) <= np.abs(scales).max() * 0.51 + 1e-6


# ------------------------------------------------------------------------------------------------
# GPTQ
# ------------------------------------------------------------------------------------------------

GPTQ_SHAPES = [  # (K, N, bits, group_size)
    (64, 8, 4, 32), (128, 16, 4, 64), (384, 24, 4, 128), (128, 8, 4, -1),
    (96, 8, 8, 32), (128, 4, 8, 64), (72, 12, 8, -1),
]


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("zp_kind", ["sym", "rand"])
@pytest.mark.parametrize("K,N,bits,g", GPTQ_SHAPES)
def test_gptq_round_trip_and_values(K, N, bits, g, zp_kind, fmt):
    rng = _rng("gptq", K, N, bits, g, zp_kind, fmt)
    qweight, qzeros, scales, g_idx = make_gptq(rng, K, N, bits, g, fmt, zp_kind)
    for gi in (None, g_idx):
        kaio = from_gptq(qweight, qzeros, scales, gi, bits=bits, group_size=g, format=fmt)
        assert (kaio.zero_points is None) == (zp_kind == "sym")
        np.testing.assert_array_equal(kaio_dequant(kaio), gptq_dequant(qweight, qzeros, scales, g_idx, bits, fmt))
    assert kaio.group_size == (K if g == -1 and bits == 4 else 0 if g == -1 else g)
    back = to_gptq(*kaio[:3], group_size=kaio.group_size, bits=bits, format=fmt)
    assert _same(back.qweight, qweight) and _same(back.qzeros, qzeros) and _same(back.scales, scales)
    assert _same(back.g_idx, g_idx) and back.bits == bits and back.format == fmt
    assert back.group_size == (K if g == -1 and bits == 4 else g)


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("zp_kind", [None, "int"])
@pytest.mark.parametrize("K,N,bits,g", [(64, 8, 4, 32), (256, 16, 4, 128), (96, 8, 8, 32), (40, 4, 8, 0)])
def test_kaio_to_gptq_round_trip(K, N, bits, g, zp_kind, fmt):
    rng = _rng("kaio-gptq", K, N, bits, g, zp_kind, fmt)
    d = 2 ** (bits - 1)
    kaio = make_kaio(rng, K, N, bits, g, zp_kind, zp_range=(1 - d, d) if fmt == "v1" else (-d, d - 1))
    gq = to_gptq(*kaio[:3], group_size=g, bits=bits, format=fmt)
    assert gq.qweight.dtype == np.int32 and gq.qzeros.dtype == np.int32
    assert gq.qweight.shape == (K * bits // 32, N) and gq.qzeros.shape == (K // g if g else 1, N * bits // 32)
    np.testing.assert_array_equal(gptq_dequant(gq.qweight, gq.qzeros, gq.scales, gq.g_idx, bits, fmt), kaio_dequant(kaio))
    _same_weights(from_gptq(gq.qweight, gq.qzeros, gq.scales, gq.g_idx, bits=bits, group_size=gq.group_size, format=fmt), kaio)


def test_gptq_v1_v2_differ_by_one():
    rng = _rng("v1v2")
    qweight, qzeros, scales, _ = make_gptq(rng, 64, 8, 4, 32, "v2", "rand")
    a = from_gptq(qweight, qzeros, scales, group_size=32, format="v1")
    b = from_gptq(qweight, qzeros, scales, group_size=32, format="v2")
    np.testing.assert_array_equal(a.zero_points.astype(np.float64), b.zero_points.astype(np.float64) + 1)


# ------------------------------------------------------------------------------------------------
# INT8 rows [N, K]
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("zp_kind", [None, "int", "float"])
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("N,K,g", [(5, 64, 0), (3, 96, 32), (4, 100, 0), (7, 128, 128)])
def test_int8_rows(N, K, g, dtype, zp_kind):
    rng = _rng("rows", N, K, g, np.dtype(dtype).name, zp_kind)
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, (N, K), dtype=dtype)
    G = K // g if g else 1
    shape = (N,) if not g else (N, G)
    scales = _scales(rng, shape, np.float16)
    zp = None
    if zp_kind == "int":
        zp = rng.integers(info.min, info.max + 1, shape, dtype=dtype)
    elif zp_kind == "float":
        zp = (rng.integers(info.min, info.max, shape) + 0.5).astype(np.float16)
    w = from_int8_rows(q, scales, zp, group_size=g)
    assert w.b.shape == (K, N) and w.scales.shape == (G, N)
    np.testing.assert_array_equal(kaio_dequant(w), rows_dequant(q, scales, zp, g))
    back = to_int8_rows(*w[:3], group_size=g, dtype=dtype)
    assert _same(back.q, q) and _same(back.scales, scales) and _same(back.zero_points, zp)
    _same_weights(from_int8_rows(*back[:3], group_size=g), w)


def test_int8_rows_default_zero_points_drop():
    q = np.zeros((3, 32), np.uint8)
    w = from_int8_rows(q, np.ones(3, np.float16), np.full(3, 128, np.uint8))
    assert w.zero_points is None and np.all(w.b == -128)


# ------------------------------------------------------------------------------------------------
# (d) every ValueError rule
# ------------------------------------------------------------------------------------------------

def _mnb_args(K=64, N=4, bits=4, bs=32, zp_kind=None):
    B, s, z = make_mnb(np.random.default_rng(0), K, N, bits, bs, zp_kind)
    return B, s, z


_B4, _S4, _Z4 = _mnb_args(zp_kind="u8")
_B8, _S8, _Z8 = _mnb_args(bits=8, zp_kind="u8")
_K4 = make_kaio(np.random.default_rng(1), 64, 8, 4, 32, "int")
_K8 = make_kaio(np.random.default_rng(2), 64, 8, 8, 32, "int")
_GQ = make_gptq(np.random.default_rng(3), 64, 8, 4, 32, "v1", "rand")
_GQ8 = make_gptq(np.random.default_rng(4), 64, 8, 8, 32, "v1", "rand")
_Q8 = np.zeros((4, 64), np.int8)


def _mnb(**kw):
    args = dict(B=_B4, scales=_S4, zero_points=_Z4, K=64, N=4, block_size=32, bits=4)
    args.update(kw)
    return lambda: from_matmulnbits(**args)


def _mnb8(**kw):
    args = dict(B=_B8, scales=_S8, zero_points=_Z8, K=64, N=4, block_size=32, bits=8)
    args.update(kw)
    return lambda: from_matmulnbits(**args)


ERRORS = [
    # from_matmulnbits
    ("mnb bits", _mnb(bits=3), r"from_matmulnbits: bits must be 4 or 8"),
    ("mnb K not int", _mnb(K=64.0), r"K must be an integer"),
    ("mnb N negative", _mnb(N=-1), r"N must be >= 0"),
    ("mnb block not pow2", _mnb8(block_size=48), r"block_size must be a power of two >= 16"),
    ("mnb block < 16", _mnb8(block_size=8), r"block_size must be a power of two >= 16"),
    ("mnb int4 block 16", _mnb(block_size=16), r"block_size must be 32, 64 or 128 for 4 bits"),
    ("mnb int4 block 256", _mnb(block_size=256), r"block_size must be 32, 64 or 128 for 4 bits"),
    ("mnb K % block (4b)", _mnb(K=80), r"K \(80\) must be a multiple of block_size \(32\)"),
    ("mnb K % block (8b)", _mnb8(K=80), r"K \(80\) must be a multiple of block_size \(32\)"),
    ("mnb act-order g_idx", _mnb(g_idx=np.arange(64)[::-1] // 32), r"g_idx must be the identity grouping k // 32"),
    ("mnb g_idx shape", _mnb(g_idx=np.zeros(63, np.int32)), r"g_idx must have shape \[64\]"),
    ("mnb g_idx dtype", _mnb(g_idx=np.zeros(64)), r"g_idx must be integers"),
    ("mnb B dtype", _mnb(B=_B4.view(np.int8)), r"B must be uint8"),
    ("mnb B shape", _mnb(B=_B4.reshape(4, -1)), r"B must have shape \[4, 2, 16\]"),
    ("mnb scales dtype", _mnb(scales=np.ones(8, np.int32)), r"scales must have a floating-point dtype"),
    ("mnb scales shape", _mnb(scales=_S4[:7]), r"scales must have shape \[8\] or \[4, 2\]"),
    ("mnb zp uint8 shape", _mnb(zero_points=np.zeros(8, np.uint8)), r"zero_points \(uint8, packed\) must have shape \[4\] or \[4, 1\]"),
    ("mnb zp float shape", _mnb(zero_points=np.zeros(4, np.float16)), r"zero_points \(float\) must have shape \[8\]"),
    ("mnb zp dtype", _mnb(zero_points=np.zeros(8, np.int32)), r"zero_points must be uint8 \(packed\) or scales' dtype"),
    # to_matmulnbits
    ("to_mnb bits", lambda: to_matmulnbits(*_K4[:3], group_size=32, bits=2), r"to_matmulnbits: bits must be 4 or 8"),
    ("to_mnb zp format", lambda: to_matmulnbits(*_K4[:3], group_size=32, zero_points_format="int"), r"zero_points_format must be"),
    ("to_mnb int4 b dtype", lambda: to_matmulnbits(_K8.b, _K4.scales, group_size=32), r"b must be uint32 \[N, K/8\]"),
    ("to_mnb int4 group", lambda: to_matmulnbits(*_K4[:3], group_size=16), r"group_size must be 32, 64 or 128 for bits 4"),
    ("to_mnb int4 K % g", lambda: to_matmulnbits(_K4.b_packed[:, :6], np.ones((1, 8), np.float16), group_size=32), r"K \(48\) must be a multiple of group_size \(32\)"),
    ("to_mnb int8 b dtype", lambda: to_matmulnbits(_K4.b_packed, _K8.scales, group_size=32, bits=8), r"b must be int8 \[K, N\]"),
    ("to_mnb int8 group", lambda: to_matmulnbits(_K8.b[:48], _K8.scales[:1], group_size=48, bits=8), r"group_size must be a power of two >= 16 .* or 0"),
    ("to_mnb int8 K % g", lambda: to_matmulnbits(_K8.b[:48], _K8.scales[:1], group_size=32, bits=8), r"K \(48\) must be a multiple of group_size \(32\)"),
    ("to_mnb scales shape", lambda: to_matmulnbits(_K4.b_packed, _K4.scales.T, group_size=32), r"scales must have shape \[2, 8\]"),
    ("to_mnb zp shape", lambda: to_matmulnbits(_K4.b_packed, _K4.scales, _K4.zero_points[:1], group_size=32), r"zero_points must have shape \[2, 8\]"),
    ("to_mnb zp not integral", lambda: to_matmulnbits(_K4.b_packed, _K4.scales, _K4.zero_points + np.float16(0.5), group_size=32, zero_points_format="uint8"), r"zero_points must map to integer zero points in \[0, 15\]"),
    ("to_mnb zp out of range", lambda: to_matmulnbits(_K4.b_packed, _K4.scales, np.full((2, 8), 9, np.float16), group_size=32, zero_points_format="uint8"), r"in \[0, 15\].*got 17"),
    # from_gptq
    ("gptq bits", lambda: from_gptq(*_GQ, bits=2, group_size=32), r"from_gptq: bits must be 4 or 8"),
    ("gptq format", lambda: from_gptq(*_GQ, group_size=32, format="v3"), r"format must be 'v1' .* or 'v2'"),
    ("gptq qweight dtype", lambda: from_gptq(_GQ[0].astype(np.int64), *_GQ[1:], group_size=32), r"qweight must be a 2-D int32"),
    ("gptq qzeros dtype", lambda: from_gptq(_GQ[0], _GQ[1].astype(np.float32), *_GQ[2:], group_size=32), r"qzeros must be a 2-D int32"),
    ("gptq group 0", lambda: from_gptq(*_GQ, group_size=0), r"group_size must be > 0, or -1"),
    ("gptq group < -1", lambda: from_gptq(*_GQ[:3], group_size=-2), r"group_size must be >= -1"),
    ("gptq int4 group 16", lambda: from_gptq(*_GQ[:3], group_size=16), r"group_size must be 32, 64 or 128 for 4 bits"),
    ("gptq int4 per-channel K", lambda: from_gptq(np.zeros((32, 8), np.int32), np.zeros((1, 1), np.int32), np.ones((1, 8), np.float16), group_size=-1), r"-1 means K = 256\), got 256"),
    ("gptq K % g", lambda: from_gptq(*_GQ8[:3], bits=8, group_size=48), r"K \(64\) must be a multiple of group_size \(48\)"),
    ("gptq N % 8", lambda: from_gptq(np.zeros((8, 12), np.int32), np.zeros((2, 1), np.int32), np.ones((2, 12), np.float16), group_size=32), r"N \(12\) must be a multiple of 8"),
    ("gptq qzeros shape", lambda: from_gptq(_GQ[0], _GQ[1][:1], *_GQ[2:], group_size=32), r"qzeros must have shape \[2, 1\]"),
    ("gptq scales shape", lambda: from_gptq(_GQ[0], _GQ[1], _GQ[2][:1], _GQ[3], group_size=32), r"scales must have shape \[2, 8\]"),
    ("gptq scales dtype", lambda: from_gptq(_GQ[0], _GQ[1], _GQ[1], _GQ[3], group_size=32), r"scales must have a floating-point dtype"),
    ("gptq act-order", lambda: from_gptq(*_GQ[:3], np.random.default_rng(0).permutation(_GQ[3]), group_size=32), r"g_idx must be the identity grouping k // 32 \(act-order"),
    # to_gptq
    ("to_gptq bits", lambda: to_gptq(*_K4[:3], group_size=32, bits=3), r"to_gptq: bits must be 4 or 8"),
    ("to_gptq format", lambda: to_gptq(*_K4[:3], group_size=32, format="exllama"), r"format must be 'v1'"),
    ("to_gptq int4 b dtype", lambda: to_gptq(_K8.b, _K4.scales, group_size=32), r"b must be uint32 \[N, K/8\]"),
    ("to_gptq int8 b dtype", lambda: to_gptq(_K4.b_packed, _K8.scales, group_size=32, bits=8), r"b must be int8 \[K, N\]"),
    ("to_gptq int4 group", lambda: to_gptq(*_K4[:3], group_size=0), r"group_size must be 32, 64 or 128 for bits 4"),
    ("to_gptq K % g", lambda: to_gptq(_K8.b[:48], _K8.scales[:1], group_size=32, bits=8), r"K \(48\) must be a multiple of group_size \(32\)"),
    ("to_gptq N % f", lambda: to_gptq(_K8.b[:, :6], _K8.scales[:, :6], group_size=32, bits=8), r"N \(6\) must be a multiple of 4"),
    ("to_gptq scales shape", lambda: to_gptq(_K4.b_packed, _K4.scales[:1], group_size=32), r"scales must have shape \[2, 8\]"),
    ("to_gptq zp shape", lambda: to_gptq(_K4.b_packed, _K4.scales, _K4.zero_points.T, group_size=32), r"zero_points must have shape \[2, 8\]"),
    ("to_gptq v1 z = 0", lambda: to_gptq(_K4.b_packed, _K4.scales, np.full((2, 8), -8, np.float16), group_size=32), r"in \[1, 16\] \(GPTQ v1 stores z - 1"),
    ("to_gptq v2 z = 16", lambda: to_gptq(_K4.b_packed, _K4.scales, np.full((2, 8), 8, np.float16), group_size=32, format="v2"), r"in \[0, 15\] \(GPTQ v2"),
    ("to_gptq zp fraction", lambda: to_gptq(_K4.b_packed, _K4.scales, np.full((2, 8), 0.5, np.float16), group_size=32), r"integer zero points"),
    # from_int8_rows / to_int8_rows
    ("rows q dtype", lambda: from_int8_rows(_Q8.astype(np.int16), np.ones(4, np.float16)), r"from_int8_rows: q must be int8 or uint8 \[N, K\]"),
    ("rows K % g", lambda: from_int8_rows(_Q8, np.ones((4, 2), np.float16), group_size=48), r"K \(64\) must be a multiple of group_size \(48\)"),
    ("rows scales shape", lambda: from_int8_rows(_Q8, np.ones((4, 3), np.float16), group_size=32), r"scales must have shape \[4, 2\]"),
    ("rows scales dtype", lambda: from_int8_rows(_Q8, np.ones(4, np.int8)), r"scales must have a floating-point dtype"),
    ("rows zp dtype", lambda: from_int8_rows(_Q8, np.ones(4, np.float16), np.zeros(4, np.int32)), r"zero_points must be q's dtype int8 or a float dtype"),
    ("rows zp shape", lambda: from_int8_rows(_Q8, np.ones(4, np.float16), np.zeros(3, np.int8)), r"zero_points must have shape \[4, 1\] or \[4\]"),
    ("to_rows dtype", lambda: to_int8_rows(*_K8[:3], group_size=32, dtype=np.int16), r"dtype must be int8 or uint8"),
    ("to_rows format", lambda: to_int8_rows(*_K8[:3], group_size=32, zero_points_format="uint8"), r"zero_points_format must be 'auto', 'int' or 'float'"),
    ("to_rows b dtype", lambda: to_int8_rows(_K4.b_packed, _K8.scales, group_size=32), r"b must be int8 \[K, N\]"),
    ("to_rows K % g", lambda: to_int8_rows(*_K8[:3], group_size=48), r"K \(64\) must be a multiple of group_size \(48\)"),
    ("to_rows scales shape", lambda: to_int8_rows(_K8.b, _K8.scales[:1], group_size=32), r"scales must have shape \[2, 8\]"),
    ("to_rows zp shape", lambda: to_int8_rows(_K8.b, _K8.scales, _K8.zero_points[:1], group_size=32), r"zero_points must have shape \[2, 8\]"),
    ("to_rows zp not int", lambda: to_int8_rows(_K8.b, _K8.scales, _K8.zero_points + np.float16(0.5), group_size=32, zero_points_format="int"), r"integer zero points in \[-128, 127\]"),
]


@pytest.mark.parametrize("call,match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
