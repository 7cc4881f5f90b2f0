"""Several GPUs in one process: one session per GPU (CUDAExecutionProvider device_id), each CUDA op
run concurrently from two threads, results bitwise equal to a single-GPU run; a session pinned to
GPU 1 leaves GPU 0 untouched (checked in a fresh process through NVML). Needs two GPUs."""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from gpu_harness import BoundRun, cuda_session
from op_harness import BF16, build_model, randn, rng

from kaio_ort.reference import quantize_int4


def _gpu_count() -> int:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    n = ctypes.c_int(0)
    return n.value if cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(n)) == 0 else 0


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(_gpu_count() < 2, reason="needs two GPUs (device kind nvidia-h200-x2)")]


def _cases():
    """Every op with a CUDA kernel: (op, inputs, attrs, output shape, output dtype). bfloat16 inputs
    enter the graph as float32 through a Cast (build_model); they are fed as float32."""
    g = rng()
    a, b = randn(g, (3, 100, 264), np.float16), randn(g, (264, 72), np.float16)
    x = randn(g, (7, 512), np.float16)
    q, s, _ = quantize_int4(g.standard_normal((512, 300)), 128, symmetric=True)
    x_big = randn(g, (200, 512), np.float16)
    qa, ka, va = randn(g, (2, 8, 130, 64), np.float16), randn(g, (2, 2, 200, 64), np.float16), randn(
        g, (2, 2, 200, 64), np.float16)
    # decode against a long cache: the split-KV path, whose scratch comes from the session's allocator
    qd, kd, vd = randn(g, (1, 1, 32, 128), np.float16), randn(g, (1, 4096, 32, 128), np.float16), randn(
        g, (1, 4096, 32, 128), np.float16)
    return {
        "MatmulTc": ("MatmulTc", [a, b], {}, (3, 100, 72), np.float32),
        "MatmulTcBf16": ("MatmulTcBf16", [a.astype(BF16), b.astype(BF16)], {}, (3, 100, 72), np.float32),
        "MatmulInt4_gemv": ("MatmulInt4", [x, q, s.astype(np.float16)], {"out_dtype": 10}, (7, 300), np.float16),
        "MatmulInt4_gemm": ("MatmulInt4", [x_big, q, s.astype(np.float16)], {"out_dtype": 10}, (200, 300), np.float16),
        "AttentionFlashCausal_gqa": ("AttentionFlashCausal", [qa, ka, va], {}, (2, 8, 130, 64), np.float32),
        "AttentionFlash_decode_split": ("AttentionFlash", [qd, kd, vd], {"layout": "bshd", "out_dtype": 10},
                                        (1, 1, 32, 128), np.float16),
    }


CASES = _cases()


def bound_run(case: str, device_id: int) -> BoundRun:
    op, inputs, attrs, shape, dtype = CASES[case]
    model = build_model(op, inputs, attrs, [dtype])
    fed = [x.astype(np.float32) if np.dtype(x.dtype) == np.dtype(BF16) else x for x in inputs]
    return BoundRun(cuda_session(model, device_id=device_id), fed, [shape], [dtype], device_id=device_id)


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_gpus_two_threads_match_one_gpu(case):
    reference = bound_run(case, 0).run()[0]
    runs = {d: bound_run(case, d) for d in (0, 1)}
    results, errors = {0: [], 1: []}, []

    def worker(d):
        try:
            for _ in range(200):
                results[d].append(runs[d].run()[0])
        except Exception as e:  # reported below: a thread's exception must fail the test
            errors.append(f"device {d}: {e}")

    threads = [threading.Thread(target=worker, args=(d,)) for d in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for d in (0, 1):
        assert len(results[d]) == 200
        for y in results[d]:
            np.testing.assert_array_equal(y, reference, err_msg=f"device {d} differs from the single-GPU run")


def test_session_on_gpu1_leaves_gpu0_untouched():
    """A fresh process with one session on GPU 1 running every CUDA op must not touch GPU 0: its
    used memory (NVML, which sees contexts and allocations of every process) stays put, while
    GPU 1's grows by at least a context (which shows the measurement sees this process)."""
    script = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
        import numpy as np, pynvml
        pynvml.nvmlInit()
        def used():
            return [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(d)).used for d in (0, 1)]
        before = used()
        import test_multi_gpu as t
        for case in t.CASES:
            y = t.bound_run(case, 1).run()[0]
            assert np.isfinite(y).all(), case
        after = used()
        grew = [(a - b) / 2**20 for a, b in zip(after, before)]
        print("MiB used more: GPU0 %.0f, GPU1 %.0f" % tuple(grew))
        assert grew[1] > 100, "GPU 1 shows no context of this process: the measurement is blind"
        assert grew[0] < 32, "a session pinned to GPU 1 touched GPU 0"
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stdout + out.stderr
