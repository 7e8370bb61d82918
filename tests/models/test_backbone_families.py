"""Family-specific facts of the CNN backbones, checked against the seeds' tables and hand-computed formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import facezoo
from facezoo.models.backbones.facts import build_meta


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _bn_eval(model):
    """Random BN statistics and affine parameters, eval mode: BN is then a non-trivial per-channel affine map."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 1.5)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_()
    return model.eval().double()


# ---------------------------------------------------------------------------------------------- EfficientNet
@pytest.mark.parametrize("name, repeats", [("efficientnet_b0", (1, 2, 2, 3, 3, 4, 1)), ("efficientnet_b1", None)])
def test_efficientnet_depths_and_widths(name, repeats):
    # B1 = ceil(1.1 x B0 repeats) (TFace): (2, 3, 3, 4, 4, 5, 2)
    repeats = repeats or tuple(math.ceil(1.1 * r) for r in (1, 2, 2, 3, 3, 4, 1))
    model = build_meta(name)
    widths = [b.project[0].out_channels for b in model.blocks]
    expected = [c for c, r in zip((16, 24, 40, 80, 112, 192, 320), repeats) for _ in range(r)]
    assert widths == expected
    assert model.stem.layers[0].stride == (1, 1) and model.head.layers[0].out_channels == 512
    assert model.features.layers[0].layers[0].kernel_size == (7, 7)  # four stride-2 blocks: 112 -> 7
    for b in model.blocks:  # SE hidden width = block input // 4
        c_in = b.expand.layers[0].in_channels if b.expand is not None else b.depthwise.layers[0].in_channels
        assert b.se.fc1.out_channels == c_in // 4
    assert not model.features.layers[3].affine


# ---------------------------------------------------------------------------------------------- GhostNet
def test_ghostnet_x13_widths():
    # make_divisible(c * 1.3, 4): stem 16 -> 20, last stage 160 -> 208, head 512 -> 664 (TFace's GDC(664))
    model = build_meta("ghostnet")
    assert model.stem[0].out_channels == 20
    assert model.blocks[-1].ghost2.c_out == 208 and model.head[0].out_channels == 664
    assert model.features.layers[0].layers[0].in_channels == 664


def test_ghost_module_is_primary_plus_cheap_cut():
    from facezoo.models.backbones.ghostnet import GhostModule

    gm = _bn_eval(GhostModule(6, 7, act=True))
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)

    def conv_bn_prelu(seq, x, groups=1):
        conv, bn, prelu = seq
        y = F.conv2d(x, conv.weight, padding=conv.padding, groups=groups)
        y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        return F.prelu(y * bn.weight[:, None, None] + bn.bias[:, None, None], prelu.weight)

    y = conv_bn_prelu(gm.primary_conv, x)  # ceil(7 / 2) = 4 channels
    assert y.shape[1] == 4
    z = conv_bn_prelu(gm.cheap_operation, y, groups=4)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), torch.cat([y, z], 1)[:, :7])


# ---------------------------------------------------------------------------------------------- FBNet
def test_channel_shuffle_is_the_transpose_permutation():
    from facezoo.models.backbones.fbnet import channel_shuffle

    x = torch.arange(12.0).reshape(1, 12, 1, 1)
    # groups of 2 x 6: channel order 0, 6, 1, 7, ... (the ShuffleNet interleave)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11]


@pytest.mark.parametrize("name", ["fbnet_a", "fbnet_b", "fbnet_c"])
def test_fbnet_layout(name):
    from facezoo.models.backbones.fbnet import IRFBlock, Skip

    model = build_meta(name)
    blocks = list(model.stages)
    assert len(blocks) == 22 and blocks[-1].pwl[0].out_channels == 352
    assert sum(isinstance(b, IRFBlock) and b.dw.stride == (2, 2) for b in blocks) == 4  # 112 -> 7
    assert model.output_layer[3].in_features == 352 * 7 * 7 and not model.output_layer[4].affine
    for b in blocks:  # TFace's builder: dw_skip_bn, dw_skip_relu (a bare depthwise conv)
        assert not isinstance(b, IRFBlock) or type(b.dw) is torch.nn.Conv2d
    if name == "fbnet_a":
        assert isinstance(blocks[0], Skip) and blocks[0].conv is None
        shuffles = [i for i, b in enumerate(blocks) if isinstance(b, IRFBlock) and b.groups == 2]
        assert shuffles == [11, 14, 16]  # ir_k5_s2, ir_k5_s2, ir_k3_s2 in fbnet_modeldef.json


# ---------------------------------------------------------------------------------------------- TF-NAS
def test_tf_nas_searched_widths():
    model = build_meta("tf_nas_a")
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 19
    assert [b.point_linear[0].out_channels for b in blocks][-1] == 320
    assert blocks[0].inverted_bottleneck is None  # mid 32 == c_in 32
    assert [b.squeeze_excite[0].out_channels for b in blocks if b.squeeze_excite is not None] == [
        8, 32, 48, 80, 80, 160, 224, 224, 384, 384, 384
    ]  # fmt: skip
    assert model.output_layer[2].in_features == 1280 * 7 * 7


