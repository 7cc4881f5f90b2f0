"""kaio_ort.rewrites.dense (opt-in): float16 / bfloat16 MatMul and Gemm with constant weights -> MatmulTcAsync /
MatmulTcBf16Async, out_dtype the operands' type; a trivial Transpose of a constant B -> trans_b=1; Gemm's transB
-> trans_b, a power-of-two alpha -> Mul after, a bias C (beta 1) -> Add after.

Each case: op types and attributes, graph outputs unchanged, onnx.checker, outputs equal to the original on
the CPU EP (bfloat16: to a float64 reference, ORT's CPU EP has no bfloat16 MatMul), idempotency; every
MatMul left alone with its exact reason; not in the default rule set."""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kaio_ort.cli import main
from kaio_ort.rewrites import DEFAULT_RULES, LeftAlone, rewrite_model
from rw_models import assert_same_outputs, mlp, ops, rel_err, rewrite_checked, rng, run

T = {np.float16: TensorProto.FLOAT16, np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32}


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def matmul(dtype=np.float16, a_shape=("b", 4, 64), w_shape=(64, 32), transposed=False, b_input=False,
           shared_transpose=False, perm=None, y_shape=None):
    """Y = X @ W (W constant [K, N]), or X @ Transpose(Wt) (Wt [N, K] stored transposed)."""
    r = rng("dense", a_shape, w_shape, transposed)
    nodes, outs = [], []
    t = T[dtype]
    w = (r.standard_normal(w_shape) / np.sqrt(w_shape[0 if len(w_shape) == 1 else -2])).astype(dtype)
    if transposed:
        wt = np.ascontiguousarray(np.swapaxes(w, -1, -2))
        inits = [numpy_helper.from_array(wt, "Wt")]
        p = perm if perm is not None else list(range(len(w_shape) - 2)) + [len(w_shape) - 1, len(w_shape) - 2]
        nodes.append(helper.make_node("Transpose", ["Wt"], ["W"], name="wt", perm=p))
        if shared_transpose:
            outs.append(helper.make_tensor_value_info("W", t, list(w_shape)))
    else:
        inits = [numpy_helper.from_array(w, "W")]
    nodes.append(helper.make_node("MatMul", ["X", "W"], ["Y"], name="mm"))
    y_shape = y_shape or [*a_shape[:-1], w_shape[-1]]
    ins = [helper.make_tensor_value_info("X", t, list(a_shape))]
    if b_input:
        ins.append(helper.make_tensor_value_info("W", t, list(w_shape)))
    g = helper.make_graph(nodes, "dense", ins, [helper.make_tensor_value_info("Y", t, y_shape)] + outs, inits)
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])


def _rewrite_checked(model):
    out, report = rewrite_checked(model, ["dense"])
    assert report.left_alone == []
    return out, report


def _node(model):
    (n,) = [n for n in model.graph.node if n.domain == "com.kaio"]
    return n


@pytest.mark.parametrize("a_shape,w_shape", [(("b", 4, 64), (64, 32)), ((3, 64), (64, 48)),
                                             ((2, "m", 64), (2, 64, 32)), ((2, 3, 5, 32), (3, 32, 16))])
def test_f16_constant_weights(a_shape, w_shape):
    m = matmul(np.float16, a_shape, w_shape)
    out, report = _rewrite_checked(m)
    assert report.replaced == {"dense": 1} and report.rules["dense"].replaced_nodes == [("mm",)]
    n = _node(out)
    assert (n.op_type, list(n.input), list(n.output)) == ("MatmulTcAsync", ["X", "W"], ["Y"])
    assert _attrs(n) == {"out_dtype": TensorProto.FLOAT16}
    assert ops(out) == {"MatmulTcAsync": 1}
    feeds = {"X": rng("x").standard_normal([2 if isinstance(d, str) else d for d in a_shape]).astype(np.float16)}
    errs = assert_same_outputs(m, out, feeds=feeds)
    assert max(errs) <= 2e-3, errs


def test_transposed_constant_becomes_trans_b():
    m = matmul(np.float16, transposed=True)
    out, report = _rewrite_checked(m)
    n = _node(out)
    assert list(n.input) == ["X", "Wt"] and _attrs(n) == {"out_dtype": TensorProto.FLOAT16, "trans_b": 1}
    assert ops(out) == {"MatmulTcAsync": 1}                   # the Transpose is gone
    assert max(assert_same_outputs(m, out)) <= 2e-3


