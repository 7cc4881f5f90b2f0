"""Training with com.kaio ops: gradient definitions for ONNX Runtime training, training artifacts, and a
forward + backward graph for runtimes without a training build.

Two ways to train a model whose matmuls and attention are com.kaio ops:

1. **ONNX Runtime training** (``onnxruntime-training`` / ``onnxruntime-training-cpu`` 1.19.2, the last
   release; its ``onnxruntime.training`` needs torch importable). ``generate_artifacts`` wraps
   ``onnxruntime.training.artifacts.generate_artifacts``: it registers our gradient definitions with
   ORT's gradient builder, makes every AttentionFlash node emit its LSE output (the gradient op needs
   it), declares the element types of com.kaio outputs (ORT 1.19 does not infer types that follow an
   attribute), passes our library, and copies each forward node's attributes (``trans_b``, ``scale``,
   ``layout``) onto its gradient node. Train with the training API, our library registered in the
   session options::

       import onnxruntime as ort
       from onnxruntime.training import artifacts
       from onnxruntime.training.api import CheckpointState, Module, Optimizer
       import kaio_ort, kaio_ort.training

       kaio_ort.training.generate_artifacts(model, requires_grad=["wq", "wk", "wv", "wo"],
                                            loss=artifacts.LossType.MSELoss,
                                            optimizer=artifacts.OptimType.AdamW,
                                            artifact_directory="artifacts")
       state = CheckpointState.load_checkpoint("artifacts/checkpoint")
       so = kaio_ort.register(ort.SessionOptions())
       module = Module("artifacts/training_model.onnx", state, "artifacts/eval_model.onnx",
                       session_options=so)
       optimizer = Optimizer("artifacts/optimizer_model.onnx", module)
       module.train()
       for x, y in batches:
           loss = module(x, y)
           optimizer.step()
           module.lazy_reset_grad()

   Gradients: MatmulTc, MatmulTcBf16, MatmulTcAsync, MatmulTcBf16Async -> MatmulTcGrad(dY, A, B)
   (``trans_b`` from the forward node); AttentionFlash / AttentionFlashCausal -> AttentionFlashGrad(dO,
   Q, K, V, O, LSE) (``causal`` 0/1 by op, ``scale`` and ``layout`` from the forward node).
   AttentionTc / AttentionTcCausal have no LSE output: ``prepare_model`` replaces them by
   AttentionFlash / AttentionFlashCausal (the same contract, mask alignment included).
   Quantized ops (MatmulInt4, MatmulInt8, QkvProjectInt4, QkvProjectInt8) are inference ops: their
   weights are frozen and no gradient is registered for them. Where a gradient would have to flow
   through one (its activation depends on a trainable parameter), ``generate_artifacts`` raises
   ``ValueError`` naming the op and the node; elsewhere they are fine (e.g. a frozen quantized
   projection feeding nothing trainable upstream).

   Mixed precision: MatmulTc* take float16 (bfloat16 for the Bf16 ops) operands, so keep float32
   parameters and Cast them (and the activations) to float16 before the matmul, with ``out_dtype`` 1
   (float32 outputs); AttentionFlash takes float32. ORT differentiates the Casts (the gradient of a
   Cast to float16 is a Cast back to float32), so the float16 gradients of MatmulTcGrad reach the
   float32 parameters and the optimizer works in float32.

2. **A plain InferenceSession** (onnxruntime-gpu, which has no training build):
   ``build_training_graph(model, params, loss)`` differentiates the forward graph itself (reverse
   mode over a small op set, com.kaio gradient ops for com.kaio nodes) and returns one ONNX model
   that computes the loss and ``<param>_grad`` for every parameter, the parameters being graph
   inputs. Run it in any InferenceSession with ``kaio_ort.register`` (CPU or CUDA EP) and apply the
   update yourself (``adamw_step`` is a numpy AdamW matching ORT training's).
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import DOMAIN, library_path

__all__ = ["register_gradients", "generate_artifacts", "prepare_model", "add_lse_outputs",
           "declare_output_types", "check_differentiable", "build_training_graph", "adamw_step",
           "MATMUL_OPS", "ATTENTION_OPS", "QUANTIZED_OPS", "GRADIENT_OPS"]

MATMUL_OPS = ("MatmulTc", "MatmulTcBf16", "MatmulTcAsync", "MatmulTcBf16Async")
ATTENTION_OPS = {"AttentionFlash": 0, "AttentionFlashCausal": 1}          # op -> causal
_TC_TO_FLASH = {"AttentionTc": "AttentionFlash", "AttentionTcCausal": "AttentionFlashCausal"}
QUANTIZED_OPS = ("MatmulInt4", "MatmulInt8", "QkvProjectInt4", "QkvProjectInt8")
GRADIENT_OPS = {**{op: "MatmulTcGrad" for op in MATMUL_OPS}, **{op: "AttentionFlashGrad" for op in ATTENTION_OPS}}
# Forward attributes each gradient op takes over from its forward node (name -> (type, default)).
_PASSED_ATTRS = {
    "MatmulTcGrad": {"trans_b": ("int", 0)},
    "AttentionFlashGrad": {"scale": ("float", 0.0), "layout": ("string", "bhsd")},
}
_OUT_DTYPE_OPS = MATMUL_OPS + tuple(ATTENTION_OPS) + tuple(_TC_TO_FLASH) + ("MatmulInt4", "MatmulInt8")
_TRAINING_HINT = ("kaio_ort.training needs ONNX Runtime training: pip install onnxruntime-training-cpu==1.19.2 "
                  "'numpy<2' torch (CPU build; onnxruntime-training for CUDA), the last release of ORT training, "
                  "for Python <= 3.11; its onnxruntime.training imports torch. With onnxruntime-gpu alone use "
                  "kaio_ort.training.build_training_graph (a forward + backward graph for a plain InferenceSession)")


def _training_pybind():
    """onnxruntime.capi._pybind_state of a training build, or ImportError naming onnxruntime-training."""
    try:
        from onnxruntime.capi import _pybind_state as C
    except ImportError as e:  # pragma: no cover - onnxruntime missing altogether
        raise ImportError(_TRAINING_HINT) from e
    if not hasattr(C, "register_gradient_definition"):
        import onnxruntime
        raise ImportError(f"the installed ONNX Runtime ({onnxruntime.__version__}, {onnxruntime.__file__}) "
                          f"is not a training build. {_TRAINING_HINT}")
    return C


def _artifacts_module():
    C = _training_pybind()
    try:
        from onnxruntime.training import artifacts
    except ImportError as e:
        raise ImportError(f"onnxruntime.training does not import ({e}). {_TRAINING_HINT}") from e
    return C, artifacts


# ---------------------------------------------------------------------------------------------
# gradient definitions
# ---------------------------------------------------------------------------------------------

def _definition(C, grad_op: str, inputs, outputs, attrs: dict):
    node = C.GradientNodeDefinition()
    node.op_type, node.domain, node.inputs, node.outputs = grad_op, DOMAIN, list(inputs), list(outputs)
    defs = []
    for name, (dtype, value) in attrs.items():
        a = C.GradientNodeAttributeDefinition()
        a.name, a.value_json, a.dtype, a.is_tensor = name, json.dumps(value), dtype, False
        defs.append(a)
    node.attributes = defs
    return [node]


_registered: dict[str, tuple] = {}


def register_gradients(attributes: dict[str, dict] | None = None) -> list[str]:
    """Registers the gradient definitions of every differentiable com.kaio op with ORT training's
    gradient builder; returns the registry keys (``com.kaio::<Op>``).

    Idempotent (registering again replaces the definitions with identical ones). ORT's definitions
    carry fixed attribute values, so ``attributes`` ({forward op: {attr: value}}) chooses the values
    the gradient nodes are built with; ``generate_artifacts`` passes those of the model's first node of
    each op and afterwards copies every forward node's own attributes onto its gradient node.
    Raises ImportError naming onnxruntime-training when ONNX Runtime is not a training build.
    """
    C = _training_pybind()
    attributes = attributes or {}
    keys = []
    for op, grad_op in GRADIENT_OPS.items():
        given = attributes.get(op, {})
        attrs = {name: (t, type(default)(given.get(name, default))) for name, (t, default) in _PASSED_ATTRS[grad_op].items()}
        if grad_op == "MatmulTcGrad":
            inputs, outputs = ("GO(0)", "I(0)", "I(1)"), ("GI(0)", "GI(1)")
        else:
            attrs = {"causal": ("int", ATTENTION_OPS[op]), **attrs}
            inputs, outputs = ("GO(0)", "I(0)", "I(1)", "I(2)", "O(0)", "O(1)"), ("GI(0)", "GI(1)", "GI(2)")
        key = f"{DOMAIN}::{op}"
        signature = (grad_op, inputs, outputs, tuple(sorted(attrs.items())))
        if _registered.get(key) != signature:
            C.register_gradient_definition(key, _definition(C, grad_op, inputs, outputs, attrs))
            _registered[key] = signature
        keys.append(key)
    return keys


# ---------------------------------------------------------------------------------------------
# preparing a forward model
# ---------------------------------------------------------------------------------------------

def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _kaio_nodes(graph, ops=None):
    return [n for n in graph.node if n.domain == DOMAIN and (ops is None or n.op_type in ops)]


def _name_nodes(model: onnx.ModelProto) -> None:
    """Unique names for com.kaio nodes: ORT names gradient nodes '<forward name>_Grad/...'."""
    seen = {n.name for n in model.graph.node if n.domain != DOMAIN and n.name}
    for i, n in enumerate(model.graph.node):
        if n.domain == DOMAIN and (not n.name or n.name in seen):
            base = n.name or f"kaio_{n.op_type}"
            name, k = f"{base}_{i}", 0
            while name in seen:
                k += 1
                name = f"{base}_{i}_{k}"
            n.name = name
        if n.domain == DOMAIN:
            seen.add(n.name)


def add_lse_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Makes every AttentionFlash / AttentionFlashCausal node emit its LSE output (float32
    [..., Hq, Sq]), which AttentionFlashGrad reads; AttentionTc[Causal] nodes become
    AttentionFlash[Causal] first (same contract; only the Flash ops have LSE). In place; returns model."""
    _name_nodes(model)
    names = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    for n in model.graph.node:
        if n.domain != DOMAIN:
            continue
        if n.op_type in _TC_TO_FLASH:
            n.op_type = _TC_TO_FLASH[n.op_type]
        if n.op_type in ATTENTION_OPS and (len(n.output) < 2 or not n.output[1]):
            lse = f"{n.name}.lse"
            while lse in names:
                lse += "_"
            names.add(lse)
            if len(n.output) < 2:
                n.output.append(lse)
            else:
                n.output[1] = lse
            model.graph.value_info.append(helper.make_tensor_value_info(lse, TensorProto.FLOAT, None))
    return model


