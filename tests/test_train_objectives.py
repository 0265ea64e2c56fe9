"""Each training objective's loss and its weight gradient match a direct computation written here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlens.classifier import Classifier
from robustlens.errors import ConfigError
from robustlens.norms import INF, random_in_ball
from robustlens.train import (
    ACET,
    CURE,
    FGSMAT,
    FGSMRS,
    PGDAT,
    TRADES,
    DeepFoolAT,
    GaussianAugmentation,
    GradAlign,
    Standard,
    make_objective,
)
from robustlens.train.contracts import StepContext

D, C, N = 12, 3, 6


def tiny(seed: int = 0) -> nn.Module:
    """A smooth (tanh) MLP, so input-gradient regularisers have non-zero second derivatives."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, C)).double()


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, D, generator=g, dtype=torch.float64) * 0.6 + 0.2
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


def ctx_for(model: nn.Module, bounds: tuple[float, float] = (0.0, 1.0), seed: int = 3) -> StepContext:
    clf = Classifier(model, bounds=bounds, eval_mode=False, check_bounds=False)
    return StepContext(epoch=2, step=5, indices=torch.arange(10, 10 + N), seed=seed, clf=clf)


def grads(loss: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def assert_same(obj_loss: torch.Tensor, ref_loss: torch.Tensor, model: nn.Module, atol: float = 1e-9) -> None:
    assert torch.allclose(obj_loss, ref_loss, atol=atol, rtol=1e-7), (float(obj_loss), float(ref_loss))
    for a, b in zip(grads(obj_loss, model), grads(ref_loss, model), strict=True):
        assert torch.allclose(a, b, atol=atol, rtol=1e-6)


def loss_with_forward_inputs(obj, m: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             ctx: StepContext) -> tuple[torch.Tensor, dict, list[torch.Tensor]]:
    """``obj.loss`` and the inputs of every forward pass of ``m`` it made, in order."""
    calls: list[torch.Tensor] = []
    h = m.register_forward_hook(lambda mod, i, o: calls.append(i[0].detach().clone()))
    try:
        loss, stats = obj.loss(m, x, y, step_ctx=ctx)
    finally:
        h.remove()
    return loss, stats, calls


def input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    xg = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(xg), y, reduction="sum")
    return torch.autograd.grad(loss, xg, create_graph=create_graph)[0]


def pgd_direct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
               start: torch.Tensor, value=None) -> torch.Tensor:
    """Plain Linf PGD on a per-sample value (default CE), last iterate, clipped to [0, 1]."""
    xk = start.clone()
    for _ in range(steps):
        xg = xk.detach().requires_grad_(True)
        v = F.cross_entropy(model(xg), y, reduction="none") if value is None else value(model(xg))
        g = torch.autograd.grad(v.sum(), xg)[0]
        xk = xk + alpha * g.sign()
        xk = torch.min(torch.max(xk, x - eps), x + eps).clamp(0, 1)
    return xk.detach()


def test_standard_is_cross_entropy() -> None:
    m, (x, y) = tiny(), batch()
    loss, stats = Standard().loss(m, x, y, step_ctx=ctx_for(m))
    assert_same(loss, F.cross_entropy(m(x), y), m)
    assert float(stats["accuracy"]) == pytest.approx(float((m(x).argmax(1) == y).double().mean()))


def test_pgd_at_zero_start_matches_direct_pgd() -> None:
    m, (x, y) = tiny(), batch()
    obj = PGDAT(0.1, steps=4, step_size=0.04, random_start=False)
    ctx = ctx_for(m)
    adv = obj.perturb(m, x, y, ctx)
    ref_adv = pgd_direct(m, x, y, 0.1, 0.04, 4, x)
    assert torch.allclose(adv, ref_adv, atol=1e-12)
    assert float((adv - x).abs().max()) <= 0.1 + 1e-12
    loss, _ = obj.loss(m, x, y, step_ctx=ctx)
    assert_same(loss, F.cross_entropy(m(ref_adv), y), m)
    # the inner maximisation increases the loss over the clean one (eq. 14)
    assert float(loss) > float(F.cross_entropy(m(x), y))


def test_pgd_at_random_start_is_seeded_and_inside_ball() -> None:
    m, (x, y) = tiny(), batch()
    obj = PGDAT(0.1, steps=3, step_size=0.01)  # small steps, so the start still shows in the last iterate
    ctx = ctx_for(m)
    a1, a2 = obj.perturb(m, x, y, ctx), obj.perturb(m, x, y, ctx)
    assert torch.equal(a1, a2)
    start = (x + random_in_ball(x, INF, 0.1, ctx.sample_rng("pgd"), key=("start", "pgd", 0))).clamp(0, 1)
    assert torch.allclose(a1, pgd_direct(m, x, y, 0.1, obj.step_size, 3, start), atol=1e-12)
    other = StepContext(epoch=3, step=0, indices=ctx.indices, seed=ctx.seed, clf=ctx.clf)
    assert not torch.equal(obj.perturb(m, x, y, other), a1)  # a new epoch draws new starts


