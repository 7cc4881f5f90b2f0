"""The library inside whichever ONNX Runtime runs the tests: onnxruntime-gpu 1.31 (the package's
dependency) and onnxruntime-training-cpu 1.19.2 (C API 19, the last ORT training release; CI runs
this file there too, see .ci/run)."""
import os
import re

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from op_harness import BF16, CPU, assert_close, build_model, feeds, randn, rng, run_op, session

import kaio_ort
from kaio_ort.catalogue import op_specs
from kaio_ort.reference import matmul

ORT_VERSION = tuple(int(x) for x in re.findall(r"\d+", ort.__version__)[:2])


def test_onnxruntime_version_is_supported():
    # 1.17 is the oldest C API (17) the library negotiates; 1.19 is the oldest CI runs.
    assert ORT_VERSION >= (1, 17), ort.__version__
    assert CPU in ort.get_available_providers()


def test_library_path_is_an_existing_file():
    path = kaio_ort.library_path()
    assert os.path.isabs(path) and os.path.isfile(path), path
    if "KAIO_ORT_LIBRARY" not in os.environ:  # the installed package: the library sits beside it
        assert os.path.dirname(path) == os.path.dirname(os.path.realpath(kaio_ort.__file__))


def test_register_returns_the_options_and_is_idempotent():
    so = ort.SessionOptions()
    assert kaio_ort.register(so) is so
    assert kaio_ort.register(so) is so  # second call: no second load of the library
    so.log_severity_level = 3
    a = randn(rng(), (3, 16), np.float16)
    b = randn(rng(), (16, 5), np.float16)
    model = build_model("MatmulTc", [a, b], {}, [np.float32])
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=[CPU])
    (y,) = sess.run(None, feeds(sess, [a, b]))
    assert_close(y, matmul(a, b), 1e-6, "MatmulTc")
    # the same options serve a second session
    sess2 = ort.InferenceSession(model.SerializeToString(), so, providers=[CPU])
    np.testing.assert_array_equal(sess2.run(None, feeds(sess2, [a, b]))[0], y)


def test_catalogue_matches_the_library():
    desc = kaio_ort.library_description()
    assert desc["domain"] == kaio_ort.DOMAIN
    catalogue = kaio_ort.ops()
    specs = op_specs()
    registered = {k["op"] for k in desc["kernels"]}
    assert registered == set(catalogue), "kaio_ort.ops() must list exactly the library's ops"
    assert registered <= set(specs), f"ops without a Python spec: {sorted(registered - set(specs))}"
    for name, info in catalogue.items():
        assert CPU in info.providers, f"{name} has no CPU kernel"
    # CUDA kernels land op by op (README's op table); MatmulTc has had one since the foundation.
    with_cuda = {name for name, info in catalogue.items() if "CUDAExecutionProvider" in info.providers}
    if desc["cuda"]:
        assert "MatmulTc" in with_cuda, "a CUDA build must register MatmulTc's CUDA kernel"
    else:
        assert not with_cuda, f"a CPU-only build registers CUDA kernels for {sorted(with_cuda)}"
        assert info.inputs and info.outputs, name
        for io in info.inputs + info.outputs:
            assert io.name and io.types, (name, io)
        # optional inputs/outputs are trailing
        for ios in (info.inputs, info.outputs):
            flags = [io.optional for io in ios]
            assert flags == sorted(flags), (name, [io.name for io in ios])
        assert len({a.name for a in info.attributes}) == len(info.attributes), name


@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("out_float", [True, False])
def test_matmul_tc_graph_runs(dtype, out_float):
    op = "MatmulTc" if dtype == np.float16 else "MatmulTcBf16"
    g = rng()
    a, b = randn(g, (2, 7, 24), dtype), randn(g, (24, 9), dtype)
    out_t = np.float32 if out_float else dtype
    attrs = {} if out_float else {"out_dtype": 10 if dtype == np.float16 else 16}
    (y,) = run_op(op, [a, b], attrs, [out_t])
    assert y.shape == (2, 7, 9)
    assert_close(y, matmul(a, b), 1e-6 if out_float else 8e-3, op)


def _chained_model(out_dtype, declare=None):
    """MatmulTc whose output feeds another node (Identity), so ORT must type it itself unless the
    model declares it (`declare`: an ONNX element type for value_info)."""
    node = helper.make_node("MatmulTc", ["A", "B"], ["Y"], name="mm", domain=kaio_ort.DOMAIN,
                            out_dtype=out_dtype)
    ident = helper.make_node("Identity", ["Y"], ["Z"])
    value_info = [] if declare is None else [helper.make_tensor_value_info("Y", declare, None)]
    graph = helper.make_graph(
        [node, ident], "chained",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT16, [4, 8]),
         helper.make_tensor_value_info("B", TensorProto.FLOAT16, [8, 3])],
        [helper.make_tensor_value_info("Z", out_dtype, None)], value_info=value_info)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(kaio_ort.DOMAIN, kaio_ort.OPSET_VERSION)],
                             ir_version=8)


def _run(model):
    a, b = randn(rng(), (4, 8), np.float16), randn(rng(), (8, 3), np.float16)
    sess = session(model)
    return sess.run(None, {"A": a, "B": b})[0]


@pytest.mark.parametrize("out_dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_intermediate_output_typed_by_the_model(out_dtype):
    """An out_dtype-typed output that feeds another node, declared in value_info: every runtime."""
    z = _run(_chained_model(out_dtype, declare=out_dtype))
    assert z.dtype == (np.float32 if out_dtype == TensorProto.FLOAT else np.float16)


@pytest.mark.parametrize("out_dtype", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_intermediate_output_typed_by_inference(out_dtype):
    """Without value_info the type must come from the op's inference, which sets element types
    only from C API 20 (ORT 1.20) on; ORT 1.19 refuses the model."""
    model = _chained_model(out_dtype)
    if ORT_VERSION >= (1, 20):
        assert _run(model).dtype == (np.float32 if out_dtype == TensorProto.FLOAT else np.float16)
    else:
        with pytest.raises(Exception, match=r"output arg \(Y\) type inference failed"):
            _run(model)


def test_model_type_contradicting_out_dtype_is_an_error():
    """value_info says float16, out_dtype says float: newer runtimes refuse the model at load;
    ORT 1.19 (which cannot infer the type) allocates float16 and the kernel refuses to write
    float data into it instead of overrunning the buffer."""
    model = _chained_model(TensorProto.FLOAT16, declare=TensorProto.FLOAT16)
    model.graph.node[0].attribute[0].i = TensorProto.FLOAT
    if ORT_VERSION >= (1, 20):
        match = r"Type \(tensor\(float16\)\) of output arg \(Y\) .* does not match expected type \(tensor\(float\)\)"
    else:
        match = (r"\[com\.kaio\.MatmulTc\] node '[^']*': output 'Y' \(#0\): the graph declares element type "
                 r"float16 but the op produces float")
    with pytest.raises(Exception, match=match):
        _run(model)
