"""Randomized smoothing: certified L2 robustness from Gaussian noise (paper Sec. II-D, refs. [63]-[65]).

The smoothed classifier ``g(x) = argmax_c P(f(x + e) = c)`` with ``e ~ N(0, sigma^2 I)`` is certifiably robust
(in the sense defined after the paper's eq. (12)) inside an L2 ball of radius ``sigma * Phi^-1(p_A)`` around ``x``,
where ``p_A`` lower-bounds the probability of the top class (Cohen, Rosenfeld and Kolter, "Certified Adversarial
Robustness via Randomized Smoothing", ICML 2019, Theorem 1 with ``p_B = 1 - p_A``). This module implements their
``PREDICT`` and ``CERTIFY`` procedures:

- :meth:`Smoothed.predict` returns the top class of ``n`` noisy forward passes, or abstains (``-1``) when a
  two-sided binomial test cannot tell the two most frequent classes apart at level ``alpha``;
- :meth:`Smoothed.certify` selects the top class with ``n0`` draws, then lower-bounds its probability from ``n``
  fresh draws with the one-sided Clopper-Pearson bound (``scipy.stats.beta.ppf``), returning the certified radius
  or abstaining when the bound is below 1/2.

Noise is drawn in fixed blocks of :data:`NOISE_BLOCK` rows from per-sample streams keyed by (seed, dataset index,
stage, block), so the counts do not depend on ``batch_size``, on how the data are batched, or on a resume point.
On the CPU each block is drawn as :data:`CPU_NOISE_PARTS` parts with streams of their own, filled in parallel threads
(PyTorch draws one tensor on one thread, which on a small model costs a sizeable share of the forward pass); the
parts are fixed, so the counts do not depend on the number of threads either. CPU and CUDA draws differ anyway
(different generators). Noisy inputs are packed into full forward batches across samples (no per-sample forward
calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..analyses import register_analysis
from ..checks import COUNT, OPEN_UNIT, POSITIVE, checked
from ..classifier import Classifier
from ..errors import ConfigError, InputError
from ..results import Result
from ..seeding import stable_hash

NOISE_BLOCK = 1024
CPU_NOISE_PARTS = 4
ABSTAIN = -1


def noise_parts(device: torch.device | str) -> int:
    """Streams per noise block: :data:`CPU_NOISE_PARTS` on the CPU (drawn in parallel), 1 on accelerators."""
    return CPU_NOISE_PARTS if torch.device(device).type == "cpu" else 1


class _BlockNoise:
    """Fills a block of standard normal rows from the streams keyed by ``key + (part,)``, one per part.

    With several parts and several intra-op threads the parts are drawn concurrently (PyTorch releases the GIL while
    it draws), which divides the time of the draws by up to the number of threads without changing them.
    """

    def __init__(self, device: torch.device, parts: int) -> None:
        self.parts = parts
        self.generators = [torch.Generator(device=device) for _ in range(parts)]
        workers = min(parts, torch.get_num_threads()) if device.type == "cpu" else 1
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def fill(self, out: Tensor, *key: object) -> Tensor:
        if self.parts == 1:
            # one stream per block, keyed as before the parts existed
            g = self.generators[0].manual_seed(stable_hash(*key))
            return torch.randn(out.shape, generator=g, device=out.device, dtype=out.dtype, out=out)

        def draw(p: int, chunk: Tensor) -> None:
            g = self.generators[p].manual_seed(stable_hash(*key, p))
            torch.randn(chunk.shape, generator=g, device=chunk.device, dtype=chunk.dtype, out=chunk)

        chunks = out.tensor_split(self.parts)
        if self.pool is None:
            for p, c in enumerate(chunks):
                draw(p, c)
        else:
            for f in [self.pool.submit(draw, p, c) for p, c in enumerate(chunks)]:
                f.result()
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def clopper_pearson_lower(successes: Tensor | np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """One-sided ``(1 - alpha)`` Clopper-Pearson lower confidence bound of a binomial proportion.

    ``Beta(alpha; k, n - k + 1)`` quantile (0 when ``k = 0``): the exact bound Cohen et al. use
    (equal to the lower end of the two-sided ``1 - 2 alpha`` interval, statsmodels' ``method='beta'``).
    """
    k = np.asarray(successes.cpu() if isinstance(successes, Tensor) else successes, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lower = stats.beta.ppf(alpha, np.maximum(k, 1), trials - k + 1)
    return np.where(k > 0, lower, 0.0)


def binomial_two_sided_pvalue(k: Tensor | np.ndarray, n: Tensor | np.ndarray) -> np.ndarray:
    """Two-sided exact binomial test p-value of ``k`` successes in ``n`` trials against ``p = 1/2``, vectorised.

    For ``p = 1/2`` the distribution is symmetric, so the p-value is ``min(1, 2 P(X <= min(k, n - k)))``; it equals
    ``scipy.stats.binomtest(k, n, 0.5).pvalue``.
    """
    k_ = np.asarray(k.cpu() if isinstance(k, Tensor) else k, dtype=np.float64)
    n_ = np.asarray(n.cpu() if isinstance(n, Tensor) else n, dtype=np.float64)
    tail = stats.binom.cdf(np.minimum(k_, n_ - k_), n_, 0.5)
    return np.minimum(1.0, 2.0 * tail)


@dataclass
class SmoothedPrediction(Result):
    """Output of :meth:`Smoothed.predict`.

    Attributes:
        prediction: the smoothed classifier's class per sample, ``-1`` where it abstains.
        counts: per-sample class counts over the ``n`` noisy copies, shape ``(N, C)``.
        pvalue: the binomial test's p-value of top class against runner-up.
        sigma, n, alpha, seed: the settings.
    """

    prediction: Tensor
    counts: Tensor
    pvalue: Tensor
    sigma: float
    n: int
    alpha: float
    seed: int

    @property
    def abstained(self) -> Tensor:
        return self.prediction == ABSTAIN


@dataclass
class CertifiedAccuracyCurve(Result):
    """Certified accuracy at each L2 radius: the fraction of samples predicted correctly and certified at >= r."""

    radii: Tensor
    accuracy: Tensor
    sigma: float
    abstain_rate: float

    def plot(self, ax: Any = None, label: str | None = None) -> Any:
        """Draw the curve on a matplotlib axis (a new figure when ``ax`` is None); returns the axis."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.step(self.radii.numpy(), self.accuracy.numpy(), where="post",
                label=label or f"sigma = {self.sigma:g}")
        ax.set_xlabel("L2 radius r")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
        return ax


