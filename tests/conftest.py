import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


def _cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    import ctypes
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


HAVE_CUDA = _cuda_available()


def pytest_collection_modifyitems(config, items):
    if HAVE_CUDA:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and onnxruntime-gpu's CUDAExecutionProvider")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
