"""Compact test models (3×32×32 input, few channels) reproducing the architectural patterns of
the common CIFAR model files (kuangliu/pytorch-cifar ``models/``, akamaster's option-A ResNet-20)
and a few operations besides (overlapping pools, Conv1d, dilation, padding, upsampling).

Written from the patterns, not copied: each class keeps only what decides the dataflow (block
wiring, strides, groups, concatenations, gates, shortcuts), with 4–16 channels so that encoding
and the Jacobian oracle stay fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ZOO", "build"]


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, g: int = 1, d: int = 1) -> nn.Sequential:
    p = d * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, p, dilation=d, groups=g, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class VGG(nn.Module):
    """conv-BN-ReLU stacks between max pools, a 1×1 average pool, one linear layer."""

    def __init__(self) -> None:
        super().__init__()
        layers, c = [], 3
        for v in [8, "M", 8, "M", 16, 16, "M", 16, "M", 16, "M"]:
            layers += [nn.MaxPool2d(2)] if v == "M" else list(_cbr(c, v))
            c = v if v != "M" else c
        self.features = nn.Sequential(*layers, nn.AvgPool2d(1))
        self.classifier = nn.Linear(16, 10)

    def forward(self, x):
        return self.classifier(self.features(x).view(x.size(0), -1))


class Basic(nn.Module):
    """Two 3×3 convs; a 1×1 conv shortcut when the shape changes, else identity."""

    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if s != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided, optionally grouped) → 1×1 ×expansion, conv shortcut."""

    def __init__(self, cin: int, mid: int, s: int, groups: int = 1, expansion: int = 4) -> None:
        super().__init__()
        cout = mid * expansion
        self.c1, self.b1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.c2 = nn.Conv2d(mid, mid, 3, s, 1, groups=groups, bias=False)
        self.b2 = nn.BatchNorm2d(mid)
        self.c3, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if s != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        out = F.relu(self.b2(self.c2(out)))
        return F.relu(self.b3(self.c3(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, stages of blocks (stride 2 from the second), global average pool, linear."""

    def __init__(self, block: str = "basic", groups: int = 1) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        blocks, c = [], 8
        for i, w in enumerate([8, 16]):
            for j in range(2):
                s = 2 if i > 0 and j == 0 else 1
                if block == "basic":
                    blocks.append(Basic(c, w, s))
                    c = w
                else:
                    blocks.append(
                        Bottleneck(
                            c, w // 2 if groups == 1 else w, s, groups, 4 if groups == 1 else 2
                        )
                    )
                    c = (w // 2) * 4 if groups == 1 else w * 2
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(c, 10)

    def forward(self, x):
        out = self.layers(F.relu(self.bn(self.stem(x))))
        out = F.avg_pool2d(out, out.size(2))
        return self.linear(out.view(out.size(0), -1))


class PreAct(nn.Module):
    """Pre-activation block: the shortcut conv reads relu(bn(x))."""

    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.b1, self.c1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, s, 1, bias=False)
        self.b2, self.c2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if s != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False))

    def forward(self, x):
        out = F.relu(self.b1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.c1(out)
        return self.c2(F.relu(self.b2(out))) + shortcut


class PreActResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.layers = nn.Sequential(PreAct(8, 8, 1), PreAct(8, 16, 2), PreAct(16, 16, 1))
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1)
        return self.linear(out.flatten(1))


class Inception(nn.Module):
    """Four branches concatenated on channels: 1×1; 1×1→3×3; 1×1→3×3→3×3; 3×3 pool→1×1."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.b1 = _cbr(cin, a, 1)
        self.b2 = nn.Sequential(_cbr(cin, b, 1), _cbr(b, b))
        self.b3 = nn.Sequential(_cbr(cin, c, 1), _cbr(c, c), _cbr(c, c))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(cin, d, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = _cbr(3, 8)
        self.a3 = Inception(8, 4, 4, 2, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.a4 = Inception(12, 4, 4, 4, 4)
        self.avg = nn.AvgPool2d(8, 8)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = self.pool(self.a3(self.pre(x)))
        out = self.avg(self.pool(self.a4(out)))
        return self.linear(out.view(out.size(0), -1))


class Dense(nn.Module):
    """Dense bottleneck: cat([new features, x])."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.b1, self.c1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.b2, self.c2 = (
            nn.BatchNorm2d(4 * growth),
            nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
        )

    def forward(self, x):
        out = self.c2(F.relu(self.b2(self.c1(F.relu(self.b1(x))))))
        return torch.cat([out, x], 1)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 2) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 2 * growth, 3, padding=1, bias=False)
        c, layers = 2 * growth, []
        for stage in range(2):
            for _ in range(2):
                layers.append(Dense(c, growth))
                c += growth
            if stage == 0:
                out = c // 2
                layers += [
                    nn.BatchNorm2d(c),
                    nn.ReLU(),
                    nn.Conv2d(c, out, 1, bias=False),
                    nn.AvgPool2d(2),
                ]
                c = out
        self.features = nn.Sequential(*layers)
        self.bn, self.linear = nn.BatchNorm2d(c), nn.Linear(c, 10)

    def forward(self, x):
        out = F.avg_pool2d(F.relu(self.bn(self.features(self.stem(x)))), 4)
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(out.view(out.size(0), -1))


class Root(nn.Module):
    """DLA root: concatenate children, 1×1 conv (optionally plus the first child)."""

    def __init__(self, cin: int, cout: int, residual: bool = False) -> None:
        super().__init__()
        self.conv, self.bn, self.residual = (
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            residual,
        )

    def forward(self, xs):
        out = self.bn(self.conv(torch.cat(xs, 1)))
        return F.relu(out + xs[0] if self.residual else out)


class Tree(nn.Module):
    """DLA tree: level 1 = two blocks and a root; deeper levels recurse; the root also takes the
    previous aggregate (``prev``)."""

    def __init__(self, cin: int, cout: int, level: int, s: int, prev: bool = False) -> None:
        super().__init__()
        self.level, self.prev = level, prev
        if level == 1:
            self.left, self.right = Basic(cin, cout, s), Basic(cout, cout, 1)
            self.root = Root((3 if prev else 2) * cout, cout, residual=True)
        else:
            self.left = Tree(cin, cout, level - 1, s)
            self.right = Tree(cout, cout, level - 1, 1, prev=True)
            self.root = Root(2 * cout, cout)

    def forward(self, x, prev=None):
        if self.level == 1:
            a = self.left(x)
            b = self.right(a)
            return self.root([a, b] if prev is None else [a, b, prev])
        a = self.left(x)
        return self.right(a, a)


class DLA(nn.Module):
    def __init__(self, simple: bool = False) -> None:
        super().__init__()
        self.base = _cbr(3, 4)
        self.l1 = _cbr(4, 4)
        self.l2 = Tree(4, 8, 1, 1)
        self.l3 = Tree(8, 8, 2 if not simple else 1, 2)
        self.l4 = Tree(8, 16, 1, 2)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = self.l4(self.l3(self.l2(self.l1(self.base(x)))))
        return self.linear(F.avg_pool2d(out, 8).flatten(1))


class MobileNet(nn.Module):
    """Depthwise 3×3 (strided) + pointwise 1×1 blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        blocks, c = [], 8
        for cout, s in [(8, 1), (16, 2), (16, 1), (16, 2)]:
            blocks += [_cbr(c, c, 3, s, g=c), _cbr(c, cout, 1)]
            c = cout
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = F.avg_pool2d(self.layers(self.stem(x)), 8)
        return self.linear(out.view(out.size(0), -1))


class Inverted(nn.Module):
    """MobileNetV2: expand 1×1, depthwise 3×3, project 1×1; conv shortcut if stride 1 and the
    width changes, identity if it does not."""

    def __init__(self, cin: int, cout: int, t: int, s: int) -> None:
        super().__init__()
        mid, self.s = cin * t, s
        self.body = nn.Sequential(_cbr(cin, mid, 1), _cbr(mid, mid, 3, s, g=mid),
                                  nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))  # fmt: skip
        self.shortcut = nn.Sequential()
        if s == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.body(x)
        return out + self.shortcut(x) if self.s == 1 else out


class MobileNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        self.layers = nn.Sequential(
            Inverted(8, 4, 1, 1), Inverted(4, 8, 2, 2), Inverted(8, 8, 2, 1)
        )
        self.head = _cbr(8, 16, 1)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = F.avg_pool2d(self.head(self.layers(self.stem(x))), 16)
        return self.linear(out.view(out.size(0), -1))


def shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    return x.view(n, groups, c // groups, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class ShuffleSplit(nn.Module):
    """ShuffleNetV2 basic unit: split channels by a ratio (Python size arithmetic), transform one
    half, concatenate, shuffle."""

    def __init__(self, c: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.ratio = ratio
        half = int(c * ratio)
        self.c1 = _cbr(half, half, 1)
        self.dw = nn.Sequential(
            nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), nn.BatchNorm2d(half)
        )
        self.c3 = _cbr(half, half, 1)

    def forward(self, x):
        k = int(x.size(1) * self.ratio)
        x1, x2 = x[:, :k, :, :], x[:, k:, :, :]
        out = self.c3(self.dw(self.c1(x2)))
        return shuffle(torch.cat([x1, out], 1), 2)


class ShuffleDown(nn.Module):
    """ShuffleNetV2 down-sampling unit: two strided branches, concatenated and shuffled."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.left = nn.Sequential(
            nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            _cbr(cin, mid, 1),
        )
        self.right = nn.Sequential(_cbr(cin, mid, 1), nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False),
                                   nn.BatchNorm2d(mid), _cbr(mid, mid, 1))  # fmt: skip

    def forward(self, x):
        return shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        self.layers = nn.Sequential(
            ShuffleDown(8, 8), ShuffleSplit(8), ShuffleDown(8, 16), ShuffleSplit(16)
        )
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = F.avg_pool2d(self.layers(self.stem(x)), 8)
        return self.linear(out.view(out.size(0), -1))


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * x.sigmoid()


class SE(nn.Module):
    """Squeeze-excitation: global pool → 1×1 conv → act → 1×1 conv → sigmoid, times the input."""

    def __init__(self, c: int, r: int, act=F.relu) -> None:
        super().__init__()
        self.se1, self.se2, self.act = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1), act

    def forward(self, x):
        w = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.se2(self.act(self.se1(w))))


class MBConv(nn.Module):
    """EfficientNet block: expand, depthwise, swish, SE (swish), project; identity if it fits."""

    def __init__(self, cin: int, cout: int, t: int, s: int) -> None:
        super().__init__()
        mid = cin * t
        self.expand = nn.Conv2d(cin, mid, 1, bias=False) if t != 1 else None
        self.b1 = nn.BatchNorm2d(mid)
        self.dw, self.b2 = nn.Conv2d(mid, mid, 3, s, 1, groups=mid, bias=False), nn.BatchNorm2d(mid)
        self.se = SE(mid, max(1, cin // 4), act=swish)
        self.project, self.b3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.identity = s == 1 and cin == cout

    def forward(self, x):
        out = x if self.expand is None else swish(self.b1(self.expand(x)))
        out = self.se(swish(self.b2(self.dw(out))))
        out = self.b3(self.project(out))
        return out + x if self.identity else out


class EfficientNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.layers = nn.Sequential(MBConv(8, 8, 1, 1), MBConv(8, 8, 2, 1), MBConv(8, 16, 2, 2))
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = self.layers(swish(self.bn(self.stem(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class RegBlock(nn.Module):
    """RegNet X block (grouped 3×3 bottleneck, ratio 1) with an optional SE (RegNet Y)."""

    def __init__(self, cin: int, cout: int, s: int, group_width: int, se: bool) -> None:
        super().__init__()
        self.c1 = _cbr(cin, cout, 1)
        self.c2 = _cbr(cout, cout, 3, s, g=cout // group_width)
        self.se = SE(cout, max(1, cin // 4)) if se else nn.Identity()
        self.c3, self.b3 = nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if s != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.b3(self.c3(self.se(self.c2(self.c1(x)))))
        return F.relu(out + self.shortcut(x))


class RegNet(nn.Module):
    def __init__(self, se: bool = False) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        self.layers = nn.Sequential(RegBlock(8, 8, 1, 4, se), RegBlock(8, 16, 2, 4, se))
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        return self.linear(F.adaptive_avg_pool2d(self.layers(self.stem(x)), (1, 1)).flatten(1))


class SEBasic(nn.Module):
    """SENet basic block: the SE gate (avg_pool2d over the whole map) on the residual branch."""

    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if s != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout)
            )
        self.fc1, self.fc2 = nn.Conv2d(cout, cout // 4, 1), nn.Conv2d(cout // 4, cout, 1)

    def forward(self, x):
        out = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        w = F.avg_pool2d(out, out.size(2))
        w = F.sigmoid(self.fc2(F.relu(self.fc1(w))))
        out = out * w
        out += self.shortcut(x)
        return F.relu(out)


class SENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        self.layers = nn.Sequential(SEBasic(8, 8, 1), SEBasic(8, 16, 2))
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = F.avg_pool2d(self.layers(self.stem(x)), 4)
        return self.linear(F.adaptive_avg_pool2d(out, 1).view(x.size(0), -1))


class DualPath(nn.Module):
    """DPN block: grouped 3×3 bottleneck; the first ``d`` channels of shortcut and output are
    added (residual path), the rest concatenated (dense path)."""

    def __init__(self, cin: int, mid: int, d: int, dense: int, s: int, first: bool) -> None:
        super().__init__()
        self.d = d
        self.c1 = _cbr(cin, mid, 1)
        self.c2 = _cbr(mid, mid, 3, s, g=2)
        self.c3, self.b3 = nn.Conv2d(mid, d + dense, 1, bias=False), nn.BatchNorm2d(d + dense)
        self.shortcut = nn.Sequential()
        if first:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, d + dense, 1, s, bias=False), nn.BatchNorm2d(d + dense)
            )

    def forward(self, x):
        out = self.b3(self.c3(self.c2(self.c1(x))))
        x = self.shortcut(x)
        d = self.d
        out = torch.cat([x[:, :d, :, :] + out[:, :d, :, :], x[:, d:, :, :], out[:, d:, :, :]], 1)
        return F.relu(out)


class DPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        self.b1 = DualPath(8, 4, 8, 2, 1, True)  # 8 + 2 + 2 = 12 channels out
        self.b2 = DualPath(12, 4, 8, 2, 1, False)  # 12 + 2 = 14
        self.b3 = DualPath(14, 8, 8, 2, 2, True)  # 12
        self.linear = nn.Linear(12, 10)

    def forward(self, x):
        out = self.b3(self.b2(self.b1(self.stem(x))))
        return self.linear(F.avg_pool2d(out, 16).view(x.size(0), -1))


class SepConv(nn.Module):
    """PNASNet separable conv: a grouped conv with groups = input channels (k outputs each)."""

    def __init__(self, cin: int, cout: int, k: int, s: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=cin, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class CellB(nn.Module):
    """PNASNet cell B: two separable branches and a max-pool branch, summed in pairs,
    concatenated, then a 1×1 conv."""

    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.s = s
        self.sep1, self.sep2, self.sep3 = (
            SepConv(cin, cout, 7, s),
            SepConv(cin, cout, 3, s),
            SepConv(cin, cout, 5, s),
        )
        if s == 2:
            self.c1, self.b1 = nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(2 * cout, cout, 1, bias=False), nn.BatchNorm2d(cout)

    def forward(self, x):
        y1, y2 = self.sep1(x), self.sep2(x)
        y3 = F.max_pool2d(x, 3, self.s, 1)
        if self.s == 2:
            y3 = self.b1(self.c1(y3))
        y4 = self.sep3(x)
        b1, b2 = F.relu(y1 + y2), F.relu(y3 + y4)
        return F.relu(self.b2(self.c2(torch.cat([b1, b2], 1))))


class PNASNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _cbr(3, 8)
        self.cells = nn.Sequential(CellB(8, 8, 1), CellB(8, 16, 2))
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        return self.linear(F.avg_pool2d(self.cells(self.stem(x)), 16).view(x.size(0), -1))


class LeNet(nn.Module):
    """Two 5×5 convs with functional max pooling, then three linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 5), nn.Conv2d(4, 8, 5)
        self.fc1, self.fc2, self.fc3 = (
            nn.Linear(8 * 5 * 5, 16),
            nn.Linear(16, 12),
            nn.Linear(12, 10),
        )

    def forward(self, x):
        out = F.max_pool2d(F.relu(self.conv1(x)), 2)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        out = out.view(out.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(out)))))


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class OptionA(nn.Module):
    """akamaster ResNet-20 block: the shortcut subsamples with ``x[:, :, ::2, ::2]`` and pads
    channels with zeros (option A: no parameters)."""

    def __init__(self, cin: int, cout: int, s: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if s != 1 or cin != cout:
            p = (cout - cin) // 2
            self.shortcut = Lambda(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p), "constant", 0)
            )

    def forward(self, x):
        out = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(out)) + self.shortcut(x))


