"""Attack speed and strength beside foolbox, torchattacks, ART and pyautoattack (issue 3).

Same model (a small CNN trained on the embedded MNIST digits), same correctly classified test images, same CPU
threads, in one run. For every attack and every library that implements it, the table gives:

- time: wall seconds (median over ``--repeats``) and seconds per 100 images;
- strength, measured the same way for everyone on the returned images: robust accuracy (paper eq. 12) for the
  eps-bounded attacks, success rate and median norm (failures count as infinite) for the minimal-norm ones;
- passes: forward and backward passes per image (ours from ``AttackResult.queries``; a peer's counted by a
  wrapper module that adds the batch size at each forward and at each backward through the logits);
- floor: the time those passes cost at the measured per-image price of one forward (no grad) and one extra
  backward on a batch of ``--batch`` images: ``floor = F * t_forward + B * (t_forward+backward - t_forward)``,
  measured again before each attack (the load of a shared machine drifts during a run).
  ``x floor`` = time / floor is the overhead of everything that is not the model.

Targets (issue 3): PGD, FGSM, APGD at <= 1.15x floor; DeepFool L2 at least 3x faster than foolbox at an equal or
smaller median norm; AutoAttack standard faster than pyautoattack at a robust accuracy no higher.

    python benchmarks/attacks.py --n 500 --batch 100 [--aa-n 100] [--slow-n 100] [--attacks pgd,deepfool]
        [--no-peers] [--repeats 1] [--threads 2] [--json out.json] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlens.attacks.apgd import APGD
from robustlens.attacks.autoattack import autoattack
from robustlens.attacks.base import Attack
from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.fgsm import FGSM
from robustlens.attacks.fmn import FMN
from robustlens.attacks.pgd import PGD
from robustlens.classifier import Classifier
from robustlens.data import load_dataset
from robustlens.norms import INF, lp_norm
from robustlens.train import fit
from robustlens.zoo import create_model

ATTACKS = ("deepfool", "fgsm", "pgd", "apgd-ce", "cw", "sparsefool", "fmn", "autoattack")


# ------------------------------------------------------------------------------------------------ bookkeeping


class Counting(nn.Module):
    """Wraps a model and counts per-image forward passes and backward passes through its logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forward_count = 0
        self.backward_count = 0

    def reset(self) -> None:
        self.forward_count = self.backward_count = 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        n = x.shape[0]
        self.forward_count += n
        if out.requires_grad:
            def hook(g: Tensor) -> None:
                self.backward_count += n

            out.register_hook(hook)
        return out


@dataclass
class Row:
    """One library's run of one attack."""

    attack: str
    library: str
    n: int
    seconds: float
    strength: dict[str, float]
    forward: int | None = None
    backward: int | None = None
    floor_s: float | None = None
    note: str = ""
    times: list[float] = field(default_factory=list)

    @property
    def per_100(self) -> float:
        return 100 * self.seconds / max(1, self.n)

    @property
    def x_floor(self) -> float | None:
        return None if not self.floor_s else self.seconds / self.floor_s

    @property
    def passes_per_image(self) -> float | None:
        if self.forward is None or self.backward is None:
            return None
        return (self.forward + self.backward) / max(1, self.n)


@dataclass
class Costs:
    """Per-image seconds of one forward pass (no grad) and of one forward+backward on a batch."""

    forward: float
    forward_backward: float

    def floor(self, fwd: int, bwd: int) -> float:
        return fwd * self.forward + bwd * max(self.forward_backward - self.forward, 0.0)


def measure_costs(model: nn.Module, x: Tensor, y: Tensor, repeats: int = 30) -> Costs:
    """Median per-image time of a forward and of a forward+backward (input gradient of the CE loss)."""
    model.eval()

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        xg = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xg), y, reduction="sum")
        torch.autograd.grad(loss, xg)

    out = []
    for fn in (fwd, fwd_bwd):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out.append(statistics.median(ts) / x.shape[0])
    return Costs(out[0], out[1])


def batches(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def predict(model: nn.Module, x: Tensor, batch: int = 500) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[s]).argmax(1) for s in batches(x.shape[0], batch)])


