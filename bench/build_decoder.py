"""Builds the models bench/bench_decoder.py times (runs on the development machine: needs torch,
transformers, onnxscript, onnx-ir).

A Llama-style decoder from transformers (random float16 weights; default: hidden 1024, 8 heads x 128,
2 kv heads (GQA), 4 layers, intermediate 2816, vocab 2048) exported with torch.onnx (dynamo) three
times, one graph per case, each with static shapes:

    prefill      input_ids [1, 512], no cache in; logits of the last token, present K/V [1, 2, 512, 128] out
    decode_b1    input_ids [1, 1] + past K/V [1, 2, 512, 128] per layer; logits, present K/V (513) out
    decode_b16   the same with batch 16

Why static shapes: with a symbolic batch or length transformers builds the attention mask from run-time
shapes (the exporter writes it as a computed tensor), which the attention rule leaves alone (AttentionFlash
takes no mask). With static shapes the decode step has no mask (one query sees every cached key ->
AttentionFlash) and the prefill's causal mask is a constant (-> AttentionFlashCausal).

Each graph is quantized with ORT's MatMulNBits quantizer (bits 4, block 128, symmetric: the default of
onnxruntime-genai's model builder for int4) -- "orig" -- and rewritten with kaio_ort.rewrites.rewrite_model
(the default rules matmulnbits, qkv, attention: every family has CUDA kernels since QkvProjectInt4's) -- "kaio". The three graphs of a variant share one weight file (orig.data / kaio.data,
ONNX external data, written once): the six graphs stay small enough to carry to the GPU machine.

Usage: python bench/build_decoder.py [--out .device/decoder] [--layers 4] [--hidden 1024] ... [--tiny]
Writes OUT/{orig,kaio}_{prefill,decode_b1,decode_b16}.onnx, OUT/{orig,kaio}.data, OUT/meta.json (config,
cases, rewrite reports, sizes).
"""
from __future__ import annotations

import argparse
import collections
import copy
import hashlib
import json
import logging
import os
import sys
import warnings
from pathlib import Path

import onnx
from onnx import numpy_helper

CASES = ("prefill", "decode_b1", "decode_b16")
VARIANTS = ("orig", "kaio")
INLINE_BYTES = 4096          # smaller initializers stay inside the graph file


def config(args):
    import transformers

    return transformers.LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                                    num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                                    head_dim=args.hidden // args.heads, intermediate_size=args.intermediate,
                                    max_position_embeddings=max(2048, 2 * (args.past + 1)), tie_word_embeddings=False)


def export(model, cfg, case: str, args, path: str) -> dict:
    """torch.onnx (dynamo) export of one case with static shapes; returns the case's shapes."""
    import torch
    from transformers import DynamicCache

    L, hkv, d = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
    batch = {"prefill": 1, "decode_b1": 1, "decode_b16": 16}[case]
    seq, past = (args.prefill, 0) if case == "prefill" else (1, args.past)

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, *pkv):
            cache = DynamicCache(config=cfg)
            for i in range(len(pkv) // 2):
                cache.update(pkv[2 * i], pkv[2 * i + 1], i)
            out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
            present = [t for layer in out.past_key_values.layers[:L] for t in (layer.keys, layer.values)]
            return (out.logits, *present)

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)
    pkv = [torch.randn(batch, hkv, past, d, generator=g).half() for _ in range(2 * L)] if past else []
    names = ["input_ids"] + [f"past_{kv}_{i}" for i in range(L) for kv in ("key", "value")][:len(pkv)]
    onames = ["logits"] + [f"present_{kv}_{i}" for i in range(L) for kv in ("key", "value")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Step(), (ids, *pkv), path, input_names=names, output_names=onames, dynamo=True,
                          external_data=False, verbose=False)
    return {"batch": batch, "seq": seq, "past": past, "inputs": names, "outputs": onames}


def quantize(model: onnx.ModelProto, block: int) -> onnx.ModelProto:
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cfg = mq.DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, bits=4)
    q = mq.MatMulNBitsQuantizer(copy.deepcopy(model), bits=4, block_size=block, is_symmetric=True, algo_config=cfg)
    q.process()
    return q.model.model


def _raw(t: onnx.TensorProto) -> bytes:
    if not t.HasField("raw_data"):
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    return t.raw_data