def test_fgsm_at_is_one_signed_step() -> None:
    m, (x, y) = tiny(), batch()
    obj = FGSMAT(0.05)
    ctx = ctx_for(m)
    ref_adv = (x + 0.05 * input_grad(m, x, y).sign()).clamp(0, 1)
    assert torch.allclose(obj.perturb(m, x, y, ctx), ref_adv, atol=1e-12)
    loss, _ = obj.loss(m, x, y, step_ctx=ctx)
    assert_same(loss, F.cross_entropy(m(ref_adv), y), m)


def test_fgsm_rs_random_start_then_alpha_step() -> None:
    m, (x, y) = tiny(), batch()
    obj = FGSMRS(0.1)
    assert obj.alpha == pytest.approx(0.125)
    ctx = ctx_for(m)
    start = (x + random_in_ball(x, INF, 0.1, ctx.sample_rng("fgsm-rs"), key=("start", "pgd", 0))).clamp(0, 1)
    ref_adv = pgd_direct(m, x, y, 0.1, 0.125, 1, start)
    assert torch.allclose(obj.perturb(m, x, y, ctx), ref_adv, atol=1e-12)
    loss, _ = obj.loss(m, x, y, step_ctx=ctx)
    assert_same(loss, F.cross_entropy(m(ref_adv), y), m)


def test_gradalign_loss_and_double_backprop_gradient() -> None:
    m, (x, y) = tiny(), batch()
    obj = GradAlign(0.1, lam=0.7)
    ctx = ctx_for(m)
    loss, stats = obj.loss(m, x, y, step_ctx=ctx)
    adv = (x + 0.1 * input_grad(m, x, y).sign()).clamp(0, 1)
    u = torch.rand(x.shape, generator=ctx.generator("gradalign"), dtype=x.dtype)
    g1 = input_grad(m, x, y, create_graph=True)
    g2 = input_grad(m, (x + (2 * u - 1) * 0.1).clamp(0, 1), y, create_graph=True)
    cos = (g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))
    ref = F.cross_entropy(m(adv), y) + 0.7 * (1 - cos).mean()
    assert_same(loss, ref, m)
    assert float(stats["grad_cosine"]) == pytest.approx(float(cos.mean()))


def test_trades_loss_and_kl_inner_maximisation() -> None:
    m, (x, y) = tiny(), batch()
    obj = TRADES(0.1, beta=3.0, steps=3)
    ctx = ctx_for(m)
    loss, _ = obj.loss(m, x, y, step_ctx=ctx)
    p_clean = F.softmax(m(x), 1).detach()

    def kl_to_clean(z: torch.Tensor) -> torch.Tensor:
        return (p_clean * (p_clean.log() - F.log_softmax(z, 1))).sum(1)

    start = (x + random_in_ball(x, INF, 0.1, ctx.sample_rng("trades"), key=("start", "pgd", 0))).clamp(0, 1)
    adv = pgd_direct(m, x, y, 0.1, obj.step_size, 3, start, value=kl_to_clean)
    p = F.softmax(m(x), 1)
    kl = (p * (F.log_softmax(m(x), 1) - F.log_softmax(m(adv), 1))).sum(1).mean()
    assert_same(loss, F.cross_entropy(m(x), y) + 3.0 * kl, m)
    assert float(kl) > 0


def test_cure_finite_difference_curvature() -> None:
    m, (x, y) = tiny(), batch()
    obj = CURE(h=0.3, lam=2.0)
    loss, stats = obj.loss(m, x, y, step_ctx=ctx_for(m))
    g0 = input_grad(m, x, y, create_graph=True)
    s = g0.detach().sign()
    z = s / s.norm(dim=1, keepdim=True)
    g1 = input_grad(m, x + 0.3 * z, y, create_graph=True)
    reg = (g1 - g0).pow(2).sum(1).mean()
    assert_same(loss, F.cross_entropy(m(x), y) + 2.0 * reg, m)
    assert float(stats["curvature"]) > 0


def test_cure_regulariser_vanishes_on_a_linear_model() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(D, C).double()
    x, y = batch()
    # softmax makes CE curved even for a linear model, but with h -> 0 the finite difference goes to 0
    small = CURE(h=1e-6).regulariser(lin, x, y)
    assert float(small.max()) < 1e-9


