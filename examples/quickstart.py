"""kaio_ort in a few lines: a model with com.kaio ops, run by ONNX Runtime.

Builds a small attention block (MatmulTc projection -> AttentionFlashCausal), runs it on the CUDA
execution provider when this machine has one (CPU otherwise), and checks it against kaio_ort's
float64 numpy reference. Usage: python examples/quickstart.py
"""
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

import kaio_ort
from kaio_ort.reference import attention, matmul

B, H, S, D = 1, 4, 33, 64
rng = np.random.default_rng()
x = rng.standard_normal((B * H * S, D)).astype(np.float16)
w = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float16)
k = rng.standard_normal((B, H, S, D)).astype(np.float16)
v = rng.standard_normal((B, H, S, D)).astype(np.float16)

nodes = [
    helper.make_node("MatmulTc", ["x", "w"], ["q_flat"], domain="com.kaio", out_dtype=TensorProto.FLOAT16),
    helper.make_node("Reshape", ["q_flat", "shape"], ["q"]),
    helper.make_node("AttentionFlashCausal", ["q", "k", "v"], ["o"], domain="com.kaio", out_dtype=TensorProto.FLOAT16),
]
graph = helper.make_graph(
    nodes, "quickstart",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT16, x.shape),
     helper.make_tensor_value_info("k", TensorProto.FLOAT16, k.shape),
     helper.make_tensor_value_info("v", TensorProto.FLOAT16, v.shape)],
    [helper.make_tensor_value_info("o", TensorProto.FLOAT16, [B, H, S, D])],
    initializer=[helper.make_tensor("w", TensorProto.FLOAT16, w.shape, w.tobytes(), raw=True),
                 helper.make_tensor("shape", TensorProto.INT64, [4], [B, H, S, D])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.kaio", 1)],
                          ir_version=8)

so = kaio_ort.register(ort.SessionOptions())          # the one line: com.kaio ops in this session
sess = ort.InferenceSession(model.SerializeToString(), so, providers=kaio_ort.default_providers())
(o,) = sess.run(None, {"x": x, "k": k, "v": v})

q_ref = matmul(x, w).astype(np.float16).reshape(B, H, S, D)
o_ref, _ = attention(q_ref, k, v, causal=True)
err = np.linalg.norm(o.astype(np.float64) - o_ref) / np.linalg.norm(o_ref)
print(f"kaio_ort {kaio_ort.__version__} on {sess.get_providers()[0]}: "
      f"{len(kaio_ort.ops())} com.kaio ops registered; attention block output {o.shape}, "
      f"relative error vs float64 reference {err:.1e}")
assert err < 1e-2, "result differs from the reference"
