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


# ------------------------------------------------------------------------------------------ the validations
# Each validation the Classifier promises (input shape, NaN/Inf, bounds, labels, probability outputs, parameterless
# models, eval mode restored) triggered once more with the full text of its message: what is wrong and what to do.


def test_input_shape_learnt_from_the_first_batch_is_then_enforced():
    clf = Classifier(TinyCNN())
    clf.logits(torch.rand(2, 1, 28, 28))
    assert clf.input_shape == (1, 28, 28)
    with pytest.raises(InputError, match=r"inputs have shape \(1, 28, 27\) per sample but the classifier expects "
                       r"\(1, 28, 28\); check channels-first layout \(N, C, H, W\)"):
        clf.logits(torch.rand(2, 1, 28, 27))


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_inputs_are_counted_and_refused(bad):
    x = torch.rand(5, 6)
    x[1, 2] = bad
    x[3, 0] = bad
    with pytest.raises(InputError, match=r"^2 input\(s\) contain NaN or Inf values; clean or drop them"):
        Classifier(Affine(6, 3), check_bounds=False).logits(x)


def test_outside_bounds_names_the_range_and_the_fix():
    clf = Classifier(Affine(6, 3), bounds=(-1.0, 1.0))
    with pytest.raises(InputError, match=r"inputs lie in \[-1, 1.5\], outside the classifier's bounds \[-1, 1\].*"
                       r"Pass the right bounds=, or check_bounds=False"):
        clf.logits(torch.tensor([[-1.0, 0.0, 1.5, 0.2, 0.3, 0.4]]))
    Classifier(Affine(6, 3), bounds=(-1.0, 1.0), check_bounds=False).logits(torch.full((1, 6), 1.5))


def test_labels_out_of_range_name_the_valid_range():
    clf = Classifier(Affine(6, 3))
    with pytest.raises(LabelError, match=r"labels range over \[0, 3\] but the model has 3 classes \(valid: 0..2\); "
                       r"check the label encoding \(1-based labels need y - 1\)"):
        clf.loss_and_input_grad(torch.rand(2, 6), torch.tensor([0, 3]))
    with pytest.raises(LabelError, match=r"range over \[0, 3\] but the model has 3 classes"):
        clf.accuracy(torch.rand(2, 6), torch.tensor([3, 0]))


def test_probability_warning_says_to_remove_the_softmax_and_log_probabilities_are_accepted():
    clf = Classifier(nn.Sequential(Affine(6, 3), nn.Softmax(dim=1)))
    with pytest.warns(RobustLensWarning, match="look like probabilities, not logits.*remove the final softmax"):
        clf.logits(torch.rand(4, 6))
    log_probs = Classifier(nn.Sequential(Affine(6, 3), nn.LogSoftmax(dim=1)))  # logits up to a constant: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log_probs.logits(torch.rand(4, 6))


def test_parameterless_model_message_says_how_to_proceed():
    with pytest.raises(RobustLensError, match="the model has no parameters: was it built without its layers.*"
                       "pass allow_parameterless=True"):
        Classifier(nn.Sequential(nn.Flatten(), nn.ReLU()))


class _Fails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not self.training and not self.drop.training  # analysed in eval mode
        raise KeyError("boom")


def test_eval_mode_is_restored_per_module_even_when_the_model_raises():
    net = _Fails()
    net.train()
    net.lin.eval()  # a mixed state: each module's own flag must come back
    clf = Classifier(net, input_shape=(4,), num_classes=2)
    with pytest.warns(RobustLensWarning, match="train mode and has BatchNorm/Dropout"), pytest.raises(KeyError):
        clf.logits(torch.rand(3, 4))
    assert net.training and net.drop.training and not net.lin.training