def test_deepfool_at_on_affine_binary_model_is_exact() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(D, 2).double()
    x, y = batch()
    y = lin(x).argmax(1)  # correctly classified: DeepFool must cross the boundary
    ctx = ctx_for(lin, bounds=(-100.0, 100.0))
    obj = DeepFoolAT(overshoot=0.02, weight=0.5)
    adv = obj.perturb(lin, x, y, ctx)
    w = (lin.weight[1] - lin.weight[0]).detach()
    f = (lin(x)[:, 1] - lin(x)[:, 0]).detach()
    ref_adv = x - 1.02 * (f / w.dot(w))[:, None] * w  # the exact minimal L2 step, with overshoot
    assert torch.allclose(adv, ref_adv, atol=1e-9)
    loss, _ = obj.loss(lin, x, y, step_ctx=ctx)
    assert_same(loss, 0.5 * F.cross_entropy(lin(x), y) + 0.5 * F.cross_entropy(lin(ref_adv), y), lin)
    capped = DeepFoolAT(max_norm=1e-3).perturb(lin, x, y, ctx)
    assert float((capped - x).norm(dim=1).max()) <= 1e-3 + 1e-12


def test_gaussian_augmentation() -> None:
    m, (x, y) = tiny(), batch()
    obj = GaussianAugmentation(0.25)
    ctx = ctx_for(m)
    noise = torch.randn(x.shape, generator=ctx.generator("gaussian"), dtype=x.dtype)
    loss, _ = obj.loss(m, x, y, step_ctx=ctx)
    assert_same(loss, F.cross_entropy(m(x + 0.25 * noise), y), m)
    big = torch.zeros(4000, D, dtype=torch.float64)
    n = obj.perturb(m, big, torch.zeros(4000, dtype=torch.long), ctx)
    assert float(n.std()) == pytest.approx(0.25, rel=0.02)


@pytest.mark.parametrize("noise", ["uniform", "permuted"])
def test_acet_worst_case_confidence_around_noise(noise: str) -> None:
    m, (x, y) = tiny(), batch()
    obj = ACET(0.1, lam=0.5, steps=3, noise=noise)
    ctx = ctx_for(m)
    z = obj.noise(x, ctx)
    if noise == "permuted":
        assert torch.allclose(z.sort(1).values, x.sort(1).values)  # same pixels, new places
    else:
        g = ctx.generator("acet", "noise")
        assert torch.equal(z, torch.rand(x.shape, generator=g, dtype=x.dtype))
    u = pgd_direct(m, z, y, 0.1, obj.step_size, 3, z, value=lambda lg: F.log_softmax(lg, 1).amax(1))
    loss, stats = obj.loss(m, x, y, step_ctx=ctx)
    conf = F.log_softmax(m(u), 1).amax(1)
    assert_same(loss, F.cross_entropy(m(x), y) + 0.5 * conf.mean(), m)
    # the inner maximisation raised the confidence above the noise's own (eq. 23)
    assert float(conf.mean()) >= float(F.log_softmax(m(z), 1).amax(1).mean())


def test_make_objective_and_errors() -> None:
    assert isinstance(make_objective("pgd", 0.2, steps=3), PGDAT)
    assert make_objective("PGD", eps=0.2, steps=3).steps == 3  # registry names forgive case
    assert make_objective("gaussian", eps=0.5).sigma == 0.5
    assert make_objective("acet", eps=0.2).eta == 0.2
    assert make_objective("acet").eta == 0.3  # a radius with a default may be left out
    assert make_objective("pgd", 0.2, steps=None).steps == 10  # None keeps the default
    with pytest.raises(ConfigError, match="lam does not apply to objective 'standard'; it takes no options"):
        make_objective("standard", lam=1.0)
    with pytest.raises(ConfigError, match="bogus does not apply to objective 'pgd'; it takes eps, norm, steps"):
        make_objective("pgd", eps=0.1, bogus=1)
    with pytest.raises(ConfigError, match="eps does not apply to objective 'cure'"):
        make_objective("cure", 0.1)
    with pytest.raises(ConfigError, match="objective 'trades' needs eps"):
        make_objective("trades")
    with pytest.raises(ConfigError, match="unknown objective 'nope'; choose one of standard, pgd"):
        make_objective("nope")
    with pytest.raises(ConfigError, match="eps"):
        PGDAT(-1.0)
    with pytest.raises(ConfigError, match="sigma"):
        GaussianAugmentation(0.0)
    with pytest.raises(ConfigError, match="steps"):
        PGDAT(0.1, steps=0)


