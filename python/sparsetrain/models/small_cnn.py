"""A compact CNN for small images (about 8x8 to 64x64), the default of ``sparsetrain train``
for such data: five 3x3 convolutions with batch norm in three stages (two 2x2 max pools),
an adaptive 2x2 average pool and a two-layer classifier. Any image size works."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """``features`` (convolutions) -> ``pool`` -> ``classifier`` (Linear, ReLU, Linear).

    With the default ``width=32`` the convolutions have 32, 32, 64, 64 and 128 channels and the
    hidden layer 256 units (about 270k weights for RGB input).
    """

    def __init__(
        self, num_classes: int = 10, in_channels: int = 3, width: int = 32, hidden: int = 256
    ):
        super().__init__()
        w = width

        def conv_bn_relu(cin, cout):
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *conv_bn_relu(in_channels, w),
            *conv_bn_relu(w, w),
            nn.MaxPool2d(2, ceil_mode=True),
            *conv_bn_relu(w, 2 * w),
            *conv_bn_relu(2 * w, 2 * w),
            nn.MaxPool2d(2, ceil_mode=True),
            *conv_bn_relu(2 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * w * 4, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


def small_cnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    return SmallCNN(num_classes, in_channels)
