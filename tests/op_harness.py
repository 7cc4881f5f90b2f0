"""Builds one-node com.kaio graphs and runs them in ONNX Runtime; the one place tests touch ORT.

Inputs are numpy arrays; ``ml_dtypes.bfloat16`` arrays (which ORT's Python API cannot take) are fed
as float32 and cast to bfloat16 inside the graph, and bfloat16 outputs are cast back to float32
(both casts are exact). Expected output element types are declared on the graph outputs, so ORT
itself checks the op's type inference: a mismatch fails session creation.
"""
from __future__ import annotations

import itertools
import os
import re

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import kaio_ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
CUDA_OR_CPU = "CUDA, else CPU"  # session(): the CUDA EP first, the CPU EP for nodes it does not take
# The validation tables run on both: on the CPU EP in CI, and on the GPU machine in a session that
# places every node the CUDA kernels take on the CUDA EP (the error must come from there, just as clear).
VALIDATION_PROVIDERS = [pytest.param(CPU, id="cpu"), pytest.param(CUDA_OR_CPU, id="cuda", marks=pytest.mark.gpu)]
BF16 = ml_dtypes.bfloat16
NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(BF16): TensorProto.BFLOAT16, np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.uint32): TensorProto.UINT32,
    np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.float64): TensorProto.DOUBLE,
}
_counter = itertools.count()
# (major, minor) of the runtime: tests run in onnxruntime-gpu 1.31 and onnxruntime-training 1.19.
ORT_VERSION = tuple(int(x) for x in ort.__version__.split(".")[:2])


def build_model(op: str, inputs: list, attrs: dict | None = None, out_types: list | None = None,
                out_names: list | None = None, input_shapes: list | None = None,
                opset: int = 17, bf16_io: bool = False) -> onnx.ModelProto:
    """A model with one com.kaio `op` node. `inputs`: arrays, or None for an absent optional input
    (omitted when trailing, "" otherwise). `out_types`: numpy dtypes of the outputs (None: the
    output is not requested, ""). `input_shapes` overrides the declared input shapes (None entries:
    unknown rank). bfloat16 inputs and outputs are float32 graph I/O cast inside the graph, unless
    bf16_io (IOBinding with device buffers: gpu_harness.BoundRun)."""
    attrs = attrs or {}
    out_types = out_types or [np.float32]
    nodes, graph_inputs, names = [], [], []
    last = max((i for i, x in enumerate(inputs) if x is not None), default=-1)
    for i, x in enumerate(inputs[: last + 1]):
        if x is None:
            names.append("")
            continue
        name = f"in{i}"
        dt = np.dtype(x.dtype)
        shape = list(x.shape) if input_shapes is None else input_shapes[i]
        if dt == np.dtype(BF16) and not bf16_io:
            graph_inputs.append(helper.make_tensor_value_info(name + "_f32", TensorProto.FLOAT, shape))
            nodes.append(helper.make_node("Cast", [name + "_f32"], [name], to=TensorProto.BFLOAT16))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, NP_TO_ONNX[dt], shape))
        names.append(name)
    outs, graph_outputs, value_info = [], [], []
    for j, t in enumerate(out_types):
        if t is None:
            outs.append("")
            continue
        name = (out_names[j] if out_names else f"out{j}")
        outs.append(name)
        dt = np.dtype(t)
        if dt == np.dtype(BF16) and not bf16_io:
            nodes_after = helper.make_node("Cast", [name], [name + "_f32"], to=TensorProto.FLOAT)
            graph_outputs.append(helper.make_tensor_value_info(name + "_f32", TensorProto.FLOAT, None))
            # The op's output is now an intermediate: declare its type there too. ORT 1.19's
            # custom-op shape inference sets shapes only, so a runtime that old takes an
            # attribute-typed output's element type from the model; newer runtimes check it.
            value_info.append(helper.make_tensor_value_info(name, TensorProto.BFLOAT16, None))
            nodes.append(nodes_after)
        else:
            graph_outputs.append(helper.make_tensor_value_info(name, NP_TO_ONNX[dt], None))
    while outs and outs[-1] == "":
        outs.pop()
    node = helper.make_node(op, names, outs, domain=kaio_ort.DOMAIN, name=f"{op}_{next(_counter)}", **attrs)
    casts_after = 0 if bf16_io else sum(1 for t in out_types if t is not None and np.dtype(t) == np.dtype(BF16))
    nodes.insert(len(nodes) - casts_after, node)
    graph = helper.make_graph(nodes, f"{op}_test", graph_inputs, graph_outputs, value_info=value_info)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                   helper.make_opsetid(kaio_ort.DOMAIN, kaio_ort.OPSET_VERSION)],
                             ir_version=8)