def test_make_objective_names_the_options_as_the_user_typed_them() -> None:
    spelling = {"eps": "--eps", "step_size": "--step-size", "steps": "--steps"}
    with pytest.raises(ConfigError, match=r"--objective pgd: --step-size must be a finite number > 0 or None, got "
                                          r"-0.05"):
        make_objective("pgd", 0.3, spelling=spelling, step_size=-0.05)
    with pytest.raises(ConfigError, match="--objective pgd: --eps must be a finite number >= 0, got nan"):
        make_objective("pgd", float("nan"), spelling=spelling)
    with pytest.raises(ConfigError, match="unknown --objective 'nope'"):
        make_objective("nope", spelling=spelling)


def test_every_objective_is_registered_once_beside_its_class() -> None:
    import robustlens.train.objectives as mod
    from robustlens.train import OBJECTIVES

    assert {"standard", "pgd", "fgsm", "fgsm-rs", "gradalign", "trades", "cure", "deepfool", "gaussian",
            "acet"} <= set(OBJECTIVES)
    for e in OBJECTIVES.entries():
        assert e.obj.name == e.name and e.obj.__module__ == mod.__name__
        assert e.meta["radius"] in (None, "eps", "sigma", "eta") and e.meta["summary"]
    assert not hasattr(mod, "build_objective")


@pytest.mark.parametrize("name", ["pgd", "fgsm", "fgsm-rs", "gradalign", "trades"])
def test_at_radius_rescales_the_radius_and_its_steps(name: str) -> None:
    from robustlens.train import OBJECTIVES

    obj = make_objective(name, 0.3)
    small = obj.at_radius(0.075)
    assert type(small) is OBJECTIVES.get(name) and small.eps == 0.075 and obj.eps == 0.3
    for step in ("step_size", "alpha"):
        if hasattr(obj, step):
            assert getattr(small, step) == pytest.approx(getattr(obj, step) / 4)
    cfg, small_cfg = obj.config(), small.config()
    assert {k for k in cfg if cfg[k] != small_cfg[k]} <= {"eps", "step_size", "alpha"}


def test_gradalign_steps_from_its_clean_gradient_in_three_forward_passes() -> None:
    """In train mode FGSM's gradient is the regulariser's clean gradient: the loss takes it once (3 forward passes:
    x, the FGSM point, the noisy point) and its FGSM point equals the attack's (``perturb``)."""
    m, (x, y) = tiny(), batch()
    obj = GradAlign(0.1, lam=0.7)
    ctx = ctx_for(m)
    loss, _, calls = loss_with_forward_inputs(obj, m, x, y, ctx)
    assert len(calls) == 3
    assert torch.equal(calls[1], obj.perturb(m, x, y, ctx))
    # an eval-mode attack classifier takes the attack's own pass, with the same result on a model without BN/dropout
    ctx_eval = StepContext(epoch=2, step=5, indices=ctx.indices, seed=ctx.seed,
                           clf=Classifier(m, eval_mode=True, check_bounds=False))
    loss_eval, _ = obj.loss(m, x, y, step_ctx=ctx_eval)
    assert_same(loss, loss_eval, m)


def test_gradalign_detach_clean_differentiates_only_the_noisy_gradient() -> None:
    m, (x, y) = tiny(), batch()
    obj = GradAlign(0.1, lam=0.7, detach_clean=True)
    ctx = ctx_for(m)
    loss, stats = obj.loss(m, x, y, step_ctx=ctx)
    g1 = input_grad(m, x, y)
    adv = (x + 0.1 * g1.sign()).clamp(0, 1)
    u = torch.rand(x.shape, generator=ctx.generator("gradalign"), dtype=x.dtype)
    g2 = input_grad(m, (x + (2 * u - 1) * 0.1).clamp(0, 1), y, create_graph=True)
    cos = (g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))
    assert_same(loss, F.cross_entropy(m(adv), y) + 0.7 * (1 - cos).mean(), m)
    assert float(stats["grad_cosine"]) == pytest.approx(float(cos.mean()))
    loss, _ = obj.loss(m, x, y, step_ctx=ctx)
    both, _ = GradAlign(0.1, lam=0.7).loss(m, x, y, step_ctx=ctx)
    assert float(both) == pytest.approx(float(loss))  # the same value, a different weight gradient
    assert not all(torch.allclose(a, b) for a, b in zip(grads(loss, m), grads(both, m), strict=True))


