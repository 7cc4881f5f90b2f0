"""The same decoder, original vs rewritten, end to end on the CUDA EP: latency of a prefill and of one
decode step (batch 1 and batch 16) against a KV cache.

The models come from bench/build_decoder.py (run on a machine with transformers; this script needs only
numpy, onnx, onnxruntime-gpu, torch and kaio_ort): a Llama-style decoder with random weights, 4-bit
MatMulNBits (ORT's quantizer, block 128) = "orig" (ORT's own ops: MatMulNBits, the exporter's decomposed
attention), and the same graph after kaio_ort.rewrites.rewrite_model = "kaio" (MatmulInt4, QkvProjectInt4,
AttentionFlash / AttentionFlashCausal). One static-shape graph per case:
    prefill     batch 1, 512 prompt tokens, no cache in; last token's logits + the 512-token cache out
    decode_b1   batch 1, one token against a 512-token KV cache (inputs); logits + the 513-token cache out
    decode_b16  the same with batch 16
Per case and model: device time (harness.device_times_us: the sum of the kernels of one run, CUPTI) and
wall-clock latency (median of time.perf_counter around run_with_iobinding, which returns once the outputs
are ready), inputs and outputs bound on the GPU (IOBinding), after warm-up; and the max relative error of
the rewritten model's outputs (logits, present K/V) against the original's on the same inputs.

Models: $KAIO_DECODER_DIR, else --dir, else .device/decoder under the repository root.
Usage: python bench/bench_decoder.py [--quick] [--cpu] [--dir DIR]
  --cpu: the CPU EP (a check that the models load and agree; a few wall-clock iterations, no device time,
  nothing written to bench/results).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import kaio_ort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = ("prefill", "decode_b1", "decode_b16")
_NP = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int64)": np.int64}


def model_dir(arg) -> Path:
    d = Path(os.environ.get("KAIO_DECODER_DIR") or arg or ROOT / ".device" / "decoder")
    if not (d / "meta.json").is_file():
        raise SystemExit(f"no decoder models in {d} (meta.json missing): run bench/build_decoder.py --out {d} "
                         "on a machine with transformers, carry the folder, set KAIO_DECODER_DIR")
    return d


def session(path: Path, kaio: bool, cpu: bool) -> tuple:
    """(session, note): the CUDA EP with CPU fallback disabled when the graph allows it."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if kaio:
        kaio_ort.register(so)
    if cpu:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]), ""
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        return ort.InferenceSession(str(path), so, providers=[harness.CUDA]), ""
    except Exception as e:  # some node has no CUDA kernel: let ORT place it on the CPU, and say so
        so2 = ort.SessionOptions()
        so2.log_severity_level = 3
        if kaio:
            kaio_ort.register(so2)
        note = f"CPU fallback needed: {str(e).splitlines()[0][:200]}"
        print(f"  {path.name}: {note}", flush=True)
        return ort.InferenceSession(str(path), so2, providers=[harness.CUDA, "CPUExecutionProvider"]), note


def inputs_for(sess: ort.InferenceSession, vocab: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    feeds = []
    for i in sess.get_inputs():
        if i.type == "tensor(int64)":
            feeds.append(rng.integers(0, vocab, i.shape).astype(np.int64))
        else:
            feeds.append(rng.standard_normal(i.shape).astype(_NP[i.type]))
    return feeds


def bind(sess: ort.InferenceSession, feeds: list, device: str):
    b = sess.io_binding()
    keep = []
    for gi, x in zip(sess.get_inputs(), feeds):
        v = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), device, 0)
        keep.append(v)
        b.bind_ortvalue_input(gi.name, v)
    for go in sess.get_outputs():
        b.bind_output(go.name, device)
    b._kaio_keep = keep
    return b


def wall_us(sess, b, iters: int, warmup: int) -> dict:
    for _ in range(warmup):
        sess.run_with_iobinding(b)
    t = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run_with_iobinding(b)
        t.append((time.perf_counter() - t0) * 1e6)
    t.sort()
    return {"median_us": statistics.median(t), "p10_us": t[len(t) // 10], "p90_us": t[(9 * len(t)) // 10],
            "min_us": t[0], "iters": iters}


def rel_err(y, ref) -> float:
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(y - ref)) / max(np.max(np.abs(ref)), 1e-30))


def work(meta: dict, case: str, weight_bytes: int) -> tuple:
    """(FLOPs, bytes) of one run: the projections and the LM head (the last token only), attention; bytes =
    4-bit weights + scales read once, the KV cache read (decode) and written."""
    c, cfg = meta["cases"][case], meta["config"]
    h, hq, hkv, d = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    L, inter, vocab = cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    b, s, p = c["batch"], c["seq"], c["past"]
    per_token = L * (h * (hq + 2 * hkv) * d + hq * d * h + 3 * h * inter)
    flops = 2.0 * b * s * per_token + 2.0 * b * h * vocab
    causal = 0.5 if p == 0 else 1.0
    flops += L * 4.0 * b * hq * s * (p + s) * d * causal
    kv = L * 2 * b * hkv * d * 2
    return flops, float(weight_bytes + kv * p + kv * (p + s))