def _key(t: onnx.TensorProto, raw: bytes) -> tuple:
    # by content: the exporter names folded (transposed) weights val_<n>, which differs between graphs
    return t.data_type, tuple(t.dims), hashlib.sha1(raw).hexdigest()


def share_weights(models: dict, out: Path, data_name: str) -> dict:
    """Writes the initializers of `models` ({case: ModelProto}, all from one set of weights) once into
    out/data_name and points every graph's copy at it (ONNX external data; initializers are matched by
    type, shape and bytes; one of INLINE_BYTES or less stays inside its graph). Returns {case: bytes kept inline}."""
    index, chunks, offset = {}, [], 0
    for m in models.values():
        for t in m.graph.initializer:
            raw = _raw(t)
            if len(raw) < INLINE_BYTES:
                continue
            key = _key(t, raw)
            if key in index:
                continue
            pad = (-offset) % 64
            chunks.append(b"\0" * pad)
            offset += pad
            index[key] = (offset, len(raw))
            chunks.append(raw)
            offset += len(raw)
    (out / data_name).write_bytes(b"".join(chunks))
    inline = {}
    for case, m in models.items():
        kept = 0
        for t in m.graph.initializer:
            raw = _raw(t)
            key = _key(t, raw)
            if key not in index:
                kept += len(raw)
                continue
            off, n = index[key]
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", data_name), ("offset", str(off)), ("length", str(n))):
                e = t.external_data.add()
                e.key, e.value = k, v
        inline[case] = kept
    return inline


def build(args) -> dict:
    import torch
    import transformers

    from kaio_ort.rewrites import rewrite_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = config(args)
    model = transformers.LlamaForCausalLM(cfg).eval().half()
    meta = {"config": {k: getattr(cfg, k) for k in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                     "num_attention_heads", "num_key_value_heads", "head_dim",
                                                     "intermediate_size")},
            "quantization": "ORT MatMulNBitsQuantizer bits 4, block %d, symmetric" % args.block,
            "export": "torch.onnx dynamo, static shapes per case, torch %s, transformers %s"
                      % (torch.__version__, transformers.__version__),
            "cases": {}, "rewrite": {}, "files": {}, "rules": args.rules}
    graphs = {v: {} for v in VARIANTS}
    for case in CASES:
        tmp = out / f"_{case}.fp16.onnx"
        meta["cases"][case] = export(model, cfg, case, args, str(tmp))
        fp = onnx.load(str(tmp))
        tmp.unlink()
        q = quantize(fp, args.block)
        kaio, report = rewrite_model(q, rules=args.rules.split(","))
        onnx.checker.check_model(kaio)
        meta["rewrite"][case] = {"replaced": report.replaced, "left_alone": [x.as_dict() for x in report.left_alone],
                                 "orig_ops": dict(collections.Counter(n.op_type for n in q.graph.node)),
                                 "kaio_ops": dict(collections.Counter(n.op_type for n in kaio.graph.node))}
        print(f"{case}: {report.format()}", flush=True)
        graphs["orig"][case], graphs["kaio"][case] = q, kaio
    for v in VARIANTS:
        inline = share_weights(graphs[v], out, f"{v}.data")
        for case, m in graphs[v].items():
            onnx.save(m, str(out / f"{v}_{case}.onnx"))
        meta["files"][v] = {"inline_bytes": inline}
    meta["files"]["sizes"] = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.suffix in (".onnx", ".data")}
    meta["files"]["total_bytes"] = sum(meta["files"]["sizes"].values())
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=".device/decoder")
    # The rule families whose ops have CUDA kernels: QkvProjectInt4 (the "qkv" rule) runs on the CPU
    # EP only until its CUDA kernel lands, and a GPU benchmark of a graph with CPU nodes measures copies.
    ap.add_argument("--rules", default="matmulnbits,qkv,attention")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--past", type=int, default=512, help="KV-cache length of the decode steps")
    ap.add_argument("--prefill", type=int, default=512, help="prompt length of the prefill")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--tiny", action="store_true", help="a small decoder for checking the pipeline")
    args = ap.parse_args(argv)
    if args.tiny:
        args.layers, args.hidden, args.heads, args.kv_heads, args.intermediate = 2, 256, 4, 2, 512
        args.vocab, args.past, args.prefill = 256, 64, 64
    meta = build(args)
    for name, size in meta["files"]["sizes"].items():
        print(f"{name}: {size / 2**20:.2f} MiB")
    print(f"total {meta['files']['total_bytes'] / 2**20:.2f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
