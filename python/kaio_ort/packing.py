"""Weight layouts of the com.kaio quantized ops, and conversions from the layouts users have.

KAIO's INT4 layout (MatmulInt4, QkvProjectInt4; kaio-contracts.md):
    B_packed uint32 [N, K/8] (K/8 words per output column, 4 * N * K/8 bytes): element (k, n) is
    nibble k % 8 (bits 4*(k%8) .. 4*(k%8)+3, least significant first) of word [n, k // 8]; signed
    two's complement in [-8, 7]. Scales [K/group, N] (and zero points, same shape) in A's type:
    w[k, n] = (q[k, n] - zp[k // group, n]) * scale[k // group, n].
KAIO's INT8 layout (MatmulInt8, QkvProjectInt8): int8 [K, N] row-major (K * N bytes).

Every function is vectorised numpy (no Python loops over elements).
"""
from __future__ import annotations

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
