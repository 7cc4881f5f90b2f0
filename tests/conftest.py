import os
import sys

import pytest

import kaio_ort

sys.path.insert(0, os.path.dirname(__file__))


HAVE_CUDA = kaio_ort.cuda_usable()


def _shard(items, config):
    """KAIO_TEST_SHARD=i/n keeps every n-th collected test from the i-th (round robin, so each shard
    gets a share of every file): bench/device/sanitize.sh runs a suite's shards side by side."""
    spec = os.environ.get("KAIO_TEST_SHARD")
    if not spec:
        return
    i, n = (int(x) for x in spec.split("/"))
    if not 0 <= i < n:
        raise pytest.UsageError(f"KAIO_TEST_SHARD={spec}: want i/n with 0 <= i < n")
    keep = [t for j, t in enumerate(items) if j % n == i]
    config.hook.pytest_deselected(items=[t for j, t in enumerate(items) if j % n != i])
    items[:] = keep


def pytest_collection_modifyitems(config, items):
    _shard(items, config)
    if HAVE_CUDA:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and onnxruntime-gpu's CUDAExecutionProvider")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
