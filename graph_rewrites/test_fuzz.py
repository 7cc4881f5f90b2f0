"""A fuzzer for the rewrites: generated and mutated models around the MatMulNBits, Q/K/V and attention
patterns, each rewritten by kaio_ort.rewrites.rewrite_model.

The contract checked on every case:
- no crash: rewrite_model returns, or refuses the model with a ValueError (a clear message); any other
  exception is a bug;
- no rewrite that changes results: where the original model runs on ORT's CPU EP, a model in which
  something was replaced runs too and gives the same outputs (relative error <= 1e-2: the float16
  arithmetic of two different kernels) on every output a replaced node feeds (ORT is not run on
  cases with garbage attributes, resized weights or huge dims: it can crash on those itself, or
  read past a weight it did not validate; the reference sets accuracy_level 4 to 0, see _exact);
- rewrites keep the graph's outputs (names, types, shapes).

Cases: random MatMulNBits nodes (bits, block size, zero points, bias, g_idx, activation type, shapes),
groups of three reading one input (the Q/K/V fusion), the attention forms the rule maps (ONNX
Attention-23, MultiHeadAttention, GroupQueryAttention, the decomposed MatMul-Softmax-MatMul), MatMul /
Gemm with constant weights (the opt-in dense rule), each with random parameters; then, in most cases,
one to three mutations: an initializer replaced by one of another shape, an attribute set to a
garbage value (negative, zero, huge, wrong type), an input name cleared or pointing nowhere, an
initializer removed, a cycle, two nodes writing one value, a graph input dimension of 2^40.
KAIO_FUZZ_CASES sets the number of cases (default 1000; CI runs the default), KAIO_FUZZ_SEED the
seed. External data paths are tested separately below: a rewrite
never reads a file outside the model's folder.
"""
from __future__ import annotations

import os
import traceback

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import test_attention as att
from kaio_ort.packing import pack_int4, to_matmulnbits
from kaio_ort.rewrites import DEFAULT_RULES, rewrite_model
from rw_models import OPSETS, feeds_for, rel_err, session

