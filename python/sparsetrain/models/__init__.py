"""Reference models defined in the package (no torchvision needed)."""

from .resnet import ResNet, resnet18, resnet34
from .small_cnn import SmallCNN, small_cnn

MODELS = {"resnet18": resnet18, "resnet34": resnet34, "small-cnn": small_cnn}

__all__ = ["ResNet", "resnet18", "resnet34", "SmallCNN", "small_cnn", "MODELS"]
