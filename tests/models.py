"""Small models with known geometry, shared by the tests."""

from __future__ import annotations

import torch
from torch import nn


class Affine(nn.Module):
    """z = W x + b on flattened inputs: every decision boundary is a hyperplane with a closed-form distance."""

    def __init__(self, d: int, c: int, seed: int = 0, input_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.input_shape = input_shape or (d,)
        self.linear = nn.Linear(d, c)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(c, d, generator=g) / d**0.5)
            self.linear.bias.copy_(torch.randn(c, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    @property
    def W(self) -> torch.Tensor:
        return self.linear.weight.detach()

    @property
    def b(self) -> torch.Tensor:
        return self.linear.bias.detach()


def affine_distance(model: Affine, x: torch.Tensor, q: float) -> torch.Tensor:
    """Exact minimal Lp distance to the decision boundary of an affine classifier (q the dual exponent of p).

    For each other class k the boundary with the predicted class c is the hyperplane (w_c - w_k) x + b_c - b_k = 0,
    at distance |f_ck| / ||w_c - w_k||_q; the boundary of the region is the nearest of them (the region is the
    intersection of half-spaces, so the nearest hyperplane point lies on the region's boundary when C = 2; for C > 2
    it is a lower bound that the attacks reach within tolerance on random data).
    """
    xf = x.flatten(1)
    z = xf @ model.W.T + model.b
    c = z.argmax(1)
    wc = model.W[c]  # (N, D)
    diffs = wc[:, None, :] - model.W[None, :, :]  # (N, C, D)
    f = z.gather(1, c[:, None]) - z  # (N, C)
    wn = diffs.abs().pow(q).sum(2).pow(1 / q) if q != float("inf") else diffs.abs().amax(2)
    dist = f / wn.clamp_min(1e-12)
    dist.scatter_(1, c[:, None], float("inf"))
    return dist.amin(1)


class TinyCNN(nn.Module):
    """A small seeded CNN for 1x28x28 inputs (fast enough for unit tests)."""

    def __init__(self, num_classes: int = 10, seed: int = 0, channels: int = 1, size: int = 28) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's classes for ``x``, without gradients."""
    with torch.no_grad():
        return model(x).argmax(1)


def trained_on_embedded_mnist(name: str, n_images: int, *, one_thread: bool = False
                              ) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """Zoo model ``name`` trained for 2 epochs on the embedded MNIST digits (seed 0), in eval mode, and the first
    ``n_images`` test digits it classifies correctly. The peer tests compare libraries on it. ``one_thread`` trains
    with one thread, so the weights do not depend on the machine's thread count."""
    from robustlens.data import load_dataset
    from robustlens.train import fit
    from robustlens.zoo import create_model

    train = load_dataset("mnist-embedded", "train")
    test = load_dataset("mnist-embedded", "test")
    model = create_model(name, seed=0)
    threads = torch.get_num_threads()
    if one_thread:
        torch.set_num_threads(1)
    try:
        fit(model, (train.x, train.y), epochs=2, lr=0.05, batch_size=64, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    model.eval()
    ok = predict(model, test.x) == test.y
    assert float(ok.float().mean()) > 0.9, f"the test model {name} did not train"
    keep = ok.nonzero().flatten()[:n_images]
    return model, test.x[keep].clone(), test.y[keep].clone()
