"""Dense float16 / bfloat16 MatMul and Gemm with constant weights -> com.kaio MatmulTcAsync / MatmulTcBf16Async.

Opt-in only (``rules=[..., "dense"]``, ``kaio-ort rewrite --dense``): cuBLAS is already good at dense
GEMMs, so the default rule set leaves ONNX MatMul to ORT.

    MatMul(A [..., M, K], B [..., K, N] constant)          -> MatmulTcAsync(A, B; out_dtype=A's type)
    MatMul(A, Transpose(W [..., N, K] constant, perm swaps the last two axes))
                                                           -> MatmulTcAsync(A, W; trans_b=1, out_dtype)
    Gemm(A [M, K], B constant; transA=0, transB, alpha, beta, C)
                                                           -> MatmulTcAsync(A, B; trans_b=transB) [-> Mul alpha] [-> Add C]
    (bfloat16: MatmulTcBf16Async.)

Decisions:
- out_dtype is the operands' type, so no Cast appears; the output keeps MatMul's type and shape
  (our op broadcasts batch dimensions like ONNX MatMul).
- B must be a constant (an initializer that is not also a graph input, or a Constant node): the
  issue asks for "MatMul with constant weights"; activation x activation products (attention
  scores, which the attention family handles) are left to ORT. Our op would accept them too.
- A Transpose in front of a constant B is folded into trans_b=1 only when it is trivial (it swaps
  the last two axes and nothing else); the Transpose stays where something else reads it.
- Left alone with the reason: float32 / float64 (our ops take float16 / bfloat16 operands), integer
  MatMuls, unknown types, rank-1 operands (ONNX MatMul's vector cases), unknown A rank.
- Gemm (torch's 2-D Linear export): transB maps to trans_b (a trivial Transpose of B flips it); alpha 1
  adds nothing, a power-of-two alpha a Mul after (scaling by 2^k does not round); a bias C with beta 1 is
  an Add after (C broadcasts onto [M, N] as Gemm's does), beta 0 drops C. Left alone with the reason:
  transA=1 (our op has no transposed A), another alpha (alpha * round(A @ B) would round twice where
  Gemm rounds once), beta other than 0 / 1 with a C (it would change C's values), and what MatMul refuses.
  The result rounds A @ B to the output type before the Add, where cuBLAS adds C in f32: within one
  rounding of the output type.
- Weights are not read: the rule looks at initializers' types and shapes only (external data stays
  where it is).
"""
from __future__ import annotations

import math
from typing import Optional

import onnx_ir as ir

from ._common import KAIO_DOMAIN, Context, RuleReport, dtype_name, guarded

RULE = "dense"
OPS = {ir.DataType.FLOAT16: "MatmulTcAsync", ir.DataType.BFLOAT16: "MatmulTcBf16Async"}
_FLOATS = (ir.DataType.FLOAT, ir.DataType.DOUBLE)


def _dtype(v: Optional[ir.Value]) -> Optional[ir.DataType]:
    return None if v is None or v.type is None else v.type.dtype


def _constant(v: ir.Value) -> bool:
    """A value fixed when the model is built: an initializer that is not a graph input, or a Constant's output."""
    if v.is_graph_input():
        return False
    if v.const_value is not None and v.is_initializer():
        return True
    p = v.producer()
    return p is not None and p.op_type == "Constant" and p.domain == "" and len(p.inputs) == 0


def _shape_of(v: ir.Value) -> Optional[tuple]:
    if v.const_value is not None:
        return tuple(v.const_value.shape)
    return None if v.shape is None else tuple(v.shape)


def _trivial_transpose(v: ir.Value) -> Optional[ir.Value]:
    """W when v = Transpose(W constant, perm swapping only the last two axes), else None."""
    p = v.producer()
    if p is None or p.op_type != "Transpose" or p.domain != "" or not p.inputs or not _constant(p.inputs[0]):
        return None
    w = p.inputs[0]
    shape = _shape_of(w)
    if shape is None or len(shape) < 2:
        return None
    perm = p.attributes.get_ints("perm", None)
    r = len(shape)
    want = list(range(r - 2)) + [r - 1, r - 2]
    if perm is None:
        perm = list(range(r))[::-1]          # Transpose's default reverses the axes
    return w if list(perm) == want else None


def _operand_type(a: ir.Value, b: ir.Value, op: str = "MatMul") -> tuple:
    """(reason, None) or (None, dtype) for the operands' element type."""
    t = _dtype(a) or _dtype(b)
    if t is None:
        return "the element type of A and B is unknown", None
    if t in _FLOATS:
        return (f"{dtype_name(t)} operands: MatmulTcAsync takes float16 and MatmulTcBf16Async bfloat16 "
                f"(the model keeps ORT's {op})"), None
    if t not in OPS:
        return f"{dtype_name(t)} operands: integer {op} is not mapped", None
    return None, t


def _weight(b: ir.Value, t: ir.DataType, what: str) -> tuple:
    """(reason, None) or (None, (weight, transposed)): B itself when constant, else W of a trivial Transpose(W)."""
    weight, transposed = b, 0
    if not _constant(b):
        w = _trivial_transpose(b)
        if w is None:
            return (f"B ('{b.name}') is not a constant initializer: the dense rule maps {what} with constant "
                    "weights only"), None
        weight, transposed = w, 1
    if _dtype(weight) not in (None, t):
        return f"B is {dtype_name(_dtype(weight))}, A is {dtype_name(t)}", None
    return None, (weight, transposed)


