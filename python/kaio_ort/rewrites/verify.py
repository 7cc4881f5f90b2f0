"""Runs an original and a rewritten model on the same random inputs and compares their outputs."""
from __future__ import annotations

import os
import zlib
from typing import Optional

import numpy as np
import onnx

_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
          "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _session(model, providers):
    import onnxruntime as ort

    import kaio_ort

    so = kaio_ort.register(ort.SessionOptions())
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif not isinstance(model, (bytes, str)):
        model = os.fspath(model)
    return ort.InferenceSession(model, so, providers=providers)


def random_inputs(session, dims: Optional[dict] = None, seed: int = 0) -> dict:
    """Seeded random feeds for `session`'s inputs. Symbolic or unknown dimensions take dims[name]
    (default 1). Floats: standard normal; integer inputs whose name contains 'mask': ones; other
    integers: uniform in [0, 32); bools: True."""
    dims = dims or {}
    feeds = {}
    for inp in session.get_inputs():
        rng = np.random.default_rng(zlib.crc32(f"{seed}:{inp.name}".encode()))
        shape = [d if isinstance(d, int) and d >= 0 else dims.get(d, 1) if isinstance(d, str) else 1
                 for d in inp.shape]
        if inp.type == "tensor(bfloat16)":
            import ml_dtypes
            dtype = ml_dtypes.bfloat16
        elif inp.type in _NUMPY:
            dtype = _NUMPY[inp.type]
        else:
            raise ValueError(f"input '{inp.name}' has type {inp.type}: no random feed for it")
        if np.dtype(dtype) == np.bool_:
            feeds[inp.name] = np.ones(shape, np.bool_)
        elif np.issubdtype(np.dtype(dtype), np.integer):
            feeds[inp.name] = (np.ones(shape, dtype) if "mask" in inp.name.lower()
                               else rng.integers(0, 32, shape).astype(dtype))
        else:
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def compare_models(original, rewritten, *, providers=None, dims: Optional[dict] = None, seed: int = 0) -> dict:
    """{output name: max relative error} of `rewritten` against `original` on the same random inputs.

    Models are paths, onnx.ModelProto or serialized bytes; both sessions have kaio_ort registered.
    providers: default ``kaio_ort.default_providers()`` (CUDA when usable, else CPU). The error of
    an output is max|y_rewritten - y_original| / max|y_original| (over all elements, in float64).
    """
    import kaio_ort

    providers = providers or kaio_ort.default_providers()
    s0, s1 = _session(original, providers), _session(rewritten, providers)
    feeds = random_inputs(s0, dims, seed)
    names = [o.name for o in s0.get_outputs()]
    y0 = s0.run(names, feeds)
    y1 = s1.run(names, feeds)
    errors = {}
    for name, a, b in zip(names, y0, y1):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.shape != b64.shape:
            errors[name] = float("inf")
            continue
        scale = np.max(np.abs(a64)) if a64.size else 0.0
        diff = np.max(np.abs(b64 - a64)) if a64.size else 0.0
        errors[name] = float(diff / scale) if scale > 0 else float(diff)
    return errors
