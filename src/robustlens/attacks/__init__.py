"""Adversarial attacks: minimal-norm (eq. 8-9) and eps-bounded (eq. 10-11), sharing one core."""

from .base import Attack, AttackResult, BoundedAttack, Criterion, MinimalNormAttack
from .deepfool import DeepFool
from .subspace import SubspaceAttack, SubspaceClassifier

__all__ = [
    "Attack",
    "AttackResult",
    "BoundedAttack",
    "Criterion",
    "DeepFool",
    "MinimalNormAttack",
    "SubspaceAttack",
    "SubspaceClassifier",
]