def declare_output_types(model: onnx.ModelProto) -> onnx.ModelProto:
    """Declares in value_info the element type of com.kaio outputs that follow ``out_dtype``
    (float32 unless the attribute says otherwise) and of LSE outputs. ORT 1.19's custom-op type
    inference leaves such outputs untyped once they are no longer graph outputs (the loss block
    makes them intermediates). In place; returns model."""
    declared = {v.name for v in model.graph.value_info}  # graph outputs too: a loss block makes them intermediates
    for n in _kaio_nodes(model.graph, _OUT_DTYPE_OPS):
        elem = int(_attr(n, "out_dtype", TensorProto.FLOAT))
        outs = [(n.output[0], elem)] if n.output else []
        if n.op_type in ATTENTION_OPS and len(n.output) > 1 and n.output[1]:
            outs.append((n.output[1], TensorProto.FLOAT))
        for name, t in outs:
            if name and name not in declared:
                model.graph.value_info.append(helper.make_tensor_value_info(name, t, None))
                declared.add(name)
    return model


def _trainable_dependents(graph, trainable: set[str]) -> set[str]:
    """Every tensor that depends on a trainable parameter (graph order is topological in ONNX)."""
    live = set(trainable)
    for n in graph.node:
        if any(i in live for i in n.input if i):
            live.update(o for o in n.output if o)
    return live


