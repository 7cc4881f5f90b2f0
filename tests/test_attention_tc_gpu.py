"""AttentionTc / AttentionTcCausal on the CUDA EP (attention_tc_kernel.cuh: a query tile's scores in
shared memory) against the float64 reference (kaio_ort.reference.attention); IOBinding with
NaN-poisoned, guarded outputs (bfloat16 too), and the Sk cap of the device's shared memory (an input
error naming AttentionFlash). CUDA-graph replay, repeated runs and the CUDA-side validation rules of
these ops are in test_attention_gpu.py, next to AttentionFlash's."""
import re

import numpy as np
import pytest
from gpu_harness import run_op_cuda
from op_harness import BF16, input_rule, randn, rng
from test_attention_cpu import qkv_shapes  # the shape table's conventions, shared
from test_attention_gpu import BF16_TOL, TOL, attrs_for, check_outputs

from kaio_ort.reference import attention

pytestmark = pytest.mark.gpu

# (name, layout, batch dims, Hq, Hkv, Sq, Sk, D, Dv); Hq None: bhsd rank 2 [S, D] (one head); Hkv == Hq
# (AttentionTc's contract). Derived from the kernel's tiles (16 / 32 / 64 query rows chosen by Sq and
# Sk, 64-key chunks, head-dim tiles 64 / 128 / 256): S = 1, S not a multiple of 16 / 64, Sq < Sk and
# Sq > Sk (causal rows that see no key: exactly zero), several key chunks, every head-dim tile and odd
# head dims (D % 8 != 0: element loads), D != Dv, both layouts, ranks 2..5, long Sk (16-row tiles).
SHAPES = [
    ("s1", "bhsd", (2,), 4, 4, 1, 1, 64, 64),
    ("d32_65", "bhsd", (2,), 4, 4, 65, 65, 32, 32),
    ("d64_128", "bhsd", (2,), 4, 4, 128, 128, 64, 64),
    ("d96_sq_lt_sk", "bhsd", (1,), 3, 3, 65, 129, 96, 96),
    ("d128_200_700", "bhsd", (1,), 2, 2, 200, 700, 128, 128),
    ("d128_sq_gt_sk", "bhsd", (1,), 4, 4, 129, 63, 128, 128),     # causal: 66 rows see no key
    ("d256_63", "bhsd", (1,), 2, 2, 63, 63, 256, 256),
    ("d256_sq_lt_sk", "bshd", (1,), 2, 2, 40, 300, 256, 256),
    ("d40_bshd", "bshd", (2,), 4, 4, 200, 200, 40, 40),
    ("bshd_sq_gt_sk", "bshd", (1,), 4, 4, 300, 77, 128, 128),     # causal: 223 rows see no key
    ("dv_ne_d", "bhsd", (2,), 4, 4, 65, 130, 64, 32),
    ("rank2", "bhsd", (), None, None, 63, 129, 64, 64),
    ("d72_rank3", "bhsd", (), 3, 3, 77, 77, 72, 72),
    ("rank5", "bhsd", (2, 3), 2, 2, 33, 47, 64, 64),
    ("decode_kv", "bhsd", (2,), 4, 4, 3, 1000, 128, 128),
    ("sk1_bshd", "bshd", (1,), 4, 4, 65, 1, 32, 32),              # causal: only the last row sees a key
    ("d20_elementwise", "bhsd", (1,), 2, 2, 65, 129, 20, 20),
    ("d12_dv36_elementwise", "bhsd", (2,), 4, 4, 17, 300, 12, 36),
    ("sk2000_bshd", "bshd", (1,), 2, 2, 100, 2000, 64, 64),       # fits A100 and H100 alike
]
SHAPE = {s[0]: s for s in SHAPES}
# (id, O's type, scale attribute (None: absent))
VARIANTS = [("out_f32", np.float32, None), ("out_f16_scale", np.float16, 0.3)]
OPS = [("AttentionTc", False), ("AttentionTcCausal", True)]


def _inputs(shape, t):
    g = rng()
    return [randn(g, s, t) for s in qkv_shapes(shape[1], *shape[2:])]


def _check(op, causal, shape, t, out_t, scale):
    layout = shape[1]
    q, k, v = _inputs(shape, t)
    # The kernel reads the scale attribute as float32.
    ref_o, ref_lse = attention(q, k, v, None if scale is None else np.float32(scale), causal, layout)
    (o,) = run_op_cuda(op, [q, k, v], attrs_for(shape, out_t, scale), [ref_o.shape], [out_t])
    tol = BF16_TOL[out_t] if t is BF16 else TOL[out_t]
    check_outputs([o], ref_o, ref_lse, layout, tol, False, op)


@pytest.mark.parametrize("vid,out_t,scale", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("name", [s[0] for s in SHAPES])
@pytest.mark.parametrize("op,causal", OPS, ids=[o for o, _ in OPS])
def test_attention_tc_cuda(op, causal, name, vid, out_t, scale):
    _check(op, causal, SHAPE[name], np.float16, out_t, scale)


BF16_SHAPES = ["s1", "d64_128", "d128_sq_gt_sk", "d256_sq_lt_sk", "bshd_sq_gt_sk", "dv_ne_d", "d20_elementwise",
               "sk2000_bshd"]


@pytest.mark.parametrize("out_bf16", [False, True], ids=["out_f32", "out_bf16"])
@pytest.mark.parametrize("name", BF16_SHAPES)
@pytest.mark.parametrize("op,causal", OPS, ids=[o for o, _ in OPS])
def test_attention_tc_bf16_cuda(op, causal, name, out_bf16):
    """bfloat16 Q, K, V (and O) bound as such."""
    _check(op, causal, SHAPE[name], BF16, BF16 if out_bf16 else np.float32, None)


SK_CAP = re.compile(r"Sk \((\d+)\) must be at most (\d+) for (AttentionTc\w*) on this GPU")


def _refusal(op, sk, d=128):
    """The error of an Sk past the device's cap, and the cap it names."""
    q = np.zeros((1, 1, 16, d), np.float16)
    kv = np.zeros((1, 1, sk, d), np.float16)
    pattern = input_rule(op, "K", 1, rf"Sk \({sk}\) must be at most \d+ for {op} on this GPU \(D = {d}, Dv = {d}\)"
                                     r".*shared memory.*use AttentionFlash" + ("Causal" if op.endswith("Causal") else "")
                         + " for longer key sequences", regex=True)
    with pytest.raises(Exception, match=pattern) as info:
        run_op_cuda(op, [q, kv, kv], {}, [q.shape], [np.float32])
    return int(SK_CAP.search(str(info.value)).group(2))


@pytest.mark.parametrize("op,causal", OPS, ids=[o for o, _ in OPS])
def test_sk_past_the_shared_memory_cap_is_refused_naming_attention_flash(op, causal):
    """Sk past what a block's opt-in shared memory holds is an input error naming AttentionFlash (raised
    before any launch); Sk at the cap runs and is right, one key more is refused."""
    cap = _refusal(op, 100_000)
    assert 64 <= cap < 100_000, cap  # ~2000 keys on sm_80 / sm_90 at D = 128, ~960 on sm_86 / sm_89
    assert _refusal(op, cap + 1) == cap
    shape = ("at_cap", "bhsd", (1,), 2, 2, 40, cap, 128, 128)
    _check(op, causal, shape, np.float16, np.float32, None)
