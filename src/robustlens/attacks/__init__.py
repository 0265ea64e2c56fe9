"""Adversarial attacks: minimal-norm (eq. 8-9) and eps-bounded (eq. 10-11), sharing one core."""

from .apgd import APGD
from .autoattack import AutoAttackResult, autoattack
from .base import Attack, AttackResult, BoundedAttack, Criterion, MinimalNormAttack
from .cw import CarliniWagner
from .ddn import DDN
from .deepfool import DeepFool
from .fab import FAB
from .fgsm import FGSM
from .fmn import FMN
from .pgd import PGD
from .registry import ATTACKS, make_attack
from .sanity import SanityCheck, SanityReport, gradient_masking_checks
from .sparsefool import SparseFool
from .square import Square
from .subspace import SubspaceAttack, SubspaceClassifier
from .universal import UniversalPerturbation, UniversalResult

__all__ = [
    "APGD",
    "ATTACKS",
    "Attack",
    "AttackResult",
    "AutoAttackResult",
    "BoundedAttack",
    "CarliniWagner",
    "Criterion",
    "DDN",
    "DeepFool",
    "FAB",
    "FGSM",
    "FMN",
    "MinimalNormAttack",
    "PGD",
    "SanityCheck",
    "SanityReport",
    "SparseFool",
    "Square",
    "SubspaceAttack",
    "SubspaceClassifier",
    "UniversalPerturbation",
    "UniversalResult",
    "autoattack",
    "gradient_masking_checks",
    "make_attack",
]
