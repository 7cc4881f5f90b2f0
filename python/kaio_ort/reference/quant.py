"""References for ort_ops/quant_matmul/ and ort_ops/qkv_project/ (DESIGN.md, "Contract details"),
plus small quantizers that turn float weights into realistic operands for the tests.

INT4 weights use KAIO's layout (kaio_ort.packing): uint32 [N, K/8], signed nibbles; INT8 weights
are int8 [K, N]. Group parameters (scales, zero points) are [K/group_size, N]; group_size 0 means
one group spanning K (per channel, [1, N] or [N]); a one-element scale is per tensor.
"""
from __future__ import annotations

import numpy as np

from ..packing import pack_int4, unpack_int4


def _f64(x) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _expand_groups(p, group_size: int) -> np.ndarray:
    """Group parameters -> an array broadcasting against [K, N]."""
    p = _f64(p)
    if p.ndim <= 1:                       # one element, or [N] per channel
        p = p.reshape(1, -1)
    if group_size > 0:                    # one row per group of group_size K rows
        p = np.repeat(p, group_size, axis=0)
    return p


def _dequantize(q, scales, zero_points, group_size: int) -> np.ndarray:
    q = _f64(q)
    s = _expand_groups(scales, group_size)
    zp = 0.0 if zero_points is None else _expand_groups(zero_points, group_size)
    return (q - zp) * s


def dequantize_int4(b_packed, scales, zero_points=None, group_size: int = 128) -> np.ndarray:
    """w [K, N] float64 = (q - zero_points[k / g]) * scales[k / g] from KAIO's uint32 [N, K/8]."""
    return _dequantize(unpack_int4(b_packed), scales, zero_points, group_size)


def dequantize_int8(b, scales, zero_points=None, group_size: int = 0) -> np.ndarray:
    """w [K, N] float64 = (b - zero_points) * scales; scales [K/g, N], [1, N], [N] or one element."""
    return _dequantize(b, scales, zero_points, group_size)


def matmul_int4(a, b_packed, scales, zero_points=None, group_size: int = 128) -> np.ndarray:
    """MatmulInt4: Y [..., M, N] = A [..., M, K] * dequantize_int4(...)."""
    return _f64(a) @ dequantize_int4(b_packed, scales, zero_points, group_size)


def matmul_int8(a, b, scales, zero_points=None, group_size: int = 0) -> np.ndarray:
    """MatmulInt8. A int8: W8A8, exact integer sums times the one-element float32 scale; otherwise W8A16."""
    if np.asarray(a).dtype == np.int8:
        assert zero_points is None, "W8A8 takes no zero points"
        acc = np.asarray(a).astype(np.int64) @ np.asarray(b).astype(np.int64)
        return acc.astype(np.float64) * float(np.asarray(scales, np.float64).reshape(-1)[0])
    return _f64(a) @ dequantize_int8(b, scales, zero_points, group_size)


def _qkv(x, weights, biases):
    x = _f64(x)
    if any(b is not None for b in biases) and not all(b is not None for b in biases):
        raise ValueError("biases: all three or none")
    return tuple(x @ w + (0.0 if b is None else _f64(b)) for w, b in zip(weights, biases))


def qkv_project_int8(x, wq, wk, wv, sq, sk, sv, bq=None, bk=None, bv=None):
    """QkvProjectInt8: (X Wq * sq + bq, ...); W* int8 [K, N*], s* one element or [N*]."""
    ws = [dequantize_int8(w, s, None, 0) for w, s in ((wq, sq), (wk, sk), (wv, sv))]
    return _qkv(x, ws, (bq, bk, bv))


def qkv_project_int4(x, wq, wk, wv, sq, sk, sv, bq=None, bk=None, bv=None, group_size: int = 128):
    """QkvProjectInt4: W* KAIO INT4 uint32 [N*, K/8], s* [K/group_size, N*], symmetric."""
    ws = [dequantize_int4(w, s, None, group_size) for w, s in ((wq, sq), (wk, sk), (wv, sv))]
    return _qkv(x, ws, (bq, bk, bv))


def _quantize(w, group_size: int, symmetric: bool, qmin: int, qmax: int):
    """Groupwise quantization of w [K, N] to integer codes in [qmin, qmax]: (q [K, N] int64,
    scales [G, N], zero_points [G, N] or None), w ~ (q - zp) * scale. group_size 0: per channel."""
    w = _f64(w)
    k, n = w.shape
    g = group_size if group_size > 0 else max(k, 1)
    if k % g:
        raise ValueError(f"K ({k}) must be a multiple of group_size ({group_size})")
    wg = w.reshape(k // g, g, n) if k else np.zeros((1, 0, n))
    if symmetric:
        scales = np.abs(wg).max(axis=1, initial=0.0) / qmax
        scales = np.where(scales > 0, scales, 1.0)
        zp = None
        q = np.round(wg / scales[:, None, :])
    else:
        lo, hi = wg.min(axis=1, initial=np.inf), wg.max(axis=1, initial=-np.inf)
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        scales = (hi - lo) / (qmax - qmin)
        scales = np.where(scales > 0, scales, 1.0)
        zp = np.round(qmin - lo / scales)
        q = np.round(wg / scales[:, None, :]) + zp[:, None, :]
    q = np.clip(q, qmin, qmax).reshape(k, n).astype(np.int64)
    if k == 0 and group_size > 0:   # no groups (per channel keeps its [1, N] row)
        scales = scales[:0]
        zp = None if zp is None else zp[:0]
    return q, scales, zp


def quantize_int4(w, group_size: int = 128, symmetric: bool = True):
    """w [K, N] -> (b_packed uint32 [N, K/8], scales [K/group_size, N], zero_points or None), float64
    parameters (cast them to the activation type, then use the cast values in the reference)."""
    q, scales, zp = _quantize(w, group_size, symmetric, -8, 7)
    return pack_int4(q), scales, zp


def quantize_int8(w, group_size: int = 0, symmetric: bool = True):
    """w [K, N] -> (b int8 [K, N], scales [K/group_size, N] ([1, N] for group_size 0), zero_points or
    None). Symmetric codes use [-127, 127] (KAIO's example quantizer)."""
    q, scales, zp = _quantize(w, group_size, symmetric, -127 if symmetric else -128, 127)
    return q.astype(np.int8), scales, zp
