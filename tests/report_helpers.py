"""Shared by the report, browser and demo tests: a few seeded training steps and a seconds-long report plan."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from models import TinyCNN

from robustlens.commands.demo import DEMO_SIZES
from robustlens.report import ReportPlan


def train_tiny(seed: int, x: torch.Tensor, y: torch.Tensor, steps: int = 25) -> TinyCNN:
    """A tiny CNN trained for a few seeded SGD steps (enough to be far better than chance)."""
    net = TinyCNN(seed=seed, channels=x.shape[1], size=x.shape[-1])
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(y), (32,), generator=g)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def tiny_plan(input_shape: tuple[int, ...] = (1, 28, 28), **over: object) -> ReportPlan:
    """The quick preset shrunk to seconds (the demo's hidden ``--tiny`` sizes), smoothed at sigma 0.25."""
    plan = ReportPlan.preset("quick", input_shape, certify_sigma=0.25)
    return dataclasses.replace(plan, name="tiny", **{**DEMO_SIZES["tiny"].plan, **over})  # type: ignore[arg-type]


class Constant(torch.nn.Module):
    """A classifier that gives every input the same logits (an untrained or collapsed model): zero weights, a
    random bias, so it predicts one class everywhere."""

    def __init__(self, d: int = 784, c: int = 10, seed: int = 0) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(d, c)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.randn(c, generator=torch.Generator().manual_seed(seed)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))
