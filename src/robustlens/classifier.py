"""``Classifier``: the one wrapper every robustlens analysis consumes.

It wraps any ``torch.nn.Module`` that maps a batch of inputs to logits (paper, Sec. II-A, eq. (3)-(5)) and owns:

- ``bounds``: the data range; inputs are always given in data space (e.g. ``[0, 1]`` pixels);
- ``mean`` / ``std``: normalization applied *inside* the wrapper, so attacks and geometry never see normalized space;
- the model's device and dtype (inputs follow the model);
- eval mode during analysis, restoring the caller's train/eval flags afterwards;
- internal batching for large inputs (:meth:`logits`, :meth:`predict`, :meth:`loss_and_input_grad`);
- a count of the forward and backward passes used, per sample (``clf.counter``), for attack cost accounting;
- validation of inputs and labels with messages that say what to do.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, LabelError, RobustLensError, RobustLensWarning

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


def _as_stat(value: float | Sequence[float] | Tensor | None, name: str) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim == 0:
        t = t.reshape(1)
    if t.ndim != 1:
        raise RobustLensError(f"{name} must be a scalar or one value per channel, got shape {tuple(t.shape)}")
    if name == "std" and bool((t <= 0).any()):
        raise RobustLensError(f"std must be positive, got {t.tolist()}")
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

    Example:
        >>> clf = Classifier(net, bounds=(0, 1), mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.243, 0.261])
        >>> clf.predict(x)            # labels, batched, no grad, eval mode
        >>> loss, grad = clf.loss_and_input_grad(x, y)
    """

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
        low, high = float(bounds[0]), float(bounds[1])
        if not low < high:
            raise RobustLensError(f"bounds must be (low, high) with low < high, got {bounds}")
        if batch_size < 1:
            raise RobustLensError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.bounds = (low, high)
        self.batch_size = int(batch_size)
        self.eval_mode = eval_mode
        self.check_bounds = check_bounds
        self.allow_tf32 = bool(allow_tf32)
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape is not None else None
        self._num_classes = num_classes
        self.counter = PassCounter()
        self._warned_train = False
        self._warned_probs = False
        ref = params[0] if params else next(iter(model.buffers()), None)
        if device is not None:
            self.device = torch.device(device)
        elif ref is not None:
            self.device = ref.device
        else:
            self.device = torch.device("cpu")
        self.dtype = ref.dtype if (ref is not None and ref.is_floating_point()) else torch.float32
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

    # ------------------------------------------------------------------ modes
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
        flags = [(m, m.training) for m in self.model.modules()]
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
        self.model.eval()
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
        if y is not None:
            if self.input_shape is None and self._num_classes is None:
                # learn the input shape now (the first forward would), so labels are checked against the class count
                self.input_shape = tuple(x.shape[1:])
            y = self.validate_labels(y, x.shape[0])
        return x, y

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
            out = self.model(self._normalize(x))
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

    def _chunks(self, n: int, batch_size: int | None) -> Iterator[slice]:
        bs = batch_size or self.batch_size
        for i in range(0, n, bs):
            yield slice(i, min(i + bs, n))

    def logits(self, x: Tensor, *, batch_size: int | None = None, validate: bool = True) -> Tensor:
        """Logits for any number of inputs, computed in chunks without gradients."""
        if validate:
            x, _ = self.validate(x)
        outs = []
        with torch.no_grad(), self.analysis_mode():
            for s in self._chunks(x.shape[0], batch_size):
                outs.append(self.forward(x[s]))
        return torch.cat(outs)

    def predict(self, x: Tensor, *, batch_size: int | None = None, validate: bool = True) -> Tensor:
        """Predicted labels ``argmax_k logits_k`` (eq. 5)."""
        return self.logits(x, batch_size=batch_size, validate=validate).argmax(1)

    def accuracy(self, x: Tensor, y: Tensor, *, batch_size: int | None = None) -> float:
        x, yv = self.validate(x, y)
        assert yv is not None
        return float((self.predict(x, batch_size=batch_size, validate=False) == yv).float().mean())

    def value_and_grad(
        self, x: Tensor, fn: Callable[[Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(fn(logits), logits, d sum(fn(logits)) / dx)`` for one batch, counting one forward and backward.

        ``fn`` maps logits ``(N, C)`` to one value per sample ``(N,)``. Runs in the current mode: call it inside
        :meth:`analysis_mode`. This is the single gradient primitive the attacks and geometry share.
        """
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = self.forward(xg)
            values = fn(logits)
            (grad,) = torch.autograd.grad(values.sum(), xg)
        self.counter.backward += x.shape[0]
        return values.detach(), logits.detach(), grad

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
            for s in self._chunks(x.shape[0], batch_size):
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


def margin_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Largest other logit minus the true logit: positive exactly when the sample is misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return other - true


def resolve_loss(loss: LossName | Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    if loss == "ce":
        return lambda z, y: F.cross_entropy(z, y, reduction="none")
    if loss == "margin":
        return margin_loss
    raise RobustLensError(f"unknown loss {loss!r}; use 'ce', 'margin' or a callable (logits, y) -> per-sample loss")
