"""AttentionFlash / AttentionFlashCausal on the CUDA EP against the float64 reference
(kaio_ort.reference.attention: O and LSE); IOBinding with NaN-poisoned, guarded outputs (bfloat16
too), CUDA-graph replay, repeated runs, and the CUDA-side validation rules (these three for
AttentionTc / AttentionTcCausal too; their shape table is test_attention_tc_gpu.py). The CUDA
kernels take float16 / bfloat16 Q, K, V only (a float32 node runs on the CPU EP)."""
import numpy as np
import pytest
from gpu_harness import BoundRun, cuda_graph_test, cuda_session, launched_kernels, require_sm90, run_op_cuda
from op_harness import BF16, CUDA, CUDA_OR_CPU, build_model, feeds, input_rule, randn, rel_err, rng, session
from test_attention_cpu import heads_first, qkv_shapes  # the shape table's conventions, shared

from kaio_ort.reference import attention

pytestmark = pytest.mark.gpu

ONNX_TYPE = {np.float32: 1, np.float16: 10, BF16: 16}
# f32 accumulation of exact f16 / bf16 products; P is rounded to the input type for the P V product,
# and an f16 / bf16 output adds one rounding.
TOL = {np.float32: 5e-3, np.float16: 5e-3}
BF16_TOL = {np.float32: 5e-3, BF16: 1e-2}
LSE_TOL = 1e-3  # |err| <= LSE_TOL * max(1, |ref|) where finite; -inf exactly where the reference is

# (name, layout, batch dims, Hq, Hkv, Sq, Sk, D, Dv); Hq None: bhsd rank 2 [S, D] (one head).
# Derived from 64-row query / key tiles: S = 1, 63, 65, 129, 200 (partial tiles), Sq < Sk (decode
# against a KV cache, causal offset Sk - Sq), Sq > Sk (causal rows that see no key), GQA / MQA, the
# head dims the kernel specialises (32, 64, 96, 128, 256) and odd ones (40, 72, 80), D != Dv, and
# Sq = 1 with long Sk (the split-KV decode path).
SHAPES = [
    ("s1", "bhsd", (2,), 4, 4, 1, 1, 32, 32),
    ("d32_65", "bhsd", (2,), 4, 4, 65, 65, 32, 32),
    ("d64_128", "bhsd", (2,), 4, 4, 128, 128, 64, 64),
    ("d96_65_129", "bhsd", (1,), 3, 3, 65, 129, 96, 96),
    ("d128_129", "bhsd", (1,), 2, 2, 129, 129, 128, 128),
    ("d128_200_700", "bhsd", (1,), 2, 2, 200, 700, 128, 128),
    ("d256_63", "bhsd", (1,), 2, 2, 63, 63, 256, 256),
    ("d40_bshd", "bshd", (2,), 4, 4, 200, 200, 40, 40),
    ("d72_rank3", "bhsd", (), 3, 3, 77, 77, 72, 72),
    ("d80_gqa", "bhsd", (1,), 8, 2, 100, 150, 80, 80),
    ("dv_ne_d", "bhsd", (2,), 4, 4, 65, 130, 64, 32),
    ("rank2", "bhsd", (), None, None, 63, 129, 64, 64),
    ("rank5_gqa", "bhsd", (2, 3), 2, 1, 33, 47, 64, 64),
    ("decode_kv", "bhsd", (2,), 4, 4, 3, 1000, 128, 128),
    ("sq_gt_sk", "bhsd", (1,), 4, 4, 129, 63, 64, 64),          # causal: 66 rows see no key
    ("sk1_mqa_bshd", "bshd", (1,), 4, 1, 65, 1, 32, 32),        # causal: only the last row sees a key
    ("mqa_bshd", "bshd", (2,), 8, 1, 65, 65, 64, 64),
    ("gqa_bshd_decode", "bshd", (2,), 8, 2, 1, 513, 128, 128),
    ("d256_decode", "bhsd", (1,), 4, 4, 1, 1000, 256, 256),
    ("long_decode", "bhsd", (2,), 8, 8, 1, 4096, 128, 128),     # split-KV
    ("long_decode_gqa_bshd", "bshd", (2,), 8, 2, 1, 4096, 128, 128),
    # D % 8 != 0: element loads (the 16-byte cp.async path and the decode kernel need D % 8 == 0)
    ("d20_elementwise", "bhsd", (1,), 2, 2, 65, 129, 20, 20),
    ("d12_dv36_elementwise_decode", "bhsd", (2,), 4, 2, 1, 300, 12, 36),
    # the decode kernel: all query rows of a kv head (Sq * Hq / Hkv <= 16) in one tile
    ("decode_gqa_sq4", "bhsd", (1,), 8, 2, 4, 777, 64, 64),    # 16 packed rows, 4 queries each causal
    ("decode_mqa16_bshd", "bshd", (1,), 16, 1, 1, 2000, 128, 128),
    ("decode_sq_gt_sk", "bhsd", (1,), 2, 2, 5, 3, 64, 64),     # causal: 2 rows see no key
    ("decode_d96_split", "bhsd", (1,), 4, 4, 1, 3000, 96, 96),
    # sm_90: the TMA + wgmma kernel (D == Dv in {64, 128}, 128-row query / key tiles) takes prefill
    # shapes the mma.sync kernel would not split: d64_128, sq_gt_sk, mqa_bshd above and these (Sq, Sk
    # not multiples of 128, Sq < Sk and Sq > Sk, GQA, both layouts, several key tiles).
    ("wg_d128_77", "bhsd", (2,), 4, 4, 77, 77, 128, 128),
    ("wg_d128_sq_lt_sk", "bhsd", (1,), 4, 4, 50, 90, 128, 128),
    ("wg_d128_sq_gt_sk_bshd", "bshd", (1,), 4, 4, 300, 77, 128, 128),  # causal: 223 rows see no key
    ("wg_d64_gqa_bshd", "bshd", (2,), 8, 2, 200, 150, 64, 64),
    ("wg_d128_gqa_1000", "bhsd", (2,), 32, 8, 300, 1000, 128, 128),
    ("wg_d64_bshd_1000", "bshd", (4,), 16, 16, 1000, 1000, 64, 64),
]
SHAPE = {s[0]: s for s in SHAPES}
# (id, O's type, scale attribute (None: absent), LSE requested?); the third only on LSE_F16_SHAPES.
VARIANTS = [("f32_lse", np.float32, None, True), ("f16_scale", np.float16, 0.3, False),
            ("f16_lse", np.float16, 0.0, True)]
