from __future__ import annotations

import warnings

import pytest
import torch
from models import Affine, TinyCNN
from torch import nn

from robustlens import Classifier, InputError, LabelError, RobustLensError, RobustLensWarning


def test_normalization_is_applied_inside():
    net = Affine(3 * 4 * 4, 5, input_shape=(3, 4, 4))
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    clf = Classifier(net, mean=mean, std=std)
    x = torch.rand(6, 3, 4, 4)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(clf.logits(x), expected)


def test_batching_gives_the_same_logits_and_grads():
    clf = Classifier(TinyCNN(), batch_size=7)
    x, y = torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,))
    full = Classifier(TinyCNN(), batch_size=1000)
    torch.testing.assert_close(clf.logits(x), full.logits(x))
    l1, g1 = clf.loss_and_input_grad(x, y)
    l2, g2 = full.loss_and_input_grad(x, y)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(g1, g2)


def test_input_gradient_matches_autograd_through_normalization():
    net = Affine(8, 3)
    clf = Classifier(net, mean=0.5, std=0.2)
    x, y = torch.rand(4, 8), torch.tensor([0, 1, 2, 0])
    _, g = clf.loss_and_input_grad(x, y)
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(net((xg - 0.5) / 0.2), y, reduction="sum")
    (ref,) = torch.autograd.grad(loss, xg)
    torch.testing.assert_close(g, ref)


def test_eval_mode_during_analysis_and_restored_after():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    net.train()
    clf = Classifier(net, input_shape=(4,))
    x = torch.rand(16, 4)
    with pytest.warns(RobustLensWarning, match="train mode"):
        a = clf.logits(x)
    b = clf.logits(x)
    torch.testing.assert_close(a, b)  # deterministic: dropout off, running stats used
    assert all(m.training for m in net.modules())


def test_counter_counts_passes():
    clf = Classifier(Affine(8, 3), batch_size=5)
    x, y = torch.rand(12, 8), torch.randint(0, 3, (12,))
    clf.loss_and_input_grad(x, y)
    assert clf.counter.forward == 12 and clf.counter.backward == 12


@pytest.mark.parametrize(
    "make_x, message",
    [
        (lambda: torch.rand(4, 1, 28, 27), "shape"),
        (lambda: torch.randint(0, 255, (4, 1, 28, 28), dtype=torch.uint8), "x.float\\(\\) / 255"),
        (lambda: torch.full((4, 1, 28, 28), float("nan")), "NaN"),
        (lambda: torch.rand(4, 1, 28, 28) * 255, "divide by 255"),
        (lambda: torch.rand(4, 1, 28, 28) - 0.5, "outside the classifier's bounds"),
        (lambda: torch.rand(28, 28)[0], "batch"),
        (lambda: torch.rand(0, 1, 28, 28), "empty"),
    ],
)
def test_bad_inputs_have_clear_messages(make_x, message):
    clf = Classifier(TinyCNN(), input_shape=(1, 28, 28))
    with pytest.raises(InputError, match=message):
        clf.logits(make_x())


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 1, 10, 2]), "10 classes"),
        (torch.tensor([0, 1, -1, 2]), "range"),
        (torch.tensor([0, 1, 2]), "3 labels for 4 inputs"),
        (torch.rand(4, 10), "one-hot"),
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), "integer"),
    ],
)
def test_bad_labels_have_clear_messages(labels, message):
    clf = Classifier(TinyCNN(), input_shape=(1, 28, 28))
    with pytest.raises(LabelError, match=message):
        clf.loss_and_input_grad(torch.rand(4, 1, 28, 28), labels)


def test_probability_outputs_warn():
    net = nn.Sequential(Affine(6, 3), nn.Softmax(dim=1))
    clf = Classifier(net)
    with pytest.warns(RobustLensWarning, match="probabilities"):
        clf.logits(torch.rand(5, 6))


def test_logits_do_not_warn():
    clf = Classifier(Affine(6, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.logits(torch.rand(5, 6))


def test_parameterless_model_is_refused_with_a_hint():
    with pytest.raises(RobustLensError, match="no parameters"):
        Classifier(nn.Flatten())
    Classifier(nn.Flatten(), allow_parameterless=True)


def test_not_a_module():
    with pytest.raises(RobustLensError, match="nn.Module"):
        Classifier(lambda x: x)  # type: ignore[arg-type]


def test_model_output_shape_is_checked():
    class Tuple(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x), x

    with pytest.raises(RobustLensError, match="logits of shape"):
        Classifier(Tuple()).logits(torch.rand(3, 4))


def test_dtype_follows_model():
    net = Affine(6, 3).double()
    out = Classifier(net).logits(torch.rand(2, 6))
    assert out.dtype == torch.float64
