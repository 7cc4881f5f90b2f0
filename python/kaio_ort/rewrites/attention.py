"""Attention -> com.kaio AttentionFlash / AttentionFlashCausal (layout chosen so no Transpose is added).

    com.microsoft MultiHeadAttention(q [B,S,H*D], k [B,L,H*D], v [B,L,H*Dv], bias? [3 hidden]; num_heads, scale?,
      unidirectional?) -> [Add bq/bk/bv] -> Reshape [B,S,H,D] -> AttentionFlash[Causal](layout "bshd") -> Reshape
    com.microsoft Attention(input [B,S,in], weights [in, hq+hk+hv], bias?, mask_index absent or constant all-ones;
      num_heads, qkv_hidden_sizes?, unidirectional?, scale?) -> MatMul [+ Add bias] -> Split -> Reshapes ->
      AttentionFlash[Causal](bshd) -> Reshape (the MatMul becomes MatmulTcAsync when the opt-in dense rule runs)
    ai.onnx Attention-23/24(Q, K, V; is_causal, scale, softcap, q_num_heads, kv_num_heads)
      4-D [B,H,S,D] -> AttentionFlash[Causal](layout "bhsd");  3-D [B,S,H*D] -> Reshapes + "bshd" (GQA kept)
    com.microsoft GroupQueryAttention(q, k, v, no past, constant seqlens_k/total_sequence_length that say
      "every key") -> Reshapes + AttentionFlash[Causal](layout "bshd", GQA kept)
    decomposed: MatMul(Q, Transpose(K)) -> Mul/Div by constants -> [Add(mask) | Where(mask)] -> Softmax(-1)
      -> MatMul(., V): a constant mask that is all zeros / exactly bottom-right triangular -> (causal) op;
      K^T = Transpose(K, [0,1,3,2]) -> "bhsd"; Transpose(K, [0,2,3,1]) with Q, V Transposes [0,2,1,3] of
      [B,S,H,D] values and the output read only through Transpose [0,2,1,3] -> "bshd" on the untransposed
      values (the three Transposes go away).

out_dtype is always the input type (the graph's), Reshapes are views. Everything else -- masks that
are not causal (padding, bias; Attention's mask_index unless a constant all-ones), KV caches, packed QKV
inputs of MHA/GQA, softcap, top-left causal alignment with
Sq != Sk (Attention-23, MultiHeadAttention), unknown ranks -- is left alone with the reason.

The single-node forms (MultiHeadAttention, Attention, GroupQueryAttention; several outputs, optional
inputs anywhere) are matched on onnx-ir directly; the decomposed form with onnxscript's pattern
rewriter (commuted operands, optional scalings, the IsNaN guard torch's exporter adds).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from ._common import KAIO_DOMAIN, KAIO_OPSET, MS_DOMAIN, Context, RuleReport, const_array, dtype_name, guarded

RULE = "attention"
INPUT_TYPES = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16, ir.DataType.FLOAT)
MASKED = -1e4           # an additive mask entry at or below this (or -inf) hides the key; 0 shows it


@dataclasses.dataclass
class _Plan:
    q: ir.Value
    k: ir.Value
    v: ir.Value
    causal: bool
    scale: Optional[float]           # None: the op's default 1/sqrt(D)
    layout: str
    dtype: ir.DataType
    heads: Optional[tuple] = None    # (Hq, Hkv): 3-D [B, S, H*D] inputs reshaped to [B, S, H, D]
    pre: Optional[object] = None     # pre(builder, name) -> (nodes, q, k, v): a prologue (packed projection, biases)


def _dtype(v: Optional[ir.Value]) -> Optional[ir.DataType]:
    return None if v is None or v.type is None else v.type.dtype


def _rank(v: Optional[ir.Value]) -> Optional[int]:
    return None if v is None or v.shape is None else len(v.shape)


def _same_dim(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return (isinstance(a, ir.SymbolicDim) and isinstance(b, ir.SymbolicDim) and a.value is not None
            and a.value == b.value)


def _seq_dim(v: ir.Value, axis: int):
    return None if v.shape is None else v.shape[axis]


def _used(v: Optional[ir.Value]) -> bool:
    return v is not None and (bool(v.uses()) or v.is_graph_output())


def _present(node: ir.Node, i: int) -> Optional[ir.Value]:
    return node.inputs[i] if len(node.inputs) > i else None


def _check_type(q, k, v) -> Optional[str]:
    types = {_dtype(x) for x in (q, k, v)} - {None}
    if len(types) > 1:
        return f"query, key and value have different element types ({', '.join(sorted(map(dtype_name, types)))})"
    if not types:
        return "the element type of the query is unknown"
    t = types.pop()
    if t not in INPUT_TYPES:
        return f"{dtype_name(t)} inputs: AttentionFlash takes float16, bfloat16 or float32"
    return None


# ------------------------------------------------------------------------------------------------
# building the replacement (shared by the single-node forms)
class _Builder:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._shapes: dict = {}

    def _shape(self, dims: tuple) -> ir.Value:
        if dims not in self._shapes:
            self._shapes[dims] = self.ctx.new_initializer(np.array(dims, np.int64), "kaio_attention_shape")
        return self._shapes[dims]

    def _node(self, domain, op_type, inputs, attrs, name, dtype) -> ir.Node:
        n = ir.Node(domain, op_type, inputs, attributes=attrs, name=self.ctx.unique_name(name))
        n.outputs[0].name = self.ctx.unique_name(name + "_out")
        n.outputs[0].type = ir.TensorType(dtype)
        return n

    def build(self, plan: _Plan, name: str) -> list:
        """The new nodes; the last one's output replaces the attention's output."""
        nodes, (q, k, v) = [], (plan.q, plan.k, plan.v)
        if plan.pre is not None:
            nodes, q, k, v = plan.pre(self, name)
        if plan.heads:
            hq, hkv = plan.heads
            qkv = []
            for x, h, tag in ((q, hq, "q"), (k, hkv, "k"), (v, hkv, "v")):
                r = self._node("", "Reshape", [x, self._shape((0, 0, h, -1))], [], f"{name}/reshape_{tag}", plan.dtype)
                nodes.append(r)
                qkv.append(r.outputs[0])
            q, k, v = qkv
        attrs = [ir.AttrString("layout", plan.layout), ir.AttrInt64("out_dtype", int(plan.dtype))]
        if plan.scale is not None:
            attrs.append(ir.AttrFloat32("scale", float(plan.scale)))
        op_type = "AttentionFlashCausal" if plan.causal else "AttentionFlash"
        nodes.append(self._node(KAIO_DOMAIN, op_type, [q, k, v], attrs, name, plan.dtype))
        if plan.heads:
            nodes.append(self._node("", "Reshape", [nodes[-1].outputs[0], self._shape((0, 0, -1))], [],
                                    f"{name}/reshape_out", plan.dtype))
        return nodes


    def split(self, x: ir.Value, sizes: tuple, name: str, dtype) -> tuple:
        """Split(x, sizes) on the last axis -> (node, outputs); Split-13+ takes the sizes as an input."""
        if self.ctx.model.opset_imports.get("", 13) >= 13:
            n = ir.Node("", "Split", [x, self._shape(tuple(sizes))], attributes=[ir.AttrInt64("axis", -1)],
                        num_outputs=len(sizes), name=self.ctx.unique_name(name))
        else:
            n = ir.Node("", "Split", [x], attributes=[ir.AttrInt64("axis", -1), ir.AttrInt64s("split", list(sizes))],
                        num_outputs=len(sizes), name=self.ctx.unique_name(name))
        for o, tag in zip(n.outputs, "qkv"):
            o.name = self.ctx.unique_name(f"{name}_{tag}")
            o.type = ir.TensorType(dtype)
        return n, tuple(n.outputs)

    def add_biases(self, qkv: tuple, bias: ir.Value, sizes: tuple, name: str, dtype) -> tuple:
        """Adds the packed bias [hq + hk + hv] to q, k, v: (nodes, (q, k, v)). A constant bias is cut into three
        initializers; a computed one is Split."""
        nodes, arr = [], const_array(bias)
        if arr is not None:
            cuts = np.split(np.asarray(arr).reshape(-1), np.cumsum(sizes)[:-1])
            parts = [self.ctx.new_initializer(c, f"{bias.name or name}_{t}") for c, t in zip(cuts, "qkv")]
            self.ctx.maybe_unused.append(bias)
        else:
            sp, parts = self.split(bias, sizes, f"{name}/split_bias", dtype)
            nodes.append(sp)
        out = []
        for x, b, tag in zip(qkv, parts, "qkv"):
            nodes.append(self._node("", "Add", [x, b], [], f"{name}/bias_{tag}", dtype))
            out.append(nodes[-1].outputs[0])
        return nodes, tuple(out)


def _last_dim(v: Optional[ir.Value]):
    return None if v is None or v.shape is None or len(v.shape) == 0 else v.shape[-1]


# ------------------------------------------------------------------------------------------------
# single-node forms
def _extra_outputs_used(node: ir.Node, names: str) -> Optional[str]:
    if any(_used(o) for o in node.outputs[1:]):
        return f"the {names} outputs are used: AttentionFlash writes no KV cache / scores"
    return None


def _scale_attr(node: ir.Node) -> Optional[float]:
    s = node.attributes.get_float("scale", 0.0)
    return None if s == 0.0 else s


def _flag(attrs, name: str, default: int) -> bool:
    """A 0/1 attribute; another value is malformed (ORT reads such values its own way: is_causal 2^40 is
    not causal there), which guarded() reports as the node's reason to stay."""
    v = attrs.get_int(name, default)
    if v not in (0, 1):
        raise ValueError(f"{name} {v}: must be 0 or 1")
    return v == 1


