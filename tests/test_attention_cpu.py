"""Attention family (AttentionTc[Causal], AttentionFlash[Causal], AttentionFlashGrad) on the CPU EP
against the float64 reference (DESIGN.md, "Contract details")."""
import re

import numpy as np
import pytest
from op_harness import VALIDATION_PROVIDERS, BF16, input_rule, assert_close, build_model, feeds, randn, rel_err, rng, run_op, session

from kaio_ort.reference import attention, attention_grad

ONNX_TYPE = {np.float32: 1, np.float16: 10, BF16: 16}
# The CPU kernel computes in double and rounds once to the output type.
TOL = {np.float32: 1e-6, np.float16: 1e-3, BF16: 8e-3}
LSE_TOL = 1e-6  # LSE is float32: |err| <= LSE_TOL * (1 + |ref|)

# (name, layout, batch dims, Hq, Hkv, Sq, Sk, D, Dv); Hq None: bhsd rank 2 [S, D] (one head).
SHAPES = [
    ("s1", "bhsd", (), None, None, 1, 1, 8, 8),
    ("rank2_odd", "bhsd", (), None, None, 17, 23, 33, 7),
    ("rank2_sq_gt_sk", "bhsd", (), None, None, 11, 4, 8, 8),      # causal: 7 rows see no key
    ("rank3", "bhsd", (), 3, 3, 5, 9, 64, 64),
    ("decode", "bhsd", (2,), 4, 4, 1, 37, 64, 64),
    ("sq_gt_sk", "bhsd", (1,), 2, 2, 13, 5, 16, 24),
    ("d1", "bhsd", (), 2, 2, 7, 7, 1, 3),
    ("d96", "bhsd", (2,), 2, 2, 19, 19, 96, 96),
    ("d128", "bhsd", (1,), 1, 1, 9, 11, 128, 128),
    ("d256", "bhsd", (), None, None, 3, 4, 256, 256),
    ("dv_ne_d", "bhsd", (2,), 3, 3, 11, 29, 40, 72),
    ("sk0", "bhsd", (), 2, 2, 3, 0, 8, 8),                         # no keys at all
    ("rank5", "bhsd", (2, 3), 2, 2, 6, 10, 24, 24),
    ("bshd", "bshd", (2,), 3, 3, 7, 12, 32, 16),
    ("bshd_sq_gt_sk", "bshd", (1,), 2, 2, 9, 4, 8, 8),
    ("gqa", "bhsd", (2,), 4, 2, 9, 15, 32, 32),
    ("mqa_decode", "bhsd", (1,), 4, 1, 1, 37, 64, 48),
    ("mqa_sq_gt_sk", "bhsd", (), 4, 1, 6, 3, 16, 16),
    ("gqa_bshd", "bshd", (2,), 6, 2, 5, 11, 16, 8),
    ("sq0", "bhsd", (), 2, 2, 0, 5, 8, 8),                         # zero-size dims: empty outputs
    ("batch0", "bhsd", (0,), 4, 2, 3, 4, 8, 8),
]


def qkv_shapes(layout, batch, hq, hkv, sq, sk, d, dv):
    if layout == "bshd":
        return (batch + (sq, hq, d), batch + (sk, hkv, d), batch + (sk, hkv, dv))
    if hq is None:
        return ((sq, d), (sk, d), (sk, dv))
    return (batch + (hq, sq, d), batch + (hkv, sk, d), batch + (hkv, sk, dv))


def heads_first(x, layout):
    """O / dO as [..., H, S, D] (the reference's view), to index rows by an LSE mask."""
    x = np.asarray(x)
    if layout == "bshd":
        return np.swapaxes(x, 1, 2)
    return x[None] if x.ndim == 2 else x


def check_lse(lse, ref_lse):
    lse = np.asarray(lse, np.float64)
    assert lse.dtype == np.float64 and lse.shape == ref_lse.shape
    assert not np.any(np.isnan(lse)), "LSE has NaN"
    none = np.isneginf(ref_lse)
    np.testing.assert_array_equal(np.isneginf(lse), none, "LSE = -inf exactly where a row sees no key")
    err = np.abs(lse[~none] - ref_lse[~none])
    assert np.all(err <= LSE_TOL * (1 + np.abs(ref_lse[~none]))), f"LSE max error {err.max():.3e}"


