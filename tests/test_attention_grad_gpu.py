"""AttentionFlashGrad on the CUDA EP (attention_flash_grad_sm80.cu) against the float64 reference
gradients (kaio_ort.reference.attention_grad, fed the same O and LSE the kernel reads); IOBinding with
NaN-poisoned, guarded outputs (bfloat16 too), the deterministic mode bit-identical across runs,
CUDA-graph replay, outputs left out of the node, and torch's SDPA autograd on one shape."""
import numpy as np
import pytest
from gpu_harness import BoundRun, cuda_graph_test, cuda_session, launched_kernels, require_sm90, run_op_cuda
from op_harness import BF16, build_model, rel_err, randn, rng
from test_attention_cpu import qkv_shapes

from kaio_ort.reference import attention, attention_grad

pytestmark = pytest.mark.gpu

# f32 accumulation; P and dS rounded to the input type for the tensor cores, dQ / dK / dV rounded once.
TOL = {np.float16: 1e-2, BF16: 2e-2}

# (name, layout, batch dims, Hq, Hkv, Sq, Sk, D, Dv); Hq None: bhsd rank 2 [S, D]. Tiles: 64 query
# rows, 64 keys (32 for the 256-wide head-dim tile); on sm_90 at D == Dv in {64, 128} (the wgmma K/V
# kernel) 128 keys and 64 (D = 128) or 128 (D = 64) query rows; S not a multiple of them, several
# of them, Sq < Sk and Sq > Sk (causal rows that see no key), GQA / MQA, both layouts, head dims
# 64 / 128 (fast) and 32 / 96 / 256 and odd ones (element loads; D = 36, Dv = 20 take the scalar
# prep and dQ store passes, the others their 16-byte forms), D != Dv.
GRAD_SHAPES = [
    ("d64_100", "bhsd", (2,), 4, 4, 100, 100, 64, 64),
    ("d64_gqa_bshd_sq_lt_sk", "bshd", (2,), 8, 2, 77, 130, 64, 64),
    ("d64_sq_gt_sk", "bhsd", (1,), 4, 4, 130, 63, 64, 64),
    ("d128_129", "bhsd", (1,), 2, 2, 129, 129, 128, 128),
    ("d128_mqa_bshd", "bshd", (1,), 4, 1, 65, 190, 128, 128),
    ("d128_gqa_sq_gt_sk", "bhsd", (1,), 6, 2, 150, 90, 128, 128),
    ("d32_65", "bhsd", (2,), 2, 2, 65, 65, 32, 32),
    ("d96_gqa", "bhsd", (1,), 4, 2, 90, 61, 96, 96),
    ("d256_63_100", "bhsd", (1,), 2, 1, 63, 100, 256, 256),
    ("dv_ne_d", "bhsd", (2,), 4, 4, 65, 130, 64, 32),
    ("d40_elementwise_bshd", "bshd", (2,), 2, 2, 33, 47, 40, 24),
    ("d36_dv20_scalar_passes", "bhsd", (1,), 2, 2, 33, 40, 36, 20),
    ("rank2", "bhsd", (), None, None, 63, 129, 64, 64),
    ("rank5_gqa", "bhsd", (2, 3), 2, 1, 33, 47, 64, 64),
    ("decode", "bhsd", (2,), 4, 2, 1, 300, 128, 128),
    ("d128_gqa_3_key_tiles", "bhsd", (1,), 4, 2, 300, 333, 128, 128),
    ("d64_bshd_4_query_tiles", "bshd", (1,), 2, 1, 500, 520, 64, 64),
]
# Causal on sm_90 at a size where the wgmma K/V kernel orders its blocks in groups of 12 heads
# (OrderHeads in attention_flash_grad_sm90.cu): 13 heads leave a first group of one.
BLOCK_ORDER_SHAPE = ("d128_13_heads_block_order", "bhsd", (1,), 13, 13, 2048, 2048, 128, 128)
GRAD_SHAPE = {s[0]: s for s in GRAD_SHAPES + [BLOCK_ORDER_SHAPE]}
# (id, input type, dO type, O type, deterministic attribute (None: absent), scale (None: absent))
VARIANTS = [
    ("f16", np.float16, np.float16, np.float16, None, None),
    ("bf16_det", BF16, BF16, BF16, 1, None),
    ("f16_det_dO_f32_O_f32_scale", np.float16, np.float32, np.float32, 1, 0.3),
    ("bf16_dO_f32", BF16, np.float32, BF16, 0, None),
]