def test_gradalign_random_start_steps_from_its_noisy_gradient() -> None:
    """With ``random_start`` the FGSM-RS step starts at the regulariser's uniform point and uses the (differentiated)
    gradient there: 3 forward passes, the loss and weight gradient of a direct computation, and the same point as
    an eval-mode attack on a model without BN/dropout."""
    m, (x, y) = tiny(), batch()
    eps, alpha = 0.1, 0.125
    obj = GradAlign(eps, lam=0.7, random_start=True)
    assert obj.alpha == pytest.approx(alpha)
    ctx = ctx_for(m)
    loss, stats, calls = loss_with_forward_inputs(obj, m, x, y, ctx)
    assert len(calls) == 3
    u = torch.rand(x.shape, generator=ctx.generator("gradalign"), dtype=x.dtype)
    start = (x + (2 * u - 1) * eps).clamp(0, 1)
    g2 = input_grad(m, start, y, create_graph=True)
    adv = torch.minimum(torch.maximum(start + alpha * g2.detach().sign(), x - eps), x + eps).clamp(0, 1)
    assert torch.allclose(calls[1], adv, atol=1e-12) and torch.allclose(obj.perturb(m, x, y, ctx), adv, atol=1e-12)
    assert (adv - x).abs().max() <= eps + 1e-12 and not torch.equal(adv, (x + eps * g2.sign()).clamp(0, 1))
    g1 = input_grad(m, x, y, create_graph=True)
    cos = (g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))
    assert_same(loss, F.cross_entropy(m(adv), y) + 0.7 * (1 - cos).mean(), m)
    assert float(stats["grad_cosine"]) == pytest.approx(float(cos.mean()))
    ctx_eval = StepContext(epoch=2, step=5, indices=ctx.indices, seed=ctx.seed,
                           clf=Classifier(m, eval_mode=True, check_bounds=False))
    loss_eval, _ = obj.loss(m, x, y, step_ctx=ctx_eval)
    assert_same(obj.loss(m, x, y, step_ctx=ctx)[0], loss_eval, m)
    with pytest.raises(ConfigError, match="alpha"):
        GradAlign(eps, random_start=True, alpha=0.0)
    assert GradAlign(0.0).alpha == 0.0  # eps 0: the default step is 0, no error


def test_gradalign_unclipped_noise_takes_the_second_gradient_outside_the_bounds() -> None:
    """``clip_noise=False`` (the authors' code): the noisy gradient is taken at ``x + eta`` unclipped, which differs
    from the clipped point where ``x`` touches the bounds; the FGSM point stays inside them."""
    m, (x, y) = tiny(), batch()
    x = x.clone()
    x[:, :8] = 0.0  # pixels on the lower bound, where clipping changes the noisy point
    obj = GradAlign(0.1, lam=0.7, clip_noise=False)
    assert obj.config()["clip_noise"] is False
    ctx = ctx_for(m)
    loss, stats = obj.loss(m, x, y, step_ctx=ctx)
    u = torch.rand(x.shape, generator=ctx.generator("gradalign"), dtype=x.dtype)
    noisy = x + (2 * u - 1) * 0.1
    assert float(noisy.min()) < 0  # the point does leave the bounds
    g1 = input_grad(m, x, y, create_graph=True)
    g2 = input_grad(m, noisy, y, create_graph=True)
    cos = (g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))
    adv = (x + 0.1 * g1.detach().sign()).clamp(0, 1)
    assert_same(loss, F.cross_entropy(m(adv), y) + 0.7 * (1 - cos).mean(), m)
    clipped, _ = GradAlign(0.1, lam=0.7).loss(m, x, y, step_ctx=ctx)
    assert float(clipped) != pytest.approx(float(loss), rel=1e-9)
    assert float(stats["grad_cosine"]) == pytest.approx(float(cos.mean()))


def test_trades_shares_the_clean_forward_with_its_attack() -> None:
    """In train mode the loss's clean logits give the attack its clean probabilities: steps + 2 forward passes, and
    the same KL-maximising point as ``perturb`` with its own clean pass."""
    m, (x, y) = tiny(), batch()
    obj = TRADES(0.1, beta=3.0, steps=3)
    ctx = ctx_for(m)
    _, _, calls = loss_with_forward_inputs(obj, m, x, y, ctx)
    assert len(calls) == 3 + 2
    assert torch.equal(calls[-1], obj.perturb(m, x, y, ctx))


def test_cure_takes_its_clean_logits_from_the_gradient_pass() -> None:
    m, (x, y) = tiny(), batch()
    _, _, calls = loss_with_forward_inputs(CURE(h=0.3, lam=2.0), m, x, y, ctx_for(m))
    assert len(calls) == 2  # x (loss and clean gradient) and x + h z