def check(node: ir.Node) -> tuple:
    """(reason, None) or (None, (op_type, b, trans_b, dtype)) for one ONNX MatMul."""
    a, b = node.inputs[0], node.inputs[1]
    reason, t = _operand_type(a, b)
    if reason:
        return reason, None
    reason, wt = _weight(b, t, "MatMuls")
    if reason:
        return reason, None
    weight, trans_b = wt
    rb = _shape_of(weight)
    ra = None if a.shape is None else len(a.shape)
    if rb is None or len(rb) < 2:
        return f"B has rank {None if rb is None else len(rb)}: a vector B (rank 1) is not mapped", None
    if ra is None:
        return "the rank of A is unknown (a rank-1 A is a vector product): run shape inference first", None
    if ra < 2:
        return "A has rank 1 (a vector product): not mapped", None
    return None, (OPS[t], weight, trans_b, t)


def _is_power_of_two(x: float) -> bool:
    m, _ = math.frexp(x)
    return x > 0 and m == 0.5


def check_gemm(node: ir.Node) -> tuple:
    """(reason, None) or (None, (op_type, b, trans_b, dtype, alpha, c)) for one ONNX Gemm:
    Y = alpha * A' @ B' + beta * C, A' = A or A^T (transA), B' = B or B^T (transB), A and B 2-D."""
    a, b = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    reason, t = _operand_type(a, b, "Gemm")
    if reason:
        return reason, None
    if node.attributes.get_int("transA", 0):
        return "transA=1: MatmulTcAsync has no transposed A (the model keeps ORT's Gemm)", None
    alpha = node.attributes.get_float("alpha", 1.0)
    beta = node.attributes.get_float("beta", 1.0)
    if alpha != 1.0 and not _is_power_of_two(alpha):
        return (f"alpha={alpha:g}: only 1 or a power of two maps exactly (alpha * (A @ B) after our op rounds A @ B "
                "to the output type first; a power of two scales without rounding)"), None
    if c is not None and beta not in (0.0, 1.0):
        return (f"beta={beta:g} with a bias C: only beta 1 (an Add after) or 0 maps without changing C's values"), None
    if c is not None and _dtype(c) not in (None, t):
        return f"C is {dtype_name(_dtype(c))}, A is {dtype_name(t)}", None
    reason, wt = _weight(b, t, "Gemms")
    if reason:
        return reason, None
    weight, transposed = wt
    rb = _shape_of(weight)
    if rb is None or len(rb) != 2:
        return f"B has rank {None if rb is None else len(rb)}, Gemm's is 2", None
    trans_b = node.attributes.get_int("transB", 0) ^ transposed
    return None, (OPS[t], weight, trans_b, t, alpha, c if beta != 0.0 else None)


def _scalar(ctx: Context, value: float, t: ir.DataType, base: str) -> ir.Value:
    import numpy as np

    return ctx.new_initializer(np.array(value, dtype=t.numpy()), base)


def apply(ctx: Context, report: RuleReport) -> None:
    """Rewrites every float16 / bfloat16 MatMul and Gemm with constant weights; fills `report`."""
    ctx.use_kaio_opset()
    graph0 = ctx.model.graph
    if any(n.op_type == "MatMul" and n.domain == "" and n.inputs and n.inputs[0] is not None
           and n.inputs[0].shape is None for n in ir.traversal.RecursiveGraphIterator(graph0)):
        from .attention import _infer_shapes    # shared best-effort shape inference
        _infer_shapes(ctx.model)
    graphs = [graph0] + [attr.value for node in ir.traversal.RecursiveGraphIterator(graph0)
                         for attr in node.attributes.values() if attr.type == ir.AttributeType.GRAPH]
    for graph in graphs:
        for node in list(graph):
            if node.op_type not in ("MatMul", "Gemm") or node.domain != "":
                continue
            gemm = node.op_type == "Gemm"
            reason, plan = guarded(check_gemm if gemm else check, node)
            if reason is not None:
                report.add_left_alone(node, node.op_type, reason)
                continue
            op_type, weight, trans_b, t = plan[:4]
            alpha, c = plan[4:] if gemm else (1.0, None)
            attrs = [ir.AttrInt64("out_dtype", int(t))]
            if trans_b:
                attrs.append(ir.AttrInt64("trans_b", 1))
            y = node.outputs[0]
            base = ctx.unique_name((y.name or "dense") + "_kaio")
            new = [ir.Node(KAIO_DOMAIN, op_type, [node.inputs[0], weight], attributes=attrs,
                           name=node.name or ctx.unique_name("kaio_dense"))]
            if alpha != 1.0:     # a power of two: exact
                new.append(ir.Node("", "Mul", [new[-1].outputs[0], _scalar(ctx, alpha, t, base + "_alpha")],
                                   name=ctx.unique_name(new[0].name + "_alpha")))
            if c is not None:
                new.append(ir.Node("", "Add", [new[-1].outputs[0], c], name=ctx.unique_name(new[0].name + "_bias")))
            for i, n in enumerate(new):
                n.outputs[0].name = base if i == len(new) - 1 else ctx.unique_name(f"{base}_{i}")
                n.outputs[0].type, n.outputs[0].shape = y.type, y.shape
            ir.convenience.replace_nodes_and_values(graph, node, [node], new, [y], [new[-1].outputs[0]])
            report.add_replaced(node)
