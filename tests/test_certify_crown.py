"""CROWN and alpha-CROWN against ground truth: closed forms (one hidden unit, an affine network), the exact
margins of a mixed-integer program (scipy.optimize.milp, big-M ReLUs), random points and PGD's worst case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import Bounds, LinearConstraint, milp
from torch import nn

from robustlens import Classifier
from robustlens.attacks import PGD
from robustlens.certify import crown_bounds, interval_bounds, trace_bound_graph
from robustlens.certify.crown import crown_regions
from robustlens.certify.linear import LinearBackward, margin_spec
from robustlens.certify.regions import input_region
from robustlens.norms import lp_norm, random_in_ball
from robustlens.seeding import SampleRNG

INF = float("inf")


def _margins(b) -> torch.Tensor:
    """Margin bounds with the ``k = y`` entries (``+inf``) set to 0, for comparisons."""
    return b.margin_lower.masked_fill(torch.isinf(b.margin_lower), 0.0)


def _mlp(sizes: list[int], seed: int) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g) / a**0.5)
            lin.bias.copy_(torch.randn(b, generator=g) * 0.3)
        layers += [lin, nn.ReLU()]
    return nn.Sequential(*layers[:-1]).double().eval()


def milp_margins(net: nn.Sequential, x: torch.Tensor, eps: float, y: int) -> np.ndarray:
    """The exact minimum of ``z_y - z_k`` over the Linf ball (clipped to [0, 1]) for every class ``k``: a mixed-integer
    program with one binary per unstable ReLU (big-M with valid IBP pre-activation bounds)."""
    lins = [m for m in net if isinstance(m, nn.Linear)]
    x0 = x.flatten().double().numpy()
    lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
    # variables: input, then per hidden layer (post-activation a, binary d)
    sizes = [x0.size] + [2 * lin.out_features for lin in lins[:-1]]
    offs = np.cumsum([0, *sizes])
    nvar = int(offs[-1])
    lb, ub = np.zeros(nvar), np.zeros(nvar)
    integrality = np.zeros(nvar)
    lb[: x0.size], ub[: x0.size] = lo, hi
    rows, rlo, rhi = [], [], []
    prev, plo, phi = slice(0, x0.size), lo, hi
    for li, lin in enumerate(lins[:-1]):
        w, b = lin.weight.detach().double().numpy(), lin.bias.detach().double().numpy()
        m = w.shape[0]
        zl = w.clip(min=0) @ plo + w.clip(max=0) @ phi + b - 1e-9  # valid interval of the pre-activation
        zu = w.clip(min=0) @ phi + w.clip(max=0) @ plo + b + 1e-9
        a_idx = slice(int(offs[li + 1]), int(offs[li + 1]) + m)
        d_idx = slice(a_idx.stop, a_idx.stop + m)
        lb[a_idx], ub[a_idx] = 0, np.maximum(zu, 0)
        lb[d_idx], ub[d_idx], integrality[d_idx] = 0, 1, 1
        for j in range(m):
            base = np.zeros(nvar)
            base[prev] = w[j]
            aj, dj = a_idx.start + j, d_idx.start + j
            r = -base.copy()  # a >= z:  a - W a_prev >= b
            r[aj] += 1
            rows.append(r)
            rlo.append(b[j])
            rhi.append(np.inf)
            if zl[j] >= 0:  # active: a = z
                rhi[-1] = b[j]
                continue
            if zu[j] <= 0:  # inactive: a = 0
                ub[aj] = 0
                continue
            r = -base.copy()  # a <= z - l (1 - d):  a - W a_prev - l d <= b - l
            r[aj] += 1
            r[dj] -= zl[j]
            rows.append(r)
            rlo.append(-np.inf)
            rhi.append(b[j] - zl[j])
            r = np.zeros(nvar)  # a <= u d
            r[aj], r[dj] = 1, -zu[j]
            rows.append(r)
            rlo.append(-np.inf)
            rhi.append(0.0)
        prev, plo, phi = a_idx, np.zeros(m), np.maximum(zu, 0)
    w, b = lins[-1].weight.detach().double().numpy(), lins[-1].bias.detach().double().numpy()
    cons = LinearConstraint(np.array(rows), rlo, rhi) if rows else None
    out = np.full(w.shape[0], np.inf)
    for k in range(w.shape[0]):
        if k == y:
            continue
        c = np.zeros(nvar)
        c[prev] = w[y] - w[k]
        res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(lb, ub))
        assert res.status == 0, res.message
        out[k] = res.fun + b[y] - b[k]
    return out


def test_one_hidden_unit_matches_the_hand_solution():
    """``z = (v * relu(w.x + b), 0)``: the pre-activation range ``[l, u]`` is exact (one affine map of a box), so
    the exact minimum of the margin ``z_0 - z_1 = v relu(h)`` is ``v relu(l)`` for ``v > 0`` and ``v relu(u)``
    for ``v < 0``. CROWN's upper line through ``(l, 0), (u, u)`` gives the exact value for ``v < 0``; for ``v > 0``
    its lower line ``alpha h`` with ``alpha = 1`` gives ``v l < 0``, and alpha-CROWN's optimised ``alpha -> 0`` gives
    the exact 0."""
    w = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    x = torch.tensor([[0.3, 0.2, 0.6]], dtype=torch.float64)
    eps = 0.1
    h = float(w @ x.T)  # b = 0: h = 0.2 - ... ; the ball gives l < 0 < u
    r = eps * float(w.abs().sum())
    l, u = h - r, h + r
    assert l < 0 < u and u >= -l  # CROWN's default lower slope is 1 here
    for v in (1.5, -1.5):
        net = nn.Sequential(nn.Linear(3, 1, bias=False), nn.ReLU(), nn.Linear(1, 2, bias=False)).double()
        with torch.no_grad():
            net[0].weight.copy_(w)
            net[2].weight.copy_(torch.tensor([[v], [0.0]], dtype=torch.float64))
        y = torch.tensor([0])
        exact = v * max(l, 0.0) if v > 0 else v * max(u, 0.0)
        crown = float(crown_bounds(net, x, eps, "inf", y).margin_lower[0, 1])
        alpha = float(crown_bounds(net, x, eps, "inf", y, alpha=True, steps=30).margin_lower[0, 1])
        ibp = float(interval_bounds(net, x, eps, "inf", y).margin_lower[0, 1])
        graph = trace_bound_graph(net, x)
        regions, relax = crown_regions(graph, input_region(x, eps, INF, None), INF)
        spec = margin_spec(y, 2, torch.float64)
        alone = float(LinearBackward(graph, regions).lower(graph.output, spec, relax)[1, 0].detach())  # the lines only
        assert alpha == pytest.approx(exact, abs=1e-9)
        assert crown == pytest.approx(exact, abs=1e-12)  # the better of CROWN's lines and the interval bound
        if v < 0:
            assert alone == pytest.approx(exact, abs=1e-12) and ibp == pytest.approx(exact, abs=1e-12)
        else:
            assert alone == pytest.approx(v * l, abs=1e-12) and alone < exact == ibp


def test_crown_is_exact_on_an_affine_network_and_ibp_is_not():
    """On ``Linear -> Linear`` the logits and margins are affine in the input: CROWN's bounds equal the closed form
    ``W x + b -+ eps ||W_j||_q``; IBP's logit bounds compose two intervals and are looser (its margins go back
    through the trailing affine layers, so they are exact too)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3)).double()
    x = torch.rand(5, 4, dtype=torch.float64)
    eps = 0.05
    y = net(x).argmax(1)
    w = net[1].weight.detach() @ net[0].weight.detach()
    bias = (net[1].weight @ net[0].bias + net[1].bias).detach()
    for p, q in ((INF, 1.0), (2.0, 2.0)):
        b = crown_bounds(net, x, eps, p, y)
        centre = x @ w.T + bias
        rad = eps * torch.linalg.vector_norm(w, ord=q, dim=1)
        torch.testing.assert_close(b.lower, centre - rad, rtol=0, atol=1e-12)
        torch.testing.assert_close(b.upper, centre + rad, rtol=0, atol=1e-12)
        wm = w[y][:, None, :] - w[None, :, :]  # (N, C, D)
        exact = torch.einsum("nkd,nd->nk", wm, x) + (bias[y][:, None] - bias[None, :])
        exact = exact - eps * torch.linalg.vector_norm(wm, ord=q, dim=2)
        exact = exact.scatter(1, y[:, None], 0.0)
        torch.testing.assert_close(_margins(b), exact, rtol=0, atol=1e-12)
        ibp = interval_bounds(net, x, eps, p, y)
        torch.testing.assert_close(_margins(ibp), exact, rtol=0, atol=1e-12)
        assert bool((ibp.lower < centre - rad - 1e-6).any()) and bool((ibp.lower <= b.lower + 1e-12).all())


