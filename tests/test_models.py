"""Tests for mgelib.models: shapes, parameter counts, the authors' names, fx tracing, init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.fx
from torch import nn

from mgelib import models, paths
from mgelib.masks import prunable_parameters

pytestmark = pytest.mark.usefixtures("torch_single_thread")

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str) -> list[str]:
    return [f"{prefix}.{k}" for k in BN]


# Expected state_dict keys, written from the authors' classes (models/models.py, resnet.py,
# wide_resnet.py at github.com/eliacunegatti/mge-snn) in their registration order.
def _authors_conv6() -> list[str]:
    keys = []
    for i in (0, 3, 7, 10, 14, 17):
        keys += [f"convs1.{i}.weight", f"convs1.{i}.bias", *_bn(f"convs1.{i + 1}")]
    keys += ["linear.0.weight", "linear.0.bias", *_bn("linear.1")]
    keys += ["linear.3.weight", "linear.3.bias", *_bn("linear.4")]
    keys += ["linear.6.weight", "linear.6.bias"]
    return keys


def _authors_resnet(n: int) -> list[str]:
    keys = ["conv1.weight", *_bn("bn1")]
    for stage in (1, 2, 3):
        for j in range(n):
            p = f"layer{stage}.{j}"
            keys += [f"{p}.conv1.weight", *_bn(f"{p}.bn1"), f"{p}.conv2.weight", *_bn(f"{p}.bn2")]
            if stage > 1 and j == 0:  # option B: 1×1 strided conv + BN where the shape changes
                keys += [f"{p}.shortcut.0.weight", *_bn(f"{p}.shortcut.1")]
    return keys + ["linear.weight", "linear.bias"]


def _authors_wrn(n: int = 4) -> list[str]:
    keys = ["conv1.weight"]
    for stage in (1, 2, 3):
        for j in range(n):
            p = f"block{stage}.layer.{j}"
            keys += [*_bn(f"{p}.bn1"), f"{p}.conv1.weight", *_bn(f"{p}.bn2"), f"{p}.conv2.weight"]
            if j == 0:  # every stage's first block changes the width (16→32→64→128)
                keys.append(f"{p}.convShortcut.weight")
    return keys + [*_bn("bn1"), "fc.weight", "fc.bias"]


def _cifar_mobilenetv2() -> list[str]:
    keys = ["conv1.weight", *_bn("bn1")]
    i, in_planes = 0, 32
    for _, out_planes, blocks, stride in models.MobileNetV2.CFG:
        for j in range(blocks):
            p = f"layers.{i}"
            for k in (1, 2, 3):
                keys += [f"{p}.conv{k}.weight", *_bn(f"{p}.bn{k}")]
            if (stride if j == 0 else 1) == 1 and in_planes != out_planes:
                keys += [f"{p}.shortcut.0.weight", *_bn(f"{p}.shortcut.1")]
            in_planes = out_planes
            i += 1
    return keys + ["conv2.weight", *_bn("bn2"), "linear.weight", "linear.bias"]


EXPECTED_KEYS = {
    "conv6": _authors_conv6(),
    "resnet20": _authors_resnet(3),
    "resnet32": _authors_resnet(5),
    "wrn28_2": _authors_wrn(),
    "mobilenetv2": _cifar_mobilenetv2(),
}


@pytest.fixture(scope="module")
def cifar_models() -> dict[str, nn.Module]:
    return {name: models.build(name, seed=0) for name in models.MODELS}


def test_registry():
    assert models.MODELS == ("conv6", "resnet20", "resnet32", "wrn28_2", "mobilenetv2")
    assert set(models.MODEL_LABELS) == set(models.MODELS)
    assert models.MODEL_LABELS["wrn28_2"] == "Wide-Resnet-28-2"
    with pytest.raises(ValueError, match="resnet20"):
        models.build("resnet18")


@pytest.mark.parametrize("name", models.MODELS)
@pytest.mark.parametrize(("channels", "size", "classes"), [(1, 8, 10), (3, 32, 100)])
def test_forward_shapes(name, channels, size, classes):
    net = models.build(name, channels, classes, size, seed=0)
    assert net(torch.randn(2, channels, size, size)).shape == (2, classes)


@pytest.mark.parametrize("name", models.MODELS)
def test_fx_traceable(name):
    net = models.build(name, 1, 10, 8, seed=0).eval()
    traced = torch.fx.symbolic_trace(net)
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(traced(x), net(x))


@pytest.mark.parametrize("name", models.MODELS)
def test_state_dict_keys_match_authors(name, cifar_models):
    assert list(cifar_models[name].state_dict()) == EXPECTED_KEYS[name]


@pytest.mark.parametrize(
    ("name", "expected", "tol"),
    [("resnet20", 0.27e6, 0.03), ("resnet32", 0.46e6, 0.03), ("wrn28_2", 1.47e6, 0.02)],
)
def test_parameter_counts(name, expected, tol, cifar_models):
    n = sum(p.numel() for p in cifar_models[name].parameters())
    assert abs(n - expected) / expected < tol


def test_conv6_classifier_is_derived():
    assert models.build("conv6", 1, 10, 8).linear[0].in_features == 256
    assert models.build("conv6", 3, 10, 32).linear[0].in_features == 256 * 4 * 4
    net = models.build("conv6", 3, 10, (16, 8))
    assert net.linear[0].in_features == 256 * 2 * 1
    assert net(torch.randn(2, 3, 16, 8)).shape == (2, 10)
    conv_idx = [i for i, m in enumerate(net.convs1) if isinstance(m, nn.Conv2d)]
    assert conv_idx == [0, 3, 7, 10, 14, 17]
    assert [i for i, m in enumerate(net.linear) if isinstance(m, nn.Linear)] == [0, 3, 6]


@pytest.mark.parametrize("name", models.MODELS)
def test_too_small_input(name):
    minimum = models.MIN_INPUT_SIZE[name]
    with pytest.raises(ValueError, match=f"minimum input size is {minimum}"):
        models.build(name, 3, 10, minimum - 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        models.build("resnet20", num_classes=0)
    with pytest.raises(ValueError, match="in_channels"):
        models.build("conv6", in_channels=0)


def test_strides_on_first_conv_and_shortcut(cifar_models):
    net = cifar_models["resnet20"]
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)
    assert net.layer3[0].shortcut[0].stride == (2, 2)
    assert net.layer3[0].shortcut[0].kernel_size == (1, 1)
    assert len(net.layer1[0].shortcut) == 0 and len(net.layer2[1].shortcut) == 0
    wrn = cifar_models["wrn28_2"]
    assert wrn.block2.layer[0].convShortcut.stride == (2, 2)
    assert wrn.block1.layer[1].convShortcut is None


@pytest.mark.parametrize("name", models.MODELS)
def test_initialisation(name, cifar_models):
    net = cifar_models[name]
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if module.bias is not None:
                assert not module.bias.requires_grad
                assert torch.count_nonzero(module.bias) == 0
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    # Kaiming normal, fan-in mode, ReLU gain: std = sqrt(2 / fan_in).
    w = prunable_parameters(net)
    big = max(w.values(), key=lambda p: p.numel())
    fan_in = big[0].numel()
    assert float(big.detach().std()) == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.05)


def test_seed_is_deterministic_and_leaves_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = models.build("resnet20", seed=7)
    after = torch.rand(3)
    b = models.build("resnet20", seed=7)
    c = models.build("resnet20", seed=8)
    assert torch.equal(after, expected)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


@pytest.mark.fixtures
@pytest.mark.parametrize(
    ("folder", "name"), [("conv6_erk_s0.98", "conv6"), ("resnet20_erk_s0.98", "resnet20")]
)
def test_fixture_weights_load(folder, name):
    path = paths.fixtures_dir() / folder / "masked_weights.npz"
    net = models.build(name, 3, 10, 32, seed=0)
    with np.load(path) as z:
        state = {f"{k}.weight": torch.from_numpy(z[k]) for k in z.files}
    result = net.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if k in prunable_parameters(net)]
    assert set(state) == set(prunable_parameters(net))
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value)