def check_differentiable(model: onnx.ModelProto, requires_grad: Iterable[str]) -> None:
    """Raises ValueError naming the op and the node when a gradient would have to flow through a
    com.kaio op that has none (the quantized inference ops)."""
    live = _trainable_dependents(model.graph, set(requires_grad))
    for n in model.graph.node:
        if n.domain != DOMAIN or n.op_type in GRADIENT_OPS or n.op_type.endswith("Grad"):
            continue
        needing = [i for i in n.input if i and i in live]
        if needing:
            kind = ("a quantized inference op (frozen weights, no gradient registered)"
                    if n.op_type in QUANTIZED_OPS else "an op without a registered gradient")
            raise ValueError(
                f"[com.kaio.{n.op_type}] node '{n.name}': the gradient would have to flow through input(s) "
                f"{needing}, which depend on trainable parameters, but {n.op_type} is {kind}. Train only "
                f"parameters upstream of no such node, or replace it by MatmulTc (dequantised weights) for training")


def prepare_model(model: onnx.ModelProto, requires_grad: Iterable[str] = ()) -> onnx.ModelProto:
    """A copy of ``model`` ready for ORT's gradient builder: com.kaio nodes named, LSE outputs added,
    com.kaio output types declared, and differentiability checked."""
    model = copy.deepcopy(model)
    add_lse_outputs(model)
    declare_output_types(model)
    check_differentiable(model, requires_grad)
    return model