FWD_OPS = [("AttentionTc", False, False), ("AttentionTcCausal", False, True),
           ("AttentionFlash", True, False), ("AttentionFlashCausal", True, True)]
# (O in float32?, scale attribute (None: absent), LSE requested?)
VARIANTS = [(True, None, True), (False, 0.37, False), (False, 0.0, True)]


def fwd_cases():
    for op, flash, causal in FWD_OPS:
        for dtype in ([np.float16, BF16, np.float32] if flash else [np.float16, BF16]):
            for shape in SHAPES:
                if not flash and shape[3] != shape[4]:
                    continue  # grouped K/V heads: AttentionFlash only
                yield pytest.param(op, flash, causal, dtype, shape,
                                   id=f"{op}-{np.dtype(dtype).name}-{shape[0]}")


@pytest.mark.parametrize("op,flash,causal,dtype,shape", list(fwd_cases()))
@pytest.mark.parametrize("out_float,scale,want_lse", VARIANTS)
def test_forward(op, flash, causal, dtype, shape, out_float, scale, want_lse):
    layout = shape[1]
    q_shape, k_shape, v_shape = qkv_shapes(layout, *shape[2:])
    g = rng()
    q, k, v = (randn(g, s, dtype) for s in (q_shape, k_shape, v_shape))
    attrs = {}
    if scale is not None:
        attrs["scale"] = scale
    if layout != "bhsd" or shape[0] == "rank3":
        attrs["layout"] = layout  # given explicitly (bhsd is the default elsewhere)
    out_t = np.float32 if out_float else dtype
    if not out_float:
        attrs["out_dtype"] = ONNX_TYPE[dtype]
    want_lse = want_lse and flash
    outs = run_op(op, [q, k, v], attrs, [out_t, np.float32] if want_lse else [out_t])
    # The kernel reads the attribute as float32.
    ref_o, ref_lse = attention(q, k, v, None if scale is None else np.float32(scale), causal, layout)
    o = outs[0]
    assert o.shape == ref_o.shape and o.shape == q_shape[:-1] + (v_shape[-1],)
    assert_close(o, ref_o, TOL[out_t], op)
    unseen = np.isneginf(ref_lse)  # rows that see no key (causal Sq > Sk, or Sk = 0)
    o_rows = heads_first(o, layout)
    assert np.all(o_rows[unseen.reshape(o_rows.shape[:-1])] == 0), "rows that see no key must be zero"
    if want_lse:
        assert outs[1].shape == ref_lse.shape
        check_lse(outs[1], ref_lse)


