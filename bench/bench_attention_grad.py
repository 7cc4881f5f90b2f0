"""Attention training step: com.kaio AttentionFlash[Causal] (O, LSE) followed by AttentionFlashGrad
(dQ, dK, dV) in one ORT session on the CUDA EP, vs torch's scaled_dot_product_attention forward +
backward (autograd, whatever backend torch picks: flash / cuDNN / efficient), float16, layout bhsd
[B, H, S, D], the same Q, K, V, dO values. Device time is the sum of the CUDA kernels of one step
from CUPTI (torch.profiler), memsets and copies left out; AttentionFlashGrad runs in its default
(atomic dQ) mode, and once more with deterministic = 1 (kaio_det_us).

Usage: python bench/bench_attention_grad.py [--quick]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

import kaio_ort  # noqa: E402

# (B, S, H, D, causal): the three anchor shapes, causal and not.
SHAPES = [(b, s, h, d, causal) for b, s, h, d in ((4, 2048, 32, 128), (1, 8192, 32, 128), (8, 2048, 16, 64))
          for causal in (False, True)]
F16 = TensorProto.FLOAT16


def kaio_model(b, s, h, d, causal, deterministic=0):
    fwd = helper.make_node("AttentionFlashCausal" if causal else "AttentionFlash", ["Q", "K", "V"], ["O", "LSE"],
                           domain=kaio_ort.DOMAIN, out_dtype=F16)
    bwd = helper.make_node("AttentionFlashGrad", ["dO", "Q", "K", "V", "O", "LSE"], ["dQ", "dK", "dV"],
                           domain=kaio_ort.DOMAIN, causal=int(causal), deterministic=deterministic)
    shape = [b, h, s, d]
    ins = [helper.make_tensor_value_info(n, F16, shape) for n in ("Q", "K", "V", "dO")]
    outs = [helper.make_tensor_value_info(n, F16, shape) for n in ("dQ", "dK", "dV")]
    g = helper.make_graph([fwd, bwd], "attention_train_step", ins, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                               helper.make_opsetid(kaio_ort.DOMAIN, kaio_ort.OPSET_VERSION)],
                             ir_version=8)


def time_kaio(model, input_sets, iters):
    try:
        sess = harness.cuda_session(model)
        binds = harness.bindings(sess, input_sets)
        times = harness.device_times_us(sess, binds, iters=iters)
        sess.run_with_iobinding(binds[0])
        return times, binds[0].copy_outputs_to_cpu()
    except Exception as e:  # noqa: BLE001: a failure is a result to record
        print(f"  kaio: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
        return None, None


def time_torch(input_sets, causal, iters, warmup=5):
    """Device time of one SDPA forward + backward, and the first set's (dQ, dK, dV)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sets = [[torch.tensor(x, device="cuda") for x in s] for s in input_sets]

    def step(i):
        q, k, v, d_o = sets[i % len(sets)]
        q, k, v = (x.detach().requires_grad_(True) for x in (q, k, v))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        out.backward(d_o)
        return q.grad, k.grad, v.grad

    for i in range(warmup):
        step(i)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(iters):
            step(i)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    kernels.sort(key=lambda e: e.time_range.start)
    per_run = len(kernels) // iters
    runs = [sum(e.time_range.elapsed_us() for e in kernels[i * per_run:(i + 1) * per_run]) for i in range(iters)]
    grads = [g.float().cpu().numpy() for g in step(0)]
    return {"median_us": statistics.median(runs), "mean_us": statistics.fmean(runs), "min_us": min(runs),
            "kernels_per_run": per_run, "kernel_names": sorted({e.name for e in kernels}), "iters": iters,
            "sets": len(sets)}, grads


def rel_diff(a, b):
    if a is None or b is None:
        return None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(f"{np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30):.3g}")


def main() -> None:
    iters = harness.iterations()
    rng = np.random.default_rng(0)
    rows = []
    for b, s, h, d, causal in SHAPES:
        case = f"b{b} s{s} h{h} d{d}" + (" causal" if causal else "")
        print(case, flush=True)
        flops = 3.5 * 4.0 * b * h * s * s * d / (2 if causal else 1)  # forward 1x, backward 2.5x
        bytes_ = 2 * 4 * b * s * h * d * 2  # Q, K, V, dO in; O, dQ, dK, dV out (f16), once each
        sets = harness.sets_for_cold_l2(bytes_, max_sets=3)
        input_sets = [[rng.standard_normal((b, h, s, d), np.float32).astype(np.float16) for _ in range(4)]
                      for _ in range(sets)]
        kaio_t, kaio_g = time_kaio(kaio_model(b, s, h, d, causal), input_sets, iters)
        det_t, _ = time_kaio(kaio_model(b, s, h, d, causal, 1), input_sets, iters)
        try:
            torch_t, torch_g = time_torch(input_sets, causal, iters)
        except Exception as e:  # noqa: BLE001
            print(f"  torch: {type(e).__name__}: {e}", flush=True)
            torch_t, torch_g = None, None
        extra = {"kaio_det_us": None if det_t is None else round(det_t["median_us"], 2),
                 "dq_rel_diff": rel_diff(kaio_g[0], torch_g[0]) if kaio_g and torch_g else None,
                 "dk_rel_diff": rel_diff(kaio_g[1], torch_g[1]) if kaio_g and torch_g else None,
                 "dv_rel_diff": rel_diff(kaio_g[2], torch_g[2]) if kaio_g and torch_g else None,
                 "sets": sets}
        rows.append(harness.Row(case, kaio_t, torch_t, flops, bytes_, extra))
        print(rows[-1].summary(), flush=True)
        del input_sets, kaio_g, torch_g
    harness.write_results("attention_grad", rows,
                          "AttentionFlash + AttentionFlashGrad (f16, bhsd) vs torch SDPA forward + backward",
                          "ort = torch.nn.functional.scaled_dot_product_attention forward + autograd backward "
                          "(kaio_vs_ort > 1: kaio faster); kaio_det_us = the same step with deterministic = 1; "
                          "*_rel_diff = ||kaio - torch|| / ||torch|| of the gradients. FLOPs = 3.5 * 4*B*H*S^2*D "
                          "(forward + backward, halved when causal); bytes = Q, K, V, dO, O, dQ, dK, dV in f16.")


if __name__ == "__main__":
    main()
