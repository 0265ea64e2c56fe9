"""The computation a certificate follows: the model's real ``forward``, traced with ``torch.fx`` into a bound graph.

A certificate is only as good as its picture of the network. Walking a module's ``nn.Sequential`` children ignores
whatever ``forward`` does around them (``self.layers((x - 0.5) * 20)``, ``-self.layers(x)``, a residual add) and
certifies a different function. :func:`trace_bound_graph` instead traces ``forward`` (``torch.fx.symbolic_trace``,
with the :class:`~robustlens.Classifier`'s ``(x - mean) / std`` as its first operations), runs the trace once on the
inputs, checks that it reproduces the model's own logits, and turns every operation that depends on the input into
a :class:`BoundNode` of one of three kinds:

- ``"affine"``: ``A(inputs) + b`` (Linear, Conv1d/2d, BatchNorm in eval mode, Flatten/view/reshape, average pooling,
  Identity, Dropout in eval mode, adding, subtracting, multiplying or dividing by constants, negation, the sum or
  difference of two traced values as in a residual block);
- ``"relu"``: ``max(x, 0)``;
- ``"monotone"``: another element-wise or pooling map that is non-decreasing in every input (Tanh, Sigmoid,
  Softplus, ELU, LeakyReLU, Hardtanh, max pooling).

Anything else (``torch.sort``, a product of two traced values, a random draw, control flow on the input's values)
is refused with a :class:`~robustlens.errors.ConfigError` naming the operation and what to do. The bound methods
(:mod:`.ibp`, :mod:`.crown`) only ever read this graph.

Example:
    >>> g = trace_bound_graph(Classifier(net, mean=0.5, std=0.25), x)
    >>> [n.kind for n in g.nodes]          # ['input', 'affine', 'affine', 'affine', 'relu', 'affine']
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..classifier import Classifier
from ..errors import ConfigError, RobustLensError

SUPPORTED = (
    "Linear, Conv1d/2d, BatchNorm (eval), ReLU, Tanh, Sigmoid, Softplus, ELU, LeakyReLU, Hardtanh, Flatten, "
    "view/reshape, max and average pooling, Identity, Dropout (eval), +, -, *, / by constants, negation and the "
    "sum of two traced values"
)
_FIX = ("rewrite forward with these operations, or certify with randomized smoothing "
        "(robustlens.certify.Smoothed), which needs forward passes only")

_MONOTONE_MODULES = (nn.Tanh, nn.Sigmoid, nn.Softplus, nn.ELU, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d)
_MONOTONE_FUNCTIONS = {torch.tanh, torch.sigmoid, F.tanh, F.sigmoid, F.softplus, F.elu, F.hardtanh,
                       F.max_pool1d, F.max_pool2d}
_MONOTONE_METHODS = {"tanh", "sigmoid"}
_RELU_FUNCTIONS = {torch.relu, F.relu}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "contiguous", "detach", "clone"}
_POOL_FUNCTIONS = {F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d}
_SHAPE_QUERIES = {"size", "dim"}
_ARITH = {
    operator.add: "add", torch.add: "add", "add": "add", operator.sub: "sub", torch.sub: "sub", "sub": "sub",
    operator.mul: "mul", torch.mul: "mul", "mul": "mul", operator.truediv: "div", torch.div: "div", "div": "div",
    operator.neg: "neg", torch.neg: "neg", "neg": "neg",
}


@dataclass
class BoundNode:
    """One traced operation that depends on the input.

    Attributes:
        name: the fx node's name (``"layers_1"``, ``"neg"``, ...), for messages.
        kind: ``"input"``, ``"affine"``, ``"relu"`` or ``"monotone"``.
        inputs: indices of the nodes it reads (earlier in :attr:`BoundGraph.nodes`).
        fn: the operation itself, a function of the input nodes' values (constants bound in).
        abs_fn: for ``"affine"``: ``|A|`` applied to the inputs' radii (``None`` otherwise).
        diag: for an element-wise affine map with one input (shift, scale, reshape): how it maps the per-coordinate
            scale of a perturbation (``None`` when the map mixes coordinates).
        module: the Linear or Conv module of the node (``None`` otherwise), for the exact image of an Lp ball.
        value: the node's value at the centre inputs (its shape and the trace's self-check).
    """

    name: str
    kind: str
    inputs: tuple[int, ...]
    fn: Callable[..., Tensor]
    abs_fn: Callable[..., Tensor] | None = None
    diag: Callable[[Tensor], Tensor] | None = None
    module: nn.Module | None = None
    value: Tensor = field(default_factory=lambda: torch.empty(0))


@dataclass
class BoundGraph:
    """The traced forward as bound nodes in topological order; node 0 is the input, :attr:`output` the logits."""

    nodes: list[BoundNode]
    output: int

    def preactivations(self) -> set[int]:
        """Indices of the nodes that feed a ``"relu"`` or ``"monotone"`` node (whose bounds the relaxations need)."""
        return {n.inputs[0] for n in self.nodes if n.kind in ("relu", "monotone")}

    def kinds(self) -> list[str]:
        return [n.kind for n in self.nodes]


class _Normalized(nn.Module):
    """``net((x - mean) / std)``: the classifier's normalization as the first operations of the traced graph."""

    def __init__(self, net: nn.Module, mean: Tensor | None, std: Tensor | None) -> None:
        super().__init__()
        self.net = net
        self.has_mean, self.has_std = mean is not None, std is not None
        self.register_buffer("mean", mean if mean is not None else torch.zeros(1))
        self.register_buffer("std", std if std is not None else torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.has_mean:
            x = x - self.mean.view(shape)  # type: ignore[operator]
        if self.has_std:
            x = x / self.std.view(shape)  # type: ignore[operator]
        return self.net(x)


def _refuse(what: str, node: fx.Node, why: str = "") -> ConfigError:
    reason = f" ({why})" if why else ""
    return ConfigError(
        f"bound propagation cannot follow {what} in the model's forward (traced node '{node.name}'){reason}. "
        f"Certification supports {SUPPORTED}: {_FIX}"
    )


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        path = str(node.target).removeprefix("net.")  # the path inside the user's model (see _Normalized)
        return f"module {type(modules[str(node.target)]).__name__} '{path}'"
    if node.op == "call_method":
        return f"method .{node.target}()"
    t = node.target
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__name__", str(t))
    return f"function {mod + '.' if mod and mod != '_operator' else ''}{name}"


def _bn_scale(m: nn.modules.batchnorm._BatchNorm) -> Tensor:
    assert m.running_var is not None
    inv = 1 / torch.sqrt(m.running_var + m.eps)
    return m.weight * inv if m.affine else inv


def _channel_view(t: Tensor, like: Tensor) -> Tensor:
    return t.view((1, -1) + (1,) * (like.dim() - 2))


def _conv_abs(m: nn.Conv1d | nn.Conv2d) -> Callable[[Tensor], Tensor]:
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
    kw = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups}
    return lambda r: conv(r, m.weight.abs(), None, **kw)  # type: ignore[arg-type]


