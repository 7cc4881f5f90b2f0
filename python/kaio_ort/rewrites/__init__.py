"""Graph rewrites that put com.kaio ops into ONNX models (``kaio-ort rewrite``).

    model, report = kaio_ort.rewrites.rewrite_model("model.onnx")
    kaio_ort.rewrites.save_model(model, "model.kaio.onnx")
    print(report)                      # per rule: replaced count, every node left alone and why

Rule families, run in this order (one module each):
    matmulnbits   com.microsoft MatMulNBits bits 4 / 8 -> com.kaio MatmulInt4 / MatmulInt8 (W8A16)
    qkv           three MatmulInt4 / MatmulInt8 reading one input -> QkvProjectInt4 / QkvProjectInt8
    attention     com.microsoft Attention (packed QKV weights) / MultiHeadAttention / GroupQueryAttention, ONNX
                  Attention-23, and the decomposed MatMul -> Softmax -> MatMul pattern -> AttentionFlash[Causal]
    dense         (opt-in, not in DEFAULT_RULES) float16 / bfloat16 MatMul with constant weights ->
                  MatmulTcAsync / MatmulTcBf16Async (cuBLAS is already good there)
A rule that cannot apply leaves the nodes as they were and records why. Rewriting a rewritten model
changes nothing. Graph outputs keep their names, element types and shapes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import onnx
import onnx_ir as ir

from . import attention, dense, matmulnbits, qkv
from ._common import Context, LeftAlone, Options, RewriteReport, RuleReport
from .verify import compare_models

__all__ = ["rewrite_model", "save_model", "compare_models", "RULES", "DEFAULT_RULES", "RewriteReport", "RuleReport", "LeftAlone",
           "has_external_data"]

RULES = {matmulnbits.RULE: matmulnbits.apply, qkv.RULE: qkv.apply, attention.RULE: attention.apply,
         dense.RULE: dense.apply}   # in the order they run (dense last: it also maps the MatMul attention adds)
DEFAULT_RULES = (matmulnbits.RULE, qkv.RULE, attention.RULE)      # dense is opt-in
_TWO_GB = 2 ** 31


def _as_ir(model_or_path) -> tuple:
    if isinstance(model_or_path, ir.Model):
        return _check_external_paths(model_or_path), "ir"
    if isinstance(model_or_path, onnx.ModelProto):
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model_or_path.graph.initializer):
            raise ValueError("the ModelProto holds external data references (loaded with load_external_data="
                             "False?): there is no model folder to read them from safely; pass the model's path, "
                             "or load it with its data")
        try:
            return ir.serde.deserialize_model(model_or_path), "proto"
        except ir.serde.SerdeError as e:  # e.g. two nodes writing one value
            raise ValueError(f"the model is not a valid graph: {e.__cause__ or e}") from e
    if isinstance(model_or_path, (str, os.PathLike)):
        try:
            model = ir.load(os.fspath(model_or_path))
        except ir.serde.SerdeError as e:
            raise ValueError(f"the model is not a valid graph: {e.__cause__ or e}") from e
        return _check_external_paths(model), "path"
    raise TypeError(f"rewrite_model takes an onnx.ModelProto, an onnx_ir.Model or a path, got {type(model_or_path)}")


def _check_external_paths(model: ir.Model) -> ir.Model:
    """Refuses external data outside the model's folder (an absolute location, "..", or a symlink
    leading out), before any weight is read: a rewrite reads only files beside the model."""
    for name, value in model.graph.initializers.items():
        t = value.const_value
        if not isinstance(t, ir.ExternalTensor):
            continue
        base = os.path.realpath(t.base_dir or os.curdir)
        target = os.path.realpath(os.path.join(base, os.fspath(t.location)))
        if os.path.isabs(os.fspath(t.location)) or os.path.commonpath([base, target]) != base:
            raise ValueError(f"initializer '{name}': external data location '{t.location}' lies outside the "
                             f"model's folder '{base}' (absolute, '..' or a symlink leading out): refused")
    return model


def rewrite_model(model_or_path: Union[onnx.ModelProto, ir.Model, str, os.PathLike],
                  rules: Optional[Iterable[str]] = None, *, cast_float32: bool = False,
                  progress: Optional[Callable[[str, int, int], None]] = None):
    """Rewrites a model to use com.kaio ops; returns (model, report).

    model_or_path: an onnx.ModelProto (not modified; a new ModelProto is returned), an
        onnx_ir.Model (rewritten in place and returned), or a path (loaded with onnx_ir, external
        data read lazily; an onnx_ir.Model is returned -- save it with ``save_model``).
    rules: names from RULES (default: DEFAULT_RULES, every family but the opt-in "dense"); they always
        run in RULES' order.
    cast_float32: float32 MatMulNBits get a Cast of A to float16 and float16 scales (approximate)
        instead of being left alone.
    progress: called as progress(rule, done, total) while a rule works through its candidates.
    report: a RewriteReport -- ``report.replaced`` {rule: count}, ``report.left_alone`` [LeftAlone
        (rule, nodes, op_type, reason)], ``report.as_dict()`` for JSON.
    """
    names = list(DEFAULT_RULES) if rules is None else list(rules)
    unknown = [r for r in names if r not in RULES]
    if unknown:
        raise ValueError(f"unknown rules {unknown}; the rules are {list(RULES)}")
    model, kind = _as_ir(model_or_path)
    ctx = Context(model, Options(cast_float32=cast_float32, progress=progress))
    report = RewriteReport()
    dead_before = {id(n) for n in _dead_nodes(model.graph)}
    for name, apply in RULES.items():
        if name in names:
            report.rules[name] = RuleReport(name)
            apply(ctx, report.rules[name])
    _remove_dead_nodes(ctx, dead_before)
    ctx.remove_unused_initializers()
    return (ir.serde.serialize_model(model) if kind == "proto" else model), report


def _dead_nodes(graph: ir.Graph) -> list:
    """Nodes of `graph` (not its subgraphs) whose outputs reach no graph output, last first."""
    dead, gone = [], set()
    for node in reversed(list(graph)):
        if all(not v.is_graph_output() and all(id(u) in gone for u, _ in v.uses()) for v in node.outputs):
            dead.append(node)
            gone.add(id(node))
    return dead


def _remove_dead_nodes(ctx: Context, keep: set) -> None:
    """Drops the nodes a rewrite left without readers (transformers' repeat_kv Expand / Reshape once the
    attention reads the kv heads directly, a mask's producer); nodes that were dead in the input stay."""
    graph = ctx.model.graph
    for node in _dead_nodes(graph):
        if id(node) in keep:
            continue
        inputs = [v for v in node.inputs if v is not None]
        graph.remove(node, safe=True)
        ctx.maybe_unused.extend(inputs)


def has_external_data(model: ir.Model) -> bool:
    """True when some initializer of `model` is stored outside the .onnx file."""
    return any(isinstance(v.const_value, ir.ExternalTensor) for v in model.graph.initializers.values())


def _nbytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def save_model(model: Union[ir.Model, onnx.ModelProto], path: Union[str, os.PathLike], *,
               external_data: Optional[bool] = None) -> Optional[str]:
    """Saves `model` to `path`; returns the external data file's name, or None.

    external_data None: weights go to ``<name>.data`` beside the model when they total 2 GB or more
    (protobuf's limit) or the model already had external data; True / False force it.
    """
    if isinstance(model, onnx.ModelProto):
        model = ir.serde.deserialize_model(model)
    if external_data is None:
        external_data = has_external_data(model) or _nbytes(model) >= _TWO_GB - (64 << 20)
    if not external_data:
        ir.save(model, os.fspath(path))
        return None
    data = Path(path).name + ".data"
    ir.save(model, os.fspath(path), external_data=data)
    return data
