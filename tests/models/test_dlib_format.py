"""dlib's serialisation, read from bytes written by hand here (an independent writer of dlib's format: serialize.h's
pack_int and float_details, the DNN stream order of core.h, shape_predictor.h's layout), and the torch network
semantics against a float64 numpy re-computation. No dlib, no model files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facezoo.errors import DataError
from facezoo.models.dlib.net import AFFINE, RELU, Layer, con, read_network, tag
from facezoo.models.dlib.serialize import Reader
from facezoo.models.dlib.shape_predictor import read_shape_predictor
from facezoo.models.dlib.torch_net import DlibLayers, load_layers

# ------------------------------------------------------------------ a writer of dlib's format (test side)


def pint(v: int) -> bytes:
    """dlib pack_int: control byte = number of magnitude bytes | 0x80 if negative, then little-endian magnitude."""
    m, out = abs(v), []
    while True:
        out.append(m & 0xFF)
        m >>= 8
        if m == 0:
            break
    return bytes([len(out) | (0x80 if v < 0 else 0)] + out)


def pfloat(x: float, digits: int = 24) -> bytes:
    """float_details of a float (digits 24) or double (53): mantissa = frexp * 2^digits, low zero bytes dropped."""
    if math.isinf(x):
        return pint(0) + pint(32000 if x > 0 else 32001)
    if math.isnan(x):
        return pint(0) + pint(32002)
    frac, exp = math.frexp(x)
    mantissa, exponent = int(frac * (1 << digits)), exp - digits
    for _ in range(8):
        if mantissa & 0xFF:
            break
        mantissa >>= 8
        exponent += 8
    return pint(mantissa) + pint(exponent)


def pstr(s: str) -> bytes:
    return pint(len(s)) + s.encode()


def pbool(b: bool) -> bytes:
    return b"1" if b else b"0"


def ptensor(a) -> bytes:
    a = np.asarray(a, np.float32)
    shape = (a.shape + (1, 1, 1, 1))[:4] if a.ndim < 4 else a.shape
    return pint(2) + b"".join(pint(s) for s in shape) + a.astype("<f4").tobytes()


def palias(shape) -> bytes:
    return pint(1) + b"".join(pint(s) for s in shape)


def pmatrix(a) -> bytes:
    a = np.asarray(a, np.float32)
    return pint(-a.shape[0]) + pint(-a.shape[1]) + b"".join(pfloat(float(v)) for v in a.reshape(-1))


# ------------------------------------------------------------------ primitives


@pytest.mark.parametrize("v", [0, 1, -1, 127, 255, 256, -70000, 2**40, -(2**62)])
def test_integers_round_trip(v):
    r = Reader(pint(v))
    assert r.integer() == v and r.remaining == 0


@pytest.mark.parametrize("x", [1.0, 0.6, -3.25, 1e-20, 122.782, 0.0, math.inf, -math.inf])
def test_floats_decode_to_the_written_float32(x):
    r = Reader(pfloat(float(np.float32(x))))
    assert np.float32(r.real()) == np.float32(x)
    assert Reader(pfloat(0.6, digits=53)).real() == 0.6  # a double keeps its 53 bits
    assert math.isnan(Reader(pfloat(math.nan)).real())


def test_one_is_written_as_dlib_writes_it():
    # frexp(1) = 0.5 * 2^1 -> mantissa 2^23, exponent -23 -> two zero bytes dropped -> 128 * 2^-7
    assert pfloat(1.0) == bytes([0x01, 0x80, 0x81, 0x07])
    assert Reader(bytes([0x01, 0x80, 0x81, 0x07])).real() == 1.0


def test_vectorised_floats_equal_one_by_one():
    values = np.random.default_rng(0).normal(0, 10, 500).astype(np.float32)
    values[::50] = 0
    data = b"".join(pfloat(float(v)) for v in values)
    assert np.array_equal(Reader(data).reals(500).astype(np.float32), values)
    one = Reader(data)
    assert [np.float32(one.real()) for _ in range(500)] == list(values)


def test_strings_bools_matrices():
    data = pstr("con_4") + pbool(True) + pbool(False) + pmatrix([[1.5], [-2.0], [0.25]])
    r = Reader(data)
    assert r.expect("con_4", "con_5") == "con_4" and r.boolean() and not r.boolean()
    assert np.array_equal(r.matrix(), [[1.5], [-2.0], [0.25]])
    r.at_end()


def test_bad_bytes_are_data_errors_naming_offset():
    with pytest.raises(DataError, match=r"x\.dat: .*at byte 1 of 2"):
        Reader(bytes([0x02, 0x01]), "x.dat").integer()  # two magnitude bytes announced, one present
    r = Reader(pstr("relu_2"), "x.dat")
    with pytest.raises(DataError, match="expected 'con_4'.*'relu_2'"):
        r.expect("con_4")
    with pytest.raises(DataError, match="bool byte"):
        Reader(b"2").boolean()
    with pytest.raises(DataError, match="control byte"):
        Reader(bytes([0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0])).integer()


def test_hostile_sizes_never_allocate():
    # a tensor claiming 2^40 floats in a 30-byte file, a vector of 2^50 elements: refused before any allocation
    huge = pint(2) + pint(1 << 40) + pint(1) + pint(1) + pint(1)
    with pytest.raises(DataError, match="bytes wanted"):
        Reader(huge).tensor()
    with pytest.raises(DataError, match="container"):
        Reader(pint(1 << 50)).vector(lambda: None)
    with pytest.raises(DataError, match="floats"):
        Reader(pint(-(1 << 20)) + pint(-(1 << 20))).matrix()


# ------------------------------------------------------------------ a network stream


def con_details(w, b, stride, padding) -> bytes:
    n, k, nr, nc = w.shape
    params = np.concatenate([w.reshape(-1), b])
    return (
        pstr("con_4")
        + ptensor(params)
        + pint(n) + pint(nr) + pint(nc) + pint(stride) + pint(stride) + pint(padding) + pint(padding)
        + palias((n, k, nr, nc)) + palias((1, n, 1, 1))
        + b"".join(pfloat(1.0, 53) for _ in range(4))
    )  # fmt: skip


def affine_details(g, b) -> bytes:
    return pstr("affine_") + ptensor(np.concatenate([g, b])) + palias((1, len(g), 1, 1)) * 2 + pint(0)


def bn_details(g, b, mean, var, eps) -> bytes:
    c = len(g)
    return (
        pstr("bn_con2") + ptensor(np.concatenate([g, b])) + palias((1, c, 1, 1)) * 2
        + ptensor(np.zeros(c)) * 2 + ptensor(mean) + ptensor(var)
        + pint(100) + pint(1000) + b"".join(pfloat(1.0, 53) for _ in range(4)) + pfloat(eps, 53)
    )  # fmt: skip


def pool_details(kind, size, stride) -> bytes:
    return pstr(f"{kind}_2") + pint(size) + pint(size) + pint(stride) + pint(stride) + pint(0) + pint(0)


def bookkeeping(first: bool) -> bytes:
    """Three bools and the empty tensors of a saved add_layer (version 2, or version 2 of the input wrapper)."""
    empty = ptensor(np.zeros((0, 0, 0, 0)))
    return b"111" + empty * 3


LAYERS = [
    Layer("input", ("input_rgb_image_sized", 8)),
    con(2, 3, 3, 1, 1),
    AFFINE,
    RELU,
    tag(1),
    con(3, 3, 3, 2, 2),
    AFFINE,  # written as bn_con2, read into this affine slot
    tag(2),
    Layer("skip", (1,)),
    Layer("avg_pool", (2, 2, 2, 2)),
    Layer("add_prev", (2,)),
    RELU,
    Layer("max_pool", (2, 2, 2, 2)),
    Layer("avg_pool", (0, 0, 1, 1)),
    Layer("fc", (4, False)),
]


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(1)
    p = {
        "w1": rng.normal(size=(2, 3, 3, 3)).astype(np.float32), "b1": rng.normal(size=2).astype(np.float32),
        "g1": rng.normal(size=2).astype(np.float32), "e1": rng.normal(size=2).astype(np.float32),
        "w2": rng.normal(size=(3, 2, 3, 3)).astype(np.float32), "b2": rng.normal(size=3).astype(np.float32),
        "g2": rng.normal(size=3).astype(np.float32), "e2": rng.normal(size=3).astype(np.float32),
        "m2": rng.normal(size=3).astype(np.float32), "v2": rng.uniform(0.5, 2, 3).astype(np.float32),
        "fc": rng.normal(size=(3, 4)).astype(np.float32),  # dlib layout (inputs, outputs)
    }  # fmt: skip
    details = {
        1: con_details(p["w1"], p["b1"], 1, 1),
        2: affine_details(p["g1"], p["e1"]),
        3: pstr("relu_"),
        5: con_details(p["w2"], p["b2"], 2, 0),
        6: bn_details(p["g2"], p["e2"], p["m2"], p["v2"], 1e-5),
        9: pool_details("avg_pool", 2, 2),
        10: pstr("add_prev_"),
        11: pstr("relu_2") + pbool(False),
        12: pool_details("max_pool", 2, 2),
        13: pool_details("avg_pool", 0, 1),
        14: pstr("fc_2")
        + pint(4)
        + pint(3)
        + ptensor(p["fc"].reshape(-1))
        + palias((3, 4, 1, 1))
        + palias((0, 0, 0, 0))
        + pint(1)
        + b"".join(pfloat(1.0, 53) for _ in range(4)),
    }
    stream = pint(1) + pstr("loss_metric_2") + pfloat(0.04) + pfloat(0.6)
    for i in range(len(LAYERS) - 1, 0, -1):  # wrapper versions from the top layer down
        stream += pint(1 if LAYERS[i].kind in ("tag", "skip") else 2)
    stream += pstr("input_rgb_image_sized") + pfloat(122.782) + pfloat(117.001) + pfloat(104.298) + pint(8) * 2
    for i in range(1, len(LAYERS)):  # details from the bottom up; tags and skips write nothing
        if i in details:
            stream += details[i] + bookkeeping(i == 1)
    return stream, p


def reference(x: np.ndarray, p: dict) -> np.ndarray:
    """The tiny network in float64 numpy, written from the layer definitions (one image (3, 8, 8))."""

    def conv(x, w, b, stride, pad):
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
        n, _, kh, kw = w.shape
        oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
        out = np.zeros((n, oh, ow))
        for i in range(oh):
            for j in range(ow):
                patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
                out[:, i, j] = (w * patch).sum(axis=(1, 2, 3)) + b
        return out

    a = np.maximum(conv(x, p["w1"], p["b1"], 1, 1) * p["g1"][:, None, None] + p["e1"][:, None, None], 0)
    g2 = p["g2"] / np.sqrt(p["v2"].astype(np.float64) + 1e-5)
    blk = conv(a, p["w2"], p["b2"], 2, 0) * g2[:, None, None] + (p["e2"] - g2 * p["m2"])[:, None, None]  # (3, 3, 3)
    skip = a.reshape(2, 4, 2, 4, 2).mean(axis=(2, 4))  # 2x2/2 average pool of (2, 8, 8) -> (2, 4, 4)
    total = np.zeros((3, 4, 4))  # dlib's add: each zero-padded to the larger shape
    total[:, :3, :3] += blk
    total[:2] += skip
    r = np.maximum(total, 0)
    m = r.reshape(3, 2, 2, 2, 2).max(axis=(2, 4))  # 2x2/2 max pool
    return m.mean(axis=(1, 2)) @ p["fc"]


def test_stream_read_and_network_equal_reference(tiny):
    stream, p = tiny
    net = read_network(stream, LAYERS, "tiny.dat")
    assert net.loss == {
        "name": "loss_metric_2",
        "margin": pytest.approx(0.04),
        "distance_threshold": pytest.approx(0.6),
    }
    assert net.input["size"] == (8, 8) and [float(v) for v in net.input["mean"]] == pytest.approx(
        [122.782, 117.001, 104.298]
    )
    assert [layer["kind"] for layer in net.layers] == [
        "con", "affine", "relu", "tag", "con", "affine", "tag", "skip", "avg_pool", "add_prev", "relu", "max_pool",
        "avg_pool", "fc",
    ]  # fmt: skip
    module = DlibLayers(LAYERS[1:-1]).eval()
    load_layers(module, net.layers[:-1], "tiny.dat")
    x = np.random.default_rng(2).normal(size=(3, 8, 8))
    with torch.no_grad():
        feats = module(torch.from_numpy(x[None]).float()).flatten(1)
        out = feats @ torch.from_numpy(net.layers[-1]["weight"]).T
    np.testing.assert_allclose(out.numpy()[0], reference(x, p), rtol=1e-4, atol=1e-4)


def test_stream_mismatch_names_the_layer(tiny):
    stream, _ = tiny
    wrong = list(LAYERS)
    wrong[5] = con(3, 3, 3, 1, 1)  # the file has stride 2
    with pytest.raises(DataError, match=r"tiny\.dat: con layer"):
        read_network(stream, wrong, "tiny.dat")
    with pytest.raises(DataError, match="tiny.dat"):
        read_network(stream[: len(stream) // 2], LAYERS, "tiny.dat")
    with pytest.raises(DataError, match="unread bytes"):
        read_network(stream + b"\x00", LAYERS, "tiny.dat")


# ------------------------------------------------------------------ a shape predictor file


def sp_file(initial, levels, anchors, deltas) -> bytes:
    """levels: per level a list of trees (splits [(i1, i2, thresh)], leaves [(P, 2) arrays])."""
    out = pint(1) + pmatrix(np.asarray(initial, np.float32).reshape(-1, 1))
    out += pint(len(levels))
    for trees in levels:
        out += pint(len(trees))
        for splits, leaves in trees:
            out += pint(len(splits)) + b"".join(pint(a) + pint(b) + pfloat(t) for a, b, t in splits)
            out += pint(len(leaves)) + b"".join(pmatrix(np.asarray(v, np.float32).reshape(-1, 1)) for v in leaves)
    out += pint(len(anchors)) + b"".join(pint(len(a)) + b"".join(pint(i) for i in a) for a in anchors)
    out += pint(len(deltas)) + b"".join(pint(len(d)) + b"".join(pfloat(x) + pfloat(y) for x, y in d) for d in deltas)
    return out


def test_shape_predictor_by_hand():
    initial = [[0.2, 0.5], [0.8, 0.5]]
    zero, up = np.zeros((2, 2)), np.array([[0.0, -0.1], [0.0, -0.1]])
    # level 0: feature pixels at the two points; tree: value0 - value1 > 10 -> leaf 0 (move both up by 0.1)
    level0 = [([(0, 1, 10.0)], [up, zero]), ([(1, 0, 0.0)], [zero, 2 * up])]
    # level 1: a feature 0.1 right of point 0 (moves with the shape's similarity); value > 0 goes left
    grow = np.array([[-0.3, 0.0], [0.3, 0.0]])  # widens the shape (used to check the similarity in level 2)
    level1 = [([(0, 1, 0.0)], [grow, zero])]
    level2 = [([(0, 1, 50.0)], [np.array([[0.0, 0.05], [0.0, 0.05]]), zero])]
    data = sp_file(initial, [level0, level1, level2], [[0, 1], [0, 1], [0, 1]],
                   [[(0, 0), (0, 0)], [(0.1, 0), (0.0, 0.3)], [(0.1, 0.0), (0.0, 0.0)]])  # fmt: skip
    sp = read_shape_predictor(data, "sp.dat")
    assert sp.num_parts == 2 and len(sp.leaves) == 3
    img = np.zeros((41, 41), np.uint8)
    rect = (0, 0, 40, 40)  # U(u, v) = (40 u, 40 v)
    img[20, 8] = 200  # point 0 at (8, 20) bright, point 1 at (32, 20) dark: tree 1 left, tree 2 (1 - 0 > 0?) right
    # level 0: shape -> points (0.2, 0.4), (0.8, 0.4) (tree 1 leaf 0; tree 2: value1 - value0 = -200 > 0 no -> leaf 1
    # adds 2 * up). So shape = initial + up + 2 up = y 0.5 - 0.3 = 0.2.
    # level 1: identity similarity (shape is a translate of initial); feature 0 at (0.2 + 0.1, 0.2) -> pixel (12, 8)
    img[8, 12] = 90  # > feature 1 (at (32, 8 + 12) = (32, 20)... value 0) -> leaf 0: grow
    # level 2: the shape is now x 0.2 - 0.3 = -0.1 .. 1.1 (width 1.2, was 0.6): similarity scale 2, so the delta
    # (0.1, 0) becomes (0.2, 0): feature at (-0.1 + 0.2, 0.2) -> pixel (4, 8); value 250 - 0 > 50 -> leaf 0
    img[8, 4] = 250
    out = sp(img, rect, subpixel=True)
    expected = np.array([[-0.1, 0.25], [1.1, 0.25]]) * 40
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert np.array_equal(sp(img, rect), np.floor(expected + 0.5))
    img[8, 4] = 40  # now 40 - 0 < 50: level 2 takes leaf 1 (no move)
    np.testing.assert_allclose(sp(img, rect, subpixel=True), np.array([[-0.1, 0.2], [1.1, 0.2]]) * 40, atol=1e-4)
    rgb = np.stack([img, img, img], 2)  # grey level of RGB is (R + G + B) // 3
    np.testing.assert_allclose(sp(rgb, rect, subpixel=True), np.array([[-0.1, 0.2], [1.1, 0.2]]) * 40, atol=1e-4)


def test_shape_predictor_rejects_inconsistent_trees():
    bad = sp_file([[0.5, 0.5]], [[([(0, 5, 1.0)], [np.zeros((1, 2)), np.zeros((1, 2))])]], [[0]], [[(0, 0)]])
    with pytest.raises(DataError, match="inconsistent"):
        read_shape_predictor(bad, "bad.dat")  # feature index 5 of 1 feature pixel
    missing_leaf = sp_file([[0.5, 0.5]], [[([(0, 0, 1.0)], [np.zeros((1, 2))])]], [[0]], [[(0, 0)]])
    with pytest.raises(DataError, match="leaves"):
        read_shape_predictor(missing_leaf, "bad.dat")
