"""Running com.kaio graphs on the CUDA EP with inputs and outputs in device memory (IOBinding, bfloat16
too, through its 16-bit patterns):
outputs are bound to device buffers poisoned with NaN, so an element the kernel never wrote shows
up as NaN in the result (and NaN never passes rel_err), and each output sits between two guard
bands of a fixed byte pattern that every run checks, so a write before or past an output fails the
test even where it lands in memory compute-sanitizer would not flag (our own allocation)."""
from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto
from op_harness import BF16, CUDA, build_model, session_options

GRAPH_TESTED_OPS: set[str] = set()  # filled by cuda_graph_test; test_every_cuda_op_gpu checks it covers every CUDA op


def cuda_graph_test(*ops: str):
    """Marks a test that captures `ops` in a CUDA graph and checks replay against eager runs."""
    def mark(fn):
        GRAPH_TESTED_OPS.update(ops)
        return fn
    return mark


def cuda_session(model, cuda_graph: bool = False, device_id: int = 0) -> ort.InferenceSession:
    so = session_options()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # every node on the GPU
    opts = {"device_id": str(device_id)} | ({"enable_cuda_graph": "1"} if cuda_graph else {})
    return ort.InferenceSession(model.SerializeToString(), so, providers=[(CUDA, opts)])


GUARD_BYTES = 4096   # each side of an output: a stray tile row or column lands in it
GUARD_BYTE = 0xA5    # as f16 0xA5A5 is a normal number and as f32 a tiny one: neither NaN nor a plausible result


def _bits(x: np.ndarray) -> np.ndarray:
    """What ORT's numpy API can carry: bfloat16 as its uint16 patterns, anything else as is."""
    x = np.ascontiguousarray(x)
    return x.view(np.uint16) if x.dtype == np.dtype(BF16) else x


def _on_device(x: np.ndarray, device_id: int) -> ort.OrtValue:
    if x.dtype != np.dtype(BF16):
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), "cuda", device_id)
    v = ort.OrtValue.ortvalue_from_shape_and_type(list(x.shape), TensorProto.BFLOAT16, "cuda", device_id)
    v.update_inplace(_bits(x))
    return v


class BoundRun:
    """One session with its inputs and poisoned, guarded outputs resident on the GPU. bfloat16
    (ml_dtypes) inputs and outputs are bound as such (the model declares them: build_model(...,
    bf16_io=True)); bfloat16 results come back as ml_dtypes.bfloat16 arrays."""

    def __init__(self, sess, inputs: list, out_shapes: list, out_dtypes: list, device_id: int = 0):
        self.sess = sess
        self.binding = sess.io_binding()
        self.inputs = [_on_device(x, device_id) for x in inputs]
        for gi, v in zip(sess.get_inputs(), self.inputs):
            self.binding.bind_ortvalue_input(gi.name, v)
        self.outputs = []  # (name, shape, dtype, guarded device buffer): guard band, output, guard band
        for go, shape, dt in zip(sess.get_outputs(), out_shapes, out_dtypes):
            dt = np.dtype(dt)
            guard = GUARD_BYTES // dt.itemsize
            host = _bits(np.full(int(np.prod(shape)) + 2 * guard, np.nan, dtype=dt))
            host.view(np.uint8)[:GUARD_BYTES] = GUARD_BYTE
            host.view(np.uint8)[-GUARD_BYTES:] = GUARD_BYTE
            v = ort.OrtValue.ortvalue_from_numpy(host, "cuda", device_id)
            elem = TensorProto.BFLOAT16 if dt == np.dtype(BF16) else dt.type
            self.binding.bind_output(go.name, "cuda", device_id, elem, list(shape), v.data_ptr() + GUARD_BYTES)
            self.outputs.append((go.name, tuple(shape), dt, v))

    def update_inputs(self, inputs: list):
        """New contents at the same device addresses (what a captured CUDA graph replays)."""
        for v, x in zip(self.inputs, inputs):
            v.update_inplace(_bits(x))

    def run(self) -> list:
        self.sess.run_with_iobinding(self.binding)
        results = []
        for name, shape, dt, v in self.outputs:
            full = v.numpy().copy()  # (a CPU OrtValue would hand out its own memory)
            raw = full.view(np.uint8)
            for side, band in (("before", raw[:GUARD_BYTES]), ("past", raw[-GUARD_BYTES:])):
                touched = np.flatnonzero(band != GUARD_BYTE)
                assert touched.size == 0, f"output {name}: {touched.size} guard bytes {side} it overwritten"
            guard = GUARD_BYTES // full.dtype.itemsize
            results.append(full[guard:full.size - guard].view(dt).reshape(shape))
        return results


