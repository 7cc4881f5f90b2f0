"""References for ort_ops/attention/ (DESIGN.md, "Contract details"): float64, grouped K/V heads
(GQA/MQA), causal masks aligned bottom-right, layouts "bhsd" ([..., H, S, D]; [S, D] is one head)
and "bshd" ([B, S, H, D])."""
import numpy as np


def _heads_first(x, layout: str) -> np.ndarray:
    """A Q/K/V/O tensor as float64 [..., H, S, D]."""
    x = np.asarray(x, np.float64)
    if layout == "bshd":
        if x.ndim != 4:
            raise ValueError(f"layout 'bshd' needs rank 4, got shape {x.shape}")
        return np.swapaxes(x, 1, 2)
    if layout != "bhsd":
        raise ValueError(f"layout must be 'bhsd' or 'bshd', got {layout!r}")
    return x[None] if x.ndim == 2 else x


def _restore(x: np.ndarray, layout: str, ndim: int) -> np.ndarray:
    """The inverse of _heads_first for a tensor that had rank `ndim`."""
    if layout == "bshd":
        return np.swapaxes(x, 1, 2)
    return x[0] if ndim == 2 else x


def _lse_heads_first(lse, layout: str, ndim: int) -> np.ndarray:
    lse = np.asarray(lse, np.float64)
    return lse[None] if layout == "bhsd" and ndim == 2 else lse


def _scale(scale, d: int) -> float:
    return 1.0 / np.sqrt(d) if scale is None or scale == 0 else float(scale)


def _group(hq: int, hkv: int) -> int:
    if hkv == 0:
        return 1
    if hq % hkv:
        raise ValueError(f"Hq ({hq}) must be a multiple of Hkv ({hkv})")
    return hq // hkv


def _probabilities(q, k, scale: float, causal: bool, lse=None):
    """(P [..., Hq, Sq, Sk], LSE [..., Hq, Sq]) of heads-first q and k (k already repeated to Hq
    heads); P from the given LSE when there is one, as the gradient kernel recomputes it."""
    sq, sk = q.shape[-2], k.shape[-2]
    s = scale * (q @ np.swapaxes(k, -1, -2))
    if causal:
        visible = np.arange(sk)[None, :] <= np.arange(sq)[:, None] + (sk - sq)
        s = np.where(visible, s, -np.inf)
    if lse is None:
        m = np.max(s, axis=-1, initial=-np.inf)
        m_safe = np.where(np.isfinite(m), m, 0.0)  # rows that see no key: every score is -inf
        with np.errstate(divide="ignore"):
            lse = m_safe + np.log(np.sum(np.exp(s - m_safe[..., None]), axis=-1))
    seen = np.isfinite(lse)[..., None]
    p = np.where(seen, np.exp(s - np.where(seen, lse[..., None], 0.0)), 0.0)
    return p, lse


def _repeat_kv(x: np.ndarray, hq: int) -> np.ndarray:
    """kv heads repeated so that query head h reads kv head h / (Hq / Hkv)."""
    return np.repeat(x, _group(hq, x.shape[-3]), axis=-3)


def _sum_groups(x: np.ndarray, hkv: int) -> np.ndarray:
    """[..., Hq, S, D] summed over the query heads of each kv head: [..., Hkv, S, D]."""
    hq = x.shape[-3]
    return x.reshape(x.shape[:-3] + (hkv, _group(hq, hkv)) + x.shape[-2:]).sum(axis=-3)


def attention(q, k, v, scale=None, causal: bool = False, layout: str = "bhsd"):
    """(O, LSE) of scaled dot-product attention; scale None or 0: 1/sqrt(D). O has Q's layout with
    D replaced by Dv; LSE is [..., Hq, Sq] (natural log; -inf and a zero O row where a query sees
    no key)."""
    ndim = np.ndim(q)
    q, k, v = (_heads_first(x, layout) for x in (q, k, v))
    hq = q.shape[-3]
    p, lse = _probabilities(q, _repeat_kv(k, hq), _scale(scale, q.shape[-1]), causal)
    o = p @ _repeat_kv(v, hq)
    return _restore(o, layout, ndim), (lse[0] if layout == "bhsd" and ndim == 2 else lse)


def attention_grad(do, q, k, v, scale=None, causal: bool = False, layout: str = "bhsd", *, o=None, lse=None):
    """(dQ, dK, dV) of attention(q, k, v, ...) for the output gradient dO; dK and dV summed over the
    query heads sharing a kv head. By default exact; `o` and `lse`, when given, are used the way
    AttentionFlashGrad uses its O and LSE inputs (D_i = rowsum(dO * O), P = exp(S - LSE)), so a
    kernel fed rounded O / LSE can be checked without their rounding in the tolerance."""
    ndim = np.ndim(q)
    do, q, k, v = (_heads_first(x, layout) for x in (do, q, k, v))
    hq, hkv = q.shape[-3], k.shape[-3]
    scale = _scale(scale, q.shape[-1])
    k_rep, v_rep = _repeat_kv(k, hq), _repeat_kv(v, hq)
    p, _ = _probabilities(q, k_rep, scale, causal, None if lse is None else _lse_heads_first(lse, layout, ndim))
    o = p @ v_rep if o is None else _heads_first(o, layout)
    d_i = np.sum(do * o, axis=-1, keepdims=True)
    ds = p * (do @ np.swapaxes(v_rep, -1, -2) - d_i)
    dq = scale * (ds @ k_rep)
    dk = _sum_groups(scale * (np.swapaxes(ds, -1, -2) @ q), hkv)
    dv = _sum_groups(np.swapaxes(p, -1, -2) @ do, hkv)
    return tuple(_restore(x, layout, ndim) for x in (dq, dk, dv))
