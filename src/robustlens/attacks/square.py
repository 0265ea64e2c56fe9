"""Square Attack: score-based random search inside the eps-ball (Andriushchenko et al., 2020), eq. (10)-(11) of
Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import COUNT, NON_NEGATIVE, Number, checked
from ..classifier import Classifier
from ..decision import Criterion
from ..errors import ConfigError, InputError
from ..norms import INF, lp_norm, project
from ..seeding import SampleRNG
from .base import ATTACKS, BoundedAttack


def p_schedule(p_init: float, it: int, queries: int) -> float:
    """Fraction of pixels changed at iteration ``it``: halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000
    iterations of a 10,000-query budget (Andriushchenko et al., 2020), rescaled to ``queries`` when smaller."""
    if queries < 10000:
        it = int(it / queries * 10000)
    for k, b in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if it <= b:
            return p_init / 2**k
    return p_init / 512


def _window(n: int, h: int, w: int, s: int, u_h: Tensor, u_w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample s x s window at random positions: ``(mask (n,1,h,w), row offset, column offset)``."""
    vh = (u_h * (h - s + 1)).long().clamp(max=h - s)
    vw = (u_w * (w - s + 1)).long().clamp(max=w - s)
    rows = torch.arange(h, device=u_h.device)
    cols = torch.arange(w, device=u_h.device)
    mh = (rows[None] >= vh[:, None]) & (rows[None] < vh[:, None] + s)
    mw = (cols[None] >= vw[:, None]) & (cols[None] < vw[:, None] + s)
    return (mh[:, :, None] & mw[:, None, :])[:, None], vh, vw


