"""kaio_ort.rewrites.attention: MultiHeadAttention, ONNX Attention-23, GroupQueryAttention and the decomposed
MatMul -> Softmax -> MatMul pattern -> AttentionFlash / AttentionFlashCausal.

Each form is built here (f16 and f32, GQA where the form has it, causal or not, Sq != Sk where it
means something); after the rewrite: op types, attributes, no Transpose added, graph outputs unchanged,
onnx.checker, outputs equal to the original's on the CPU EP, idempotency; every case left alone with
its exact reason."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kaio_ort.rewrites import LeftAlone, rewrite_model
from rw_models import assert_same_outputs, ops, rewrite_checked, rng

T = {np.float16: TensorProto.FLOAT16, np.float32: TensorProto.FLOAT}
MS = helper.make_opsetid("com.microsoft", 1)


def _model(nodes, inputs, outputs, dtype, opset=17, inits=(), ir_version=8, extra_opsets=()):
    t = T[dtype]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info(n, t, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, s in outputs], list(inits))
    return helper.make_model(g, ir_version=ir_version,
                             opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _flash(model):
    (n,) = [n for n in model.graph.node if n.op_type.startswith("AttentionFlash")]
    return n


def _rewrite_checked(model, tol=1e-2, ref=None):
    out, report = rewrite_checked(model, ["attention"])
    assert report.left_alone == []
    errs = assert_same_outputs(ref or model, out, tol=tol)
    return out, report, errs


def _left_alone(model, reason, op_type, nodes=("attn",)):
    out, report = rewrite_model(model, rules=["attention"])
    assert report.replaced == {"attention": 0}
    assert report.left_alone == [LeftAlone("attention", tuple(nodes), op_type, reason)]
    assert not any(n.domain == "com.kaio" for n in out.graph.node)


# ---------------------------------------------------------------------------------------------------------
# ONNX Attention-23
def onnx_attention(dtype=np.float32, rank=4, hq=4, hkv=4, sq=5, sk=5, d=16, inputs=("Q", "K", "V"), outputs=("Y",),
                   **attrs):
    if rank == 4:
        shapes = [["b", hq, sq, d], ["b", hkv, sk, d], ["b", hkv, sk, d]]
        out = ["b", hq, sq, d]
    else:
        shapes = [["b", sq, hq * d], ["b", sk, hkv * d], ["b", sk, hkv * d]]
        out = ["b", sq, hq * d]
        attrs.setdefault("q_num_heads", hq)
        attrs.setdefault("kv_num_heads", hkv)
    node = helper.make_node("Attention", list(inputs), list(outputs), name="attn", **attrs)
    ins = list(zip(("Q", "K", "V"), shapes))
    extra = {"mask": ["b", 1, sq, sk], "pk": ["b", hkv, 2, d], "pv": ["b", hkv, 2, d]}
    ins += [(n, extra[n]) for n in inputs[3:] if n]
    outs = [("Y", out)] + [(n, None) for n in outputs[1:] if n]
    return _model([node], ins, outs, dtype, opset=23, ir_version=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("rank,hq,hkv,sq,sk,causal", [
    (4, 4, 4, 5, 5, 0), (4, 4, 4, 5, 5, 1), (4, 4, 2, 3, 7, 0), (4, 4, 1, 6, 6, 1),
    (3, 4, 4, 5, 5, 1), (3, 4, 2, 3, 7, 0), (3, 4, 2, 6, 6, 1)])
def test_onnx_attention(dtype, rank, hq, hkv, sq, sk, causal):
    m = onnx_attention(dtype, rank, hq, hkv, sq, sk, is_causal=causal)
    out, report, errs = _rewrite_checked(m)
    assert report.replaced == {"attention": 1} and report.rules["attention"].replaced_nodes == [("attn",)]
    n = _flash(out)
    assert n.op_type == ("AttentionFlashCausal" if causal else "AttentionFlash") and n.domain == "com.kaio"
    assert _attrs(n) == {"layout": b"bhsd" if rank == 4 else b"bshd", "out_dtype": T[dtype]}
    assert ops(out) == ({n.op_type: 1} if rank == 4 else {n.op_type: 1, "Reshape": 4})
    assert max(errs) <= (2e-3 if dtype == np.float16 else 1e-5), errs


def test_onnx_attention_scale():
    m = onnx_attention(np.float32, 4, scale=0.3)
    out, _, errs = _rewrite_checked(m)
    assert _attrs(_flash(out))["scale"] == pytest.approx(0.3)
    assert max(errs) <= 1e-5


@pytest.mark.parametrize("kw,reason", [
    (dict(inputs=("Q", "K", "V", "mask")),
     "attn_mask input: AttentionFlash takes no mask (padding or arbitrary masks are not mapped)"),
    (dict(inputs=("Q", "K", "V", "", "pk", "pv"), outputs=("Y", "pko", "pvo")),
     "the present_key/present_value/qk_matmul_output outputs are used: AttentionFlash writes no KV cache / scores"),
    (dict(inputs=("Q", "K", "V", "", "pk", "pv")),
     "past_key/past_value inputs (KV cache): AttentionFlash reads no cache"),
    (dict(softcap=30.0), "softcap 30: AttentionFlash has no soft capping"),
    (dict(sq=3, sk=7, is_causal=1),
     "is_causal with Q and K lengths not known to be equal: Attention aligns the causal mask top-left, "
     "AttentionFlashCausal bottom-right"),
])
def test_onnx_attention_left_alone(kw, reason):
    _left_alone(onnx_attention(np.float32, 4, **kw), reason, "Attention")


# ---------------------------------------------------------------------------------------------------------
# com.microsoft MultiHeadAttention
def mha(dtype=np.float32, h=4, sq=5, sk=5, d=16, inputs=("q", "k", "v"), **attrs):
    node = helper.make_node("MultiHeadAttention", list(inputs), ["Y"], name="attn", domain="com.microsoft",
                            num_heads=h, **attrs)
    shapes = {"q": ["b", sq, h * d], "k": ["b", sk, h * d], "v": ["b", sk, h * d], "kpm": ["b", sk],
              "ab": ["b", h, sq, sk], "pk": ["b", h, 2, d], "pv": ["b", h, 2, d], "k4": ["b", h, sk, d],
              "v4": ["b", h, sk, d]}
    ins = [(n, shapes[n]) for n in inputs if n and n != "kpm"]
    m = _model([node], ins, [("Y", ["b", sq, h * d])], dtype, extra_opsets=[MS])
    if "kpm" in inputs:
        m.graph.input.append(helper.make_tensor_value_info("kpm", TensorProto.INT32, ["b", sk]))
    return m


@pytest.mark.parametrize("sq,sk,causal", [(5, 5, 0), (3, 7, 0), (6, 6, 1)])
def test_mha(sq, sk, causal):
    m = mha(sq=sq, sk=sk, unidirectional=causal)
    out, report, errs = _rewrite_checked(m)
    n = _flash(out)
    assert n.op_type == ("AttentionFlashCausal" if causal else "AttentionFlash")
    assert _attrs(n) == {"layout": b"bshd", "out_dtype": TensorProto.FLOAT}
    assert ops(out) == {n.op_type: 1, "Reshape": 4}
    assert max(errs) <= 1e-5


def test_mha_scale():
    out, _, errs = _rewrite_checked(mha(scale=0.125 / 2))
    assert _attrs(_flash(out))["scale"] == pytest.approx(0.0625)


@pytest.mark.parametrize("kw,reason", [
    (dict(inputs=("q", "k", "v", "", "kpm")), "key_padding_mask input: AttentionFlash takes no padding mask"),
    (dict(inputs=("q", "k", "v", "", "", "ab")),
     "attention_bias input: AttentionFlash takes no additive mask or bias"),
    (dict(inputs=("q", "k4", "v4")),
     "query/key/value ranks [3, 4, 4]: only [B, S, N*H] query, key and value map without a Transpose"),
    (dict(inputs=("q",)), "packed QKV or KV (no separate key and value inputs): not mapped"),
    (dict(sq=3, sk=7, unidirectional=1), "unidirectional with query and key lengths not known to be equal: "
                                         "AttentionFlashCausal aligns the mask bottom-right"),
])
def test_mha_left_alone(kw, reason):
    _left_alone(mha(**kw), reason, "MultiHeadAttention")


# ---------------------------------------------------------------------------------------------------------
# com.microsoft GroupQueryAttention
def gqa(dtype=np.float16, hq=4, hkv=2, s=6, d=16, seqlens=None, total=None, past=False):
    seqlens = np.full(2, s - 1, np.int32) if seqlens is None else np.asarray(seqlens, np.int32)
    inits = [numpy_helper.from_array(seqlens, "seqlens_k"),
             numpy_helper.from_array(np.array(s if total is None else total, np.int32), "total_len")]
    ins = ["q", "k", "v", "pk" if past else "", "pv" if past else "", "seqlens_k", "total_len"]
    node = helper.make_node("GroupQueryAttention", ins, ["Y", "present_k", "present_v"], name="attn",
                            domain="com.microsoft", num_heads=hq, kv_num_heads=hkv)
    inputs = [("q", [2, s, hq * d]), ("k", [2, s, hkv * d]), ("v", [2, s, hkv * d])]
    if past:
        inputs += [("pk", [2, hkv, 3, d]), ("pv", [2, hkv, 3, d])]
    return _model([node], inputs, [("Y", [2, s, hq * d])], dtype, inits=inits, extra_opsets=[MS])


def test_gqa_constant_lengths():
    out, report, errs = _rewrite_checked(gqa())
    n = _flash(out)
    assert n.op_type == "AttentionFlashCausal" and _attrs(n) == {"layout": b"bshd", "out_dtype": TensorProto.FLOAT16}
    assert ops(out) == {"AttentionFlashCausal": 1, "Reshape": 4}
    assert max(errs) <= 2e-3, errs


@pytest.mark.parametrize("kw,reason", [
    (dict(past=True), "past_key/past_value inputs (KV cache, updated by the op): AttentionFlash reads no cache"),
    (dict(seqlens=[5, 3]), "constant seqlens_k [5, 3] / total_sequence_length 6 do not cover every key of the "
                           "sequence"),
])
def test_gqa_left_alone(kw, reason):
    _left_alone(gqa(**kw), reason, "GroupQueryAttention")


def test_gqa_runtime_lengths_left_alone():
    m = gqa()
    del m.graph.initializer[:]
    m.graph.input.extend([helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [2]),
                          helper.make_tensor_value_info("total_len", TensorProto.INT32, [])])
    _left_alone(m, "seqlens_k/total_sequence_length are computed at run time (per-batch key lengths): "
                   "AttentionFlash attends to every key", "GroupQueryAttention")


# ---------------------------------------------------------------------------------------------------------
# the decomposed pattern (plain torch.onnx export)
def causal_mask(sq, sk, neg=-np.inf, dtype=np.float32):
    i, j = np.arange(sq)[:, None], np.arange(sk)[None]
    return np.where(j <= i + sk - sq, 0, neg).astype(dtype)


def decomposed(dtype=np.float32, h=4, hkv=None, sq=5, sk=5, d=16, layout="bhsd", scale="div", mask=None,
               where=None, guard=False, commuted=False):
    """Q, K, V [B, H, S, D] (or [B, S, H, D] with Transposes, as torch exports q.transpose(1, 2))."""
    nodes, inits = [], []
    c = lambda name, a: inits.append(numpy_helper.from_array(np.asarray(a), name)) or name  # noqa: E731
    hkv = hkv or h
    if layout == "bhsd":
        ins = [("Q", ["b", h, sq, d]), ("K", ["b", h, sk, d]), ("V", ["b", h, sk, d])]
        q, v = "Q", "V"
        nodes.append(helper.make_node("Transpose", ["K"], ["kt"], perm=[0, 1, 3, 2]))
    else:
        ins = [("Q", ["b", sq, h, d]), ("K", ["b", sk, h, d]), ("V", ["b", sk, h, d])]
        nodes += [helper.make_node("Transpose", ["Q"], ["q"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["V"], ["v"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["K"], ["kt"], perm=[0, 2, 3, 1])]
        q, v = "q", "v"
    s = "scores"
    nodes.append(helper.make_node("MatMul", [q, "kt"], [s], name="attn"))
    if scale == "div":
        nodes.append(helper.make_node("Div", [s, c("sqrt_d", np.array(np.sqrt(d), dtype))], ["scaled"]))
        s = "scaled"
    elif scale == "mul":
        nodes.append(helper.make_node("Mul", [c("sc", np.array(0.2, dtype)), s], ["scaled"]))
        s = "scaled"
    if mask is not None:
        args = [c("mask", mask.astype(dtype)), s] if commuted else [s, c("mask", mask.astype(dtype))]
        nodes.append(helper.make_node("Add", args, ["masked"]))
        s = "masked"
    if where is not None:
        nodes.append(helper.make_node("Where", [c("keep", where), s, c("fill", np.array(-np.inf, dtype))],
                                      ["masked"]))
        s = "masked"
    nodes.append(helper.make_node("Softmax", [s], ["probs"], axis=-1))
    p = "probs"
    if guard:
        nodes += [helper.make_node("IsNaN", ["probs"], ["nan"]),
                  helper.make_node("Where", ["nan", c("zero", np.array(0, dtype)), "probs"], ["probs_g"])]
        p = "probs_g"
    if layout == "bhsd":
        nodes.append(helper.make_node("MatMul", [p, v], ["Y"], name="pv"))
        out = ["b", h, sq, d]
    else:
        nodes += [helper.make_node("MatMul", [p, v], ["o"], name="pv"),
                  helper.make_node("Transpose", ["o"], ["Y"], perm=[0, 2, 1, 3])]
        out = ["b", sq, h, d]
    return _model(nodes, ins, [("Y", out)], dtype, inits=inits)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("sq,sk,masked", [(5, 5, None), (5, 5, "add"), (3, 7, "add"), (6, 6, "where"),
                                          (1, 6, "add")])
def test_decomposed(dtype, layout, sq, sk, masked):
    kw = {}
    if masked == "add":
        kw["mask"] = causal_mask(sq, sk, -np.inf if dtype == np.float32 else -65504.0)
    elif masked == "where":
        kw["where"] = causal_mask(sq, sk) == 0
    m = decomposed(dtype, sq=sq, sk=sk, layout=layout, **kw)
    out, report, errs = _rewrite_checked(m)
    assert report.replaced == {"attention": 1}
    causal = masked is not None and sq > 1
    n = _flash(out)
    assert n.op_type == ("AttentionFlashCausal" if causal else "AttentionFlash")
    a = _attrs(n)
    assert (a["layout"], a["out_dtype"]) == (layout.encode(), T[dtype]) and a["scale"] == pytest.approx(0.25)
    assert ops(out) == {n.op_type: 1}                       # Transposes (bshd) and the mask gone
    assert list(n.input) == ["Q", "K", "V"] and list(n.output) == ["Y"]
    assert len(out.graph.initializer) == 0
    assert max(errs) <= (2e-3 if dtype == np.float16 else 1e-5), errs


def test_decomposed_mul_scale_commuted_mask_nan_guard():
    m = decomposed(np.float32, scale="mul", mask=causal_mask(4, 4, -1e9), commuted=True, guard=True, sq=4, sk=4)
    out, report, errs = _rewrite_checked(m)
    assert _flash(out).op_type == "AttentionFlashCausal" and _attrs(_flash(out))["scale"] == pytest.approx(0.2)
    assert ops(out) == {"AttentionFlashCausal": 1}


def test_decomposed_zero_mask_is_not_causal():
    for mask in (np.zeros((1, 1, 5, 5), np.float32), np.zeros((2, 4, 5, 5), np.float32)):   # same over batch/heads
        out, _, _ = _rewrite_checked(decomposed(np.float32, mask=mask))
        assert _flash(out).op_type == "AttentionFlash"


@pytest.mark.parametrize("kw,reason", [
    (dict(mask=causal_mask(5, 5).T.copy()),
     "the mask is not causal (bottom-right triangular): a padding or other mask is not mapped"),
    (dict(sq=3, sk=7, mask=np.triu(np.full((3, 7), -np.inf, np.float32), 1)),   # top-left aligned
     "the mask is not causal (bottom-right triangular): a padding or other mask is not mapped"),
    (dict(mask=np.where(np.arange(5) < 3, 0, -np.inf).astype(np.float32)[None, :]),     # padding: last 2 keys
     "the mask is not causal (bottom-right triangular): a padding or other mask is not mapped"),
    (dict(mask=np.stack([np.zeros((1, 5, 5)), np.where(np.arange(5) < 3, 0, -np.inf)[None, None].repeat(5, 1)]
                        ).astype(np.float32)),                      # batch 1 pads its last 2 keys
     "the mask [2, 1, 5, 5] differs across batch or heads (a padding mask): not mapped"),
    (dict(mask=0.5 * rng("bias").standard_normal((5, 5)).astype(np.float32)),
     "the mask has values other than 0 and large negatives (an additive bias): not mapped"),
])
def test_decomposed_left_alone(kw, reason):
    _left_alone(decomposed(np.float32, **kw), reason, "MatMul/Softmax/MatMul", nodes=("pv",))


def test_decomposed_runtime_mask_left_alone():
    m = decomposed(np.float32, mask=np.zeros((5, 5), np.float32))
    del m.graph.initializer[[i.name for i in m.graph.initializer].index("mask")]
    m.graph.input.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["b", 1, 5, 5]))
    _left_alone(m, "the mask 'mask' is computed at run time (padding or other mask): AttentionFlash takes no mask",
                "MatMul/Softmax/MatMul", nodes=("pv",))


@pytest.mark.parametrize("shared", [False, True])
def test_decomposed_mask_from_where_of_constants(shared):
    """The additive mask as Where(keep, 0, -1e9) of constants (torch.onnx stops folding at 8192 input elements:
    a 512-token causal mask, a batch-16 decode mask): read as the constant it is; the Where goes once unread
    (it stays when something else reads it, here a second graph output)."""
    m = decomposed(np.float32, sq=4, sk=6, mask=causal_mask(4, 6))
    names = [i.name for i in m.graph.initializer]
    del m.graph.initializer[names.index("mask")]
    m.graph.initializer.extend([numpy_helper.from_array(causal_mask(4, 6) == 0, "keep"),
                                numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
                                numpy_helper.from_array(np.array(-1e9, np.float32), "neg_inf")])
    m.graph.node.insert(0, helper.make_node("Where", ["keep", "zero_f", "neg_inf"], ["mask"], name="mask_where"))
    if shared:
        m.graph.output.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [4, 6]))
    out, report, errs = _rewrite_checked(m)
    assert _flash(out).op_type == "AttentionFlashCausal"
    assert ops(out) == ({"AttentionFlashCausal": 1, "Where": 1} if shared else {"AttentionFlashCausal": 1})
    assert len(out.graph.initializer) == (3 if shared else 0)
    assert max(errs) <= 1e-5, errs


def test_decomposed_bshd_key_without_matching_transposes_left_alone():
    m = decomposed(np.float32, layout="bshd")
    y = m.graph.node[-1]
    assert y.op_type == "Transpose"
    y.op_type, y.attribute[0].ints[:] = "Identity", []          # the output stays [B, H, S, D]
    del y.attribute[:]
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value, m.graph.output[0].type.tensor_type.shape.dim[2].dim_value = 4, 5
    _left_alone(m, "K is transposed [B, S, H, D] -> [B, H, D, S] but Q, V or the output are not the matching "
                   "Transposes of [B, S, H, D] values: a Transpose would be added", "MatMul/Softmax/MatMul",
                nodes=("pv",))


# ---------------------------------------------------------------------------------------------------------
# com.microsoft MultiHeadAttention with a packed bias input (Q + bq, K + bk, V + bv)
def mha_bias(dtype=np.float32, h=4, sq=5, sk=7, d=16, dv=8, bias_input=False, **attrs):
    r = rng("mha_bias", dtype, sq, sk)
    bias = (0.5 * r.standard_normal(2 * h * d + h * dv)).astype(dtype)
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "bias"], ["Y"], name="attn",
                            domain="com.microsoft", num_heads=h, **attrs)
    ins = [("q", ["b", sq, h * d]), ("k", ["b", sk, h * d]), ("v", ["b", sk, h * dv])]
    inits = [] if bias_input else [numpy_helper.from_array(bias, "bias")]
    if bias_input:
        ins.append(("bias", [bias.size]))
    return _model([node], ins, [("Y", ["b", sq, h * dv])], dtype, inits=inits, extra_opsets=[MS])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("bias_input,sq,sk,causal", [(False, 5, 7, 0), (False, 6, 6, 1), (True, 5, 7, 0)])
def test_mha_bias(dtype, bias_input, sq, sk, causal):
    m = mha_bias(dtype, sq=sq, sk=sk, bias_input=bias_input, unidirectional=causal)
    out, report, errs = _rewrite_checked(m)
    n = _flash(out)
    assert n.op_type == ("AttentionFlashCausal" if causal else "AttentionFlash")
    assert _attrs(n) == {"layout": b"bshd", "out_dtype": T[dtype]}
    extra = {"Split": 1} if bias_input else {}
    assert ops(out) == {n.op_type: 1, "Reshape": 4, "Add": 3, **extra}
    assert [i.name for i in out.graph.initializer if i.name == "bias"] == []       # cut into bias_q/k/v
    assert max(errs) <= (2e-3 if dtype == np.float16 else 1e-5), errs


# ---------------------------------------------------------------------------------------------------------
# com.microsoft Attention (packed QKV weights, ORT's transformers optimizer's BERT form)
def ms_attention(dtype=np.float32, h=4, s=6, hidden=64, sizes=None, bias=True, mask=None, past=False,
                 present=False, opset=17, **attrs):
    r = rng("ms_attention", hidden, sizes)
    sizes = sizes or (hidden,) * 3
    w = (r.standard_normal((hidden, sum(sizes))) / np.sqrt(hidden)).astype(dtype)
    inits = [numpy_helper.from_array(w, "qkv_weight")]
    ins = ["x", "qkv_weight", ""]
    if bias:
        b = np.zeros(sum(sizes), dtype) if bias == "zeros" else (0.3 * r.standard_normal(sum(sizes))).astype(dtype)
        inits.append(numpy_helper.from_array(b, "qkv_bias"))
        ins[2] = "qkv_bias"
    if isinstance(mask, np.ndarray):
        inits.append(numpy_helper.from_array(mask, "mask_index"))
    if mask is not None:
        ins.append("mask_index")
    if past:
        ins += [""] * (4 - len(ins)) + ["past"]
    if sizes != (hidden,) * 3:
        attrs["qkv_hidden_sizes"] = list(sizes)
    outs = ["Y", "present"] if present else ["Y"]
    node = helper.make_node("Attention", ins, outs, name="attn", domain="com.microsoft", num_heads=h, **attrs)
    graph_ins = [("x", ["b", s, hidden])] + ([("past", [2, "b", h, 2, hidden // h])] if past else [])
    outputs = [("Y", ["b", s, sizes[2]])] + ([("present", None)] if present else [])
    m = _model([node], graph_ins, outputs, dtype, opset=opset, inits=inits, extra_opsets=[MS])
    if isinstance(mask, str) and mask == "input":
        m.graph.input.append(helper.make_tensor_value_info("mask_index", TensorProto.INT32, ["b", s]))
    return m


@pytest.mark.parametrize("kw", [dict(), dict(unidirectional=1), dict(bias=False), dict(scale=0.2),
                                dict(sizes=(64, 64, 32)), dict(mask=np.ones((2, 6), np.int32)), dict(opset=11)])
def test_ms_attention(kw):
    m = ms_attention(**kw)
    ref = None if kw.get("bias", True) else ms_attention(**dict(kw, bias="zeros"))   # ORT 1.31's CPU Attention
    out, report, errs = _rewrite_checked(m, ref=ref)                                 # crashes without a bias
    n = _flash(out)
    assert n.op_type == ("AttentionFlashCausal" if kw.get("unidirectional") else "AttentionFlash")
    a = _attrs(n)
    assert (a["layout"], a["out_dtype"]) == (b"bshd", TensorProto.FLOAT)
    if "scale" in kw:
        assert a["scale"] == pytest.approx(0.2)
    assert ops(out) == {n.op_type: 1, "Reshape": 4, "MatMul": 1, "Split": 1, **({"Add": 1} if kw.get("bias", True) else {})}
    split = next(x for x in out.graph.node if x.op_type == "Split")
    assert ("split" in _attrs(split)) == (kw.get("opset") == 11)          # Split-11: attribute; 13+: input
    assert "mask_index" not in [i.name for i in out.graph.initializer]
    assert max(errs) <= 1e-5, errs


def test_ms_attention_with_dense_rule():
    """f16 with the opt-in dense rule: the packed projection becomes MatmulTcAsync. (ORT's CPU EP has no
    float16 Attention, so the reference is the float32 model.)"""
    m16 = ms_attention(np.float16)
    out, report = rewrite_model(m16, rules=["attention", "dense"])
    onnx.checker.check_model(out)
    assert report.replaced == {"attention": 1, "dense": 1} and report.left_alone == []
    assert ops(out) == {"AttentionFlash": 1, "Reshape": 4, "MatmulTcAsync": 1, "Add": 1, "Split": 1}
    m32 = ms_attention(np.float32)
    for t in m32.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16).astype(np.float32), t.name))
    x = rng("x").standard_normal((2, 6, 64)).astype(np.float16)
    from rw_models import rel_err, run
    (y16,), (y32,) = run(out, {"x": x}), run(m32, {"x": x.astype(np.float32)})
    assert y16.dtype == np.float16 and rel_err(y16, y32) <= 1e-2


@pytest.mark.parametrize("kw,reason", [
    (dict(mask="input"), "mask_index input ('mask_index') is computed at run time (a padding mask): AttentionFlash "
                         "takes no mask"),
    (dict(mask=np.array([[1, 1, 1, 1, 0, 0]] * 2, np.int32)),
     "constant mask_index [2, 6] that hides keys (or key lengths, 1-D): AttentionFlash takes no mask"),
    (dict(mask=np.array([6, 6], np.int32)),
     "constant mask_index [2] that hides keys (or key lengths, 1-D): AttentionFlash takes no mask"),
    (dict(past=True), "past input (KV cache): AttentionFlash reads no cache"),
    (dict(present=True), "the present output is used: AttentionFlash writes no KV cache"),
    (dict(do_rotary=1), "do_rotary: rotary embedding inside the op is not mapped"),
    (dict(sizes=(64, 32, 64)), "qkv_hidden_sizes [64, 32, 64] with num_heads 4: Q and K sizes must match and divide "
                               "by the heads"),
])
def test_ms_attention_left_alone(kw, reason):
    _left_alone(ms_attention(**kw), reason, "Attention")