def test_train_mode_warning_only_for_stateful_layers_and_only_once():
    plain = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Classifier(plain).logits(torch.rand(2, 4))  # train mode changes nothing here: no warning
    assert plain.training
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).train()
    clf = Classifier(net)
    with pytest.warns(RobustLensWarning, match=r"Call model.eval\(\) to silence this"):
        clf.logits(torch.rand(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.logits(torch.rand(4, 4))
    assert net.training and net[1].training


# ------------------------------------------------------------------------------------------ model checks
class _Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + 0.1 * torch.randn_like(x))


def test_a_stochastic_model_is_refused_unless_declared_then_gradients_are_averaged():
    x = torch.rand(5, 6)
    with pytest.raises(RobustLensError, match="stochastic=True"):
        Classifier(_Noisy()).logits(x)
    net = _Noisy()
    clf = Classifier(net, stochastic=True, draws=4)
    with clf.random_state(3), clf.analysis_mode():
        _, _, g = clf.value_and_grad(x, lambda z: z[:, 0])
    assert clf.counter.forward == 4 * 5 and clf.counter.backward == 4 * 5
    torch.testing.assert_close(g, net.linear.weight[0].expand(5, 6))  # linear: every draw has the same gradient
    with clf.random_state(3):
        a = clf.decision_logits(x)
    with clf.random_state(3):
        b = clf.decision_logits(x)
    assert torch.equal(a, b) and bool((a.argmax(1) == clf.predict(x)).float().mean() >= 0.6)
    assert bool((a.floor().sum(1) == 4).all())  # votes of 4 draws


def test_one_class_and_no_gradient_path_are_clear_errors():
    with pytest.raises(RobustLensError, match="1 logit per sample"):
        Classifier(nn.Linear(6, 1)).predict(torch.rand(2, 6))

    class Detached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.detach())

    clf = Classifier(Detached())
    with pytest.raises(RobustLensError, match="no gradient path"):
        clf.loss_and_input_grad(torch.rand(2, 6), torch.tensor([0, 1]))
    with pytest.raises(RobustLensError, match="no gradient path"), clf.analysis_mode():
        clf.logit_jacobian(torch.rand(2, 6), torch.ones(2, 1, 3))
    frozen = nn.Linear(6, 3).requires_grad_(False)
    _, g = Classifier(frozen).loss_and_input_grad(torch.rand(2, 6), torch.tensor([0, 1]))
    assert bool(torch.isfinite(g).all())  # frozen weights still have a gradient path to the input


def test_nan_gradient_rows_become_nan_and_nan_logits_are_not_decisions():
    class Sqrt(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(torch.sqrt(x) * torch.sqrt(x))

    clf = Classifier(Sqrt())
    x = torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.5, 0.5]])
    _, g = clf.loss_and_input_grad(x, torch.tensor([0, 1]))
    assert bool(torch.isnan(g[0]).all()) and bool(torch.isfinite(g[1]).all())

    class NaN(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * float("nan")

    with pytest.raises(InputError, match="NaN or Inf logits"):
        Classifier(NaN(3, 2)).accuracy(torch.rand(4, 3), torch.zeros(4, dtype=torch.long))


def test_reduced_precision_runs_a_float32_copy_that_follows_the_weights():
    net = Affine(6, 3).to(torch.bfloat16)
    with pytest.warns(RobustLensWarning, match="bfloat16"):
        clf = Classifier(net)
    x = torch.rand(4, 6)
    assert clf.dtype == torch.float32 and clf.analysis_model is not net
    torch.testing.assert_close(clf.logits(x), Affine(6, 3).to(torch.bfloat16).float()(x))
    with torch.no_grad():
        net.linear.weight.mul_(-1)  # the user changes the weights (an optimizer step does the same)
    torch.testing.assert_close(clf.logits(x), x @ net.linear.weight.float().T + net.linear.bias.float())
    assert next(net.parameters()).dtype == torch.bfloat16  # the user's model is untouched


def test_settings_are_validated():
    from robustlens.errors import ConfigError

    bads = (dict(batch_size=0), dict(draws=0), dict(mean=float("nan")), dict(std=0.0), dict(bounds=(0, float("nan"))))
    for bad in bads:
        with pytest.raises(ConfigError):
            Classifier(Affine(6, 3), **bad)  # type: ignore[arg-type]
