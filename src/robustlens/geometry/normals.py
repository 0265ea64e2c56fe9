"""Normals to the decision boundary: their low-dimensional span, its alignment across models, transferability and
the overlap with the high-curvature directions (paper Sec. II-C).

The minimal L2 perturbation ``r*_2(x)`` (eq. 8-9, estimated by DeepFool) is normal to the decision boundary near
``x``. Over a dataset these normals are strongly correlated: they span a low-dimensional subspace, and the normal
subspaces of different networks are closely aligned, which explains why adversarial examples transfer
(Moosavi-Dezfooli, Fawzi, Fawzi, Frossard, "Universal adversarial perturbations", CVPR 2017; Fawzi,
Moosavi-Dezfooli, Frossard, Soatto, "Empirical study of the topology and geometry of deep networks", CVPR 2018).

- :func:`collect_normals`: DeepFool (L2) over a dataset through the evaluation runner (checkpointed, resumable).
- :func:`normal_spectrum`: truncated SVD of the unit normals: singular-value decay, the number of directions
  holding 50/90/99% of their energy, and the top right singular vectors (the normal subspace).
- :func:`principal_angles`, :func:`compare_subspaces`: principal angles between two subspaces (e.g. two models'
  normal subspaces) against random subspaces of the same sizes.
- :func:`transferability_matrix`: attacks crafted on model A evaluated on model B, for several models.
- :func:`curvature_overlap`: the energy of each normal inside the top-k input-Hessian eigenvectors
  (:mod:`robustlens.geometry.hessian`, eq. 16) against the ``k / D`` of a random direction.

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-C).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..analyses import register_analysis
from ..attacks.base import Attack, MinimalNormAttack
from ..checks import COUNT, NON_NEGATIVE_INT, OPTIONAL_COUNT, POSITIVE, check, checked
from ..classifier import Classifier
from ..errors import ConfigError, InputError
from ..results import Result
from ..seeding import generator
from ._common import LossSpec, prepare, require_deterministic, unit

ENERGY_LEVELS = (0.5, 0.9, 0.99)


def _default_attack() -> MinimalNormAttack:
    from ..attacks.deepfool import DeepFool

    return DeepFool(norm=2, clip=False)


# ---------------------------------------------------------------------------------------------------- collection
@dataclass
class NormalsResult(Result):
    """Minimal L2 perturbations ``r*_2(x)`` over a dataset (normals to the decision boundary).

    Attributes:
        perturbations: ``(N, D)`` flattened perturbations (zero where the attack failed).
        norms: ``(N,)`` their L2 norms (``inf`` where the attack failed).
        success: ``(N,)`` whether the attack changed the decision.
        labels, clean_correct, indices: per sample.
        input_shape: the shape of one input.
        attack, settings: the attack used and its configuration; seed: the run's seed.
    """

    perturbations: Tensor
    norms: Tensor
    success: Tensor
    labels: Tensor
    clean_correct: Tensor
    indices: Tensor
    input_shape: list[int]
    attack: str = "deepfool"
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def normals(self, *, only_correct: bool = False) -> Tensor:
        """Unit normals ``r* / ||r*||`` ``(M, D)`` of the samples whose decision the attack changed with a nonzero
        perturbation (a misclassified input counts as a success with ``r = 0`` and has no normal); with
        ``only_correct`` also only correctly classified ones."""
        keep = self.success.bool() & (self.perturbations.norm(dim=1) > 0)
        if only_correct:
            keep = keep & self.clean_correct.bool()
        return unit(self.perturbations[keep])


def _smoke_collect(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> NormalsResult:
    from ..attacks.deepfool import DeepFool

    return collect_normals(clf, (x, y), attack=DeepFool(norm=2, max_iter=10), batch_size=max(1, x.shape[0] // 2),
                           seed=seed, progress=False)


@register_analysis("collect-normals", kind="geometry", smoke=_smoke_collect,
                   summary="minimal L2 perturbations (boundary normals) over a data set (eq. 8-9)")
@checked(batch_size=OPTIONAL_COUNT)
def collect_normals(
    clf: Classifier,
    data: Any,
    *,
    attack: Attack | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> NormalsResult:
    """Minimal L2 perturbations over a dataset (eq. 8-9), batch by batch through the evaluation runner.

    Args:
        clf: the classifier.
        data: ``(x, y)``, ``x`` alone (the predictions are attacked), a dict or a dataset.
        attack: a minimal-norm L2 attack; default ``DeepFool(norm=2, clip=False)``: the normal of the boundary
            of the model itself, without the box constraint bending the direction at saturated pixels.
        batch_size: samples attacked together (default ``clf.batch_size``); the results do not depend on it (the
            attack gets the dataset indices).
        seed, indices, state_dir, resume, overwrite, progress: as in :func:`robustlens.runner.run_evaluation`.
    """
    from ..runner import run_evaluation

    require_deterministic(clf, "collect_normals")

    atk = attack if attack is not None else _default_attack()
    if not isinstance(atk, MinimalNormAttack) or atk.p != 2:
        raise ConfigError(
            "normals come from a minimal-norm L2 attack (e.g. DeepFool(norm=2) or DDN); got "
            f"{getattr(atk, 'name', type(atk).__name__)} with p={getattr(atk, 'p', '?')}"
        )

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        res = atk(clf, bx.to(clf.device), None if by is None else by.to(clf.device), seed=seed, indices=bi)
        return {
            "perturbations": res.perturbation.flatten(1), "norms": res.norm, "success": res.success,
            "labels": res.labels, "clean_correct": res.clean_correct,
        }

    config = {"analysis": "normals", "attack": atk.name, "settings": atk.settings}
    ev = run_evaluation(fn, data, state_dir=state_dir, batch_size=batch_size or clf.batch_size, config=config,
                        seed=seed, model=clf, indices=indices, resume=resume, overwrite=overwrite, progress=progress,
                        desc="normals")
    x0 = data[0] if isinstance(data, (tuple, list)) else getattr(data, "x", None)
    shape = list(x0.shape[1:]) if isinstance(x0, Tensor) else list(clf.input_shape or [ev["perturbations"].shape[1]])
    return NormalsResult(
        perturbations=ev["perturbations"], norms=ev["norms"], success=ev["success"].bool(), labels=ev["labels"],
        clean_correct=ev["clean_correct"].bool(), indices=ev.indices, input_shape=shape, attack=atk.name,
        settings=atk.settings, seed=seed,
    )


# ---------------------------------------------------------------------------------------------------- spectrum
@dataclass
class NormalSpectrum(Result):
    """Truncated SVD of ``M`` unit normals in ``R^D``.

    Attributes:
        singular_values: ``(r,)`` descending.
        energy: ``(r,)`` cumulative fraction of the normals' energy ``sum_i s_i^2 / M`` (exact: every normal has
            unit norm, so the total energy ``M`` is known without the full SVD).
        k50, k90, k99: the smallest ``k`` with ``energy[k-1] >= 0.5 / 0.9 / 0.99`` (``-1`` when not reached within
            the ``r`` computed directions).
        basis: ``(D, r)`` the top right singular vectors (orthonormal): the normal subspace.
        count: ``M``; dim: ``D``; method: ``"full"`` or ``"randomized"``.
    """

    singular_values: Tensor
    energy: Tensor
    k50: int
    k90: int
    k99: int
    basis: Tensor
    count: int
    dim: int
    method: str = "full"

    def k_for(self, fraction: float) -> int:
        """The number of directions holding ``fraction`` of the energy (``-1`` if beyond the computed rank)."""
        return _k_for(self.energy, fraction)

    def subspace(self, k: int) -> Tensor:
        """The ``(D, k)`` orthonormal basis of the top-``k`` normal directions."""
        if not 1 <= k <= self.basis.shape[1]:
            raise ConfigError(f"k must be between 1 and the {self.basis.shape[1]} computed directions, got {k}")
        return self.basis[:, :k]

    @property
    def k90_fraction(self) -> float:
        """``k90 / D``: the fraction of the input dimension that holds 90% of the normals' energy."""
        return self.k90 / self.dim if self.k90 > 0 else float("nan")


