"""`facezoo export --check`: the MFR submission rules on graphs built here with onnx.helper, one rule broken at a
time (two inputs, a fixed batch, a custom-domain node, a wrong output size, fp16 weights, no normalisation)."""

import json

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx
from onnx import TensorProto, helper, numpy_helper

from facezoo.cli import main
from facezoo.export.check import ORDER, check_submission

SIZE = 16  # the stated input side in these tests (--input-size 16 16)


def _graph(
    path,
    *,
    batch="batch",
    dim=8,
    inputs=1,
    custom=False,
    weight_dtype=np.float32,
    meta=True,
    dtype=TensorProto.FLOAT,
    nodes=8,
):
    """A small embedder: Conv 3->4 (k 3, stride 4) -> (nodes - 3) Relu -> Flatten -> MatMul to `dim`, optionally
    with a second input added to the image, a node in a custom domain, fp16 weights or no facezoo metadata."""
    rng = np.random.default_rng(0)
    conv_w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4 * 4 * 4, dim)).astype(np.float32)
    inits = [numpy_helper.from_array(conv_w, "w"), numpy_helper.from_array(fc, "fc")]
    body = []
    x = "input"
    if inputs == 2:
        body.append(helper.make_node("Add", ["input", "extra"], ["x0"]))
        x = "x0"
    if weight_dtype == np.float16:  # fp16 weights cast up, as an fp16 export with float32 I/O stores them
        inits[0] = numpy_helper.from_array(conv_w.astype(np.float16), "w16")
        body.append(helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT))
    body.append(helper.make_node("Conv", [x, "w"], ["c"], kernel_shape=[3, 3], strides=[4, 4], pads=[1, 1, 1, 1]))
    prev = "c"
    for i in range(nodes - 3):
        body.append(helper.make_node("Relu", [prev], [f"r{i}"]))
        prev = f"r{i}"
    if custom:
        body.append(helper.make_node("Swizzle", [prev], ["custom_out"], domain="com.example"))
        prev = "custom_out"
    body.append(helper.make_node("Flatten", [prev], ["f"]))
    body.append(helper.make_node("MatMul", ["f", "fc"], ["embedding"]))
    graph_inputs = [helper.make_tensor_value_info("input", dtype, [batch, 3, SIZE, SIZE])]
    if inputs == 2:
        graph_inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [batch, 3, SIZE, SIZE]))
    out = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim])
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.example", 1)] if custom else [])
    model = helper.make_model(helper.make_graph(body, "g", graph_inputs, [out], inits), opset_imports=opsets)
    if meta:
        entry = model.metadata_props.add()
        entry.key, entry.value = "facezoo.meta", json.dumps({"backbone": "x", "mean": 127.5, "std": 127.5})
    onnx.save(model, str(path))
    return path


def _results(path, **kw):
    return {c.name: c for c in check_submission(path, (SIZE, SIZE), **kw)}


def test_a_good_graph_passes_every_check_and_the_cli_prints_the_table(tmp_path, capsys):
    good = _graph(tmp_path / "good.onnx")
    results = _results(good, embedding_size=8)
    assert list(results) == list(ORDER)
    assert all(c.ok for c in results.values()), [c for c in results.values() if not c.ok]
    assert "ran at batch 1 (1, 8) and 2 (2, 8)" in results["dynamic batch"].detail
    assert main(["export", "--check", str(good), "--input-size", str(SIZE), str(SIZE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| check | result | detail |") and out.count("| pass |") == len(ORDER)


@pytest.mark.parametrize(
    "change, failing",
    [
        ({"inputs": 2}, {"single input"}),
        ({"batch": 1}, {"dynamic batch"}),
        ({"custom": True}, {"standard ops", "loads"}),  # onnxruntime has no com.example kernel either
        ({"dim": 1024}, {"embedding size"}),
        ({"weight_dtype": np.float16}, {"float32 weights"}),
        ({"meta": False}, {"normalisation"}),
        ({"nodes": 4}, {"graph size"}),
        ({"dtype": TensorProto.UINT8}, {"input dtype", "loads"}),  # and Conv takes no uint8
    ],
)
def test_each_broken_rule_is_named(tmp_path, capsys, change, failing):
    path = _graph(tmp_path / "bad.onnx", **change)
    results = _results(path)
    assert {n for n, c in results.items() if c.ok is False} == failing
    assert main(["export", "--check", str(path), "--input-size", str(SIZE), str(SIZE)]) == 2
    err = capsys.readouterr().err
    assert "bad.onnx: fails" in err and all(name in err for name in failing)


def test_stated_embedding_size_given_normalisation_and_unreadable_files(tmp_path, capsys):
    path = _graph(tmp_path / "m.onnx", meta=False)
    results = _results(path, embedding_size=16, mean=127.5, std=128.0)
    assert results["embedding size"].ok is False and "D = 16" in results["embedding size"].detail
    assert results["normalisation"].ok and "(x - 127.5) / 128.0" in results["normalisation"].detail
    assert _results(path, max_embedding=4)["embedding size"].ok is False
    assert _results(path, mean=0.0, std=1.0)["input shape"].ok  # the stated size matches
    assert {c.ok for n, c in _results(path).items() if n == "input shape"} == {True}
    assert check_submission(path, (112, 112))[2].ok is False  # input shape against the challenge's 112 x 112
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    results = _results(junk)
    assert results["loads"].ok is False and all(c.ok is None for n, c in results.items() if n != "loads")
    assert main(["export", "--check", str(junk)]) == 2
    capsys.readouterr()
    assert main(["export", "ckpt.pt", "--check", str(path)]) == 2
    assert "give no CHECKPOINT" in capsys.readouterr().err