class _Tracer:
    """Runs the fx graph on the centre inputs and classifies every node that depends on them."""

    def __init__(self, gm: fx.GraphModule, x: Tensor) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.env: dict[fx.Node, Any] = {}
        self.index: dict[fx.Node, int] = {}
        self.nodes: list[BoundNode] = []
        self.x = x

    def run(self) -> BoundGraph:
        output = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if self.nodes:
                    raise ConfigError(f"bound propagation needs a forward(x) of one input; got another: '{n.name}'")
                self.env[n] = self.x
                self.index[n] = 0
                self.nodes.append(BoundNode(n.name, "input", (), lambda v: v, value=self.x))
            elif n.op == "get_attr":
                obj: Any = self.gm
                for part in str(n.target).split("."):
                    obj = getattr(obj, part)
                self.env[n] = obj
            elif n.op == "output":
                out = n.args[0]
                if not isinstance(out, fx.Node) or out not in self.index:
                    raise ConfigError("bound propagation needs a forward that returns one tensor of logits that "
                                      f"depends on the input; got {out!r}")
                output = self.index[out]
            else:
                self._call(n)
        assert output is not None
        return BoundGraph(self.nodes, output)

    def _evaluate(self, n: fx.Node) -> Any:
        args = fx.map_arg(n.args, lambda a: self.env[a])
        kwargs = fx.map_arg(n.kwargs, lambda a: self.env[a])
        if n.op == "call_module":
            return self.modules[str(n.target)](*args, **kwargs)
        if n.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, str(n.target))(*rest, **kwargs)
        return n.target(*args, **kwargs)  # type: ignore[operator]

    def _call(self, n: fx.Node) -> None:
        traced = [a for a in dict.fromkeys(n.all_input_nodes) if a in self.index]
        modules = self.modules
        if not traced:
            self.env[n] = self._evaluate(n)  # a constant: independent of the input
            return
        if n.op == "call_method" and n.target in _SHAPE_QUERIES or (
            n.op == "call_function" and n.target is getattr and n.args[1] in ("shape", "ndim")
        ):
            self.env[n] = self._evaluate(n)  # the shape of a traced value does not depend on its values
            return
        value = self._evaluate(n)
        if not isinstance(value, Tensor):
            raise _refuse(_describe(n, modules), n, "it turns a value that depends on the input into a Python object")
        if not value.is_floating_point():
            raise _refuse(_describe(n, modules), n, "its result is not floating point")
        pos = {a: i for i, a in enumerate(traced)}

        def fn(*vals: Tensor) -> Tensor:
            args = fx.map_arg(n.args, lambda a: vals[pos[a]] if a in pos else self.env[a])
            kwargs = fx.map_arg(n.kwargs, lambda a: vals[pos[a]] if a in pos else self.env[a])
            if n.op == "call_module":
                return modules[str(n.target)](*args, **kwargs)  # type: ignore[no-any-return]
            if n.op == "call_method":
                self_obj, *rest = args
                return getattr(self_obj, str(n.target))(*rest, **kwargs)  # type: ignore[no-any-return]
            return n.target(*args, **kwargs)  # type: ignore[operator,no-any-return]

        node = self._classify(n, fn, traced)
        node.inputs = tuple(self.index[a] for a in traced)
        node.value = value
        self.env[n] = value
        self.index[n] = len(self.nodes)
        self.nodes.append(node)

    def _unary(self, n: fx.Node, traced: list[fx.Node]) -> None:
        if len(traced) != 1 or n.args[:1] != (traced[0],) or traced[0] in n.args[1:] or any(
            v is traced[0] for v in n.kwargs.values()
        ):
            raise _refuse(_describe(n, self.modules), n, "it must apply to one value that depends on the input")

    def _classify(self, n: fx.Node, fn: Callable[..., Tensor], traced: list[fx.Node]) -> BoundNode:
        what = _describe(n, self.modules)
        if n.op == "call_module":
            return self._module(n, self.modules[str(n.target)], fn, traced, what)
        key: Any = n.target
        if n.op == "call_function" and key is F.dropout or n.op == "call_method" and key == "dropout":
            if n.kwargs.get("training", n.args[2] if len(n.args) > 2 else True):
                raise _refuse(what, n, "dropout active at evaluation makes the network random")
            key = "identity"
        if n.op == "call_method" and key in ("float", "to", "type") and not n.args[1:] and not n.kwargs \
                and self.env[traced[0]].dtype == torch.float32 or key == "identity":
            self._unary(n, traced)
            return BoundNode(n.name, "affine", (), fn, abs_fn=fn, diag=fn)
        if key in _ARITH:
            return self._arith(n, _ARITH[key], fn, traced, what)
        self._unary(n, traced)
        if n.op == "call_function" and key in _RELU_FUNCTIONS or n.op == "call_method" and key == "relu":
            return BoundNode(n.name, "relu", (), fn)
        if n.op == "call_function" and key in _MONOTONE_FUNCTIONS or n.op == "call_method" and key in \
                _MONOTONE_METHODS:
            if n.kwargs.get("return_indices"):
                raise _refuse(what, n, "pooling indices are not a bounded value")
            return BoundNode(n.name, "monotone", (), fn)
        if n.op == "call_function" and key in _RESHAPE_FUNCTIONS or n.op == "call_method" and key in \
                _RESHAPE_METHODS:
            return BoundNode(n.name, "affine", (), fn, abs_fn=fn, diag=fn)
        if n.op == "call_function" and key in _POOL_FUNCTIONS:
            return BoundNode(n.name, "affine", (), fn, abs_fn=fn)
        if n.op == "call_function" and key in (F.linear, F.conv1d, F.conv2d):
            weight = self.env.get(n.args[1]) if isinstance(n.args[1], fx.Node) else n.kwargs.get("weight")
            if not isinstance(weight, Tensor):
                raise _refuse(what, n, "its weight must be a constant")
            rest = [self.env[a] if isinstance(a, fx.Node) else a for a in n.args[3:]]
            kw = {k: v for k, v in n.kwargs.items() if k not in ("weight", "bias")}
            op = key

            def abs_w(r: Tensor) -> Tensor:
                return op(r, weight.abs(), None, *rest, **kw)  # type: ignore[operator,no-any-return]

            return BoundNode(n.name, "affine", (), fn, abs_fn=abs_w)
        raise _refuse(what, n)

    def _module(self, n: fx.Node, m: nn.Module, fn: Callable[..., Tensor], traced: list[fx.Node],
                what: str) -> BoundNode:
        self._unary(n, traced)
        if isinstance(m, nn.Linear):
            return BoundNode(n.name, "affine", (), fn, abs_fn=lambda r: F.linear(r, m.weight.abs()), module=m)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            if m.padding_mode != "zeros":
                raise _refuse(what, n, f"padding_mode={m.padding_mode!r}: only zero padding is supported")
            return BoundNode(n.name, "affine", (), fn, abs_fn=_conv_abs(m), module=m)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training or m.running_var is None:
                raise _refuse(what, n, "BatchNorm must be in eval mode with running statistics: call model.eval()")
            scale = _bn_scale(m)
            return BoundNode(n.name, "affine", (), fn, abs_fn=lambda r: r * _channel_view(scale.abs(), r),
                             diag=lambda s: s * _channel_view(scale, s))
        if isinstance(m, nn.modules.dropout._DropoutNd):
            if m.training:
                raise _refuse(what, n, "dropout in train mode makes the network random: call model.eval()")
            return BoundNode(n.name, "affine", (), fn, abs_fn=fn, diag=fn)
        if isinstance(m, (nn.Flatten, nn.Unflatten, nn.Identity)):
            return BoundNode(n.name, "affine", (), fn, abs_fn=fn, diag=fn)
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return BoundNode(n.name, "affine", (), fn, abs_fn=fn)
        if isinstance(m, nn.ReLU):
            return BoundNode(n.name, "relu", (), fn)
        if isinstance(m, nn.LeakyReLU) and m.negative_slope >= 0 or isinstance(m, _MONOTONE_MODULES):
            if getattr(m, "return_indices", False):
                raise _refuse(what, n, "pooling indices are not a bounded value")
            return BoundNode(n.name, "monotone", (), fn)
        raise _refuse(what, n)

    def _arith(self, n: fx.Node, op: str, fn: Callable[..., Tensor], traced: list[fx.Node], what: str) -> BoundNode:
        if n.kwargs:
            raise _refuse(what, n, f"keyword arguments {sorted(n.kwargs)}")
        args = list(n.args)
        is_traced = [isinstance(a, fx.Node) and a in self.index for a in args]
        if op == "neg":
            return BoundNode(n.name, "affine", (), fn, abs_fn=lambda r: r, diag=lambda s: -s)
        if len(args) != 2:
            raise _refuse(what, n)
        def const(i: int) -> Any:
            a = args[i]
            return self.env[a] if isinstance(a, fx.Node) else a

        if op in ("add", "sub"):
            if all(is_traced):
                if args[0] is args[1]:
                    return BoundNode(n.name, "affine", (), fn, abs_fn=lambda r: 2 * r if op == "add" else 0 * r)
                return BoundNode(n.name, "affine", (), fn, abs_fn=lambda a, b: a + b)
            c = const(1 - is_traced.index(True))
            sign = -1.0 if op == "sub" and is_traced[1] else 1.0

            def shift_abs(r: Tensor) -> Tensor:
                return torch.broadcast_to(r, torch.broadcast_shapes(r.shape, torch.as_tensor(c).shape))

            return BoundNode(n.name, "affine", (), fn, abs_fn=shift_abs,
                             diag=lambda s: shift_abs(s) * sign)
        if all(is_traced):
            raise _refuse(what, n, "a product or quotient of two values that depend on the input is not affine")
        if op == "div" and is_traced[1]:
            raise _refuse(what, n, "division by a value that depends on the input is not affine")
        c = torch.as_tensor(const(1 - is_traced.index(True)))
        if not bool(torch.isfinite(c).all()):
            raise _refuse(what, n, "a constant factor that is not finite")
        factor = 1 / c if op == "div" else c
        return BoundNode(n.name, "affine", (), fn, abs_fn=lambda r: r * factor.abs(), diag=lambda s: s * factor)