def test_transpose_read_elsewhere_stays():
    m = matmul(np.float16, transposed=True, shared_transpose=True)
    out, _ = _rewrite_checked(m)
    assert ops(out) == {"MatmulTcAsync": 1, "Transpose": 1} and _attrs(_node(out))["trans_b"] == 1
    assert max(assert_same_outputs(m, out)) <= 2e-3


def test_batched_transposed_constant():
    m = matmul(np.float16, (2, 4, 32), (2, 32, 16), transposed=True)
    out, _ = _rewrite_checked(m)
    assert _attrs(_node(out))["trans_b"] == 1 and ops(out) == {"MatmulTcAsync": 1}
    assert max(assert_same_outputs(m, out)) <= 2e-3


def test_bf16():
    """X f32 -> Cast bf16 -> MatMul(W bf16) -> Cast f32: the MatMul -> MatmulTcBf16Async (out_dtype bfloat16)."""
    r = rng("bf16")
    w = (r.standard_normal((64, 32)) / 8).astype(ml_dtypes.bfloat16)
    t = helper.make_tensor("W", TensorProto.BFLOAT16, [64, 32], w.view(np.uint16).tobytes(), raw=True)
    nodes = [helper.make_node("Cast", ["X"], ["xb"], to=TensorProto.BFLOAT16),
             helper.make_node("MatMul", ["xb", "W"], ["yb"], name="mm"),
             helper.make_node("Cast", ["yb"], ["Y"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", 64])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["b", 32])], [t])
    m = helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    out, report = _rewrite_checked(m)
    n = _node(out)
    assert n.op_type == "MatmulTcBf16Async" and _attrs(n) == {"out_dtype": TensorProto.BFLOAT16}
    x = r.standard_normal((3, 64)).astype(np.float32)
    (y,) = run(out, {"X": x})
    ref = x.astype(ml_dtypes.bfloat16).astype(np.float64) @ w.astype(np.float64)
    assert rel_err(y, ref) <= 1e-2


def _left_alone(model, reason, nodes=("mm",)):
    out, report = rewrite_model(model, rules=["dense"])
    assert report.replaced == {"dense": 0}
    assert report.left_alone == [LeftAlone("dense", tuple(nodes), "MatMul", reason)]
    assert not any(n.domain == "com.kaio" for n in out.graph.node)


def _int_matmul():
    m = matmul(np.float16)
    for v in (*m.graph.input, *m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.INT32
    w = m.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(np.ones((64, 32), np.int32), "W"))
    return m


@pytest.mark.parametrize("model,reason", [
    (lambda: matmul(np.float32),
     "float operands: MatmulTcAsync takes float16 and MatmulTcBf16Async bfloat16 (the model keeps ORT's MatMul)"),
    (_int_matmul, "int32 operands: integer MatMul is not mapped"),
    (lambda: matmul(np.float16, b_input=True),
     "B ('W') is not a constant initializer: the dense rule maps MatMuls with constant weights only"),
    (lambda: matmul(np.float16, (2, 4, 32), (2, 32, 16), transposed=True, perm=[0, 1, 2][::-1]),  # not the last two
     "B ('W') is not a constant initializer: the dense rule maps MatMuls with constant weights only"),
    (lambda: matmul(np.float16, ("b", 64), (64,), y_shape=["b"]),
     "B has rank 1: a vector B (rank 1) is not mapped"),
    (lambda: matmul(np.float16, (64,), (64, 32), y_shape=[32]), "A has rank 1 (a vector product): not mapped"),
])
def test_left_alone(model, reason):
    _left_alone(model(), reason)


def test_initializer_that_is_a_graph_input_is_not_constant():
    m = matmul(np.float16)
    m.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT16, [64, 32]))
    _left_alone(m, "B ('W') is not a constant initializer: the dense rule maps MatMuls with constant weights only")


def test_not_in_the_default_rules():
    assert "dense" not in DEFAULT_RULES
    m = matmul(np.float16)
    out, report = rewrite_model(m)
    assert "dense" not in report.rules and ops(out) == {"MatMul": 1}


def test_cli_dense_flag(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save_model(mlp(), str(src))
    assert main(["rewrite", str(src), str(tmp_path / "o.onnx"), "--dense", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "dense: replaced 2, left alone 0" in out and "attention: replaced 0" in out
    assert ops(onnx.load(str(tmp_path / "o.onnx"))) == {"MatmulTcAsync": 2, "Add": 1, "Relu": 1}
    assert main(["rewrite", str(src), str(tmp_path / "o2.onnx"), "--rules", "dense"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dense: replaced 2, left alone 0\n")
    assert main(["rewrite", str(src), str(tmp_path / "o3.onnx")]) == 0
    assert "dense:" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# Gemm (torch's 2-D Linear export: Gemm(X, W [N, K], b, transB=1))
def gemm(dtype=np.float16, m=3, k=64, n=32, trans_b=1, alpha=None, beta=None, bias="vector", trans_a=0,
         transposed=False, c_input=False):
    """Y = alpha * X @ B' + beta * C; B constant [N, K] (transB=1) or [K, N]; C constant [N] / [M, N] or an input."""
    r = rng("gemm", m, k, n, trans_b, bias)
    t = T[dtype]
    w = (r.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    stored = np.ascontiguousarray(w.T) if trans_b else w
    nodes, inits, ins = [], [], [helper.make_tensor_value_info("X", t, [k, m] if trans_a else [m, k])]
    b_name = "W"
    if transposed:          # B = Transpose(W stored the other way round)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(stored.T), "Wt"))
        nodes.append(helper.make_node("Transpose", ["Wt"], ["W"], name="wt", perm=[1, 0]))
    else:
        inits.append(numpy_helper.from_array(stored, "W"))
    args = ["X", b_name]
    if bias is not None:
        c = (0.5 * r.standard_normal(n if bias == "vector" else (m, n))).astype(dtype)
        if c_input:
            ins.append(helper.make_tensor_value_info("C", t, list(c.shape)))
        else:
            inits.append(numpy_helper.from_array(c, "C"))
        args.append("C")
    attrs = {"transB": trans_b}
    if trans_a:
        attrs["transA"] = 1
    if alpha is not None:
        attrs["alpha"] = alpha
    if beta is not None:
        attrs["beta"] = beta
    nodes.append(helper.make_node("Gemm", args, ["Y"], name="mm", **attrs))
    g = helper.make_graph(nodes, "gemm", ins, [helper.make_tensor_value_info("Y", t, [m, n])], inits)
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])


def _gemm_feeds(model):
    x = model.graph.input[0].type.tensor_type.shape.dim
    feeds = {"X": rng("gx").standard_normal([d.dim_value for d in x]).astype(np.float16)}
    if len(model.graph.input) > 1:
        c = model.graph.input[1].type.tensor_type.shape.dim
        feeds["C"] = rng("gc").standard_normal([d.dim_value for d in c]).astype(np.float16)
    return feeds


@pytest.mark.parametrize("kw,trans_b,after", [
    (dict(), 1, ["Add"]),                                          # torch's Linear: transB=1, bias [N]
    (dict(trans_b=0), 0, ["Add"]),
    (dict(bias=None), 1, []),
    (dict(bias="matrix", trans_b=0), 0, ["Add"]),                  # C [M, N]
    (dict(alpha=0.5), 1, ["Mul", "Add"]),                          # a power of two: a Mul after
    (dict(alpha=4.0, beta=0.0), 1, ["Mul"]),                       # beta 0: C dropped
    (dict(beta=1.0, c_input=True), 1, ["Add"]),                    # C computed at run time
    (dict(transposed=True, trans_b=0), 1, ["Add"]),                # Gemm(X, Transpose(Wt)) -> Wt, trans_b=1
    (dict(transposed=True, trans_b=1), 0, ["Add"]),                # transB of a Transpose: back to [K, N]
])
def test_gemm(kw, trans_b, after):
    m = gemm(np.float16, **kw)
    out, report = _rewrite_checked(m)
    assert report.replaced == {"dense": 1} and report.rules["dense"].replaced_nodes == [("mm",)]
    n = _node(out)
    assert n.op_type == "MatmulTcAsync" and list(n.input) == ["X", "Wt" if kw.get("transposed") else "W"]
    want = {"out_dtype": TensorProto.FLOAT16, **({"trans_b": 1} if trans_b else {})}
    assert _attrs(n) == want
    assert [x.op_type for x in out.graph.node] == ["MatmulTcAsync", *after]     # no Transpose, no Gemm
    assert list(out.graph.node[-1].output) == ["Y"]
    errs = assert_same_outputs(m, out, feeds=_gemm_feeds(m))
    assert max(errs) <= 2e-3, errs


@pytest.mark.parametrize("full", [False, True])
def test_gemm_bf16(full):
    """Cast bf16 -> Gemm(W bf16 [N, K], transB=1) -> Cast f32, against a float64 reference; with alpha 2 and a
    bias (full) the graph only: ORT's CPU EP has no bfloat16 Mul / Add."""
    r = rng("gemm_bf16")
    w = (r.standard_normal((32, 64)) / 8).astype(ml_dtypes.bfloat16)
    b = r.standard_normal(32).astype(ml_dtypes.bfloat16)
    raw = lambda name, a: helper.make_tensor(name, TensorProto.BFLOAT16, a.shape, a.view(np.uint16).tobytes(),  # noqa: E731
                                             raw=True)
    nodes = [helper.make_node("Cast", ["X"], ["xb"], to=TensorProto.BFLOAT16),
             helper.make_node("Gemm", ["xb", "W", "C"] if full else ["xb", "W"], ["yb"], name="mm", transB=1,
                              alpha=2.0 if full else 1.0),
             helper.make_node("Cast", ["yb"], ["Y"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [3, 64])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [3, 32])], [raw("W", w), raw("C", b)])
    m = helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)])
    out, report = _rewrite_checked(m)
    n = _node(out)
    assert n.op_type == "MatmulTcBf16Async" and _attrs(n) == {"out_dtype": TensorProto.BFLOAT16, "trans_b": 1}
    assert [x.op_type for x in out.graph.node] == ["Cast", "MatmulTcBf16Async", *(["Mul", "Add"] if full else []),
                                                   "Cast"]
    if full:
        mul = out.graph.node[2]
        alpha = next(i for i in out.graph.initializer if i.name == mul.input[1])
        assert alpha.data_type == TensorProto.BFLOAT16 and list(alpha.dims) == [1]
        return
    x = r.standard_normal((3, 64)).astype(np.float32)
    (y,) = run(out, {"X": x})
    ref = x.astype(ml_dtypes.bfloat16).astype(np.float64) @ w.astype(np.float64).T
    assert rel_err(y, ref) <= 1e-2


@pytest.mark.parametrize("kw,reason", [
    (dict(trans_a=1), "transA=1: MatmulTcAsync has no transposed A (the model keeps ORT's Gemm)"),
    (dict(alpha=0.3), "alpha=0.3: only 1 or a power of two maps exactly (alpha * (A @ B) after our op rounds A @ B "
                      "to the output type first; a power of two scales without rounding)"),
    (dict(beta=0.5), "beta=0.5 with a bias C: only beta 1 (an Add after) or 0 maps without changing C's values"),
    (dict(dtype=np.float32),
     "float operands: MatmulTcAsync takes float16 and MatmulTcBf16Async bfloat16 (the model keeps ORT's Gemm)"),
])
def test_gemm_left_alone(kw, reason):
    out, report = rewrite_model(gemm(**kw), rules=["dense"])
    assert report.replaced == {"dense": 0}
    assert report.left_alone == [LeftAlone("dense", ("mm",), "Gemm", reason)]
    assert ops(out)["Gemm"] == 1 and not any(n.domain == "com.kaio" for n in out.graph.node)


def test_gemm_runtime_b_left_alone():
    m = gemm()
    del m.graph.initializer[[i.name for i in m.graph.initializer].index("W")]
    m.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT16, [32, 64]))
    out, report = rewrite_model(m, rules=["dense"])
    assert report.left_alone == [LeftAlone("dense", ("mm",), "Gemm", "B ('W') is not a constant initializer: the dense "
                                           "rule maps Gemms with constant weights only")]
