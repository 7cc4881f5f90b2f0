"""Rules over every op the library registers a CUDA kernel for (issue 10), so a new CUDA op cannot
land without them: each has a CUDA-graph capture/replay test (gpu_harness.cuda_graph_test), and
each refuses a GPU older than compute capability 8.0 when the session is created, naming the op,
the node and the rule (KAIO_ORT_ASSUME_SM makes the check see an older GPU)."""
from __future__ import annotations

import glob
import importlib
import os

import numpy as np
import pytest
from gpu_harness import GRAPH_TESTED_OPS, cuda_session
from op_harness import BF16, CUDA, build_model, randn, rng

import kaio_ort
from kaio_ort.reference import quantize_int4, quantize_int8

pytestmark = pytest.mark.gpu


def cuda_ops() -> set[str]:
    return {name for name, info in kaio_ort.ops().items() if CUDA in info.providers}


def test_every_cuda_op_has_a_cuda_graph_test():
    here = os.path.dirname(__file__)
    for path in sorted(glob.glob(os.path.join(here, "test_*_gpu.py"))):
        importlib.import_module(os.path.basename(path)[:-3])  # registers its cuda_graph_test ops
    missing = cuda_ops() - GRAPH_TESTED_OPS
    assert not missing, f"CUDA ops without a CUDA-graph replay test: {sorted(missing)}"


def _int4_weights(g, k, n):
    b, s, _ = quantize_int4(g.standard_normal((k, n)), 128)
    return b, s.astype(np.float16)


def _int8_weights(g, k, n):
    w, s, _ = quantize_int8(g.standard_normal((k, n)))
    return w, s.reshape(n).astype(np.float32)


def small_node(op: str, g) -> tuple[list, list]:
    """A small valid node of `op`: (inputs, output types)."""
    if op.startswith("MatmulTc"):
        t = BF16 if "Bf16" in op else np.float16
        return [randn(g, (4, 32), t), randn(g, (32, 16), t)], [np.float32]
    if op in ("AttentionFlash", "AttentionFlashCausal"):
        return [randn(g, (1, 2, 8, 64), np.float16) for _ in range(3)], [np.float32]
    if op == "MatmulInt4":
        b, s = _int4_weights(g, 128, 16)
        return [randn(g, (2, 128), np.float16), b, s], [np.float32]
    if op == "MatmulInt8":
        w, s = _int8_weights(g, 64, 16)
        return [randn(g, (2, 64), np.float16), w, s.reshape(1, 16).astype(np.float16)], [np.float32]
    if op in ("QkvProjectInt4", "QkvProjectInt8"):
        weights = _int4_weights if op == "QkvProjectInt4" else _int8_weights
        ws, ss = zip(*(weights(g, 128, n) for n in (32, 16, 16)))
        return [randn(g, (2, 128), np.float16), *ws, *ss], [np.float16] * 3
    raise KeyError(f"{op}: add a small node for it here")


@pytest.mark.parametrize("op", sorted(cuda_ops()) if kaio_ort.cuda_usable() else [])
def test_pre_ampere_gpu_is_refused_at_session_creation(op, monkeypatch):
    inputs, out_types = small_node(op, rng())
    model = build_model(op, inputs, {}, out_types)
    cuda_session(model)  # valid on this GPU
    monkeypatch.setenv("KAIO_ORT_ASSUME_SM", "75")
    rule = r"CUDA kernels need compute capability 8\.0 or newer; device \d+ has 7\.5"
    with pytest.raises(Exception, match=rf"\[com\.kaio\.{op}\] node '{op}_\d+': {rule}"):
        cuda_session(model)