class ResNet20A(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4)
        blocks, c = [], 4
        for i, w in enumerate([4, 8, 16]):
            for j in range(2):
                blocks.append(OptionA(c, w, 2 if i > 0 and j == 0 else 1))
                c = w
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(16, 10)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class AlexNetLike(nn.Module):
    """Overlapping max pools (3×3, stride 2) between convs, then linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(8 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, 10)
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class Misc(nn.Module):
    """Operations beyond the zoo: dilated and grouped convs, ``F.pad`` (reflect and constant),
    bilinear and nearest upsampling, channel chunk, an element-wise max, adaptive max pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.c3 = nn.Conv2d(8, 4, 3, padding_mode="reflect", padding=1)
        self.c4 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 2 * 2, 10)

    def forward(self, x):
        out = F.relu(self.c1(x))  # 8×16×16
        a, b = out.chunk(2, dim=1)
        out = torch.cat([torch.maximum(a, b), b], 1) + F.interpolate(self.c2(out), scale_factor=1.0)
        out = F.interpolate(F.avg_pool2d(self.c3(out), 2), scale_factor=2, mode="bilinear")
        out = F.pad(F.interpolate(out, size=(8, 8), mode="nearest"), (1, 1, 1, 1))
        return self.fc(F.adaptive_max_pool2d(self.c4(out), 2).flatten(1))