def session_options() -> ort.SessionOptions:
    """The tests' session options: the library registered; KAIO_TEST_ORT_THREADS caps ORT's intra-op
    threads (each session spins a pool of one thread per core by default, which many test processes
    side by side, as bench/device/sanitize.sh runs them, cannot afford)."""
    so = kaio_ort.register(ort.SessionOptions())
    so.log_severity_level = 3
    if threads := os.environ.get("KAIO_TEST_ORT_THREADS"):
        so.intra_op_num_threads = int(threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def session(model: onnx.ModelProto, provider: str = CPU) -> ort.InferenceSession:
    so = session_options()
    if provider == CUDA_OR_CPU:  # what a user's session does: CUDA where our kernel takes the node
        providers = [CUDA, CPU]
    else:
        providers = [provider]
        if provider != CPU:
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # every node on the GPU
    return ort.InferenceSession(model.SerializeToString(), so, providers=providers)


def feeds(sess: ort.InferenceSession, inputs: list) -> dict:
    present = [x for x in inputs if x is not None]
    return {gi.name: (x.astype(np.float32) if np.dtype(x.dtype) == np.dtype(BF16) else x)
            for gi, x in zip(sess.get_inputs(), present)}


def run_op(op: str, inputs: list, attrs: dict | None = None, out_types: list | None = None,
           provider: str = CPU, **kw) -> list:
    """Runs a one-node graph; returns the requested outputs (bfloat16 ones as float32)."""
    sess = session(build_model(op, inputs, attrs, out_types, **kw), provider)
    return sess.run(None, feeds(sess, inputs))


def rel_err(out, ref) -> float:
    """||out - ref|| / ||ref|| in float64; NaN or inf anywhere gives inf (never passes)."""
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    assert out.shape == ref.shape, f"shape {out.shape} != reference {ref.shape}"
    if not np.all(np.isfinite(out)):
        return float("inf")
    denom = np.linalg.norm(ref)
    return float(np.linalg.norm(out - ref) / (denom if denom > 0 else 1.0))


def assert_close(out, ref, tol: float, what: str = ""):
    """rel_err(out, ref) <= tol, plus for float16 outputs the error the format itself puts on the
    exact result (rel_err of ref rounded to float16): values near float16's subnormal range (below
    6.1e-5) keep only a few bits, so a gradient of tiny values rounded once exactly can miss a
    relative 1e-3 (seen: AttentionFlashGrad dK at 1.2e-3, equal to the rounding of the float64
    reference itself). Elsewhere that term is ~3e-4 or less and tol stays the test's own bound."""
    err = rel_err(out, ref)
    floor = rel_err(np.asarray(ref).astype(np.float16), ref) if np.asarray(out).dtype == np.float16 else 0.0
    assert err <= tol + floor, f"{what} relative error {err:.3e} > {tol:.1e} + float16 rounding {floor:.1e}"


def rng(seed=None) -> np.random.Generator:
    """Fresh random inputs on every run unless a seed is given (the seed is printed on failure
    through pytest's repr of the test id when tests pass one)."""
    return np.random.default_rng(seed)


def randn(g: np.random.Generator, shape, dtype, scale: float = 1.0) -> np.ndarray:
    return (g.standard_normal(shape) * scale).astype(np.float32).astype(dtype)


def input_rule(op: str, name: str, index: int, rule: str, regex: bool = False) -> str:
    """Regex of the error one input rule gives: `[com.kaio.<op>] node '<n>': input '<name>' (#i): <rule>`
    (`rule` is literal text unless `regex`). A rule on which element types an input accepts
    ("element type must be <types>, got <type>") is reported by ORT's own schema check instead: the
    library registers one variant per accepted input-type combination (common/custom_op.cc,
    AddOpsToDomain), and ORT's message names the op, the node and the input."""
    if re.match(r"element type must be \w+(, \w+)*, got \w+$", rule):
        return rf"Type 'tensor\(\w+\)' of input parameter \(in{index}\) of operator \({op}\) in node"
    return rf"\[com\.kaio\.{op}\].*: input '{re.escape(name)}' \(#{index}\): {rule if regex else re.escape(rule)}"


def error_pattern(op: str, name: str | None, index: int | None, rule: str) -> str:
    """A validation-table row's expected error: an input rule (`name`, `index`), an attribute rule
    (`rule` starts with "attribute '<name>'"), or else `rule` is a regex of ORT's own message."""
    if name is not None:
        return input_rule(op, name, index, rule)
    if rule.startswith("attribute"):
        return rf"\[com\.kaio\.{op}\].*: {re.escape(rule)}"
    return rule