def _k_for(energy: Tensor, fraction: float) -> int:
    hit = (energy >= fraction - 1e-12).nonzero()
    return int(hit[0]) + 1 if hit.numel() else -1


@checked(rank=OPTIONAL_COUNT)
def normal_spectrum(
    normals: NormalsResult | Tensor,
    *,
    rank: int | None = None,
    only_correct: bool = False,
    seed: int = 0,
) -> NormalSpectrum:
    """Singular-value decay of the unit normals (the low-dimensional normal subspace of Sec. II-C).

    Args:
        normals: a :class:`NormalsResult` or a tensor ``(M, *shape)`` of perturbations (rows are normalised).
        rank: compute only the top ``rank`` directions by a randomized SVD (:func:`torch.svd_lowrank`, seeded);
            default: the exact SVD of all ``min(M, D)`` directions.
        only_correct: with a :class:`NormalsResult`, keep correctly classified samples only.
        seed: seed of the randomized SVD.
    """
    if isinstance(normals, NormalsResult):
        u = normals.normals(only_correct=only_correct)
    else:
        if not isinstance(normals, Tensor) or normals.ndim < 2:
            raise InputError("normals must be a NormalsResult or a tensor (M, *shape) of perturbations")
        flat = normals.flatten(1)
        keep = flat.norm(dim=1) > 0
        u = unit(flat[keep])
    m, d = u.shape
    if m < 1:
        raise InputError("no successful perturbation to analyse: the attack failed on every sample")
    a = u.double()
    full = min(m, d)
    if rank is None or rank >= full:
        _, s, vh = torch.linalg.svd(a, full_matrices=False)
        basis, method = vh.T, "full"
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(generator(seed, "svd").initial_seed()) % (2**63))
            _, s, v = torch.svd_lowrank(a, q=min(full, rank + 10), niter=6)
        s, basis, method = s[:rank], v[:, :rank], "randomized"
    energy = (s.pow(2).cumsum(0) / m).clamp_max(1.0)
    return NormalSpectrum(
        singular_values=s.float(), energy=energy.float(), k50=_k_for(energy, 0.5), k90=_k_for(energy, 0.9),
        k99=_k_for(energy, 0.99), basis=basis.to(u.dtype), count=m, dim=d, method=method,
    )


