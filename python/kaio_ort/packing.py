"""Weight layouts of the com.kaio quantized ops, and conversions from the layouts users have.

KAIO's INT4 layout (MatmulInt4, QkvProjectInt4; kaio-contracts.md):
    B_packed uint32 [N, K/8] (K/8 words per output column, 4 * N * K/8 bytes): element (k, n) is
    nibble k % 8 (bits 4*(k%8) .. 4*(k%8)+3, least significant first) of word [n, k // 8]; signed
    two's complement in [-8, 7]. Scales [K/group, N] (and zero points, same shape) in A's type:
    w[k, n] = (q[k, n] - zp[k // group, n]) * scale[k // group, n].
KAIO's INT8 layout (MatmulInt8, QkvProjectInt8): int8 [K, N] row-major (K * N bytes); W8A16
    scales [K/group, N] (or [1, N] per channel, group 0) and zero points likewise:
    w[k, n] = (b[k, n] - zp[k // group, n]) * scale[k // group, n].

Conversions (each exact on the integer codes; round trips give back the same arrays):
    from_matmulnbits / to_matmulnbits   ORT com.microsoft MatMulNBits (bits 4 and 8)
    from_gptq / to_gptq                 GPTQ qweight / qzeros / scales / g_idx (v1 and v2 zeros)
    from_int8_rows / to_int8_rows       plain per-channel / per-group INT8 weights stored [N, K]
The from_* functions return Int4Weights / Int8Weights (the com.kaio op's inputs plus its
group_size attribute); zero_points is None whenever the source's zero points are all the
default (symmetric weights), so the node can leave that optional input out.

Every function is vectorised numpy (no Python loops over elements).
"""
from __future__ import annotations

import operator
from typing import NamedTuple, Optional

import numpy as np

_NIBBLE_SHIFTS = (np.arange(8, dtype=np.uint32) * 4)


def pack_int4(q) -> np.ndarray:
    """Signed INT4 codes q [K, N] (integers in [-8, 7], K % 8 == 0) -> KAIO's uint32 [N, K/8]."""
    q = np.asarray(q)
    if q.ndim != 2:
        raise ValueError(f"pack_int4: q must be [K, N], got shape {q.shape}")
    k, n = q.shape
    if k % 8:
        raise ValueError(f"pack_int4: K ({k}) must be a multiple of 8 (8 INT4 values per uint32)")
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError(f"pack_int4: values must be in [-8, 7], got [{q.min()}, {q.max()}]")
    nibbles = (q.astype(np.int64) & 0xF).astype(np.uint32)           # [K, N] two's complement nibbles
    nibbles = nibbles.T.reshape(n, k // 8, 8)                          # [N, K/8, 8]: nibble i is k = 8w + i
    return np.bitwise_or.reduce(nibbles << _NIBBLE_SHIFTS, axis=-1).astype(np.uint32)


def unpack_int4(b_packed) -> np.ndarray:
    """KAIO's uint32 [N, K/8] -> signed INT4 codes int8 [K, N] (the inverse of pack_int4)."""
    b = np.asarray(b_packed)
    if b.ndim != 2 or b.dtype != np.uint32:
        raise ValueError(f"unpack_int4: b_packed must be uint32 [N, K/8], got {b.dtype} {b.shape}")
    n, words = b.shape
    nib = ((b[..., None] >> _NIBBLE_SHIFTS) & 0xF).astype(np.int8)    # [N, K/8, 8]
    q = np.where(nib >= 8, nib - 16, nib).astype(np.int8)
    return np.ascontiguousarray(q.reshape(n, words * 8).T)


# ----------------------------------------------------------------------------------------------
# Containers
# ----------------------------------------------------------------------------------------------

class Int4Weights(NamedTuple):
    """Inputs 1..3 and the group_size attribute of com.kaio MatmulInt4 (KAIO's INT4 layout).

    b_packed: uint32 [N, K/8] (see the module docstring); scales: [K/group_size, N] float;
    zero_points: [K/group_size, N] in scales' dtype, or None (zp = 0 everywhere);
    w[k, n] = (q[k, n] - zp[k // g, n]) * scale[k // g, n], q = signed nibble of b_packed.
    """
    b_packed: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray]
    group_size: int
    op_type = "MatmulInt4"


