"""`kaio-ort rewrite in.onnx out.onnx [--rules ...] [--verify]`: external data kept, report printed,
--verify's per-output errors, --json, the exit codes."""
import copy
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx

from kaio_ort.cli import main
from kaio_ort.rewrites import rewrite_model, save_model
from rw_models import mlp, ops, quantize


def _save_external(model, path):
    model = copy.deepcopy(model)                  # onnx.save_model moves the proto's data out
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data", size_threshold=0)


def test_rewrite_external_data_verify_json(tmp_path, capsys):
    q = quantize(mlp(), bits=4, block_size=32)
    src, dst = tmp_path / "in.onnx", tmp_path / "model.kaio.onnx"
    _save_external(q, src)
    rc = main(["rewrite", str(src), str(dst), "--verify", "--json", str(tmp_path / "report.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "matmulnbits: replaced 2, left alone 0\nqkv: replaced 0, left alone 0\nattention: replaced 0, left alone 0\n" in out
    assert f"wrote {dst} (weights in model.kaio.onnx.data)" in out
    errors = dict(re.findall(r"^  (\w+): ([0-9.e+-]+)$", out, re.M))
    assert list(errors) == ["Y"] and float(errors["Y"]) <= 1e-2, out
    # the weights are outside the .onnx file, and the model is whole
    assert (tmp_path / "model.kaio.onnx.data").is_file()
    m = onnx.load(str(dst), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    onnx.checker.check_model(str(dst))
    assert ops(m) == {"MatmulInt4": 2, "Add": 1, "Relu": 1}
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["rule"], r["replaced"]) for r in report["rules"]] == [("matmulnbits", 2), ("qkv", 0), ("attention", 0)]


def test_report_names_nodes_left_alone(tmp_path, capsys):
    q = quantize(mlp(dtype=np.float32), bits=4, block_size=32)
    src, dst = tmp_path / "f32.onnx", tmp_path / "f32.kaio.onnx"
    onnx.save_model(q, str(src))
    assert main(["rewrite", str(src), str(dst), "--rules", "matmulnbits", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "matmulnbits: replaced 0, left alone 2\n  MatMulNBits 'fc1_Q4': float32 activations" in out
    assert "qkv:" not in out and "weights in" not in out and not (tmp_path / "f32.kaio.onnx.data").exists()
    assert "  Y: 0.000e+00" in out
    assert main(["rewrite", str(src), str(dst), "--cast-float32", "--verify"]) == 0
    assert "matmulnbits: replaced 2, left alone 0" in capsys.readouterr().out


def test_bad_rules_and_dims(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    onnx.save_model(mlp(), str(src))
    assert main(["rewrite", str(src), str(tmp_path / "o.onnx"), "--rules", "matmulnbits,flash"]) == 2
    assert "unknown rules ['flash']" in capsys.readouterr().err


def test_python_api_save_round_trip(tmp_path):
    q = quantize(mlp(), bits=8, block_size=32)
    _save_external(q, tmp_path / "in.onnx")
    model, report = rewrite_model(tmp_path / "in.onnx")          # a path: onnx_ir model, lazy external data
    assert report.replaced == {"matmulnbits": 2, "qkv": 0, "attention": 0}
    assert save_model(model, tmp_path / "out.onnx") == "out.onnx.data"   # the input had external data
    small, _ = rewrite_model(q)
    assert save_model(small, tmp_path / "small.onnx") is None
    onnx.checker.check_model(str(tmp_path / "out.onnx"))
    a = onnx.load(str(tmp_path / "out.onnx"))
    b = onnx.load(str(tmp_path / "small.onnx"))
    assert a.graph.node == b.graph.node


def test_console_entry_point(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save_model(quantize(mlp(), bits=4, block_size=64, symmetric=True), str(src))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "kaio_ort.cli", "rewrite", str(src), str(tmp_path / "o.onnx")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "matmulnbits: replaced 2" in r.stdout and "matmulnbits: 2/2 nodes" in r.stderr