def bind_input_at_offset(run: BoundRun, index: int, x: np.ndarray, offset: int, device_id: int = 0):
    """Rebinds input `index` of `run` to a copy of x that starts `offset` bytes into a device
    allocation: a view that is not 16-byte aligned, as a slice of a larger tensor can be. The run
    keeps the buffer (not for update_inputs)."""
    x = np.ascontiguousarray(x)
    raw = np.zeros(offset + x.nbytes, np.uint8)
    raw[offset:] = x.view(np.uint8).reshape(-1)
    holder = ort.OrtValue.ortvalue_from_numpy(raw, "cuda", device_id)
    run.inputs[index] = holder
    run.binding.bind_input(run.sess.get_inputs()[index].name, "cuda", device_id, x.dtype.type, list(x.shape),
                           holder.data_ptr() + offset)


def run_op_cuda(op, inputs, attrs, out_shapes, out_dtypes, cuda_graph=False) -> list:
    """One node on the CUDA EP with device-resident, NaN-poisoned, guarded outputs (BoundRun), CPU
    fallback disabled; bfloat16 outputs come back as float32 (exact)."""
    model = build_model(op, inputs, attrs, out_dtypes, bf16_io=True)
    outs = BoundRun(cuda_session(model, cuda_graph), [x for x in inputs if x is not None], out_shapes,
                    out_dtypes).run()
    return [y.astype(np.float32) if y.dtype == np.dtype(BF16) else y for y in outs]


def chain_ref_codes(a, q, scales, zp, group_size, rounded=True):
    """float64 product of A with the weights as the kernels form them from integer codes q [K, N]:
    (q - zp) rounded to A's type, times the scale, rounded again (exact float64 products, correctly
    rounded like HSUB2/HMUL2). The remaining difference is f32 accumulation, so tolerances need not
    absorb a badly conditioned sum (N = 1, short K) of the weight rounding. group_size 0: per
    channel (scales [1, N] or [N]). rounded=False: the exact weights (q - zp) * scale, for kernels
    that apply the scale to their f32 sums (int4_weights_rounded)."""
    dt = np.dtype(a.dtype) if rounded else np.dtype(np.float64)
    k = q.shape[0]

    def rows(x):
        x = np.asarray(x, np.float64).reshape(-1, q.shape[1])
        return np.repeat(x, group_size if group_size > 0 else k, axis=0)

    q = np.asarray(q, np.float64)
    qz = (q - rows(zp)).astype(dt).astype(np.float64) if zp is not None else q
    w = (qz * rows(scales)).astype(dt).astype(np.float64)
    return np.asarray(a, np.float64) @ w


def int4_weights_rounded(rows: int, k: int, ns, group_size: int) -> bool:
    """Whether MatmulInt4 / QkvProjectInt4 on the GPU round the dequantised weights to A's type.
    They do, except in the decode kernels with groups of 128 or more, which multiply A by the
    exact codes and apply scale and zero point to the f32 sums. The launcher
    (matmul_int4_sm80.cu) takes the split decode kernel for 1 <= rows <= 16 (A's leading dims
    flattened into rows), K > 0 and any N, but the older decode kernel (the same arithmetic) in
    the shapes where that one measured faster, every N % 8 == 0 there; with KAIO_INT4_DECODE=0
    always the older decode kernel, which needs every N % 8 == 0 (else the GEMVs, which round)."""
    import os

    any_n = os.environ.get("KAIO_INT4_DECODE") != "0"
    decode = 1 <= rows <= 16 and k > 0 and (any_n or all(n % 8 == 0 for n in ns))
    return not (decode and group_size >= 128)


@functools.lru_cache(maxsize=None)
def _profiler_sees_kernels() -> bool:
    """Whether torch.profiler records a CUDA kernel at all: one torch kernel, profiled. It does not
    where CUPTI is held by another tool (compute-sanitizer), and kernel-choice tests then skip
    instead of failing for that reason alone."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        torch.ones(8, device="cuda").add_(1.0)
        torch.cuda.synchronize()
    return any(e.device_type == torch.autograd.DeviceType.CUDA for e in prof.events())


def kernel_launches(fn) -> dict:
    """{name: launches} of the CUDA kernels `fn()` launches, from CUPTI through torch.profiler (which
    sees ORT's launches too); skips the test where torch is missing or the profiler records no
    kernel of torch's own (CUPTI taken by compute-sanitizer), so an op that launches nothing still
    fails where the profiler works."""
    torch = pytest.importorskip("torch")
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile

    if not _profiler_sees_kernels():
        pytest.skip("torch.profiler records no CUDA kernel here (CUPTI in use by another tool)")
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return dict(Counter(e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA))


def launched_kernels(fn) -> list:
    """Names of the CUDA kernels `fn()` launches (kernel_launches' keys, sorted)."""
    return sorted(kernel_launches(fn))


def our_kernel_launches(fn) -> dict:
    """{name: launches} of the kaio kernels `fn()` launches (kernel_launches without ORT's own)."""
    return {name: n for name, n in kernel_launches(fn).items() if "kaio::" in name}


def require_sm90():
    """Skips unless GPU 0 is a Hopper (compute capability 9.0), where the TMA + wgmma kernels run."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or torch.cuda.get_device_capability(0) != (9, 0):
        pytest.skip("the TMA + wgmma kernels run on compute capability 9.0 only")