def bounded_strength(model: nn.Module, x: Tensor, y: Tensor, adv: Tensor, eps: float, p: float) -> dict[str, float]:
    """Robust accuracy on the returned images; an image outside the ball or the box counts as not fooled."""
    inside = (lp_norm(adv - x, p) <= eps * (1 + 1e-5) + 1e-6) & (adv >= 0).flatten(1).all(1) & (adv <= 1).flatten(
        1).all(1)
    fooled = (predict(model, adv) != y) & inside
    return {"robust_accuracy": float(1 - fooled.float().mean()), "outside_ball": float((~inside).float().mean())}


def minimal_strength(model: nn.Module, x: Tensor, y: Tensor, adv: Tensor, p: float) -> dict[str, float]:
    """Success rate and median norm on the returned images (a failure counts as an infinite norm)."""
    in_box = (adv >= 0).flatten(1).all(1) & (adv <= 1).flatten(1).all(1)
    success = (predict(model, adv) != y) & in_box
    nrm = lp_norm(adv - x, p)
    nrm = torch.where(success, nrm, torch.full_like(nrm, INF))
    return {"success": float(success.float().mean()), "median_norm": float(nrm.median()),
            "median_norm_of_successes": float(nrm[success].median()) if bool(success.any()) else INF}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence peers' prints, progress bars and warnings."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
            io.StringIO()):
        warnings.simplefilter("ignore")
        yield


class Bench:
    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, args: argparse.Namespace, costs: Costs) -> None:
        self.model = model
        self.counting = Counting(model).eval()
        self.clf = Classifier(model)
        self.x, self.y = x, y
        self.args = args
        self.costs = costs
        self.rows: list[Row] = []
        self._costs_for = ""
        self.cost_log: dict[str, dict[str, float]] = {}

    def timed(self, fn: Callable[[], Any]) -> tuple[Any, float, list[float]]:
        times = []
        out = None
        for _ in range(self.args.repeats):
            torch.manual_seed(self.args.seed)
            np.random.seed(self.args.seed)
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
        return out, statistics.median(times), times

    def ours(self, attack: str, make: Callable[[], Attack], n: int,
             strength: Callable[[Tensor, Tensor, Tensor], dict[str, float]], library: str = "robustlens") -> Row:
        """Run our attack batch by batch; passes from the results' query counts."""
        self.remeasure(attack)
        x, y = self.x[:n], self.y[:n]
        atk = make()
        counts = [0, 0]

        def run() -> Tensor:
            counts[0] = counts[1] = 0
            outs = []
            for s in batches(n, self.args.batch):
                res = atk(self.clf, x[s], y[s], seed=self.args.seed, indices=torch.arange(s.start, s.stop))
                counts[0] += res.queries["forward"]
                counts[1] += res.queries["backward"]
                outs.append(res.adversarial)
            return torch.cat(outs)

        adv, sec, times = self.timed(run)
        return self.add(Row(attack, library, n, sec, strength(x, y, adv), counts[0], counts[1],
                            self.costs.floor(*counts), times=times))

    def peer(self, attack: str, library: str, fn: Callable[[nn.Module, Tensor, Tensor], Tensor], n: int,
             strength: Callable[[Tensor, Tensor, Tensor], dict[str, float]], note: str = "",
             batched: bool = True) -> Row | None:
        """Run a peer's attack (``fn(model, x, y) -> adversarial``) batch by batch on the counting wrapper."""
        x, y = self.x[:n], self.y[:n]
        size = self.args.batch if batched else n

        def run() -> Tensor:
            self.counting.reset()
            with quiet():
                return torch.cat([fn(self.counting, x[s], y[s]).detach().to(x.dtype) for s in batches(n, size)])

        try:
            adv, sec, times = self.timed(run)
        except Exception as e:  # a peer failing is a finding, not a crash of the benchmark
            print(f"  {library} {attack}: failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
            return None
        fwd, bwd = self.counting.forward_count, self.counting.backward_count
        return self.add(Row(attack, library, n, sec, strength(x, y, adv), fwd, bwd, self.costs.floor(fwd, bwd),
                            note, times=times))

    def remeasure(self, attack: str) -> None:
        """Measure the pass costs again before each attack: on a shared machine the load drifts during a run."""
        if attack != self._costs_for:
            self._costs_for = attack
            self.costs = measure_costs(self.model, self.x[: self.args.batch], self.y[: self.args.batch])
            self.cost_log[attack] = asdict(self.costs)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        strength = ", ".join(f"{k}={v:.4g}" for k, v in row.strength.items())
        xf = f"{row.x_floor:.2f}x floor" if row.x_floor else ""
        print(f"  {row.attack:11s} {row.library:13s} n={row.n:4d} {row.seconds:8.2f} s  {xf:12s} {strength}",
              flush=True)
        return row


# ------------------------------------------------------------------------------------------------ the attacks


def have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def art_classifier(model: nn.Module) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                             clip_values=(0.0, 1.0), device_type="cpu")


