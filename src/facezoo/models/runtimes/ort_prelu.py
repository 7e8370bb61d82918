"""PRelu rewritten for onnxruntime's CPU provider: PRelu(x, a) -> Relu(x) - a * Relu(-x), before the session.

Why: onnxruntime's CPU PRelu kernel (1.32) is its slowest elementwise op by far. On a (1, 128, 56, 56) activation
with a per-channel slope it takes 840 us at 2 threads where Relu or Mul take 21-23 us (a one-node graph each), so
MobileFaceNet at batch 1 spent 8.2 of its 12.8 ms in 33 PRelus (onnxruntime's profiler), and ORT lost to PyTorch
eager. The five ops of the rewrite take 103 us together; MobileFaceNet's ORT call falls to about 6.7 ms
(benchmarks/ort_settings.py, row "ort: PRelu kernel" is the graph as exported).

Exact: x > 0 gives x - a * 0 = x, x < 0 gives 0 - a * (-x) = a * x, bit for bit (negation is exact), and NaN stays
NaN. The file on disk keeps PRelu: OpenVINO, TensorRT, CUDA and the export checker read it as exported; only CPU
sessions opened by `open_session` run the rewrite. Left as they are:
- quantised (QDQ) graphs: there the PRelu input is a DequantizeLinear output, and giving it two consumers stops
  onnxruntime fusing half the convolutions into QLinearConv (IR-50: 49 -> 24), which costs more than PRelu
  (`bench latency`, IR-50 int8 at batch 32: 619 -> 969 ms);
- graphs with external data (over 2 GiB): their rewrite could not be handed over as bytes.
Cost: one parse and one re-serialisation of the graph when the session opens (IR-50's 166 MB file: about 0.7 s
on the 2-core dev machine, against 0.44 s for onnxruntime's own session start; MobileFaceNet: 0.02 s). It is
repaid after about 100 calls of IR-50 at batch 1 (7 ms saved each); a one-shot `facezoo verify` pays it whole.
"""

from __future__ import annotations


def rewrite_prelu(proto) -> int:
    """Replace every PRelu node of the ModelProto's main graph in place; returns how many were replaced."""
    from onnx import helper

    nodes, count = [], 0
    for node in proto.graph.node:
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        (x, slope), (y,) = node.input, node.output
        t = f"{y}__prelu_"  # output names are unique in a graph, so these are too
        nodes += [
            helper.make_node("Relu", [x], [t + "pos"], name=t + "pos"),
            helper.make_node("Neg", [x], [t + "negx"], name=t + "negx"),
            helper.make_node("Relu", [t + "negx"], [t + "neg"], name=t + "neg"),
            helper.make_node("Mul", [t + "neg", slope], [t + "scaled"], name=t + "scaled"),
            helper.make_node("Sub", [t + "pos", t + "scaled"], [y], name=node.name or t + "sub"),
        ]
        count += 1
    if count:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
    return count


def _left_as_is(proto) -> bool:
    """Quantised graphs and graphs with external data (see the module doc)."""
    from onnx.external_data_helper import uses_external_data

    quantised = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in proto.graph.node)
    return quantised or any(uses_external_data(t) for t in proto.graph.initializer)


def cpu_graph(model):
    """`model` (a path or serialised ModelProto bytes) as onnxruntime's CPU provider should get it: the bytes of
    the rewritten graph when it has PRelu nodes, else `model` unchanged (also for quantised graphs, graphs with
    external data, files onnx cannot parse, and without the onnx package: onnxruntime then runs or names them)."""
    try:
        import onnx

        if isinstance(model, (bytes, bytearray)):
            proto = onnx.load_model_from_string(bytes(model))
        else:
            proto = onnx.load(str(model), load_external_data=False)
    except Exception:
        return model
    if _left_as_is(proto) or not rewrite_prelu(proto):
        return model
    return proto.SerializeToString()
