"""The networks of the paper, with the authors' parameter names (method §2).

Five CIFAR-style networks: CONV-6, ResNet-20, ResNet-32 (option-B shortcuts), Wide-ResNet-28-2
(pre-activation) and the CIFAR variant of MobileNetV2. Parameter names and shapes follow the
authors' models (github.com/eliacunegatti/mge-snn, ``models/``; MobileNetV2 follows the usual
CIFAR variant with ``conv1``/``layers.{i}``/``conv2``/``linear``), so their checkpoints and the
shared fixtures load with :meth:`~torch.nn.Module.load_state_dict`.

Unlike the authors' classes, every network takes ``in_channels``, ``num_classes`` and
``input_size``: the classifier's input size is derived from the input size (CONV-6 on 1×8×8
digits has ``linear.0`` with 256 inputs, on 3×32×32 CIFAR 4,096), and global pooling is adaptive,
so any input at least as large as the network's minimum works. Every ``forward`` is free of
data-dependent Python control flow, so :func:`torch.fx.symbolic_trace` works on all of them.

Initialisation (method §2): Kaiming-normal weights (``nn.init.kaiming_normal_`` defaults), zero
biases, BatchNorm weight 1 and bias 0. Conv/linear biases are frozen (``requires_grad=False``,
method §1): they are never pruned and never trained.

Examples
--------
>>> import torch
>>> from mgelib import models
>>> net = models.build("conv6", in_channels=1, num_classes=10, input_size=8, seed=0)
>>> net.linear[0].in_features
256
>>> net(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
>>> models.MODEL_LABELS["resnet20"]
'Resnet-20'
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mgelib.vocabulary import MODEL_LABELS, MODELS  # our names, and the authors' labels

__all__ = [
    "MODELS",
    "MODEL_LABELS",
    "MIN_INPUT_SIZE",
    "Conv6",
    "ResNet",
    "WideResNet",
    "MobileNetV2",
    "build",
    "init_weights",
]

#: Smallest input side per model: 2 ** (number of halvings), so that every max-pool or strided
#: stage halves a map of at least two pixels (a smaller map would be read only through padding).
MIN_INPUT_SIZE: dict[str, int] = {
    "conv6": 8,
    "resnet20": 4,
    "resnet32": 4,
    "wrn28_2": 4,
    "mobilenetv2": 8,
}


def _hw(input_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return int(input_size), int(input_size)
    h, w = input_size
    return int(h), int(w)


def _check_args(
    label: str, in_channels: int, num_classes: int, input_size: int | tuple[int, int], minimum: int
) -> tuple[int, int]:
    if int(in_channels) < 1:
        raise ValueError(f"{label}: in_channels must be a positive integer, got {in_channels!r}")
    if int(num_classes) < 1:
        raise ValueError(f"{label}: num_classes must be a positive integer, got {num_classes!r}")
    try:
        h, w = _hw(input_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"{label}: input_size must be an int or an (H, W) pair, got {input_size!r}"
        ) from None
    if h < minimum or w < minimum:
        raise ValueError(
            f"{label}: input {h}×{w} is too small; the minimum input size is {minimum}×{minimum} "
            f"(each of its {minimum.bit_length() - 1} downsampling stages halves the map)"
        )
    return h, w


@torch.no_grad()
def init_weights(model: nn.Module) -> nn.Module:
    """Initialise ``model`` in place as in method §2 and return it.

    Conv1d/Conv2d/Linear: Kaiming-normal weight (``nn.init.kaiming_normal_`` defaults: fan-in, gain of a
    ReLU), zero bias, bias frozen. BatchNorm: weight 1, bias 0.

    Examples
    --------
    >>> net = init_weights(torch.nn.Linear(4, 2))
    >>> float(net.bias.abs().sum()), net.bias.requires_grad
    (0.0, False)
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
                module.bias.requires_grad_(False)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


