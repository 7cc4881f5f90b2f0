"""kaio_ort: KAIO's GPU ops for ONNX Runtime, as one custom-op library in the ``com.kaio`` domain.

Usage::

    import onnxruntime as ort, kaio_ort
    so = kaio_ort.register(ort.SessionOptions())
    sess = ort.InferenceSession("model.kaio.onnx", so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
"""
from __future__ import annotations

import ctypes
import json
import os
from functools import lru_cache
from pathlib import Path

from .catalogue import DOMAIN, OPSET_VERSION, OpInfo, ops

__all__ = ["register", "library_path", "ops", "OpInfo", "DOMAIN", "OPSET_VERSION", "library_description",
           "cuda_usable", "default_providers"]
__version__ = "0.1.0"

_LIBRARY_NAME = "libkaio_ort_ops.so"
_REGISTERED_KEY = "kaio_ort.registered"


def library_path() -> str:
    """Absolute path of the com.kaio custom-op shared library.

    ``KAIO_ORT_LIBRARY`` overrides it (a development build); otherwise the library installed
    inside this package. The library has no Python dependency: C, C++ and C# users of ONNX Runtime
    load this file with ``RegisterCustomOpsLibrary``.
    """
    override = os.environ.get("KAIO_ORT_LIBRARY")
    path = Path(override) if override else Path(__file__).with_name(_LIBRARY_NAME)
    if not path.is_file():
        raise FileNotFoundError(
            f"kaio_ort's op library is not at {path}: install the package with `pip install .` "
            "(which builds it) or point KAIO_ORT_LIBRARY at a build"
        )
    return str(path.resolve())


def register(session_options):
    """Registers the com.kaio ops with ``session_options`` and returns it.

    Idempotent: registering the same SessionOptions twice loads the library once.
    """
    try:
        already = session_options.get_session_config_entry(_REGISTERED_KEY) == "1"
    except Exception:  # ORT raises when the entry does not exist
        already = False
    if not already:
        session_options.register_custom_ops_library(library_path())
        session_options.add_session_config_entry(_REGISTERED_KEY, "1")
    return session_options


@lru_cache(maxsize=1)
def library_description() -> dict:
    """What the built library registers: for every (op, execution provider) its declared inputs and
    outputs (names, element types, optional). Read from the library's ``KaioOrtDescribe`` symbol."""
    lib = ctypes.CDLL(library_path())
    lib.KaioOrtDescribe.restype = ctypes.c_char_p
    return json.loads(lib.KaioOrtDescribe().decode())


def cuda_usable() -> bool:
    """True when ONNX Runtime offers the CUDA execution provider *and* the driver sees a GPU.

    onnxruntime-gpu lists CUDAExecutionProvider even on machines without a GPU (it then fails
    when a session is created), so this also asks the driver for a device count.
    """
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def default_providers() -> list[str]:
    """["CUDAExecutionProvider", "CPUExecutionProvider"] where a GPU is usable, else the CPU alone."""
    return (["CUDAExecutionProvider"] if cuda_usable() else []) + ["CPUExecutionProvider"]
