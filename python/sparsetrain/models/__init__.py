"""Reference models defined in the package (no torchvision needed)."""
from .resnet import ResNet, resnet18, resnet34

MODELS = {"resnet18": resnet18, "resnet34": resnet34}

__all__ = ["ResNet", "resnet18", "resnet34", "MODELS"]