class Int8Weights(NamedTuple):
    """Inputs 1..3 and the group_size attribute of com.kaio MatmulInt8 in W8A16 mode.

    b: int8 [K, N] row-major; scales: [K/group_size, N] (group_size > 0) or [1, N] per output
    channel (group_size 0); zero_points: scales' shape and dtype, or None (zp = 0);
    w[k, n] = (b[k, n] - zp[k // g, n]) * scale[k // g, n] (row 0 when per channel).
    """
    b: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray]
    group_size: int
    op_type = "MatmulInt8"


class MatMulNBitsWeights(NamedTuple):
    """The weight inputs and attributes of an ORT com.microsoft MatMulNBits node.

    B: uint8 [N, k_blocks, blob_size]; scales: [N * k_blocks]; zero_points: uint8
    [N * ceil(k_blocks * bits / 8)], or [N * k_blocks] in scales' dtype, or None (default
    2^(bits-1)). ``attributes()`` gives the node's K, N, bits and block_size.
    """
    B: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray]
    K: int
    N: int
    bits: int
    block_size: int

    def attributes(self) -> dict:
        return {"K": self.K, "N": self.N, "bits": self.bits, "block_size": self.block_size}


class GptqWeights(NamedTuple):
    """A GPTQ (AutoGPTQ / exllama) linear layer's tensors.

    qweight: int32 [K * bits / 32, N]; qzeros: int32 [G, N * bits / 32]; scales: [G, N];
    g_idx: int32 [K] (k // group_size); G = K / group_size (1 when group_size is -1, per
    channel); bits 4 or 8; format "v1" (qzeros store z - 1) or "v2" (z as is).
    """
    qweight: np.ndarray
    qzeros: np.ndarray
    scales: np.ndarray
    g_idx: np.ndarray
    bits: int
    group_size: int
    format: str


class RowQuantWeights(NamedTuple):
    """A plain per-channel / per-group INT8 quantization of a weight stored [N, K] (out, in).

    q: int8 or uint8 [N, K]; scales: [N] (per channel, group_size 0) or [N, K/group_size];
    zero_points: scales' shape, in q's dtype or a float dtype, or None (0 for int8, 128 for
    uint8); w[n, k] = (q[n, k] - zp[n, k // g]) * scale[n, k // g].
    """
    q: np.ndarray
    scales: np.ndarray
    zero_points: Optional[np.ndarray]
    group_size: int


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------

_KAIO_INT4_GROUPS = (32, 64, 128)


def _err(fn: str, msg: str) -> ValueError:
    return ValueError(f"{fn}: {msg}")


def _int(fn: str, name: str, value, minimum: int = 0) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise _err(fn, f"{name} must be an integer, got {value!r}") from None
    if v < minimum:
        raise _err(fn, f"{name} must be >= {minimum}, got {v}")
    return v


def _bits(fn: str, bits) -> int:
    b = _int(fn, "bits", bits)
    if b not in (4, 8):
        raise _err(fn, f"bits must be 4 or 8 (the widths com.kaio's MatmulInt4 / MatmulInt8 take), got {b}")
    return b


def _is_float_dtype(dt: np.dtype) -> bool:
    # numpy floats, plus ml_dtypes' bfloat16 & co. (kind 'V' with a float-like name)
    return dt.kind == "f" or (dt.kind == "V" and "float" in dt.name)


