"""Training with com.kaio ops (kaio_ort.training): ORT training artifacts of a tiny transformer block
whose matmuls and attention are com.kaio ops, trained with ORT's training API; the gradient graph of
every registered op against the float64 references; the forward + backward graph for a plain
InferenceSession (build_training_graph).

The ORT training tests need onnxruntime-training (1.19.2, CPU) and torch in their own virtual
environment (CI: .venv-training); elsewhere they are skipped with the reason.
"""
from __future__ import annotations

import importlib.util
import os

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from op_harness import assert_close, rel_err

import kaio_ort
from kaio_ort import training as kt
from kaio_ort.reference import attention, attention_grad, matmul, matmul_grad


def _training_missing() -> str | None:
    from onnxruntime.capi import _pybind_state as C

    if not hasattr(C, "register_gradient_definition"):
        return f"onnxruntime {ort.__version__} is not a training build (needs onnxruntime-training-cpu 1.19.2)"
    if importlib.util.find_spec("torch") is None:
        return "onnxruntime.training needs torch importable"
    try:
        import onnxruntime.training.api  # noqa: F401
        from onnxruntime.training import artifacts  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"onnxruntime.training does not import: {e}"
    return None


_MISSING = _training_missing()
needs_training = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
pytestmark = pytest.mark.training

B, S, D, H, F = 2, 8, 32, 2, 64
DH = D // H
ATT_SCALE = 0.3
PARAMS = ("wq", "wk", "wv", "wo", "w1", "w2")


def _init_params(seed=0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    shapes = {"wq": (D, D), "wk": (D, D), "wv": (D, D),  # [K, N]: trans_b 0
              "wo": (D, D), "w1": (F, D), "w2": (D, F)}  # [N, K] (torch Linear layout): trans_b 1
    return {k: (g.standard_normal(s) / np.sqrt(s[1] if k in ("wo", "w1", "w2") else s[0])).astype(np.float32)
            for k, s in shapes.items()}


def _task(seed=1):
    g = np.random.default_rng(seed)
    x = g.standard_normal((B, S, D)).astype(np.float32)
    target = (0.5 * g.standard_normal((B, S, D))).astype(np.float32)
    return x, target


def tiny_block(params: dict[str, np.ndarray]) -> onnx.ModelProto:
    """x [B, S, D] f32 -> y: causal self-attention (2 heads, bshd) + ReLU MLP, both residual. Parameters
    f32, Cast to f16 for the MatmulTc ops (f32 outputs); attention in f32."""
    kaio = kaio_ort.DOMAIN
    n = []
    cast16 = lambda a, b: n.append(helper.make_node("Cast", [a], [b], to=T.FLOAT16))  # noqa: E731
    for p in PARAMS:
        cast16(p, p + "_h")
    cast16("x", "x_h")
    n += [
        helper.make_node("MatmulTc", ["x_h", "wq_h"], ["q"], domain=kaio, name="q_proj"),
        helper.make_node("MatmulTcAsync", ["x_h", "wk_h"], ["k"], domain=kaio, name="k_proj"),
        helper.make_node("MatmulTc", ["x_h", "wv_h"], ["v"], domain=kaio, name="v_proj"),
        helper.make_node("Reshape", ["q", "heads_shape"], ["q4"]),
        helper.make_node("Reshape", ["k", "heads_shape"], ["k4"]),
        helper.make_node("Reshape", ["v", "heads_shape"], ["v4"]),
        helper.make_node("AttentionFlashCausal", ["q4", "k4", "v4"], ["o4"], domain=kaio, name="attn",
                         layout="bshd", scale=ATT_SCALE),
        helper.make_node("Reshape", ["o4", "model_shape"], ["o"]),
    ]
    cast16("o", "o_h")
    n += [helper.make_node("MatmulTcAsync", ["o_h", "wo_h"], ["a"], domain=kaio, name="o_proj", trans_b=1),
          helper.make_node("Add", ["x", "a"], ["h1"])]
    cast16("h1", "h1_h")
    n += [helper.make_node("MatmulTc", ["h1_h", "w1_h"], ["f"], domain=kaio, name="fc1", trans_b=1),
          helper.make_node("Relu", ["f"], ["r"])]
    cast16("r", "r_h")
    n += [helper.make_node("MatmulTcAsync", ["r_h", "w2_h"], ["m"], domain=kaio, name="fc2", trans_b=1),
          helper.make_node("Add", ["h1", "m"], ["y"])]
    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    inits += [numpy_helper.from_array(np.array([B, S, H, DH], np.int64), "heads_shape"),
              numpy_helper.from_array(np.array([B, S, D], np.int64), "model_shape")]
    graph = helper.make_graph(n, "tiny_block", [helper.make_tensor_value_info("x", T.FLOAT, [B, S, D])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [B, S, D])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(kaio, 1)],
                             ir_version=8)