def art_run(make: Callable[[Any], Any]) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    def fn(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        atk = make(art_classifier(model))
        return torch.from_numpy(atk.generate(x.numpy(), y=y.numpy()))

    return fn


def foolbox_run(make: Callable[[], Any], eps: float | None = None) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    import foolbox as fb

    def fn(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        _, adv, _ = make()(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)
        return adv

    return fn


def run_all(b: Bench, args: argparse.Namespace) -> None:
    n, slow = args.n, min(args.slow_n, args.n)
    eps = args.eps
    peers = not args.no_peers
    bstr = lambda p, e: (lambda x, y, a: bounded_strength(b.model, x, y, a, e, p))  # noqa: E731
    mstr = lambda p: (lambda x, y, a: minimal_strength(b.model, x, y, a, p))  # noqa: E731
    todo = [a.strip() for a in args.attacks.split(",")] if args.attacks else list(ATTACKS)

    if "deepfool" in todo:
        print("DeepFool L2 (50 steps, 10 candidates, overshoot 0.02; ours with 3 rounds of its boundary walk)")
        b.ours("deepfool", lambda: DeepFool(2, overshoot=0.02, max_iter=50, candidates=10, refine=3), n, mstr(2))
        b.ours("deepfool", lambda: DeepFool(2, overshoot=0.02, max_iter=50, candidates=10), n, mstr(2),
               library="robustlens, refine=0 (the default)")
        if peers and have("foolbox"):
            import foolbox as fb

            b.peer("deepfool", "foolbox", foolbox_run(
                lambda: fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)), n, mstr(2))
        if peers and have("art"):
            from art.attacks.evasion import DeepFool as ArtDeepFool

            b.peer("deepfool", "ART", art_run(lambda c: ArtDeepFool(c, max_iter=50, epsilon=0.02, nb_grads=10,
                                                                  batch_size=args.batch, verbose=False)), n, mstr(2))
        if peers and have("torchattacks"):
            import torchattacks as ta

            b.peer("deepfool", "torchattacks", lambda m, x, y: ta.DeepFool(m, steps=50, overshoot=0.02)(x, y),
                   slow, mstr(2), note="per image")

    if "fgsm" in todo:
        print(f"FGSM Linf eps={eps}")
        b.ours("fgsm", lambda: FGSM(INF, eps), n, bstr(INF, eps))
        if peers and have("foolbox"):
            import foolbox as fb

            b.peer("fgsm", "foolbox", foolbox_run(lambda: fb.attacks.FGSM(), eps), n, bstr(INF, eps))
        if peers and have("torchattacks"):
            import torchattacks as ta

            b.peer("fgsm", "torchattacks", lambda m, x, y: ta.FGSM(m, eps=eps)(x, y), n, bstr(INF, eps))
        if peers and have("art"):
            from art.attacks.evasion import FastGradientMethod

            b.peer("fgsm", "ART", art_run(lambda c: FastGradientMethod(c, norm=np.inf, eps=eps,
                                                                       batch_size=args.batch)), n, bstr(INF, eps))

    if "pgd" in todo:
        steps, alpha = args.pgd_steps, 2.5 * eps / args.pgd_steps
        print(f"PGD Linf eps={eps} steps={steps} alpha={alpha:.4g} random start")
        b.ours("pgd", lambda: PGD(INF, eps, steps=steps, alpha=alpha, random_start=True), n, bstr(INF, eps))
        if peers and have("foolbox"):
            import foolbox as fb

            b.peer("pgd", "foolbox", foolbox_run(
                lambda: fb.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=True), eps), n,
                bstr(INF, eps))
        if peers and have("torchattacks"):
            import torchattacks as ta

            b.peer("pgd", "torchattacks", lambda m, x, y: ta.PGD(m, eps=eps, alpha=alpha, steps=steps,
                                                                 random_start=True)(x, y), n, bstr(INF, eps))
        if peers and have("art"):
            from art.attacks.evasion import ProjectedGradientDescentPyTorch

            b.peer("pgd", "ART", art_run(lambda c: ProjectedGradientDescentPyTorch(
                c, norm=np.inf, eps=eps, eps_step=alpha, max_iter=steps, num_random_init=1, batch_size=args.batch,
                verbose=False)), n, bstr(INF, eps))

    if "apgd-ce" in todo:
        print(f"APGD-CE Linf eps={eps} 100 steps, 1 restart")
        b.ours("apgd-ce", lambda: APGD(INF, eps, steps=100, loss="ce"), n, bstr(INF, eps))
        if peers and have("pyautoattack"):
            from pyautoattack.autopgd_base import APGDAttack

            b.peer("apgd-ce", "pyautoattack", lambda m, x, y: APGDAttack(
                m, n_iter=100, norm="Linf", n_restarts=1, eps=eps, seed=args.seed, loss="ce", device="cpu"
            ).perturb(x, y), n, bstr(INF, eps))
        if peers and have("torchattacks"):
            import torchattacks as ta

            b.peer("apgd-ce", "torchattacks", lambda m, x, y: ta.APGD(m, norm="Linf", eps=eps, steps=100,
                                                                     n_restarts=1, seed=args.seed, loss="ce")(x, y),
                   n, bstr(INF, eps))
        if peers and have("art"):
            from art.attacks.evasion import AutoProjectedGradientDescent

            b.peer("apgd-ce", "ART", art_run(lambda c: AutoProjectedGradientDescent(
                c, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=100, nb_random_init=1, batch_size=args.batch,
                loss_type="cross_entropy", verbose=False)), n, bstr(INF, eps))

    if "cw" in todo:
        run_cw(b, args, mstr(2))

    if "sparsefool" in todo:
        run_sparsefool(b, args, mstr)

    if "fmn" in todo:
        print("FMN L2 100 steps")
        b.ours("fmn", lambda: FMN(2, steps=100), n, mstr(2))
        if peers and have("foolbox"):
            import foolbox as fb

            b.peer("fmn", "foolbox", foolbox_run(lambda: fb.attacks.L2FMNAttack(steps=100)), n, mstr(2))

    if "autoattack" in todo:
        run_autoattack(b, args)