def _l2_pattern(s: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The L2 update pattern of Square: two s/2 x s blocks of opposite sign, each made of nested squares whose
    value falls off as sum 1/(k+1)^2 with the distance to the block centre; unit L2 norm."""

    def block(a: int, b: int) -> Tensor:
        ca, cb = a // 2, b // 2
        i = torch.arange(a, device=device)[:, None]
        j = torch.arange(b, device=device)[None, :]
        ring = torch.maximum((i - ca).abs(), (j - cb).abs())
        k_max = max(a // 2 + 1, b // 2 + 1)
        tail = torch.tensor([sum(1.0 / (m + 1) ** 2 for m in range(k, k_max)) for k in range(k_max + 1)],
                            device=device, dtype=dtype)
        return tail[ring.clamp(max=k_max)]

    top = block(s // 2, s)
    bottom = -block(s - s // 2, s)
    pat = torch.cat([top / top.norm(), bottom / bottom.norm()], 0) if s > 1 else torch.ones(1, 1)
    return (pat / pat.norm()).to(device=device, dtype=dtype)


@ATTACKS.register("square", minimal=False, norms=(2.0, INF), steps="queries",
                  summary="Square, score-based (no gradients); steps = queries")
class Square(BoundedAttack):
    """Square Attack (Andriushchenko et al., 2020): random search with square-shaped updates, no gradients.

    Each iteration proposes, for every sample still robust, a change of a random ``s x s`` window (``s`` shrinks on
    the schedule of :func:`p_schedule`) and keeps it when the margin loss decreases. Linf windows are set to
    ``+-2 eps`` per channel and projected back to the ball; L2 windows move perturbation mass from a second random
    window into the first, keeping ``||r||_2 = eps`` (eq. 11). One forward pass per robust sample per iteration;
    samples stop costing queries when fooled. Random draws come from per-sample streams (batch-independent), so
    window positions differ between samples, unlike the reference implementation's shared ones.

    Args:
        norm: ``"Linf"`` (default) or ``"L2"``.
        eps: radius of the ball.
        queries: iterations (AutoAttack uses 5000).
        p_init: initial fraction of pixels per window (0.8 in AutoAttack for Linf and L2).
        clip: keep examples in the classifier's bounds.
        progress: show a progress bar.
    """

    name: ClassVar[str] = "square"
    gradient_free: ClassVar[bool] = True

    @checked(eps=NON_NEGATIVE, queries=COUNT, p_init=Number(low=0, high=1, low_open=True))
    def __init__(self, norm: float | str = INF, eps: float = 8 / 255, *, queries: int = 5000, p_init: float = 0.8,
                 clip: bool = True, progress: bool = False) -> None:
        super().__init__(norm, eps, clip=clip)
        if self.p not in (2.0, INF):
            raise ConfigError(f"Square supports Linf and L2, got L{self.p}")
        self.queries = int(queries)
        self.p_init = float(p_init)
        self.progress = progress

    def _fit(self, clf: Classifier, x: Tensor, x0: Tensor, delta: Tensor) -> Tensor:
        out = x + project(delta, self.p, self.eps)
        return clf.clip(out) if self.clip else out

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        if x.ndim != 4:
            raise InputError(f"Square needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        eps = self.eps
        dtype, dev = x.dtype, x.device
        # every random number a sample will need, drawn once from its own stream
        draws = rng.rand((self.queries, 6 + 2 * c), key=("square",)).to(dev, dtype)
        init = rng.rand((c, w), key=("square-init",)).to(dev, dtype)
        sign_init = torch.where(init < 0.5, -1.0, 1.0).to(dtype)
        with torch.no_grad():
            if self.p == INF:  # vertical stripes of +-eps
                delta = eps * sign_init[:, :, None, :].expand(n, c, h, w)
            else:  # a grid of L2 patterns with random signs, rescaled to norm eps
                s0 = max(h // 5, 1)
                pat = _l2_pattern(s0, dev, dtype)
                delta = torch.zeros_like(x)
                off = (h - s0 * (h // s0)) // 2
                k = 0
                for a in range(off, h - s0 + 1, s0):
                    for b in range(off, w - s0 + 1, s0):
                        sg = sign_init[:, :, k % w][:, :, None, None]
                        delta[:, :, a : a + s0, b : b + s0] += pat * sg
                        k += 1
                delta = delta * (eps / lp_norm(delta, 2).clamp_min(1e-12)).view(-1, 1, 1, 1)
            x_best = self._fit(clf, x, x, delta)
            margin = criterion.margin(clf.forward(x_best))
            out = x_best.clone()
            act = (margin >= 0).nonzero().flatten()
            m_best = margin[act]
            xb = x_best[act]
            bar = tqdm(total=self.queries, desc=self.name, disable=not self.progress, leave=False)
            for it in range(self.queries):
                if act.numel() == 0:
                    break
                xa = x[act]
                dr = draws[act, it]
                frac = p_schedule(self.p_init, it, self.queries)
                if self.p == INF:
                    s = min(max(int(round(math.sqrt(frac * h * w))), 1), h, w)
                    mask, _, _ = _window(act.numel(), h, w, s, dr[:, 0], dr[:, 1])
                    sg = torch.where(dr[:, 6 : 6 + c] < 0.5, -1.0, 1.0).to(dtype)[:, :, None, None]
                    cand = torch.where(mask, xb + 2 * eps * sg, xb)
                    cand = self._fit(clf, xa, xa, cand - xa)
                else:
                    s = max(int(round(math.sqrt(frac * h * w))), 3)
                    s = min(s + (1 - s % 2), h, w)
                    m1, vh, vw = _window(act.numel(), h, w, s, dr[:, 0], dr[:, 1])
                    m2, _, _ = _window(act.numel(), h, w, s, dr[:, 2], dr[:, 3])
                    d = xb - xa
                    norm_img = lp_norm(d, 2).view(-1, 1, 1, 1)
                    n1 = (d * m1).pow(2).sum((2, 3), keepdim=True).sqrt()
                    n12 = (d * (m1 | m2)).pow(2).sum((2, 3), keepdim=True).sqrt()
                    pat = _l2_pattern(s, dev, dtype)
                    pats = torch.where((dr[:, 4] < 0.5)[:, None, None], pat, pat.T)
                    # place the s x s pattern in each sample's window
                    li = torch.arange(h, device=dev)[None, :] - vh[:, None]
                    lj = torch.arange(w, device=dev)[None, :] - vw[:, None]
                    idx = (li.clamp(0, s - 1)[:, :, None] * s + lj.clamp(0, s - 1)[:, None, :]).flatten(1)
                    placed = pats.flatten(1).gather(1, idx).view(-1, 1, h, w) * m1
                    sg = torch.where(dr[:, 6 : 6 + c] < 0.5, -1.0, 1.0).to(dtype)[:, :, None, None]
                    new = placed * sg + d * m1 / (n1 + 1e-12)
                    new_n = (new * m1).pow(2).sum((2, 3), keepdim=True).sqrt()
                    room = ((eps**2 - norm_img**2).clamp_min(0) / c + n12**2).sqrt()
                    new = new / (new_n + 1e-12) * room
                    d = torch.where(m2, torch.zeros_like(d), d)
                    d = torch.where(m1, new, d)
                    d = d * (eps / lp_norm(d, 2).clamp_min(1e-12)).view(-1, 1, 1, 1)
                    cand = self._fit(clf, xa, xa, d)
                mg = criterion[act].margin(clf.forward(cand))
                better = mg < m_best
                xb = torch.where(better.view(-1, 1, 1, 1), cand, xb)
                m_best = torch.where(better, mg, m_best)
                done = m_best < 0
                if bool(done.any()):
                    out[act[done]] = xb[done]
                    keep = ~done
                    act, xb, m_best = act[keep], xb[keep], m_best[keep]
                bar.update(1)
            bar.close()
            if act.numel():
                out[act] = xb
        return out


__all__ = ["Square", "p_schedule"]
