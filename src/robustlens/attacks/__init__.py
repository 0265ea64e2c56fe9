"""Adversarial attacks: minimal-norm (eq. 8-9) and eps-bounded (eq. 10-11), sharing one core."""

from .base import Attack, AttackResult, BoundedAttack, Criterion, MinimalNormAttack
from .deepfool import DeepFool

__all__ = ["Attack", "AttackResult", "BoundedAttack", "Criterion", "DeepFool", "MinimalNormAttack"]