# ---------------------------------------------------------------------------------------------------- angles
def _orthonormal(a: Tensor, name: str) -> Tensor:
    if not isinstance(a, Tensor) or a.ndim != 2:
        raise ConfigError(f"{name} must be a (D, k) matrix whose columns span the subspace")
    return torch.linalg.qr(a.double()).Q


def principal_angles(a: Tensor, b: Tensor) -> Tensor:
    """Principal angles (radians, ascending) between ``span(a)`` and ``span(b)`` for ``(D, ka)`` and ``(D, kb)``
    matrices (orthonormalised first); ``min(ka, kb)`` angles, 0 for shared directions and ``pi/2`` for orthogonal
    ones. Computed by :func:`scipy.linalg.subspace_angles` (accurate for small angles)."""
    from scipy.linalg import subspace_angles

    qa, qb = _orthonormal(a, "a"), _orthonormal(b, "b")
    if qa.shape[0] != qb.shape[0]:
        raise InputError(f"the subspaces live in different spaces: D = {qa.shape[0]} and {qb.shape[0]}")
    ang = np.sort(subspace_angles(qa.numpy(), qb.numpy()))
    return torch.from_numpy(ang.copy())


@dataclass
class SubspaceComparison(Result):
    """Principal angles between two subspaces, beside those of random subspaces of the same sizes.

    Attributes:
        angles: ``(k,)`` ascending, ``k = min(ka, kb)``.
        random_angles: ``(n_random, k)`` the same for pairs of uniformly random subspaces of dimensions ka, kb.
        overlap: ``||A^T B||_F^2 / k`` = mean squared cosine, 1 for equal subspaces, 0 for orthogonal ones.
        random_overlap, random_overlap_std: its mean and spread over the random pairs (expected ``max(ka,kb)/D``).
        dims: ``(ka, kb, D)``.
    """

    angles: Tensor
    random_angles: Tensor
    overlap: float
    random_overlap: float
    random_overlap_std: float
    dims: tuple[int, int, int]
    names: tuple[str, str] = ("a", "b")

    @property
    def median_angle(self) -> float:
        return float(self.angles.median())


@checked(n_random=NON_NEGATIVE_INT)
def compare_subspaces(
    a: Tensor, b: Tensor, *, n_random: int = 20, seed: int = 0, names: tuple[str, str] = ("a", "b")
) -> SubspaceComparison:
    """Principal angles between ``span(a)`` and ``span(b)`` against ``n_random`` random pairs of the same sizes
    (seeded); e.g. the normal subspaces (:meth:`NormalSpectrum.subspace`) of two models (Sec. II-C)."""
    ang = principal_angles(a, b)
    d, ka, kb = a.shape[0], a.shape[1], b.shape[1]
    k = ang.numel()
    rnd = torch.empty(n_random, k, dtype=torch.float64)
    for i in range(n_random):
        g = generator(seed, "random-pair", i)
        rnd[i] = principal_angles(torch.randn(d, ka, generator=g, dtype=torch.float64),
                                  torch.randn(d, kb, generator=g, dtype=torch.float64))
    ov = rnd.cos().pow(2).mean(1) if n_random else torch.zeros(0, dtype=torch.float64)
    return SubspaceComparison(
        angles=ang, random_angles=rnd, overlap=float(ang.cos().pow(2).mean()),
        random_overlap=float(ov.mean()) if n_random else float("nan"),
        random_overlap_std=float(ov.std()) if n_random > 1 else float("nan"), dims=(ka, kb, d),
        names=(names[0], names[1]),
    )