def test_causal_mask_is_bottom_right():
    """Closed form of the causal mask for Sq = 6 > Sk = 3: query i sees keys j <= i - 3, so rows
    0..2 see nothing (zeros, LSE = -inf) and row 3 sees key 0 alone (O = V[0], LSE = its score)."""
    g = rng()
    q, k, v = randn(g, (2, 6, 8), np.float32), randn(g, (2, 3, 8), np.float32), randn(g, (2, 3, 8), np.float32)
    o, lse = run_op("AttentionFlashCausal", [q, k, v], {}, [np.float32, np.float32])
    assert np.all(np.isneginf(lse[:, :3])) and np.all(np.isfinite(lse[:, 3:]))
    assert np.all(o[:, :3] == 0) and np.all(np.abs(o[:, 3:]).sum(-1) > 0)
    np.testing.assert_array_equal(o[:, 3], v[:, 0])
    score = np.sum(q[:, 3].astype(np.float64) * k[:, 0], axis=-1) / np.sqrt(8)
    np.testing.assert_allclose(lse[:, 3], score, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# AttentionFlashGrad

GRAD_SHAPES = [s for s in SHAPES if s[0] in {"s1", "rank2_odd", "rank2_sq_gt_sk", "rank3", "decode", "sq_gt_sk",
                                             "d1", "dv_ne_d", "rank5", "bshd", "bshd_sq_gt_sk", "gqa",
                                             "mqa_decode", "mqa_sq_gt_sk", "gqa_bshd", "d256", "sk0", "sq0"}]


@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=[s[0] for s in GRAD_SHAPES])
@pytest.mark.parametrize("causal", [0, 1])
@pytest.mark.parametrize("dtype,do_float,o_float,scale,deterministic", [
    (np.float32, True, True, None, None),
    (np.float16, False, False, 0.41, 1),
    (BF16, True, False, 0.0, 0),
    (np.float16, True, True, None, None),
    (BF16, False, False, 0.41, 1),
], ids=["f32", "f16-f16_grads-scale", "bf16-dO_f32-O_bf16", "f16-f32_grads", "bf16-bf16_grads-scale"])
def test_grad(shape, dtype, causal, do_float, o_float, scale, deterministic):
    layout = shape[1]
    q_shape, k_shape, v_shape = qkv_shapes(layout, *shape[2:])
    g = rng()
    q, k, v = (randn(g, s, dtype) for s in (q_shape, k_shape, v_shape))
    fwd_attrs = {"layout": layout}
    if scale is not None:
        fwd_attrs["scale"] = scale
    o_t = np.float32 if o_float else dtype
    fwd_op = "AttentionFlashCausal" if causal else "AttentionFlash"
    o, lse = run_op(fwd_op, [q, k, v], fwd_attrs | {"out_dtype": ONNX_TYPE[o_t]}, [o_t, np.float32])
    o = o.astype(o_t)  # bfloat16 comes back as float32 (exactly)
    d_o = randn(g, o.shape, np.float32 if do_float else dtype)
    attrs = fwd_attrs | {"causal": causal}
    if deterministic is not None:
        attrs["deterministic"] = deterministic
    dq, dk, dv = run_op("AttentionFlashGrad", [d_o, q, k, v, o, lse], attrs, [dtype] * 3)
    ref = attention_grad(d_o, q, k, v, None if scale is None else np.float32(scale), bool(causal), layout,
                         o=o, lse=lse)
    for name, out, r, s in zip(("dQ", "dK", "dV"), (dq, dk, dv), ref, (q_shape, k_shape, v_shape)):
        assert out.shape == s
        if r.size and np.max(np.abs(r)) < 1e-9:
            # Sk = 1: P = 1 and dQ = dK = 0 exactly; both sides are rounding noise (no relative error)
            assert np.max(np.abs(out)) < 1e-5, name
        else:
            assert_close(out, r, TOL[dtype], name)
    if dtype == np.float32 and not scale:
        # End to end: the forward's float32 O and LSE against the exact gradient. Only for the default
        # scale: a sharply peaked softmax (large scale) amplifies O's and LSE's float32 rounding.
        exact = attention_grad(d_o, q, k, v, None, bool(causal), layout)
        for name, out, r in zip(("dQ", "dK", "dV"), (dq, dk, dv), exact):
            if not (r.size and np.max(np.abs(r)) < 1e-9):
                assert_close(out, r, 1e-5, name + " (exact)")


def test_grad_seq1_closed_form():
    """Sk = 1: P = 1, O = V, so dV = sum of dO over the rows and grouped heads, dQ = dK = 0."""
    g = rng()
    q, k, v = (randn(g, s, np.float32) for s in ((2, 4, 5, 8), (2, 2, 1, 8), (2, 2, 1, 6)))
    d_o = randn(g, (2, 4, 5, 6), np.float32)
    ref_dq, ref_dk, ref_dv = attention_grad(d_o, q, k, v)
    closed_dv = d_o.astype(np.float64).reshape(2, 2, 2, 5, 6).sum(axis=(2, 3))[:, :, None, :]
    np.testing.assert_allclose(ref_dv, closed_dv, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(ref_dq)) < 1e-12 and np.max(np.abs(ref_dk)) < 1e-12
    o, lse = run_op("AttentionFlash", [q, k, v], {}, [np.float32, np.float32])
    np.testing.assert_array_equal(o, np.broadcast_to(np.repeat(v, 2, axis=1), o.shape))
    dq, dk, dv = run_op("AttentionFlashGrad", [d_o, q, k, v, o, lse], {}, [np.float32] * 3)
    assert_close(dv, closed_dv, 1e-6, "dV")
    assert np.max(np.abs(dq)) < 1e-5 and np.max(np.abs(dk)) < 1e-5


