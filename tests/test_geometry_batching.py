"""Geometry analyses honour ``Classifier.batch_size``: with N much larger than the batch size, the model never sees
more than ``batch_size`` inputs in one call and the results equal those of one large batch: decisions, labels and
distances exactly; float32 values up to rounding (a matrix product's blocking, hence its last bit, depends on the
number of rows: about 1e-7 here, asserted below 1e-5)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlens import Classifier
from robustlens.geometry import cross_section, hessian_eigenpairs, noise_error_rate, taylor_error


class Recorder(nn.Module):
    """A smooth MLP that records the largest batch its forward was called with (outside ``vmap``)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 4))
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.largest = 0

    def forward(self, x: Tensor) -> Tensor:
        if not torch._C._functorch.is_batchedtensor(x):
            self.largest = max(self.largest, x.shape[0])
        return self.net(x)


def close(a: Tensor, b: Tensor) -> bool:
    return bool(torch.allclose(a, b, rtol=1e-5, atol=1e-5))


def _pair(batch: int) -> tuple[Classifier, Recorder]:
    m = Recorder()
    clf = Classifier(m, input_shape=(12,), batch_size=batch)
    clf.predict(_x(4))  # the classifier's first-use probe (two passes of up to 4 inputs) is not the analysis's
    m.largest = 0
    return clf, m


def _x(n: int) -> Tensor:
    return torch.rand(n, 12, generator=torch.Generator().manual_seed(1))


def test_cross_section_chunks_by_batch_size() -> None:
    small, rec = _pair(7)
    big, _ = _pair(100_000)
    x = _x(1)[0]
    a = cross_section(small, x, directions=("random", "random"), resolution=15, seed=3, progress=False)
    b = cross_section(big, x, directions=("random", "random"), resolution=15, seed=3, progress=False)
    assert rec.largest <= 7
    assert torch.equal(a.labels, b.labels) and close(a.margins, b.margins) and close(a.loss, b.loss)
    assert a.axis_distance == b.axis_distance


def test_noise_error_rate_chunks_by_batch_size() -> None:
    small, rec = _pair(5)
    big, _ = _pair(100_000)
    x = _x(6)
    a = noise_error_rate(small, x, [0.1, 1.0], n_draws=20, seed=2, progress=False)
    b = noise_error_rate(big, x, [0.1, 1.0], n_draws=20, seed=2, progress=False)
    assert rec.largest <= 5
    assert torch.equal(a.per_sample, b.per_sample)


def test_hessian_and_taylor_identical_with_n_much_larger_than_batch_size() -> None:
    """Lanczos solves ``min(32, batch_size)`` samples at a time; N = 9 with batch size 2 gives the spectrum (and
    HVP count) of one batch of 9, and so does the Taylor error's chunked HVP."""
    small, rec = _pair(2)
    big, _ = _pair(100_000)
    x = _x(9)
    a = hessian_eigenpairs(small, x, k=2, method="lanczos", seed=4, progress=False)
    b = hessian_eigenpairs(big, x, k=2, method="lanczos", seed=4, progress=False)
    assert close(a.top_values, b.top_values) and close(a.bottom_values, b.bottom_values) and a.hvps == b.hvps
    dense = hessian_eigenpairs(big, x, k=2, method="dense")  # ground truth: the full spectrum
    assert torch.allclose(a.top_values, dense.top_values.double(), atol=1e-5)
    r = 0.01 * _x(9)
    ta, tb = taylor_error(small, x, None, r), taylor_error(big, x, None, r)
    assert rec.largest <= 2
    assert close(ta.second_order, tb.second_order) and close(ta.loss_perturbed, tb.loss_perturbed)
