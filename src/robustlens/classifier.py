"""``Classifier``: the one wrapper every robustlens analysis consumes.

It wraps any ``torch.nn.Module`` that maps a batch of inputs to logits (paper, Sec. II-A, eq. (3)-(5)) and owns:

- ``bounds``: the data range; inputs are always given in data space (e.g. ``[0, 1]`` pixels);
- ``mean`` / ``std``: normalization applied *inside* the wrapper, so attacks and geometry never see normalized space;
- the model's device and dtype (inputs follow the model);
- eval mode during analysis, restoring the caller's train/eval flags afterwards;
- internal batching for large inputs (:meth:`logits`, :meth:`predict`, :meth:`loss_and_input_grad`);
- a count of the forward and backward passes used, per sample (``clf.counter``), for attack cost accounting;
- validation of inputs and labels with messages that say what to do;
- cheap checks of the model's assumptions, at wrapping or on first use: at least two classes, repeatable forward
  passes (or ``stochastic=True``, which averages gradients over draws and decides by majority over draws), float32
  decisions for a reduced-precision model, a gradient path from the input to the logits, finite logits.

The paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import COUNT, FINITE, POSITIVE, check, checked
from .decision import clean_validity
from .errors import InputError, LabelError, RobustLensError, RobustLensWarning
from .ops import finite_rows, logit_margin
from .seeding import stable_hash

LossName = str  # "ce" (cross-entropy), "margin" (best other logit minus true logit), or a callable


@dataclass
class PassCounter:
    """Number of samples passed forward and backward through the model since the last reset."""

    forward: int = 0
    backward: int = 0

    def reset(self) -> None:
        self.forward = 0
        self.backward = 0

    def snapshot(self) -> tuple[int, int]:
        return self.forward, self.backward


REDUCED_PRECISION = (torch.float16, torch.bfloat16)

NO_GRADIENT_PATH = (
    "the model's logits do not depend differentiably on its input (no gradient path: forward detaches the input, "
    "runs under torch.no_grad, or uses a non-differentiable operation such as argmax or rounding). This analysis "
    "needs input gradients: use a gradient-free attack such as Square, or make forward differentiable (BPDA for "
    "the non-differentiable part)"
)


def _as_stat(value: float | Sequence[float] | Tensor | None, name: str) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1:
        raise RobustLensError(f"{name} must be a scalar or one value per channel, got shape {tuple(t.shape)}")
    rule = POSITIVE if name == "std" else FINITE
    for i, v in enumerate(t.tolist()):
        check(v, name if t.numel() == 1 else f"{name}[{i}]", rule, "Classifier")
    return t


class Classifier:
    """Wrap a logits model for robustness analysis.

    Args:
        model: a module mapping ``(N, *input_shape)`` inputs to ``(N, C)`` logits.
        bounds: ``(low, high)`` data range of valid inputs; attacks keep examples inside it (paper, footnote 1).
        mean, std: per-channel normalization applied inside: the model sees ``(x - mean) / std``.
        input_shape: expected shape of one input (without batch); inferred from the first batch if omitted.
        num_classes: number of classes; inferred from the model's output if omitted.
        batch_size: chunk size of :meth:`logits`, :meth:`predict` and :meth:`loss_and_input_grad`.
        eval_mode: run the model in eval mode during analysis (restoring its flags afterwards). Set ``False``
            only to analyse a model in train mode on purpose (adversarial training uses this).
        check_bounds: raise when inputs fall outside ``bounds`` (set ``False`` for unbounded inputs).
        allow_parameterless: accept a module without parameters (a fixed function); raised on otherwise.
        device: where inputs are moved (default: the device of the model's parameters).
        allow_tf32: on CUDA, let analysis use TF32 matmuls and convolutions (faster, about 1e-3 relative error
            in the logits). Off by default: minimal-norm attacks and curvature need full FP32.
        stochastic: declare that forward is random (dropout active, noise injected): gradients are then averaged
            over ``draws`` passes (Expectation over Transformation, Athalye et al. 2018) and every decision is the
            majority over ``draws`` passes (:meth:`decision_logits`), with the model's randomness seeded by the
            attack's seed. Without it, a model whose two forward passes of one batch differ is refused on first use.
        draws: passes per gradient and per decision of a stochastic model.

    A model with bfloat16 or float16 weights gets a warning and is analysed through a float32 copy (refreshed when
    its weights change): inputs, perturbations, gradients and every decision are float32, so a success that float32
    finds is never lost to rounding. ``clf.model`` stays the given module; ``clf.analysis_model`` is the one run.

    Example:
        >>> clf = Classifier(net, bounds=(0, 1), mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.243, 0.261])
        >>> clf.predict(x)            # labels, batched, no grad, eval mode
        >>> loss, grad = clf.loss_and_input_grad(x, y)
    """

    @checked(batch_size=COUNT, draws=COUNT)
    def __init__(
        self,
        model: nn.Module,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: float | Sequence[float] | Tensor | None = None,
        std: float | Sequence[float] | Tensor | None = None,
        *,
        input_shape: Sequence[int] | None = None,
        num_classes: int | None = None,
        batch_size: int = 256,
        eval_mode: bool = True,
        check_bounds: bool = True,
        allow_parameterless: bool = False,
        device: torch.device | str | None = None,
        allow_tf32: bool = False,
        stochastic: bool = False,
        draws: int = 8,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise RobustLensError(
                f"model must be a torch.nn.Module returning logits, got {type(model).__name__}; "
                "wrap a plain function in a Module subclass"
            )
        params = list(model.parameters())
        if not params and not allow_parameterless:
            raise RobustLensError(
                "the model has no parameters: was it built without its layers, or are the weights missing? "
                "For a fixed function with no weights pass allow_parameterless=True"
            )
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise RobustLensError(f"bounds must be a pair (low, high), got {bounds!r}")
        low = check(bounds[0], "bounds[0]", FINITE, "Classifier")
        high = check(bounds[1], "bounds[1]", FINITE, "Classifier")
        if not low < high:
            raise RobustLensError(f"bounds must be (low, high) with low < high, got {bounds}")
        self.model = model
        self.bounds = (low, high)
        self.batch_size = int(batch_size)
        self.eval_mode = eval_mode
        self.check_bounds = check_bounds
        self.allow_tf32 = bool(allow_tf32)
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape is not None else None
        self._num_classes = num_classes
        self.counter = PassCounter()
        self.stochastic = bool(stochastic)
        self.draws = int(draws)
        self._warned_train = False
        self._warned_probs = False
        self._probed = False
        self._float_copy: nn.Module | None = None
        self._float_stamp: tuple[int, ...] = ()
        ref = params[0] if params else next(iter(model.buffers()), None)
        if device is not None:
            self.device = torch.device(device)
        elif ref is not None:
            self.device = ref.device
        else:
            self.device = torch.device("cpu")
        self.dtype = ref.dtype if (ref is not None and ref.is_floating_point()) else torch.float32
        self.reduced_precision = self.dtype in REDUCED_PRECISION
        if self.reduced_precision:
            warnings.warn(
                f"the model's weights are {str(self.dtype).removeprefix('torch.')}: its logits keep 2-3 significant "
                "digits and its inputs lose small perturbations to rounding, so decisions near the boundary are "
                "noise. robustlens analyses a float32 copy of it (refreshed whenever its weights change): every "
                "input, gradient and decision is float32. Convert the model with .float() to silence this",
                RobustLensWarning,
                stacklevel=3,
            )
            self.dtype = torch.float32
        m, s = _as_stat(mean, "mean"), _as_stat(std, "std")
        self.mean = None if m is None else m.to(self.device, self.dtype)
        self.std = None if s is None else s.to(self.device, self.dtype)

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        """Number of classes (inferred from one forward pass on a zero input if not given)."""
        if self._num_classes is None:
            if self.input_shape is None:
                raise RobustLensError(
                    "num_classes is unknown: pass num_classes= or input_shape= to Classifier, "
                    "or call clf.logits(x) once"
                )
            with torch.no_grad(), self.analysis_mode():
                x = torch.full((1, *self.input_shape), self.bounds[0], device=self.device, dtype=self.dtype)
                before = self.counter.forward
                self.forward(x)
                self.counter.forward = before  # a probe of the output size, not a query of the model
        assert self._num_classes is not None
        return self._num_classes

    @property
    def input_dim(self) -> int:
        if self.input_shape is None:
            raise RobustLensError("input_shape is unknown: pass input_shape= or call clf.logits(x) once")
        n = 1
        for d in self.input_shape:
            n *= d
        return n

    def __repr__(self) -> str:
        return (
            f"Classifier({type(self.model).__name__}, bounds={self.bounds}, input_shape={self.input_shape}, "
            f"num_classes={self._num_classes}, device={self.device})"
        )

    @property
    def analysis_model(self) -> nn.Module:
        """The module analysis runs: ``model`` itself, or for a reduced-precision model its float32 copy, refreshed
        (weights, buffers and train/eval flags) whenever the model changed since the last call."""
        if not self.reduced_precision:
            return self.model
        tensors = [*self.model.parameters(), *self.model.buffers()]
        stamp = tuple(v for t in tensors for v in (id(t), t._version))
        if self._float_copy is None or len(stamp) != len(self._float_stamp) or any(
            a != b for a, b in zip(stamp[::2], self._float_stamp[::2], strict=True)
        ):
            self._float_copy = copy.deepcopy(self.model).float()
        elif stamp != self._float_stamp:
            with torch.no_grad():
                for dst, src in zip([*self._float_copy.parameters(), *self._float_copy.buffers()], tensors,
                                    strict=True):
                    dst.copy_(src)
        for dst_m, src_m in zip(self._float_copy.modules(), self.model.modules(), strict=True):
            dst_m.training = src_m.training
        self._float_stamp = stamp
        return self._float_copy

    # ------------------------------------------------------------------ modes
    @contextlib.contextmanager
    def random_state(self, seed: int) -> Iterator[None]:
        """For a stochastic classifier, run the block with torch's global generators seeded from ``seed`` (and
        restored afterwards), so one seed gives one result; a no-op for deterministic models."""
        if not self.stochastic:
            yield
            return
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(stable_hash(int(seed), "model-noise"))
            yield

    @contextlib.contextmanager
    def analysis_mode(self) -> Iterator[None]:
        """Put the model in eval mode (if ``eval_mode``) and restore every submodule's flag on exit.

        On CUDA it also turns TF32 off for the duration unless ``allow_tf32`` (see :meth:`full_precision`).
        """
        with self.full_precision():
            if not self.eval_mode:
                yield
                return
            with self._eval_flags():
                yield

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """Run CUDA matmuls and convolutions in full FP32 (TF32 off) unless the classifier was built with
        ``allow_tf32=True``; the global flags are restored on exit. A no-op on the CPU.

        TF32 keeps 10 mantissa bits: logits move by about 1e-3 relative, enough to flip the decision at a
        minimal perturbation's 2% overshoot (on an H100, DeepFool's success fell from 1.00 to 0.89 with TF32).
        """
        if self.device.type != "cuda" or self.allow_tf32:
            yield
            return
        saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    @contextlib.contextmanager
    def _eval_flags(self) -> Iterator[None]:
        net = self.analysis_model
        flags = [(m, m.training) for m in net.modules()]
        if any(t for _, t in flags) and not self._warned_train:
            stateful = any(
                isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.Dropout)) for m, t in flags if t
            )
            if stateful:
                warnings.warn(
                    "the model is in train mode and has BatchNorm/Dropout layers; robustlens analyses it in "
                    "eval mode and restores train mode afterwards. Call model.eval() to silence this, or pass "
                    "eval_mode=False to analyse train-mode behaviour on purpose",
                    RobustLensWarning,
                    stacklevel=6,
                )
            self._warned_train = True
        net.eval()
        try:
            yield
        finally:
            for m, t in flags:
                m.training = t

    # ------------------------------------------------------------------ validation
    def validate(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Check ``x`` (and labels ``y``) and return them on the model's device and dtype.

        Raises :class:`InputError` / :class:`LabelError` with a message that says what to do.
        """
        if not isinstance(x, Tensor):
            raise InputError(f"inputs must be a torch.Tensor, got {type(x).__name__}; use torch.as_tensor(x)")
        if x.ndim < 2:
            raise InputError(
                f"inputs must be a batch of shape (N, *input_shape), got shape {tuple(x.shape)}; "
                "add a batch dimension with x.unsqueeze(0)"
            )
        if x.shape[0] == 0:
            raise InputError("the input batch is empty (N = 0): nothing to analyse")
        if not x.is_floating_point():
            hint = ""
            if x.dtype == torch.uint8 or (x.numel() and int(x.max()) > 1):
                hint = " Images stored as integers 0-255 should be converted with x.float() / 255."
            raise InputError(f"inputs must be floating point, got {x.dtype}.{hint}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"inputs have shape {tuple(x.shape[1:])} per sample but the classifier expects "
                f"{self.input_shape}; check channels-first layout (N, C, H, W) and the image size"
            )
        if self.mean is not None and x.ndim >= 2 and self.mean.numel() not in (1, x.shape[1]):
            raise InputError(
                f"inputs have {x.shape[1]} channels but mean/std have {self.mean.numel()} values"
            )
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
            raise InputError(f"{bad} input(s) contain NaN or Inf values; clean or drop them before analysis")
        if self.check_bounds:
            lo, hi = self.bounds
            xmin, xmax = float(x.min()), float(x.max())
            tol = 1e-6 * max(1.0, hi - lo)
            if xmin < lo - tol or xmax > hi + tol:
                hint = ""
                if hi <= 1.0 and xmax > 1.5 and xmax <= 255.0 + tol and xmin >= 0:
                    hint = " The values look like 0-255 pixels: divide by 255."
                elif xmin < lo:
                    hint = (
                        " If the inputs are already normalized, pass raw data-range inputs and give mean/std "
                        "to Classifier instead."
                    )
                raise InputError(
                    f"inputs lie in [{xmin:.4g}, {xmax:.4g}], outside the classifier's bounds [{lo:g}, {hi:g}]."
                    f"{hint} Pass the right bounds=, or check_bounds=False to disable this check."
                )
        x = x.to(self.device, self.dtype)
        if not self._probed:
            self._probe(x)
        if y is not None:
            if self.input_shape is None and self._num_classes is None:
                # learn the input shape now (the first forward would), so labels are checked against the class count
                self.input_shape = tuple(x.shape[1:])
            y = self.validate_labels(y, x.shape[0])
        return x, y

    def _probe(self, x: Tensor) -> None:
        """The first-use check of the model: two forward passes of (up to) 4 inputs must agree, unless the model is
        declared ``stochastic``. Skipped with ``eval_mode=False`` (train-mode analysis is on purpose, and a train-mode
        pass would update BatchNorm statistics). Not counted in ``counter``."""
        self._probed = True
        if not self.eval_mode:
            return
        before = self.counter.snapshot()
        try:
            with torch.no_grad(), self.analysis_mode():
                a = self.forward(x[:4])
                b = self.forward(x[:4])
        finally:
            self.counter.forward, self.counter.backward = before
        if self.stochastic:
            return
        scale = float(a[finite_rows(a)].abs().max()) if bool(finite_rows(a).any()) else 1.0
        if not torch.allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, scale), equal_nan=True):
            diff = float((a - b).abs().nan_to_num(0.0).max())
            raise RobustLensError(
                f"two forward passes of the same inputs gave different logits (largest difference {diff:.3g}): the "
                "model is stochastic (dropout active in eval mode, noise in forward, a random transform). An attack "
                "would report examples that no longer fool it when evaluated again. Pass stochastic=True to "
                "Classifier to attack it with gradients averaged over draws (EOT) and success decided over draws "
                "(draws=...), or make forward deterministic"
            )

    def validate_labels(self, y: Tensor | Sequence[int], n: int, name: str = "labels") -> Tensor:
        """Check that ``y`` holds ``n`` integer class indices in ``[0, num_classes)``."""
        y = torch.as_tensor(y)
        if y.is_floating_point() or y.dtype == torch.bool:
            if y.ndim == 2:
                raise LabelError(f"{name} look one-hot or like probabilities (shape {tuple(y.shape)}); "
                                 "pass class indices, e.g. y.argmax(1)")
            raise LabelError(f"{name} must be integer class indices, got dtype {y.dtype}; use y.long()")
        if y.ndim != 1:
            raise LabelError(f"{name} must be a 1-d tensor of class indices, got shape {tuple(y.shape)}")
        if y.shape[0] != n:
            raise LabelError(f"got {y.shape[0]} {name} for {n} inputs; pass one label per input")
        c = self._num_classes
        if c is None and self.input_shape is not None:
            c = self.num_classes
        if y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or (c is not None and hi >= c):
                raise LabelError(
                    f"{name} range over [{lo}, {hi}] but the model has {c} classes (valid: 0..{c - 1 if c else '?'}); "
                    "check the label encoding (1-based labels need y - 1)"
                )
        return y.to(self.device, torch.long)

    def _check_output(self, out: Tensor, x: Tensor) -> None:
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise RobustLensError(
                f"the model must return logits of shape (N, num_classes) = ({x.shape[0]}, C); got {shape}. "
                "Wrap models that return tuples or dicts so that forward returns the logits only"
            )
        if out.shape[1] < 2:
            raise RobustLensError(
                f"the model returns {out.shape[1]} logit per sample: robustlens needs one logit per class and at least "
                "2 classes. For a binary classifier with one score s, return torch.cat([-s, s], 1) / 2 (or [0, s])"
            )
        if self._num_classes is None:
            self._num_classes = int(out.shape[1])
        elif out.shape[1] != self._num_classes:
            raise RobustLensError(f"the model returned {out.shape[1]} classes, expected {self._num_classes}")
        if not self._warned_probs:
            self._warned_probs = True
            with torch.no_grad():
                o = out.detach()
                if bool((o >= 0).all() and (o <= 1).all()) and torch.allclose(
                    o.sum(1), torch.ones_like(o[:, 0]), atol=1e-3
                ):
                    warnings.warn(
                        "the model's outputs are non-negative and sum to 1: they look like probabilities, not "
                        "logits. Attacks and losses need logits (softmax saturates gradients); remove the final "
                        "softmax from the model",
                        RobustLensWarning,
                        stacklevel=4,
                    )

    # ------------------------------------------------------------------ forward passes
    def _normalize(self, x: Tensor) -> Tensor:
        if self.mean is None and self.std is None:
            return x
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.mean is not None:
            x = x - self.mean.view(shape)
        if self.std is not None:
            x = x / self.std.view(shape)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Differentiable logits of one batch in data space; no validation, no chunking.

        This is the hot path used inside attacks; the model should already be in analysis mode
        (see :meth:`analysis_mode`). It counts one forward pass per sample.
        """
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        try:
            out = self.analysis_model(self._normalize(x))
        except RuntimeError as e:
            msg = str(e)
            first = msg.splitlines()[0] if msg else type(e).__name__
            if "device" in msg or "weight type" in msg or "bias type" in msg:
                what = "devices or dtypes" if "device" not in msg else "devices"
                raise InputError(
                    f"the model and the inputs are on different {what} ({first}). The Classifier moves inputs to "
                    f"{self.device}, {self.dtype} (the model's when it was wrapped): if you moved or converted the "
                    "model afterwards, wrap it again (or pass device=), and keep all its parameters on one device"
                ) from e
            if "dtype" in msg:
                raise InputError(
                    f"the model and the inputs have different dtypes ({first}). The Classifier casts inputs to "
                    f"{self.dtype} (the model's when it was wrapped): if you converted the model afterwards "
                    "(e.g. .double() or .half()), wrap it again"
                ) from e
            if "shape" in msg or "size" in msg or "channels" in msg:
                raise InputError(
                    f"the model failed on inputs of shape {tuple(x.shape)}: {msg.splitlines()[0]}. "
                    "Check the channel count and image size the model expects"
                ) from e
            raise
        self._check_output(out, x)
        self.counter.forward += x.shape[0]
        return out

    __call__ = forward

    def chunks(self, n: int, batch_size: int | None = None) -> Iterator[slice]:
        """Slices of ``range(n)`` of ``batch_size`` (default :attr:`batch_size`) samples each."""
        bs = self.batch_size if batch_size is None else int(check(batch_size, "batch_size", COUNT))
        for i in range(0, n, bs):
            yield slice(i, min(i + bs, n))


    def logits(self, x: Tensor, *, batch_size: int | None = None, validate: bool = True) -> Tensor:
        """Logits for any number of inputs, computed in chunks without gradients."""
        if validate:
            x, _ = self.validate(x)
        outs = []
        with torch.no_grad(), self.analysis_mode():
            for s in self.chunks(x.shape[0], batch_size):
                outs.append(self.forward(x[s]))
        return torch.cat(outs)

    def decision_logits(self, x: Tensor, *, batch_size: int | None = None) -> Tensor:
        """Scores whose ``argmax`` is the classifier's decision, for already validated inputs, chunked, without
        gradients: the logits; for a stochastic classifier the votes of ``draws`` passes (ties broken by the mean
        probability), so the decision is the majority over draws. A row is NaN where any pass was not finite.
        This is what :func:`robustlens.decision.decide` reads every decision from."""
        outs = []
        with torch.no_grad(), self.analysis_mode():
            for s in self.chunks(x.shape[0], batch_size):
                if not self.stochastic:
                    outs.append(self.forward(x[s]))
                    continue
                votes, probs, ok = None, None, None
                for _ in range(self.draws):
                    z = self.forward(x[s])
                    one = F.one_hot(z.argmax(1), z.shape[1]).to(z.dtype)
                    pr = z.softmax(1)
                    votes = one if votes is None else votes + one
                    probs = pr if probs is None else probs + pr
                    ok = finite_rows(z) if ok is None else ok & finite_rows(z)
                assert votes is not None and probs is not None and ok is not None
                score = votes + probs / (self.draws + 1)  # the mean probability only breaks ties between votes
                outs.append(torch.where(ok[:, None], score, torch.full_like(score, float("nan"))))
        return torch.cat(outs)

    def predict(self, x: Tensor, *, batch_size: int | None = None, validate: bool = True) -> Tensor:
        """Predicted labels ``argmax_k logits_k`` (eq. 5); the majority over draws for a stochastic classifier.

        Raises :class:`InputError` where the logits are not finite (``argmax`` of a NaN row is not a decision)."""
        if validate:
            x, _ = self.validate(x)
        scores = self.decision_logits(x, batch_size=batch_size)
        clean_validity(scores, "raise", what="input(s)")
        return scores.argmax(1)

    def accuracy(self, x: Tensor, y: Tensor, *, batch_size: int | None = None) -> float:
        """Fraction of ``x`` classified as ``y``; an :class:`InputError` where the logits are not finite."""
        x, yv = self.validate(x, y)
        assert yv is not None
        return float((self.predict(x, batch_size=batch_size, validate=False) == yv).float().mean())

    def value_and_grad(
        self, x: Tensor, fn: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(fn(logits), logits, d sum(fn(logits)) / dx)`` for one batch, counting one forward and backward.

        ``fn`` maps logits ``(N, C)`` to one value per sample ``(N,)``. Runs in the current mode: call it inside
        :meth:`analysis_mode`. This is the single gradient primitive the attacks and geometry share.

        A stochastic classifier averages values, logits and gradients over ``draws`` passes (EOT). A sample whose
        gradient has a NaN or Inf entry gets a gradient row of NaN (the attacks stop such samples,
        :func:`robustlens.decision.stop`); a model with no gradient path from input to logits is an error.
        """
        vals, outs, grads = [], [], []
        for _ in range(self.draws if self.stochastic else 1):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                logits = self.forward(xg)
                values = fn(logits)
                grad = _input_grad(values.sum(), xg)
            self.counter.backward += x.shape[0]
            vals.append(values.detach())
            outs.append(logits.detach())
            grads.append(grad)
        if len(grads) > 1:
            return (torch.stack(vals).mean(0), torch.stack(outs).mean(0),
                    poison_nonfinite(torch.stack(grads).mean(0)))
        return vals[0], outs[0], poison_nonfinite(grads[0])

    def logit_jacobian(
        self, x: Tensor, weights: Tensor | Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Values and input gradients of ``K`` linear combinations of the logits, per sample.

        Args:
            x: a batch ``(N, *shape)``.
            weights: coefficients ``(N, K, C)``, or a function of the logits ``(N, C)`` (detached) returning them;
                combination ``k`` of sample ``n`` is ``sum_c weights[n, k, c] * logits[n, c]`` (e.g. ``e_k - e_y``
                for the logit difference ``z_k - z_y`` that DeepFool linearises).

        Returns:
            ``(logits, values, grads)`` with ``values`` of shape ``(N, K)`` and ``grads`` of shape ``(N, K, *shape)``.

        One forward pass is shared by all ``K`` gradients (one forward and ``K`` backward passes per sample are
        counted); the ``K`` vector-Jacobian products run as one batched backward (``is_grads_batched``), falling back
        to ``K`` backward calls on the same graph for models whose backward cannot be vectorised. As in
        :meth:`value_and_grad`: EOT over draws for a stochastic classifier, NaN rows for non-finite gradients.
        """
        outs, vals, jacs = [], [], []
        for _ in range(self.draws if self.stochastic else 1):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                logits = self.forward(xg)
                if not logits.requires_grad:
                    raise RobustLensError(NO_GRADIENT_PATH)
                w = (weights(logits.detach()) if callable(weights) else weights).to(logits.dtype)  # (N, K, C)
                k = w.shape[1]
                values = torch.einsum("nkc,nc->nk", w, logits.detach())
                go = w.permute(1, 0, 2).contiguous()  # (K, N, C)
                try:
                    (g,) = torch.autograd.grad(logits, xg, go, is_grads_batched=True, retain_graph=True,
                                               allow_unused=True)
                except RuntimeError:  # pragma: no cover - depends on the model's operators
                    g = torch.stack([_input_grad(logits, xg, go[i], retain=i < k - 1) for i in range(k)])
                if g is None:
                    raise RobustLensError(NO_GRADIENT_PATH)
            self.counter.backward += x.shape[0] * k
            outs.append(logits.detach())
            vals.append(values)
            jacs.append(g.transpose(0, 1))
        if len(jacs) > 1:
            return torch.stack(outs).mean(0), torch.stack(vals).mean(0), poison_nonfinite(torch.stack(jacs).mean(0))
        return outs[0], vals[0], poison_nonfinite(jacs[0])

    def loss_and_input_grad(
        self,
        x: Tensor,
        y: Tensor,
        *,
        loss: LossName | Callable[[Tensor, Tensor], Tensor] = "ce",
        batch_size: int | None = None,
        validate: bool = True,
    ) -> tuple[Tensor, Tensor]:
        """Per-sample loss and its gradient with respect to the input (data space), chunked.

        ``loss`` is ``"ce"`` (cross-entropy, eq. 2), ``"margin"`` (max other logit minus the true logit, positive
        when misclassified) or a callable ``(logits, y) -> per-sample loss``.
        """
        labels: Tensor | None = y
        if validate:
            x, labels = self.validate(x, y)
        assert labels is not None
        fn = resolve_loss(loss)
        losses, grads = [], []
        with self.analysis_mode():
            for s in self.chunks(x.shape[0], batch_size):
                ys = labels[s]

                def chunk_loss(z: Tensor, ys: Tensor = ys) -> Tensor:
                    return fn(z, ys)

                v, _, g = self.value_and_grad(x[s], chunk_loss)
                losses.append(v)
                grads.append(g)
        return torch.cat(losses), torch.cat(grads)

    def clip(self, x: Tensor) -> Tensor:
        """Clamp to the data bounds."""
        return x.clamp(self.bounds[0], self.bounds[1])


def _input_grad(out: Tensor, x: Tensor, grad_out: Tensor | None = None, *, retain: bool = False) -> Tensor:
    """``d out / d x`` (``out`` weighted by ``grad_out``), with a clear error when ``out`` does not depend on ``x``."""
    if not out.requires_grad:
        raise RobustLensError(NO_GRADIENT_PATH)
    (g,) = torch.autograd.grad(out, x, grad_out, retain_graph=retain, allow_unused=True)
    if g is None:
        raise RobustLensError(NO_GRADIENT_PATH)
    return g


def poison_nonfinite(grad: Tensor) -> Tensor:
    """``grad`` with every sample row that holds a NaN or Inf entry set entirely to NaN (in place), so that no
    attack step can silently turn a broken gradient into a finite move (``sign(nan)`` is 0)."""
    bad = ~finite_rows(grad)
    if bool(bad.any()):
        grad[bad] = float("nan")
    return grad


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Largest other logit minus the true logit (``-logit_margin``): positive exactly when misclassified."""
    return -logit_margin(logits, y)


def resolve_loss(loss: LossName | Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if loss == "ce":
        return lambda z, y: F.cross_entropy(z, y, reduction="none")
    if loss == "margin":
        return margin_loss
    raise RobustLensError(f"unknown loss {loss!r}; use 'ce', 'margin' or a callable (logits, y) -> per-sample loss")
