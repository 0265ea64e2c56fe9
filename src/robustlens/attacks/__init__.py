"""Adversarial attacks: minimal-norm (eq. 8-9) and eps-bounded (eq. 10-11), sharing one core.

Equations refer to Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity:
Understanding and Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021. Every attack class is
registered in :data:`ATTACKS` (``make_attack(name, ...)`` builds one); every call ends in
:func:`robustlens.decision.decide`.
"""

from ..decision import Criterion, Decision, decide
from .apgd import APGD
from .autoattack import AutoAttack, AutoAttackResult, autoattack
from .base import ATTACKS, Attack, AttackResult, BoundedAttack, MinimalNormAttack
from .cw import CarliniWagner
from .ddn import DDN
from .deepfool import DeepFool
from .fab import FAB
from .fgsm import FGSM
from .fmn import FMN
from .pgd import PGD
from .registry import make_attack
from .sanity import SanityCheck, SanityReport, gradient_masking_checks
from .sparsefool import SparseFool
from .square import Square
from .subspace import SubspaceAttack, SubspaceClassifier
from .universal import UniversalPerturbation, UniversalResult, fooling_rate

__all__ = [
    "APGD",
    "ATTACKS",
    "Attack",
    "AttackResult",
    "AutoAttack",
    "AutoAttackResult",
    "BoundedAttack",
    "CarliniWagner",
    "Criterion",
    "DDN",
    "Decision",
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
    "decide",
    "fooling_rate",
    "gradient_masking_checks",
    "make_attack",
]