def _inputs(shape, causal, t, do_t, o_t, scale, g):
    """dO, Q, K, V, O, LSE: O and LSE from the float64 reference forward, rounded as the forward stores them."""
    layout = shape[1]
    q_shape, k_shape, v_shape = qkv_shapes(layout, *shape[2:])
    q, k, v = (randn(g, s, t) for s in (q_shape, k_shape, v_shape))
    o, lse = attention(q, k, v, None if scale is None else np.float32(scale), causal, layout)
    o = o.astype(np.float32).astype(o_t)
    lse = lse.astype(np.float32)
    d_o = randn(g, o.shape, do_t)
    return [d_o, q, k, v, o, lse]


def _attrs(shape, causal, det, scale):
    attrs = {"causal": int(causal), "layout": shape[1]}
    if det is not None:
        attrs["deterministic"] = det
    if scale is not None:
        attrs["scale"] = scale
    return attrs


def _check(outs, inputs, shape, causal, scale, tol, what=""):
    d_o, q, k, v, o, lse = inputs
    ref = attention_grad(d_o, q, k, v, None if scale is None else np.float32(scale), causal, shape[1], o=o, lse=lse)
    for name, out, r in zip(("dQ", "dK", "dV"), outs, ref):
        if out is None:
            continue
        assert out.shape == r.shape, f"{name} shape {out.shape} != {r.shape}"
        assert not np.any(np.isnan(out)), f"{what}{name}: NaN (an element never written?)"
        err = rel_err(out, r)
        assert err <= tol, f"{what}{name} relative error {err:.3e} > {tol:.1e}"


@pytest.mark.parametrize("vid,t,do_t,o_t,det,scale", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=[s[0] for s in GRAD_SHAPES])
def test_attention_flash_grad_cuda(shape, causal, vid, t, do_t, o_t, det, scale):
    g = rng()
    inputs = _inputs(shape, causal, t, do_t, o_t, scale, g)
    out_shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    outs = run_op_cuda("AttentionFlashGrad", inputs, _attrs(shape, causal, det, scale), out_shapes, [t] * 3)
    _check(outs, inputs, shape, causal, scale, TOL[t])


# The K/V pass on Hopper: (id, shape, causal, input type, deterministic, KAIO_WGMMA, kernel expected).
KV_PASS_CASES = [
    ("d128_wgmma", "d128_gqa_3_key_tiles", False, np.float16, 0, None, "AttentionGradKvWgmmaKernel"),
    ("d64_causal_bf16_wgmma", "d64_bshd_4_query_tiles", True, BF16, 0, None, "AttentionGradKvWgmmaKernel"),
    ("d128_det_wgmma", "d128_mqa_bshd", True, np.float16, 1, None, "AttentionGradKvWgmmaKernel"),
    ("d128_causal_block_groups", "d128_13_heads_block_order", True, BF16, 0, None, "AttentionGradKvWgmmaKernel"),
    ("d128_mma_sync", "d128_gqa_3_key_tiles", True, np.float16, 0, "0", "AttentionGradKvKernel"),
    ("d96_mma_sync", "d96_gqa", False, np.float16, 0, None, "AttentionGradKvKernel"),
    ("dv_ne_d_mma_sync", "dv_ne_d", True, BF16, 0, None, "AttentionGradKvKernel"),
]