@dataclass
class CertifyResult(Result):
    """Output of :meth:`Smoothed.certify` (Cohen et al., Alg. CERTIFY).

    Attributes:
        prediction: the certified class per sample, ``-1`` where it abstains.
        radius: certified L2 radius ``sigma * Phi^-1(p_lower)`` (0 where it abstains).
        p_lower: Clopper-Pearson lower bound of the top class's probability.
        count: noisy copies (of ``n``) classified as the selected class.
        labels: true labels when given (for certified accuracy), else ``None``.
        sigma, n0, n, alpha, seed: the settings.
    """

    prediction: Tensor
    radius: Tensor
    p_lower: Tensor
    count: Tensor
    labels: Tensor | None
    sigma: float
    n0: int
    n: int
    alpha: float
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def abstained(self) -> Tensor:
        return self.prediction == ABSTAIN

    @property
    def correct(self) -> Tensor:
        if self.labels is None:
            raise ConfigError("certified accuracy needs labels: pass y to certify()")
        return (self.prediction == self.labels) & ~self.abstained

    def certified_accuracy(self, radii: float | Sequence[float] | Tensor) -> Tensor:
        """Fraction of samples classified correctly with a certified radius >= r, for each r (Cohen et al., Tab. 1)."""
        r = torch.as_tensor(radii, dtype=torch.float64).reshape(-1)
        ok = self.correct[None, :] & (self.radius.double()[None, :] >= r[:, None])
        return ok.double().mean(1)

    def curve(self, radii: Sequence[float] | Tensor | None = None) -> CertifiedAccuracyCurve:
        """The certified-accuracy-vs-radius curve (default: 0 to the largest radius in 101 steps)."""
        if radii is None:
            top = float(self.radius.max()) if self.radius.numel() else 0.0
            radii = torch.linspace(0, max(top, 1e-6) * 1.05, 101, dtype=torch.float64)
        r = torch.as_tensor(radii, dtype=torch.float64)
        return CertifiedAccuracyCurve(
            radii=r, accuracy=self.certified_accuracy(r), sigma=self.sigma,
            abstain_rate=float(self.abstained.double().mean()),
        )


