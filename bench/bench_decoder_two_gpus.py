"""The decoder (bench/build_decoder.py's models) serving two request streams, one per GPU: one session
per GPU (CUDAExecutionProvider device_id), each driven by its own thread with IOBinding, against the
same session type on GPU 0 alone. Throughput = completed runs per second of wall clock (each run
ends with ORT's stream synchronisation); ideal scaling is 2x. Also checks that GPU 1 computes
bitwise the same outputs as GPU 0. Needs two GPUs (device kind nvidia-h200-x2).

Usage: KAIO_DECODER_DIR=... python bench/bench_decoder_two_gpus.py [--runs 300]
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from bench_decoder import CASES, inputs_for, model_dir  # noqa: E402

import kaio_ort  # noqa: E402


def session(path: Path, kaio: bool, device_id: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if kaio:
        kaio_ort.register(so)
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")  # every node on the GPU
    return ort.InferenceSession(str(path), so, providers=[(harness.CUDA, {"device_id": str(device_id)})])


def bind(sess: ort.InferenceSession, feeds: list, device_id: int):
    b = sess.io_binding()
    keep = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), "cuda", device_id) for x in feeds]
    for gi, v in zip(sess.get_inputs(), keep):
        b.bind_ortvalue_input(gi.name, v)
    for go in sess.get_outputs():
        b.bind_output(go.name, "cuda", device_id)
    b._kaio_keep = keep
    return b


def runs_per_s(streams: list, runs: int) -> float:
    """Each (session, binding) runs `runs` times in its own thread; total runs / wall seconds."""
    errors = []

    def work(sess, b):
        try:
            for _ in range(runs):
                sess.run_with_iobinding(b)
        except Exception as e:  # reported below
            errors.append(str(e))

    threads = [threading.Thread(target=work, args=s) for s in streams]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(errors[0])
    return len(streams) * runs / wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300, help="runs per stream (prefill: a tenth)")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    d = model_dir(args.dir)
    meta = json.loads((d / "meta.json").read_text())
    vocab = meta["config"]["vocab_size"]
    rows = []
    for variant in ("kaio", "orig"):
        for case in CASES:
            path = d / f"{variant}_{case}.onnx"
            sessions = [session(path, variant == "kaio", g) for g in (0, 1)]
            feeds = inputs_for(sessions[0], vocab)
            binds = [bind(s, feeds, g) for g, s in zip((0, 1), sessions)]
            outs = []
            for s, b in zip(sessions, binds):
                for _ in range(5):
                    s.run_with_iobinding(b)
                outs.append([v.numpy() for v in b.get_outputs()])
            same = all(np.array_equal(x, y) for x, y in zip(outs[0], outs[1]))
            runs = max(20, args.runs // 10) if case == "prefill" else args.runs
            one = runs_per_s([(sessions[0], binds[0])], runs)
            two = runs_per_s(list(zip(sessions, binds)), runs)
            row = {"variant": variant, "case": case, "runs_per_stream": runs, "one_gpu_runs_per_s": round(one, 1),
                   "two_gpus_runs_per_s": round(two, 1), "scaling": round(two / one, 3),
                   "gpu1_bitwise_equal_gpu0": same}
            print(row, flush=True)
            rows.append(row)
    info = harness.run_meta()
    import torch

    info["devices"] = [torch.cuda.get_device_name(i) for i in (0, 1)]
    stem = f"{info['date'][:10]}_decoder_two_gpus_{info['commit'][:8]}"
    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / f"{stem}.json").write_text(json.dumps({"meta": info, "models": meta, "rows": rows}, indent=1))
    cols = list(rows[0])
    lines = ["# Decoder on two GPUs: one request stream per GPU vs one GPU", "",
             f"devices: {', '.join(info['devices'])}; date: {info['date']}; commit: {info['commit']}; "
             f"onnxruntime {info['onnxruntime']}", "", __doc__.split("Usage:")[0].strip(), "",
             f"Models: {meta['config']}; {meta['quantization']}; kaio = rewritten with rules "
             f"{meta.get('rules', 'default')}.", "",
             "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (harness.RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(rows) - 2:]))


if __name__ == "__main__":
    main()
