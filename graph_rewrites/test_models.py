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

from kaio_ort.rewrites import rewrite_model  # noqa: E402
from rw_models import assert_graph_outputs_unchanged, assert_same_outputs, quantize  # noqa: E402

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
    out, report = rewrite_model(fp)
    assert report.replaced == {"matmulnbits": 0, "qkv": 0, "attention": 2} and report.left_alone == []
    op = "AttentionFlashCausal" if causal else "AttentionFlash"
    assert _ops(out)[op] == 2 and "Softmax" not in _ops(out)
    onnx.checker.check_model(out)
    assert_graph_outputs_unchanged(fp, out)
    errs = assert_same_outputs(fp, out, feeds=_feeds())
    assert max(errs) <= 1e-2, errs


@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("bits,block,sym", [(4, 32, True), (4, 64, False), (8, 32, True)])
def test_quantized_model(kind, bits, block, sym, tmp):
    q = quantize(exported(kind, tmp), bits=bits, block_size=block, symmetric=sym)
    n_mnb = _ops(q)["MatMulNBits"]
    assert n_mnb >= 12
    out, report = rewrite_model(q)
    ops = _ops(out)
    assert "MatMulNBits" not in ops and "Softmax" not in ops
    assert report.replaced["matmulnbits"] == n_mnb and report.replaced["attention"] == 2
    # Q/K/V of each layer -> QkvProjectInt4 where the weights are symmetric (QkvProjectInt8: per channel only)
    fused = sym and bits == 4
    assert report.replaced["qkv"] == (2 if fused else 0)
    assert [x.rule for x in report.left_alone] == ([] if fused else ["qkv", "qkv"])
    onnx.checker.check_model(out)
    assert_graph_outputs_unchanged(q, out)
    again, report2 = rewrite_model(out)
    assert again.SerializeToString() == out.SerializeToString()
    errs = assert_same_outputs(q, out, feeds=_feeds())
    assert max(errs) <= 1e-2, errs
