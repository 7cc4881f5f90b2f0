"""Real models, built in the test run: a BERT-style encoder and a Llama-style decoder (GQA) with random weights
from transformers (tiny configs), float16, exported with torch.onnx (dynamo), quantized with ORT's
MatMulNBits quantizer, rewritten by every default rule family, and compared to the original on the CPU EP.

The exporter writes attention decomposed (torch's SDPA: MatMul(Q * s, Reshape(Transpose(Reshape(K))) * s)
[+ mask] -> Softmax -> IsNaN guard -> MatMul); Llama's repeat_kv Expand is undone so AttentionFlashCausal
gets the 2 kv heads. Skipped without torch / transformers."""
import collections
import functools

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch: the real-model tests)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (the real-model tests)")

from rw_models import assert_same_outputs, quantize, rewrite_checked  # noqa: E402

B, S, VOCAB = 2, 8, 128


class _Logits(torch.nn.Module):
    def __init__(self, model, kw):
        super().__init__()
        self.model, self.kw = model, kw

    def forward(self, input_ids):
        return self.model(input_ids=input_ids, **self.kw)[0]


@functools.lru_cache(maxsize=None)
def exported(kind: str, tmp: str) -> onnx.ModelProto:
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                  max_position_embeddings=64)
    if kind == "bert":
        model, kw = transformers.BertModel(transformers.BertConfig(**common), add_pooling_layer=False), {}
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(num_key_value_heads=2, **common))
        kw = {"use_cache": False}
    model = model.eval().half()
    path = f"{tmp}/{kind}.onnx"
    ids = torch.randint(0, VOCAB, (B, S))
    torch.onnx.export(_Logits(model, kw), (ids,), path, input_names=["input_ids"], dynamo=True, external_data=False,
                      verbose=False)
    return onnx.load(path)


def _feeds():
    return {"input_ids": np.random.default_rng(0).integers(0, VOCAB, (B, S)).astype(np.int64)}


def _ops(m):
    return collections.Counter(n.op_type for n in m.graph.node)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize("kind,causal", [("bert", False), ("llama", True)])
def test_attention_of_the_float_model(kind, causal, tmp):
    fp = exported(kind, tmp)
    out, report = rewrite_checked(fp)
    assert report.replaced == {"matmulnbits": 0, "qkv": 0, "attention": 2} and report.left_alone == []
    op = "AttentionFlashCausal" if causal else "AttentionFlash"
    assert _ops(out)[op] == 2 and "Softmax" not in _ops(out)
    assert not causal or "Expand" not in _ops(out)     # Llama's repeat_kv (Unsqueeze/Expand/Reshape) goes with the attention
    assert_same_outputs(fp, out, feeds=_feeds())


@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("bits,block,sym", [(4, 32, True), (4, 64, False), (8, 32, True)])
def test_quantized_model(kind, bits, block, sym, tmp):
    q = quantize(exported(kind, tmp), bits=bits, block_size=block, symmetric=sym)
    n_mnb = _ops(q)["MatMulNBits"]
    assert n_mnb >= 12
    out, report = rewrite_checked(q)
    ops = _ops(out)
    assert "MatMulNBits" not in ops and "Softmax" not in ops
    assert report.replaced["matmulnbits"] == n_mnb and report.replaced["attention"] == 2
    # Q/K/V of each layer -> QkvProjectInt4 where the weights are symmetric (QkvProjectInt8: per channel only)
    fused = sym and bits == 4
    assert report.replaced["qkv"] == (2 if fused else 0)
    assert [x.rule for x in report.left_alone] == ([] if fused else ["qkv", "qkv"])
    assert_same_outputs(q, out, feeds=_feeds())