def run_cw(b: Bench, args: argparse.Namespace, strength: Callable[[Tensor, Tensor, Tensor], dict[str, float]]
           ) -> None:
    try:
        from robustlens.attacks.cw import CarliniWagner
    except ImportError:
        print("C&W: robustlens.attacks.cw not available, skipped")
        return
    n, slow = min(args.cw_n, args.n), min(args.slow_n, args.cw_n, args.n)
    bss, steps, lr, c0 = args.cw_search, args.cw_steps, 0.01, args.cw_const
    print(f"C&W L2 binary search {bss} x {steps} Adam steps, lr {lr}, c0 {c0}, kappa 0")
    b.ours("cw", lambda: CarliniWagner(steps=steps, binary_search_steps=bss, initial_const=c0, lr=lr), n, strength)
    if args.no_peers:
        return
    if have("foolbox"):
        import foolbox as fb

        b.peer("cw", "foolbox", foolbox_run(lambda: fb.attacks.L2CarliniWagnerAttack(
            binary_search_steps=bss, steps=steps, stepsize=lr, confidence=0, initial_const=c0, abort_early=True)),
            n, strength)
    if have("art"):
        from art.attacks.evasion import CarliniL2Method

        b.peer("cw", "ART", art_run(lambda c: CarliniL2Method(
            c, confidence=0.0, learning_rate=lr, binary_search_steps=bss, max_iter=steps, initial_const=c0,
            batch_size=args.batch, verbose=False)), slow, strength)
    if have("torchattacks"):
        import torchattacks as ta

        b.peer("cw", "torchattacks", lambda m, x, y: ta.CW(m, c=1.0, kappa=0, steps=steps * bss, lr=lr)(x, y), n,
               strength, note=f"no binary search: c=1, {steps * bss} steps")


