"""Backbones: shapes, parameter counts, FLOPs, arcface_torch state-dict compatibility, registry errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import facezoo
from facezoo.errors import ConfigError, ModelError

ALL_NAMES = {
    "ir18",
    "ir34",
    "ir50",
    "ir100",
    "ir200",
    "ir_se50",
    "ir_se100",
    "mobilefacenet",
    "mobilefacenet_original",
}
# tested in their own files, tests/models/test_backbone_<family>.py
MORE_FAMILIES = {
    *("vit_t", "vit_s", "vit_b", "vit_l", "vit_h", "swin_t", "swin_s", "hrnet_w18", "attention56", "attention92"),
    *("lightcnn29", "repvgg_a0", "repvgg_b0", "repvgg_b1", "sphere20", "sphere64", "cbam_ir50"),
    "dlib_resnet",  # tests/models/test_dlib_format.py, tests/dlib/
}
EMBED = {"mobilefacenet_original": 128}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- registry / shapes
def test_registry_lists_all_names():
    assert set(facezoo.list_backbones()) == ALL_NAMES | MORE_FAMILIES


def test_unknown_name_is_config_error_with_suggestion():
    with pytest.raises(ConfigError) as err:
        facezoo.create_backbone("ir_50")
    msg = str(err.value)
    assert "ir_50" in msg and "Did you mean 'ir50'" in msg


@pytest.mark.parametrize("name", sorted(ALL_NAMES))
def test_output_shape_112(name):
    # train mode: BN uses batch statistics (at init, eval-mode BN is the identity and N(0, 0.1) convs
    # make a 100-block residual stream overflow, as in arcface_torch)
    model = facezoo.create_backbone(name).train()
    assert model.input_size == (112, 112)
    assert model.embedding_size == EMBED.get(name, 512)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, EMBED.get(name, 512))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["ir18", "mobilefacenet"])
@pytest.mark.parametrize("size", [(112, 96), (64, 64), (56, 56)])
def test_output_shape_other_sizes(name, size):
    model = facezoo.create_backbone(name, input_size=size, embedding_size=256).eval()
    assert model.input_size == size
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 256)


def test_flatten_size_follows_input_size():
    # four stride-2 3x3/pad-1 steps: n -> ceil(n/2) four times; 112 -> 7, 96 -> 6, 64 -> 4
    ir = facezoo.create_backbone("ir18", input_size=(112, 96), width=0.25)
    assert ir.fc.in_features == 128 * 7 * 6
    mbf = facezoo.create_backbone("mobilefacenet", input_size=64)
    assert mbf.features.layers[0].layers[0].kernel_size == (4, 4)


def test_int_input_size_and_bad_sizes():
    assert facezoo.create_backbone("ir18", width=0.25, input_size=64).input_size == (64, 64)
    for bad in [0, (112,), "112", (112, 96, 3), 8]:
        with pytest.raises(ConfigError):
            facezoo.create_backbone("ir18", width=0.25, input_size=bad)


@pytest.mark.parametrize("name", ["ir18", "mobilefacenet"])
def test_wrong_input_size_is_model_error(name):
    model = facezoo.create_backbone(name, input_size=64, **({"width": 0.25} if name == "ir18" else {})).eval()
    with pytest.raises(ModelError, match="input_size"):
        model(torch.randn(1, 3, 112, 112))


# ---------------------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize(
    "name, millions",
    [("ir50", 43.6), ("ir100", 65.2), ("mobilefacenet", 2.1), ("mobilefacenet_original", 1.0)],
)
def test_parameter_counts_match_published(name, millions):
    # published figures (anchors.md / models.md, MobileFaceNet paper); +-0.05M catches a missing conv or block
    assert abs(n_params(facezoo.create_backbone(name)) / 1e6 - millions) <= 0.05


def test_ir_se_adds_exactly_the_se_weights():
    # SE per block: two bias-free 1x1 convs C -> C/16 -> C, i.e. 2 * C * C / 16 parameters
    depths, channels = (3, 4, 14, 3), (64, 128, 256, 512)
    extra = sum(n * 2 * c * (c // 16) for n, c in zip(depths, channels))
    assert n_params(facezoo.create_backbone("ir_se50")) - n_params(facezoo.create_backbone("ir50")) == extra


# ---------------------------------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize("name, gflops", [("ir50", 12.6), ("mobilefacenet", 0.88), ("mobilefacenet_original", 0.44)])
def test_forward_flops(name, gflops):
    # anchors.md: FlopCounterMode at 112x112, batch 1; the paper's MobileFaceNet is 0.22 GMAC = 0.44 GFLOPs
    model = facezoo.create_backbone(name).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, 112, 112))
    assert abs(counter.get_total_flops() / 1e9 - gflops) <= 0.03 * gflops


# ---------------------------------------------------------------------------------------------- arcface_torch layout
def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {
        f"{prefix}.weight": (c,),
        f"{prefix}.bias": (c,),
        f"{prefix}.running_mean": (c,),
        f"{prefix}.running_var": (c,),
        f"{prefix}.num_batches_tracked": (),
    }


def arcface_torch_iresnet_table(layers=(3, 4, 14, 3), emb=512) -> dict[str, tuple]:
    """Key -> shape of arcface_torch's iresnet state dict, written from the architecture rules."""
    t = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    c_in = 64
    for s, (n, c) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            cin = c_in if b == 0 else c
            t.update(_bn(f"{p}.bn1", cin))
            t[f"{p}.conv1.weight"] = (c, cin, 3, 3)
            t.update(_bn(f"{p}.bn2", c))
            t[f"{p}.prelu.weight"] = (c,)
            t[f"{p}.conv2.weight"] = (c, c, 3, 3)
            t.update(_bn(f"{p}.bn3", c))
            if b == 0:  # every stage's first block strides 2, so it has a projection shortcut
                t[f"{p}.downsample.0.weight"] = (c, cin, 1, 1)
                t.update(_bn(f"{p}.downsample.1", c))
        c_in = c
    t.update(_bn("bn2", 512))
    t["fc.weight"] = (emb, 512 * 7 * 7)
    t["fc.bias"] = (emb,)
    t.update(_bn("features", emb))
    return t