class Smoothed:
    """The Gaussian-smoothed version ``g`` of a classifier (Cohen et al., 2019; paper Sec. II-D, [63]-[65]).

    Args:
        clf: the base classifier ``f`` (ideally trained with Gaussian noise augmentation at the same ``sigma``).
        sigma: standard deviation of the isotropic Gaussian noise, in data space (before normalization).
    """

    @checked(sigma=POSITIVE)
    def __init__(self, clf: Classifier, sigma: float) -> None:
        if not isinstance(clf, Classifier):
            raise ConfigError(f"Smoothed needs a robustlens Classifier, got {type(clf).__name__}; wrap the model")
        self.clf = clf
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"Smoothed({self.clf!r}, sigma={self.sigma:g})"

    # ------------------------------------------------------------------ sampling
    @checked(num=COUNT, batch_size=COUNT)
    def counts(
        self,
        x: Tensor,
        num: int,
        *,
        batch_size: int = 1000,
        seed: int = 0,
        indices: Tensor | Sequence[int] | None = None,
        stage: str = "estimate",
        progress: bool = False,
    ) -> Tensor:
        """Class counts of ``f(x_i + e)`` over ``num`` Gaussian draws per sample, shape ``(N, C)`` (int64).

        Inputs must be validated already. Noise for sample ``i`` comes from the stream
        ``(seed, indices[i], stage, block)``; forward batches of ``batch_size`` rows mix samples.
        """
        from tqdm.auto import tqdm

        clf = self.clf
        n_samples = x.shape[0]
        idx = list(range(n_samples)) if indices is None else [int(i) for i in torch.as_tensor(indices).tolist()]
        if len(idx) != n_samples:
            raise ConfigError(f"got {len(idx)} indices for {n_samples} inputs; pass one dataset index per input")
        shape = tuple(x.shape[1:])
        dev, dt = clf.device, clf.dtype
        buf = torch.empty((batch_size, *shape), device=dev, dtype=dt)
        owner = torch.empty(batch_size, device=dev, dtype=torch.long)
        # one noise buffer and re-seeded generators: the same draws as fresh generators per block
        noise_buf = torch.empty((min(NOISE_BLOCK, num), *shape), device=dev, dtype=dt)
        source = _BlockNoise(torch.device(dev), noise_parts(dev))
        ones = torch.ones(batch_size, device=dev, dtype=torch.long)
        counts: Tensor | None = None
        fill = 0
        bar = tqdm(total=n_samples * num, disable=not progress, unit="draw", desc=f"smoothing ({stage})", leave=False)

        def flush(rows: int) -> None:
            nonlocal counts
            logits = clf.forward(buf[:rows])
            if not bool(torch.isfinite(logits).all()):
                raise InputError(
                    f"the model returns NaN or Inf logits for {int((~torch.isfinite(logits)).any(1).sum())} of "
                    f"{rows} noisy copies (sigma {self.sigma:g}): no vote can be read from them (argmax would count "
                    "them as class 0). Check the model on noisy inputs (log or sqrt of negative values, overflow "
                    "off the data range), or lower sigma")
            c = logits.shape[1]
            if counts is None:
                counts = torch.zeros(n_samples * c, device=dev, dtype=torch.long)
            flat = owner[:rows] * c + logits.argmax(1)
            # index_add_ rather than bincount: bincount on CUDA reads its maximum back to the host (a device
            # synchronisation per batch, which leaves the GPU idle while the next batch's noise is queued)
            counts.index_add_(0, flat, ones[:rows])
            bar.update(rows)

        try:
            with torch.no_grad(), clf.analysis_mode(), clf.random_state(seed):
                for i in range(n_samples):
                    xi = x[i]
                    for b, start in enumerate(range(0, num, NOISE_BLOCK)):
                        m = min(NOISE_BLOCK, num - start)
                        noise = source.fill(noise_buf[:m], int(seed), "smoothing", idx[i], stage, b)
                        pos = 0
                        while pos < m:
                            take = min(m - pos, batch_size - fill)
                            torch.add(xi, noise[pos:pos + take], alpha=self.sigma, out=buf[fill:fill + take])
                            owner[fill:fill + take] = i
                            fill += take
                            pos += take
                            if fill == batch_size:
                                flush(fill)
                                fill = 0
                if fill:
                    flush(fill)
        finally:
            source.close()
        bar.close()
        assert counts is not None
        return counts.view(n_samples, -1).cpu()

    # ------------------------------------------------------------------ Cohen et al.'s procedures
    @checked(n=COUNT, alpha=OPEN_UNIT, batch_size=COUNT)
    def predict(
        self,
        x: Tensor,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        seed: int = 0,
        *,
        indices: Tensor | Sequence[int] | None = None,
        progress: bool = False,
    ) -> SmoothedPrediction:
        """Cohen et al.'s PREDICT: the top class of ``n`` noisy copies, or abstain (``-1``).

        The prediction is returned only when a two-sided binomial test rejects "top class and runner-up are equally
        likely" at level ``alpha``; then it differs from ``g(x)`` with probability at most ``alpha``.
        """
        x, _ = self.clf.validate(x)
        counts = self.counts(x, n, batch_size=batch_size, seed=seed, indices=indices, stage="predict",
                             progress=progress)
        top2 = counts.topk(min(2, counts.shape[1]), dim=1)
        n_a = top2.values[:, 0]
        n_b = top2.values[:, 1] if counts.shape[1] > 1 else torch.zeros_like(n_a)
        pvalue = torch.from_numpy(binomial_two_sided_pvalue(n_a.numpy(), (n_a + n_b).numpy()))
        pred = torch.where(pvalue <= alpha, top2.indices[:, 0], torch.full_like(n_a, ABSTAIN))
        return SmoothedPrediction(prediction=pred, counts=counts, pvalue=pvalue, sigma=self.sigma, n=int(n),
                                  alpha=float(alpha), seed=int(seed))

    @checked(n0=COUNT, n=COUNT, alpha=OPEN_UNIT, batch_size=COUNT)
    def certify(
        self,
        x: Tensor,
        y: Tensor | Sequence[int] | None = None,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        seed: int = 0,
        *,
        indices: Tensor | Sequence[int] | None = None,
        progress: bool = False,
    ) -> CertifyResult:
        """Cohen et al.'s CERTIFY: the top class and a certified L2 radius for each input.

        ``n0`` draws select the top class ``c_A``; ``n`` fresh draws give ``p_lower``, the one-sided
        ``(1 - alpha)`` Clopper-Pearson lower bound of ``P(f(x + e) = c_A)``. If ``p_lower > 1/2`` the smoothed
        classifier is constant (= ``c_A``) in the L2 ball of radius ``sigma * Phi^-1(p_lower)`` with probability
        at least ``1 - alpha``; otherwise it abstains (``-1``, radius 0).
        """
        x, labels = self.clf.validate(x, None if y is None else torch.as_tensor(y))
        sel = self.counts(x, n0, batch_size=batch_size, seed=seed, indices=indices, stage="select",
                          progress=progress)
        c_a = sel.argmax(1)
        est = self.counts(x, n, batch_size=batch_size, seed=seed, indices=indices, stage="estimate",
                          progress=progress)
        n_a = est.gather(1, c_a[:, None]).squeeze(1)
        p_lower = torch.from_numpy(clopper_pearson_lower(n_a.numpy(), int(n), float(alpha)))
        certified = p_lower > 0.5
        radius = torch.from_numpy(self.sigma * stats.norm.ppf(p_lower.numpy().clip(0.5, 1.0)))
        radius = torch.where(certified, radius, torch.zeros_like(radius))
        pred = torch.where(certified, c_a, torch.full_like(c_a, ABSTAIN))
        return CertifyResult(
            prediction=pred, radius=radius, p_lower=p_lower, count=n_a,
            labels=None if labels is None else labels.cpu(), sigma=self.sigma, n0=int(n0), n=int(n),
            alpha=float(alpha), seed=int(seed),
            settings={"noise_block": NOISE_BLOCK, "noise_parts": noise_parts(self.clf.device)},
        )