# --------------------------------------------------------------------------------------- CONV-6
class Conv6(nn.Module):
    """CONV-6 (method §2): three (conv-conv-maxpool) stages of 64/128/256 channels, then FC 256-256.

    Convs sit at ``convs1.{0,3,7,10,14,17}``, linears at ``linear.{0,3,6}`` (the authors' names);
    ``linear.0`` has 256·⌊H/8⌋·⌊W/8⌋ inputs, flattened in (c, y, x) order.
    """

    def __init__(
        self, in_channels: int = 3, num_classes: int = 10, input_size: int | tuple[int, int] = 32
    ) -> None:
        super().__init__()
        h, w = _check_args("CONV-6", in_channels, num_classes, input_size, MIN_INPUT_SIZE["conv6"])
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out in (64, 128, 256):
            for _ in range(2):
                layers += [
                    nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=True),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(),
                ]
                c_in = c_out
            layers.append(nn.MaxPool2d((2, 2)))
            h, w = h // 2, w // 2
        self.convs1 = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.linear = nn.Sequential(
            nn.Linear(256 * h * w, 256, bias=True),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, 256, bias=True),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Linear(256, num_classes, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(self.convs1(x)))


# -------------------------------------------------------------------------------------- ResNets
class _BasicBlock(nn.Module):
    """Post-activation basic block; option-B shortcut (1×1 strided conv + BN) on shape change."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # An empty Sequential is the identity and carries no parameters (the authors' layout).
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """The He et al. CIFAR ResNet (method §2) with ``blocks_per_stage`` basic blocks per stage.

    Stages of 16/32/64 channels; the stride-2 sits on each later stage's first ``conv1`` and its
    shortcut; global average pooling, then ``linear``. ResNet-20: 3 blocks, ResNet-32: 5.
    """

    def __init__(
        self,
        blocks_per_stage: int,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        _check_args(
            f"ResNet-{6 * blocks_per_stage + 2}",
            in_channels,
            num_classes,
            input_size,
            MIN_INPUT_SIZE["resnet20"],
        )
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(_BasicBlock(planes_in, planes, stride if j == 0 else 1))
                planes_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


# ---------------------------------------------------------------------------------- Wide-ResNet
class _PreActBlock(nn.Module):
    """Pre-activation WRN block; ``convShortcut`` (1×1, strided) only where the shape changes.

    As in Zagoruyko & Komodakis' code, a block that changes shape applies its shortcut to the
    *activated* input, a block that keeps it adds the raw input.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.convShortcut: nn.Module | None = None
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        # ``equal_in_out`` is fixed at construction, so this branch is resolved while tracing.
        if self.convShortcut is None:
            return x + out
        return self.convShortcut(act) + out


class _WideStage(nn.Module):
    """Holds a stage's blocks under ``layer`` (the authors' ``block{i}.layer.{j}`` names)."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                _PreActBlock(
                    in_planes if j == 0 else out_planes, out_planes, stride if j == 0 else 1
                )
                for j in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """Pre-activation Wide-ResNet (method §2), depth ``6n + 4``, widths 16/32/64 × ``widen_factor``.

    No dropout (the paper's WRN-28-2 uses dropout 0). Names: ``conv1``, ``block{1,2,3}.layer.{j}``,
    final ``bn1``, ``fc``.
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 2,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: int | tuple[int, int] = 32,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"Wide-ResNet depth must be 6n + 4 with n >= 1, got {depth}")
        _check_args(
            f"Wide-ResNet-{depth}-{widen_factor}",
            in_channels,
            num_classes,
            input_size,
            MIN_INPUT_SIZE["wrn28_2"],
        )
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _WideStage(n, widths[0], widths[1], 1)
        self.block2 = _WideStage(n, widths[1], widths[2], 2)
        self.block3 = _WideStage(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1)
        return self.fc(torch.flatten(out, 1))


# ---------------------------------------------------------------------------------- MobileNetV2
class _InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise 3×3 → project (1×1); residual only for stride-1 blocks."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        # ``stride`` is a constant of the module, so tracing resolves this branch.
        if self.stride == 1:
            out = out + self.shortcut(x)
        return out


