"""PRelu rewritten for onnxruntime's CPU sessions (models/runtimes/ort_prelu.py): bit-exact against PRelu's formula
and onnxruntime's own PRelu kernel, metadata kept, applied by open_session on CPU only when enabled."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from facezoo.models.runtimes.ort import open_session  # noqa: E402
from facezoo.models.runtimes.ort_prelu import cpu_graph, rewrite_prelu  # noqa: E402

C = 4


def _graph(slopes: np.ndarray, second_slope=None) -> onnx.ModelProto:
    """x -> PRelu(slopes) [-> PRelu(second_slope)] -> y, x of shape (N, C, 3, 5)."""
    inits = [numpy_helper.from_array(slopes, "a")]
    nodes = [helper.make_node("PRelu", ["x", "a"], ["h" if second_slope is not None else "y"], name="p1")]
    if second_slope is not None:
        inits.append(numpy_helper.from_array(second_slope, "b"))
        nodes.append(helper.make_node("PRelu", ["h", "b"], ["y"], name="p2"))
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, 3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", C, 3, 5])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(m, {"facezoo.precision": "fp32"})
    return m


def _prelu(x, a):
    with np.errstate(invalid="ignore"):  # a * x at x = inf, slope 0, lies in the branch not taken
        return np.where(x > 0, x, a * x)


def _input() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((2, C, 3, 5)).astype(np.float32) * 3
    x[0, :, 0, 0] = [0.0, -0.0, np.nan, np.inf]
    x[1, :, 0, 0] = [-np.inf, 1e-38, -1e-38, 3.4e38]
    return x


def _run(model, settings=None) -> np.ndarray:
    s = open_session(model, ["CPUExecutionProvider"], settings=settings)
    return s.run(None, {"x": _input()})[0]


@pytest.mark.parametrize(
    "slopes",
    [
        np.array([0.25, -0.5, 1.5, 0.0], np.float32).reshape(C, 1, 1),  # per channel, of every sign
        np.array([0.1], np.float32),  # one slope for all
    ],
)
def test_rewrite_is_bit_exact(slopes):
    x = _input()
    m = _graph(slopes, second_slope=np.full((C, 1, 1), 0.3, np.float32))
    kernel = _run(m.SerializeToString(), {"rewrite_prelu": False})
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(m)
    assert rewrite_prelu(rewritten) == 2
    assert "PRelu" not in {n.op_type for n in rewritten.graph.node}
    got = _run(rewritten.SerializeToString())
    want = _prelu(_prelu(x, slopes), 0.3 * np.ones((C, 1, 1), np.float32))
    np.testing.assert_array_equal(got, want)  # NaN where NaN, bit for bit elsewhere
    np.testing.assert_array_equal(got, kernel)


def test_cpu_graph_keeps_metadata_and_leaves_other_graphs(tmp_path):
    m = _graph(np.full((C, 1, 1), 0.2, np.float32))
    path = tmp_path / "p.onnx"
    onnx.save(m, path)
    out = onnx.load_model_from_string(cpu_graph(path))
    assert [n.op_type for n in out.graph.node] == ["Relu", "Neg", "Relu", "Mul", "Sub"]
    assert {p.key: p.value for p in out.metadata_props} == {"facezoo.precision": "fp32"}
    assert out.graph.node[-1].name == "p1" and out.graph.node[-1].output[0] == "y"

    relu = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
    ).SerializeToString()
    assert cpu_graph(relu) is relu  # nothing to rewrite: handed on as it came
    assert cpu_graph(b"not onnx") == b"not onnx"  # onnxruntime names the problem

    qdq = _graph(np.full((C, 1, 1), 0.2, np.float32))  # x -> Q -> DQ -> PRelu: onnxruntime's QDQ fusions kept
    qdq.graph.initializer.extend(
        [numpy_helper.from_array(np.float32(0.05), "qs"), numpy_helper.from_array(np.int8(0), "qz")]
    )
    qdq.graph.node[0].input[0] = "xd"
    qdq.graph.node.insert(0, helper.make_node("DequantizeLinear", ["xq", "qs", "qz"], ["xd"]))
    qdq.graph.node.insert(0, helper.make_node("QuantizeLinear", ["x", "qs", "qz"], ["xq"]))
    onnx.checker.check_model(qdq)
    assert cpu_graph(qdq.SerializeToString()) == qdq.SerializeToString()

    ext = tmp_path / "ext.onnx"  # weights in a side file: left to onnxruntime, which reads them from disk
    onnx.save(m, ext, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    assert cpu_graph(ext) == ext
    np.testing.assert_array_equal(_run(ext), _prelu(_input(), np.full((C, 1, 1), 0.2, np.float32)))


def test_open_session_rewrites_on_cpu_unless_disabled(tmp_path):
    import onnxruntime as ort

    path = tmp_path / "p.onnx"
    onnx.save(_graph(np.full((C, 1, 1), 0.2, np.float32)), path)
    ops = {}
    for rewrite in (True, False):
        opts = ort.SessionOptions()
        opts.optimized_model_filepath = str(tmp_path / f"opt_{rewrite}.onnx")  # the graph the session runs
        open_session(path, ["CPUExecutionProvider"], options=opts, settings={"rewrite_prelu": rewrite})
        ops[rewrite] = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert "PRelu" not in ops[True] and "Relu" in ops[True]
    assert "PRelu" in ops[False]
