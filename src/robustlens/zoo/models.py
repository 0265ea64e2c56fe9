"""The architectures of the model zoo, written from their papers.

- ``MLP``: a fully connected ReLU network.
- ``LeNet``: LeNet-5 (LeCun et al., *Gradient-based learning applied to document recognition*, 1998), with ReLU
  and max pooling.
- ``SmallCNN``: two 3x3 convolutions (32, 64 channels) with max pooling and a 128-unit hidden layer; fast on CPU.
- ``ResNet18``: He et al., *Deep Residual Learning for Image Recognition*, CVPR 2016, with the CIFAR stem
  (one 3x3 convolution, no max pooling) used throughout the robustness literature.
- ``PreActResNet18``: He et al., *Identity Mappings in Deep Residual Networks*, ECCV 2016, same stem.
- ``WideResNet``: Zagoruyko and Komodakis, *Wide Residual Networks*, BMVC 2016; WRN-28-10 is the model of
  Madry et al. (2018) and of most RobustBench CIFAR-10 entries.

All return logits (paper, Sec. II-A: the classifier ``k(x) = argmax_k f_k(x)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MLP(nn.Module):
    """``Flatten -> [Linear -> ReLU] * len(hidden) -> Linear`` on inputs of ``in_channels x input_size^2``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        dims = [in_channels * input_size * input_size, *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class LeNet(nn.Module):
    """LeNet-5: conv 5x5 (6) -> pool -> conv 5x5 (16) -> pool -> 120 -> 84 -> classes (ReLU, max pooling).

    On 28x28 inputs the first convolution pads by 2, so that the 32x32 geometry of the original is kept.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        pad = 2 if input_size == 28 else 0
        s = ((input_size + 2 * pad - 4) // 2 - 4) // 2
        if s < 1:
            raise ValueError(f"LeNet needs inputs of at least 28x28 (or 32x32 unpadded), got {input_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """conv 3x3 (32) -> ReLU -> pool -> conv 3x3 (64) -> ReLU -> pool -> 128 -> ReLU -> classes.

    About 0.42M parameters on 28x28 inputs; trains to >= 96% on held-out MNIST digits in a few CPU seconds.

    ``activation="softplus"`` builds a smooth twin (softplus instead of ReLU, average instead of max pooling): its
    logits are twice differentiable, so input Hessians of the logits (not only of the softmax loss) measure the
    curvature of its decision boundary (see :func:`robustlens.geometry.boundary_curvature`).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
                 width: int = 32, hidden: int = 128, activation: str = "relu") -> None:
        super().__init__()
        s = input_size // 4
        if s < 1:
            raise ValueError(f"SmallCNN needs inputs of at least 4x4, got {input_size}")
        if activation not in ("relu", "softplus"):
            raise ValueError(f"SmallCNN activation must be 'relu' or 'softplus', got {activation!r}")
        smooth = activation == "softplus"

        def act() -> nn.Module:
            return nn.Softplus() if smooth else nn.ReLU()

        def pool() -> nn.Module:
            return nn.AvgPool2d(2) if smooth else nn.MaxPool2d(2)

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), act(), pool(),
            nn.Conv2d(width, 2 * width, 3, padding=1), act(), pool(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * s * s, hidden), act(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut (He et al., 2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv, twice, with the shortcut taken after the first activation when it projects (He et al.,
    ECCV 2016). Also the block of WideResNet, with optional dropout between the convolutions."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.bn1(x))
        skip = self.shortcut(a) if self.shortcut is not None else x
        out = self.conv1(a)
        out = F.relu(self.bn2(out))
        if self.dropout > 0:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + skip


class ResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem: 3x3 conv (64) -> 4 stages of 2 basic blocks (64, 128, 256, 512) -> pool -> fc.

    ``preact=True`` builds PreAct-ResNet-18 (pre-activation blocks, a final BN-ReLU before pooling).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, preact: bool = False,
                 widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2)) -> None:
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])  # after the stem (ResNet) or before the pooling (PreAct)
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(PreActBlock(cin, w, stride) if preact else BasicBlock(cin, w, stride))
                cin = w
        if preact:
            self.bn1 = nn.BatchNorm2d(cin)
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        if self.preact:
            out = F.relu(self.bn1(self.layers(out)))
        else:
            out = self.layers(F.relu(self.bn1(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


class WideResNet(nn.Module):
    """WRN-``depth``-``width``: a 3x3 stem (16) and 3 groups of ``(depth - 4) / 6`` pre-activation blocks of widths
    ``16k, 32k, 64k`` (strides 1, 2, 2), then BN-ReLU, global pooling and a linear layer."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 28, width: int = 10,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, ...), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        cin = widths[0]
        for g, w in enumerate(widths[1:]):
            for j in range(n):
                layers.append(PreActBlock(cin, w, (1 if g == 0 else 2) if j == 0 else 1, dropout))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        self.depth, self.width = depth, width

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn(self.layers(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