CASES = int(os.environ.get("KAIO_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("KAIO_FUZZ_SEED", "0"))
TOL = 1e-2


# ---------------------------------------------------------------------------------------------------------
# Generators: each returns a ModelProto (valid most of the time; the parameters range past what the
# rules accept).
def _choice(r, xs):
    return xs[int(r.integers(len(xs)))]


def _nbits_weights(r, K, N, bits, block, zp):
    """MatMulNBits' B / scales / zero_points for random codes (through kaio_ort.packing where it applies,
    raw random bytes of the right shape otherwise)."""
    kb = -(-K // block)
    if bits in (4, 8) and block in (16, 32, 64, 128) and K % block == 0 and K % 8 == 0:
        if bits == 4 and block >= 32:
            q = r.integers(-8, 8, (K, N))
            w = to_matmulnbits(pack_int4(q), r.uniform(0.01, 0.1, (K // block, N)).astype(np.float16),
                               r.integers(-8, 8, (K // block, N)).astype(np.float16) if zp else None,
                               group_size=block, bits=4)
            return w.B, w.scales, w.zero_points
        if bits == 8:
            q = r.integers(-128, 128, (K, N)).astype(np.int8)
            w = to_matmulnbits(q, r.uniform(0.001, 0.01, (K // block, N)).astype(np.float16),
                               r.integers(-20, 20, (K // block, N)).astype(np.float16) if zp else None,
                               group_size=block, bits=8)
            return w.B, w.scales, w.zero_points
    blob = -(-block * bits // 8)
    B = r.integers(0, 256, (N, kb, blob), dtype=np.uint8)
    scales = r.uniform(0.01, 0.1, N * kb).astype(np.float16)
    zps = r.integers(0, 256, N * (-(-kb * bits // 8)), dtype=np.uint8) if zp else None
    return B, scales, zps


def gen_matmulnbits(r, count=None):
    """One to three MatMulNBits on one input X (three: a Q/K/V fusion candidate), maybe a bias Add each."""
    count = count or _choice(r, [1, 1, 2, 3, 3])
    K = _choice(r, [16, 32, 64, 96, 128, 200, 256])
    bits = _choice(r, [4, 4, 4, 8, 8, 2, 3])
    block = _choice(r, [16, 32, 32, 64, 128, 100])
    dtype = _choice(r, [np.float16, np.float16, np.float16, np.float32])
    t = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    M = _choice(r, [1, 3, "b"])
    nodes, inits, outputs = [], [], []
    zp = r.random() < 0.4
    for i in range(count):
        N = _choice(r, [1, 8, 13, 16, 64])
        B, scales, zps = _nbits_weights(r, K, N, bits, block, zp)
        inits += [numpy_helper.from_array(B, f"B{i}"),
                  numpy_helper.from_array(scales.astype(dtype) if scales.dtype != np.uint8 else scales, f"s{i}")]
        ins = ["X", f"B{i}", f"s{i}"]
        if zps is not None:
            inits.append(numpy_helper.from_array(zps.astype(dtype) if zps.dtype != np.uint8 else zps, f"z{i}"))
            ins.append(f"z{i}")
        if r.random() < 0.1:  # g_idx (act-order)
            ins += [""] * (4 - len(ins)) + [f"g{i}"]
            inits.append(numpy_helper.from_array((np.arange(K) // block).astype(np.int32), f"g{i}"))
        if r.random() < 0.15:  # bias input
            ins += [""] * (5 - len(ins)) + [f"bias{i}"]
            inits.append(numpy_helper.from_array(r.standard_normal(N).astype(dtype), f"bias{i}"))
        attrs = dict(K=K, N=N, bits=bits, block_size=block)
        if r.random() < 0.3:
            attrs["accuracy_level"] = int(_choice(r, [0, 1, 4]))
        out = f"Y{i}"
        nodes.append(helper.make_node("MatMulNBits", ins, [out], name=f"mnb{i}", domain="com.microsoft", **attrs))
        if r.random() < 0.3:  # a bias Add after the projection
            inits.append(numpy_helper.from_array(r.standard_normal(N).astype(dtype), f"add{i}"))
            nodes.append(helper.make_node("Add", [out, f"add{i}"], [f"Z{i}"], name=f"add{i}"))
            out = f"Z{i}"
        outputs.append(helper.make_tensor_value_info(out, t, [M, N]))
    g = helper.make_graph(nodes, "fuzz", [helper.make_tensor_value_info("X", t, [M, K])], outputs, inits)
    return helper.make_model(g, ir_version=8, opset_imports=OPSETS)


def gen_attention(r):
    """One attention form of graph_rewrites/test_attention.py with random parameters."""
    form = _choice(r, ["onnx", "mha", "gqa", "decomposed"])
    dtype = _choice(r, [np.float32, np.float16])
    if form == "onnx":
        hkv = _choice(r, [1, 2, 4])
        return att.onnx_attention(dtype=dtype, rank=_choice(r, [3, 4]), hq=_choice(r, [4, 8]), hkv=hkv,
                                  sq=_choice(r, [1, 5]), sk=_choice(r, [5, 7]), d=_choice(r, [8, 16]),
                                  is_causal=int(r.integers(2)))
    if form == "mha":
        return att.mha(dtype=dtype, h=_choice(r, [1, 2, 4]), sq=_choice(r, [1, 5]), sk=_choice(r, [5, 7]),
                       d=_choice(r, [8, 16]), unidirectional=int(r.integers(2)))
    if form == "gqa":
        s = _choice(r, [3, 6])
        return att.gqa(dtype=np.float16, hq=_choice(r, [2, 4]), hkv=_choice(r, [1, 2]), s=s, d=_choice(r, [8, 16]),
                       seqlens=r.integers(0, s, 2), past=bool(r.integers(2)))
    return att.decomposed(dtype=dtype, h=_choice(r, [2, 4]), sq=_choice(r, [1, 5]), sk=_choice(r, [5, 7]),
                          d=_choice(r, [8, 16]), layout=_choice(r, ["bhsd", "bshd"]),
                          scale=_choice(r, ["div", "mul"]))


def gen_dense(r):
    """A MatMul or Gemm with a constant weight (the opt-in dense rule's candidates), random transposes,
    alpha / beta / C, types and ranks."""
    dtype = _choice(r, [np.float16, np.float16, np.float32])
    t = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    K, N = _choice(r, [8, 16, 24]), _choice(r, [1, 8, 13])
    inits, nodes = [], []
    if r.random() < 0.5:
        lead = _choice(r, [[], [2], [2, 3]])
        w_lead = _choice(r, [[], lead[-1:]])
        trans = r.random() < 0.3
        w = r.standard_normal((*w_lead, N, K) if trans else (*w_lead, K, N)).astype(dtype)
        inits.append(numpy_helper.from_array(w, "W"))
        b = "W"
        if trans:
            nodes.append(helper.make_node("Transpose", ["W"], ["Wt"], name="tr",
                                          perm=list(range(len(w_lead))) + [len(w_lead) + 1, len(w_lead)]))
            b = "Wt"
        nodes.append(helper.make_node("MatMul", ["X", b], ["Y"], name="mm"))
        x_shape, y_shape = [*lead, 3, K], [*lead, 3, N]
    else:
        trans_b = int(r.integers(2))
        w = r.standard_normal((N, K) if trans_b else (K, N)).astype(dtype)
        inits.append(numpy_helper.from_array(w, "W"))
        ins = ["X", "W"]
        attrs = dict(transB=trans_b, alpha=float(_choice(r, [1.0, 0.5, 2.0, 0.3])),
                     beta=float(_choice(r, [1.0, 0.0, 0.7])))
        if r.random() < 0.6:
            inits.append(numpy_helper.from_array(r.standard_normal(N).astype(dtype), "C"))
            ins.append("C")
        nodes.append(helper.make_node("Gemm", ins, ["Y"], name="gemm", **attrs))
        x_shape, y_shape = [3, K], [3, N]
    g = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("X", t, x_shape)],
                          [helper.make_tensor_value_info("Y", t, y_shape)], inits)
    return helper.make_model(g, ir_version=8, opset_imports=OPSETS[:1])


# ---------------------------------------------------------------------------------------------------------
# Mutations of a ModelProto (in place).
def _garbage_attr(r, a):
    kind = _choice(r, ["neg", "zero", "huge", "string", "floats"])
    if kind == "string":
        return helper.make_attribute(a.name, "garbage")
    if kind == "floats":
        return helper.make_attribute(a.name, [0.5, -1.0])
    return helper.make_attribute(a.name, {"neg": -3, "zero": 0, "huge": 2**40}[kind])


def mutate(r, m):
    g = m.graph
    what = _choice(r, ["init_shape", "attr", "clear_input", "dangling_input", "drop_init", "cycle", "dup_output",
                       "huge_dim"])
    nodes = list(g.node)
    if what == "init_shape" and len(g.initializer):
        i = int(r.integers(len(g.initializer)))
        old = numpy_helper.to_array(g.initializer[i])
        shape = tuple(int(x) for x in r.integers(1, 9, max(1, old.ndim + int(r.integers(-1, 2)))))
        g.initializer[i].CopyFrom(numpy_helper.from_array(np.zeros(shape, old.dtype), g.initializer[i].name))
    elif what == "attr" and any(n.attribute for n in nodes):
        n = _choice(r, [n for n in nodes if n.attribute])
        j = int(r.integers(len(n.attribute)))
        n.attribute[j].CopyFrom(_garbage_attr(r, n.attribute[j]))
    elif what in ("clear_input", "dangling_input"):
        n = _choice(r, nodes)
        if n.input:
            n.input[int(r.integers(len(n.input)))] = "" if what == "clear_input" else "nowhere"
    elif what == "drop_init" and len(g.initializer):
        del g.initializer[int(r.integers(len(g.initializer)))]
    elif what == "cycle" and len(nodes) >= 1 and nodes[0].input and nodes[-1].output:
        nodes[0].input[0] = nodes[-1].output[0]
    elif what == "dup_output" and len(nodes) >= 2 and nodes[0].output and nodes[1].output:
        nodes[1].output[0] = nodes[0].output[0]
    elif what == "huge_dim" and len(g.input) and g.input[0].type.tensor_type.shape.dim:
        g.input[0].type.tensor_type.shape.dim[0].dim_value = 2**40
    return what


# ---------------------------------------------------------------------------------------------------------
def _original_outputs(m):
    """The original's outputs on the CPU EP with random inputs, or None where ORT cannot run it. An
    output that differs between two sessions of the original (ORT reading past a malformed weight
    tensor it did not validate) is None: there is no result to keep."""
    try:
        feeds = feeds_for(m, batch=2, seed=0)
        if any(v.size > 1 << 22 for v in feeds.values()):
            return None, None
        first, second = session(m).run(None, feeds), session(m).run(None, feeds)
    except Exception:  # noqa: BLE001 - ORT refusing a malformed model is not what is tested here
        return None, None
    return feeds, [a if np.array_equal(a, b, equal_nan=True) else None for a, b in zip(first, second)]


def _exact(m):
    """The reference model: the original with MatMulNBits' accuracy_level 4 (ORT quantizes A to int8)
    set to 0. The rewrite computes with A as given, by design (graph_rewrites/README.md, Decisions), so
    level 4's own rounding of A is not a result it must keep."""
    ref = onnx.ModelProto()
    ref.CopyFrom(m)
    for n in ref.graph.node:
        if n.op_type == "MatMulNBits":
            for a in n.attribute:
                if a.name == "accuracy_level" and a.type == onnx.AttributeProto.INT and a.i == 4:
                    a.i = 0
    return ref


def _outputs_reached(m, names):
    """The graph outputs of `m` that depend on a node named in `names`."""
    consumers = {}
    for n in m.graph.node:
        for v in n.input:
            consumers.setdefault(v, []).append(n)
    seen, todo = set(), [v for n in m.graph.node if n.name in names for v in n.output]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        todo += [o for n in consumers.get(v, []) for o in n.output]
    return {o.name for o in m.graph.output if o.name in seen}


def run_case(seed):
    """One generated (and maybe mutated) model through rewrite_model; returns a short outcome label.
    Raises AssertionError on a crash or a changed result."""
    r = np.random.default_rng([SEED, seed])
    kind = _choice(r, ["nbits", "nbits", "qkv", "attention", "dense"])
    try:
        m = {"qkv": lambda: gen_matmulnbits(r, 3), "nbits": lambda: gen_matmulnbits(r),
             "attention": lambda: gen_attention(r), "dense": lambda: gen_dense(r)}[kind]()
    except (ValueError, AssertionError):
        return "generator refused"  # (a parameter set the builders do not make; not a rewrite case)
    mutations = [mutate(r, m) for _ in range(int(r.integers(1, 4)))] if r.random() < 0.6 else []
    # ORT itself is not run on models with garbage attributes, resized weights or huge dims: it can crash
    # on them (GroupQueryAttention with num_heads 2^40 dies of SIGFPE in ORT 1.31) or read past a weight
    # it did not validate; those cases check the rewrite alone (no crash, outputs kept).
    unsafe = {"attr", "init_shape", "huge_dim"} & set(mutations)
    feeds, ref = (None, None) if unsafe else _original_outputs(_exact(m))
    rules = [*DEFAULT_RULES, "dense"] if kind == "dense" else None  # dense is opt-in
    try:
        out, report = rewrite_model(m, rules=rules)
    except ValueError:
        return "refused"
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"case {seed} ({kind}, mutations {mutations}): rewrite_model crashed: "
                             f"{type(e).__name__}: {e}\n{traceback.format_exc()}") from e
    assert [(o.name, o.type) for o in out.graph.output] == [(o.name, o.type) for o in m.graph.output], seed
    replaced = sum(report.replaced.values())
    if not replaced:
        return "nothing replaced"
    if ref is None:
        return "replaced (original not run)"
    # Compared: the outputs a replaced node feeds and no node left in place does (ORT runs a malformed
    # node it did not validate, e.g. a too-short weight tensor, reading past it: garbage in both models).
    replaced_names = {x for rr in report.rules.values() for names in rr.replaced_nodes for x in names}
    kept = {x for la in report.left_alone for x in la.nodes} - replaced_names
    compared = _outputs_reached(m, replaced_names) - _outputs_reached(m, kept)
    try:
        got = session(out).run(None, feeds)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"case {seed} ({kind}, mutations {mutations}): the original runs but the rewritten "
                             f"model does not: {type(e).__name__}: {e}") from e
    for o, a, b in zip(m.graph.output, ref, got):
        if a is None or o.name not in compared:
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, (seed, a.shape, b.shape)
        if a.size and np.all(np.isfinite(a)) and np.max(np.abs(a)) > 0:
            err = rel_err(b, a)
            assert err <= TOL, f"case {seed} ({kind}, mutations {mutations}): outputs changed, rel err {err:.2e}"
    return "replaced, same outputs"


def test_fuzz_rewrites():
    outcomes = {}
    for seed in range(CASES):
        label = run_case(seed)
        outcomes[label] = outcomes.get(label, 0) + 1
    print("\nfuzz outcomes:", outcomes)
    # At least 95 % of the cases are models the rewrite saw (the builders refuse a few parameter sets).
    assert CASES - outcomes.get("generator refused", 0) >= 0.95 * CASES, outcomes
    # The generators must exercise the rules, not only their refusals.
    assert outcomes.get("replaced, same outputs", 0) >= CASES // 10, outcomes


# ---------------------------------------------------------------------------------------------------------
# External data: a rewrite reads weights only from files inside the model's folder.
def _model_with_external(tmp_path, location):
    """MatMulNBits whose B lives in external data at `location` (relative to the model's folder)."""
    r = np.random.default_rng(7)
    w = to_matmulnbits(pack_int4(r.integers(-8, 8, (64, 16))), r.uniform(0.01, 0.1, (2, 16)).astype(np.float16), None,
                       group_size=32, bits=4)
    node = helper.make_node("MatMulNBits", ["X", "B0", "s0"], ["Y"], name="mnb", domain="com.microsoft", K=64, N=16,
                            bits=4, block_size=32)
    g = helper.make_graph([node], "ext", [helper.make_tensor_value_info("X", TensorProto.FLOAT16, [3, 64])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, [3, 16])],
                          [numpy_helper.from_array(w.B, "B0"), numpy_helper.from_array(w.scales, "s0")])
    m = helper.make_model(g, ir_version=8, opset_imports=OPSETS)
    b = m.graph.initializer[0]
    raw = numpy_helper.to_array(b).tobytes()
    target = (tmp_path / "model" / location).resolve() if not os.path.isabs(location) else location
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(raw)
    b.ClearField("raw_data")
    b.data_location = TensorProto.EXTERNAL
    del b.external_data[:]
    for k, v in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        e = b.external_data.add()
        e.key, e.value = k, v
    path = tmp_path / "model" / "model.onnx"
    os.makedirs(path.parent, exist_ok=True)
    onnx.save(m, str(path))
    return path


def test_external_data_inside_the_folder_is_read(tmp_path):
    path = _model_with_external(tmp_path, "weights.bin")
    _, report = rewrite_model(str(path))
    assert report.replaced["matmulnbits"] == 1


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    path = _model_with_external(tmp_path, location)
    with pytest.raises(ValueError, match="outside"):
        rewrite_model(str(path))


def test_external_data_absolute_path_is_refused(tmp_path):
    path = _model_with_external(tmp_path, str(tmp_path / "elsewhere" / "w.bin"))
    with pytest.raises(ValueError, match="outside|absolute"):
        rewrite_model(str(path))


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    path = _model_with_external(tmp_path, "../real.bin")
    os.symlink(tmp_path / "real.bin", path.parent / "link.bin")
    m = onnx.load(str(path), load_external_data=False)
    b = next(t for t in m.graph.initializer if t.name == "B0")
    next(e for e in b.external_data if e.key == "location").value = "link.bin"
    onnx.save(m, str(path))
    with pytest.raises(ValueError, match="outside"):
        rewrite_model(str(path))


def test_external_data_in_a_model_proto_is_refused(tmp_path):
    """A ModelProto whose external data was not loaded has no folder to bound its paths: refused
    (load it with its data, or pass its path)."""
    path = _model_with_external(tmp_path, "weights.bin")
    m = onnx.load(str(path), load_external_data=False)
    with pytest.raises(ValueError, match="external data"):
        rewrite_model(m)