# ---------------------------------------------------------------------------------------------- ReXNet
def test_rexnet_linear_channel_plan():
    # block i outputs round(16 + 180 * i / 16); strides 2 at blocks 1, 3, 5, 11 (layers 1, 2, 2, 3, 3, 5)
    model = build_meta("rexnet_1_0")
    from facezoo.models.backbones.rexnet import LinearBottleneck

    blocks = [m for m in model.features if isinstance(m, LinearBottleneck)]
    outs = [b.out[-1].num_features for b in blocks]
    assert outs == [round(16 + 180 * i / 16) for i in range(16)]
    strides = [next(m for m in b.out if isinstance(m, torch.nn.Conv2d) and m.groups > 1).stride[0] for b in blocks]
    assert [i for i, s in enumerate(strides) if s == 2] == [1, 3, 5, 11]
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())  # FaceX-Zoo: use_se 0


def test_rexnet_partial_shortcut():
    from facezoo.models.backbones.rexnet import LinearBottleneck

    block = _bn_eval(LinearBottleneck(8, 11, t=6, stride=1, use_se=True, se_ratio=12))
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        body = block.out(x)
        expected = body.clone()
        expected[:, :8] += x  # the input is added to the first c_in channels only
        torch.testing.assert_close(block(x), expected)


# ---------------------------------------------------------------------------------------------- ResNeSt
def test_split_attention_formula():
    from facezoo.models.backbones.resnest import SplitAttention

    sa = _bn_eval(SplitAttention(8, 8, radix=2))
    x = torch.randn(3, 8, 5, 5, dtype=torch.float64)

    def bn(m, y):
        return (y - m.running_mean[:, None, None]) / torch.sqrt(m.running_var[:, None, None] + m.eps) * m.weight[
            :, None, None
        ] + m.bias[:, None, None]

    u = torch.relu(bn(sa.bn0, F.conv2d(x, sa.conv.weight, padding=1, groups=2)))
    u1, u2 = u[:, :8], u[:, 8:]
    s = (u1 + u2).mean(dim=(2, 3), keepdim=True)
    z = torch.relu(bn(sa.bn1, F.conv2d(s, sa.fc1.weight, sa.fc1.bias)))
    a = F.conv2d(z, sa.fc2.weight, sa.fc2.bias)
    a1, a2 = a[:, :8], a[:, 8:]
    w1 = torch.exp(a1) / (torch.exp(a1) + torch.exp(a2))  # softmax over the two splits, per channel
    with torch.no_grad():
        torch.testing.assert_close(sa(x), w1 * u1 + (1 - w1) * u2)
    assert sa.fc1.out_channels == 32  # max(8 * 2 // 4, 32)


def test_resnest_l2_free_output_and_strides():
    model = facezoo.create_backbone("resnest50", width=0.125, input_size=32, layers=(2, 1, 1, 1)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert not torch.allclose(out.norm(dim=1), torch.ones(2))  # raw embeddings (FaceX-Zoo normalises)
    assert model.output_layer[3].in_features == 2048 // 8 * 2 * 2  # 32 -> 2 after four stride-2 stages


# ---------------------------------------------------------------------------------------------- ResNet
def test_resnet_layout_and_zero_init():
    model = build_meta("resnet50")
    assert model.fc.in_features == 2048 * 4 * 4  # ImageNet stem + three strided stages: 112 -> 4 (TFace, evoLVe)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    assert [len(build_meta(n).layer3) for n in ("resnet101", "resnet152")] == [23, 36]
    small = facezoo.create_backbone("resnet50", width=0.125, input_size=32, zero_init_residual=True)
    assert all(torch.equal(b.bn3.weight, torch.zeros_like(b.bn3.weight)) for b in small.layer2)
    block = small.layer1[1].eval()  # zero last-BN scale: the block is relu(bn3.bias + x) = relu(x) at init
    x = torch.randn(2, block.conv1.in_channels, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


# ---------------------------------------------------------------------------------------------- published counts
def _thop_millions(model, drop_middle_bn: bool = False) -> float:
    """Parameters as FaceX-Zoo's THOP table counts them: PReLU weights skipped; its IR blocks (face.evoLVe's
    bottleneck_IR) have no BN between the two 3x3 convs, so arcface_torch's block `bn2` is left out when asked."""
    from facezoo.models.backbones.iresnet import IBasicBlock

    skip = {id(p) for m in model.modules() if isinstance(m, torch.nn.PReLU) for p in m.parameters()}
    if drop_middle_bn:
        skip |= {id(p) for m in model.modules() if isinstance(m, IBasicBlock) for p in m.bn2.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip) / 1e6


@pytest.mark.parametrize(
    "name, kwargs, drop_bn, published",
    [
        ("mobilefacenet_original", {"embedding_size": 512}, False, 1.19),  # FaceX-Zoo MobileFaceNet (512-d)
        ("ir50", {}, True, 43.57),  # FaceX-Zoo Resnet50-ir
        ("ir_se152", {}, True, 71.14),  # FaceX-Zoo Resnet152-irse
    ],
)
def test_facex_zoo_counts_reconcile(name, kwargs, drop_bn, published):
    # FaceX-Zoo prints two decimals: the same network counted its way rounds to its figure
    assert round(_thop_millions(build_meta(name, **kwargs), drop_bn), 2) == published