def _first_attributes(model: onnx.ModelProto) -> dict[str, dict]:
    out = {}
    for n in _kaio_nodes(model.graph, GRADIENT_OPS):
        if n.op_type not in out:
            out[n.op_type] = {k: _attr(n, k, d) for k, (_, d) in _PASSED_ATTRS[GRADIENT_OPS[n.op_type]].items()}
    return out


def _fix_gradient_attributes(training_model: onnx.ModelProto, forward: onnx.ModelProto) -> int:
    """Copies each forward node's attributes onto its gradient node (matched by ORT's node name
    '<forward>_Grad/...', else by the inputs the gradient node reads); returns how many were set."""
    by_name = {n.name: n for n in _kaio_nodes(forward.graph, GRADIENT_OPS)}
    fixed = 0
    for g in _kaio_nodes(training_model.graph, _PASSED_ATTRS):
        fwd = by_name.get(g.name.split("_Grad/")[0]) if "_Grad/" in g.name else None
        if fwd is None or GRADIENT_OPS[fwd.op_type] != g.op_type:
            for n in by_name.values():
                if GRADIENT_OPS[n.op_type] != g.op_type:
                    continue
                if (g.op_type == "MatmulTcGrad" and list(g.input[1:3]) == list(n.input[:2])) or \
                   (g.op_type == "AttentionFlashGrad" and len(n.output) > 1 and g.input[5] == n.output[1]):
                    fwd = n
                    break
        if fwd is None:
            raise RuntimeError(f"kaio_ort.training: cannot find the forward node of gradient node '{g.name}'")
        keep = [a for a in g.attribute if a.name not in _PASSED_ATTRS[g.op_type]]
        del g.attribute[:]
        g.attribute.extend(keep)
        for k, (_, d) in _PASSED_ATTRS[g.op_type].items():
            g.attribute.append(helper.make_attribute(k, _attr(fwd, k, d)))
        if g.op_type == "AttentionFlashGrad":
            for a in g.attribute:
                if a.name == "causal":
                    a.i = ATTENTION_OPS[fwd.op_type]
        fixed += 1
    return fixed


