"""Verified accuracy and time of IBP, CROWN and alpha-CROWN beside PGD's upper bound, on a small MNIST CNN.

The script trains its own model (seeded): ``Conv(1, 8, 4, s2) -> ReLU -> Conv(8, 16, 4, s2) -> ReLU -> Linear(784,
100) -> ReLU -> Linear(100, 10)``, a few epochs of PGD adversarial training at ``--train-eps`` on ``--train`` images
(so that something is verifiable at the radii below), then verifies the first ``--images`` test images at each
``--eps``. Verified accuracy is a lower bound of robust accuracy, PGD's an upper bound; the rows give both and the
seconds of each bound method (PGD's time not included).

    python benchmarks/verify.py [--root shared/data/mnist] [--images 200] [--eps 0.01,0.02,0.05] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from robustlens import Classifier
from robustlens.attacks import PGD
from robustlens.certify import verify
from robustlens.data import load_dataset


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10),
    )


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, epochs: int) -> None:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    clf = Classifier(net, eval_mode=False)
    g = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 100):
            bx, by = x[perm[i:i + 100]], y[perm[i:i + 100]]
            if eps > 0:
                bx = PGD(norm="inf", eps=eps, steps=5)(clf, bx, by, seed=epoch * 1000 + i).adversarial.detach()
            opt.zero_grad()
            nn.functional.cross_entropy(net(bx), by).backward()
            opt.step()
    net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="shared/data/mnist")
    ap.add_argument("--train", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-eps", type=float, default=0.1)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--eps", default="0.01,0.02,0.05")
    ap.add_argument("--norm", default="inf")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tr = load_dataset("mnist", "train", root=args.root)
    te = load_dataset("mnist", "test", root=args.root)
    net = make_model()
    t0 = time.perf_counter()
    train(net, tr.x[: args.train], tr.y[: args.train], args.train_eps, args.epochs)
    clf = Classifier(net, bounds=te.bounds, batch_size=100)
    x, y = te.x[: args.images], te.y[: args.images]
    print(f"trained in {time.perf_counter() - t0:.1f} s; clean accuracy {clf.accuracy(x, y):.3f} on "
          f"{args.images} test images; torch {torch.__version__}, {torch.get_num_threads()} threads")
    radii = [float(e) for e in args.eps.split(",")]
    pgd = verify(clf, x, y, radii, args.norm, "ibp", attack=True, steps=40, seed=0).attacked_accuracy_upper
    assert pgd is not None
    print(f"| method | {' | '.join(f'eps {e:g}' for e in radii)} | seconds per eps |")
    print("|---|" + "---|" * (len(radii) + 1))
    print(f"| PGD-40 (upper bound) | {' | '.join(f'{a:.3f}' for a in pgd)} | |")
    for method in ("ibp", "crown", "alpha-crown"):
        r = verify(clf, x, y, radii, args.norm, method, attack=False)
        secs = " / ".join(f"{s:.2f}" for s in r.seconds)
        print(f"| {method} (verified) | {' | '.join(f'{a:.3f}' for a in r.verified_accuracy)} | {secs} |")


if __name__ == "__main__":
    main()