LSE_F16_SHAPES = {"d64_128", "d128_200_700", "sq_gt_sk", "sk1_mqa_bshd", "gqa_bshd_decode", "long_decode",
                  "wg_d128_sq_gt_sk_bshd", "wg_d128_gqa_1000"}
OPS = [("AttentionFlash", False), ("AttentionFlashCausal", True)]


def attrs_for(shape, out_t, scale):
    attrs = {}
    if scale is not None:
        attrs["scale"] = scale
    if shape[1] == "bshd" or shape[0] == "d72_rank3":
        attrs["layout"] = shape[1]  # given explicitly (bhsd is the default elsewhere)
    if out_t != np.float32:
        attrs["out_dtype"] = ONNX_TYPE[out_t]
    return attrs


def check_lse(lse, ref_lse):
    lse = np.asarray(lse, np.float64)
    assert lse.shape == ref_lse.shape, f"LSE shape {lse.shape} != reference {ref_lse.shape}"
    assert not np.any(np.isnan(lse)), "LSE has NaN (an element never written?)"
    none = np.isneginf(ref_lse)
    np.testing.assert_array_equal(np.isneginf(lse), none, "LSE = -inf exactly where a row sees no key")
    err = np.abs(lse[~none] - ref_lse[~none])
    assert np.all(err <= LSE_TOL * np.maximum(1.0, np.abs(ref_lse[~none]))), f"LSE max error {err.max():.3e}"