# ---------------------------------------------------------------------------------------------------- transfer
@dataclass
class TransferResult(Result):
    """Transferability of attacks between models.

    Attributes:
        names: the models, in order.
        fooling: ``(M, M)``: ``fooling[i, j]`` is the fraction of samples, among those both model ``i`` and model
            ``j`` classify correctly, whose adversarial example crafted on model ``i`` is misclassified by model
            ``j`` (the diagonal is each attack's own success rate).
        counts: ``(M, M)`` the number of samples behind each entry.
        clean_accuracy: ``(M,)``.
        scale: the factor applied to each perturbation before evaluating it.
        attack, settings, seed: the attack and the run's seed.
    """

    names: list[str]
    fooling: Tensor
    counts: Tensor
    clean_accuracy: Tensor
    scale: float = 1.0
    attack: str = "deepfool"
    settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


def _smoke_transfer(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> TransferResult:
    from ..attacks.deepfool import DeepFool

    return transferability_matrix({"a": clf, "b": clf}, (x, y), attack=DeepFool(norm=2, max_iter=10), scale=1.5,
                                  batch_size=max(1, x.shape[0] // 2), seed=seed, progress=False)


@register_analysis("transferability-matrix", kind="geometry", smoke=_smoke_transfer,
                   summary="adversarial examples of each model evaluated on every model (Sec. II-C)")
@checked(scale=POSITIVE, batch_size=OPTIONAL_COUNT)
def transferability_matrix(
    models: Mapping[str, Classifier],
    data: Any,
    *,
    attack: Attack | None = None,
    scale: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> TransferResult:
    """Adversarial examples crafted on each model, evaluated on every model (Sec. II-C: normals of different
    networks are aligned, so attacks transfer).

    Args:
        models: ``name -> Classifier`` (same input shape and classes).
        data: ``(x, y)`` with true labels (or a dataset of pairs).
        attack: default ``DeepFool(norm=2)`` (clipped to the bounds); any attack works (e.g. PGD at an eps).
        scale: multiply each perturbation by ``scale`` (then clip) before evaluating it: minimal perturbations
            sit just past the source's boundary, and a factor > 1 is the usual way to study transfer.
        batch_size: samples attacked together (default: the smallest ``batch_size`` of the classifiers).
        seed, indices, state_dir, resume, overwrite, progress: as in :func:`robustlens.runner.run_evaluation`.
    """
    from ..attacks.deepfool import DeepFool
    from ..runner import model_hash, run_evaluation

    if not models:
        raise ConfigError("give at least one model: models={'name': Classifier, ...}")
    names = list(models)
    clfs = [models[n] for n in names]
    for n, c in zip(names, clfs, strict=True):
        require_deterministic(c, f"transferability_matrix (model {n!r})")
    atk = attack if attack is not None else DeepFool(norm=2)
    m = len(clfs)

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        if by is None:
            raise InputError("transferability needs the true labels: pass data=(x, y)")
        correct = torch.stack([c.predict(bx.to(c.device)).cpu() == by.cpu() for c in clfs], 1)
        fooled = torch.zeros(bx.shape[0], m, m, dtype=torch.bool)
        for i, src in enumerate(clfs):
            res = atk(src, bx.to(src.device), by.to(src.device), seed=seed, indices=bi)
            pert = res.perturbation * scale
            for j, dst in enumerate(clfs):
                adv = dst.clip(bx.to(dst.device) + pert.to(dst.device))
                fooled[:, i, j] = dst.predict(adv, validate=False).cpu() != by.cpu()
        return {"fooled": fooled, "correct": correct}

    config = {"analysis": "transferability", "attack": atk.name, "settings": atk.settings, "scale": scale,
              "models": {n: model_hash(c) for n, c in zip(names, clfs, strict=True)}}
    bs = batch_size or min(c.batch_size for c in clfs)
    ev = run_evaluation(fn, data, state_dir=state_dir, batch_size=bs, config=config, seed=seed,
                        indices=indices, resume=resume, overwrite=overwrite, progress=progress, desc="transfer")
    fooled, correct = ev["fooled"].bool(), ev["correct"].bool()
    both = correct[:, :, None] & correct[:, None, :]  # (N, M, M)
    counts = both.sum(0)
    hits = (fooled & both).sum(0)
    rate = hits.double() / counts.clamp_min(1).double()
    rate[counts == 0] = float("nan")
    return TransferResult(names=names, fooling=rate, counts=counts, clean_accuracy=correct.double().mean(0),
                          scale=float(scale), attack=atk.name, settings=atk.settings, seed=seed)


# ---------------------------------------------------------------------------------------------------- curvature
@dataclass
class CurvatureOverlapResult(Result):
    """Energy of each normal inside its sample's top-``k`` input-Hessian eigenvectors, against ``k / D``.

    Attributes:
        ks: the subspace sizes.
        energy: ``(N, len(ks))`` ``||V_k^T n||^2`` per sample (``nan`` where there is no normal: the attack failed
            or the input is misclassified).
        mean_energy: ``(len(ks),)`` mean over samples (nan ignored).
        baseline: ``(len(ks),)`` ``k / D``, the expected energy of a uniformly random direction.
        ratio: ``mean_energy / baseline``.
        eigenvalues: ``(N, max k)`` the eigenvalues of the directions used, in order.
        which: ``"top"`` (largest eigenvalues) or ``"abs"`` (largest ``|eigenvalue|``); dim: ``D``.
    """

    ks: list[int]
    energy: Tensor
    mean_energy: Tensor
    baseline: Tensor
    ratio: Tensor
    eigenvalues: Tensor
    which: str
    dim: int


def _smoke_overlap(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> CurvatureOverlapResult:
    return curvature_overlap(clf, x, y, ks=(1, 2), seed=seed)


@register_analysis("curvature-overlap", kind="geometry", smoke=_smoke_overlap,
                   summary="energy of the boundary normals in the top Hessian eigenvectors (Sec. II-C, eq. 16)")
def curvature_overlap(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    normals: Tensor | None = None,
    *,
    ks: Sequence[int] = (1, 5, 10, 20),
    spectrum: Any = None,
    which: str = "top",
    loss: LossSpec = "ce",
    seed: int = 0,
    progress: bool = False,
) -> CurvatureOverlapResult:
    """How much of each boundary normal lies in the high-curvature directions of the loss (Sec. II-C, eq. 16).

    Args:
        clf, x, y: the classifier, inputs and loss labels (default: the predictions).
        normals: ``(N, *shape)`` perturbations ``r*(x)`` (rows normalised here); default DeepFool (L2, unclipped).
        ks: subspace sizes; the largest must not exceed the eigenpairs available.
        spectrum: a :class:`~robustlens.geometry.hessian.HessianSpectrum` of the same inputs with eigenvectors;
            computed with :func:`~robustlens.geometry.hessian.hessian_eigenpairs` (``k = max(ks)``) when omitted.
        which: ``"top"``: the eigenvectors of the largest eigenvalues; ``"abs"``: of the largest absolute
            eigenvalues among the top and bottom ones computed.
        loss, seed, progress: passed to ``hessian_eigenpairs``.
    """
    from .hessian import hessian_eigenpairs

    if which not in ("top", "abs"):
        raise ConfigError(f"which must be 'top' or 'abs', got {which!r}")
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise ConfigError(f"curvature_overlap: ks must be a non-empty list of subspace sizes, got {ks!r}")
    ks = sorted({check(k, "ks", COUNT, "curvature_overlap") for k in ks})
    x, y = prepare(clf, x, y, "curvature_overlap")
    n, d = x.shape[0], x[0].numel()
    kmax = ks[-1]
    if spectrum is None:
        spectrum = hessian_eigenpairs(clf, x, y, k=kmax, which="top" if which == "top" else "both", loss=loss,
                                      seed=seed, progress=progress)
    if spectrum.top_vectors is None:
        raise ConfigError("the spectrum has no eigenvectors: compute it with return_vectors=True")
    vecs = spectrum.top_vectors.flatten(2).double()
    vals = spectrum.top_values.double()
    if which == "abs":
        if spectrum.bottom_vectors is None:
            raise ConfigError("which='abs' needs bottom eigenvectors too: compute the spectrum with which='both'")
        vecs = torch.cat([vecs, spectrum.bottom_vectors.flatten(2).double()], 1)
        vals = torch.cat([vals, spectrum.bottom_values.double()], 1)
        order = vals.abs().argsort(1, descending=True)
        vals = vals.gather(1, order)
        vecs = vecs.gather(1, order[:, :, None].expand_as(vecs))
    if vecs.shape[0] != n:
        raise InputError(f"the spectrum holds {vecs.shape[0]} samples but x has {n}")
    if vecs.shape[1] < kmax:
        raise ConfigError(f"the spectrum has {vecs.shape[1]} eigenvectors per sample; ks asks for {kmax}")
    if normals is None:
        res = _default_attack()(clf, x, y, seed=seed)
        r = torch.where(res.success[:, None], res.perturbation.flatten(1), torch.full_like(x.flatten(1), torch.nan))
    else:
        if normals.shape[0] != n or normals[0].numel() != d:
            raise InputError(f"normals must have the inputs' shape {tuple(x.shape)}, got {tuple(normals.shape)}")
        r = normals.flatten(1).to(x)
    r = r.double().cpu()
    r[~(r.norm(dim=1) > 0)] = torch.nan  # misclassified inputs (r = 0) and failed attacks have no normal
    u = unit(r)
    proj = torch.einsum("nkd,nd->nk", vecs[:, :kmax], u).pow(2).cumsum(1)  # energy in the top-j, j = 1..kmax
    energy = proj[:, [k - 1 for k in ks]]
    mean = torch.from_numpy(np.nanmean(energy.numpy(), axis=0)) if n else torch.full((len(ks),), float("nan"))
    base = torch.tensor([k / d for k in ks], dtype=torch.float64)
    return CurvatureOverlapResult(ks=ks, energy=energy, mean_energy=mean, baseline=base, ratio=mean / base,
                                  eigenvalues=vals[:, :kmax], which=which, dim=d)


# ---------------------------------------------------------------------------------------------------- plots
def plot_singular_values(
    spectra: NormalSpectrum | Mapping[str, NormalSpectrum], ax: Any = None, *, energy: bool = False
) -> Any:
    """Singular values of the normals (descending, each normalised by the largest, log scale), or with
    ``energy=True`` their cumulative energy with the 50/90/99% levels marked. Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    items = {"normals": spectra} if isinstance(spectra, NormalSpectrum) else dict(spectra)
    for i, (name, sp) in enumerate(items.items()):
        xs = np.arange(1, sp.singular_values.numel() + 1)
        if energy:
            ax.plot(xs, sp.energy.numpy(), color=f"C{i}", label=f"{name} (k90={sp.k90} of D={sp.dim})")
        else:
            s = sp.singular_values
            ax.plot(xs, (s / s[0].clamp_min(1e-30)).numpy(), color=f"C{i}", label=name)
    if energy:
        for level in ENERGY_LEVELS:
            ax.axhline(level, color="gray", lw=0.6, ls=":")
        ax.set_ylabel("cumulative energy of the normals")
    else:
        ax.set_yscale("log")
        ax.set_ylabel("singular value / largest")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # direction counts: 1, 10, 100
    ax.set_xlabel("number of directions k" if energy else "direction index")
    ax.legend()
    return ax


def plot_principal_angles(comparisons: SubspaceComparison | Mapping[str, SubspaceComparison], ax: Any = None) -> Any:
    """Principal angles (degrees, ascending) of each comparison, with the random-subspace baseline as a band
    (5th to 95th percentile over the random pairs). Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    items = {"": comparisons} if isinstance(comparisons, SubspaceComparison) else dict(comparisons)
    for i, (name, cmp) in enumerate(items.items()):
        xs = np.arange(1, cmp.angles.numel() + 1)
        label = name or f"{cmp.names[0]} vs {cmp.names[1]}"
        ax.plot(xs, np.degrees(cmp.angles.numpy()), color=f"C{i}", lw=2, label=label)
        if cmp.random_angles.shape[0]:
            lo, hi = np.percentile(np.degrees(cmp.random_angles.numpy()), [5, 95], axis=0)
            ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15, lw=0, label=f"{label}: random subspaces")
    ax.set_ylim(0, 90)
    ax.set_xlabel("principal angle index")
    ax.set_ylabel("principal angle (degrees)")
    ax.legend()
    return ax


__all__ = [
    "CurvatureOverlapResult",
    "NormalSpectrum",
    "NormalsResult",
    "SubspaceComparison",
    "TransferResult",
    "collect_normals",
    "compare_subspaces",
    "curvature_overlap",
    "normal_spectrum",
    "plot_principal_angles",
    "plot_singular_values",
    "principal_angles",
    "transferability_matrix",
]
