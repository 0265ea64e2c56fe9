"""Attacks honour ``Classifier.batch_size``: they run in chunks, so memory does not grow with N, and the result is
the same (bit for bit) whatever the chunk size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from models import TinyCNN
from test_determinism import assert_identical

from robustlens import Classifier
from robustlens.attacks import ATTACKS, make_attack

N = 7


def small_clf(batch_size: int) -> Classifier:
    return Classifier(TinyCNN(num_classes=4, seed=2, size=8), input_shape=(1, 8, 8), batch_size=batch_size)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_result_does_not_depend_on_the_chunk_size(name: str) -> None:
    meta = ATTACKS.entry(name).meta
    x = torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    y = torch.randint(4, (N,), generator=torch.Generator().manual_seed(4))
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
net = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16 * 16, 10)).eval()
x = torch.rand(4000, 1, 16, 16, generator=torch.Generator().manual_seed(1))[:n]
clf = Classifier(net, input_shape=(1, 16, 16), batch_size=bs)
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
clf.predict(x[:2])  # warm up the allocator and the kernels
base = rss_mb()
res = PGD(eps=0.02, steps=2)(clf, x, seed=0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
head = res.adversarial[:bs].contiguous().numpy().tobytes() + res.success[:bs].numpy().tobytes()
print(json.dumps({"base": base, "peak": peak, "head": hashlib.sha256(head).hexdigest()}))
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_n() -> None:
    """Peak RSS of PGD on N = 4000 is that on N = batch_size plus the inputs and outputs (a few MB), not the
    activations of 4000 samples at once (about 200 KB per sample for this CNN: 800 MB); the first batch_size
    results are identical."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def probe(n: int, bs: int) -> dict[str, float | str]:
        out = subprocess.run([sys.executable, "-c", PROBE, str(n), str(bs), src], capture_output=True, text=True,
                             timeout=600, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    bs = 100
    small, large = probe(bs, bs), probe(4000, bs)
    grow = (float(large["peak"]) - float(large["base"])) - (float(small["peak"]) - float(small["base"]))
    data_mb = 4000 * 16 * 16 * 4 / 2**20  # one copy of the inputs
    assert grow < 12 * data_mb + 40, f"peak memory grew by {grow:.0f} MB from N={bs} to N=4000"
    assert large["head"] == small["head"], "the first batch differs between N = batch_size and N = 4000"