def check_outputs(outs, ref_o, ref_lse, layout, tol, want_lse, what):
    o = outs[0]
    assert o.shape == ref_o.shape, f"O shape {o.shape} != reference {ref_o.shape}"
    err = rel_err(o, ref_o)
    assert err <= tol, f"{what}: O relative error {err:.3e} > {tol:.1e}"
    unseen = np.isneginf(ref_lse)  # causal rows that see no key (Sq > Sk)
    o_rows = heads_first(o, layout)
    assert np.all(o_rows[unseen.reshape(o_rows.shape[:-1])] == 0), "rows that see no key must be zero"
    if want_lse:
        check_lse(outs[1], ref_lse)


def fwd_cases():
    for op, causal in OPS:
        for shape in SHAPES:
            for vid, out_t, scale, want_lse in VARIANTS:
                if vid == "f16_lse" and shape[0] not in LSE_F16_SHAPES:
                    continue
                yield pytest.param(op, causal, shape, out_t, scale, want_lse, id=f"{op}-{shape[0]}-{vid}")


@pytest.mark.parametrize("op,causal,shape,out_t,scale,want_lse", list(fwd_cases()))
def test_attention_flash_cuda(op, causal, shape, out_t, scale, want_lse):
    layout = shape[1]
    q_shape, k_shape, v_shape = qkv_shapes(layout, *shape[2:])
    g = rng()
    q, k, v = (randn(g, s, np.float16) for s in (q_shape, k_shape, v_shape))
    # The kernel reads the scale attribute as float32.
    ref_o, ref_lse = attention(q, k, v, None if scale is None else np.float32(scale), causal, layout)
    out_shapes, out_types = [ref_o.shape], [out_t]
    if want_lse:
        out_shapes.append(ref_lse.shape)
        out_types.append(np.float32)
    outs = run_op_cuda(op, [q, k, v], attrs_for(shape, out_t, scale), out_shapes, out_types)
    check_outputs(outs, ref_o, ref_lse, layout, TOL[out_t], want_lse, op)


BF16_SHAPES = ["d64_128", "d80_gqa", "sq_gt_sk", "long_decode_gqa_bshd", "wg_d128_77", "wg_d64_gqa_bshd",
               "wg_d128_gqa_1000"]


@pytest.mark.parametrize("name", BF16_SHAPES)
@pytest.mark.parametrize("op,causal", OPS, ids=[o for o, _ in OPS])
@pytest.mark.parametrize("out_bf16", [False, True], ids=["out_f32", "out_bf16"])
def test_attention_flash_bf16_cuda(name, op, causal, out_bf16):
    """bfloat16 Q, K, V (and O) bound as such; LSE requested with the float output."""
    shape = SHAPE[name]
    layout = shape[1]
    q_shape, k_shape, v_shape = qkv_shapes(layout, *shape[2:])
    g = rng()
    q, k, v = (randn(g, s, BF16) for s in (q_shape, k_shape, v_shape))
    ref_o, ref_lse = attention(q, k, v, None, causal, layout)
    out_t = BF16 if out_bf16 else np.float32
    want_lse = not out_bf16
    out_shapes, out_types = [ref_o.shape], [out_t]
    if want_lse:
        out_shapes.append(ref_lse.shape)
        out_types.append(np.float32)
    outs = run_op_cuda(op, [q, k, v], attrs_for(shape, out_t, None), out_shapes, out_types)
    check_outputs(outs, ref_o, ref_lse, layout, BF16_TOL[out_t], want_lse, op)


# (op, shape, input type): shapes the sm_90 kernel must take, both layouts, head dims and types.
WGMMA_CASES = [("AttentionFlash", "wg_d128_77", np.float16), ("AttentionFlashCausal", "wg_d64_gqa_bshd", BF16),
               ("AttentionFlashCausal", "wg_d128_gqa_1000", np.float16), ("AttentionFlash", "mqa_bshd", BF16),
               ("AttentionFlash", "wg_d128_sq_gt_sk_bshd", BF16)]


