"""Rules over every op the library registers a CUDA kernel for (issue 10), so a new CUDA op cannot
land without them: each has a CUDA-graph capture/replay test (gpu_harness.cuda_graph_test), and
each refuses a GPU older than compute capability 8.0 when the session is created, naming the op,
the node and the rule (KAIO_ORT_ASSUME_SM makes the check see an older GPU), shown on its small node
(tests/small_nodes.py)."""
from __future__ import annotations

import glob
import importlib
import os

import pytest
from gpu_harness import GRAPH_TESTED_OPS, cuda_session
from op_harness import CUDA, build_model, rng
from small_nodes import SMALL_NODES

import kaio_ort

pytestmark = pytest.mark.gpu


def cuda_ops() -> set[str]:
    return {name for name, info in kaio_ort.ops().items() if CUDA in info.providers}


def test_every_cuda_op_has_a_small_node():
    missing = cuda_ops() - set(SMALL_NODES)
    assert not missing, f"CUDA ops without a small node in tests/small_nodes.py: {sorted(missing)}"


def test_every_cuda_op_has_a_cuda_graph_test():
    here = os.path.dirname(__file__)
    for path in sorted(glob.glob(os.path.join(here, "test_*_gpu.py"))):
        importlib.import_module(os.path.basename(path)[:-3])  # registers its cuda_graph_test ops
    missing = cuda_ops() - GRAPH_TESTED_OPS
    assert not missing, f"CUDA ops without a CUDA-graph replay test: {sorted(missing)}"


@pytest.mark.parametrize("op", sorted(cuda_ops()) if kaio_ort.cuda_usable() else [])
def test_pre_ampere_gpu_is_refused_at_session_creation(op, monkeypatch):
    inputs, attrs, out_types = SMALL_NODES[op](rng())
    model = build_model(op, inputs, attrs, out_types)
    cuda_session(model)  # valid on this GPU
    monkeypatch.setenv("KAIO_ORT_ASSUME_SM", "75")
    rule = r"CUDA kernels need compute capability 8\.0 or newer; device \d+ has 7\.5"
    with pytest.raises(Exception, match=rf"\[com\.kaio\.{op}\] node '{op}_\d+': {rule}"):
        cuda_session(model)