def arcface_torch_mbf_table(blocks=(1, 4, 6, 2), scale=2, emb=512) -> dict[str, tuple]:
    """Key -> shape of arcface_torch's mobilefacenet ("mbf") state dict, from its module rules."""
    t: dict[str, tuple] = {}

    def conv_block(p, cin, cout, k=1, groups=1, act=True):
        t[f"{p}.layers.0.weight"] = (cout, cin // groups, k, k)
        t.update(_bn(f"{p}.layers.1", cout))
        if act:
            t[f"{p}.layers.2.weight"] = (cout,)

    def depthwise(p, cin, cout, inner):
        conv_block(f"{p}.layers.0", cin, inner)
        conv_block(f"{p}.layers.1", inner, inner, 3, groups=inner)
        conv_block(f"{p}.layers.2", inner, cout, act=False)

    c1, c2 = 64 * scale, 128 * scale
    assert blocks[0] == 1
    conv_block("layers.0", 3, c1, 3)
    conv_block("layers.1", c1, c1, 3, groups=64)
    depthwise("layers.2", c1, c1, 128)
    for i in range(blocks[1]):
        depthwise(f"layers.3.layers.{i}", c1, c1, 128)
    depthwise("layers.4", c1, c2, 256)
    for i in range(blocks[2]):
        depthwise(f"layers.5.layers.{i}", c2, c2, 256)
    depthwise("layers.6", c2, c2, 512)
    for i in range(blocks[3]):
        depthwise(f"layers.7.layers.{i}", c2, c2, 256)
    conv_block("conv_sep", c2, 512)
    conv_block("features.layers.0", 512, 512, 7, groups=512, act=False)
    t["features.layers.2.weight"] = (emb, 512)
    t.update(_bn("features.layers.3", emb))
    return t


def random_state_dict(table: dict[str, tuple]) -> dict[str, torch.Tensor]:
    sd = {}
    for k, shape in table.items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape) + 0.5
        else:
            sd[k] = torch.randn(shape) * 0.05
    return sd


@pytest.mark.parametrize(
    "name, table",
    [("ir50", arcface_torch_iresnet_table()), ("mobilefacenet", arcface_torch_mbf_table())],
    ids=["ir50", "mobilefacenet"],
)
def test_loads_arcface_torch_state_dict_strict(name, table):
    model = facezoo.create_backbone(name).eval()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == table
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        before = model(x)
        sd = random_state_dict(table)
        model.load_state_dict(sd, strict=True)
        after = model(x)
    assert not torch.allclose(before, after)
    assert torch.equal(model.state_dict()[next(iter(table))], sd[next(iter(table))])


def test_strict_load_names_missing_and_misshaped_keys():
    table = arcface_torch_iresnet_table()
    model = facezoo.create_backbone("ir50")
    sd = random_state_dict(table)
    del sd["layer3.5.conv1.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key.*layer3\.5\.conv1\.weight"):
        model.load_state_dict(sd, strict=True)
    sd = random_state_dict(table)
    sd["fc.weight"] = torch.zeros(512, 512 * 7 * 6)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc\.weight"):
        model.load_state_dict(sd, strict=True)


