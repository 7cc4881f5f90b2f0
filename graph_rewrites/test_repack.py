"""The repack benchmark's conversion, scaled down (bench/bench_repack.py times a 7B model's worth on 2 cores;
performance targets live in benchmarks, so this checks correctness only): random MatMulNBits 4-bit block-128
weights of a Llama block's shapes convert exactly (round trip through to_matmulnbits), with and without zero
points, and the counts add up."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_repack  # noqa: E402


@pytest.mark.parametrize("symmetric", [False, True])
def test_repack_scaled_down(symmetric):
    res = bench_repack.run(hidden=256, intermediate=640, layers=2, symmetric=symmetric, check=True)
    assert [(r["name"], r["K"], r["N"], r["count"]) for r in res["rows"]] == [
        ("qkvo", 256, 256, 8), ("gate_up", 256, 640, 4), ("down", 640, 256, 2)]
    assert res["total_params"] == 2 * (4 * 256 * 256 + 3 * 256 * 640)
    assert res["total_seconds"] > 0