@pytest.mark.parametrize("layout,q_shape,k_shape,v_shape,causal,scale", [
    ("bhsd", (3, 4), (5, 4), (5, 3), False, None),
    ("bhsd", (1, 4, 3, 5), (1, 2, 4, 5), (1, 2, 4, 3), True, None),   # GQA + causal, Sq < Sk
    ("bhsd", (4, 5, 3), (1, 3, 3), (1, 3, 2), True, 0.7),             # MQA + causal, Sq > Sk
    ("bshd", (1, 3, 4, 3), (1, 4, 2, 3), (1, 4, 2, 2), True, None),   # GQA, bshd
], ids=["single_head", "gqa_causal", "mqa_causal_sq_gt_sk", "gqa_bshd"])
def test_reference_grad_matches_finite_differences(layout, q_shape, k_shape, v_shape, causal, scale):
    """The float64 reference itself, checked by central differences of sum(O * dO) on every
    element of Q, K and V."""
    g = rng()
    q, k, v = (g.standard_normal(s) for s in (q_shape, k_shape, v_shape))
    o, _ = attention(q, k, v, scale, causal, layout)
    d_o = g.standard_normal(o.shape)
    grads = attention_grad(d_o, q, k, v, scale, causal, layout)

    def f():
        return np.sum(attention(q, k, v, scale, causal, layout)[0] * d_o)

    h = 1e-6
    for x, grad in zip((q, k, v), grads):
        assert grad.shape == x.shape
        for idx in np.ndindex(x.shape):
            x[idx] += h
            fp = f()
            x[idx] -= 2 * h
            fm = f()
            x[idx] += h
            assert abs((fp - fm) / (2 * h) - grad[idx]) < 1e-6, idx


# ---------------------------------------------------------------------------------------------
# Validation: one rule per row; each pattern matches the op, the input (or attribute) and the rule
# (the node name is optional in the pattern, as shape-inference errors have none). In practice ORT
# (onnxruntime/core/session/custom_ops.cc) ignores the status our shape inference returns, so shape
# and type rules are reported by the kernel's Compute and attribute rules at kernel creation, both
# with the node name; see run_untyped_outputs.

F16, F32 = np.float16, np.float32


def t(shape, dtype=F16):
    return np.zeros(shape, dtype)


def err(op, what, rule):
    return rf"\[com\.kaio\.{op}\]( node '[^']*')?: {what}: {rule}"


def inp(op, name, index, rule):
    return input_rule(op, name, index, rule, regex=True)


def attr(op, name, rule):
    return err(op, f"attribute '{name}'", rule)


QKV = [t((2, 3, 5, 8)), t((2, 3, 7, 8)), t((2, 3, 7, 6))]
O_GRAD = t((2, 3, 5, 6))
LSE_GRAD = t((2, 3, 5), F32)