def _float_array(fn: str, name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if not _is_float_dtype(a.dtype):
        raise _err(fn, f"{name} must have a floating-point dtype, got {a.dtype}")
    return a


def _shape(fn: str, name: str, a: np.ndarray, *allowed: tuple) -> None:
    if tuple(a.shape) not in [tuple(s) for s in allowed]:
        want = " or ".join(str(list(s)) for s in allowed)
        raise _err(fn, f"{name} must have shape {want}, got {list(a.shape)}")


def _identity_g_idx(fn: str, g_idx, K: int, group: int) -> None:
    """Refuses act-order (a g_idx other than k // group): KAIO's ops read groups contiguously."""
    if g_idx is None:
        return
    g = np.asarray(g_idx)
    if g.dtype.kind not in "iu":
        raise _err(fn, f"g_idx must be integers, got {g.dtype}")
    _shape(fn, "g_idx", g, (K,))
    if not np.array_equal(g, np.arange(K) // group):
        raise _err(fn, f"g_idx must be the identity grouping k // {group} (act-order / desc_act "
                       "reordering cannot be expressed by com.kaio's ops; re-export without it)")


def _group_multiple(fn: str, K: int, group: int, what: str) -> None:
    if K % group:
        raise _err(fn, f"K ({K}) must be a multiple of {what} ({group})")


def _zp_integers(fn: str, name: str, z64: np.ndarray, lo: int, hi: int, hint: str) -> np.ndarray:
    """float64 zero points -> int64, each an integer in [lo, hi] (else a ValueError)."""
    if not np.array_equal(z64, np.round(z64)) or (z64.size and (z64.min() < lo or z64.max() > hi)):
        bad = z64[(z64 != np.round(z64)) | (z64 < lo) | (z64 > hi)].ravel()[0]
        raise _err(fn, f"{name} must map to integer zero points in [{lo}, {hi}] ({hint}); got {bad}")
    return z64.astype(np.int64)


def _maybe_zp(z_minus_default: np.ndarray, dtype) -> Optional[np.ndarray]:
    """KAIO zero points (already shifted) in `dtype`, or None when every one is 0."""
    if not np.any(z_minus_default):
        return None
    return np.ascontiguousarray(z_minus_default.astype(dtype))


# ----------------------------------------------------------------------------------------------
# Bit packing primitives (vectorised)
# ----------------------------------------------------------------------------------------------

def _le_words(byts: np.ndarray) -> np.ndarray:
    """uint8 [..., 4m] -> native uint32 [..., m], little-endian (byte 0 = bits 0..7)."""
    return np.ascontiguousarray(byts).view("<u4").astype(np.uint32)


def _le_bytes(words: np.ndarray) -> np.ndarray:
    """uint32 [..., m] -> uint8 [..., 4m], little-endian."""
    w = np.ascontiguousarray(words.astype("<u4"))
    return w.view(np.uint8).reshape(*w.shape[:-1], w.shape[-1] * 4)


def _nibbles(byts: np.ndarray) -> np.ndarray:
    """uint8 [..., m] -> [..., 2m] values 0..15, low nibble first."""
    return np.stack([byts & 0xF, byts >> 4], axis=-1).reshape(*byts.shape[:-1], byts.shape[-1] * 2)


def _pack_nibbles(u: np.ndarray, pad: int) -> np.ndarray:
    """[..., m] values 0..15 -> uint8 [..., ceil(m/2)], low nibble first, odd m padded with `pad`."""
    u = u.astype(np.uint8)
    if u.shape[-1] % 2:
        u = np.concatenate([u, np.full((*u.shape[:-1], 1), pad, np.uint8)], axis=-1)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def _unpack_words(words: np.ndarray, bits: int) -> np.ndarray:
    """uint32 [..., m] -> int64 [..., m, 32/bits] unsigned fields, least significant first."""
    shifts = np.arange(0, 32, bits, dtype=np.uint32)
    return ((words[..., None] >> shifts) & np.uint32((1 << bits) - 1)).astype(np.int64)


def _pack_words(fields: np.ndarray, bits: int) -> np.ndarray:
    """int [..., m, 32/bits] unsigned fields -> uint32 [..., m], least significant first."""
    shifts = np.arange(0, 32, bits, dtype=np.uint32)
    return np.bitwise_or.reduce(fields.astype(np.uint32) << shifts, axis=-1).astype(np.uint32)


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


# ----------------------------------------------------------------------------------------------
# ORT MatMulNBits <-> KAIO
# ----------------------------------------------------------------------------------------------

def from_matmulnbits(B, scales, zero_points=None, *, K: int, N: int, block_size: int, bits: int = 4,
                     g_idx=None):
    """ORT com.microsoft MatMulNBits weights -> com.kaio MatmulInt4 (bits 4) / MatmulInt8 (bits 8).

    In (MatMulNBits, attributes K, N, bits, block_size; k_blocks = ceil(K / block_size),
    blob_size = block_size * bits / 8):
        B           uint8 [N, k_blocks, blob_size]. 4-bit: two values per byte, the low nibble is
                    the even k (k = blk * block_size + 2 * j + {0: low, 1: high}); 8-bit: one
                    value per byte. Values u unsigned, 0 .. 2^bits - 1.
        scales      float [N * k_blocks] (or [N, k_blocks]), in the activation type.
        zero_points optional: uint8 packed [N * ceil(k_blocks * bits / 8)] (or [N, that]; 4-bit:
                    two per byte, low nibble first, each column padded to whole bytes), or
                    [N * k_blocks] (or [N, k_blocks]) in scales' dtype. Default 2^(bits-1).
        g_idx       optional int [K]; only the identity k // block_size is accepted.
        w[k, n] = (u[n, k] - z[n, k // block_size]) * scale[n, k // block_size].
    Out:
        bits 4 -> Int4Weights(b_packed uint32 [N, K/8] holding q = u - 8 (u XOR 8),
                  scales [K/g, N], zero_points zp = z - 8 [K/g, N] in scales' dtype or None when
                  every z is 8, group_size = block_size).
        bits 8 -> Int8Weights(b int8 [K, N] = u - 128, scales [K/g, N], zero_points z - 128 or
                  None, group_size = block_size); when k_blocks == 1 (block_size >= K) it is per
                  channel instead: group_size 0, scales [1, N].
        Then w[k, n] = (q[k, n] - zp[k // g, n]) * scale[k // g, n], equal to MatMulNBits' w.
        Integer zero points convert exactly; float ones are computed as z - 2^(bits-1) and rounded
        to scales' dtype (exact when z is an integer or within [2^(bits-2), 2^bits]).
    Refused (ValueError): bits not 4 / 8; block_size not a power of two >= 16 (MatMulNBits'
    rule); 4-bit block_size not in {32, 64, 128} (MatmulInt4's group sizes); K not a multiple of
    block_size (except 8-bit with one block); g_idx other than k // block_size; wrong
    shapes / dtypes.
    """
    fn = "from_matmulnbits"
    bits = _bits(fn, bits)
    K, N = _int(fn, "K", K), _int(fn, "N", N)
    block_size = _int(fn, "block_size", block_size, 1)
    if block_size < 16 or block_size & (block_size - 1):
        raise _err(fn, f"block_size must be a power of two >= 16 (MatMulNBits' rule), got {block_size}")
    if bits == 4 and block_size not in _KAIO_INT4_GROUPS:
        raise _err(fn, f"block_size must be 32, 64 or 128 for 4 bits (MatmulInt4's group_size), "
                       f"got {block_size}")
    k_blocks = -(-K // block_size)
    per_channel = bits == 8 and k_blocks == 1                        # one block: per output channel
    if not per_channel:
        _group_multiple(fn, K, block_size, "block_size")
    _identity_g_idx(fn, g_idx, K, block_size)
    blob = block_size * bits // 8

    B = np.asarray(B)
    if B.dtype != np.uint8:
        raise _err(fn, f"B must be uint8, got {B.dtype}")
    _shape(fn, "B", B, (N, k_blocks, blob))
    scales = _float_array(fn, "scales", scales)
    _shape(fn, "scales", scales, (N * k_blocks,), (N, k_blocks))
    sc = np.ascontiguousarray(scales.reshape(N, k_blocks).T)          # [k_blocks, N]

    default = 1 << (bits - 1)
    zp = None
    if zero_points is not None:
        z = np.asarray(zero_points)
        if z.dtype == np.uint8:
            zb = -(-k_blocks * bits // 8)
            _shape(fn, "zero_points (uint8, packed)", z, (N * zb,), (N, zb))
            z = z.reshape(N, zb)
            zi = (_nibbles(z)[:, :k_blocks] if bits == 4 else z).astype(np.int64)
            zp = _maybe_zp(zi.T - default, sc.dtype)
        elif z.dtype == scales.dtype:
            _shape(fn, "zero_points (float)", z, (N * k_blocks,), (N, k_blocks))
            zp = _maybe_zp(z.reshape(N, k_blocks).T.astype(np.float64) - default, sc.dtype)
        else:
            raise _err(fn, f"zero_points must be uint8 (packed) or scales' dtype {scales.dtype}, "
                           f"got {z.dtype}")

    if bits == 4:
        # Byte j of a column holds k = 2j (low), 2j + 1 (high); 4 consecutive bytes read
        # little-endian are one KAIO word (nibble i = k 8w + i). q = u - 8 flips each nibble's top bit.
        words = _le_words(B.reshape(N, K // 2)) ^ np.uint32(0x88888888)
        return Int4Weights(words, sc, zp, block_size)
    u = B.reshape(N, k_blocks * blob)[:, :K]                             # drop the last block's padding
    b = np.ascontiguousarray((u ^ np.uint8(0x80)).view(np.int8).T)      # u - 128, [K, N]
    return Int8Weights(b, sc, zp, 0 if per_channel else block_size)


def _kaio_weight_dims(fn: str, b: np.ndarray, bits: int, group_size: int) -> tuple[int, int]:
    """(K, N) of a weight in KAIO's layout: uint32 [N, K/8] for bits 4 (group 32/64/128), int8 [K, N]
    for bits 8."""
    if bits == 4:
        if b.dtype != np.uint32 or b.ndim != 2:
            raise _err(fn, f"b must be uint32 [N, K/8] (KAIO INT4) for bits 4, got {b.dtype} {list(b.shape)}")
        if group_size not in _KAIO_INT4_GROUPS:
            raise _err(fn, f"group_size must be 32, 64 or 128 for bits 4 (MatmulInt4), got {group_size}")
        return b.shape[1] * 8, b.shape[0]
    if b.dtype != np.int8 or b.ndim != 2:
        raise _err(fn, f"b must be int8 [K, N] for bits 8, got {b.dtype} {list(b.shape)}")
    return b.shape[0], b.shape[1]


def to_matmulnbits(b, scales, zero_points=None, *, group_size: int, bits: int = 4,
                   zero_points_format: str = "auto") -> MatMulNBitsWeights:
    """com.kaio MatmulInt4 / MatmulInt8 (W8A16) weights -> ORT MatMulNBits (from_matmulnbits' inverse).

    In:
        bits 4: b = b_packed uint32 [N, K/8] (KAIO INT4), scales [K/g, N], zero_points optional
                [K/g, N] float; group_size in {32, 64, 128}.
        bits 8: b int8 [K, N], scales [K/g, N] with group_size a power of two >= 16, or per
                channel (group_size 0, scales [1, N] or [N]); zero_points optional, scales' shape.
        w[k, n] = (q[k, n] - zp[k // g, n]) * scale[k // g, n].
    Out: MatMulNBitsWeights(B uint8 [N, k_blocks, blob_size] with u = q + 2^(bits-1),
        scales [N * k_blocks] (scales' dtype), zero_points, K, N, bits, block_size = group_size;
        per channel 8-bit: block_size = max(16, next power of two >= K), one block, the padding
        bytes of B set to 128).
        Zero points z = zp + 2^(bits-1): None stays None (MatMulNBits' default 2^(bits-1));
        zero_points_format "uint8" packs them [N * ceil(k_blocks * bits / 8)] (4-bit: low nibble
        first, an odd k_blocks padded with 8 as ORT's quantizer does; each must be an integer in
        [0, 2^bits - 1]), "float" gives [N * k_blocks] in scales' dtype (note: ORT's CPU kernel
        accepts float zero points for 4 bits only), "auto" packs when every z is such an integer,
        else float.
    """
    fn = "to_matmulnbits"
    bits = _bits(fn, bits)
    if zero_points_format not in ("auto", "uint8", "float"):
        raise _err(fn, f"zero_points_format must be 'auto', 'uint8' or 'float', got {zero_points_format!r}")
    group_size = _int(fn, "group_size", group_size)
    b = np.asarray(b)
    scales = _float_array(fn, "scales", scales)
    K, N = _kaio_weight_dims(fn, b, bits, group_size)
    if bits == 4:
        _group_multiple(fn, K, group_size, "group_size")
        block_size = group_size
    else:
        if group_size == 0:
            block_size = max(16, _next_pow2(K))
        else:
            if group_size < 16 or group_size & (group_size - 1):
                raise _err(fn, f"group_size must be a power of two >= 16 (MatMulNBits' block_size) "
                               f"or 0 (per channel), got {group_size}")
            _group_multiple(fn, K, group_size, "group_size")
            block_size = group_size
    k_blocks = -(-K // block_size)
    G = 1 if group_size == 0 else K // group_size
    shapes = [(G, N)] + ([(N,)] if group_size == 0 else [])
    _shape(fn, "scales", scales, *shapes)
    sc = scales.reshape(G, N)
    out_scales = np.ascontiguousarray(sc.T).reshape(-1)               # [N * k_blocks]

    default = 1 << (bits - 1)
    if bits == 4:
        B = _le_bytes(b ^ np.uint32(0x88888888)).reshape(N, k_blocks, block_size // 2)
    else:
        u = (b ^ np.int8(-128)).view(np.uint8).T                        # b + 128, [N, K]
        padded = np.full((N, k_blocks * block_size), default, np.uint8)
        padded[:, :K] = u
        B = padded.reshape(N, k_blocks, block_size)

    zout = None
    if zero_points is not None:
        zp = _float_array(fn, "zero_points", zero_points)
        _shape(fn, "zero_points", zp, *shapes)
        z64 = zp.reshape(G, N).T.astype(np.float64) + default             # [N, k_blocks]
        integral = np.array_equal(z64, np.round(z64)) and (not z64.size or (z64.min() >= 0 and z64.max() < 2 * default))
        if zero_points_format == "uint8" or (zero_points_format == "auto" and integral):
            zi = _zp_integers(fn, "zero_points", z64, 0, 2 * default - 1,
                              "MatMulNBits' uint8 zero points; use zero_points_format='float'")
            zout = (_pack_nibbles(zi, default) if bits == 4 else zi.astype(np.uint8)).reshape(-1)
        else:
            zout = np.ascontiguousarray(z64.astype(scales.dtype)).reshape(-1)
    return MatMulNBitsWeights(B, out_scales, zout, K, N, bits, block_size)


# ----------------------------------------------------------------------------------------------
# GPTQ <-> KAIO
# ----------------------------------------------------------------------------------------------

def _gptq_format(fn: str, fmt) -> int:
    if fmt not in ("v1", "v2"):
        raise _err(fn, f"format must be 'v1' (qzeros store z - 1, AutoGPTQ's classic layout) or 'v2' "
                       f"(z as is), got {fmt!r}")
    return 1 if fmt == "v1" else 0


def _int32_words(fn: str, name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype not in (np.int32, np.uint32) or a.ndim != 2:
        raise _err(fn, f"{name} must be a 2-D int32 (or uint32) array, got {a.dtype} {list(a.shape)}")
    return a.view(np.uint32)


def from_gptq(qweight, qzeros, scales, g_idx=None, *, bits: int = 4, group_size: int, format: str = "v1"):
    """GPTQ (AutoGPTQ / exllama) weights -> com.kaio MatmulInt4 (bits 4) / MatmulInt8 (bits 8).

    In (f = 32 / bits values per int32, G = K / group_size, or 1 when group_size is -1):
        qweight int32 [K / f, N]: u[k, n] is field k % f (bits * (k % f) .. , least significant
                first) of word [k // f, n], unsigned 0 .. 2^bits - 1.
        qzeros  int32 [G, N / f]: field n % f of word [g, n // f] is the stored zero point s;
                the effective zero point is z = s + 1 for format "v1" (AutoGPTQ's classic
                stored-minus-one) and z = s for "v2".
        scales  float [G, N] (usually float16).
        g_idx   optional int [K]; only the identity k // group_size is accepted (act-order
                checkpoints must be re-exported without desc_act).
        w[k, n] = (u[k, n] - z[k // g, n]) * scale[k // g, n].
    Out:
        bits 4 -> Int4Weights(b_packed uint32 [N, K/8] = qweight^T with every nibble XOR 8
                  (q = u - 8), scales [G, N] (scales' dtype), zero_points z - 8 [G, N] in scales'
                  dtype or None when every z is 8 (symmetric), group_size).
        bits 8 -> Int8Weights(b int8 [K, N] = u - 128, scales, zero_points z - 128 or None,
                  group_size; 0 with scales [1, N] for per channel, group_size -1).
    Refused (ValueError): bits not 4 / 8; 4-bit group_size (after -1 -> K) not 32, 64, 128;
    K not a multiple of group_size; N not a multiple of f; g_idx not the identity; wrong shapes.
    """
    fn = "from_gptq"
    bits = _bits(fn, bits)
    offset = _gptq_format(fn, format)
    f = 32 // bits
    qw = _int32_words(fn, "qweight", qweight)
    K, N = qw.shape[0] * f, qw.shape[1]
    group_size = _int(fn, "group_size", group_size, -1)
    if group_size == 0:
        raise _err(fn, "group_size must be > 0, or -1 for per channel (GPTQ's convention), got 0")
    per_channel = group_size == -1
    g = K if per_channel else group_size
    if bits == 4 and g not in _KAIO_INT4_GROUPS:
        raise _err(fn, f"group_size must be 32, 64 or 128 for 4 bits (MatmulInt4's group_size; "
                       f"-1 means K = {K}), got {g}")
    if g:
        _group_multiple(fn, K, g, "group_size")
    G = 1 if per_channel else K // g
    if N % f:
        raise _err(fn, f"N ({N}) must be a multiple of {f} (GPTQ packs {f} zero points per int32 along N)")
    qz = _int32_words(fn, "qzeros", qzeros)
    _shape(fn, "qzeros", qz, (G, N // f))
    scales = _float_array(fn, "scales", scales)
    _shape(fn, "scales", scales, (G, N))
    _identity_g_idx(fn, g_idx, K, max(g, 1))

    default = 1 << (bits - 1)
    z = _unpack_words(qz, bits).reshape(G, N) + offset                 # effective zero points
    zp = _maybe_zp(z - default, scales.dtype)
    sc = np.ascontiguousarray(scales)
    if bits == 4:
        # GPTQ word [k/8, n] already holds k = 8w + i in nibble i: KAIO's word [n, k/8] is its transpose.
        return Int4Weights(np.ascontiguousarray(qw.T) ^ np.uint32(0x88888888), sc, zp, g)
    u = _le_bytes(qw.T).reshape(N, K)                                  # [N, K]: byte i of word w = k 4w + i
    b = np.ascontiguousarray((u ^ np.uint8(0x80)).view(np.int8).T)
    return Int8Weights(b, sc, zp, 0 if per_channel else g)


def to_gptq(b, scales, zero_points=None, *, group_size: int, bits: int = 4, format: str = "v1") -> GptqWeights:
    """com.kaio MatmulInt4 / MatmulInt8 (W8A16) weights -> GPTQ tensors (from_gptq's inverse).

    In: bits 4: b = b_packed uint32 [N, K/8], scales [K/g, N], zero_points optional [K/g, N];
        bits 8: b int8 [K, N], scales [K/g, N] (group_size > 0) or [1, N] / [N] (group_size 0,
        per channel); zero_points optional, scales' shape. w = (q - zp) * scale.
    Out: GptqWeights(qweight int32 [K / f, N] (u = q + 2^(bits-1), f = 32 / bits per word, least
        significant first), qzeros int32 [G, N / f] (z = zp + 2^(bits-1), stored z - 1 for "v1",
        z for "v2"; None zero points mean z = 2^(bits-1)), scales [G, N] (a copy), g_idx int32
        [K] = k // group_size, bits, group_size (-1 for per channel), format).
        Each z must be an integer in [0, 2^bits - 1] ("v2") or [1, 2^bits] ("v1"); N % f == 0.
    """
    fn = "to_gptq"
    bits = _bits(fn, bits)
    offset = _gptq_format(fn, format)
    f = 32 // bits
    group_size = _int(fn, "group_size", group_size)
    b = np.asarray(b)
    scales = _float_array(fn, "scales", scales)
    K, N = _kaio_weight_dims(fn, b, bits, group_size)
    if group_size:
        _group_multiple(fn, K, group_size, "group_size")
    if N % f:
        raise _err(fn, f"N ({N}) must be a multiple of {f} (GPTQ packs {f} zero points per int32 along N)")
    G = 1 if group_size == 0 else K // group_size
    _shape(fn, "scales", scales, *([(G, N)] + ([(N,)] if group_size == 0 else [])))
    default = 1 << (bits - 1)
    if zero_points is None:
        z = np.full((G, N), default, np.int64)
    else:
        zp = _float_array(fn, "zero_points", zero_points)
        _shape(fn, "zero_points", zp, (G, N), *([(N,)] if group_size == 0 else []))
        z = _zp_integers(fn, "zero_points", zp.reshape(G, N).astype(np.float64) + default,
                         offset, 2 * default - 1 + offset,
                         f"GPTQ {format} stores {'z - 1' if offset else 'z'} in {bits} bits")
    qzeros = _pack_words((z - offset).reshape(G, N // f, f), bits).view(np.int32)
    if bits == 4:
        qweight = np.ascontiguousarray((b ^ np.uint32(0x88888888)).T).view(np.int32)
    else:
        u = (b ^ np.int8(-128)).view(np.uint8)                             # [K, N], b + 128
        qweight = _le_words(u.reshape(K // 4, 4, N).transpose(0, 2, 1)).reshape(K // 4, N).view(np.int32)
    g_idx = (np.arange(K) // (group_size or max(K, 1))).astype(np.int32)
    return GptqWeights(qweight, qzeros, np.array(scales.reshape(G, N)), g_idx, bits,
                       group_size if group_size else -1, format)


# ----------------------------------------------------------------------------------------------
# Plain INT8 [N, K] (out_features x in_features) <-> KAIO MatmulInt8
# ----------------------------------------------------------------------------------------------

def from_int8_rows(q, scales, zero_points=None, *, group_size: int = 0) -> Int8Weights:
    """A per-channel / per-group INT8 weight stored [N, K] -> com.kaio MatmulInt8 (W8A16).

    In: q int8 or uint8 [N, K] (a Linear layer's weight, out x in; also ONNX
        DequantizeLinear's weight with axis 0 / blocked along K); scales float [N] or [N, 1]
        (group_size 0, per output channel) or [N, K / group_size]; zero_points optional, scales'
        shape, integer (q's dtype) or float; default 0 for int8, 128 for uint8.
        w[n, k] = (q[n, k] - zp[n, k // g]) * scale[n, k // g].
    Out: Int8Weights(b int8 [K, N] = (q - 128 for uint8) transposed, scales [K/g, N] (or [1, N]
        per channel) in scales' dtype, zero_points (z, minus 128 for uint8) in scales' dtype or
        None when all are 0 after the shift, group_size).
    """
    fn = "from_int8_rows"
    q = np.asarray(q)
    if q.dtype not in (np.int8, np.uint8) or q.ndim != 2:
        raise _err(fn, f"q must be int8 or uint8 [N, K], got {q.dtype} {list(q.shape)}")
    N, K = q.shape
    group_size = _int(fn, "group_size", group_size)
    if group_size:
        _group_multiple(fn, K, group_size, "group_size")
    G = K // group_size if group_size else 1
    scales = _float_array(fn, "scales", scales)
    shapes = [(N, G)] + ([(N,)] if not group_size else [])
    _shape(fn, "scales", scales, *shapes)
    shift = 128 if q.dtype == np.uint8 else 0
    b = np.ascontiguousarray((q ^ np.uint8(0x80)).view(np.int8).T if shift else q.T)
    sc = np.ascontiguousarray(scales.reshape(N, G).T)
    zp = None
    if zero_points is not None:
        z = np.asarray(zero_points)
        if z.dtype != q.dtype and not _is_float_dtype(z.dtype):
            raise _err(fn, f"zero_points must be q's dtype {q.dtype} or a float dtype, got {z.dtype}")
        _shape(fn, "zero_points", z, *shapes)
        zp = _maybe_zp(z.reshape(N, G).T.astype(np.float64) - shift, sc.dtype)
    return Int8Weights(b, sc, zp, group_size)


def to_int8_rows(b, scales, zero_points=None, *, group_size: int = 0, dtype=np.int8,
                 zero_points_format: str = "auto") -> RowQuantWeights:
    """com.kaio MatmulInt8 (W8A16) weights -> INT8 [N, K] rows (from_int8_rows' inverse).

    In: b int8 [K, N]; scales [K/g, N] (or [1, N] / [N], group_size 0); zero_points optional,
        scales' shape. w[k, n] = (b[k, n] - zp[k // g, n]) * scale[k // g, n].
    Out: RowQuantWeights(q [N, K] in `dtype` (int8: b^T; uint8: b^T + 128), scales [N] (per
        channel) or [N, K/g], zero_points (+128 for uint8) [N] or [N, K/g]: None stays None;
        "auto" gives q's dtype when every zero point is an integer in its range, else scales'
        dtype; "int" requires that; "float" always scales' dtype; group_size).
    """
    fn = "to_int8_rows"
    dtype = np.dtype(dtype)
    if dtype not in (np.int8, np.uint8):
        raise _err(fn, f"dtype must be int8 or uint8, got {dtype}")
    if zero_points_format not in ("auto", "int", "float"):
        raise _err(fn, f"zero_points_format must be 'auto', 'int' or 'float', got {zero_points_format!r}")
    b = np.asarray(b)
    if b.dtype != np.int8 or b.ndim != 2:
        raise _err(fn, f"b must be int8 [K, N], got {b.dtype} {list(b.shape)}")
    K, N = b.shape
    group_size = _int(fn, "group_size", group_size)
    if group_size:
        _group_multiple(fn, K, group_size, "group_size")
    G = K // group_size if group_size else 1
    scales = _float_array(fn, "scales", scales)
    shapes = [(G, N)] + ([(N,)] if not group_size else [])
    _shape(fn, "scales", scales, *shapes)
    out_shape = (N,) if not group_size else (N, G)
    shift = 128 if dtype == np.uint8 else 0
    q = np.ascontiguousarray(((b ^ np.int8(-128)).view(np.uint8) if shift else b).T)
    sc = np.ascontiguousarray(scales.reshape(G, N).T).reshape(out_shape)
    zout = None
    if zero_points is not None:
        zp = _float_array(fn, "zero_points", zero_points)
        _shape(fn, "zero_points", zp, *shapes)
        z64 = zp.reshape(G, N).T.astype(np.float64).reshape(out_shape) + shift
        info = np.iinfo(dtype)
        integral = np.array_equal(z64, np.round(z64)) and (not z64.size or (z64.min() >= info.min and z64.max() <= info.max))
        if zero_points_format == "int" or (zero_points_format == "auto" and integral):
            zout = _zp_integers(fn, "zero_points", z64, info.min, info.max,
                                f"{dtype} zero points; use zero_points_format='float'").astype(dtype)
        else:
            zout = z64.astype(scales.dtype)
    return RowQuantWeights(q, sc, zout, group_size)
