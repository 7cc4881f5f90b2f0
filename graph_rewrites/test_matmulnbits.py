"""kaio_ort.rewrites.matmulnbits: com.microsoft MatMulNBits -> com.kaio MatmulInt4 / MatmulInt8.

Models quantized by ORT's own MatMulNBits quantizer (or written by hand for what it cannot make);
after the rewrite: node counts and op types, attributes, graph outputs unchanged, onnx.checker,
outputs equal to the original's on the CPU EP, idempotency; every case left alone with its exact
reason."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from kaio_ort.rewrites import LeftAlone, rewrite_model
from rw_models import OPSETS, add_bias, assert_same_outputs, mlp, ops, quantize, rewrite_checked, rng, set_attr


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _kaio_nodes(model):
    return [n for n in model.graph.node if n.domain == "com.kaio"]


def _rewrite_checked(model, **kw):
    return rewrite_checked(model, ["matmulnbits"], **kw)


CASES = [  # bits, block_size, symmetric
    (4, 32, False), (4, 64, True), (4, 128, False), (4, 128, True),
    (8, 32, False), (8, 64, True), (8, 256, True),      # 8-bit block 256 >= K = 128 / 256: per channel
]


@pytest.mark.parametrize("bits,bs,sym", CASES)
def test_mlp_quantized_by_ort(bits, bs, sym):
    fp = mlp()
    q = quantize(fp, bits=bits, block_size=bs, symmetric=sym)
    assert ops(q)["MatMulNBits"] == 2
    out, report = _rewrite_checked(q)
    op = "MatmulInt4" if bits == 4 else "MatmulInt8"
    assert ops(out) == {op: 2, "Add": 1, "Relu": 1}
    assert report.replaced == {"matmulnbits": 2} and report.left_alone == []
    assert report.rules["matmulnbits"].replaced_nodes == [(n.name,) for n in q.graph.node if n.op_type == "MatMulNBits"]
    for n, K in zip(_kaio_nodes(out), (128, 256)):
        per_channel = bits == 8 and bs >= K
        assert _attrs(n) == {"group_size": 0 if per_channel else bs, "out_dtype": TensorProto.FLOAT16}
        assert len(n.input) == (3 if sym else 4)                 # symmetric: no zero points input
    # the MatMulNBits weights are gone, only KAIO-layout ones remain (plus b1)
    inits = {i.name: i for i in out.graph.initializer}
    assert len(inits) == 1 + 2 * (3 if sym else 4) - 2 and "b1" in inits
    errs = assert_same_outputs(q, out)
    assert max(errs) <= 2e-3, errs                                # both dequantise exactly


# fc2 sits between two nodes: ORT's CPU EP inserts Casts around Relu and Add (no float16 kernels)
# and must keep MatmulInt4's A in float16 (the library registers typed variants for that).
@pytest.mark.parametrize("bits,bs,sym,node_name", [
    (4, 32, False, "fc1_Q4"), (8, 64, True, "fc1_Q8"),
    (4, 32, False, "fc2_Q4"),  # between two nodes (Relu -> MatmulInt4 -> Add)
])
def test_bias_input_becomes_add(bits, bs, sym, node_name):
    model = add_bias(quantize(mlp(), bits=bits, block_size=bs, symmetric=sym), node_name)
    out, report = _rewrite_checked(model)
    assert ops(out) == {"MatmulInt4" if bits == 4 else "MatmulInt8": 2, "Add": 2, "Relu": 1}
    adds = [n for n in out.graph.node if n.op_type == "Add" and n.name.endswith("/bias")]
    assert [(a.name, a.input[1]) for a in adds] == [(f"{node_name}/bias", f"{node_name}_bias")]
    assert_same_outputs(model, out)


def _mnb_model(K=64, N=16, bits=4, bs=32, *, zp="u8", dtype=np.float16, g_idx=None, weights_as_input=False,
               block_rows=None, **attrs):
    """One hand-written MatMulNBits: Y [3, N] = X [3, K] * W."""
    r = rng("mnb", K, N, bits, bs, zp)
    kb = block_rows or -(-K // bs)
    B = r.integers(0, 256, (N, kb, bs * bits // 8), dtype=np.uint8)
    scales = (r.uniform(0.01, 0.1, N * kb)).astype(dtype)
    inits = [numpy_helper.from_array(scales, "scales")]
    inputs = ["X", "B", "scales"]
    if zp == "u8":
        inits.append(numpy_helper.from_array(r.integers(0, 256, N * (-(-kb * bits // 8)), dtype=np.uint8), "zp"))
        inputs.append("zp")
    elif zp == "float":
        inits.append(numpy_helper.from_array((r.integers(4, 12, N * kb) + 0.5).astype(dtype), "zp"))
        inputs.append("zp")
    if g_idx is not None:
        inputs += [""] * (4 - len(inputs)) + ["g_idx"]
        inits.append(numpy_helper.from_array(np.asarray(g_idx, np.int32), "g_idx"))
    t = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    graph_inputs = [helper.make_tensor_value_info("X", t, [3, K])]
    if weights_as_input:
        graph_inputs.append(helper.make_tensor_value_info("B", TensorProto.UINT8, list(B.shape)))
    else:
        inits.append(numpy_helper.from_array(B, "B"))
    node = helper.make_node("MatMulNBits", inputs, ["Y"], name="mnb", domain="com.microsoft",
                            K=K, N=N, bits=bits, block_size=bs, **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_tensor_value_info("Y", t, [3, N])], inits)
    return helper.make_model(graph, ir_version=8, opset_imports=OPSETS)


def test_float_zero_points_and_shared_weights():
    """Float (non-integer) zero points, and two nodes sharing one set of weights: converted once."""
    m = _mnb_model(K=64, N=64, zp="float")
    n2 = helper.make_node("MatMulNBits", ["Y", "B", "scales", "zp"], ["Y2"], name="mnb2", domain="com.microsoft",
                          K=64, N=64, bits=4, block_size=32)
    m.graph.node.append(n2)
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("Y2", TensorProto.FLOAT16, [3, 64]))
    out, report = _rewrite_checked(m)
    assert report.replaced == {"matmulnbits": 2}
    assert ops(out) == {"MatmulInt4": 2}
    a, b = _kaio_nodes(out)
    assert list(a.input[1:]) == list(b.input[1:]) and len(out.graph.initializer) == 3
    assert_same_outputs(m, out)


def test_accuracy_level_4_is_accepted_and_closer_to_float():
    """accuracy_level 4 lets ORT quantize A to int8; MatmulInt4 uses A as given, so the rewritten
    model is closer to the float64 product of A and the dequantised weights than the original."""
    q = quantize(mlp(K=256, hidden=128, N=64), bits=4, block_size=32, accuracy_level=4)
    assert all(_attrs(n).get("accuracy_level") == 4 for n in q.graph.node if n.op_type == "MatMulNBits")
    out, report = _rewrite_checked(q)
    assert report.replaced == {"matmulnbits": 2} and report.left_alone == []
    assert_same_outputs(q, out, tol=3e-2)


def test_float32_left_alone_unless_cast_requested():
    q = quantize(mlp(dtype=np.float32), bits=4, block_size=32)
    out, report = _rewrite_checked(q)
    reason = ("float32 activations: MatmulInt4/MatmulInt8 take float16 or bfloat16 A (cast_float32=True / "
              "--cast-float32 inserts a Cast to float16, approximately)")
    assert report.left_alone == [LeftAlone("matmulnbits", ("fc1_Q4",), "MatMulNBits", reason),
                                 LeftAlone("matmulnbits", ("fc2_Q4",), "MatMulNBits", reason)]
    assert ops(out) == ops(q)
    out, report = _rewrite_checked(q, cast_float32=True)
    assert ops(out) == {"Cast": 2, "MatmulInt4": 2, "Add": 1, "Relu": 1}
    for n in _kaio_nodes(out):
        assert _attrs(n)["out_dtype"] == TensorProto.FLOAT
    assert_same_outputs(q, out, tol=1e-2)


NEGATIVE = [
    ("identity g_idx with zero points", dict(g_idx=np.arange(64) // 32),
     "g_idx with zero points: ORT's MatMulNBits reads these zero points differently with and without g_idx, so "
     "the rewritten node could not match the original's outputs"),
    ("act-order g_idx", dict(g_idx=(np.arange(64) // 32)[::-1], zp=None),
     "from_matmulnbits: g_idx must be the identity grouping k // 32 (act-order / desc_act reordering cannot be "
     "expressed by com.kaio's ops; re-export without it)"),
    ("K not a multiple of the block", dict(K=80, block_rows=3),
     "from_matmulnbits: K (80) must be a multiple of block_size (32)"),
    ("4-bit block 16", dict(bs=16),
     "from_matmulnbits: block_size must be 32, 64 or 128 for 4 bits (MatmulInt4's group_size), got 16"),
    ("4-bit block 256", dict(K=256, bs=256),
     "from_matmulnbits: block_size must be 32, 64 or 128 for 4 bits (MatmulInt4's group_size), got 256"),
    ("bits 2", dict(bits=2), "bits 2: com.kaio has 4-bit (MatmulInt4) and 8-bit (MatmulInt8) weights only"),
    ("accuracy level 7", dict(accuracy_level=7), "accuracy_level 7 is not one of ORT's levels 0..4"),
    ("weights not constant", dict(weights_as_input=True),
     "input B ('B') is not a constant initializer (weights are repacked offline)"),
]


@pytest.mark.parametrize("kw,reason", [c[1:] for c in NEGATIVE], ids=[c[0] for c in NEGATIVE])
def test_left_alone_with_reason(kw, reason):
    m = _mnb_model(**kw)
    out, report = rewrite_model(m)
    assert report.replaced == {"matmulnbits": 0, "qkv": 0, "attention": 0}
    assert report.left_alone == [LeftAlone("matmulnbits", ("mnb",), "MatMulNBits", reason)]
    assert out.graph.node[0] == m.graph.node[0] and ops(out) == {"MatMulNBits": 1}
    assert sorted(i.name for i in out.graph.initializer) == sorted(i.name for i in m.graph.initializer)


def test_one_node_left_alone_the_other_rewritten():
    q = quantize(mlp(), bits=4, block_size=32)
    set_attr(q, "fc1_Q4", accuracy_level=9)
    out, report = rewrite_model(q)
    assert ops(out) == {"MatMulNBits": 1, "MatmulInt4": 1, "Add": 1, "Relu": 1}
    assert report.replaced == {"matmulnbits": 1, "qkv": 0, "attention": 0}
    assert [x.nodes for x in report.left_alone] == [("fc1_Q4",)]
    set_attr(q, "fc1_Q4", accuracy_level=0)
    set_attr(out, "fc1_Q4", accuracy_level=0)
    assert_same_outputs(q, out)


def test_unknown_rule_and_input_type():
    with pytest.raises(ValueError, match=r"unknown rules \['flash'\]; the rules are \['matmulnbits', 'qkv', 'attention', 'dense'\]"):
        rewrite_model(mlp(), rules=["flash"])
    with pytest.raises(TypeError, match="rewrite_model takes an onnx.ModelProto"):
        rewrite_model(b"bytes")