@pytest.mark.parametrize("case", KV_PASS_CASES, ids=[c[0] for c in KV_PASS_CASES])
def test_kv_pass_kernel_on_sm90(case, monkeypatch):
    """On Hopper, D == Dv in {64, 128} runs the TMA + wgmma K/V kernel (deterministic mode too: it has
    no atomics on dK / dV), everything else and KAIO_WGMMA=0 the mma.sync one (a fallback would pass
    the accuracy tests silently); each against the float64 reference."""
    require_sm90()
    _, name, causal, t, det, switch, kernel = case
    if switch is None:
        monkeypatch.delenv("KAIO_WGMMA", raising=False)
    else:
        monkeypatch.setenv("KAIO_WGMMA", switch)
    shape = GRAD_SHAPE[name]
    inputs = _inputs(shape, causal, t, t, t, None, rng())
    out_shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    model = build_model("AttentionFlashGrad", inputs, _attrs(shape, causal, det, None), [t] * 3, bf16_io=True)
    run = BoundRun(cuda_session(model), inputs, out_shapes, [t] * 3)
    names = launched_kernels(run.run)
    assert any(kernel + "<" in x for x in names), names
    _check([x.astype(np.float32) for x in run.run()], inputs, shape, causal, None, TOL[t])


@pytest.mark.parametrize("which", [(True, False, False), (False, True, True), (False, False, True)],
                         ids=["dQ_only", "dK_dV", "dV_only"])
@pytest.mark.parametrize("det", [0, 1])
def test_outputs_left_out(which, det):
    shape = GRAD_SHAPE["d64_gqa_bshd_sq_lt_sk"]
    g = rng()
    inputs = _inputs(shape, True, np.float16, np.float16, np.float16, None, g)
    shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    types = [np.float16 if w else None for w in which]
    model = build_model("AttentionFlashGrad", inputs, _attrs(shape, True, det, None), types, bf16_io=True)
    outs = BoundRun(cuda_session(model), inputs, [s for s, w in zip(shapes, which) if w],
                    [np.float16] * sum(which)).run()
    it = iter(outs)
    _check([next(it) if w else None for w in which], inputs, shape, True, None, TOL[np.float16])


@pytest.mark.parametrize("name,t", [("d128_gqa_sq_gt_sk", np.float16), ("d64_gqa_bshd_sq_lt_sk", BF16),
                                    ("d256_63_100", np.float16)])
def test_deterministic_mode_is_bitwise_reproducible(name, t):
    """deterministic = 1: dQ, dK, dV bit-identical across runs; the default mode: dK and dV are too
    (no atomics on them), dQ only within the tolerance (f32 atomics in any order)."""
    shape = GRAD_SHAPE[name]
    g = rng()
    inputs = _inputs(shape, True, t, t, t, None, g)
    out_shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    for det in (1, 0):
        model = build_model("AttentionFlashGrad", inputs, _attrs(shape, True, det, None), [t] * 3, bf16_io=True)
        run = BoundRun(cuda_session(model), inputs, out_shapes, [t] * 3)
        first = run.run()
        for _ in range(3):
            again = run.run()
            for i, (a, b) in enumerate(zip(again, first)):
                if det or i > 0:
                    np.testing.assert_array_equal(a, b)
        _check([x.astype(np.float32) for x in first], inputs, shape, True, None, TOL[t])


def test_deterministic_mode_launches_no_atomic_dq_pass():
    """The deterministic mode computes dQ in its own kernel (no f32 accumulator, no store pass)."""
    shape = GRAD_SHAPE["d64_100"]
    g = rng()
    inputs = _inputs(shape, False, np.float16, np.float16, np.float16, None, g)
    out_shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    for det, want, not_want in ((1, "AttentionGradQKernel", "AttentionGradDqStore"),
                                (0, "AttentionGradDqStore", "AttentionGradQKernel")):
        model = build_model("AttentionFlashGrad", inputs, _attrs(shape, False, det, None), [np.float16] * 3)
        run = BoundRun(cuda_session(model), inputs, out_shapes, [np.float16] * 3)
        names = launched_kernels(run.run)
        assert any(want in x for x in names), names
        assert not any(not_want in x for x in names), names


