"""Restrict any gradient attack to a linear subspace (eq. 18 of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard,
"Optimism in the Face of Adversity: Understanding and Improving Deep Learning through Adversarial Robustness", Proc.
IEEE 2021; Ortiz-Jimenez et al., NeurIPS 2020).

Eq. (18) asks for the minimal L2 perturbation ``r`` that changes the decision subject to ``r`` lying in a subspace
``S = span(B)``, with ``B`` a ``D x k`` matrix of orthonormal columns (e.g. a band of DCT frequencies). Its norm
estimates the distance to the decision boundary inside ``S``.

:class:`SubspaceClassifier` presents the classifier to an attack as if only ``S`` existed: its logits are unchanged
but every input gradient is the projection ``B B^T grad`` (the component orthogonal to ``S`` enters the graph
detached). An attack whose steps are built from gradients (DeepFool, DDN, FMN and PGD in L2) then moves only inside
``S``, and since ``B`` is orthonormal the L2 norm of a perturbation ``B z`` is ``||z||_2``: running the attack in
pixel space with projected gradients is the same as running it on the coefficients ``z``.
:class:`SubspaceAttack` wraps any attack this way and projects the final perturbation onto ``S`` as well, so the
returned perturbation lies in ``S`` whatever the attack's steps were (sign steps of Linf attacks leave ``S``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..classifier import Classifier
from ..decision import Criterion
from ..errors import ConfigError, InputError
from ..seeding import SampleRNG, generator
from .base import Attack
from .deepfool import DeepFool


def check_basis(basis: Tensor, dim: int | None = None, tol: float = 1e-4) -> Tensor:
    """Check that ``basis`` is a ``D x k`` matrix with orthonormal columns (``B^T B = I``) and return it."""
    if not isinstance(basis, Tensor) or basis.ndim != 2:
        raise ConfigError("basis must be a 2-d tensor of shape (D, k) whose columns span the subspace")
    if dim is not None and basis.shape[0] != dim:
        raise InputError(
            f"basis has {basis.shape[0]} rows but inputs have {dim} values per sample; give one row per input "
            "coordinate (flattened in C, H, W order)"
        )
    if basis.shape[1] < 1 or basis.shape[1] > basis.shape[0]:
        raise ConfigError(f"basis must have between 1 and D columns, got shape {tuple(basis.shape)}")
    gram = basis.T.double() @ basis.double()
    err = float((gram - torch.eye(basis.shape[1], dtype=torch.float64, device=basis.device)).abs().max())
    if err > tol:
        raise ConfigError(
            f"basis columns are not orthonormal (max |B^T B - I| = {err:.2g}); orthonormalise them first, "
            "e.g. basis = torch.linalg.qr(basis).Q"
        )
    return basis


Projector = Callable[[Tensor], Tensor]
"""``(N, D) -> (N, D)``: the orthogonal projection ``B B^T`` applied to flattened samples (any structured form of it,
e.g. a separable transform, that equals the dense product)."""


class SubspaceClassifier(Classifier):
    """The classifier seen through the subspace ``span(basis)``: same logits, input gradients projected onto it.

    Shares the model, bounds, normalisation and pass counter of ``clf``. ``projector`` replaces the dense product
    ``B B^T r`` by an equal but cheaper operator (e.g. a separable DCT for a block of frequencies); it must be the
    orthogonal projection onto ``span(basis)``.
    """

    def __init__(  # noqa: D107 - documented on the class
        self, clf: Classifier, basis: Tensor, projector: Projector | None = None
    ) -> None:
        self.__dict__.update(copy.copy(clf.__dict__))
        self.basis = basis.to(clf.device, clf.dtype)
        self._projector = projector

    def _project_flat(self, flat: Tensor) -> Tensor:
        if self._projector is not None:
            return self._projector(flat)
        return (flat @ self.basis) @ self.basis.T

    def project(self, r: Tensor) -> Tensor:
        """The orthogonal projection ``B B^T r`` of each sample of ``r`` onto the subspace."""
        return self._project_flat(r.flatten(1)).view_as(r)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of ``x``; gradients flow only through the component of ``x`` inside the subspace."""
        if x.requires_grad:
            flat = x.flatten(1)
            inside = self._project_flat(flat)
            x = (flat.detach() - inside.detach() + inside).view_as(x)
        return super().forward(x)

    __call__ = forward


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> Any:
    d = x[0].numel()
    q, _ = torch.linalg.qr(torch.randn(d, min(4, d), generator=generator(seed, "smoke-basis"), dtype=torch.float64))
    return SubspaceAttack(DeepFool(norm=2, max_iter=5, clip=False), q.to(x.dtype))(clf, x, y, seed=seed)


@register_analysis("subspace-attack", kind="attack", smoke=_smoke,
                   summary="the minimal perturbation inside a subspace (eq. 18)")
class SubspaceAttack(Attack):
    """Run ``attack`` restricted to ``span(basis)`` (paper eq. 18) and return a normal pixel-space result.

    Args:
        attack: any gradient attack (minimal-norm or eps-bounded). For the exact restriction of eq. (18) use an L2
            attack built with ``clip=False``: clipping to the bounds moves pixels outside the subspace.
        basis: ``D x k`` tensor with orthonormal columns (``D`` = values per input, flattened C, H, W).
        clip: clip the returned examples to the bounds (may leave the subspace); default ``False`` as in eq. (18).
        projector: optional structured form of the projection ``B B^T`` (see :class:`SubspaceClassifier`), e.g.
            ``Subspace.projector`` of a DCT block from :mod:`robustlens.geometry.subspaces`.

    Example:
        >>> res = SubspaceAttack(DeepFool(norm=2, clip=False), basis)(clf, x, y)
        >>> res.norm  # distance to the boundary inside span(basis)
    """

    def __init__(
        self, attack: Attack, basis: Tensor, *, clip: bool = False, projector: Projector | None = None
    ) -> None:
        if not isinstance(attack, Attack):
            raise ConfigError(f"attack must be a robustlens Attack, got {type(attack).__name__}")
        if attack.gradient_free:
            raise ConfigError(f"{attack.name} does not use gradients; restrict its proposals instead")
        super().__init__(attack.p, clip=clip)
        self.attack = attack
        self._basis = check_basis(basis)
        self.name = f"{attack.name}_subspace"  # type: ignore[misc]
        self.dim = int(basis.shape[1])
        self._projector = projector

    def _eps(self) -> float | None:
        return self.attack._eps()

    @property
    def settings(self) -> dict[str, Any]:
        inner = {f"attack.{k}": v for k, v in self.attack.settings.items()}
        return {"attack": self.attack.name, "dim": self.dim, "clip": self.clip, **inner}

    def classifier(self, clf: Classifier, dim: int) -> SubspaceClassifier:
        """``clf`` seen through the subspace, for inputs of ``dim`` values per sample."""
        if self._basis.shape[0] != dim:  # orthonormality was checked when the attack was built
            check_basis(self._basis, dim)
        return SubspaceClassifier(clf, self._basis, self._projector)

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        sub = self.classifier(clf, x[0].numel())
        adv = self.attack.run(sub, x, criterion, rng)
        return x + sub.project(adv - x)


__all__ = ["Projector", "SubspaceAttack", "SubspaceClassifier", "check_basis"]