def _declare_gradient_types(model: onnx.ModelProto) -> None:
    """Each com.kaio gradient output gets the type (element type and shape) of the forward input it
    is the gradient of, replacing what ORT inferred with the placeholder attributes; ORT 1.19 infers
    no element type for these outputs itself."""
    g = model.graph
    types = {v.name: v.type for v in list(g.input) + list(g.value_info) + list(g.output)}
    for t in g.initializer:
        types.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    grads = {}
    for n in _kaio_nodes(g, _PASSED_ATTRS):
        # ORT leaves out the gradients nobody needs (""); the kernels produce every output, so name
        # the unused ones (computed, then dropped).
        n_outputs = 2 if n.op_type == "MatmulTcGrad" else 3
        while len(n.output) < n_outputs:
            n.output.append("")
        for j in range(n_outputs):
            if not n.output[j]:
                n.output[j] = f"{n.name}/unused_{j}"
        for j, out in enumerate(n.output):
            if out and n.input[1 + j] in types:
                grads[out] = types[n.input[1 + j]]
    keep = [v for v in g.value_info if v.name not in grads]
    del g.value_info[:]
    g.value_info.extend(keep)
    outputs = {o.name for o in g.output}
    for name, t in grads.items():
        if name not in outputs:
            v = onnx.ValueInfoProto(name=name)
            v.type.CopyFrom(t)
            g.value_info.append(v)


def generate_artifacts(model, requires_grad: Sequence[str] | None = None, frozen_params: Sequence[str] | None = None,
                       loss=None, optimizer=None, artifact_directory=None, **kwargs) -> onnx.ModelProto:
    """``onnxruntime.training.artifacts.generate_artifacts`` for models with com.kaio ops.

    Same arguments (``model`` a ModelProto or a path; ``prefix``, ``ort_format`` (converted after patching),
    ``additional_output_names``, ``nominal_checkpoint``, ``loss_input_names`` pass through), plus:
    registers our gradients, prepares the model (``prepare_model``: LSE outputs, output types,
    differentiability check naming any quantized node in the way), passes
    ``custom_op_library=kaio_ort.library_path()`` unless given, and rewrites the saved training model
    so that each gradient node has its forward node's attributes. Returns the prepared forward model.
    """
    C, artifacts = _artifacts_module()
    import onnxruntime

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    prepared = prepare_model(model, requires_grad or ())
    first = _first_attributes(prepared)
    ort_format = kwargs.pop("ort_format", False)
    register_gradients(first)
    kwargs.setdefault("custom_op_library", library_path())
    artifact_directory = os.fspath(artifact_directory or os.getcwd())
    onnxruntime.set_default_logger_severity(3)  # the gradient builder logs every transformer at INFO
    artifacts.generate_artifacts(prepared, requires_grad=list(requires_grad) if requires_grad is not None else None,
                                 frozen_params=list(frozen_params) if frozen_params is not None else None,
                                 loss=loss, optimizer=optimizer, artifact_directory=artifact_directory, **kwargs)
    prefix = kwargs.get("prefix", "")
    path = os.path.join(artifact_directory, f"{prefix}training_model.onnx")
    training_model = onnx.load(path)
    if _fix_gradient_attributes(training_model, prepared):
        _declare_gradient_types(training_model)
        onnx.save(training_model, path)
    if ort_format:  # converted here, after the training model is patched (ORT's own conversion comes too early)
        from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

        from pathlib import Path
        for kind in ("training", "eval", "optimizer"):
            f = Path(artifact_directory) / f"{prefix}{kind}_model.onnx"
            if f.exists():
                convert_onnx_models_to_ort(f, output_dir=Path(artifact_directory),
                                           custom_op_library_path=Path(kwargs["custom_op_library"]),
                                           optimization_styles=[OptimizationStyle.Fixed])
    return prepared


# ---------------------------------------------------------------------------------------------
# forward + backward graph for a plain InferenceSession (no training build)
# ---------------------------------------------------------------------------------------------

def _kaio_output_shapes(n, shapes: dict) -> dict:
    """Static output shapes of a com.kaio forward node from its input shapes (None if unknown)."""
    ins = [shapes.get(i) for i in n.input]
    if any(s is None for s in ins[:3 if n.op_type in ATTENTION_OPS else 2]):
        return {}
    if n.op_type in MATMUL_OPS:
        a, b = ins[0], ins[1]
        if _attr(n, "trans_b", 0):
            b = b[:-2] + [b[-1], b[-2]]
        batch = list(np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))
        return {n.output[0]: batch + [a[-2], b[-1]]}
    if n.op_type in ATTENTION_OPS:
        q, v = ins[0], ins[2]
        out = {n.output[0]: q[:-1] + [v[-1]]}
        if len(n.output) > 1 and n.output[1]:
            out[n.output[1]] = ([q[0], q[2], q[1]] if _attr(n, "layout", "bhsd") in ("bshd", b"bshd") else q[:-1])
        return out
    return {}


