"""Three com.kaio MatmulInt4 / MatmulInt8 (W8A16) nodes reading one input -> QkvProjectInt4 / Int8.

Runs after the MatMulNBits family (which turns ORT's quantized matmuls into MatmulInt4 / MatmulInt8),
so it also fuses models written with com.kaio ops directly.

    X -> MatmulInt4(X, Wq, sq) [-> Add(·, bq)]          QkvProjectInt4(X, Wq, Wk, Wv, sq, sk, sv
    X -> MatmulInt4(X, Wk, sk) [-> Add(·, bk)]    =>                   [, bq, bk, bv]; group_size)
    X -> MatmulInt4(X, Wv, sv) [-> Add(·, bv)]          -> (Q, K, V)

Conditions (each failure is reported with the group's nodes): exactly three quantized projections
read X; one op type; no zero points (QkvProject takes symmetric weights); out_dtype = X's type
(float16/bfloat16); Int4: one group_size; Int8: W8A16 with per-channel scales (group_size 0: the
op's scales are float32 [N*], converted exactly from X's type). A projection whose output feeds
only an Add of a constant [N] vector in X's type takes that vector as its bias; when some have a
bias and others not, the others get zeros (QkvProject takes all three or none).

Built on onnx-ir directly rather than onnxscript's pattern matcher: a pattern with three output
nodes is matched there by trying every combination of three same-typed nodes of the graph
(cubic in the number of projections), while the siblings are one ``X.uses()`` away. The class keeps
the rewriter's shape: candidates (the pattern), check (a MatchResult failing with the reason),
rewrite.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter.pattern import MatchResult

from ._common import ACTIVATION_TYPES, KAIO_DOMAIN, Context, RuleReport, const_array, dtype_name, guarded

RULE = "qkv"
_PROJECTIONS = ("MatmulInt4", "MatmulInt8")
_FUSED = {"MatmulInt4": "QkvProjectInt4", "MatmulInt8": "QkvProjectInt8"}


def _is_projection(node: ir.Node) -> bool:
    return node.domain == KAIO_DOMAIN and node.op_type in _PROJECTIONS and len(node.inputs) >= 3


@dataclasses.dataclass
class _Proj:
    node: ir.Node
    n: Optional[int]                 # output features, when known
    add: Optional[ir.Node] = None    # the absorbed bias Add
    bias: Optional[np.ndarray] = None
    bias_value: Optional[ir.Value] = None

    @property
    def out(self) -> ir.Value:
        return (self.add or self.node).outputs[0]


@dataclasses.dataclass
class _Plan:
    x: ir.Value
    op_type: str
    act: ir.DataType
    group_size: int
    projs: list


class QkvProjectFusion:
    """One group of three sibling projections -> one QkvProject node."""

    name = RULE

    def __init__(self, ctx: Context, report: RuleReport):
        self.ctx = ctx
        self.report = report

    # the "pattern": groups of >= 3 quantized projections reading the same value, in graph order
    def candidates(self, graph: ir.Graph) -> list:
        order = {n: i for i, n in enumerate(graph)}
        seen, groups = set(), []
        for node in graph:
            if not _is_projection(node) or node.inputs[0] is None or id(node.inputs[0]) in seen:
                continue
            x = node.inputs[0]
            seen.add(id(x))
            group = sorted({u for u, i in x.uses() if i == 0 and u in order and _is_projection(u)},
                           key=order.__getitem__)
            if len(group) >= 3:
                groups.append((x, group))
        return groups

    def check(self, x: ir.Value, nodes: list) -> tuple:
        result = MatchResult()
        if len(nodes) != 3:
            return result.fail(f"{len(nodes)} quantized projections read '{x.name}': QkvProject fuses exactly three"), None
        ops = {n.op_type for n in nodes}
        if len(ops) != 1:
            return result.fail(f"the projections of '{x.name}' mix {' and '.join(sorted(ops))}"), None
        op_type = ops.pop()
        scales = [const_array(n.inputs[2]) for n in nodes]
        act = x.type.dtype if x.type is not None else None
        if act is None and op_type == "MatmulInt4" and scales[0] is not None:
            act = ir.DataType.from_numpy(scales[0].dtype)
        if act is None:
            return result.fail(f"the element type of '{x.name}' is unknown"), None
        if op_type == "MatmulInt8" and act == ir.DataType.INT8:
            return result.fail("MatmulInt8 in W8A8 mode (int8 activations): QkvProjectInt8 is W8A16"), None
        if act not in ACTIVATION_TYPES:
            return result.fail(f"'{x.name}' is {dtype_name(act)}: QkvProject takes float16 or bfloat16 X"), None
        groups = set()
        projs = []
        for n in nodes:
            if len(n.inputs) > 3 and n.inputs[3] is not None:
                return result.fail(f"'{n.name}' has zero points: {_FUSED[op_type]} takes symmetric weights"), None
            out_dtype = n.attributes.get_int("out_dtype", 1)
            if out_dtype != int(act):
                return result.fail(f"'{n.name}' has out_dtype {out_dtype}: QkvProject writes X's type "
                                   f"({int(act)}, {dtype_name(act)})"), None
            g = n.attributes.get_int("group_size", 128 if op_type == "MatmulInt4" else 0)
            if op_type == "MatmulInt8" and g != 0:
                return result.fail(f"'{n.name}' has group_size {g}: QkvProjectInt8 takes per-channel scales only "
                                   "(group_size 0)"), None
            groups.add(g)
            projs.append(_Proj(n, _out_features(n)))
        if len(groups) != 1:
            return result.fail(f"the projections of '{x.name}' use different group sizes {sorted(groups)}"), None
        if op_type == "MatmulInt8" and any(s is None for s in scales):
            bad = nodes[[s is None for s in scales].index(True)]
            return result.fail(f"'{bad.name}': scales are not a constant initializer (QkvProjectInt8 takes them "
                               "as float32, converted offline)"), None
        ks = {k for k in (_in_features(n) for n in nodes) if k is not None}
        if len(ks) > 1:
            return result.fail(f"the projections of '{x.name}' have different K {sorted(ks)}"), None
        for p in projs:
            self._find_bias(p, act)
        return result, _Plan(x, op_type, act, groups.pop(), projs)

    def _find_bias(self, p: _Proj, act: ir.DataType) -> None:
        y = p.node.outputs[0]
        uses = list(y.uses())
        if p.n is None or y.is_graph_output() or len(uses) != 1:
            return
        add = uses[0].node
        if add.domain != "" or add.op_type != "Add" or len(add.inputs) != 2:
            return
        other = add.inputs[1 - uses[0].idx]
        b = const_array(other)
        if b is None or b.ndim != 1 or b.shape[0] != p.n or ir.DataType.from_numpy(b.dtype) != act:
            return
        p.add, p.bias = add, b
        p.bias_value = other if other.is_initializer() else None

    def rewrite(self, graph: ir.Graph, plan: _Plan) -> ir.Node:
        ctx = self.ctx
        nodes = [p.node for p in plan.projs]
        weights = [n.inputs[1] for n in nodes]
        if plan.op_type == "MatmulInt8":
            scales = [ctx.new_initializer(const_array(n.inputs[2]).astype(np.float32).reshape(-1),
                                          f"{n.inputs[2].name}_f32") for n in nodes]
            ctx.maybe_unused.extend(n.inputs[2] for n in nodes)
            attrs = []
        else:
            scales = [n.inputs[2] for n in nodes]
            attrs = [ir.AttrInt64("group_size", plan.group_size)]
        inputs = [plan.x, *weights, *scales]
        if any(p.add is not None for p in plan.projs):
            for p in plan.projs:
                if p.bias_value is None:
                    b = p.bias if p.bias is not None else np.zeros(p.n, ir.DataType(plan.act).numpy())
                    p.bias_value = ctx.new_initializer(b, f"{p.node.name}_bias")
                if p.add is not None:
                    ctx.maybe_unused.extend(p.add.inputs)
            inputs += [p.bias_value for p in plan.projs]
        fused = ir.Node(KAIO_DOMAIN, _FUSED[plan.op_type], inputs, attributes=attrs, num_outputs=3,
                        name=ctx.unique_name("/".join(n.name or "" for n in nodes) + "/qkv"))
        old_nodes = nodes + [p.add for p in plan.projs if p.add is not None]
        ir.convenience.replace_nodes_and_values(graph, nodes[0], old_nodes, [fused],
                                                [p.out for p in plan.projs], list(fused.outputs))
        return fused


def _out_features(n: ir.Node) -> Optional[int]:
    shape = n.inputs[1].shape
    if shape is None or len(shape) != 2:
        return None
    d = shape[0] if n.op_type == "MatmulInt4" else shape[1]
    return d if isinstance(d, int) else None


def _in_features(n: ir.Node) -> Optional[int]:
    shape = n.inputs[1].shape
    if shape is None or len(shape) != 2:
        return None
    d = shape[1] * 8 if n.op_type == "MatmulInt4" and isinstance(shape[1], int) else shape[0]
    return d if isinstance(d, int) else None


def _check_reason(rule, x, nodes) -> tuple:
    result, plan = rule.check(x, nodes)
    return (None, plan) if result else (result.reason, None)


def apply(ctx: Context, report: RuleReport) -> None:
    """Fuses every group of three sibling projections of ctx.model that maps; fills `report`."""
    rule = QkvProjectFusion(ctx, report)
    graphs = [ctx.model.graph] + [attr.value for node in ir.traversal.RecursiveGraphIterator(ctx.model.graph)
                                  for attr in node.attributes.values() if attr.type == ir.AttributeType.GRAPH]
    for graph in graphs:
        changed = False
        for x, nodes in rule.candidates(graph):
            reason, plan = guarded(_check_reason, rule, x, nodes)
            if reason is not None:
                report.add_left_alone(nodes, "/".join(sorted({n.op_type for n in nodes})), reason)
                continue
            rule.rewrite(graph, plan)
            report.add_replaced(*nodes)
            changed = True
        if changed:
            ctx.use_kaio_opset()
            graph.sort()      # biases or weights made by nodes placed after the first projection
