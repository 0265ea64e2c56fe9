"""The model zoo: small and CIFAR-scale architectures, safe saving and loading, and adapters for other zoos'
pretrained models (with the normalisation their weights expect)."""

from .adapters import from_robustbench, from_timm, from_torchvision, normalization, pretrained_classifier
from .io import load_model, load_user_model, read_weights, save_model
from .models import MLP, BasicBlock, LeNet, PreActBlock, ResNet18, SmallCNN, WideResNet
from .registry import create_model, list_models, register_model

__all__ = [
    "MLP",
    "BasicBlock",
    "LeNet",
    "PreActBlock",
    "ResNet18",
    "SmallCNN",
    "WideResNet",
    "create_model",
    "from_robustbench",
    "from_timm",
    "from_torchvision",
    "list_models",
    "load_model",
    "load_user_model",
    "normalization",
    "pretrained_classifier",
    "read_weights",
    "register_model",
    "save_model",
]