@pytest.mark.parametrize("eps", [0.002, 0.03, 0.08])
def test_bounds_never_beat_the_exact_milp_and_tighten_in_order(eps: float):
    """IBP <= CROWN <= alpha-CROWN <= the exact margin (MILP) on every sample and class of a 2-hidden-layer net; with
    every ReLU stable (the smallest eps) CROWN equals the exact margin."""
    net = _mlp([6, 8, 8, 3], seed=1)
    x = torch.rand(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = net(x).argmax(1)
    ibp = _margins(interval_bounds(net, x, eps, "inf", y))
    crown = _margins(crown_bounds(net, x, eps, "inf", y))
    alpha = _margins(crown_bounds(net, x, eps, "inf", y, alpha=True, steps=30))
    exact = torch.stack([torch.from_numpy(milp_margins(net, x[i], eps, int(y[i]))) for i in range(x.shape[0])])
    exact = exact.masked_fill(torch.isinf(exact), 0.0)
    tol = 1e-7
    assert bool((ibp <= crown + tol).all()) and bool((crown <= alpha + tol).all())
    assert bool((alpha <= exact + tol).all()), float((alpha - exact).max())
    if eps == 0.002:
        torch.testing.assert_close(crown, exact, rtol=0, atol=1e-7)
    else:
        assert bool((crown > ibp + 1e-6).any())


class ResidualCNN(nn.Module):
    """Conv -> BatchNorm -> ReLU, a residual conv block, average pooling, a linear head: the layers CROWN covers."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(12, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.c1(x)))
        h = torch.relu(self.c2(h) + h)
        h = self.pool(h).flatten(1)
        return self.out(torch.relu(self.fc(h)))


def _cnn() -> nn.Module:
    torch.manual_seed(3)
    m = ResidualCNN()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.1, 0.1)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


@pytest.mark.parametrize("p, eps", [(INF, 0.02), (2.0, 0.15)])
def test_crown_is_sound_on_random_points_and_pgd_and_tighter_than_ibp(p: float, eps: float):
    clf = Classifier(_cnn(), mean=0.5, std=0.5, input_shape=(1, 4, 4))
    x = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    y = clf.predict(x)
    ibp = interval_bounds(clf, x, eps, p, y)
    crown = crown_bounds(clf, x, eps, p, y)
    alpha = crown_bounds(clf, x, eps, p, y, alpha=True, steps=10)
    assert bool((_margins(crown) >= _margins(ibp) - 1e-6).all())
    assert bool((_margins(alpha) >= _margins(crown) - 1e-6).all())
    assert bool((crown.lower >= ibp.lower - 1e-6).all()) and bool((crown.upper <= ibp.upper + 1e-6).all())
    reps = 150
    xs = x.repeat(reps, 1, 1, 1)
    delta = random_in_ball(xs, p, eps, SampleRNG(0, n=xs.shape[0]))
    delta = torch.cat([delta, delta * (eps / lp_norm(delta, p).clamp_min(1e-12)).view(-1, 1, 1, 1)])
    pts = torch.cat([xs, xs]) + delta
    if p == INF:
        pts = pts.clamp(0, 1)
    adv = PGD(norm=p, eps=eps, steps=30, restarts=2, loss="dlr")(clf, x, y, seed=0)
    clf.model.zero_grad(set_to_none=True)
    alpha = crown_bounds(clf, x, eps, p, y, alpha=True, steps=10)
    pts = torch.cat([pts, adv.adversarial])
    z = clf.logits(pts, validate=False).view(-1, x.shape[0], 3)
    margins = z.gather(2, y.view(1, -1, 1).expand(z.shape[0], -1, 1)) - z
    for b in (crown, alpha):
        assert bool((z >= b.lower - 1e-5).all()) and bool((z <= b.upper + 1e-5).all())
        assert bool((margins >= _margins(b) - 1e-5).all())
    assert not bool((adv.success & alpha.certified).any())
    assert all(prm.grad is None for prm in clf.model.parameters())  # optimising slopes leaves the model alone
    assert not alpha.margin_lower.requires_grad
