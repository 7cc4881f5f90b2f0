"""Offline repack speed: a 7B model's worth of MatMulNBits weights -> com.kaio MatmulInt4 (kaio_ort.packing.
from_matmulnbits, what `kaio-ort rewrite` runs per node). Issue 8's target: under a minute on 2 cores.

Llama-2-7B's linear layers: 32 layers x (q, k, v, o: K=4096, N=4096; gate, up: K=4096, N=11008;
down: K=11008, N=4096), 4-bit, block 128, uint8 zero points (ORT's quantizer's asymmetric default) or
none (symmetric). No model is built: one random MatMulNBits weight set per distinct shape is made once
(outside the timing) and converted as many times as the model has such layers; the time of every
conversion is summed. CPU only, single process; numpy's own threads pinned to the cores this process may use.

Usage: python bench/bench_repack.py [--layers 32] [--symmetric] [--cores 2] [--out bench/results]
Writes <date>_repack_7b_<commit>.json / .md under bench/results/ (prints the table too).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LLAMA_7B = {"hidden": 4096, "intermediate": 11008, "layers": 32}


def layer_shapes(hidden: int, intermediate: int) -> list:
    """(name, K, N, count per layer) of a Llama block's linear layers."""
    return [("qkvo", hidden, hidden, 4), ("gate_up", hidden, intermediate, 2), ("down", intermediate, hidden, 1)]


def make_weights(K: int, N: int, block: int, symmetric: bool, seed: int = 0):
    """A random MatMulNBits 4-bit weight set: B uint8 [N, K/block, block/2], scales f16 [N*K/block], zp packed."""
    import numpy as np

    r = np.random.default_rng(seed)
    kb = K // block
    b = r.integers(0, 256, (N, kb, block // 2), dtype=np.uint8)
    scales = (r.uniform(0.5, 1.5, N * kb) / 64).astype(np.float16)
    zp = None if symmetric else r.integers(0, 256, N * ((kb + 1) // 2), dtype=np.uint8)
    return b, scales, zp


def run(hidden: int, intermediate: int, layers: int, block: int = 128, symmetric: bool = False,
        check: bool = False) -> dict:
    """Converts `layers` layers' weights; returns the timings (seconds) per shape and in total. check: also
    verify each converted shape against the inverse conversion (to_matmulnbits) -- outside the timing."""
    import numpy as np

    from kaio_ort.packing import from_matmulnbits, to_matmulnbits

    rows, total_s, total_params = [], 0.0, 0
    for name, K, N, per_layer in layer_shapes(hidden, intermediate):
        b, scales, zp = make_weights(K, N, block, symmetric)
        times = []
        for _ in range(per_layer * layers):
            t0 = time.perf_counter()
            w = from_matmulnbits(b, scales, zp, K=K, N=N, block_size=block, bits=4)
            times.append(time.perf_counter() - t0)
        if check:
            back = to_matmulnbits(w.b_packed, w.scales, w.zero_points, group_size=w.group_size, bits=4)
            assert np.array_equal(back.B.reshape(b.shape), b), name
            assert np.array_equal(back.scales.reshape(-1), scales), name
        n = per_layer * layers
        rows.append({"name": name, "K": K, "N": N, "count": n, "seconds": sum(times),
                     "median_ms": 1e3 * float(np.median(times)), "params": n * K * N})
        total_s += sum(times)
        total_params += n * K * N
    return {"rows": rows, "total_seconds": total_s, "total_params": total_params,
            "params_per_second": total_params / total_s if total_s else float("inf")}


def _commit() -> str:
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=HERE).stdout.strip()
        return h + ("-" if dirty else "")
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=LLAMA_7B["layers"])
    ap.add_argument("--hidden", type=int, default=LLAMA_7B["hidden"])
    ap.add_argument("--intermediate", type=int, default=LLAMA_7B["intermediate"])
    ap.add_argument("--symmetric", action="store_true", help="no zero points (default: uint8 zero points)")
    ap.add_argument("--cores", type=int, default=2, help="pin the process to this many cores (default 2)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cores)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(len(cores))
    sys.path.insert(0, str(HERE.parent / "python"))
    import numpy as np

    res = run(args.hidden, args.intermediate, args.layers, symmetric=args.symmetric, check=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    meta = {"date": _dt.date.today().isoformat(), "commit": _commit(), "cpu": cpu, "cores_used": len(cores),
            "cores_on_machine": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "machine": f"2-core CI-like CPU machine ({len(cores)} of {os.cpu_count()} cores used)",
            "model": f"{args.layers} layers x (4 x {args.hidden}x{args.hidden}, 2 x {args.hidden}x{args.intermediate}, "
                     f"1 x {args.intermediate}x{args.hidden}), 4-bit block 128, "
                     f"{'symmetric' if args.symmetric else 'uint8 zero points'}"}
    lines = [f"# MatMulNBits -> MatmulInt4 repack, a 7B model's weights ({meta['date']}, {meta['commit']})", "",
             f"{meta['machine']}: {cpu}; numpy {np.__version__}, Python {meta['python']}.",
             f"Weights: {meta['model']}; {res['total_params'] / 1e9:.2f} G parameters.", "",
             "| linear | K | N | count | total s | median ms per matrix |", "| --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        lines.append(f"| {r['name']} | {r['K']} | {r['N']} | {r['count']} | {r['seconds']:.1f} | {r['median_ms']:.1f} |")
    verdict = "under" if res["total_seconds"] < 60 else "OVER"
    lines += ["", f"Total: {res['total_seconds']:.1f} s ({res['params_per_second'] / 1e6:.0f} M parameters/s), "
                  f"{verdict} the 60 s target. Conversions checked exact against to_matmulnbits (outside the timing).",
              "", "Command: `python bench/bench_repack.py" + (" --symmetric" if args.symmetric else "") + "`"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"{meta['date']}_repack_7b{'_sym' if args.symmetric else ''}_{meta['commit']}"
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps({**meta, **res}, indent=1))
        print(f"wrote {stem}.md / .json")


if __name__ == "__main__":
    main()