# The prep and dQ store passes: (id, shape, dO type, prep kernel, store kernel). The 16-byte forms
# where dO and O are in Q's type with Dv % 8 == 0 (prep) and D % 8 == 0 (store); the scalar ones
# otherwise (a silent fallback would pass the accuracy tests).
PASS_CASES = [
    ("vector", "d64_100", np.float16, "AttentionGradPrepVecKernel", "AttentionGradDqStoreVec"),
    ("dO_f32_scalar_prep", "d64_100", np.float32, "AttentionGradPrepKernel", "AttentionGradDqStoreVec"),
    ("odd_dims_scalar", "d36_dv20_scalar_passes", np.float16, "AttentionGradPrepKernel", "AttentionGradDqStore"),
]


@pytest.mark.parametrize("case", PASS_CASES, ids=[c[0] for c in PASS_CASES])
def test_prep_and_store_pass_forms(case):
    _, name, do_t, prep, store = case
    shape = GRAD_SHAPE[name]
    inputs = _inputs(shape, False, np.float16, do_t, np.float16, None, rng())
    out_shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    model = build_model("AttentionFlashGrad", inputs, _attrs(shape, False, 0, None), [np.float16] * 3)
    run = BoundRun(cuda_session(model), inputs, out_shapes, [np.float16] * 3)
    names = launched_kernels(run.run)
    assert any(prep + "<" in x for x in names) and any(store + "<" in x for x in names), names
    _check(run.run(), inputs, shape, False, None, TOL[np.float16])


GRAPH_CASES = [("gqa_bshd_causal_atomic", "d64_gqa_bshd_sq_lt_sk", True, 0),
               ("d128_full_det", "d128_129", False, 1)]


@cuda_graph_test("AttentionFlashGrad")
@pytest.mark.parametrize("case", GRAPH_CASES, ids=[c[0] for c in GRAPH_CASES])
def test_cuda_graph_replay_matches_eager(case):
    _, name, causal, det = case
    shape = GRAD_SHAPE[name]
    g = rng()
    inputs = _inputs(shape, causal, np.float16, np.float16, np.float16, None, g)
    out_shapes = [inputs[1].shape, inputs[2].shape, inputs[3].shape]
    model = build_model("AttentionFlashGrad", inputs, _attrs(shape, causal, det, None), [np.float16] * 3)
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), inputs, out_shapes, [np.float16] * 3)
    _check(graph_run.run(), inputs, shape, causal, None, TOL[np.float16], "capture: ")
    inputs2 = _inputs(shape, causal, np.float16, np.float16, np.float16, None, g)
    graph_run.update_inputs(inputs2)
    replay = graph_run.run()
    _check(replay, inputs2, shape, causal, None, TOL[np.float16], "replay: ")
    eager = BoundRun(cuda_session(model), inputs2, out_shapes, [np.float16] * 3).run()
    for i, (r, e) in enumerate(zip(replay, eager)):
        if det or i > 0:  # atomic dQ: summation order may differ
            np.testing.assert_array_equal(r, e)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_matches_torch_sdpa_autograd(causal):
    """Against torch's scaled_dot_product_attention backward (f16 on the GPU), from the same O and LSE
    the forward op gives; a loose bound (two f16 implementations), the float64 reference tighter."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    g = rng()
    b, h, s, d = 2, 4, 200, 64
    q, k, v, d_o = (randn(g, (b, h, s, d), np.float16) for _ in range(4))
    fwd = "AttentionFlashCausal" if causal else "AttentionFlash"
    o, lse = run_op_cuda(fwd, [q, k, v], {"out_dtype": 10}, [(b, h, s, d), (b, h, s)], [np.float16, np.float32])
    dq, dk, dv = run_op_cuda("AttentionFlashGrad", [d_o, q, k, v, o, lse], {"causal": int(causal)},
                             [q.shape, k.shape, v.shape], [np.float16] * 3)
    tq, tk, tv = (torch.tensor(x, device="cuda", requires_grad=True) for x in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
    out.backward(torch.tensor(d_o, device="cuda"))
    for name, ours, theirs in (("dQ", dq, tq.grad), ("dK", dk, tk.grad), ("dV", dv, tv.grad)):
        err = rel_err(ours, theirs.float().cpu().numpy())
        assert err <= 2e-2, f"{name}: relative difference to torch {err:.3e}"
    _check([dq, dk, dv], [d_o, q, k, v, o, lse], ("torch", "bhsd"), causal, None, TOL[np.float16])