def torch_block_loss(params: dict[str, np.ndarray], x: np.ndarray, target: np.ndarray):
    """The same block in torch, with the same float16 roundings (Cast to half before every MatmulTc,
    whose product and gradients are f32 then rounded to the operands' half type); returns
    (loss, {param: grad})."""
    import torch

    p = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x)
    h = lambda t: t.half().float()  # noqa: E731  Cast(f16) then the kernel's exact widening

    def mm(a, w, trans_b=False):
        w = h(w)
        return h(a) @ (w.T if trans_b else w)

    q, k, v = (mm(xt, p[w]).reshape(B, S, H, DH).transpose(1, 2) for w in ("wq", "wk", "wv"))
    s = ATT_SCALE * q @ k.transpose(-1, -2)
    s = s.masked_fill(~torch.tril(torch.ones(S, S, dtype=torch.bool)), float("-inf"))
    o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, S, D)
    h1 = xt + mm(o, p["wo"], True)
    y = h1 + mm(torch.relu(mm(h1, p["w1"], True)), p["w2"], True)
    loss = torch.mean((y - torch.tensor(target)) ** 2)
    loss.backward()
    return float(loss.detach()), {k: t.grad.numpy().astype(np.float64) for k, t in p.items()}


def _module(art, so=None):
    from onnxruntime.training.api import CheckpointState, Module, Optimizer

    state = CheckpointState.load_checkpoint(os.path.join(art, "checkpoint"))
    so = kaio_ort.register(so or ort.SessionOptions())
    module = Module(os.path.join(art, "training_model.onnx"), state, os.path.join(art, "eval_model.onnx"),
                    session_options=so)
    return state, module, Optimizer(os.path.join(art, "optimizer_model.onnx"), module)


@needs_training
def test_tiny_block_trains_and_first_gradients_match_torch(tmp_path):
    from onnxruntime.training import artifacts

    params = _init_params()
    x, target = _task()
    kt.generate_artifacts(tiny_block(params), requires_grad=list(PARAMS), loss=artifacts.LossType.MSELoss,
                          optimizer=artifacts.OptimType.AdamW, artifact_directory=tmp_path)
    tm = onnx.load(tmp_path / "training_model.onnx")
    grads = {(n.op_type, n.name.split("_Grad/")[0]): {a.name: helper.get_attribute_value(a) for a in n.attribute}
             for n in tm.graph.node if n.domain == kaio_ort.DOMAIN and n.op_type.endswith("Grad")}
    assert grads[("MatmulTcGrad", "q_proj")]["trans_b"] == 0
    assert grads[("MatmulTcGrad", "fc1")]["trans_b"] == 1
    attn = grads[("AttentionFlashGrad", "attn")]
    assert (attn["causal"], attn["layout"], attn["scale"]) == (1, b"bshd", pytest.approx(ATT_SCALE))

    state, module, optimizer = _module(str(tmp_path))
    optimizer.set_learning_rate(0.01)
    module.train()
    losses = []
    for step in range(50):
        losses.append(float(module(x, target)))
        if step == 0:
            ref_loss, ref_grads = torch_block_loss(params, x, target)
            assert losses[0] == pytest.approx(ref_loss, rel=1e-4)
            for name in PARAMS:
                assert_close(state.parameters[name].grad, ref_grads[name], 1e-3, f"d{name}")
        optimizer.step()
        module.lazy_reset_grad()
    print("losses", losses[0], losses[-1])
    assert losses[-1] * 5 <= losses[0], f"loss fell from {losses[0]:.4f} to {losses[-1]:.4f} only"