def trace_bound_graph(model: nn.Module | Classifier, x: Tensor) -> BoundGraph:
    """Trace ``model``'s forward (a :class:`Classifier`'s normalization included) into a :class:`BoundGraph`.

    Args:
        model: a module, or a :class:`Classifier` (its float32 analysis model is traced, in eval mode).
        x: the centre inputs, already validated (the graph is run once on them and must reproduce the model's
            logits).

    Raises:
        ConfigError: an operation bound propagation cannot follow, named, with what to do.
    """
    if isinstance(model, Classifier):
        if model.stochastic:
            raise ConfigError(
                "bound propagation certifies a deterministic network, and this classifier is declared "
                "stochastic=True: the certificate would not hold for its random draws. Certify its deterministic "
                "part (model.eval(), noise removed), or use randomized smoothing (robustlens.certify.Smoothed)")
        net, mean, std = model.analysis_model, model.mean, model.std
    else:
        net, mean, std = model, None, None
    wrapper = _Normalized(net, mean, std)
    try:
        gm = fx.symbolic_trace(wrapper)
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ... on untraceable code
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ConfigError(
            f"bound propagation follows the model's forward by tracing it with torch.fx, and tracing failed: "
            f"{type(e).__name__}: {first}. With control flow that depends on the input's values (if/while on a "
            "tensor), or calls fx cannot record, the computation a certificate must cover is unknown. Certification "
            f"supports {SUPPORTED}: {_FIX}"
        ) from None
    with torch.no_grad():
        graph = _Tracer(gm, x).run()
        got = graph.nodes[graph.output].value
        ref = wrapper(x)
    scale = float(ref.abs().max()) if ref.numel() and bool(torch.isfinite(ref).all()) else 1.0
    if got.shape != ref.shape or not torch.allclose(got, ref, rtol=1e-4, atol=1e-5 * max(1.0, scale)):
        raise RobustLensError(
            "the traced forward does not reproduce the model's logits on the inputs, so no bound on it would hold "
            "for the model (forward depends on state the trace cannot see, or is random). Make forward a fixed "
            f"function of its input; {_FIX}")
    if not bool(torch.isfinite(ref).all()):
        bad = int((~torch.isfinite(ref)).any(1).sum()) if ref.dim() > 1 else 1
        raise RobustLensError(
            f"the model returns NaN or Inf logits for {bad} of {ref.shape[0]} inputs: no bound can be certified for "
            "them. Check the model (NaN weights, log or division by zero in forward) or drop those inputs")
    return graph


def nonfinite_error(what: str) -> RobustLensError:
    """The error for bounds that came out NaN or infinite (an overflow in a deep or badly scaled network)."""
    return RobustLensError(
        f"{what} came out NaN or infinite (an overflow: weights or eps too large for float32 bounds). Lower eps, "
        "or certify a smaller or better scaled network")


__all__ = ["SUPPORTED", "BoundGraph", "BoundNode", "nonfinite_error", "trace_bound_graph"]