class MobileNetV2(nn.Module):
    """MobileNetV2, CIFAR variant: stride-1 stem and second stage, 1280-channel head.

    Configuration ``(expansion, out_planes, blocks, stride)`` per stage is :attr:`CFG`; global
    adaptive average pooling before ``linear``.
    """

    CFG: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 1),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(
        self, in_channels: int = 3, num_classes: int = 10, input_size: int | tuple[int, int] = 32
    ) -> None:
        super().__init__()
        _check_args(
            "MobileNetV2", in_channels, num_classes, input_size, MIN_INPUT_SIZE["mobilenetv2"]
        )
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks = []
        in_planes = 32
        for expansion, out_planes, n, stride in self.CFG:
            for j in range(n):
                blocks.append(
                    _InvertedResidual(in_planes, out_planes, expansion, stride if j == 0 else 1)
                )
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


# ---------------------------------------------------------------------------------------- build
def _construct(
    name: str, in_channels: int, num_classes: int, input_size: int | tuple[int, int]
) -> nn.Module:
    if name == "conv6":
        return Conv6(in_channels, num_classes, input_size)
    if name == "resnet20":
        return ResNet(3, in_channels, num_classes, input_size)
    if name == "resnet32":
        return ResNet(5, in_channels, num_classes, input_size)
    if name == "wrn28_2":
        return WideResNet(28, 2, in_channels, num_classes, input_size)
    return MobileNetV2(in_channels, num_classes, input_size)


def _build_user(
    name: str, in_channels: int, num_classes: int, input_size: int | tuple[int, int]
) -> nn.Module:
    """Call a user factory with those of the three arguments it declares; check the result."""
    from mgelib import specs

    factory = specs.resolve(name)
    what = f"model factory {name!r}"
    net = specs.call_declared(
        factory,
        what,
        {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size},
    )
    if not isinstance(net, nn.Module):
        raise ValueError(
            f"{what} returned a {type(net).__name__}, not a torch.nn.Module; it must build and "
            "return the network"
        )
    return net


def build(
    name: str,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 32,
    seed: int | None = None,
) -> nn.Module:
    """Build and initialise one of :data:`MODELS`, or a user model given by a spec.

    Parameters
    ----------
    name
        One of :data:`MODELS` (``"conv6"``, ``"resnet20"``, ``"resnet32"``, ``"wrn28_2"``,
        ``"mobilenetv2"``), or a spec ``package.module:factory`` / ``path/to/file.py:factory``
        (:mod:`mgelib.specs`). The factory is called with those of ``in_channels``,
        ``num_classes`` and ``input_size`` that it declares and must return an
        :class:`~torch.nn.Module`; its own initialisation is kept (call :func:`init_weights`
        inside it for the paper's), drawn under ``seed`` like ours.
    in_channels, num_classes
        Input channels (1 for digits, 3 for CIFAR) and classifier outputs.
    input_size
        Input side ``H`` (square) or ``(H, W)``; at least :data:`MIN_INPUT_SIZE` ``[name]``.
    seed
        If given, the initialisation draws from ``torch.manual_seed(seed)`` inside
        :func:`torch.random.fork_rng`, so it is reproducible and the global RNG is untouched.
        If ``None``, the global RNG is used.

    Returns
    -------
    torch.nn.Module
        The initialised model (Kaiming-normal weights, zero frozen biases) on the CPU, in
        training mode.

    Raises
    ------
    ValueError
        For an unknown name (the message lists :data:`MODELS`), an input smaller than the
        model's minimum, or a spec that does not import, names no callable, has a signature we
        cannot call or returns no module.

    Examples
    --------
    >>> net = build("resnet20", seed=0)
    >>> sum(p.numel() for p in net.parameters())
    272474
    >>> torch.equal(build("resnet20", seed=0).conv1.weight, net.conv1.weight)
    True
    >>> build("torch.nn:Identity").__class__.__name__  # a spec: the factory takes no argument
    'Identity'
    >>> build("math:sqrt")
    Traceback (most recent call last):
    ...
    ValueError: model factory 'math:sqrt' has a required parameter 'x' that mgelib cannot supply; ...
    """
    from mgelib.specs import is_spec

    if is_spec(name):
        make = lambda: _build_user(name, in_channels, num_classes, input_size)  # noqa: E731
    elif name in MODELS:
        make = lambda: init_weights(  # noqa: E731
            _construct(name, in_channels, num_classes, input_size)
        )
    else:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODELS)}, or give a spec "
            "'package.module:factory' or 'path/to/file.py:factory'"
        )
    if seed is None:
        return make().train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return make().train()