VALIDATION = [
    # (id, op, inputs, attrs, number of outputs, pattern)
    ("tc_f32", "AttentionTc", [t((4, 8), F32), t((4, 8), F32), t((4, 8), F32)], {}, 1,
     inp("AttentionTc", "Q", 0, "element type must be float16, bfloat16, got float")),
    ("flash_int", "AttentionFlash", [t((4, 8), np.int32)] * 3, {}, 1,
     inp("AttentionFlash", "Q", 0, r"element type must be float16, bfloat16, float, got int32")),
    ("k_dtype", "AttentionFlash", [t((4, 8), F32), t((4, 8), F16), t((4, 8), F32)], {}, 1,
     inp("AttentionFlash", "K", 1, r"element type must equal Q's \(float\), got float16")),
    ("v_dtype", "AttentionTcCausal", [t((4, 8)), t((4, 8)), t((4, 8), BF16)], {}, 1,
     inp("AttentionTcCausal", "V", 2, r"element type must equal Q's \(float16\), got bfloat16")),
    ("q_rank1", "AttentionFlash", [t((8,)), t((4, 8)), t((4, 8))], {}, 1,
     inp("AttentionFlash", "Q", 0, "rank must be at least 2")),
    ("k_rank", "AttentionFlash", [t((2, 4, 8)), t((4, 8)), t((4, 8))], {}, 1,
     inp("AttentionFlash", "K", 1, r"rank must equal Q's \(3, layout \"bhsd\"\), got shape \[4, 8\]")),
    ("v_rank", "AttentionTc", [t((1, 2, 4, 8)), t((1, 2, 4, 8)), t((2, 4, 8))], {}, 1,
     inp("AttentionTc", "V", 2, r"rank must equal Q's \(4, layout \"bhsd\"\)")),
    ("bshd_rank3", "AttentionFlash", [t((2, 4, 8))] * 3, {"layout": "bshd"}, 1,
     inp("AttentionFlash", "Q", 0, r"layout \"bshd\" needs rank 4 \[B, S, H, D\], got shape \[2, 4, 8\]")),
    ("bshd_rank5", "AttentionFlashCausal", [t((1, 2, 4, 2, 8))] * 3, {"layout": "bshd"}, 1,
     inp("AttentionFlashCausal", "Q", 0, r"layout \"bshd\" needs rank 4")),
    ("k_batch", "AttentionFlash", [t((2, 3, 5, 8)), t((1, 3, 7, 8)), t((1, 3, 7, 8))], {}, 1,
     inp("AttentionFlash", "K", 1, r"batch dims \[1\] must equal Q's \[2\]")),
    ("v_batch", "AttentionFlash", [t((2, 3, 5, 8)), t((2, 3, 7, 8)), t((3, 3, 7, 8))], {}, 1,
     inp("AttentionFlash", "V", 2, r"batch dims \[3\] must equal Q's \[2\]")),
    ("k_d", "AttentionTc", [t((3, 5, 8)), t((3, 7, 16)), t((3, 7, 8))], {}, 1,
     inp("AttentionTc", "K", 1, r"head dim D \(16\) must equal Q's \(8\)")),
    ("d_257", "AttentionFlash", [t((5, 257)), t((7, 257)), t((7, 8))], {}, 1,
     inp("AttentionFlash", "Q", 0, r"head dim D must be in 1\.\.256, got 257")),
    ("dv_300", "AttentionTc", [t((5, 8)), t((7, 8)), t((7, 300))], {}, 1,
     inp("AttentionTc", "V", 2, r"head dim Dv must be in 1\.\.256, got 300")),
    ("d_0", "AttentionFlash", [t((5, 0)), t((7, 0)), t((7, 8))], {}, 1,
     inp("AttentionFlash", "Q", 0, r"head dim D must be in 1\.\.256, got 0")),
    ("v_sk", "AttentionFlash", [t((3, 5, 8)), t((3, 7, 8)), t((3, 6, 8))], {}, 1,
     inp("AttentionFlash", "V", 2, r"sequence length \(6\) must equal K's Sk \(7\)")),
    ("v_heads", "AttentionFlash", [t((4, 5, 8)), t((2, 7, 8)), t((1, 7, 8))], {}, 1,
     inp("AttentionFlash", "V", 2, r"head count \(1\) must equal K's \(2\)")),
    ("gqa_indivisible", "AttentionFlash", [t((4, 5, 8)), t((3, 7, 8)), t((3, 7, 8))], {}, 1,
     inp("AttentionFlash", "K", 1, r"head count Hkv \(3\) must divide Q's head count Hq \(4\)")),
    ("gqa_bshd_indivisible", "AttentionFlashCausal", [t((1, 5, 4, 8)), t((1, 7, 3, 8)), t((1, 7, 3, 8))],
     {"layout": "bshd"}, 1, inp("AttentionFlashCausal", "K", 1, r"head count Hkv \(3\) must divide")),
    ("tc_gqa", "AttentionTc", [t((4, 5, 8)), t((2, 7, 8)), t((2, 7, 8))], {}, 1,
     inp("AttentionTc", "K", 1, r"head count \(2\) must equal Q's \(4\): grouped K/V heads \(GQA/MQA\) need "
                                "AttentionFlash")),
    ("layout", "AttentionFlash", QKV, {"layout": "bsdh"}, 1,
     attr("AttentionFlash", "layout", r"must be \"bhsd\" or \"bshd\", got \"bsdh\"")),
    ("scale_neg", "AttentionTc", QKV, {"scale": -0.5}, 1,
     attr("AttentionTc", "scale", r"must be finite and >= 0")),
    ("scale_inf", "AttentionFlash", QKV, {"scale": float("inf")}, 1,
     attr("AttentionFlash", "scale", r"must be finite and >= 0")),
    ("scale_nan", "AttentionFlashGrad", [O_GRAD, *QKV, O_GRAD, LSE_GRAD], {"scale": float("nan")}, 3,
     attr("AttentionFlashGrad", "scale", r"must be finite and >= 0")),
    ("out_dtype_other", "AttentionTc", QKV, {"out_dtype": 16}, 1,
     attr("AttentionTc", "out_dtype", r"must be 1 \(float\) or Q's element type \(10, float16\), got 16")),
    ("out_dtype_double", "AttentionFlash", QKV, {"out_dtype": 11}, 1,
     attr("AttentionFlash", "out_dtype", r"must be one of 1 \(float\), 10 \(float16\), 16 \(bfloat16\), got 11")),
    ("causal_2", "AttentionFlashGrad", [O_GRAD, *QKV, O_GRAD, LSE_GRAD], {"causal": 2}, 3,
     attr("AttentionFlashGrad", "causal", r"must be 0 or 1, got 2")),
    ("grad_do_shape", "AttentionFlashGrad", [t((2, 3, 5, 8)), *QKV, O_GRAD, LSE_GRAD], {}, 3,
     inp("AttentionFlashGrad", "dO", 0, r"shape must be the forward output's \[2, 3, 5, 6\], got \[2, 3, 5, 8\]")),
    ("grad_o_shape", "AttentionFlashGrad", [O_GRAD, *QKV, t((2, 3, 4, 6)), LSE_GRAD], {}, 3,
     inp("AttentionFlashGrad", "O", 4, r"shape must be the forward output's \[2, 3, 5, 6\]")),
    ("grad_lse_shape", "AttentionFlashGrad", [O_GRAD, *QKV, O_GRAD, t((2, 3, 5, 1), F32)], {}, 3,
     inp("AttentionFlashGrad", "LSE", 5, r"shape must be the forward's LSE shape \[2, 3, 5\]")),
    ("grad_lse_dtype", "AttentionFlashGrad", [O_GRAD, *QKV, O_GRAD, t((2, 3, 5))], {}, 3,
     # LSE's only type is declared to ORT, so ORT's schema check refuses it first, in its own words
     r"Type 'tensor\(float16\)' of input parameter \(in5\) of operator \(AttentionFlashGrad\)"),
    ("grad_do_dtype", "AttentionFlashGrad", [t((2, 3, 5, 6), BF16), *QKV, O_GRAD, LSE_GRAD], {}, 3,
     inp("AttentionFlashGrad", "dO", 0, r"element type must be float or Q's \(float16\), got bfloat16")),
    ("grad_o_dtype", "AttentionFlashGrad", [O_GRAD, *QKV, t((2, 3, 5, 6), BF16), LSE_GRAD], {}, 3,
     inp("AttentionFlashGrad", "O", 4, r"element type must be float or Q's \(float16\), got bfloat16")),
    ("grad_gqa", "AttentionFlashGrad",
     [t((1, 4, 5, 6)), t((1, 4, 5, 8)), t((1, 3, 7, 8)), t((1, 3, 7, 6)), t((1, 4, 5, 6)), t((1, 4, 5), F32)],
     {}, 3, inp("AttentionFlashGrad", "K", 2, r"head count Hkv \(3\) must divide")),
    ("grad_v_dtype", "AttentionFlashGrad", [O_GRAD, QKV[0], QKV[1], t((2, 3, 7, 6), F32), O_GRAD, LSE_GRAD], {},
     3, inp("AttentionFlashGrad", "V", 3, r"element type must equal Q's \(float16\), got float")),
]


