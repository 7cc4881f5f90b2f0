import os
import sys

import pytest

import kaio_ort

sys.path.insert(0, os.path.dirname(__file__))


HAVE_CUDA = kaio_ort.cuda_usable()


def pytest_collection_modifyitems(config, items):
    if HAVE_CUDA:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and onnxruntime-gpu's CUDAExecutionProvider")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