@checked(n0=COUNT, n=COUNT, alpha=OPEN_UNIT, batch_size=COUNT, data_batch_size=COUNT)
def certify_dataset(
    smoothed: Smoothed,
    data: Any,
    *,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    data_batch_size: int = 16,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    state_dir: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> CertifyResult:
    """Certify every sample of a dataset through the evaluation runner (checkpointed, resumable, shardable).

    ``batch_size`` is the number of noisy copies per forward pass; ``data_batch_size`` the number of images per
    checkpointed batch. The result equals :meth:`Smoothed.certify` on the whole set with the same seed.
    """
    from ..runner import run_evaluation


    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        r = smoothed.certify(bx, by, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed, indices=bi,
                             progress=progress)  # a bar over the noisy draws inside each checkpointed batch
        out = {"prediction": r.prediction, "radius": r.radius, "p_lower": r.p_lower, "count": r.count}
        if r.labels is not None:
            out["labels"] = r.labels
        return out

    config = {"entry": "certify", "sigma": smoothed.sigma, "n0": n0, "n": n, "alpha": alpha,
              "noise_block": NOISE_BLOCK, "noise_parts": noise_parts(smoothed.clf.device)}
    ev = run_evaluation(fn, data, state_dir=state_dir, batch_size=data_batch_size, config=config, seed=seed,
                        model=smoothed.clf, indices=indices, resume=resume, overwrite=overwrite,
                        progress=progress, desc="certifying")
    o = ev.outputs
    return CertifyResult(
        prediction=o["prediction"], radius=o["radius"], p_lower=o["p_lower"], count=o["count"],
        labels=o.get("labels"), sigma=smoothed.sigma, n0=int(n0), n=int(n), alpha=float(alpha), seed=int(seed),
        settings={"noise_block": NOISE_BLOCK, "noise_parts": noise_parts(smoothed.clf.device),
                  "indices": ev.indices.tolist()},
    )


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> CertifyResult:
    return Smoothed(clf, 0.1).certify(x, y, n0=8, n=64, alpha=0.01, batch_size=48, seed=seed)


register_analysis("randomized-smoothing", kind="certify", smoke=_smoke, needs_gradients=False,
                  summary="certified L2 radius of the Gaussian-smoothed classifier (Cohen et al., 2019)")(Smoothed)