def run_sparsefool(b: Bench, args: argparse.Namespace,
                   mstr: Callable[[float], Callable[[Tensor, Tensor, Tensor], dict[str, float]]]) -> None:
    try:
        from robustlens.attacks.sparsefool import SparseFool
    except ImportError:
        print("SparseFool: robustlens.attacks.sparsefool not available, skipped")
        return
    n, slow = args.n, min(args.slow_n, args.n)
    lam = 3.0
    print(f"SparseFool (lambda {lam}, 20 outer steps, overshoot 0.02); strength in L0 = pixels changed")
    b.ours("sparsefool", lambda: SparseFool(lam=lam, max_iter=20, overshoot=0.02), n, mstr(0))
    if not args.no_peers and have("torchattacks"):
        import torchattacks as ta

        b.peer("sparsefool", "torchattacks", lambda m, x, y: ta.SparseFool(m, steps=20, lam=lam, overshoot=0.02)(
            x, y), slow, mstr(0), note="per image")


def run_autoattack(b: Bench, args: argparse.Namespace) -> None:
    n, eps = min(args.aa_n, args.n), args.aa_eps
    x, y = b.x[:n], b.y[:n]
    print(f"AutoAttack standard Linf eps={eps} on {n} images")
    b.remeasure("autoattack")
    counts = [0, 0]

    def run() -> Tensor:
        res = autoattack(b.clf, x, y, "Linf", eps, seed=args.seed, progress=False)
        counts[0], counts[1] = res.queries["forward"], res.queries["backward"]
        return res.adversarial

    adv, sec, times = b.timed(run)
    b.add(Row("autoattack", "robustlens", n, sec, bounded_strength(b.model, x, y, adv, eps, INF), counts[0],
              counts[1], b.costs.floor(*counts), times=times))
    if args.no_peers:
        return
    if have("pyautoattack"):
        from pyautoattack import AutoAttack

        def pyaa(m: nn.Module, xs: Tensor, ys: Tensor) -> Tensor:
            ref = AutoAttack(m, norm="Linf", eps=eps, version="standard", seed=args.seed)
            ref.verbose = False
            adv, _ = ref.run_standard_evaluation(xs, ys, batch_size=args.batch)  # (adversarials, their labels)
            return adv

        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        b.peer("autoattack", "pyautoattack", pyaa, n, lambda xs, ys, a: bounded_strength(b.model, xs, ys, a, eps, INF),
               batched=False)
    if have("torchattacks"):
        import torchattacks as ta

        b.peer("autoattack", "torchattacks", lambda m, xs, ys: ta.AutoAttack(
            m, norm="Linf", eps=eps, version="standard", n_classes=10, seed=args.seed)(xs, ys), n,
            lambda xs, ys, a: bounded_strength(b.model, xs, ys, a, eps, INF), note="APGD 10 steps, not 100")


# ------------------------------------------------------------------------------------------------ output


def fmt_strength(row: Row) -> str:
    s = row.strength
    if "robust_accuracy" in s:
        out = f"robust acc {s['robust_accuracy']:.3f}"
        if s.get("outside_ball", 0) > 0:
            out += f" ({s['outside_ball']:.1%} outside the ball)"
        return out
    med = s["median_norm"]
    return f"success {s['success']:.3f}, median {'inf' if math.isinf(med) else f'{med:.4g}'}"


