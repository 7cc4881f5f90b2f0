"""Side-by-side benchmark harness: a com.kaio op and ORT's own op on the same shapes, in one process.

Method (the anchors' method, ../shared/anchors.md):
- inputs and outputs live on the GPU (IOBinding), so a run launches only the op's kernels;
- device time = the sum of the CUDA kernels one run launched, read with CUPTI through
  torch.profiler; runs are grouped by their kernel count and the median over `iters` runs is
  reported (after `warmup` runs that stay out of the numbers); beside it each run's span, its first
  kernel's start to its last kernel's end (the gaps between an op's kernels included: what CUDA
  events around them measure), as *_span_us;
- "cold" weights: the run cycles through several input sets whose total size exceeds twice the
  L2 cache, so consecutive runs read their weights from HBM as in a real model;
- where a benchmark times its ops with `interleaved_times_us`, the ops take turns in rounds of
  iters / rounds runs (the order reversed every other round), so that the GPU's clock, which drifts
  with power and heat over seconds of dense tensor-core work, is the same for all of them.
Results: a JSON file (every number, device, date, commit) and a markdown table under
bench/results/, plus a PNG chart when matplotlib is present.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

import kaio_ort

RESULTS = Path(__file__).resolve().parent / "results"
CUDA = "CUDAExecutionProvider"
# The floor's ceilings per card: (HBM bytes/s, dense f16 tensor FLOP/s). H100: measured (anchors.md:
# a plain read of HBM, cuBLAS f16 at 4096^3). H200: its nominal 4.8 TB/s HBM3e (no measured anchor;
# ORT reached 4.5 TB/s on it in our attention decode runs) and the H100's compute (the same GH100 chip).
CEILINGS = {"H100": (3.0e12, 771e12), "H200": (4.8e12, 771e12)}
L2_BYTES = 50 * 2**20


@functools.lru_cache(maxsize=None)
def ceilings() -> tuple:
    """(HBM bytes/s, f16 FLOP/s) of GPU 0 (the H100's where the card is not in CEILINGS)."""
    import torch

    name = torch.cuda.get_device_name(0)
    return next((c for key, c in CEILINGS.items() if key in name), CEILINGS["H100"])


def iterations() -> int:
    """The side-by-side benchmarks' common flag, --quick: 20 timed runs instead of 50 (a benchmark's
    own flags are left to it)."""
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    return 20 if ap.parse_known_args()[0].quick else 50


def cuda_session(model, register: bool = True) -> ort.InferenceSession:
    so = ort.SessionOptions()
    if register:
        kaio_ort.register(so)
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    return ort.InferenceSession(model.SerializeToString(), so, providers=[CUDA])


def as_elem(x: np.ndarray, bf16: bool) -> np.ndarray:
    """float32 values as the benchmark's 16-bit input type (ml_dtypes.bfloat16 or float16)."""
    import ml_dtypes

    return x.astype(ml_dtypes.bfloat16 if bf16 else np.float16)


def _to_gpu(x: np.ndarray):
    """(OrtValue on GPU 0, what must stay alive with it); bfloat16 arrays, which ORT's numpy path
    cannot hold, go through a torch tensor and DLPack."""
    if x.dtype.name != "bfloat16":
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), "cuda", 0), None
    import torch

    t = torch.from_numpy(np.ascontiguousarray(x).view(np.uint16)).view(torch.bfloat16).cuda()
    return ort.OrtValue.from_dlpack(t.__dlpack__()), t


def bindings(sess: ort.InferenceSession, input_sets: list[list[np.ndarray]]) -> list:
    """One IOBinding per input set, inputs copied to the GPU once, outputs left on the GPU."""
    result = []
    for inputs in input_sets:
        b = sess.io_binding()
        keep = []
        for gi, x in zip(sess.get_inputs(), inputs):
            v, owner = _to_gpu(x)
            keep += [v, owner]
            b.bind_ortvalue_input(gi.name, v)
        for go in sess.get_outputs():
            b.bind_output(go.name, "cuda")
        b._kaio_keep = keep  # the device buffers live as long as the binding
        result.append(b)
    return result


