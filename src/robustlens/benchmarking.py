"""``robustlens.benchmark``: a model's clean and AutoAttack robust accuracy on a data set's test split, in one call.

The number RobustBench reports (Croce et al., "RobustBench: a standardized adversarial robustness benchmark",
NeurIPS 2021 Datasets and Benchmarks): robust accuracy (the paper's eq. 12) under the standard AutoAttack ensemble
(Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", ICML 2020: APGD-CE, APGD-T, FAB-T, Square), at the threat model's radius, on the standard test set or a
stratified subset of it. The evaluation goes through :func:`robustlens.runner.run_evaluation`: every batch is
checkpointed in ``state_dir`` and an interrupted run continues with ``resume=True``; random starts and Square's
proposals are seeded per sample, so the numbers do not depend on the batch size.

Example::

    import robustlens as rl
    res = rl.benchmark(net, "cifar10", threat_model="Linf", eps=8 / 255, n_samples=1000, state_dir="runs/bench")
    print(res.summary())     # clean accuracy, AutoAttack robust accuracy, after each stage
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .errors import ConfigError
from .results import Result

if TYPE_CHECKING:
    from torch import nn

    from .classifier import Classifier
    from .data import ImageData

#: Threat models and the norm of each (RobustBench's names).
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


@dataclass
class BenchmarkResult(Result):
    """What :func:`benchmark` measured.

    Attributes:
        threat_model, eps: the threat model (``"Linf"`` or ``"L2"``) and its radius, in data units.
        dataset: the data set and split evaluated (e.g. ``mnist-embedded/test``).
        samples: images evaluated; ``correct`` of them classified correctly, ``robust`` of those not fooled by any
            stage of the ensemble.
        clean_accuracy, robust_accuracy: ``correct / samples`` and ``robust / samples`` (eq. 12).
        stages: per AutoAttack stage in order, its name and the robust accuracy after it.
        subset: how the images were chosen (:attr:`robustlens.data.ImageData.selection`; ``None``: the whole split).
        seed: the seed of the attacks' random draws.
        seconds: wall time of the evaluation (of this call: a resumed run counts only the batches it computed).
        settings: the ensemble's settings (version, number of target classes, batch size).
    """

    threat_model: str
    eps: float
    dataset: str
    samples: int
    correct: int
    robust: int
    clean_accuracy: float
    robust_accuracy: float
    stages: list[dict[str, Any]] = field(default_factory=list)
    subset: dict[str, Any] | None = None
    seed: int = 0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """Two lines: clean and robust accuracy with their counts, then the robust accuracy after each stage."""
        head = (f"{self.dataset}, {self.threat_model} eps {self.eps:.4g}: clean accuracy {self.clean_accuracy:.2%} "
                f"({self.correct} of {self.samples}), AutoAttack robust accuracy {self.robust_accuracy:.2%} "
                f"({self.robust} of {self.samples})")
        stages = ", ".join(f"{s['stage']} {s['robust_accuracy']:.2%}" for s in self.stages)
        return head + (f"\nafter each stage: {stages}" if stages else "")


def _data(data: Any, split: str, root: str | os.PathLike[str] | None, download: bool) -> ImageData:
    from .data import ImageData, load_dataset

    if isinstance(data, ImageData):
        return data
    if isinstance(data, str):
        return load_dataset(data, split, root=root, download=download)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (torch.as_tensor(v) for v in data)
        if x.ndim != 4:
            raise ConfigError(f"benchmark data (x, y) needs images of shape (N, C, H, W), got {tuple(x.shape)}")
        n_classes = int(y.max()) + 1 if y.numel() else 1
        return ImageData(x.float(), y.long(), [str(i) for i in range(n_classes)], (0.0, 1.0), "data")
    raise ConfigError("benchmark data must be a data set name (e.g. 'cifar10'), an ImageData or an (x, y) pair of "
                      f"[0, 1] images and labels, got {type(data).__name__}")


def benchmark(
    model: nn.Module | Classifier,
    data: str | ImageData | tuple[Tensor, Tensor] = "cifar10",
    threat_model: str = "Linf",
    eps: float = 8 / 255,
    *,
    n_samples: int | None = None,
    split: str = "test",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    seed: int = 0,
    batch_size: int = 500,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> BenchmarkResult:
    """Clean and AutoAttack robust accuracy (eq. 12) of ``model`` on ``data``'s test split, RobustBench-style.

    Args:
        model: an ``nn.Module`` returning logits of ``[0, 1]`` images (the data set's normalisation, or the one
            its pretrained weights record, goes on the :class:`~robustlens.Classifier` built around it), or a
            ready :class:`~robustlens.Classifier`.
        data: a data set name (``"cifar10"``, ``"mnist"``, ``"mnist-embedded"``...; ``split`` of it, from ``root``,
            fetched with ``download``), an :class:`~robustlens.data.ImageData`, or an ``(x, y)`` pair.
        threat_model: ``"Linf"`` or ``"L2"``.
        eps: the radius, in data units (``8/255`` for CIFAR-10 L-inf, ``0.5`` for CIFAR-10 L2, ``0.3`` for MNIST).
        n_samples: evaluate a stratified subset of this many images (every class in proportion; recorded in
            ``subset``); ``None``: the whole split.
        seed: seed of the random starts and of Square's proposals (per sample: independent of ``batch_size``).
        batch_size: images per checkpointed batch.
        state_dir: checkpoint folder (``None``: in memory, no resume); ``resume`` continues the run recorded there,
            ``overwrite`` discards it.
        device: where to run (default: the model's device).
        progress: bars over the batches and, inside each, over the ensemble's sub-attacks.

    Returns:
        A :class:`BenchmarkResult` (``summary()`` prints it; ``save(path)`` writes it).

    Example:
        >>> import torch
        >>> from robustlens import benchmark
        >>> from robustlens.data import load_dataset
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
        >>> res = benchmark(net, load_dataset("digits", "test"), eps=0.0, n_samples=20, progress=False)
        >>> res.samples, res.robust == res.correct   # no radius, no adversarial example
        (20, True)
    """
    from .attacks.autoattack import GROUPS, autoattack
    from .checks import COUNT, NON_NEGATIVE, Number, check
    from .classifier import Classifier
    from .runner import run_evaluation
    from .zoo.adapters import normalization

    key = THREAT_MODELS.get(str(threat_model).lower().replace("-", ""))
    if key is None:
        raise ConfigError(f"threat_model {threat_model!r}: choose 'Linf' or 'L2' (AutoAttack's standard threat models)")
    eps = float(check(eps, "eps", NON_NEGATIVE, "benchmark"))
    seed = int(check(seed, "seed", Number(integer=True), "benchmark"))
    ds = _data(data, split, root, download)
    if n_samples is not None:
        n = int(check(n_samples, "n_samples", COUNT, "benchmark"))
        if n < len(ds):
            ds = ds.subset(n, seed=0, stratified=True)
    if isinstance(model, Classifier):
        clf = model
    else:
        net = model if device is None else model.to(device)
        clf = Classifier(net, bounds=ds.bounds, **normalization(net, ds.mean, ds.std),
                         input_shape=tuple(ds.x.shape[1:]))
    dev = clf.device

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        res = autoattack(clf, bx.to(dev), by, key, eps, seed=seed, indices=bi, progress=progress)
        float(res.robust_accuracy()[0])  # refuses a sample whose robustness a NaN gradient left unknown
        m = bx.shape[0]
        out = {"clean_correct": res.clean_correct.cpu(), "robust": (res.clean_correct & ~res.success).cpu()}
        for s in res.stages:  # per-batch counts spread over its samples: their sum over batches is the count
            out[f"robust_after_{s['stage']}"] = torch.full((m,), s["robust_accuracy"], dtype=torch.float64)
        return out

    config = {"entry": "benchmark", "threat_model": key, "eps": eps, "version": "standard", "dataset": ds.name,
              "subset": ds.selection}
    t0 = time.perf_counter()
    ev = run_evaluation(fn, (ds.x, ds.y), state_dir=state_dir, batch_size=batch_size, config=config, seed=seed,
                        model=clf, resume=resume, overwrite=overwrite, progress=progress, desc="benchmark")
    o = ev.outputs
    total = int(o["robust"].numel())
    correct, robust = int(o["clean_correct"].sum()), int(o["robust"].sum())
    stages = [{"stage": g, "robust_accuracy": float(o[f"robust_after_{g}"].sum()) / max(1, total)}
              for g in GROUPS if f"robust_after_{g}" in o]
    return BenchmarkResult(
        threat_model=key, eps=eps, dataset=ds.name, samples=total, correct=correct, robust=robust,
        clean_accuracy=correct / max(1, total), robust_accuracy=robust / max(1, total), stages=stages,
        subset=ds.selection, seed=seed, seconds=time.perf_counter() - t0,
        settings={"version": "standard", "n_target_classes": 9, "batch_size": batch_size},
    )


__all__ = ["THREAT_MODELS", "BenchmarkResult", "benchmark"]