# --- the gradient graph of every registered op, one-op models, against the float64 references ---

def _one_op_model(op, attrs, params: dict, dtype, out_shape) -> onnx.ModelProto:
    """f32 parameters -> Cast to `dtype` (when not f32) -> op -> Y f32."""
    kaio = kaio_ort.DOMAIN
    nodes, ins = [], []
    for k in params:
        if dtype == np.float32:
            ins.append(k)
        else:
            nodes.append(helper.make_node("Cast", [k], [k + "_c"], to=T.FLOAT16 if dtype == np.float16 else T.BFLOAT16))
            ins.append(k + "_c")
    nodes.append(helper.make_node(op, ins, ["y"], domain=kaio, name="the_op", **attrs))
    graph = helper.make_graph(nodes, "one_op", [], [helper.make_tensor_value_info("y", T.FLOAT, out_shape)],
                              [numpy_helper.from_array(v, k) for k, v in params.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(kaio, 1)],
                             ir_version=8)


def _rounded(x, dtype):
    return np.asarray(x, np.float32).astype(dtype).astype(np.float64)


def _mse_grads_training(tmp_path, model, target):
    """Gradients of mean((y - target)^2) w.r.t. every initializer, from ORT training artifacts."""
    from onnxruntime.training import artifacts

    names = [t.name for t in model.graph.initializer]
    kt.generate_artifacts(model, requires_grad=names, loss=artifacts.LossType.MSELoss,
                          optimizer=artifacts.OptimType.AdamW, artifact_directory=tmp_path)
    state, module, _ = _module(str(tmp_path))
    module.train()
    module(target)
    return {k: state.parameters[k].grad for k in names}


MM_CASES = [(op, dt, tb) for op, dt in (("MatmulTc", np.float16), ("MatmulTcAsync", np.float16),
                                        ("MatmulTcBf16", ml_dtypes.bfloat16), ("MatmulTcBf16Async", ml_dtypes.bfloat16))
            for tb in (0, 1)]
GRAD_TOL = {np.float16: 1e-3, ml_dtypes.bfloat16: 8e-3, np.float32: 1e-5}


@needs_training
@pytest.mark.parametrize("op,dtype,trans_b", MM_CASES)
def test_matmul_gradient_graph(tmp_path, op, dtype, trans_b):
    g = np.random.default_rng(3)
    a = g.standard_normal((2, 5, 24)).astype(np.float32)
    b = g.standard_normal((7, 24) if trans_b else (24, 7)).astype(np.float32)
    target = g.standard_normal((2, 5, 7)).astype(np.float32)
    grads = _mse_grads_training(tmp_path, _one_op_model(op, {"trans_b": trans_b}, {"a": a, "b": b}, dtype, [2, 5, 7]),
                                target)
    ar, br = _rounded(a, dtype), _rounded(b, dtype)
    dy = 2 * (matmul(ar, br, bool(trans_b)) - target) / target.size
    ref_da, ref_db = matmul_grad(dy, ar, br, bool(trans_b))
    assert_close(grads["a"], ref_da, GRAD_TOL[dtype], f"{op} dA")
    assert_close(grads["b"], ref_db, GRAD_TOL[dtype], f"{op} dB")


ATT_CASES = [("AttentionFlash", "bhsd", 0.0), ("AttentionFlashCausal", "bhsd", 0.4),
             ("AttentionFlash", "bshd", 0.25), ("AttentionFlashCausal", "bshd", 0.0)]


@needs_training
@pytest.mark.parametrize("op,layout,scale", ATT_CASES)
def test_attention_gradient_graph(tmp_path, op, layout, scale):
    g = np.random.default_rng(4)
    bhsd = lambda sq, h: (2, h, sq, 16) if layout == "bhsd" else (2, sq, h, 16)  # noqa: E731
    q = g.standard_normal(bhsd(5, 4)).astype(np.float32)
    k = g.standard_normal(bhsd(7, 2)).astype(np.float32)  # GQA, Sq < Sk (bottom-right causal)
    v = g.standard_normal(bhsd(7, 2)).astype(np.float32)
    causal = op.endswith("Causal")
    o_ref, _ = attention(q, k, v, scale, causal, layout)
    target = g.standard_normal(o_ref.shape).astype(np.float32)
    grads = _mse_grads_training(tmp_path, _one_op_model(op, {"layout": layout, "scale": scale}, {"q": q, "k": k, "v": v},
                                                        np.float32, list(o_ref.shape)), target)
    do = 2 * (o_ref - target) / target.size
    for name, ref in zip("qkv", attention_grad(do, q, k, v, scale, causal, layout)):
        assert_close(grads[name], ref, 1e-5, f"{op} d{name.upper()}")


