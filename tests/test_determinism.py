"""Same seed, same numbers: every public entry point is bit-identical on the CPU when run twice with one seed.

Each run builds its model afresh and scrambles the global random generators first, so a result that secretly
depended on ``torch.manual_seed`` state (or on leftovers of a previous run) fails here. Where an entry point draws
random numbers, a different seed must change its output.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import pkgutil
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from models import TinyCNN
from torch import Tensor, nn

import robustlens.attacks as attacks_pkg
from robustlens import Classifier
from robustlens.attacks import DeepFool, SubspaceAttack
from robustlens.attacks.apgd import APGD
from robustlens.attacks.autoattack import autoattack
from robustlens.attacks.base import Attack
from robustlens.attacks.ddn import DDN
from robustlens.attacks.fab import FAB
from robustlens.attacks.fgsm import FGSM
from robustlens.attacks.fmn import FMN
from robustlens.attacks.pgd import PGD
from robustlens.attacks.square import Square
from robustlens.attacks.universal import UniversalPerturbation
from robustlens.certify import Smoothed, certify_dataset, interval_bounds
from robustlens.geometry import gradient_alignment, hessian_eigenpairs, taylor_error
from robustlens.geometry.noise import directional_distance, noise_error_rate, sqrt_d_law
from robustlens.geometry.sections import cross_section
from robustlens.runner import run_evaluation
from robustlens.seeding import SampleRNG
from robustlens.train import PGDAT, fit

N = 4


def _scramble_globals() -> None:
    """Move every global generator to an arbitrary state, so hidden uses of it show up as differences."""
    s = random.SystemRandom().randrange(2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def image_clf() -> Classifier:
    return Classifier(TinyCNN(num_classes=5, seed=3, size=8), input_shape=(1, 8, 8))


def smooth_clf() -> Classifier:
    torch.manual_seed(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 4))
    return Classifier(net, input_shape=(16,))


def images(n: int = N) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(11)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(5, (n,), generator=g)


def vectors(n: int = N) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(12)
    return torch.rand(n, 16, generator=g), torch.randint(4, (n,), generator=g)


# ------------------------------------------------------------------------------------------ comparison
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a result: tensors and arrays as raw bytes (NaN-safe, bit-exact), numbers and strings as they are."""
    out: dict[str, Any] = {}
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        out[prefix] = (str(t.dtype), tuple(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes()
                       if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        out[prefix] = (str(obj.dtype), obj.shape, np.ascontiguousarray(obj).tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if f.name in ("time_s", "elapsed_s", "seconds"):
                continue  # wall-clock timings are not results
            out.update(flatten(getattr(obj, f.name), f"{prefix}.{f.name}"))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("time_s", "elapsed_s", "seconds", "checkpoint"):
                continue
            out.update(flatten(v, f"{prefix}[{k!r}]"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}[{i}]"))
    elif isinstance(obj, float):
        out[prefix] = "nan" if math.isnan(obj) else obj.hex()
    elif isinstance(obj, nn.Module):
        out.update(flatten(dict(obj.state_dict()), f"{prefix}.state"))
    else:
        out[prefix] = obj
    return out


def assert_identical(a: Any, b: Any) -> None:
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    assert fa, "nothing was compared"
    diff = [k for k in fa if fa[k] != fb[k]]
    assert not diff, f"runs with the same seed differ in {diff[:5]}"


def assert_differs(a: Any, b: Any, key: str) -> None:
    fa, fb = flatten(a), flatten(b)
    assert key in fa, (key, sorted(fa)[:20])
    assert fa[key] != fb[key], f"{key} does not change with the seed"


def twice(run: Callable[[int], Any], seed: int = 7) -> tuple[Any, Any]:
    _scramble_globals()
    a = run(seed)
    _scramble_globals()
    b = run(seed)
    return a, b


# ------------------------------------------------------------------------------------------ attacks
def _basis() -> Tensor:
    q, _ = torch.linalg.qr(torch.randn(64, 6, generator=torch.Generator().manual_seed(2)))
    return q


def _attack_class(module: str, name: str) -> Any:
    """An attack class looked up when the test runs; a missing one fails the test."""
    try:
        return getattr(importlib.import_module(f"robustlens.attacks.{module}"), name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"robustlens.attacks.{module}.{name} is not available: {e}")


# name -> (factory of a configured attack, call keywords, field that must change with the seed or None)
ATTACKS: dict[str, tuple[Callable[[], Any], dict[str, Any], str | None]] = {
    "DeepFool": (lambda: DeepFool(norm=2, max_iter=10), {}, None),
    "DeepFool-Linf": (lambda: DeepFool(norm="inf", max_iter=10), {}, None),
    "FGSM": (lambda: FGSM(eps=0.1), {}, None),
    "FGSM-random-start": (lambda: FGSM(eps=0.1, random_start=True), {}, ".adversarial"),
    "PGD-Linf": (lambda: PGD(eps=0.1, steps=4), {}, ".adversarial"),
    "PGD-L2": (lambda: PGD(norm=2, eps=0.5, steps=4, restarts=2), {}, ".adversarial"),
    "PGD-L1": (lambda: PGD(norm=1, eps=2.0, steps=4), {}, ".adversarial"),
    "PGD-random-target": (lambda: PGD(eps=0.1, steps=3), {"target": "random"}, ".targets"),
    "PGD-least-likely": (lambda: PGD(eps=0.1, steps=3, random_start=False), {"target": "least-likely"}, None),
    "APGD-CE": (lambda: APGD(eps=0.1, steps=5), {}, ".adversarial"),
    "APGD-DLR": (lambda: APGD(eps=0.1, steps=5, loss="dlr"), {}, ".adversarial"),
    "Square-Linf": (lambda: Square(eps=0.1, queries=30), {}, ".adversarial"),
    "Square-L2": (lambda: Square(norm=2, eps=0.5, queries=30), {}, ".adversarial"),
    "FMN": (lambda: FMN(norm=2, steps=8), {}, None),
    "DDN": (lambda: DDN(steps=8), {}, None),
    "FAB": (lambda: FAB(steps=3, restarts=2), {}, None),
    "CarliniWagner": (lambda: _attack_class("cw", "CarliniWagner")(steps=5, binary_search_steps=2), {}, None),
    "SparseFool": (lambda: _attack_class("sparsefool", "SparseFool")(max_iter=3, deepfool_iter=5), {}, None),
    "Subspace": (lambda: SubspaceAttack(DeepFool(norm=2, clip=False), _basis()), {}, None),
    "AutoAttack": (lambda: _attack_class("autoattack", "AutoAttack")(eps=0.05, n_target_classes=2, progress=False),
                   {}, None),
}


def _attack_run(name: str) -> Callable[[int], Any]:
    factory, kw, _ = ATTACKS[name]

    def run(seed: int) -> Any:
        x, y = images()
        return factory()(image_clf(), x, y, seed=seed, indices=[3, 1, 4, 5], **kw)

    return run


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_deterministic(name: str) -> None:
    a, b = twice(_attack_run(name))
    assert_identical(a, b)
    field = ATTACKS[name][2]
    if field is not None:
        assert_differs(a, _attack_run(name)(8), field)


def _concrete_attack_classes() -> set[str]:
    found: set[str] = set()
    for info in pkgutil.iter_modules(attacks_pkg.__path__):
        mod = importlib.import_module(f"robustlens.attacks.{info.name}")
        for obj in vars(mod).values():
            if (inspect.isclass(obj) and issubclass(obj, Attack) and not inspect.isabstract(obj)
                    and obj.__module__.startswith("robustlens.attacks")):
                found.add(obj.__name__)
    return found


def test_every_attack_class_is_covered() -> None:
    covered = set()
    for factory, _, _ in ATTACKS.values():
        try:
            covered.add(type(factory()).__name__)
        except pytest.skip.Exception:
            continue
    missing = _concrete_attack_classes() - covered - {"BudgetAttack"}  # BudgetAttack is FMN's and DDN's base
    assert not missing, f"add these attacks to ATTACKS in tests/test_determinism.py: {sorted(missing)}"


def test_autoattack_is_deterministic() -> None:
    def run(seed: int) -> Any:
        x, y = images()
        return autoattack(image_clf(), x, y, eps=0.05, seed=seed, n_target_classes=2, progress=False)

    a, b = twice(run)
    assert_identical(a, b)


def test_universal_perturbation_is_deterministic() -> None:
    def run(seed: int) -> Any:
        x, _ = images(6)
        return UniversalPerturbation(eps=0.2, max_passes=1, deepfool_iter=3, batch_size=3, progress=False).fit(
            image_clf(), x, seed=seed)

    a, b = twice(run)
    assert_identical(a, b)


# ------------------------------------------------------------------------------------------ geometry
def test_cross_section_is_deterministic_and_seeded() -> None:
    def run(seed: int) -> Any:
        x, _ = images(1)
        return cross_section(image_clf(), x[0], directions=("adversarial", "random"), resolution=9, seed=seed,
                             progress=False)

    a, b = twice(run)
    assert_identical(a, b)
    assert_differs(a, run(8), ".margins")


def test_hessian_lanczos_is_deterministic() -> None:
    def run(seed: int) -> Any:
        x, y = vectors(2)
        return hessian_eigenpairs(smooth_clf(), x, y, k=2, method="lanczos", seed=seed, progress=False)

    a, b = twice(run)
    assert_identical(a, b)


def test_alignment_and_taylor_are_deterministic() -> None:
    def run(seed: int) -> Any:
        x, y = vectors()
        clf = smooth_clf()
        r = 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        return gradient_alignment(clf, x, y), taylor_error(clf, x, y, r)

    a, b = twice(run)
    assert_identical(a, b)


def test_noise_and_directional_distance_are_deterministic_and_seeded() -> None:
    def run(seed: int) -> Any:
        x, _ = vectors()
        clf = smooth_clf()
        return (noise_error_rate(clf, x, [0.1, 0.5, 2.0], n_draws=16, seed=seed, progress=False),
                directional_distance(clf, x, n_directions=5, max_dist=8.0, seed=seed, progress=False))

    a, b = twice(run)
    assert_identical(a, b)
    other = run(8)
    assert_differs(a[0], other[0], ".per_sample")
    assert_differs(a[1], other[1], ".distances" if ".distances" in flatten(a[1]) else sorted(
        k for k, v in flatten(a[1]).items() if isinstance(v, tuple))[0])


def test_sqrt_d_law_is_deterministic() -> None:
    def run(seed: int) -> Any:
        x, y = vectors()
        return sqrt_d_law(smooth_clf(), x, y, adversarial_norm=torch.full((N,), 0.3), n_directions=5,
                          n_bootstrap=20, max_dist=8.0, seed=seed, progress=False)

    a, b = twice(run)
    assert_identical(a, b)


# ------------------------------------------------------------------------------------------ training
def test_fit_one_epoch_gives_identical_weights() -> None:
    def run(seed: int) -> Any:
        torch.manual_seed(0)  # the same initial weights in every run
        net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Dropout(0.2), nn.Linear(12, 4))
        g = torch.Generator().manual_seed(1)
        x, y = torch.rand(24, 16, generator=g), torch.randint(4, (24,), generator=g)
        _scramble_globals()
        hist = fit(net, (x, y), objective=PGDAT(0.1, steps=2), epochs=1, batch_size=8, lr=0.05, seed=seed,
                   progress=False)
        return net, hist

    a, b = twice(run)
    assert_identical(a[0], b[0])
    assert_identical(a[1].records, b[1].records)
    c = run(8)
    assert not torch.equal(a[0][1].weight, c[0][1].weight), "the data order / dropout do not follow the seed"


# ------------------------------------------------------------------------------------------ certification
def test_smoothing_predict_and_certify_are_deterministic_and_seeded() -> None:
    def run(seed: int) -> Any:
        x, y = vectors()
        sm = Smoothed(smooth_clf(), 0.5)
        return (sm.predict(x, n=60, alpha=0.1, batch_size=50, seed=seed),
                sm.certify(x, y, n0=10, n=60, alpha=0.1, batch_size=50, seed=seed))

    a, b = twice(run)
    assert_identical(a, b)
    other = run(8)
    assert_differs(a[0], other[0], ".counts")
    assert_differs(a[1], other[1], ".p_lower")


def test_certify_dataset_and_runner_are_deterministic(tmp_path: Path) -> None:
    def run(seed: int) -> Any:
        x, y = vectors(5)
        sm = Smoothed(smooth_clf(), 0.5)
        state = tmp_path / f"s{seed}-{random.SystemRandom().randrange(10**9)}"
        return certify_dataset(sm, (x, y), n0=10, n=40, alpha=0.1, batch_size=64, data_batch_size=2, seed=seed,
                               state_dir=str(state), progress=False)

    a, b = twice(run)
    assert_identical(a, b)

    def noise(seed: int) -> Any:
        x, _ = vectors(7)
        return run_evaluation(lambda bx, by, bi: {"v": bx + SampleRNG(seed, bi).randn(bx.shape[1:])}, x,
                              batch_size=3, seed=seed, progress=False)

    c, d = twice(noise)
    assert_identical(c.outputs, d.outputs)
    assert_differs(c.outputs, noise(8).outputs, "['v']")


def test_interval_bounds_are_deterministic() -> None:
    def run(seed: int) -> Any:
        x, y = vectors()
        torch.manual_seed(5)
        net = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))
        return interval_bounds(Classifier(net), x, 0.05, "inf", y)

    a, b = twice(run)
    assert_identical(a, b)


def test_flatten_sees_a_one_bit_change() -> None:
    t = torch.rand(3)
    u = t.clone()
    u[1] = torch.nextafter(u[1], torch.tensor(2.0))
    with pytest.raises(AssertionError, match="differ"):
        assert_identical({"t": t}, {"t": u})
    assert_identical({"t": torch.tensor([float("nan")])}, {"t": torch.tensor([float("nan")])})

