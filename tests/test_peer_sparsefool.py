"""SparseFool against torchattacks' on the same trained CNN and the same digits (lambda 3, 20 outer steps).

Both implementations take the L1-minimal step to the hyperplane ``lambda`` times as far as DeepFool's boundary
point; ours then keeps the shortest prefix of that step (coordinates in the solver's order) that is already
adversarial, so it changes fewer pixels: the median L0 is at most torchattacks' with every digit fooled.
"""

from __future__ import annotations

import pytest
import torch

from robustlens.attacks.sparsefool import SparseFool
from robustlens.classifier import Classifier
from robustlens.data import load_dataset
from robustlens.train import fit
from robustlens.zoo import create_model

pytestmark = pytest.mark.peers

N_IMAGES = 12


def test_sparsefool_median_l0_at_most_torchattacks() -> None:
    ta = pytest.importorskip("torchattacks")
    train = load_dataset("mnist-embedded", "train")
    test = load_dataset("mnist-embedded", "test")
    model = create_model("smallcnn", seed=0)
    fit(model, (train.x, train.y), epochs=2, lr=0.05, batch_size=64, seed=0, progress=False)
    model.eval()
    with torch.no_grad():
        ok = model(test.x).argmax(1) == test.y
    assert float(ok.float().mean()) > 0.9, "the test model did not train"
    keep = ok.nonzero().flatten()[:N_IMAGES]
    x, y = test.x[keep].clone(), test.y[keep].clone()

    res = SparseFool(lam=3.0, max_iter=20, overshoot=0.02)(Classifier(model), x, y)
    theirs = ta.SparseFool(model, steps=20, lam=3, overshoot=0.02)(x, y)
    with torch.no_grad():
        their_success = model(theirs).argmax(1) != y
    their_l0 = ((theirs - x).flatten(1).abs() > 1e-12).sum(1).float()

    assert bool(res.success.all())
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1
    ours_med, their_med = float(res.norms(0).median()), float(their_l0[their_success].median())
    assert ours_med <= their_med, f"median L0 {ours_med} against torchattacks' {their_med}"