class Conv1dNet(nn.Module):
    """A 1-D signal model (input (C, L)): Conv1d stack with pooling, then linear."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = nn.Conv1d(2, 4, 5, padding=2), nn.Conv1d(4, 4, 3, stride=2, dilation=2)
        self.fc = nn.Linear(4 * 6, 5)

    def forward(self, x):
        out = F.max_pool1d(F.relu(self.c1(x)), 2)
        out = F.relu(self.c2(out))
        return self.fc(out.flatten(1))


#: name → (constructor, input shape)
ZOO = {
    "vgg": (VGG, (3, 32, 32)),
    "resnet18": (ResNet, (3, 32, 32)),
    "resnet50": (lambda: ResNet("bottleneck"), (3, 32, 32)),
    "preact_resnet18": (PreActResNet, (3, 32, 32)),
    "googlenet": (GoogLeNet, (3, 32, 32)),
    "densenet121": (DenseNet, (3, 32, 32)),
    "dla": (DLA, (3, 32, 32)),
    "simple_dla": (lambda: DLA(simple=True), (3, 32, 32)),
    "mobilenet": (MobileNet, (3, 32, 32)),
    "mobilenetv2": (MobileNetV2, (3, 32, 32)),
    "shufflenetv2": (ShuffleNetV2, (3, 32, 32)),
    "efficientnet_b0": (EfficientNet, (3, 32, 32)),
    "regnetx": (RegNet, (3, 32, 32)),
    "regnety": (lambda: RegNet(se=True), (3, 32, 32)),
    "senet18": (SENet, (3, 32, 32)),
    "dpn26": (DPN, (3, 32, 32)),
    "pnasnet": (PNASNet, (3, 32, 32)),
    "resnext29": (lambda: ResNet("bottleneck", groups=4), (3, 32, 32)),
    "lenet": (LeNet, (3, 32, 32)),
    "resnet20_option_a": (ResNet20A, (3, 32, 32)),
    "alexnet_like": (AlexNetLike, (3, 32, 32)),
    "misc_ops": (Misc, (3, 32, 32)),
    "conv1d": (Conv1dNet, (2, 32)),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """The zoo model ``name`` (seeded init, eval mode) and its input shape."""
    make, shape = ZOO[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make()
    return model.eval(), shape