def check_mha(node: ir.Node) -> tuple:
    """com.microsoft MultiHeadAttention -> (reason, None) or (None, plan)."""
    q, k, v = (_present(node, i) for i in range(3))
    names = ("bias", "key_padding_mask", "attention_bias", "past_key", "past_value", "past_sequence_length",
             "cache_indirection")
    extra = {n: _present(node, 3 + i) for i, n in enumerate(names)}
    reason = _extra_outputs_used(node, "present_key/present_value")
    if reason:
        return reason, None
    if k is None or v is None:
        return "packed QKV or KV (no separate key and value inputs): not mapped", None
    if extra["key_padding_mask"] is not None:
        return "key_padding_mask input: AttentionFlash takes no padding mask", None
    if extra["attention_bias"] is not None:
        return "attention_bias input: AttentionFlash takes no additive mask or bias", None
    if extra["past_key"] is not None or extra["past_value"] is not None:
        return "past_key/past_value inputs (KV cache): AttentionFlash reads no cache", None
    if extra["past_sequence_length"] is not None or extra["cache_indirection"] is not None:
        return "past_sequence_length/cache_indirection inputs (beam search cache): not mapped", None
    reason = _check_type(q, k, v)
    if reason:
        return reason, None
    ranks = (_rank(q), _rank(k), _rank(v))
    if None in ranks:
        return "the rank of query, key or value is unknown (run shape inference first)", None
    if ranks != (3, 3, 3):
        return (f"query/key/value ranks {list(ranks)}: only [B, S, N*H] query, key and value map without a "
                "Transpose"), None
    causal = _flag(node.attributes, "unidirectional", 0)
    if causal and not _same_dim(_seq_dim(q, 1), _seq_dim(k, 1)):
        return ("unidirectional with query and key lengths not known to be equal: AttentionFlashCausal aligns the "
                "mask bottom-right"), None
    h = node.attributes.get_int("num_heads", 0)
    if h <= 0:
        return f"num_heads {h}", None
    plan = _Plan(q, k, v, causal, _scale_attr(node), "bshd", _dtype(q), heads=(h, h))
    bias = extra["bias"]
    if bias is not None:        # Q + bq, K + bk, V + bv (bias [hq + hk + hv]) before the attention
        sizes = tuple(_last_dim(x) for x in (q, k, v))
        if not all(isinstance(d, int) for d in sizes):
            return "bias input with the query/key/value hidden sizes unknown (run shape inference first)", None
        if _rank(bias) != 1 or _dtype(bias) not in (None, _dtype(q)):
            return f"bias input of rank {_rank(bias)} / type {dtype_name(_dtype(bias))}: expected [{sum(sizes)}]", None
        if isinstance(bias.shape[0], int) and bias.shape[0] != sum(sizes):
            return f"bias input [{bias.shape[0]}] is not query + key + value hidden sizes {list(sizes)}", None

        def pre(builder: _Builder, name: str):
            nodes, qkv = builder.add_biases((q, k, v), bias, sizes, name, plan.dtype)
            return (nodes, *qkv)
        plan.pre = pre
    return None, plan