@pytest.mark.parametrize("op,name,t", WGMMA_CASES, ids=[f"{c[0]}-{c[1]}" for c in WGMMA_CASES])
def test_prefill_takes_the_wgmma_kernel_on_sm90(op, name, t):
    """On Hopper, prefill with D == Dv in {64, 128} runs the TMA + wgmma kernel (a fallback to the
    mma.sync kernel would pass the accuracy tests silently)."""
    require_sm90()
    shape = SHAPE[name]
    layout = shape[1]
    causal = op.endswith("Causal")
    q_shape, k_shape, v_shape = qkv_shapes(layout, *shape[2:])
    g = rng()
    q, k, v = (randn(g, s, t) for s in (q_shape, k_shape, v_shape))
    ref_o, ref_lse = attention(q, k, v, None, causal, layout)
    model = build_model(op, [q, k, v], attrs_for(shape, np.float32, None), [np.float32, np.float32], bf16_io=True)
    run = BoundRun(cuda_session(model), [q, k, v], [ref_o.shape, ref_lse.shape], [np.float32, np.float32])
    names = launched_kernels(run.run)
    assert any("AttentionWgmmaKernel" in x for x in names), names
    assert not any("AttentionFlashKernel" in x for x in names), names
    check_outputs(run.run(), ref_o, ref_lse, layout, BF16_TOL[np.float32] if t is BF16 else TOL[np.float32], True, op)


# Replay / determinism: a prefill (causal, GQA, bshd, partial tiles) and the split-KV decode; AttentionTc
# causal bshd with partial tiles, and with a long Sk (16-row query tiles). AttentionTc* has no LSE.
GRAPH_SHAPES = [("AttentionFlashCausal", "gqa_bshd_prefill", "bshd", (2,), 8, 2, 129, 200, 64, 64),
                ("AttentionFlash", "long_decode", "bhsd", (2,), 8, 8, 1, 4096, 128, 128),
                ("AttentionTcCausal", "tc_bshd_prefill", "bshd", (2,), 8, 8, 129, 200, 64, 64),
                ("AttentionTc", "tc_long_sk", "bhsd", (2,), 4, 4, 100, 1500, 128, 128)]


def _graph_case(case):
    op, name, layout, *dims = case
    q_shape, k_shape, v_shape = qkv_shapes(layout, *dims)
    o_shape = q_shape[:-1] + v_shape[-1:]
    lse_shape = (q_shape[0], q_shape[2], q_shape[1]) if layout == "bshd" else q_shape[:-1]
    out_shapes = [o_shape, lse_shape] if op.startswith("AttentionFlash") else [o_shape]
    model = build_model(op, [np.zeros(s, np.float16) for s in (q_shape, k_shape, v_shape)], {"layout": layout},
                        [np.float32] * len(out_shapes))
    return op, layout, (q_shape, k_shape, v_shape), out_shapes, model


@cuda_graph_test(*{c[0] for c in GRAPH_SHAPES})
@pytest.mark.parametrize("case", GRAPH_SHAPES, ids=[c[1] for c in GRAPH_SHAPES])
def test_cuda_graph_replay_matches_eager(case):
    op, layout, shapes, out_shapes, model = _graph_case(case)
    causal = op.endswith("Causal")
    g = rng()
    inputs = [randn(g, s, np.float16) for s in shapes]
    out_types = [np.float32] * len(out_shapes)
    want_lse = len(out_shapes) == 2
    graph_run = BoundRun(cuda_session(model, cuda_graph=True), inputs, out_shapes, out_types)
    first = graph_run.run()  # captures the graph
    ref_o, ref_lse = attention(*inputs, None, causal, layout)
    check_outputs(first, ref_o, ref_lse, layout, TOL[np.float32], want_lse, op + " (capture)")
    inputs2 = [randn(g, s, np.float16) for s in shapes]
    graph_run.update_inputs(inputs2)
    replay = graph_run.run()
    eager = BoundRun(cuda_session(model), inputs2, out_shapes, out_types).run()
    for r, e in zip(replay, eager):
        np.testing.assert_array_equal(r, e)
    ref_o2, ref_lse2 = attention(*inputs2, None, causal, layout)
    check_outputs(replay, ref_o2, ref_lse2, layout, TOL[np.float32], want_lse, op + " (replay)")


