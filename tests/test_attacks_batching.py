"""Attacks honour ``Classifier.batch_size``: they run in chunks, so memory does not grow with N, and the result is
the same (bit for bit) whatever the chunk size.

Bit for bit holds when the model computes each sample's logits the same way whatever the batch: on the CPU a matrix
multiply picks its kernel by the batch size and moves the logits by about 1e-8, which is enough to move the iterates
of FAB or DDN. The chunking test therefore uses a model whose layers are row-wise products (batch-invariant by
construction); the memory test compares chunks of one size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_determinism import assert_identical
from torch import Tensor, nn

from robustlens import Classifier
from robustlens.attacks import ATTACKS, make_attack

N = 7


class Rowwise(nn.Module):
    """A tanh MLP whose layers are ``(h[:, None, :] * W).sum(-1)``: each sample's logits and input gradient are
    computed by the same operations whatever the batch (no batch-size-dependent matrix-multiply kernel)."""

    def __init__(self, dims: tuple[int, ...] = (64, 12, 4)) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(2)
        shapes = zip(dims[:-1], dims[1:], strict=True)
        self.ws = nn.ParameterList([nn.Parameter(torch.randn(o, i, generator=g) * 2 / i**0.5) for i, o in shapes])

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for k, w in enumerate(self.ws):
            h = (h[:, None, :] * w[None]).sum(-1)
            h = torch.tanh(h) if k < len(self.ws) - 1 else h
        return h


def small_clf(batch_size: int) -> Classifier:
    return Classifier(Rowwise(), input_shape=(1, 8, 8), batch_size=batch_size)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_result_does_not_depend_on_the_chunk_size(name: str) -> None:
    meta = ATTACKS.entry(name).meta
    x = torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = small_clf(256).predict(x)
    attack = make_attack(name, None, None if meta["minimal"] else 0.15, 2)
    whole = attack(small_clf(256), x, y, seed=5)
    chunked = attack(small_clf(3), x, y, seed=5)
    override = attack(small_clf(256), x, y, seed=5, batch_size=2)
    assert_identical(whole, chunked)
    assert_identical(whole, override)


PROBE = r"""
import hashlib, json, resource, sys
import torch
from torch import nn
torch.set_num_threads(1)
n, bs = int(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from robustlens import Classifier
from robustlens.attacks import PGD
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 12 * 12, 10)).eval()
x = torch.rand(4000, 1, 12, 12, generator=torch.Generator().manual_seed(1))[:n]
clf = Classifier(net, input_shape=(1, 12, 12), batch_size=bs)
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
clf.predict(x[:2])  # warm up the allocator and the kernels
base = rss_mb()
res = PGD(eps=0.02, steps=1)(clf, x, seed=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
head = res.adversarial[:bs].contiguous().numpy().tobytes() + res.success[:bs].numpy().tobytes()
print(json.dumps({"base": base, "peak": peak, "head": hashlib.sha256(head).hexdigest()}))
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_n() -> None:
    """Peak RSS of PGD on N = 4000 is that on N = batch_size plus the inputs and outputs (a few MB), not the
    activations of 4000 samples at once (about 55 KB per sample for this CNN: 220 MB); the first batch_size
    results are identical."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def probe(n: int, bs: int) -> dict[str, float | str]:
        out = subprocess.run([sys.executable, "-c", PROBE, str(n), str(bs), src], capture_output=True, text=True,
                             timeout=600, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    bs = 100
    small, large = probe(bs, bs), probe(4000, bs)
    print(f"peak RSS growth: N={bs} {float(small['peak']) - float(small['base']):.1f} MB, "
          f"N=4000 {float(large['peak']) - float(large['base']):.1f} MB")
    grow = (float(large["peak"]) - float(large["base"])) - (float(small["peak"]) - float(small["base"]))
    data_mb = 4000 * 12 * 12 * 4 / 2**20  # one copy of the inputs
    assert grow < 12 * data_mb + 40, f"peak memory grew by {grow:.0f} MB from N={bs} to N=4000"
    assert large["head"] == small["head"], "the first batch differs between N = batch_size and N = 4000"