def _out_types(op, inputs, attrs, n):
    if op == "AttentionFlashGrad":
        return [inputs[1].dtype] * 3
    return [{10: np.float16, 16: BF16}.get(attrs.get("out_dtype", 1), np.float32)] + [np.float32] * (n - 1)


@pytest.mark.parametrize("op,inputs,attrs,n_out,pattern", [v[1:] for v in VALIDATION], ids=[v[0] for v in VALIDATION])
@pytest.mark.parametrize("provider", VALIDATION_PROVIDERS)
def test_validation(op, inputs, attrs, n_out, pattern, provider):
    """Graph outputs declare the types the op gives them, so ORT's own output type check agrees
    and our rule is what fails: at session creation (kernel creation validates the graph's
    declared inputs and the attributes) or, for shapes only known then, in Compute."""
    with pytest.raises(Exception, match=pattern):
        run_op(op, inputs, attrs, _out_types(op, inputs, attrs, n_out), provider=provider)


RUNTIME_ONLY = [
    ("k_d", "AttentionFlash", [t((3, 5, 8)), t((3, 7, 16)), t((3, 7, 8))], {"out_dtype": 10}, 2,
     inp("AttentionFlash", "K", 1, r"head dim D \(16\) must equal Q's \(8\)")),
    ("tc_gqa", "AttentionTcCausal", [t((4, 5, 8)), t((2, 7, 8)), t((2, 7, 8))], {"out_dtype": 10}, 1,
     inp("AttentionTcCausal", "K", 1, r"head count \(2\) must equal Q's \(4\): grouped K/V heads \(GQA/MQA\) "
                                      "need AttentionFlash")),
    ("bshd_rank3", "AttentionFlash", [t((2, 4, 8))] * 3, {"layout": "bshd", "out_dtype": 10}, 1,
     inp("AttentionFlash", "Q", 0, r"layout \"bshd\" needs rank 4")),
    ("grad_lse_shape", "AttentionFlashGrad", [O_GRAD, *QKV, O_GRAD, t((2, 3, 4), F32)], {}, 3,
     inp("AttentionFlashGrad", "LSE", 5, r"shape must be the forward's LSE shape \[2, 3, 5\]")),
    ("grad_do_shape", "AttentionFlashGrad", [t((2, 3, 5, 7)), *QKV, O_GRAD, LSE_GRAD], {}, 3,
     inp("AttentionFlashGrad", "dO", 0, r"shape must be the forward output's \[2, 3, 5, 6\]")),
]


