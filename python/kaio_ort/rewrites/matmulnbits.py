"""com.microsoft MatMulNBits -> com.kaio MatmulInt4 (bits 4) / MatmulInt8 W8A16 (bits 8).

Built on onnxscript's pattern rewriter (one-node pattern, ``check`` says why not, ``rewrite`` builds
the replacement). The weights are repacked offline by ``kaio_ort.packing.from_matmulnbits`` (exact
on the integer codes; its ValueErrors are the reasons a node is left alone).

    MatMulNBits(A, B, scales, zero_points?, g_idx?, bias?; K, N, bits, block_size, accuracy_level)
      -> MatmulInt4(A, B_packed, scales, zero_points?; group_size=block_size, out_dtype=A's type)
         [-> Add(·, bias) when the node has a bias: our ops take none]
      -> MatmulInt8(A, B, scales, zero_points?; group_size=block_size (0: one block, per channel),
         out_dtype=A's type)

Decisions:
- accuracy_level (ORT: the lowest precision A may be computed in; 4 = A quantized to int8 per
  block) is accepted for every defined level 0..4: our W4A16/W8A16 kernels use A as given with
  f32 accumulation, which meets levels 0..3 and is more accurate than level 4 (so a level-4
  model's outputs move towards the float result). Undefined levels are left alone.
- float32 activations (MatmulInt4/MatmulInt8 take float16/bfloat16 A) are left alone, unless
  ``cast_float32``: then Cast(A -> float16), scales (and zero points) rounded to float16 and
  out_dtype float, so the graph output stays float32 -- an approximation (A and scales rounded to
  float16), hence opt-in.
- Weights shared by several nodes are converted once.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from ..packing import Int4Weights, from_matmulnbits
from ._common import (ACTIVATION_TYPES, KAIO_DOMAIN, KAIO_OPSET, MS_DOMAIN, Context, RuleReport, const_array,
                      dtype_name, guarded)

RULE = "matmulnbits"
ACCURACY_LEVELS = (0, 1, 2, 3, 4)
_ROLES = ("A", "B", "scales", "zero_points", "g_idx", "bias")


@dataclasses.dataclass
class _Plan:
    node: ir.Node
    op_type: str
    group_size: int
    act: ir.DataType                 # the activation type (scales' type)
    cast: bool                       # float32 A cast to float16
    weights: tuple                   # (b, scales, zero_points or None) ir.Values
    bias: Optional[ir.Value]


class MatMulNBitsToKaio(pattern.RewriteRuleClassBase):
    """One MatMulNBits node -> MatmulInt4 / MatmulInt8 (+ Add for a bias)."""

    def __init__(self, ctx: Context, report: RuleReport):
        super().__init__(RULE)
        self.ctx = ctx
        self.report = report
        self._plan: Optional[_Plan] = None
        self._converted: dict = {}       # (B, scales, zp, g_idx values, cast) -> (values, group_size)
        self._total = sum(1 for n in ir.traversal.RecursiveGraphIterator(ctx.model.graph) if _is_matmulnbits(n))
        self._done = 0

    def pattern(self, op, A, B):
        return op.MatMulNBits(A, B, _domain=MS_DOMAIN, _allow_other_inputs=True,
                              _allow_other_attributes=True, _outputs=["Y"])

    def check(self, context, Y, **_) -> pattern.MatchResult:
        node = Y.producer()
        result = pattern.MatchResult()
        try:
            reason, _ = guarded(lambda n: (self._plan_for(n), None), node)
        finally:
            self._done += 1
            if self.ctx.options.progress:
                self.ctx.options.progress(RULE, self._done, self._total)
        if reason is not None:
            self.report.add_left_alone(node, "MatMulNBits", reason)
            return result.fail(reason, node)
        return result

    def rewrite(self, op, A, Y, **_):
        plan, self._plan = self._plan, None
        node = plan.node
        x = op.Cast(A, to=ir.DataType.FLOAT16, _name=f"{node.name}/cast_a") if plan.cast else A
        out_dtype = ir.DataType.FLOAT if plan.cast else plan.act
        inputs = [x, *(w for w in plan.weights if w is not None)]
        y = op.op(plan.op_type, *inputs, _domain=KAIO_DOMAIN, _version=KAIO_OPSET, _name=node.name,
                  group_size=plan.group_size, out_dtype=int(out_dtype))
        if plan.bias is not None:
            y = op.Add(y, plan.bias, _name=f"{node.name}/bias")
        self.ctx.maybe_unused.extend(v for v in node.inputs[1:5] if v is not None)
        self.report.add_replaced(node)
        return y

    # ------------------------------------------------------------------------------------------
    def _plan_for(self, node: ir.Node) -> Optional[str]:
        """None (and self._plan set) when the node can be rewritten, else the reason."""
        attrs = node.attributes
        bits = attrs.get_int("bits", 4)
        block_size = attrs.get_int("block_size", 0)
        K, N = attrs.get_int("K", -1), attrs.get_int("N", -1)
        level = attrs.get_int("accuracy_level", 0)
        if bits not in (4, 8):
            return f"bits {bits}: com.kaio has 4-bit (MatmulInt4) and 8-bit (MatmulInt8) weights only"
        if level not in ACCURACY_LEVELS:
            return f"accuracy_level {level} is not one of ORT's levels 0..4"
        inputs = dict(zip(_ROLES, node.inputs))
        arrays = {}
        for role in ("B", "scales", "zero_points", "g_idx"):
            v = inputs.get(role)
            if v is None:
                continue
            arrays[role] = const_array(v)
            if arrays[role] is None:
                return f"input {role} ('{v.name}') is not a constant initializer (weights are repacked offline)"
        if "g_idx" in arrays and "zero_points" in arrays:
            # Found by graph_rewrites/test_fuzz.py: ORT's CPU MatMulNBits (1.31) with g_idx reads 4-bit packed
            # zero points differently from its own path without g_idx (an identity g_idx changes its result),
            # so no conversion can promise the outputs the original gives today.
            return ("g_idx with zero points: ORT's MatMulNBits reads these zero points differently with and "
                    "without g_idx, so the rewritten node could not match the original's outputs")
        try:
            act = ir.DataType.from_numpy(arrays["scales"].dtype)
        except TypeError:
            act = None
        cast = False
        if act == ir.DataType.FLOAT:
            if not self.ctx.options.cast_float32:
                return ("float32 activations: MatmulInt4/MatmulInt8 take float16 or bfloat16 A (cast_float32=True / "
                        "--cast-float32 inserts a Cast to float16, approximately)")
            cast = True
        elif act not in ACTIVATION_TYPES:
            return f"activation type {dtype_name(act)}: MatmulInt4/MatmulInt8 take float16 or bfloat16 A"
        bias = inputs.get("bias")
        if bias is not None:
            bt = bias.type.dtype if bias.type is not None else None
            if bt is not None and bt != act:
                return f"bias ('{bias.name}') is {dtype_name(bt)}, A is {dtype_name(act)}"

        key = tuple(inputs.get(r) for r in ("B", "scales", "zero_points", "g_idx")) + (cast,)
        hit = self._converted.get(tuple(map(id, key)))
        if hit is None:
            try:
                w = from_matmulnbits(arrays["B"], arrays["scales"], arrays.get("zero_points"), K=K, N=N,
                                     block_size=block_size, bits=bits, g_idx=arrays.get("g_idx"))
            except ValueError as e:
                return str(e)
            scales, zp = w.scales, w.zero_points
            if cast:
                s16 = scales.astype(np.float16)
                if not np.all(np.isfinite(s16)) or np.any((s16 == 0) & (scales != 0)):
                    return "float32 scales outside float16's range (cast_float32)"
                scales = s16
                zp = None if zp is None else zp.astype(np.float16)
            base = inputs["B"].name or node.name
            b = w.b_packed if isinstance(w, Int4Weights) else w.b
            values = (self.ctx.new_initializer(b, f"{base}_kaio"),
                      self.ctx.new_initializer(scales, f"{base}_kaio_scales"),
                      None if zp is None else self.ctx.new_initializer(zp, f"{base}_kaio_zero_points"))
            hit = (values, w.group_size, w.op_type, key)     # key keeps the values alive (ids stay unique)
            self._converted[tuple(map(id, key))] = hit
        values, group_size, op_type, _ = hit
        self._plan = _Plan(node, op_type, group_size, act, cast, values, bias)
        return None


def _is_matmulnbits(node: ir.Node) -> bool:
    return node.domain == MS_DOMAIN and node.op_type == "MatMulNBits"


def apply(ctx: Context, report: RuleReport) -> None:
    """Rewrites every MatMulNBits of ctx.model that maps; fills `report`."""
    rule = MatMulNBitsToKaio.rule(ctx, report)
    ctx.use_kaio_opset()
    pattern.RewriteRuleSet([rule]).apply_to_model(ctx.model)