def _all_visible(mask: np.ndarray) -> bool:
    """A constant raw mask_index ([B, S_total], [B, S, S_total] or [B, 1, M, M], 1 = attend) that shows every key."""
    return mask.ndim >= 2 and bool(np.all(mask != 0))


def check_ms_attention(node: ir.Node) -> tuple:
    """com.microsoft Attention (packed QKV weights) -> (reason, None) or (None, plan): MatMul(input, weights)
    [+ bias] -> Split -> Reshapes -> AttentionFlash[Causal](bshd) -> Reshape."""
    x, w, bias, mask = (_present(node, i) for i in range(4))
    a = node.attributes
    if _used(node.outputs[1] if len(node.outputs) > 1 else None):
        return "the present output is used: AttentionFlash writes no KV cache", None
    if _present(node, 4) is not None:
        return "past input (KV cache): AttentionFlash reads no cache", None
    if _present(node, 5) is not None:
        return "attention_bias input: AttentionFlash takes no additive mask or bias", None
    if _present(node, 6) is not None:
        return "past_sequence_length input (KV cache): not mapped", None
    if a.get_int("do_rotary", 0):
        return "do_rotary: rotary embedding inside the op is not mapped", None
    if mask is not None:
        arr = const_array(mask)
        if arr is None:
            return (f"mask_index input ('{mask.name}') is computed at run time (a padding mask): AttentionFlash "
                    "takes no mask"), None
        if not _all_visible(np.asarray(arr)):
            return (f"constant mask_index {list(np.shape(arr))} that hides keys (or key lengths, 1-D): AttentionFlash "
                    "takes no mask"), None
    if None not in (_dtype(w), _dtype(x)) and _dtype(w) != _dtype(x):
        return f"weights are {dtype_name(_dtype(w))}, input is {dtype_name(_dtype(x))}", None
    dtype = _dtype(x) or _dtype(w)      # the op's schema: one type T (contrib ops' outputs often carry no type)
    if dtype not in INPUT_TYPES:
        return f"{dtype_name(dtype)} input: AttentionFlash takes float16, bfloat16 or float32", None
    if _rank(x) not in (None, 3):       # the op requires [B, S, hidden]
        return f"input of rank {_rank(x)}: only [B, S, hidden] maps", None
    h = a.get_int("num_heads", 0)
    if h <= 0:
        return f"num_heads {h}", None
    sizes = tuple(a.get_ints("qkv_hidden_sizes", []) or ())
    if not sizes:
        n = _last_dim(w)
        if not isinstance(n, int) or n % 3:
            return f"weights' last dimension {n} is not 3 * hidden (and no qkv_hidden_sizes)", None
        sizes = (n // 3,) * 3
    if len(sizes) != 3 or sizes[0] != sizes[1] or any(s % h for s in sizes):
        return f"qkv_hidden_sizes {list(sizes)} with num_heads {h}: Q and K sizes must match and divide by the heads", \
            None
    causal = _flag(a, "unidirectional", 0)       # no past: Sq == Sk, so top-left == bottom-right
    plan = _Plan(None, None, None, causal, _scale_attr(node), "bshd", dtype, heads=(h, h))

    def pre(builder: _Builder, name: str):
        mm = builder._node("", "MatMul", [x, w], [], f"{name}/qkv_proj", dtype)
        nodes, y = [mm], mm.outputs[0]
        if bias is not None:
            nodes.append(builder._node("", "Add", [y, bias], [], f"{name}/qkv_bias", dtype))
            y = nodes[-1].outputs[0]
        sp, qkv = builder.split(y, sizes, f"{name}/split_qkv", dtype)
        nodes.append(sp)
        return (nodes, *qkv)
    plan.pre = pre
    return None, plan


def check_onnx_attention(node: ir.Node) -> tuple:
    """ai.onnx Attention (opset 23 / 24) -> (reason, None) or (None, plan)."""
    q, k, v = (_present(node, i) for i in range(3))
    reason = _extra_outputs_used(node, "present_key/present_value/qk_matmul_output")
    if reason:
        return reason, None
    if _present(node, 3) is not None:
        return "attn_mask input: AttentionFlash takes no mask (padding or arbitrary masks are not mapped)", None
    if _present(node, 4) is not None or _present(node, 5) is not None:
        return "past_key/past_value inputs (KV cache): AttentionFlash reads no cache", None
    if _present(node, 6) is not None:
        return "nonpad_kv_seqlen input (per-batch key lengths): AttentionFlash attends to every key", None
    softcap = node.attributes.get_float("softcap", 0.0)
    if softcap != 0.0:
        return f"softcap {softcap:g}: AttentionFlash has no soft capping", None
    reason = _check_type(q, k, v)
    if reason:
        return reason, None
    ranks = (_rank(q), _rank(k), _rank(v))
    if None in ranks:
        return "the rank of Q, K or V is unknown (run shape inference first)", None
    if ranks not in ((4, 4, 4), (3, 3, 3)):
        return f"Q/K/V ranks {list(ranks)}: only all 4-D or all 3-D map", None
    causal = _flag(node.attributes, "is_causal", 0)
    seq_axis = 2 if ranks[0] == 4 else 1
    if causal and not _same_dim(_seq_dim(q, seq_axis), _seq_dim(k, seq_axis)):
        return ("is_causal with Q and K lengths not known to be equal: Attention aligns the causal mask top-left, "
                "AttentionFlashCausal bottom-right"), None
    scale = _scale_attr(node)
    if ranks[0] == 4:
        return None, _Plan(q, k, v, causal, scale, "bhsd", _dtype(q))
    hq, hkv = node.attributes.get_int("q_num_heads", 0), node.attributes.get_int("kv_num_heads", 0)
    if hq <= 0 or hkv <= 0:
        return "3-D Q/K/V without q_num_heads/kv_num_heads", None
    return None, _Plan(q, k, v, causal, scale, "bshd", _dtype(q), heads=(hq, hkv))


def check_gqa(node: ir.Node) -> tuple:
    """com.microsoft GroupQueryAttention -> (reason, None) or (None, plan). Maps only without a KV cache
    and with constant seqlens_k / total_sequence_length that make every key visible (causally)."""
    q, k, v = (_present(node, i) for i in range(3))
    a = node.attributes
    if _present(node, 3) is not None or _present(node, 4) is not None:
        return "past_key/past_value inputs (KV cache, updated by the op): AttentionFlash reads no cache", None
    reason = _extra_outputs_used(node, "present_key/present_value/output_qk")
    if reason:
        return reason, None
    if k is None or v is None:
        return "packed QKV (no separate key and value inputs): not mapped", None
    if a.get_int("do_rotary", 0) or _present(node, 7) is not None:
        return "rotary embedding inside the op (do_rotary / cos_cache): not mapped", None
    names = {9: "position_ids", 10: "attention_bias", 11: "head_sink", 12: "k_scale", 13: "v_scale",
             14: "q_norm_weight", 15: "k_norm_weight"}
    for i, name in names.items():
        if _present(node, i) is not None:
            return f"{name} input: not mapped", None
    if a.get_float("softcap", 0.0) != 0.0:
        return f"softcap {a.get_float('softcap', 0.0):g}: AttentionFlash has no soft capping", None
    if a.get_int("local_window_size", -1) != -1:
        return f"local_window_size {a.get_int('local_window_size', -1)} (sliding window): not mapped", None
    if a.get_int("smooth_softmax", 0):
        return "smooth_softmax: not mapped", None
    reason = _check_type(q, k, v)
    if reason:
        return reason, None
    seqlens, total = const_array(_present(node, 5)), const_array(_present(node, 6))
    if seqlens is None or total is None:
        return ("seqlens_k/total_sequence_length are computed at run time (per-batch key lengths): "
                "AttentionFlash attends to every key"), None
    s = _seq_dim(q, 1) if _rank(q) == 3 else None
    total = int(np.asarray(total).reshape(-1)[0])
    if not isinstance(s, int) or s != total or np.any(np.asarray(seqlens) != total - 1):
        return (f"constant seqlens_k {np.asarray(seqlens).reshape(-1).tolist()} / total_sequence_length {total} do "
                "not cover every key of the sequence"), None
    causal = _flag(a, "causal", 1)
    hq, hkv = a.get_int("num_heads", 0), a.get_int("kv_num_heads", 0)
    return None, _Plan(q, k, v, causal, _scale_attr(node), "bshd", _dtype(q), heads=(hq, hkv))


_SINGLE = {(MS_DOMAIN, "MultiHeadAttention"): check_mha, ("", "Attention"): check_onnx_attention,
           (MS_DOMAIN, "GroupQueryAttention"): check_gqa, (MS_DOMAIN, "Attention"): check_ms_attention}


def _apply_single_node(ctx: Context, report: RuleReport, builder: _Builder) -> bool:
    changed = False
    graphs = [ctx.model.graph] + [attr.value for node in ir.traversal.RecursiveGraphIterator(ctx.model.graph)
                                  for attr in node.attributes.values() if attr.type == ir.AttributeType.GRAPH]
    for graph in graphs:
        for node in list(graph):
            check = _SINGLE.get((node.domain, node.op_type))
            if check is None:
                continue
            reason, plan = guarded(check, node)
            if reason is not None:
                report.add_left_alone(node, node.op_type, reason)
                continue
            new = builder.build(plan, node.name or node.op_type)
            consts = [v for v in node.inputs if v is not None and v.is_initializer()]   # removal detaches them
            ir.convenience.replace_nodes_and_values(graph, node, [node], new, [node.outputs[0]], [new[-1].outputs[0]])
            report.add_replaced(node)
            ctx.maybe_unused.extend(consts)
            changed = True
    return changed


# ------------------------------------------------------------------------------------------------
# the decomposed pattern
def classify_mask(mask: np.ndarray, sq, sk, keep: bool) -> tuple:
    """(reason, None) or (None, causal: bool) for a constant mask broadcast onto [..., Sq, Sk] scores.
    keep: the mask is boolean True = attend (Where's condition); else additive (0 attend, <= MASKED hide)."""
    m = np.asarray(mask)
    while m.ndim > 2 and np.all(m == m[:1]):      # the same over a batch / heads axis
        m = m[0]
    if m.ndim > 2:
        return f"the mask {list(mask.shape)} differs across batch or heads (a padding mask): not mapped", None
    m = m.reshape((1,) * (2 - m.ndim) + m.shape)
    if keep:
        show = m.astype(bool)
    else:
        m = m.astype(np.float64)
        show = m == 0
        if not np.all(show | (m <= MASKED)):
            return "the mask has values other than 0 and large negatives (an additive bias): not mapped", None
    if show.all():
        return None, False
    rows, cols = show.shape
    if (isinstance(sq, int) and rows not in (1, sq)) or (isinstance(sk, int) and cols not in (1, sk)):
        return f"the mask {list(mask.shape)} does not match the scores' [{sq}, {sk}]", None
    if rows > cols:
        return f"the mask [{rows}, {cols}] has rows that see no key (Sq > Sk)", None
    i, j = np.arange(rows)[:, None], np.arange(cols)[None]
    if rows == 1 or cols == 1 or not np.array_equal(show, j <= i + (cols - rows)):
        return "the mask is not causal (bottom-right triangular): a padding or other mask is not mapped", None
    return None, True


def _mask_array(v: Optional[ir.Value]) -> Optional[np.ndarray]:
    """A constant mask's array: an initializer / Constant, or Where(c, x, y) of constants -- torch.onnx's
    form once its constant folding stops at its input-size limit (8192 elements: a causal mask of 512
    tokens, or a decode step's [16, 1, 1, 513])."""
    arr = const_array(v)
    p = None if v is None or arr is not None else v.producer()
    if p is not None and p.op_type == "Where" and p.domain == "" and len(p.inputs) == 3:
        c, x, y = (const_array(i) for i in p.inputs)
        if c is not None and x is not None and y is not None:
            arr = np.where(c.astype(bool), x, y)
    return arr


def _unrepeat_kv(x: ir.Value) -> Optional[ir.Value]:
    """The [B, Hkv, S, D] value that transformers' repeat_kv expanded into x ([B, Hkv, n, S, D], or that
    reshaped to [B, Hkv*n, S, D]): Expand(Unsqueeze(kv, axes=[2]), [B, Hkv, n, S, D]); else None."""
    n = x.producer()
    if n is not None and n.op_type == "Reshape" and _rank(x) == 4:
        x, n = n.inputs[0], n.inputs[0].producer()
    if n is None or n.op_type != "Expand" or _rank(x) != 5:
        return None
    u = n.inputs[0].producer()
    if u is None or u.op_type != "Unsqueeze" or _rank(u.inputs[0]) != 4:
        return None
    axes = const_array(u.inputs[1]) if len(u.inputs) > 1 else np.array(u.attributes.get_ints("axes", []))
    if axes is None or [int(a) % 5 for a in np.asarray(axes).reshape(-1)] != [2]:
        return None
    kv, shape = u.inputs[0].shape, x.shape
    if not all(_same_dim(shape[i], kv[j]) for i, j in ((0, 0), (1, 1), (3, 2), (4, 3))):
        return None
    return u.inputs[0]


class DecomposedAttention(pattern.RewriteRuleClassBase):
    """MatMul(Q, K^T) [* scale] [+ mask] -> Softmax(-1) -> MatMul(·, V) -> AttentionFlash[Causal]."""

    def __init__(self, ctx: Context, report: RuleReport, pending: dict, bshd: bool):
        super().__init__(f"{RULE}_decomposed_{'bshd' if bshd else 'any'}")
        self.ctx = ctx
        self.report = report
        self.pending = pending           # anchor node -> (nodes, reason): reported if left in the graph
        self.bshd = bshd
        self._plan = None

    def pattern(self, op, query, key, value, mask, cond, fill, query_scale, key_scale, qk_scale):
        if self.bshd:      # Q, K, V [B, S, H, D]; scores from bhsd views; output back to [B, S, H, D]
            query = op.Transpose(query, perm=[0, 2, 1, 3])
            v = op.Transpose(value, perm=[0, 2, 1, 3])
            key_t = op.Transpose(key, perm=[0, 2, 3, 1])
        else:
            v = value
            # torch's SDPA decomposition: K [B, H, S, D] -> [B*H, S, D] -> [B*H, D, S] -> [B, H, D, S]
            key_3d_t = op.Reshape(op.Transpose(op.Reshape(key, pattern.ANY_VALUE), perm=[0, 2, 1]), pattern.ANY_VALUE)
            key_t = pattern.OrValue([op.Transpose(key, perm=[0, 1, 3, 2]), key_3d_t, op.Transpose(key, perm=[0, 2, 1]),
                                     op.Transpose(key, perm=[0, 2, 3, 1])],
                                    tag_var="key_format", tag_values=["bhsd", "bhsd4", "bhsd", "bshd"])
        query = pattern.OrValue([op.Mul(query, query_scale), op.Div(query, query_scale), query],
                                tag_var="query_scaling", tag_values=["Mul", "Div", None])
        key_t = pattern.OrValue([op.Mul(key_t, key_scale), op.Div(key_t, key_scale), key_t],
                                tag_var="key_scaling", tag_values=["Mul", "Div", None])
        scores = op.MatMul(query, key_t)
        scores = pattern.OrValue([op.Mul(scores, qk_scale), op.Div(scores, qk_scale), scores],
                                 tag_var="qk_scaling", tag_values=["Mul", "Div", None])
        scores = pattern.OrValue([op.Add(scores, mask), op.Where(cond, scores, fill), scores],
                                 tag_var="mask_kind", tag_values=["add", "where", None])
        probs = op.Softmax(scores, _outputs=["probs"])
        probs = pattern.OrValue([op.Where(op.IsNaN(probs), 0.0, probs), probs])
        out = op.MatMul(probs, v)
        if self.bshd:
            out = op.Transpose(out, perm=[0, 2, 1, 3])
        return out

    def check(self, context, query, key, value, probs, mask_kind=None, key_format="bshd", **b) -> pattern.MatchResult:
        result = pattern.MatchResult()
        self._plan = None
        anchor = context.root
        reason, plan = guarded(self._check, query, key, value, probs, mask_kind, key_format, b)
        if reason is not None:
            if not self.bshd:
                self.pending[id(anchor)] = (anchor, reason)
            return result.fail(reason)
        consts = [b.get(n) for n in ("mask", "cond", "fill", "query_scale", "key_scale", "qk_scale")]
        self._plan = (plan, anchor, [c for c in consts if c is not None])
        return result

    def _check(self, query, key, value, probs, mask_kind, key_format, b):
        if key_format == "bshd" and not self.bshd:
            return ("K is transposed [B, S, H, D] -> [B, H, D, S] but Q, V or the output are not the matching "
                    "Transposes of [B, S, H, D] values: a Transpose would be added"), None
        if b.get("query_scaling") == "Mul" and const_array(b["query_scale"]) is None and const_array(query) is not None:
            query, b["query_scale"] = b["query_scale"], query     # the commuted match of Mul(Q, scale)
        if key_format == "bhsd4":
            k4, v4 = _unrepeat_kv(key), _unrepeat_kv(value)
            if k4 is not None and v4 is not None:       # repeat_kv (GQA) undone: AttentionFlash maps the heads
                key, value = k4, v4
            if _rank(key) != 4 or _rank(query) != 4:
                return "K is transposed through 3-D Reshapes but Q or K is not known to be 4-D", None
            key_format = "bhsd"
        softmax = probs.producer()
        axis = softmax.attributes.get_int("axis", -1 if self.ctx.model.opset_imports.get("", 13) >= 13 else 1)
        rank = 4 if key_format == "bshd" or _rank(key) in (None, 4) else _rank(key)
        if axis not in (-1, rank - 1):
            return f"Softmax over axis {axis}, not the keys' (last) axis", None
        reason = _check_type(query, key, value)
        if reason:
            return reason, None
        for name, x in (("Q", query), ("V", value)):
            if _rank(x) is not None and _rank(x) != rank:
                return f"{name} has rank {_rank(x)}, K^T rank {rank}: broadcasting batch matmuls are not mapped", None
        scale = 1.0
        for tag, name in (("query_scaling", "query_scale"), ("key_scaling", "key_scale"), ("qk_scaling", "qk_scale")):
            kind = b.get(tag)
            if kind is None:
                continue
            c = const_array(b.get(name))
            if c is None or c.size != 1:
                return f"the {kind} of the scores by '{b[name].name}' is not by a constant scalar", None
            c = float(np.asarray(c, np.float64).reshape(()))
            if not np.isfinite(c) or c == 0.0:
                return f"the {kind} of the scores by {c:g}: not a finite nonzero scale", None
            scale *= c if kind == "Mul" else 1.0 / c
        if not np.isfinite(scale) or scale == 0.0:  # AttentionFlash's scale 0 means 1/sqrt(D)
            return f"scale {scale:g}: AttentionFlash takes a finite nonzero scale", None
        causal = False
        if mask_kind is not None:
            m = b.get("mask") if mask_kind == "add" else b.get("cond")
            arr = _mask_array(m)  # a Where it reads through goes with the other dead nodes (rewrite_model)
            if arr is None:
                return (f"the mask '{m.name}' is computed at run time (padding or other mask): AttentionFlash "
                        "takes no mask"), None
            if mask_kind == "where":
                fill = const_array(b.get("fill"))
                if fill is None or fill.size != 1 or not float(np.asarray(fill, np.float64).reshape(())) <= MASKED:
                    return "Where's fill value is not a constant large negative", None
            seq = 1 if key_format == "bshd" else rank - 2
            sq = query.shape[seq] if query.shape is not None else None
            sk = key.shape[seq] if key.shape is not None else None
            reason, causal = classify_mask(arr, sq, sk, keep=mask_kind == "where")
            if reason:
                return reason, None
        if _dtype(query) is None:  # (a query no node or graph input produces: found by test_fuzz.py)
            return "the element type of the query is unknown", None
        return None, _Plan(query, key, value, causal, scale, "bshd" if self.bshd else "bhsd", _dtype(query))

    def rewrite(self, op, **_):
        (plan, anchor, consts), self._plan = self._plan, None
        self.report.add_replaced(anchor)
        self.ctx.maybe_unused.extend(consts)
        attrs = dict(layout=plan.layout, out_dtype=int(plan.dtype), scale=float(plan.scale))
        return op.op("AttentionFlashCausal" if plan.causal else "AttentionFlash", plan.q, plan.k, plan.v,
                     _domain=KAIO_DOMAIN, _version=KAIO_OPSET, **attrs)


def _apply_decomposed(ctx: Context, report: RuleReport) -> bool:
    pending: dict = {}
    rules = pattern.RewriteRuleSet([DecomposedAttention.rule(ctx, report, pending, True),
                                    DecomposedAttention.rule(ctx, report, pending, False)], commute=True)
    count = rules.apply_to_model(ctx.model)
    for anchor, reason in pending.values():
        if anchor.graph is not None:
            report.add_left_alone([anchor], "MatMul/Softmax/MatMul", reason)
    return count > 0


def _infer_shapes(model: ir.Model) -> None:
    """ONNX shape inference into the model's values (exporters often leave intermediate ranks unknown);
    best effort: a model it cannot handle is matched with the shapes it has."""
    from onnx_ir.passes.common import ShapeInferencePass

    declared = [(v, v.shape, v.type) for v in model.graph.outputs]     # graph outputs keep what they declared
    try:
        result = ShapeInferencePass(strict_mode=False)(model)
    except Exception:       # noqa: BLE001 -- shapes are a help here, not a requirement
        return
    assert result.model is model
    for v, shape, type_ in declared:
        v.shape, v.type = shape, type_


def apply(ctx: Context, report: RuleReport) -> None:
    """Rewrites every attention of ctx.model that maps; fills `report`."""
    ctx.use_kaio_opset()
    if any(n.op_type in ("Softmax", "Attention", "MultiHeadAttention", "GroupQueryAttention")
           for n in ir.traversal.RecursiveGraphIterator(ctx.model.graph)):
        _infer_shapes(ctx.model)
    _apply_single_node(ctx, report, _Builder(ctx))
    _apply_decomposed(ctx, report)