def _static_types(model: onnx.ModelProto) -> tuple[dict, dict]:
    """(element types, static shapes) of every tensor: ONNX shape inference for standard ops, the
    com.kaio shape rules for MatmulTc* and AttentionFlash*, repeated until nothing changes."""
    m = copy.deepcopy(model)
    for _ in range(len(_kaio_nodes(m.graph)) + 1):
        m = onnx.shape_inference.infer_shapes(m)
        g = m.graph
        elem, shapes = {}, {}
        for v in list(g.input) + list(g.value_info) + list(g.output):
            tt = v.type.tensor_type
            if tt.elem_type:
                elem[v.name] = tt.elem_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                shapes[v.name] = [d.dim_value for d in tt.shape.dim]
        for t in g.initializer:
            elem[t.name], shapes[t.name] = t.data_type, list(t.dims)
        added = False
        for n in _kaio_nodes(g):
            for name, shape in _kaio_output_shapes(n, shapes).items():
                if name not in shapes:
                    t = TensorProto.FLOAT if n.op_type in ATTENTION_OPS and name == n.output[-1] and len(n.output) > 1 \
                        else int(_attr(n, "out_dtype", TensorProto.FLOAT))
                    g.value_info.append(helper.make_tensor_value_info(name, elem.get(name, t), shape))
                    added = True
        if not added:
            return elem, shapes
    return elem, shapes


class _Backward:
    def __init__(self, model, elem, shapes):
        self.elem, self.shapes, self.nodes, self.inits = elem, shapes, [], []
        self.grads: dict[str, list[str]] = {}
        self.k = 0

    def name(self, hint):
        self.k += 1
        return f"grad/{hint}_{self.k}"

    def node(self, op, ins, outs=None, domain="", **attrs):
        outs = outs or [self.name(op)]
        self.nodes.append(helper.make_node(op, ins, outs, domain=domain, name=self.name(op + "_node"), **attrs))
        return outs[0] if len(outs) == 1 else outs

    def const(self, value, hint="c"):
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, tensor, g):
        self.grads.setdefault(tensor, []).append(g)

    def grad(self, tensor):
        gs = self.grads.get(tensor)
        if not gs:
            return None
        if len(gs) > 1:
            self.grads[tensor] = gs = [self.node("Sum", gs)]
        return gs[0]

    def sum_to(self, g, x, y):
        """g (shaped like the broadcast result y) summed back to x's shape."""
        sx, sy = self.shapes.get(x), self.shapes.get(y)
        if sx is None or sy is None:
            raise ValueError(f"build_training_graph: needs the static shapes of '{x}' and '{y}' (broadcast gradient)")
        if sx == sy:
            return g
        lead = len(sy) - len(sx)
        axes = list(range(lead)) + [lead + i for i, d in enumerate(sx) if d == 1 and sy[lead + i] != 1]
        r = self.node("ReduceSum", [g, self.const(np.array(axes, np.int64), "axes")], keepdims=1)
        return self.node("Reshape", [r, self.const(np.array(sx, np.int64), "shape")])


_LINEAR = ("Identity", "Add", "Sub", "Neg", "Mul", "Div", "Reshape", "Transpose", "Relu", "Cast",
           "ReduceMean", "ReduceSum", "Pow", "Squeeze", "Unsqueeze", "Flatten")