def test_ir_blocks_follow_arcface_depths():
    expected = {
        "ir18": (2, 2, 2, 2),
        "ir34": (3, 4, 6, 3),
        "ir50": (3, 4, 14, 3),
        "ir100": (3, 13, 30, 3),
        "ir200": (6, 26, 60, 6),
    }
    for name, depths in expected.items():
        model = facezoo.create_backbone(name, width=0.125)
        got = tuple(len(getattr(model, f"layer{s}")) for s in range(1, 5))
        assert got == depths, name


# ---------------------------------------------------------------------------------------------- block semantics
def _randomise_bn(model):
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            if m.weight.requires_grad:
                m.weight.data.uniform_(0.5, 1.5)


def test_ir_block_order_matches_definition():
    # BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus conv1x1(stride) + BN shortcut
    model = facezoo.create_backbone("ir18", width=0.25, input_size=32).eval()
    _randomise_bn(model)
    blk = model.layer2[0]

    def bn(m, x):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    x = torch.randn(2, 16, 16, 16)
    y = bn(blk.bn1, x)
    y = F.conv2d(y, blk.conv1.weight, padding=1)
    y = F.prelu(bn(blk.bn2, y), blk.prelu.weight)
    y = bn(blk.bn3, F.conv2d(y, blk.conv2.weight, stride=2, padding=1))
    short = bn(blk.downsample[1], F.conv2d(x, blk.downsample[0].weight, stride=2))
    with torch.no_grad():
        assert torch.allclose(blk(x), y + short, atol=1e-5)


def test_squeeze_excitation_formula():
    model = facezoo.create_backbone("ir_se50")
    se = model.layer4[1].se  # 512 channels -> 32 hidden
    assert se.fc1.weight.shape == (32, 512, 1, 1) and se.fc2.weight.shape == (512, 32, 1, 1)
    x = torch.randn(2, 512, 4, 4)
    pooled = x.mean(dim=(2, 3))  # (2, 512)
    gate = torch.sigmoid(torch.relu(pooled @ se.fc1.weight[:, :, 0, 0].T) @ se.fc2.weight[:, :, 0, 0].T)
    with torch.no_grad():
        assert torch.allclose(se(x), x * gate[:, :, None, None], atol=1e-6)


def test_ir_init_and_frozen_feature_scale():
    model = facezoo.create_backbone("ir50")
    w = model.layer3[0].conv1.weight  # 256*128*9 samples of N(0, 0.1)
    assert abs(w.std().item() - 0.1) < 0.002 and abs(w.mean().item()) < 0.002
    assert torch.equal(model.layer2[1].bn2.weight, torch.ones(128)) and torch.equal(model.bn2.bias, torch.zeros(512))
    assert not model.features.weight.requires_grad
    assert torch.equal(model.features.weight, torch.ones(512))


def test_mbf_init_is_kaiming_fan_out():
    model = facezoo.create_backbone("mobilefacenet")
    w = model.conv_sep.layers[0].weight  # (512, 256, 1, 1): fan_out 512, std sqrt(2/512)
    assert abs(w.std().item() / math.sqrt(2 / 512) - 1) < 0.02


# ---------------------------------------------------------------------------------------------- training behaviour
def test_backward_finite_grads_tiny_ir18():
    model = facezoo.create_backbone("ir18", width=0.25, input_size=64, embedding_size=32).train()
    out = model(torch.randn(4, 3, 64, 64))
    out.pow(2).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
    assert model.features.weight.grad is None


def test_channels_last_matches_contiguous():
    for name, kw in [("ir18", {"width": 0.25}), ("mobilefacenet", {})]:
        model = facezoo.create_backbone(name, input_size=64, **kw).train()
        x = torch.randn(8, 3, 64, 64)
        with torch.no_grad():
            for m in model.modules():  # calibrate BN running stats on x, so eval outputs are well scaled
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = 1.0
            model(x)
            model.eval()
            ref = model(x)
            out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        assert out.is_contiguous() and (out - ref).norm() <= 1e-4 * ref.norm()


@pytest.mark.parametrize("name", ["ir18", "mobilefacenet"])
def test_dropout_active_only_in_training(name):
    kw = {"width": 0.25} if name == "ir18" else {}
    model = facezoo.create_backbone(name, input_size=32, dropout=0.5, **kw)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
    with pytest.raises(ConfigError):
        facezoo.create_backbone(name, dropout=1.5)


@pytest.mark.parametrize(
    "name, kw",
    [
        ("ir18", {"width": 0}),
        ("ir18", {"layers": (2, 2, 2)}),
        ("ir18", {"embedding_size": 0}),
        ("mobilefacenet", {"blocks": (1, 0, 6, 2)}),
        ("mobilefacenet", {"scale": -1}),
    ],
)
def test_bad_keywords_are_config_errors(name, kw):
    with pytest.raises(ConfigError, match=next(iter(kw))):
        facezoo.create_backbone(name, **kw)
