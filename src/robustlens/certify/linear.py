"""Backward linear bound propagation over a :class:`~.graph.BoundGraph` (the engine of CROWN and of IBP's margins).

A lower bound of ``lam . z_start`` is carried backwards: through an affine node ``z = A(inputs) + b`` it becomes
``(lam A) . inputs + lam . b`` (``lam A`` is the vector-Jacobian product, computed with ``torch.func.vjp`` for any
affine node, batched over spec rows with ``torch.func.vmap``); through a ReLU with a :class:`ReluRelaxation` it uses
the linear bounds ``a_l z <= relu(z) <= a_u z + b_u`` valid on the neuron's pre-activation interval ``[l, u]``
(Zhang et al., "Efficient Neural Network Robustness Certification with General Activation Functions", NeurIPS
2018, CROWN: positive coefficients take the lower line, negative ones the upper); at any other node (the input, a
node with no relaxation) it is :func:`~.regions.concretize`-d over that node's region. The result is sound whatever
the relaxation slopes in ``[0, 1]`` (alpha-CROWN optimises them, Xu et al., ICLR 2021).

Example:
    >>> lam = spec[:, None].expand(k, n, classes)                 # (K, N, C): bound lam . logits from below
    >>> lower = LinearBackward(graph, regions).lower(graph.output, lam, relaxations)  # (K, N)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import vjp, vmap

from .graph import BoundGraph
from .regions import Region, as_box, concretize


@dataclass
class ReluRelaxation:
    """Linear bounds of ``relu(z)`` on ``l <= z <= u`` (CROWN).

    Stable neurons are exact (slope 1 when ``l >= 0``, 0 when ``u <= 0``). An unstable one (``l < 0 < u``) has the
    upper line through ``(l, 0)`` and ``(u, u)`` and a lower line ``alpha z`` for any ``alpha in [0, 1]``: CROWN's
    default takes 1 where ``u >= -l`` and 0 elsewhere; alpha-CROWN passes ``alpha`` of shape ``(K, N, *shape)``.
    """

    lo: Tensor
    hi: Tensor

    def __post_init__(self) -> None:
        unstable = (self.lo < 0) & (self.hi > 0)
        active = self.lo >= 0
        width = (self.hi - self.lo).clamp_min(1e-30)
        self.unstable = unstable
        self.upper_slope = torch.where(active, 1.0, torch.where(unstable, self.hi / width, 0.0))
        self.upper_bias = torch.where(unstable, -self.hi * self.lo / width, 0.0)
        self.default_alpha = (self.hi >= -self.lo).to(self.lo.dtype)

    def lower_slope(self, alpha: Tensor | None) -> Tensor:
        a = self.default_alpha if alpha is None else alpha
        return torch.where(self.lo >= 0, 1.0, torch.where(self.unstable, a, 0.0))

    def backward(self, lam: Tensor, alpha: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``lam`` at the ReLU's output -> (``lam`` at its input, bias ``(K, N)``) of a lower bound."""
        pos, neg = lam.clamp(min=0), lam.clamp(max=0)
        lam_in = pos * self.lower_slope(alpha) + neg * self.upper_slope
        return lam_in, (neg * self.upper_bias).flatten(2).sum(2)


class LinearBackward:
    """Backward bounds over one graph and its regions; caches each affine node's bias and transposed map."""

    def __init__(self, graph: BoundGraph, regions: list[Region]) -> None:
        self.graph = graph
        self.regions = regions
        self._linear: dict[int, tuple[Tensor, Callable[[Tensor], tuple[Tensor, ...]]]] = {}

    def _linearize(self, i: int) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, ...]]]:
        if i not in self._linear:
            node = self.graph.nodes[i]
            zeros = tuple(torch.zeros_like(self.graph.nodes[j].value) for j in node.inputs)
            bias, fn_vjp = vjp(node.fn, *zeros)[:2]  # an affine map's value at 0 is its bias; its vjp is lam A
            self._linear[i] = (bias.detach(), vmap(fn_vjp))
        return self._linear[i]

    def lower(self, start: int, lam: Tensor, relaxations: dict[int, ReluRelaxation],
              alphas: dict[int, Tensor] | None = None) -> Tensor:
        """A lower bound of ``lam . z_start`` over the threat model, shape ``(K, N)`` for ``lam`` of shape
        ``(K, N, *shape of node start)``."""
        nodes = self.graph.nodes
        acc: dict[int, Tensor] = {start: lam}
        total = torch.zeros(lam.shape[:2], dtype=lam.dtype, device=lam.device)
        for i in range(start, -1, -1):
            if i not in acc:
                continue
            cur = acc.pop(i)
            node = nodes[i]
            if node.kind == "affine":
                bias, transpose = self._linearize(i)
                total = total + (cur * bias).flatten(2).sum(2)
                for j, g in zip(node.inputs, transpose(cur), strict=True):
                    acc[j] = acc[j] + g if j in acc else g
            elif node.kind == "relu" and i in relaxations:
                lam_in, b = relaxations[i].backward(cur, None if alphas is None else alphas.get(i))
                total = total + b
                j = node.inputs[0]
                acc[j] = acc[j] + lam_in if j in acc else lam_in
            else:
                region = self.regions[i]
                total = total + concretize(cur, region if node.kind == "input" else as_box(region))
        return total


def identity_spec(value: Tensor, rows: slice, sign: float) -> Tensor:
    """Rows ``rows`` of ``sign * I`` over one node's neurons, as a spec ``(K, N, *shape)`` for each sample."""
    n, shape = value.shape[0], value.shape[1:]
    m = value[0].numel()
    idx = torch.arange(m, device=value.device)[rows]
    eye = torch.zeros(idx.numel(), m, dtype=value.dtype, device=value.device)
    eye[torch.arange(idx.numel()), idx] = sign
    return eye.view(idx.numel(), 1, *shape).expand(idx.numel(), n, *shape)


def margin_spec(y: Tensor, classes: int, dtype: torch.dtype) -> Tensor:
    """``e_y - e_k`` for every class ``k`` and sample: shape ``(C, N, C)`` (the row ``k = y`` is zero)."""
    eye = torch.eye(classes, dtype=dtype, device=y.device)
    return eye[y][None, :, :] - eye[:, None, :]


__all__ = ["LinearBackward", "ReluRelaxation", "identity_spec", "margin_spec"]