def measure(d: Path, meta: dict, case: str, args, iters: int, warmup: int, device: str, weight_bytes: int,
            notes: list) -> harness.Row:
    sess, note = {}, {}
    for v in ("kaio", "orig"):
        sess[v], note[v] = session(d / f"{v}_{case}.onnx", v == "kaio", args.cpu)
    feeds = inputs_for(sess["orig"], meta["config"]["vocab_size"])
    binds = {v: bind(s, feeds, device) for v, s in sess.items()}
    outs = {}
    for v, s in sess.items():
        s.run_with_iobinding(binds[v])
        outs[v] = binds[v].copy_outputs_to_cpu()
    names = [o.name for o in sess["orig"].get_outputs()]
    errs = {n: rel_err(a, b) for n, a, b in zip(names, outs["kaio"], outs["orig"])}
    err_logits, err_max = errs["logits"], max(errs.values())
    print(f"{case}: rel err logits {err_logits:.2e}, max over outputs {err_max:.2e} "
          f"({'ok' if err_max <= 1e-2 else 'OVER 1e-2'})", flush=True)
    wall = {v: wall_us(s, binds[v], iters, warmup) for v, s in sess.items()}
    dev = {"kaio": None, "orig": None}
    if not args.cpu:
        for v, s in sess.items():
            try:
                dev[v] = harness.device_times_us(s, [binds[v]], iters=iters, warmup=warmup)
            except RuntimeError as e:
                notes.append(f"{case} {v}: device time not measured: {e}")
                print(f"  {notes[-1]}", flush=True)
    flops, bytes_ = work(meta, case, weight_bytes)
    c = meta["cases"][case]
    extra = {"batch": c["batch"], "tokens": c["seq"], "past": c["past"],
             "kaio_wall_us": round(wall["kaio"]["median_us"], 1), "ort_wall_us": round(wall["orig"]["median_us"], 1),
             "wall_kaio_vs_ort": round(wall["orig"]["median_us"] / wall["kaio"]["median_us"], 3),
             "kaio_wall_p90_us": round(wall["kaio"]["p90_us"], 1), "ort_wall_p90_us": round(wall["orig"]["p90_us"], 1),
             "logits_rel_err": float(f"{err_logits:.3g}"), "max_rel_err": float(f"{err_max:.3g}")}
    for v in ("kaio", "orig"):
        if note[v]:
            notes.append(f"{case} {v}: {note[v]}")
    return harness.Row(case, dev["kaio"], dev["orig"], flops, bytes_, extra)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--cpu", action="store_true", help="CPU EP check: load, agree, a few timed runs")
    ap.add_argument("--dir", default=None, help="model folder (KAIO_DECODER_DIR wins)")
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args(argv)
    d = model_dir(args.dir)
    meta = json.loads((d / "meta.json").read_text())
    weight_bytes = meta["files"]["sizes"]["orig.data"]
    iters, warmup = (5, 2) if args.cpu else ((30, 10) if args.quick else (100, 20))
    device = "cpu" if args.cpu else "cuda"
    rows, notes = [], []
    for case in args.cases.split(","):
        try:
            row = measure(d, meta, case, args, iters, warmup, device, weight_bytes, notes)
        except Exception as e:  # one case failing (a kernel refusing a shape) should not lose the others
            notes.append(f"{case}: failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            print(f"  {notes[-1]}", flush=True)
            if args.cpu:
                raise
            continue
        rows.append(row)
        print(row.summary(), flush=True)
    if args.cpu:
        print("CPU EP check done (nothing written)")
        return
    if not rows:
        raise SystemExit("no case ran: " + "; ".join(notes))
    cfg = meta["config"]
    shape = (f"{cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, {cfg['num_attention_heads']} heads x "
             f"{cfg['head_dim']}, {cfg['num_key_value_heads']} kv heads, intermediate {cfg['intermediate_size']}, "
             f"vocab {cfg['vocab_size']}")
    rw = meta["rewrite"]["decode_b1"]
    pre, dec = meta["cases"]["prefill"], meta["cases"]["decode_b1"]
    warm = (f"The weights ({weight_bytes / 2**20:.1f} MiB) fit in the {harness.L2_BYTES >> 20} MiB L2, so runs read "
            "them warm. " if weight_bytes < harness.L2_BYTES else "")
    text = (f"Llama-style decoder ({shape}; random float16 weights), {meta['quantization']}; {meta['export']}. "
            "orig = the quantized model as ORT runs it (MatMulNBits, decomposed attention); kaio = after "
            f"kaio_ort.rewrites.rewrite_model (replaced per graph: {rw['replaced']}; ops {rw['kaio_ops']}). "
            "kaio_us / ort_us: device time of one run (sum of its kernels); *_wall_us: median wall clock of "
            "run_with_iobinding (inputs and outputs on the GPU). "
            f"prefill: batch 1, {pre['seq']} tokens, no cache in (last token's logits out); decode_bN: one token per "
            f"sequence against a {dec['past']}-token KV cache given as inputs (present K/V of {dec['past'] + 1} out). "
            "One static-shape graph per case (symbolic shapes make the exporter compute the attention mask at run "
            "time, which the attention rule leaves alone). " + warm + "max_rel_err: rewritten vs original outputs on the same inputs (logits and present K/V).")
    if notes:
        text += " Notes: " + "; ".join(notes)
    harness.write_results("decoder", rows, "Llama-style decoder end to end, original (ORT ops) vs rewritten (com.kaio)",
                          text)


if __name__ == "__main__":
    main()
