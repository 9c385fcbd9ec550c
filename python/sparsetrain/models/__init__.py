"""Reference models defined in the package (no torchvision needed)."""

from .mobilenet import MobileNetV2, mobilenet_v2
from .resnet import ResNet, resnet18, resnet34, resnet50
from .small_cnn import SmallCNN, small_cnn

MODELS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "mobilenetv2": mobilenet_v2,
    "small-cnn": small_cnn,
}

__all__ = [
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "MobileNetV2",
    "mobilenet_v2",
    "SmallCNN",
    "small_cnn",
    "MODELS",
]