@pytest.mark.parametrize("case", GRAPH_SHAPES, ids=[c[1] for c in GRAPH_SHAPES])
def test_repeated_runs_are_bitwise_identical(case):
    op, layout, shapes, out_shapes, model = _graph_case(case)
    g = rng()
    inputs = [randn(g, s, np.float16) for s in shapes]
    run = BoundRun(cuda_session(model), inputs, out_shapes, [np.float32] * len(out_shapes))
    first = run.run()
    for _ in range(3):
        for a, b in zip(run.run(), first):
            np.testing.assert_array_equal(a, b)


# CUDA-side validation (ort_ops/attention/attention_geometry.cc): with the shapes declared the
# rule fires when the session is created, with unknown input shapes in the CUDA kernel's Compute.
VALIDATION = [
    ("gqa_indivisible", "AttentionFlash", [(4, 5, 8), (3, 7, 8), (3, 7, 8)], (4, 5, 8),
     input_rule("AttentionFlash", "K", 1, r"head count Hkv \(3\) must divide Q's head count Hq \(4\)", regex=True)),
    ("k_d", "AttentionFlashCausal", [(3, 5, 8), (3, 7, 16), (3, 7, 8)], (3, 5, 8),
     input_rule("AttentionFlashCausal", "K", 1, r"head dim D \(16\) must equal Q's \(8\)", regex=True)),
    ("tc_gqa", "AttentionTc", [(4, 5, 8), (2, 7, 8), (2, 7, 8)], (4, 5, 8),
     input_rule("AttentionTc", "K", 1, r"head count \(2\) must equal Q's \(4\): grouped K/V heads \(GQA/MQA\) need "
                                       r"AttentionFlash", regex=True)),
    ("tc_k_d", "AttentionTcCausal", [(3, 5, 8), (3, 7, 16), (3, 7, 8)], (3, 5, 8),
     input_rule("AttentionTcCausal", "K", 1, r"head dim D \(16\) must equal Q's \(8\)", regex=True)),
]


@pytest.mark.parametrize("known_shapes", [True, False], ids=["at_session", "at_compute"])
@pytest.mark.parametrize("op,shapes,o_shape,pattern", [v[1:] for v in VALIDATION], ids=[v[0] for v in VALIDATION])
def test_validation_on_cuda(op, shapes, o_shape, pattern, known_shapes):
    inputs = [np.zeros(s, np.float16) for s in shapes]
    attrs = {"out_dtype": 10}  # typed O also where shape inference cannot run (unknown shapes)
    with pytest.raises(Exception, match=pattern):
        model = build_model(op, inputs, attrs, [np.float16],
                            input_shapes=None if known_shapes else [None] * len(inputs))
        BoundRun(cuda_session(model), inputs, [o_shape], [np.float16]).run()


def test_float32_node_runs_on_the_cpu_ep_in_a_cuda_session():
    """The CUDA registration declares float16 / bfloat16 Q, K, V only (Op::CudaInputs), so ORT places a
    float32 node on the CPU EP: correct with CPU fallback allowed, refused with it disabled."""
    g = rng()
    q, k, v = (randn(g, s, np.float32) for s in ((2, 4, 33, 16), (2, 4, 40, 16), (2, 4, 40, 16)))
    model = build_model("AttentionFlash", [q, k, v], {}, [np.float32])
    sess = session(model, CUDA_OR_CPU)
    (o,) = sess.run(None, feeds(sess, [q, k, v]))
    ref_o, _ = attention(q, k, v)
    assert rel_err(o, ref_o) <= 1e-6  # the CPU kernel: float64 arithmetic, one rounding to float32
    with pytest.raises(Exception, match="assigned to the default CPU EP"):
        session(model, CUDA)  # CPU fallback disabled


@pytest.mark.parametrize("op", ["AttentionFlash", "AttentionTc"])
def test_batch_past_the_launch_grid_is_refused_on_cuda(op):
    q = np.zeros((65536, 1, 1, 8), np.float16)
    with pytest.raises(Exception, match=rf"{op}.*input 'Q'.*batch \(65536\) and head count \(1\) must each "
                                        r"be at most 65535 on CUDA"):
        run_op_cuda(op, [q, q, q], {}, [q.shape], [np.float32])