# ---------------------------------------------------------------------------------------------------------
# through ORT's transformers optimizer: BERT (eager attention, TorchScript export -- the forms its fusions
# recognise; transformers' SDPA attention and the dynamo export are not fused) -> EmbedLayerNormalization,
# com.microsoft Attention (packed QKV weights, mask_index from the attention_mask input), SkipLayerNormalization,
# BiasGelu. float32: ORT's CPU EP has no float16 Attention, so the MatMulNBits are rewritten with cast_float32.
@functools.lru_cache(maxsize=None)
def optimized_bert(tmp: str) -> onnx.ModelProto:
    from onnxruntime.transformers.optimizer import optimize_model

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64, attn_implementation="eager")
    model = transformers.BertModel(config, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]

    path = f"{tmp}/bert_ts.onnx"
    names = ["input_ids", "attention_mask"]
    args = (torch.randint(0, VOCAB, (B, S)), torch.ones(B, S, dtype=torch.int64))
    torch.onnx.export(Encoder(), args, path, input_names=names, dynamo=False, opset_version=17,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
    return optimize_model(path, model_type="bert", num_heads=4, hidden_size=64, opt_level=0).model


def _bert_feeds():
    return {"input_ids": _feeds()["input_ids"], "attention_mask": np.ones((B, S), np.int64)}


def test_optimized_bert_forms(tmp):
    ops = _ops(optimized_bert(tmp))
    assert ops["Attention"] == 2 and ops["EmbedLayerNormalization"] == 1 and "Softmax" not in ops
    att = [n for n in optimized_bert(tmp).graph.node if n.op_type == "Attention"]
    assert all(len(n.input) == 4 and n.input[3] == "EmbedLayerNormalization_0_dummy_mask_index" for n in att)


@pytest.mark.parametrize("bits,block,sym", [(4, 32, True), (8, 32, False)])
def test_optimized_bert_quantized(bits, block, sym, tmp):
    """Every MatMulNBits replaced; the fused Attentions read a mask_index computed from the attention_mask
    input (a padding mask): left alone with that reason."""
    q = quantize(optimized_bert(tmp), bits=bits, block_size=block, symmetric=sym)
    n_mnb = _ops(q)["MatMulNBits"]
    assert n_mnb >= 4
    out, report = rewrite_checked(q, cast_float32=True)
    assert report.replaced == {"matmulnbits": n_mnb, "qkv": 0, "attention": 0}
    reason = ("mask_index input ('EmbedLayerNormalization_0_dummy_mask_index') is computed at run time (a padding "
              "mask): AttentionFlash takes no mask")
    assert [(x.rule, x.op_type, x.reason) for x in report.left_alone] == [("attention", "Attention", reason)] * 2
    assert "MatMulNBits" not in _ops(out) and _ops(out)["Attention"] == 2
    assert_same_outputs(q, out, feeds=_bert_feeds())


@pytest.mark.parametrize("dense", [False, True])
def test_optimized_bert_without_mask(dense, tmp):
    """The optimizer's Attention with its mask_index input dropped (what an all-ones attention_mask means):
    both replaced (MatMul + Add + Split + AttentionFlash); compared to the masked original fed all-ones masks."""
    q = quantize(optimized_bert(tmp), bits=4, block_size=32, symmetric=True)
    unmasked = onnx.ModelProto()
    unmasked.CopyFrom(q)
    for n in unmasked.graph.node:
        if n.op_type == "Attention":
            del n.input[3]
    out, report = rewrite_checked(unmasked, rules=None if not dense else ["matmulnbits", "qkv", "attention", "dense"],
                                  cast_float32=True)
    assert report.replaced["attention"] == 2, report.format()
    assert [x for x in report.left_alone if x.rule != "dense"] == []
    ops = _ops(out)
    assert "Attention" not in ops and ops["AttentionFlash"] == 2 and ops["Split"] == 2
    if dense:       # float32: the dense rule leaves the packed projections to ORT, with the reason
        assert report.replaced["dense"] == 0 and ops["MatMul"] == 2
        assert {x.reason for x in report.left_alone if x.rule == "dense"} == {
            "float operands: MatmulTcAsync takes float16 and MatmulTcBf16Async bfloat16 (the model keeps ORT's MatMul)"}
    assert_same_outputs(q, out, feeds=_bert_feeds())


# ---------------------------------------------------------------------------------------------------------
# the Llama decoder through ORT's transformers optimizer. Its model types have no Llama (bert, gpt2, gpt_neox,
# phi, qwen3, ...); gpt2 and qwen3 were tried on the dynamo export (float16) and do the same thing:
# - opt_level 0 (the Python fusions only): nothing is fused -- the graph comes out node for node as exported
#   (the RMSNorm in the exporter's Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul form, rotary as Slice/Neg/Concat, the
#   attention decomposed with the IsNaN guard: none is a form its attention / layer-norm fusions look for);
# - opt_level 1 (ORT's own basic passes, on the CPU EP here: no GPU, use_gpu changes nothing): 5
#   SimplifiedLayerNormalization, float32 Casts ("InsertedPrecisionFreeCast_*", 54 Casts in all) in front of
#   every float16 node the CPU EP has no float16 kernel for -- the MatMul weights included -- and Softmax
#   inlined as its function body (ReduceMax / Sub / Exp / ReduceSum / Div); still no fused attention. The
#   MatMulNBits quantizer then finds no MatMul with a constant B (each B is a Cast), so there is nothing to
#   rewrite: that graph is a CPU-EP artefact, not a model to deploy.
# The level-0 graph is quantized and rewritten: every MatMulNBits replaced, Q/K/V fused, both attentions
# replaced (the decomposed pattern), outputs equal to the optimized quantized original (rel err <= 1e-2).
@functools.lru_cache(maxsize=None)
def optimized_llama(tmp: str, level: int) -> onnx.ModelProto:
    from onnxruntime.transformers.optimizer import optimize_model

    exported("llama", tmp)          # writes tmp/llama.onnx (the optimizer rewrites a ModelProto's weights)
    return optimize_model(f"{tmp}/llama.onnx", model_type="gpt2", num_heads=4, hidden_size=64, opt_level=level).model


def test_optimized_llama_forms(tmp):
    assert _ops(optimized_llama(tmp, 0)) == _ops(exported("llama", tmp))
    ops1 = _ops(optimized_llama(tmp, 1))
    assert ops1["SimplifiedLayerNormalization"] == 5 and "Softmax" not in ops1 and ops1["ReduceMax"] == 2
    assert not {"Attention", "MultiHeadAttention", "GroupQueryAttention"} & set(ops1)
    q1 = quantize(optimized_llama(tmp, 1), bits=4, block_size=32, symmetric=True)
    assert "MatMulNBits" not in _ops(q1)        # every MatMul's B is a float32 Cast of the float16 weight


def test_optimized_llama_quantized(tmp):
    q = quantize(optimized_llama(tmp, 0), bits=4, block_size=32, symmetric=True)
    n_mnb = _ops(q)["MatMulNBits"]
    assert n_mnb >= 14
    out, report = rewrite_checked(q)
    assert report.replaced == {"matmulnbits": n_mnb, "qkv": 2, "attention": 2}, report.format()
    assert report.left_alone == []
    ops = _ops(out)
    assert "MatMulNBits" not in ops and ops["QkvProjectInt4"] == 2
    assert ops["AttentionFlashCausal"] == 2
    assert_same_outputs(q, out, feeds=_feeds())
