"""Models for the graph-rewrite tests, built in the test run: float graphs quantized by ORT's own
MatMulNBits quantizer, or MatMulNBits nodes written by hand where the quantizer cannot make the case."""
from __future__ import annotations

import collections
import copy
import logging
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import kaio_ort

OPSETS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
_ONNX_TYPE = {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.float32): TensorProto.FLOAT}


def rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def float_graph(nodes, inputs, outputs, weights, dtype=np.float16, name="g"):
    """A float model: inputs/outputs are (name, shape); weights {name: array}."""
    t = _ONNX_TYPE[np.dtype(dtype)]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, t, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, t, s) for n, s in outputs],
                          [numpy_helper.from_array(np.asarray(a), n) for n, a in weights.items()])
    return helper.make_model(g, ir_version=8, opset_imports=OPSETS[:1])


def mlp(K=128, hidden=256, N=64, dtype=np.float16, seed=0):
    """X [b, 4, K] -> MatMul W1 -> Add b1 -> Relu -> MatMul W2 -> Y [b, 4, N] (two quantizable MatMuls)."""
    r = rng("mlp", K, hidden, N, seed)
    w = {"W1": (r.standard_normal((K, hidden)) / np.sqrt(K)).astype(dtype),
         "b1": (0.1 * r.standard_normal(hidden)).astype(dtype),
         "W2": (r.standard_normal((hidden, N)) / np.sqrt(hidden)).astype(dtype)}
    nodes = [helper.make_node("MatMul", ["X", "W1"], ["h"], name="fc1"),
             helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
             helper.make_node("Relu", ["hb"], ["a"], name="act"),
             helper.make_node("MatMul", ["a", "W2"], ["Y"], name="fc2")]
    return float_graph(nodes, [("X", ["b", 4, K])], [("Y", ["b", 4, N])], w, dtype)


def qkv(K=128, nq=128, nkv=32, dtype=np.float16, seed=0):
    """X [b, 4, K] -> three MatMuls (q, k, v; GQA-sized) -> Q, K, V."""
    r = rng("qkv", K, nq, nkv, seed)
    w = {f"W{p}": (r.standard_normal((K, n)) / np.sqrt(K)).astype(dtype) for p, n in (("q", nq), ("k", nkv), ("v", nkv))}
    nodes = [helper.make_node("MatMul", ["X", f"W{p}"], [p.upper()], name=f"{p}_proj") for p in "qkv"]
    outs = [("Q", ["b", 4, nq]), ("K", ["b", 4, nkv]), ("V", ["b", 4, nkv])]
    return float_graph(nodes, [("X", ["b", 4, K])], outs, w, dtype)


def quantize(model, *, bits=4, block_size=32, symmetric=False, accuracy_level=None, exclude=None):
    """ORT's MatMulNBits quantizer (DefaultWeightOnlyQuantConfig) on a copy of `model`."""
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    cfg = mq.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric, bits=bits,
                                          accuracy_level=accuracy_level)
    q = mq.MatMulNBitsQuantizer(copy.deepcopy(model), bits=bits, block_size=block_size, is_symmetric=symmetric,
                                accuracy_level=accuracy_level, nodes_to_exclude=exclude or [], algo_config=cfg)
    q.process()
    return q.model.model


def node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def add_bias(model, node_name, seed=0):
    """Gives MatMulNBits `node_name` a bias input (random [N], the scales' type)."""
    n = node(model, node_name)
    N = helper.get_attribute_value(next(a for a in n.attribute if a.name == "N"))
    scales = next(i for i in model.graph.initializer if i.name == n.input[2])
    dtype = helper.tensor_dtype_to_np_dtype(scales.data_type)
    bias = numpy_helper.from_array((0.5 * rng("bias", node_name, seed).standard_normal(N)).astype(dtype),
                                   f"{node_name}_bias")
    model.graph.initializer.append(bias)
    while len(n.input) < 5:
        n.input.append("")
    n.input.append(bias.name)
    return model


def set_attr(model, node_name, **attrs):
    n = node(model, node_name)
    for k, v in attrs.items():
        for a in list(n.attribute):
            if a.name == k:
                n.attribute.remove(a)
        n.attribute.append(helper.make_attribute(k, v))
    return model


def ops(model) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def session(model):
    so = kaio_ort.register(ort.SessionOptions())
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run(model, feeds):
    return session(model).run(None, feeds)


def feeds_for(model, batch=2, seed=0):
    r = rng("feeds", seed)
    out = {}
    for i in model.graph.input:
        tt = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        out[i.name] = r.standard_normal(shape).astype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
    return out


def rel_err(y, ref) -> float:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


def assert_same_outputs(original, rewritten, tol=1e-2, feeds=None):
    """Both models on the CPU EP, same inputs: same output names, dtypes and shapes; rel err <= tol.
    Returns the errors."""
    feeds = feeds or feeds_for(original)
    s0, s1 = session(original), session(rewritten)
    assert [o.name for o in s0.get_outputs()] == [o.name for o in s1.get_outputs()]
    errs = []
    for a, b in zip(s0.run(None, feeds), s1.run(None, feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape
        errs.append(rel_err(b, a))
    assert max(errs) <= tol, errs
    return errs


def assert_graph_outputs_unchanged(original, rewritten):
    assert [(o.name, o.type) for o in original.graph.output] == [(o.name, o.type) for o in rewritten.graph.output]


def rewrite_checked(model, rules=None, **kw):
    """rewrite_model plus what every rewrite must keep: the result passes onnx.checker, the graph
    outputs keep their names, types and shapes, and rewriting it again changes nothing (identical
    bytes, nothing replaced). Returns (rewritten model, report)."""
    from kaio_ort.rewrites import rewrite_model

    out, report = rewrite_model(model, rules=rules, **kw)
    onnx.checker.check_model(out)
    assert_graph_outputs_unchanged(model, out)
    again, report2 = rewrite_model(out, rules=rules, **kw)
    assert again.SerializeToString() == out.SerializeToString()
    assert not any(report2.replaced.values()), report2.replaced
    return out, report