def build_training_graph(model: onnx.ModelProto, params: Sequence[str], loss: str | None = None) -> onnx.ModelProto:
    """One ONNX model computing the loss and its gradients, for a plain InferenceSession (no training build).

    ``model``: a forward graph whose output ``loss`` (default: the first output) is a scalar
    float32 loss, built with standard ops (e.g. Sub, Mul, ReduceMean). ``params``: initializers (or
    graph inputs) to differentiate; they become graph inputs of the result. Outputs: ``loss``, then
    ``<param>_grad`` for each param in order. com.kaio nodes are differentiated with com.kaio
    gradient ops (MatmulTcGrad, AttentionFlashGrad, the forward's LSE added); other supported ops:
    Identity, Add, Sub, Neg, Mul, Div (by a constant-free tensor), Reshape, Squeeze, Unsqueeze,
    Flatten, Transpose, Relu, Cast, ReduceMean / ReduceSum (axes given or all), Pow (constant
    exponent). Broadcasting needs static shapes. Run it with ``kaio_ort.register(SessionOptions())``
    on the CPU or CUDA EP and update the parameters yourself (``adamw_step``).
    """
    model = copy.deepcopy(model)
    add_lse_outputs(model)
    declare_output_types(model)
    g = model.graph
    loss = loss or g.output[0].name
    params = list(params)
    init = {t.name: t for t in g.initializer}
    graph_inputs = {i.name for i in g.input}
    for p in params:
        if p not in init and p not in graph_inputs:
            raise ValueError(f"build_training_graph: parameter '{p}' is neither an initializer nor a graph input")
    elem, shapes = _static_types(model)
    live = _trainable_dependents(g, set(params))
    check_differentiable(model, params)
    bw = _Backward(model, elem, shapes)
    bw.add(loss, bw.const(np.array(1.0, np.float32).reshape(shapes.get(loss, [])), "dloss"))
    constants = {k: numpy_helper.to_array(v) for k, v in init.items() if k not in params}
    for n in reversed(list(g.node)):
        needs = [i for i in n.input if i and i in live]
        if not needs or not any(o in bw.grads for o in n.output):
            continue
        gy = bw.grad(n.output[0])
        op = n.op_type
        if n.domain == DOMAIN and op in MATMUL_OPS:
            if gy is None:
                continue
            outs = [bw.name("dA"), bw.name("dB")]
            bw.node("MatmulTcGrad", [gy, n.input[0], n.input[1]], outs, domain=DOMAIN, trans_b=int(_attr(n, "trans_b", 0)))
            for i, o in zip(n.input[:2], outs):
                bw.add(i, o)
            continue
        if n.domain == DOMAIN and op in ATTENTION_OPS:
            if gy is None:
                continue
            outs = [bw.name(x) for x in ("dQ", "dK", "dV")]
            layout = _attr(n, "layout", "bhsd")
            bw.node("AttentionFlashGrad", [gy, *n.input[:3], n.output[0], n.output[1]], outs, domain=DOMAIN,
                    causal=ATTENTION_OPS[op], scale=float(_attr(n, "scale", 0.0)),
                    layout=layout.decode() if isinstance(layout, bytes) else layout)
            for i, o in zip(n.input[:3], outs):
                bw.add(i, o)
            continue
        if n.domain not in ("", "ai.onnx") or op not in _LINEAR:
            raise ValueError(f"build_training_graph: no gradient for {n.domain or 'ai.onnx'}.{op} (node '{n.name}'), "
                             f"which lies between the parameters and the loss")
        x = n.input[0]
        if op in ("Identity",):
            bw.add(x, gy)
        elif op in ("Add", "Sub"):
            a, b = n.input[:2]
            if a in live:
                bw.add(a, bw.sum_to(gy, a, n.output[0]))
            if b in live:
                gb = bw.sum_to(gy, b, n.output[0])
                bw.add(b, bw.node("Neg", [gb]) if op == "Sub" else gb)
        elif op == "Neg":
            bw.add(x, bw.node("Neg", [gy]))
        elif op == "Mul":
            a, b = n.input[:2]
            if a in live:
                bw.add(a, bw.sum_to(bw.node("Mul", [gy, b]), a, n.output[0]))
            if b in live:
                bw.add(b, bw.sum_to(bw.node("Mul", [gy, a]), b, n.output[0]))
        elif op == "Div":
            a, b = n.input[:2]
            if b in live:
                raise ValueError(f"build_training_graph: Div node '{n.name}': gradient through the divisor is not supported")
            bw.add(a, bw.sum_to(bw.node("Div", [gy, b]), a, n.output[0]))
        elif op in ("Reshape", "Squeeze", "Unsqueeze", "Flatten"):
            bw.add(x, bw.node("Reshape", [gy, bw.node("Shape", [x])]))
        elif op == "Transpose":
            perm = _attr(n, "perm") or list(reversed(range(len(shapes[x]))))
            bw.add(x, bw.node("Transpose", [gy], perm=list(np.argsort(perm))))
        elif op == "Relu":
            mask = bw.node("Cast", [bw.node("Greater", [x, bw.const(np.zeros((), np.float32)
                                                                     .astype(onnx.helper.tensor_dtype_to_np_dtype(elem[x])))])],
                           to=elem[x])
            bw.add(x, bw.node("Mul", [gy, mask]))
        elif op == "Cast":
            bw.add(x, bw.node("Cast", [gy], to=elem[x]))
        elif op in ("ReduceMean", "ReduceSum"):
            sx = shapes.get(x)
            if sx is None:
                raise ValueError(f"build_training_graph: {op} node '{n.name}' needs the static shape of '{x}'")
            axes = _attr(n, "axes")
            if axes is None and len(n.input) > 1 and n.input[1]:
                axes = constants[n.input[1]].tolist()
            axes = list(range(len(sx))) if not axes else [a % len(sx) for a in axes]
            kept = [1 if i in axes else d for i, d in enumerate(sx)]
            gk = bw.node("Reshape", [gy, bw.const(np.array(kept, np.int64), "shape")])
            if op == "ReduceMean":
                count = int(np.prod([sx[a] for a in axes]))
                gk = bw.node("Mul", [gk, bw.const(np.array(1.0 / count, np.float32), "inv_count")])
            bw.add(x, bw.node("Expand", [gk, bw.const(np.array(sx, np.int64), "shape")]))
        elif op == "Pow":
            e = n.input[1]
            if e not in constants:
                raise ValueError(f"build_training_graph: Pow node '{n.name}' needs a constant exponent")
            ev = float(constants[e])
            d = bw.node("Mul", [bw.node("Pow", [x, bw.const(np.array(ev - 1, np.float32), "exp")]),
                               bw.const(np.array(ev, np.float32), "exp")])
            bw.add(x, bw.node("Mul", [gy, d]))
    outputs = [helper.make_tensor_value_info(loss, TensorProto.FLOAT, shapes.get(loss))]
    for p in params:
        gp = bw.grad(p)
        if gp is None:
            raise ValueError(f"build_training_graph: the loss does not depend on parameter '{p}'")
        bw.node("Identity", [gp], [f"{p}_grad"])
        outputs.append(helper.make_tensor_value_info(f"{p}_grad", elem.get(p, TensorProto.FLOAT), shapes.get(p)))
    keep_inits = [t for t in g.initializer if t.name not in params]
    new_inputs = list(g.input) + [helper.make_tensor_value_info(p, init[p].data_type, list(init[p].dims))
                                  for p in params if p in init]
    # Every gradient-op output gets its forward input's type (ORT 1.19 infers none for them).
    value_info = list(g.value_info)
    declared = {v.name for v in value_info}
    for nd in bw.nodes:
        if nd.domain == DOMAIN:
            for out, fwd in zip(nd.output, nd.input[1:]):
                if out not in declared and fwd in elem:
                    value_info.append(helper.make_tensor_value_info(out, elem[fwd], shapes.get(fwd)))
    graph = helper.make_graph(list(g.node) + bw.nodes, g.name + "_training", new_inputs, outputs,
                              keep_inits + bw.inits, value_info=value_info)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return out


def adamw_step(params: dict, grads: dict, state: dict, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 1e-2) -> None:
    """One AdamW step (decoupled weight decay, bias correction; ORT training's AdamW defaults) on
    numpy arrays, in place. ``state`` starts as {} and carries the moments between steps."""
    state["step"] = t = state.get("step", 0) + 1
    for k, gk in grads.items():
        m = state.setdefault(("m", k), np.zeros_like(params[k]))
        v = state.setdefault(("v", k), np.zeros_like(params[k]))
        m *= betas[0]
        m += (1 - betas[0]) * gk
        v *= betas[1]
        v += (1 - betas[1]) * gk * gk
        params[k] *= 1 - lr * weight_decay
        params[k] -= lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
