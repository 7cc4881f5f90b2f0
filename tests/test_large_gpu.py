"""Large inputs on the CUDA EP (issue 10): past the launch grid's row limits each op refuses the input
by name (input, rule, the limit), and inputs of more than 2^31 elements give correct results.

The refusals need at most 1 GB of inputs each and run with the GPU tests. The 2^31-element cases need
4-5 GB of host and device memory each and a minute of input generation: they run with
KAIO_LARGE_TESTS=1. Inputs are a hash of their indices (cheap to generate, and an element read from
the wrong offset holds a different value), and the results are checked on sampled rows (first, last,
around the 2^31-element boundary, random) against float64 references."""
from __future__ import annotations

import os

import numpy as np
import pytest
from gpu_harness import chain_ref_codes, int4_weights_rounded, run_op_cuda
from op_harness import CUDA, input_rule, rel_err, rng, run_op

from kaio_ort.packing import pack_int4
from kaio_ort.reference import attention

pytestmark = pytest.mark.gpu
large = pytest.mark.skipif(os.environ.get("KAIO_LARGE_TESTS") != "1",
                           reason="2^31-element inputs (4-5 GB): set KAIO_LARGE_TESTS=1")


def hashed(rows: int, cols: int, salt: int, dtype=np.float16) -> np.ndarray:
    """[rows, cols] of values in [-0.5, 0.5) from a hash of (row, col, salt), generated in chunks."""
    out = np.empty((rows, cols), dtype)
    c = np.arange(cols, dtype=np.int64)[None, :]
    step = max(1, (1 << 22) // cols)
    for r0 in range(0, rows, step):
        r = np.arange(r0, min(rows, r0 + step), dtype=np.int64)[:, None]
        out[r0:r0 + r.shape[0]] = ((r * 2654435761 + c * 40503 + salt * 977) % 65521 / 65521.0 - 0.5).astype(dtype)
    return out


def sample_rows(rows: int, cols: int, g) -> np.ndarray:
    """First and last rows, the rows around element 2^31 (and 2^32), and random ones."""
    edge = [(1 << 31) // cols, (1 << 32) // cols]
    picks = [0, 1, rows - 2, rows - 1] + [e + d for e in edge for d in (-1, 0, 1)] + list(g.integers(0, rows, 24))
    return np.unique(np.clip(picks, 0, rows - 1))


# ---- the launch grid's row limits: refused by name (common/status.h CheckLaunchLimit)
def _past_the_grid(op, rows, n=8):
    """(inputs, outputs' types, input name, what the rule counts) with `rows` rows of A / X (K as small
    as the op allows: one INT4 group of 128, else 8)."""
    k = 128 if op in ("MatmulInt4", "QkvProjectInt4") else 8
    a = hashed(rows, k, 3)
    if op == "MatmulTc":
        return [a, hashed(k, n, 2)], [np.float32], "A", "M per batch"
    if op == "MatmulInt4":
        return [a, np.zeros((n, k // 8), np.uint32), np.ones((1, n), np.float16)], [np.float32], "A", FLAT
    if op == "MatmulInt8":
        return [a, np.zeros((k, n), np.int8), np.ones((1, n), np.float16)], [np.float32], "A", FLAT
    ws, ss = [np.zeros((n, k // 8), np.uint32)] * 3, [np.ones((1, n), np.float16)] * 3
    return [a, *ws, *ss], [np.float16] * 3, "X", FLAT


FLAT = "M with the leading dims flattened"


@pytest.mark.parametrize("op,limit", [("MatmulTc", 65535 * 128), ("MatmulInt4", 65535 * 64),
                                      ("MatmulInt8", 65535 * 128), ("QkvProjectInt4", 65535 * 64)])
def test_rows_past_the_launch_grid_are_refused(op, limit):
    inputs, out_types, name, what = _past_the_grid(op, limit + 1)
    rule = f"{what} ({limit + 1}) must be at most {limit} on CUDA (the launch grid's limit)"
    with pytest.raises(Exception, match=input_rule(op, name, 0, rule)):
        run_op(op, inputs, {}, out_types, provider=CUDA)


# ---- more than 2^31 elements: correct
@large
def test_matmul_int4_a_past_2g_elements():
    g = rng()
    k, n, group = 1024, 16, 128
    rows = (1 << 31) // k + 64  # A: 2^31 + 65536 elements (GEMM regime)
    a = hashed(rows, k, 5)
    q = g.integers(-8, 8, size=(k, n))
    scales = (g.uniform(0.5, 1.5, (k // group, n)) / 16).astype(np.float16)
    (y,) = run_op_cuda("MatmulInt4", [a, pack_int4(q), scales], {"group_size": group}, [(rows, n)], [np.float32])
    pick = sample_rows(rows, k, g)
    ref = chain_ref_codes(a[pick], q, scales, None, group, int4_weights_rounded(rows, k, [n], group))
    assert rel_err(y[pick], ref) <= 1e-3, f"sampled rows {pick.tolist()}"
    assert not np.isnan(y).any(), "unwritten (NaN) rows"


@large
def test_matmul_tc_a_past_2g_elements():
    g = rng()
    k, n = 512, 8
    rows = (1 << 31) // k + 8  # A: 2^31 + 4096 elements, under the 65535 x 128-row grid
    a, b = hashed(rows, k, 6), hashed(k, n, 7)
    (y,) = run_op_cuda("MatmulTc", [a, b], {}, [(rows, n)], [np.float32])
    pick = sample_rows(rows, k, g)
    ref = a[pick].astype(np.float64) @ b.astype(np.float64)
    assert rel_err(y[pick], ref) <= 1e-3, f"sampled rows {pick.tolist()}"
    assert not np.isnan(y).any(), "unwritten (NaN) rows"


@large
def test_attention_flash_q_past_2g_elements():
    g = rng()
    batch, hq, hkv, s, d = 4096, 16, 1, 256, 128  # Q and O: 2^31 elements each; K, V 2^27 (MQA)
    q = hashed(batch * hq * s, d, 8).reshape(batch, hq, s, d)
    k = hashed(batch * hkv * s, d, 9).reshape(batch, hkv, s, d)
    v = hashed(batch * hkv * s, d, 10).reshape(batch, hkv, s, d)
    (o,) = run_op_cuda("AttentionFlash", [q, k, v], {"out_dtype": 10}, [q.shape], [np.float16])
    for b in np.unique(np.r_[0, batch - 1, (1 << 31) // (hq * s * d), g.integers(0, batch, 6)]):
        ref, _ = attention(q[b:b + 1], k[b:b + 1], v[b:b + 1])
        err = rel_err(o[b:b + 1], ref)
        assert err <= 5e-3, f"batch {b}: relative error {err:.2e}"