@pytest.mark.parametrize("op,inputs,attrs,n_out,pattern", [v[1:] for v in RUNTIME_ONLY],
                         ids=[v[0] for v in RUNTIME_ONLY])
@pytest.mark.parametrize("provider", VALIDATION_PROVIDERS)
def test_validation_at_run_time(op, inputs, attrs, n_out, pattern, provider):
    """Shapes unknown to shape inference (typed graph outputs this time): the kernel's own check,
    with the node's name, fires in Compute. out_dtype is Q's type because of the bug below."""
    node = rf"\[com\.kaio\.{op}\] node '{op}_\d+': "
    with pytest.raises(Exception, match=node) as info:
        run_op(op, inputs, attrs, _out_types(op, inputs, attrs, n_out), provider=provider,
               input_shapes=[None] * len(inputs))
    assert re.search(pattern, str(info.value)), str(info.value)


def test_unknown_rank_inputs_with_float_output():
    """With inputs of unknown rank our shape inference cannot type O; ORT takes its type from the
    model (every registered variant has typed inputs, so ORT has no input type to copy)."""
    g = rng()
    q, k, v = (randn(g, (2, 4, 8), np.float16) for _ in range(3))
    o, lse = run_op("AttentionFlash", [q, k, v], {}, [np.float32, np.float32], input_shapes=[None] * 3)
    assert_close(o, attention(q, k, v)[0], 1e-6)


def test_rel_err_rejects_nan():
    assert rel_err(np.array([np.nan, 1.0]), np.array([1.0, 1.0])) == float("inf")


@pytest.mark.parametrize("wanted", [(0,), (1, 2), (2,)], ids=["dQ", "dK_dV", "dV"])
def test_grad_with_outputs_left_out(wanted):
    """ORT training leaves out gradients nobody needs (output name ""): the others are unchanged."""
    g = rng()
    q, k, v = randn(g, (2, 4, 5, 8), np.float32), randn(g, (2, 2, 7, 8), np.float32), randn(g, (2, 2, 7, 6), np.float32)
    o, lse = run_op("AttentionFlashCausal", [q, k, v], {}, [np.float32, np.float32])
    d_o = randn(g, o.shape, np.float32)
    ref = attention_grad(d_o, q, k, v, None, True, "bhsd", o=o, lse=lse)
    out_types = [np.float32 if i in wanted else None for i in range(3)]
    got = run_op("AttentionFlashGrad", [d_o, q, k, v, o, lse], {"causal": 1}, out_types)
    assert len(got) == len(wanted)
    for i, out in zip(wanted, got):
        assert_close(out, ref[i], 1e-6, ("dQ", "dK", "dV")[i])