# --- checks that need no training build ---

def test_gradient_through_a_quantized_op_is_refused_naming_op_and_node():
    g = np.random.default_rng(5)
    w = g.standard_normal((16, 16)).astype(np.float32)
    wq = g.integers(-8, 8, (16, 8)).astype(np.int8)
    nodes = [helper.make_node("Cast", ["x"], ["xh"], to=T.FLOAT16),
             helper.make_node("Cast", ["w"], ["wh"], to=T.FLOAT16),
             helper.make_node("MatmulTc", ["xh", "wh"], ["h"], domain=kaio_ort.DOMAIN, name="lora", out_dtype=10),
             helper.make_node("MatmulInt8", ["h", "wq", "s"], ["y"], domain=kaio_ort.DOMAIN, name="frozen_proj")]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", T.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [4, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(wq, "wq"),
                               numpy_helper.from_array(np.ones((1, 8), np.float16), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(kaio_ort.DOMAIN, 1)])
    with pytest.raises(ValueError, match=r"com\.kaio\.MatmulInt8\] node 'frozen_proj'"):
        kt.check_differentiable(model, ["w"])
    kt.check_differentiable(model, [])  # nothing trainable upstream: fine


def test_add_lse_outputs_is_idempotent_and_turns_attention_tc_into_flash():
    nodes = [helper.make_node("AttentionTcCausal", ["q", "k", "v"], ["o"], domain=kaio_ort.DOMAIN),
             helper.make_node("AttentionFlash", ["q", "k", "v"], ["o2", "lse2"], domain=kaio_ort.DOMAIN, name="f")]
    vi = [helper.make_tensor_value_info(n, T.FLOAT16, [2, 8, 16]) for n in "qkv"]
    graph = helper.make_graph(nodes, "a", vi, [helper.make_tensor_value_info("o", T.FLOAT, None)])
    model = kt.add_lse_outputs(helper.make_model(graph))
    first = [(n.op_type, list(n.output)) for n in model.graph.node]
    assert first[0][0] == "AttentionFlashCausal" and len(first[0][1]) == 2 and first[1][1] == ["o2", "lse2"]
    assert [(n.op_type, list(n.output)) for n in kt.add_lse_outputs(model).graph.node] == first


@pytest.mark.skipif(hasattr(ort.capi._pybind_state, "register_gradient_definition"),
                    reason="onnxruntime here is a training build (its gradient registry exists)")
def test_register_gradients_without_training_build_names_onnxruntime_training():
    with pytest.raises(ImportError, match="onnxruntime-training"):
        kt.register_gradients()


# --- forward + backward graph in a plain InferenceSession (onnxruntime-gpu: no training build) ---

def _with_mse_loss(model: onnx.ModelProto) -> onnx.ModelProto:
    m = copy_model(model)
    y = m.graph.output[0].name
    m.graph.input.append(helper.make_tensor_value_info("target", T.FLOAT, [B, S, D]))
    m.graph.node.extend([helper.make_node("Sub", [y, "target"], ["diff"]),
                         helper.make_node("Mul", ["diff", "diff"], ["sq"]),
                         helper.make_node("ReduceMean", ["sq"], ["loss"], keepdims=0)])
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("loss", T.FLOAT, []))
    return m


def copy_model(m):
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


