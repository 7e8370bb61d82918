"""dlib DNN files: the layer stream of a network type, read against that type's layer list.

A dlib network is a nested C++ type, loss<layer_n<...<layer_1<input>>>>, and `serialize(net)` writes it from the
outside in (dlib/dnn/core.h): the loss layer (int version 1, the loss details), then each wrapper's int version from
layer_n down to layer_1, then the input layer's details, then, from layer_1 back up to layer_n, each computational
layer's details followed by its bookkeeping (three bools and two or three tensors, by wrapper version). Tag and skip
wrappers write only their version. Tag ids are part of the type, not of the stream, so the topology comes from the
layer list given here (the network definitions of dlib's examples and Python tools), exactly as dlib's own
deserialiser needs the type.

Layer lists are bottom-up: layers[0] is the input. Details read per layer kind (version strings as dlib writes them):
  con_4..6    params tensor, num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x, filters/biases aliases,
              4 learning-rate/decay doubles, [use_bias], [use_relu]; weights = params[:filters] as (n, k, nr, nc)
              (cross-correlation), bias = the next n values.
  affine_/_2  params tensor, gamma/beta aliases, mode (0 conv: per channel), [disabled]; y = gamma * x + beta.
  bn_con2     (read into an affine slot, as dlib does) params, gamma/beta aliases, 4 tensors, 2 ints, 4 doubles, eps;
              gamma' = gamma / sqrt(running_var + eps), beta' = beta - gamma' * running_mean (float32).
  relu_/_2    [disabled].   max_pool_2 / avg_pool_2   nr, nc, stride_y, stride_x, padding_y, padding_x.
  add_prev_   nothing.      fc_2/_3   outputs, inputs, params, weights/biases aliases, bias mode, 4 doubles,
              [use_bias]; y = x W with W = params[:inputs*outputs] as (inputs, outputs), bias the next row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .serialize import Reader


@dataclass(frozen=True)
class Layer:
    """One layer of a dlib network type. kind: input | con | affine | relu | max_pool | avg_pool | fc | tag | skip
    | add_prev. args: con (filters, nr, nc, stride_y, stride_x); pools (nr, nc, stride_y, stride_x), nr = nc = 0
    means the whole input; fc (outputs, bias); tag/skip/add_prev (tag id); input (version string, ...)."""

    kind: str
    args: tuple = ()


def con(n, nr, nc, sy, sx):
    return Layer("con", (n, nr, nc, sy, sx))


AFFINE, RELU = Layer("affine"), Layer("relu")


def tag(i):
    return Layer("tag", (i,))


# ------------------------------------------------------------------ the two network types


def _block(n: int, stride: int) -> list[Layer]:
    """block<N, affine, stride> = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride, SUBNET>>>>>."""
    return [con(n, 3, 3, stride, stride), AFFINE, RELU, con(n, 3, 3, 1, 1), AFFINE]


def _ares(n: int) -> list[Layer]:
    """ares<N> = relu<add_prev1<block<N,1, tag1<SUBNET>>>>."""
    return [tag(1), *_block(n, 1), Layer("add_prev", (1,)), RELU]


def _ares_down(n: int) -> list[Layer]:
    """ares_down<N> = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<N,2, tag1<SUBNET>>>>>>>."""
    return [
        tag(1),
        *_block(n, 2),
        tag(2),
        Layer("skip", (1,)),
        Layer("avg_pool", (2, 2, 2, 2)),
        Layer("add_prev", (2,)),
        RELU,
    ]


def resnet_layers() -> list[Layer]:
    """dlib_face_recognition_resnet_model_v1: loss_metric<fc_no_bias<128, avg_pool_everything<level0..level4<
    max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>> (dnn_face_recognition_ex.cpp)."""
    layers = [Layer("input", ("input_rgb_image_sized", 150)), con(32, 7, 7, 2, 2), AFFINE, RELU]
    layers.append(Layer("max_pool", (3, 3, 2, 2)))
    layers += _ares(32) * 3  # level4
    layers += _ares_down(64) + _ares(64) * 3  # level3
    layers += _ares_down(128) + _ares(128) * 2  # level2
    layers += _ares_down(256) + _ares(256) * 2  # level1
    layers += _ares_down(256)  # level0
    return layers + [Layer("avg_pool", (0, 0, 1, 1)), Layer("fc", (128, False))]


def mmod_layers() -> list[Layer]:
    """mmod_human_face_detector: loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<input_rgb_image_pyramid<
    pyramid_down<6>>>>>>>> with downsampler = 3 x relu<affine<con5d>> (16, 32, 32 filters, 5x5 stride 2) and
    rcon5 = relu<affine<con<45,5,5,1,1>>> (dnn_mmod_face_detection_ex.cpp)."""
    layers = [Layer("input", ("input_rgb_image_pyramid", 6))]
    for n in (16, 32, 32):
        layers += [con(n, 5, 5, 2, 2), AFFINE, RELU]
    for _ in range(3):
        layers += [con(45, 5, 5, 1, 1), AFFINE, RELU]
    return layers + [con(1, 9, 9, 1, 1)]


# ------------------------------------------------------------------ reading


@dataclass
class DlibNet:
    """A read network: loss {name, ...options}, input {name, ...}, layers (bottom-up, input excluded) as dicts
    {"kind", ...parameters as float32 numpy arrays and ints}."""

    loss: dict
    input: dict
    layers: list[dict] = field(default_factory=list)


def _read_con(r: Reader, spec: Layer) -> dict:
    version = r.expect("con_4", "con_5", "con_6")
    params = r.tensor().reshape(-1)
    n, nr, nc = r.integer(), r.integer(), r.integer()
    sy, sx, py, px = r.integer(), r.integer(), r.integer(), r.integer()
    filters, _biases = r.alias(), r.alias()
    for _ in range(4):
        r.real()
    use_bias = r.boolean() if version != "con_4" else True
    if version == "con_6":
        r.boolean()  # use_relu: fused relu is not used by these networks' files
    if (n, nr, nc, sy, sx) != spec.args:
        raise r.error(f"con layer ({n}, {nr}x{nc}, stride {sy}x{sx}) where the network has {spec.args}")
    count = math.prod(filters)
    if filters[0] != n or count + (n if use_bias else 0) > params.size:
        raise r.error(f"con filters {filters} do not fit {params.size} parameters")
    bias = params[count : count + n].copy() if use_bias else np.zeros(n, np.float32)
    return {"kind": "con", "weight": params[:count].reshape(filters).copy(), "bias": bias, "stride": (sy, sx),
            "padding": (py, px)}  # fmt: skip


def _read_affine(r: Reader) -> dict:
    version = r.expect("affine_", "affine_2", "bn_con2", "bn_fc2")
    params = r.tensor().reshape(-1)
    gamma, beta = r.alias(), r.alias()
    g = params[: math.prod(gamma)]
    b = params[math.prod(gamma) : math.prod(gamma) + math.prod(beta)]
    if version.startswith("bn_"):
        r.tensor(), r.tensor()  # batch means / invstds of the last training step
        running_mean, running_var = r.tensor().reshape(-1), r.tensor().reshape(-1)
        r.uint(), r.uint()  # num_updates, running_stats_window_size
        for _ in range(4):
            r.real()
        eps = np.float32(r.real())
        g = (g / np.sqrt(running_var + eps)).astype(np.float32)
        b = (b - g * running_mean).astype(np.float32)
        conv = version == "bn_con2"
        disabled = False
    else:
        conv = r.integer() == 0
        disabled = r.boolean() if version == "affine_2" else False
    if not conv:
        raise r.error("an fc-mode affine layer, which these networks do not have")
    if g.size != b.size or g.size == 0:
        raise r.error(f"affine gamma {gamma} and beta {beta} do not fit {params.size} parameters")
    if disabled:
        return {"kind": "identity"}
    return {"kind": "affine", "gamma": g.copy(), "beta": b.copy()}


def _read_pool(r: Reader, spec: Layer) -> dict:
    r.expect(f"{spec.kind}_2")
    nr, nc, sy, sx, py, px = (r.integer() for _ in range(6))
    if (nr, nc, sy, sx) != spec.args:
        raise r.error(f"{spec.kind} ({nr}x{nc}, stride {sy}x{sx}) where the network has {spec.args}")
    return {"kind": spec.kind, "size": (nr, nc), "stride": (sy, sx), "padding": (py, px)}


def _read_fc(r: Reader, spec: Layer) -> dict:
    version = r.expect("fc_2", "fc_3")
    outputs, inputs = r.uint(), r.uint()
    params = r.tensor().reshape(-1)
    r.alias(), r.alias()
    no_bias = r.integer() == 1
    for _ in range(4):
        r.real()
    use_bias = r.boolean() if version == "fc_3" else True
    has_bias = use_bias and not no_bias
    if (outputs, has_bias) != spec.args or params.size != (inputs + has_bias) * outputs:
        raise r.error(f"fc layer {outputs} outputs (bias {has_bias}) where the network has {spec.args}")
    weight = params[: inputs * outputs].reshape(inputs, outputs).T.copy()  # torch Linear layout (out, in)
    bias = params[inputs * outputs :].copy() if has_bias else None
    return {"kind": "fc", "weight": weight, "bias": bias}


def _read_details(r: Reader, spec: Layer) -> dict:
    if spec.kind == "con":
        return _read_con(r, spec)
    if spec.kind == "affine":
        return _read_affine(r)
    if spec.kind in ("max_pool", "avg_pool"):
        return _read_pool(r, spec)
    if spec.kind == "fc":
        return _read_fc(r, spec)
    if spec.kind == "relu":
        disabled = r.boolean() if r.expect("relu_", "relu_2") == "relu_2" else False
        return {"kind": "identity" if disabled else "relu"}
    if spec.kind == "add_prev":
        r.expect("add_prev_")
        return {"kind": "add_prev", "tag": spec.args[0]}
    raise ValueError(f"layer kind '{spec.kind}' has no reader")


def _read_input(r: Reader, spec: Layer) -> dict:
    name = spec.args[0]
    if name == "input_rgb_image_sized":
        r.expect(name)
        mean = [np.float32(r.real()) for _ in range(3)]
        nr, nc = r.uint(), r.uint()
        if (nr, nc) != (spec.args[1], spec.args[1]):
            raise r.error(f"input size {nr}x{nc} where the network takes {spec.args[1]}x{spec.args[1]}")
        return {"name": name, "mean": mean, "size": (nr, nc)}
    version = r.expect("input_rgb_image_pyramid", "input_rgb_image_pyramid2")
    mean = [np.float32(r.real()) for _ in range(3)]
    padding, outer = (r.uint(), r.uint()) if version.endswith("2") else (10, 11)
    return {"name": name, "mean": mean, "pyramid_rate": spec.args[1], "padding": padding, "outer_padding": outer}


def _read_mmod_options(r: Reader) -> dict:
    version = r.version(1, 2, 3, 4)
    if version == 1:
        windows = [(r.uint(), r.uint(), "")]
    else:

        def window():
            v = r.version(1, 2)
            return (r.uint(), r.uint(), r.string() if v == 2 else "")

        windows = r.vector(window, 3)
    opts = {"windows": windows}
    for key in ("loss_per_false_alarm", "loss_per_missed_target", "truth_match_iou"):
        opts[key] = r.real()
    opts["nms_iou"], opts["nms_covered"] = r.real(), r.real()
    r.real(), r.real()  # overlaps_ignore (training only)
    if version >= 3:
        opts["assume_pyramid"] = bool(r.take(1)[0])  # a uint8_t, written as one raw byte
    opts["bbr"] = r.boolean() if version >= 4 else False
    if version >= 4:
        r.real()
    return opts


def _read_loss(r: Reader) -> dict:
    name = r.expect("loss_metric_", "loss_metric_2", "loss_mmod_")
    if name == "loss_mmod_":
        return {"name": name, **_read_mmod_options(r)}
    out = {"name": name}
    if name == "loss_metric_2":
        out["margin"], out["distance_threshold"] = r.real(), r.real()
    return out


def read_network(data: bytes, layers: list[Layer], where: str) -> DlibNet:
    """Parse a serialised dlib network of type `layers` (bottom-up, layers[0] the input); DataError naming
    `where` and the byte offset when the stream does not match."""
    r = Reader(data, where)
    r.version(1)  # add_loss_layer
    loss = _read_loss(r)
    body = layers[1:]
    if not body or body[0].kind in ("tag", "skip"):
        raise ValueError("the layer above the input must be a computational layer")
    versions = []
    for i in range(len(body) - 1, -1, -1):
        kind = body[i].kind
        allowed = (1,) if kind in ("tag", "skip") else ((2, 3) if i == 0 else (1, 2))
        versions.append(r.version(*allowed))
    versions.reverse()
    net = DlibNet(loss, _read_input(r, layers[0]))
    for i, (spec, version) in enumerate(zip(body, versions)):
        if spec.kind in ("tag", "skip"):
            net.layers.append({"kind": spec.kind, "tag": spec.args[0]})
            continue
        net.layers.append(_read_details(r, spec))
        r.boolean(), r.boolean(), r.boolean()  # setup called, gradient stale, output/gradient disabled
        r.tensor(), r.tensor()  # x_grad, cached_output (empty in saved models)
        if i == 0 or version == 2:
            r.tensor()  # grad_final (input wrapper) / params_grad
        if i == 0 and version == 3:
            r.uint()  # sample_expansion_factor
    r.at_end()
    return net