def sets_for_cold_l2(bytes_per_set: int, max_sets: int = 8) -> int:
    """Input sets needed so that cycling through them reads more than twice the L2 per round."""
    return int(min(max_sets, max(1, -(-2 * L2_BYTES // max(1, bytes_per_set)))))


def device_times_us(sess: ort.InferenceSession, binds: list, iters: int = 50, warmup: int = 10) -> dict:
    """Median / mean / min device time (us) of one run, from CUPTI kernel records."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    for i in range(warmup):
        sess.run_with_iobinding(binds[i % len(binds)])
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(iters):
            sess.run_with_iobinding(binds[i % len(binds)])
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and "memcpy" not in e.name.lower() and "memset" not in e.name.lower()]
    kernels.sort(key=lambda e: e.time_range.start)
    names = sorted({e.name for e in kernels})
    if len(kernels) % iters:
        raise RuntimeError(f"{len(kernels)} kernels over {iters} runs: runs launch different kernel counts {names}")
    per_run = len(kernels) // iters
    runs = [sum(e.time_range.elapsed_us() for e in kernels[i * per_run:(i + 1) * per_run]) for i in range(iters)]
    # A run's span: its first kernel's start to its last kernel's end, the gaps between its kernels
    # included (what CUDA events around the run's kernels measure, less the host's time before them).
    spans = [kernels[(i + 1) * per_run - 1].time_range.end - kernels[i * per_run].time_range.start for i in range(iters)]
    # Each launch of a run by its place in the run: [name, its times over the runs].
    launches = [[kernels[j].name, [kernels[i * per_run + j].time_range.elapsed_us() for i in range(iters)]]
                for j in range(per_run)]
    return _times(runs, per_run, names, len(binds), launches, spans)


def _times(runs: list, per_run: int, names: list, sets: int, launches: list, spans: list) -> dict:
    """The summary of `runs` (device time of each run, us) and `spans` (each run's first kernel start
    to last kernel end, us); launches: [kernel name, its times] for each launch of a run in launch
    order, summarised as each launch's median (where a run's time goes)."""
    return {"median_us": statistics.median(runs), "mean_us": statistics.fmean(runs), "min_us": min(runs),
            "span_median_us": statistics.median(spans), "spans_us": spans,
            "kernels_per_run": per_run, "kernel_names": names, "iters": len(runs), "sets": sets, "runs_us": runs,
            "launch_medians_us": [[name, statistics.median(t)] for name, t in launches], "launch_runs_us": launches}


def interleaved_times_us(ops: dict, iters: int = 50, rounds: int = 5, warmup: int = 10) -> dict:
    """device_times_us of several ops (name -> (session, bindings)) taking turns: `rounds` rounds of
    iters // rounds timed runs each, the order reversed every other round; each op's median is over
    all its runs. Side by side in time as well as in one process."""
    per_round = max(1, iters // rounds)
    runs = {name: [] for name in ops}
    spans = {name: [] for name in ops}
    launches = {name: [] for name in ops}  # [kernel name, its times] a launch, over all rounds
    last = {}
    for r in range(rounds):
        order = list(ops) if r % 2 == 0 else list(reversed(ops))
        for name in order:
            sess, binds = ops[name]
            t = device_times_us(sess, binds, iters=per_round, warmup=warmup if r == 0 else 2)
            if name in last and (t["kernels_per_run"], t["kernel_names"]) != (last[name]["kernels_per_run"],
                                                                          last[name]["kernel_names"]):
                raise RuntimeError(f"{name}: rounds launched different kernels {last[name]['kernel_names']} "
                                   f"vs {t['kernel_names']}")
            runs[name] += t["runs_us"]
            spans[name] += t["spans_us"]
            if not launches[name]:
                launches[name] = [[n, []] for n, _ in t["launch_runs_us"]]
            for mine, (_, times) in zip(launches[name], t["launch_runs_us"]):
                mine[1] += times
            last[name] = t
    return {name: _times(runs[name], last[name]["kernels_per_run"], last[name]["kernel_names"], last[name]["sets"],
                         launches[name], spans[name])
            for name in ops}


def run_meta() -> dict:
    import torch

    commit = os.environ.get("KAIO_COMMIT")
    if not commit:
        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).parent, check=True).stdout.strip()
        except Exception:
            commit = "unknown"
    return {"device": torch.cuda.get_device_name(0), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "onnxruntime": ort.__version__, "kaio_ort": kaio_ort.__version__,
            "torch": torch.__version__, "method": __doc__.split("Results:")[0].strip()}


@dataclass
class Row:
    """One shape: our op next to ORT's, with the floor. kaio / ort None: that op failed for the
    shape (its numbers are None in the summary)."""
    case: str
    kaio: dict | None
    ort: dict | None
    flops: float
    bytes: float
    extra: dict = field(default_factory=dict)

    @property
    def floor_us(self) -> float:
        hbm, flops = ceilings()
        return max(self.flops / flops, self.bytes / hbm) * 1e6

    def summary(self) -> dict:
        k = self.kaio["median_us"] if self.kaio else None
        o = self.ort["median_us"] if self.ort else None
        ks = self.kaio.get("span_median_us") if self.kaio else None
        os_ = self.ort.get("span_median_us") if self.ort else None
        return {"case": self.case, "kaio_us": None if k is None else round(k, 2),
                "ort_us": None if o is None else round(o, 2),
                "kaio_vs_ort": round(o / k, 3) if k and o else None,  # > 1: we are faster
                "kaio_span_us": None if ks is None else round(ks, 2),
                "ort_span_us": None if os_ is None else round(os_, 2),
                "span_kaio_vs_ort": round(os_ / ks, 3) if ks and os_ else None,
                "kaio_tflops": round(self.flops / k / 1e6, 1) if self.flops and k else None,
                "ort_tflops": round(self.flops / o / 1e6, 1) if self.flops and o else None,
                "floor_us": round(self.floor_us, 2),
                "kaio_over_floor": None if k is None else round(k / self.floor_us, 2),
                **self.extra}


def write_results(name: str, rows: list[Row], title: str, notes: str = "") -> Path:
    meta = run_meta()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date'][:10]}_{name}_{meta['commit'][:8]}"
    summaries = [r.summary() for r in rows]
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "summary": summaries,
                                                      "rows": [asdict(r) for r in rows]}, indent=1))
    cols = list(summaries[0].keys())
    lines = [f"# {title}", "", f"device: {meta['device']}; date: {meta['date']}; commit: {meta['commit']}; "
             f"onnxruntime {meta['onnxruntime']}", "", meta["method"], "",
             "kaio_vs_ort = ORT time / our time (> 1: faster than ORT); floor = max(FLOPs / "
             f"{ceilings()[1] / 1e12:.0f} TFLOP/s, bytes / {ceilings()[0] / 1e12:.1f} TB/s).", ""]
    if notes:
        lines += [notes, ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join("" if s[c] is None else str(s[c]) for c in cols) + " |" for s in summaries]
    md = RESULTS / f"{stem}.md"
    md.write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.4), 4))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [(s["kaio_us"] or 0) / s["floor_us"] for s in summaries], 0.4, label="kaio_ort")
        ax.bar(x + 0.2, [(s["ort_us"] or 0) / s["floor_us"] for s in summaries], 0.4, label="ORT")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(x, [s["case"] for s in summaries], rotation=20, fontsize=8)
        ax.set_ylabel("device time / floor (lower is better)")
        ax.set_title(f"{title}\n{meta['device']}, {meta['commit'][:8]}", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / f"{stem}.png", dpi=110)
    except ImportError:
        pass
    print("\n".join(lines[-len(summaries) - 2:]))
    return md