def markdown(rows: list[Row]) -> str:
    lines = ["| attack | library | n | time (s) | s / 100 img | passes / img | x floor | strength | note |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        ppi = "" if r.passes_per_image is None else f"{r.passes_per_image:.0f}"
        xf = "" if r.x_floor is None else f"{r.x_floor:.2f}"
        lines.append(f"| {r.attack} | {r.library} | {r.n} | {r.seconds:.2f} | {r.per_100:.2f} | {ppi} | {xf} | "
                     f"{fmt_strength(r)} | {r.note} |")
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    """The issue's targets, each stated as met or missed with its numbers."""
    by = {(r.attack, r.library): r for r in rows}
    out = []
    for a in ("fgsm", "pgd", "apgd-ce"):
        r = by.get((a, "robustlens"))
        if r and r.x_floor:
            out.append(f"{a}: {r.x_floor:.2f}x floor (target <= 1.15x): {'met' if r.x_floor <= 1.15 else 'MISSED'}")
    ours, fb = by.get(("deepfool", "robustlens")), by.get(("deepfool", "foolbox"))
    if ours and fb:
        speed = fb.seconds / ours.seconds
        mo, mf = ours.strength["median_norm"], fb.strength["median_norm"]
        ok = speed >= 3 and mo <= mf
        out.append(f"deepfool: {speed:.2f}x faster than foolbox, median L2 {mo:.4f} vs {mf:.4f} "
                   f"(target >= 3x at <= norm): {'met' if ok else 'MISSED'}")
    ours, ref = by.get(("autoattack", "robustlens")), by.get(("autoattack", "pyautoattack"))
    if ours and ref:
        speed = ref.seconds / ours.seconds
        ro, rr = ours.strength["robust_accuracy"], ref.strength["robust_accuracy"]
        ok = speed > 1 and ro <= rr
        out.append(f"autoattack: {speed:.2f}x faster than pyautoattack, robust accuracy {ro:.3f} vs {rr:.3f} "
                   f"(target faster at <= robust accuracy): {'met' if ok else 'MISSED'}")
    return out


# ------------------------------------------------------------------------------------------------ main


def train_model(args: argparse.Namespace) -> nn.Module:
    model = create_model("smallcnn", seed=args.seed)
    if args.model and os.path.exists(args.model):
        model.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=True))
        return model.eval()
    train = load_dataset("mnist-embedded", "train")
    fit(model, (train.x, train.y), epochs=args.epochs, lr=0.05, batch_size=64, seed=args.seed, progress=False)
    if args.model:
        torch.save(model.state_dict(), args.model)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images for the main attacks")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--slow-n", type=int, default=100, help="images for the per-image peers (torchattacks "
                    "DeepFool and SparseFool, ART C&W)")
    ap.add_argument("--cw-n", type=int, default=100, help="images for C&W")
    ap.add_argument("--cw-search", type=int, default=5, help="C&W binary search steps")
    ap.add_argument("--cw-steps", type=int, default=100, help="C&W Adam steps per search step")
    ap.add_argument("--cw-const", type=float, default=1e-2, help="C&W initial constant c")
    ap.add_argument("--aa-n", type=int, default=100, help="images for AutoAttack")
    ap.add_argument("--eps", type=float, default=0.1, help="Linf eps of FGSM, PGD, APGD")
    ap.add_argument("--pgd-steps", type=int, default=40)
    ap.add_argument("--aa-eps", type=float, default=0.2, help="Linf eps of AutoAttack")
    ap.add_argument("--attacks", default="", help=f"comma-separated subset of {','.join(ATTACKS)}")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per attack (the median is reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="", help="cache of the trained weights (trained and saved if missing)")
    ap.add_argument("--json", default="", help="write the rows and the machine as JSON here")
    ap.add_argument("--markdown", default="", help="write the markdown table here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = train_model(args)
    test = load_dataset("mnist-embedded", "test")
    ok = predict(model, test.x) == test.y
    keep = ok.nonzero().flatten()[: args.n]
    x, y = test.x[keep].contiguous(), test.y[keep].contiguous()
    args.n = x.shape[0]
    costs = measure_costs(model, x[: args.batch], y[: args.batch])
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    machine = {
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "load_before": load,
        "clean_accuracy": float(ok.float().mean()), "images": args.n,
        "t_forward_ms_per_image": 1e3 * costs.forward, "t_forward_backward_ms_per_image": 1e3 * costs.forward_backward,
    }
    print(f"model: smallcnn, clean accuracy {ok.float().mean():.4f} on the embedded MNIST test split; "
          f"{args.n} correctly classified images, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, load average {load[0]:.2f}")
    print(f"cost per image at batch {args.batch}: forward {1e3 * costs.forward:.3f} ms, forward+backward "
          f"{1e3 * costs.forward_backward:.3f} ms")
    b = Bench(model, x, y, args, costs)
    run_all(b, args)
    machine["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    machine["total_seconds"] = time.perf_counter() - t0
    machine["costs_per_attack"] = b.cost_log
    table = markdown(b.rows)
    checks = verdicts(b.rows)
    print()
    print(table)
    print()
    for c in checks:
        print(c)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n\n" + "\n".join(f"- {c}" for c in checks) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "args": vars(args), "targets": checks,
                       "rows": [asdict(r) | {"x_floor": r.x_floor, "per_100": r.per_100} for r in b.rows]}, f,
                      indent=2)


if __name__ == "__main__":
    main()
