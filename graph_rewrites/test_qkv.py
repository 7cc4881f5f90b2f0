"""kaio_ort.rewrites.qkv: three quantized projections of one input -> QkvProjectInt4 / QkvProjectInt8.

Q/K/V MatMuls (GQA-sized: Nq 128, Nk = Nv 32) quantized by ORT's quantizer, rewritten by both rule
families: node counts and op types, inputs of the fused node, numerics against the original on
the CPU EP, idempotency, and the exact reason for every group left alone."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from kaio_ort.rewrites import LeftAlone, rewrite_model
from rw_models import add_bias, assert_same_outputs, ops, qkv, quantize, rewrite_checked, rng

NAMES = ("q_proj_Q4", "k_proj_Q4", "v_proj_Q4")


def _fused(model):
    (n,) = [n for n in model.graph.node if n.op_type.startswith("QkvProject")]
    return n


def _rewrite_checked(model):
    return rewrite_checked(model)


@pytest.mark.parametrize("bs", [32, 128])
def test_int4_qkv_fused(bs):
    q = quantize(qkv(), bits=4, block_size=bs, symmetric=True)
    out, report = _rewrite_checked(q)
    assert ops(out) == {"QkvProjectInt4": 1}
    assert report.replaced == {"matmulnbits": 3, "qkv": 1, "attention": 0} and report.left_alone == []
    assert report.rules["qkv"].replaced_nodes == [NAMES]
    n = _fused(out)
    assert n.domain == "com.kaio" and len(n.input) == 7 and list(n.output) == ["Q", "K", "V"]
    assert [(a.name, a.i) for a in n.attribute] == [("group_size", bs)]
    assert len(out.graph.initializer) == 6
    errs = assert_same_outputs(q, out)
    assert max(errs) <= 2e-3, errs


def test_int4_qkv_with_biases_absorbed():
    q = quantize(qkv(), bits=4, block_size=64, symmetric=True)
    for name in NAMES:
        add_bias(q, name)
    out, report = _rewrite_checked(q)
    assert ops(out) == {"QkvProjectInt4": 1}                      # the three bias Adds are inside
    assert len(_fused(out).input) == 10
    assert_same_outputs(q, out)


def test_one_bias_gets_zeros_for_the_others():
    q = quantize(qkv(), bits=4, block_size=32, symmetric=True)
    add_bias(q, "k_proj_Q4")
    out, report = _rewrite_checked(q)
    assert ops(out) == {"QkvProjectInt4": 1}
    inits = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    bq, bk, bv = (inits[x] for x in _fused(out).input[7:])
    assert not bq.any() and not bv.any() and bk.any() and bq.dtype == np.float16
    assert_same_outputs(q, out)


def test_int8_per_channel_qkv_fused():
    """8 bits with one block per column (block_size >= K) is per channel: QkvProjectInt8 with the
    scales converted to float32 [N]."""
    q = quantize(qkv(), bits=8, block_size=128, symmetric=True)
    out, report = _rewrite_checked(q)
    assert ops(out) == {"QkvProjectInt8": 1}
    inits = {i.name: i for i in out.graph.initializer}
    n = _fused(out)
    for w, s, nn in zip(n.input[1:4], n.input[4:7], (128, 32, 32)):
        assert inits[w].data_type == TensorProto.INT8 and list(inits[w].dims) == [128, nn]
        assert inits[s].data_type == TensorProto.FLOAT and list(inits[s].dims) == [nn]
    assert len(inits) == 6                                       # the float16 scales are gone
    assert_same_outputs(q, out)


def _left_alone(model, reason, nodes=NAMES, op_type="MatmulInt4"):
    out, report = rewrite_model(model)
    assert report.rules["qkv"].replaced == 0
    assert report.rules["qkv"].left_alone == [LeftAlone("qkv", tuple(nodes), op_type, reason)]
    assert "QkvProjectInt4" not in ops(out) and "QkvProjectInt8" not in ops(out)
    assert_same_outputs(model, out)
    return out


def test_zero_points_left_alone():
    _left_alone(quantize(qkv(), bits=4, block_size=32, symmetric=False),
                "'q_proj_Q4' has zero points: QkvProjectInt4 takes symmetric weights")


def test_int8_grouped_left_alone():
    _left_alone(quantize(qkv(), bits=8, block_size=32, symmetric=True),
                "'q_proj_Q8' has group_size 32: QkvProjectInt8 takes per-channel scales only (group_size 0)",
                nodes=("q_proj_Q8", "k_proj_Q8", "v_proj_Q8"), op_type="MatmulInt8")


def test_mixed_bits_left_alone():
    fp = qkv()
    q = quantize(quantize(fp, bits=4, block_size=32, symmetric=True, exclude=["v_proj"]),
                 bits=8, block_size=128, symmetric=True)
    _left_alone(q, "the projections of 'X' mix MatmulInt4 and MatmulInt8",
                nodes=("q_proj_Q4", "k_proj_Q4", "v_proj_Q8"), op_type="MatmulInt4/MatmulInt8")


def test_group_sizes_differ_left_alone():
    q = quantize(quantize(qkv(), bits=4, block_size=32, symmetric=True, exclude=["v_proj"]),
                 bits=4, block_size=64, symmetric=True)
    _left_alone(q, "the projections of 'X' use different group sizes [32, 64]")


def test_four_projections_left_alone_two_not_reported():
    fp = qkv()
    r = rng("extra")
    fp.graph.initializer.append(numpy_helper.from_array((r.standard_normal((128, 32)) / 11).astype(np.float16), "Wo"))
    fp.graph.node.append(helper.make_node("MatMul", ["X", "Wo"], ["O"], name="o_proj"))
    fp.graph.output.append(helper.make_tensor_value_info("O", TensorProto.FLOAT16, ["b", 4, 32]))
    q = quantize(fp, bits=4, block_size=32, symmetric=True)
    _left_alone(q, "4 quantized projections read 'X': QkvProject fuses exactly three",
                nodes=NAMES + ("o_proj_Q4",))
    q2 = quantize(qkv(), bits=4, block_size=32, symmetric=True, exclude=["v_proj"])   # two: not a candidate
    out, report = rewrite_model(q2)
    assert report.rules["qkv"].left_alone == [] and ops(out) == {"MatmulInt4": 2, "MatMul": 1}