@pytest.mark.parametrize("provider", ["CPUExecutionProvider", pytest.param("CUDAExecutionProvider", marks=pytest.mark.gpu)])
def test_plain_session_training_graph_learns_and_matches_torch(provider):
    """50 AdamW steps of the tiny block's forward + backward graph in a plain InferenceSession; the
    first step's loss and gradients against torch autograd. On the GPU the com.kaio matmuls and their
    MatmulTcGrad nodes run on the CUDA EP (checked: our matmul kernels launch) and the block's float32
    attention nodes on the CPU EP."""
    params = _init_params()
    x, target = _task()
    train = kt.build_training_graph(_with_mse_loss(tiny_block(params)), list(PARAMS))
    assert [o.name for o in train.graph.output] == ["loss"] + [p + "_grad" for p in PARAMS]
    so = kaio_ort.register(ort.SessionOptions())
    so.log_severity_level = 3
    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    sess = ort.InferenceSession(train.SerializeToString(), so, providers=providers)
    p = {k: v.copy() for k, v in params.items()}
    if provider == "CUDAExecutionProvider":
        from gpu_harness import launched_kernels

        names = launched_kernels(lambda: sess.run(None, {"x": x, "target": target, **p}))
        assert any("kaio::matmul" in n for n in names), names
    state, losses = {}, []
    for step in range(50):
        loss, *grads = sess.run(None, {"x": x, "target": target, **p})
        losses.append(float(loss))
        if step == 0 and importlib.util.find_spec("torch") is not None:
            ref_loss, ref_grads = torch_block_loss(params, x, target)
            assert losses[0] == pytest.approx(ref_loss, rel=1e-4)
            for name, gr in zip(PARAMS, grads):
                assert_close(gr, ref_grads[name], 1e-3, f"d{name}")
        kt.adamw_step(p, dict(zip(PARAMS, grads)), state, lr=0.01)
    assert losses[-1] * 5 <= losses[0], f"loss fell from {losses[0]:.4f} to {losses[-1]:.4f} only"


def test_plain_session_gradients_of_one_ops_match_references():
    g = np.random.default_rng(6)
    a = g.standard_normal((3, 16)).astype(np.float32)
    b = g.standard_normal((9, 16)).astype(np.float32)
    q = g.standard_normal((2, 6, 8)).astype(np.float32)
    kv = g.standard_normal((1, 6, 8)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["a"], ["ah"], to=T.BFLOAT16), helper.make_node("Cast", ["b"], ["bh"], to=T.BFLOAT16),
             helper.make_node("MatmulTcBf16", ["ah", "bh"], ["y"], domain=kaio_ort.DOMAIN, trans_b=1),
             helper.make_node("AttentionFlashCausal", ["q", "kv", "kv"], ["o"], domain=kaio_ort.DOMAIN, scale=0.5),
             helper.make_node("ReduceSum", ["y"], ["s1"], keepdims=0),
             helper.make_node("Mul", ["o", "o"], ["o2"]),
             helper.make_node("ReduceSum", ["o2"], ["s2"], keepdims=0),
             helper.make_node("Add", ["s1", "s2"], ["loss"])]
    graph = helper.make_graph(nodes, "two", [], [helper.make_tensor_value_info("loss", T.FLOAT, [])],
                              [numpy_helper.from_array(v, k) for k, v in dict(a=a, b=b, q=q, kv=kv).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(kaio_ort.DOMAIN, 1)],
                              ir_version=8)
    train = kt.build_training_graph(model, ["a", "b", "q", "kv"])
    so = kaio_ort.register(ort.SessionOptions())
    so.log_severity_level = 3
    sess = ort.InferenceSession(train.SerializeToString(), so, providers=["CPUExecutionProvider"])
    _, da, db, dq, dkv = sess.run(None, {"a": a, "b": b, "q": q, "kv": kv})
    ar, br = _rounded(a, ml_dtypes.bfloat16), _rounded(b, ml_dtypes.bfloat16)
    ref_da, ref_db = matmul_grad(np.ones((3, 9)), ar, br, True)
    assert_close(da, ref_da, 8e-3, "dA")
    assert_close(db, ref_db, 8e-3, "dB")
    o, _ = attention(q, kv, kv, 0.5, True)
    rq, rk, rv = attention_grad(2 * o, q, kv, kv, 0.5, True)
    assert_close(dq, rq, 1e-5, "dQ")
    assert_close(dkv, rk + rv, 1e-5, "dKV")
