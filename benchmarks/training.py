"""Training benchmarks and reproductions (docs/training.md, benchmarks/results/training.md).

    python benchmarks/training.py [--cpu-allocator tuned|default] timing [--batches 20] [--repeats 3]
                                         [--data mnist-embedded|mnist] [--only pgd-3,fgsm-rs] [--warmup]
        Epoch time of each objective as a multiple of a standard epoch (same model, data, batches, one thread),
        beside the floor (passes per step: k+1 for PGD-k, 2 for FGSM-RS), in wall-clock time (EpochRecord.time_s)
        and in process CPU time (less sensitive to other processes on a shared machine).
    python benchmarks/training.py repro NAME [--data mnist-embedded|mnist] [--device cpu|cuda] [--epochs E] ...
        NAME in: pgd-at, fgsm-rs, gradalign, fgsm-co, cure, standard, gaussian. Trains on MNIST and writes
        OUT/TAG/summary.json (clean accuracy, PGD-40 robust accuracy with Madry et al.'s step 0.01, the epochs flagged
        as catastrophic overfitting, certified accuracy for gaussian) beside the history and checkpoints.
    python benchmarks/training.py suite [--device cuda] [--out runs/suite] [--extra "--budget-minutes 3"]
        The reproductions of docs/training.md (SUITE below), as concurrent one-thread processes.
    python benchmarks/training.py table [--runs runs/suite] [--json FILE]
    python benchmarks/training.py figures [--runs runs/suite] [--co-runs runs/cpu] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from robustlens.classifier import Classifier
from robustlens.data import load_dataset
from robustlens.train import (
    CURE,
    FGSMAT,
    FGSMRS,
    OBJECTIVES,
    PGDAT,
    TRADES,
    CatastrophicOverfittingDetector,
    DeepFoolAT,
    GaussianAugmentation,
    GradAlign,
    Objective,
    RobustOverfittingTracker,
    Standard,
    fit,
    make_objective,
)
from robustlens.zoo import create_model

SHARED = Path(os.environ.get("ROBUSTLENS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MODEL_KW = {"width": 16, "hidden": 100}  # a narrower SmallCNN: robust MNIST training fits the CPU budget


def model(seed: int = 0, **kw: int) -> torch.nn.Module:
    return create_model("smallcnn", 10, seed=seed, **{**MODEL_KW, **kw})


# ---------------------------------------------------------------------------------------------------- timing
class CpuClock:
    """Process CPU seconds from the start of training to the end of the first epoch (no evaluation data, so that is
    the training epoch): unlike wall-clock time it does not count the time other processes hold the CPU (it still
    feels their use of the shared caches and memory bandwidth)."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.seconds = float("nan")

    def on_train_begin(self, trainer) -> None:  # noqa: ANN001
        self.t0 = time.process_time()

    def on_epoch_end(self, trainer, epoch: int, history) -> None:  # noqa: ANN001
        if epoch == 0:
            self.seconds = time.process_time() - self.t0


def timing(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = load_dataset(args.data, "train", root=SHARED / "mnist" if args.data == "mnist" else None)
    n = args.batches * args.batch_size
    x, y = data.x[:n], data.y[:n]
    eps = 0.3
    objectives: dict[str, Objective] = {
        "standard": Standard(),
        "fgsm": FGSMAT(eps),
        "fgsm-rs": FGSMRS(eps),
        "pgd-3": PGDAT(eps, steps=3),
        "pgd-7": PGDAT(eps, steps=7),
        "pgd-10": PGDAT(eps, steps=10),
        "pgd-40": PGDAT(eps, steps=40, step_size=0.01),
        "trades-10": TRADES(eps, steps=10),
        "gradalign": GradAlign(eps),
        "gradalign-detach": GradAlign(eps, detach_clean=True),
        "gradalign-rs": GradAlign(eps, random_start=True),
        "cure": CURE(h=0.5, lam=1.0),
        "deepfool": DeepFoolAT(max_iter=5),
        "gaussian": GaussianAugmentation(0.25),
    }
    if args.only:
        keep = ["standard"] + [k for k in args.only.split(",") if k != "standard"]
        unknown = [k for k in keep if k not in objectives]
        if unknown:
            raise SystemExit(f"unknown objectives {unknown}; choose from {', '.join(objectives)}")
        objectives = {k: objectives[k] for k in keep}
    floor = {"standard": 1, "fgsm": 2, "fgsm-rs": 2, "pgd-3": 4, "pgd-7": 8, "pgd-10": 11, "pgd-40": 41,
             "trades-10": 12, "gaussian": 1}
    times: dict[str, list[float]] = {k: [] for k in objectives}  # wall-clock seconds of the epoch
    cpu_times: dict[str, list[float]] = {k: [] for k in objectives}  # process CPU seconds
    if args.warmup:  # one-time costs of the process (kernel selection, allocator growth) outside the timed runs
        for obj in objectives.values():
            fit(model(), (x[:args.batch_size], y[:args.batch_size]), objective=obj, epochs=1, lr=0.05,
                batch_size=args.batch_size, progress=False, seed=0)
    for _ in range(args.repeats):  # interleave objectives so machine-load drift hits all of them alike
        for name, obj in objectives.items():
            m = model()
            clock = CpuClock()
            h = fit(m, (x, y), objective=obj, epochs=1, lr=0.05, batch_size=args.batch_size, progress=False,
                    seed=0, callbacks=[clock])
            times[name].append(h.last.time_s)
            cpu_times[name].append(clock.seconds)
    base = statistics.median(times["standard"])
    cpu_base = statistics.median(cpu_times["standard"])
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU") if Path("/proc/cpuinfo").exists() else "unknown CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {cpu}, torch {torch.__version__}, 1 thread, {args.batches} batches of {args.batch_size}, "
          f"smallcnn{MODEL_KW}, median of {args.repeats}, load average {load:.1f} at the end, "
          f"CPU allocator {args.cpu_allocator}")
    print("| objective | epoch time (s) | x standard | CPU time (s) | x standard (CPU) | floor (passes) | "
          "ratio / floor (wall, CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name in objectives:
        t, c = statistics.median(times[name]), statistics.median(cpu_times[name])
        r, rc = t / base, c / cpu_base
        fl = floor.get(name)
        rows.append({"objective": name, "seconds": t, "ratio": r, "cpu_seconds": c, "cpu_ratio": rc, "floor": fl,
                     "all_seconds": times[name], "all_cpu_seconds": cpu_times[name]})
        fs = "-" if fl is None else str(fl)
        rf = "-" if fl is None else f"{r / fl:.2f}, {rc / fl:.2f}"
        print(f"| {name} | {t:.2f} | {r:.2f} | {c:.2f} | {rc:.2f} | {fs} | {rf} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


# ---------------------------------------------------------------------------------------------------- repro
def _eval_sets(name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    sets = {}
    held = load_dataset(name, "test", root=SHARED / "mnist" if name == "mnist" else None)
    sets["heldout"] = (held.x, held.y)
    if name != "mnist":
        try:
            full = load_dataset("mnist", "test", root=SHARED / "mnist")
            sets["mnist-test"] = (full.x, full.y)
        except Exception as e:  # the real test set is optional
            print(f"real MNIST test set unavailable: {e}", file=sys.stderr)
    return sets


def pgd_eval(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 40,
             alpha: float = 0.01, restarts: int = 1, seed: int = 1) -> float:
    """PGD-``steps`` robust accuracy (Linf, step ``alpha``, random start; Madry et al.'s MNIST evaluation)."""
    from robustlens.attacks.pgd import PGD

    clf = Classifier(m, bounds=(0, 1))
    attack = PGD(norm="inf", eps=eps, steps=steps, alpha=alpha, random_start=True, restarts=restarts)
    robust = 0
    for i in range(0, x.shape[0], 1000):
        xb, yb = x[i:i + 1000].to(clf.device), y[i:i + 1000].to(clf.device)
        res = attack(clf, xb, yb, seed=seed, indices=torch.arange(i, i + xb.shape[0]))
        robust += int((res.clean_correct & ~res.success).sum())
    return robust / x.shape[0]


class PrintEpoch:
    """Prints one line per epoch (the run logs)."""

    def on_epoch_end(self, trainer, epoch: int, history) -> None:  # noqa: ANN001
        r = history.records[-1]
        print(f"epoch {epoch + 1}: {r.time_s:.1f}s train={ {k: round(v, 4) for k, v in r.train.items()} } "
              f"eval={ {k: round(v, 4) for k, v in r.eval.items()} } metrics={r.metrics}", flush=True)


class TimeBudget:
    """Stops training once the training time exceeds ``minutes`` (a safety net for fixed-length jobs)."""

    def __init__(self, minutes: float | None) -> None:
        self.limit = None if minutes is None else 60.0 * minutes
        self.t0 = time.perf_counter()

    def on_epoch_end(self, trainer, epoch: int, history) -> None:  # noqa: ANN001
        if self.limit is not None and time.perf_counter() - self.t0 > self.limit:
            trainer.stop_training = True
            trainer.stop_reason = f"time budget of {self.limit / 60:.1f} min reached after epoch {epoch + 1}"


#: reproduction -> (the registered objective, its constructor keyword -> the argparse option that sets it)
REPRODUCTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "pgd-at": ("pgd", {"steps": "steps", "step_size": "alpha"}),
    "fgsm-rs": ("fgsm-rs", {"alpha": "alpha"}),
    "gradalign": ("gradalign", {"lam": "lam", "detach_clean": "detach_clean", "random_start": "random_start",
                                "alpha": "alpha", "clip_noise": "clip_noise"}),
    "fgsm-co": ("fgsm", {}),
    "cure": ("cure", {"h": "h", "lam": "lam"}),
    "standard": ("standard", {}),
    "gaussian": ("gaussian", {}),
}


def repro_objective(args: argparse.Namespace) -> Objective:
    """The objective of reproduction ``args.name``, built by the registry's one factory (``make_objective``)."""
    if args.name not in REPRODUCTIONS:
        raise SystemExit(f"unknown reproduction {args.name}; choose {', '.join(REPRODUCTIONS)}")
    registered, options = REPRODUCTIONS[args.name]
    radius = OBJECTIVES.entry(registered).meta["radius"]
    eps = None if radius is None else (args.sigma if radius == "sigma" else args.eps)
    values = {**vars(args), "clip_noise": not args.unclipped_noise}
    return make_objective(registered, eps, **{kw: values[opt] for kw, opt in options.items()})


def certify_curve(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float, n: int, out: Path,
                  batch: int) -> dict:
    """Cohen et al.'s CERTIFY (n0 = 100, alpha = 0.001) on ``x`` and the certified accuracy at radii 0..2."""
    from robustlens.certify import Smoothed

    sm = Smoothed(Classifier(m, bounds=(0, 1)), sigma)
    t = time.perf_counter()
    res = sm.certify(x, y, n0=100, n=n, alpha=0.001, batch_size=batch, seed=0)
    secs = time.perf_counter() - t
    res.save(out / "certify.json")
    radii = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    acc = res.certified_accuracy(radii)
    return {"sigma": sigma, "n": n, "n0": 100, "alpha": 0.001, "images": int(x.shape[0]), "seconds": secs,
            "radii": radii, "certified_accuracy": [float(a) for a in acc]}


def plan_epochs(args: argparse.Namespace, obj, tx: torch.Tensor, ty: torch.Tensor) -> int:  # noqa: ANN001
    """The number of epochs (at most ``--epochs``) whose training fits ``--budget-minutes``, from the time of 30
    steps measured on a throw-away copy of the model (so the one-cycle schedule always runs to its end)."""
    probe = model(args.seed, width=args.width, hidden=args.hidden).to(args.device)
    steps = 30
    n = steps * args.batch_size
    fit(probe, (tx[:args.batch_size], ty[:args.batch_size]), objective=obj, epochs=1, lr=args.lr,
        optimizer=args.optimizer, batch_size=args.batch_size, progress=False, device=args.device)  # warm-up
    h = fit(probe, (tx[:n], ty[:n]), objective=obj, epochs=1, lr=args.lr, optimizer=args.optimizer,
            batch_size=args.batch_size, progress=False, device=args.device)
    per_epoch = h.last.time_s / steps * -(-tx.shape[0] // args.batch_size)
    epochs = max(1, min(args.epochs, int(60 * args.budget_minutes / per_epoch)))
    print(f"planned {epochs} epochs: {per_epoch:.1f} s per epoch measured, budget {args.budget_minutes} min",
          flush=True)
    return epochs


def repro(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    name, eps = args.name, args.eps
    train = load_dataset(args.data, "train", root=SHARED / "mnist" if args.data == "mnist" else None)
    tx, ty = train.x, train.y
    if args.train_n:
        tx, ty = tx[:args.train_n], ty[:args.train_n]
    sets = _eval_sets(args.data)
    hx, hy = sets["heldout"]
    n_track = args.n_track
    callbacks: list = []
    obj = repro_objective(args)
    if name in ("fgsm-co", "fgsm-rs", "gradalign"):
        callbacks.append(CatastrophicOverfittingDetector(hx[-n_track:], hy[-n_track:], eps=eps, n=None,
                                                         action="warn", pgd_steps=10))
    elif name != "gaussian":
        callbacks.append(RobustOverfittingTracker(hx[-n_track:], hy[-n_track:], eps=eps, steps=10))
    callbacks += [PrintEpoch(), TimeBudget(args.max_minutes)]
    out = Path(args.out) / (args.tag or name)
    epochs = args.epochs
    if args.budget_minutes:
        epochs = plan_epochs(args, obj, tx, ty)
    m = model(args.seed, width=args.width, hidden=args.hidden).to(args.device)
    t0 = time.perf_counter()
    hist = fit(m, (tx, ty), objective=obj, epochs=epochs, lr=args.lr, schedule=args.schedule,
               optimizer=args.optimizer, weight_decay=args.wd, batch_size=args.batch_size, seed=args.seed,
               eval_data=(hx, hy), callbacks=callbacks, out_dir=out, resume=True, progress=False,
               device=args.device)
    train_time = sum(r.time_s for r in hist.records)
    summary: dict = {"name": name, "tag": args.tag or name, "config": hist.config, "train_seconds": train_time,
                     "epochs_done": len(hist.records), "stopped_early": hist.stopped_early,
                     "stop_reason": hist.stop_reason, "seconds_per_epoch": train_time / max(1, len(hist.records)),
                     "wall_seconds_incl_eval": time.perf_counter() - t0, "eps": eps, "data": args.data,
                     "train_samples": int(tx.shape[0]), "model": {"name": "smallcnn", "width": args.width,
                                                                  "hidden": args.hidden},
                     "device": str(args.device), "torch": torch.__version__, "epochs_requested": args.epochs,
                     "epochs_planned": epochs}
    flagged = [r.epoch + 1 for r in hist.records if r.metrics.get("catastrophic_overfitting")]
    if name in ("fgsm-co", "fgsm-rs", "gradalign"):
        summary["catastrophic_overfitting_epochs"] = flagged
    m.eval()
    clf = Classifier(m, bounds=(0, 1))
    for key, (x, y) in sets.items():
        summary[f"clean_{key}"] = clf.accuracy(x.to(clf.device), y.to(clf.device))
    ne = args.n_eval
    summary["n_pgd_eval"] = min(ne, int(hx.shape[0]))
    if name != "gaussian":
        summary["pgd40_heldout"] = pgd_eval(m, hx[:ne], hy[:ne], eps)
    if name in ("cure", "standard", "gaussian"):
        for e in (0.1, 0.2):
            summary[f"pgd40_heldout_eps{e}"] = pgd_eval(m, hx[:ne], hy[:ne], e, alpha=e / 30)
    if name == "gaussian" and args.n_cert:
        summary["certification"] = certify_curve(m, hx[:args.n_cert], hy[:args.n_cert], args.sigma, args.cert_n,
                                                 out, args.cert_batch)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


# ---------------------------------------------------------------------------------------------------- suite
# The reproductions run for docs/training.md: (tag, argv). Full MNIST (60,000 training images), SmallCNN width 32 /
# hidden 256, Adam with a one-cycle learning rate of peak 5e-3, batch 100, 10 epochs: the fast-AT MNIST recipe of
# Wong, Rice and Kolter (2020) (their PGD-AT baseline: 40 steps of 0.01).
_COMMON = ["--data", "mnist", "--optimizer", "adam", "--lr", "5e-3", "--wd", "0", "--batch-size", "100",
           "--width", "32", "--hidden", "256", "--n-eval", "10000"]
SUITE: dict[str, list[str]] = {
    "pgd40-at": ["pgd-at", "--steps", "40", "--alpha", "0.01", "--epochs", "10"],
    "pgd10-at": ["pgd-at", "--steps", "10", "--alpha", "0.04", "--epochs", "10"],
    "fgsm-rs": ["fgsm-rs", "--alpha", "0.375", "--epochs", "10"],
    "gradalign": ["gradalign", "--lam", "1.0", "--epochs", "10"],
    "fgsm-co": ["fgsm-co", "--epochs", "10"],
    "fgsm-co-eps0.4": ["fgsm-co", "--eps", "0.4", "--epochs", "10"],
    "fgsm-rs-eps0.4": ["fgsm-rs", "--eps", "0.4", "--alpha", "0.5", "--epochs", "10"],
    "gradalign-eps0.4": ["gradalign", "--eps", "0.4", "--lam", "2.0", "--epochs", "10"],
    "cure": ["cure", "--h", "1.5", "--lam", "4", "--epochs", "10"],
    "cure-h3": ["cure", "--h", "3.0", "--lam", "1", "--epochs", "10"],
    "standard": ["standard", "--epochs", "10"],
    "gaussian-0.25": ["gaussian", "--sigma", "0.25", "--epochs", "10", "--n-cert", "500"],
    "gaussian-0.5": ["gaussian", "--sigma", "0.5", "--epochs", "10", "--n-cert", "500"],
}


def suite(args: argparse.Namespace) -> None:
    """Run the reproductions of SUITE as concurrent processes (one thread each), logs in OUT/logs/TAG.log."""
    import subprocess

    tags = list(SUITE) if not args.only else args.only.split(",")
    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = {}
    for tag in tags:
        argv = [sys.executable, __file__, "repro", *SUITE[tag], *_COMMON, "--tag", tag, "--out", str(out),
                "--device", args.device, *(args.extra.split() if args.extra else [])]
        log = open(out / "logs" / f"{tag}.log", "w")  # noqa: SIM115
        procs[tag] = (subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    for tag, (p, log) in procs.items():
        rc = p.wait()
        log.close()
        print(f"{tag}: exit {rc}", flush=True)
    table(argparse.Namespace(runs=str(out)))


def table(args: argparse.Namespace) -> None:
    """A markdown table of the summaries under RUNS."""
    print("| run | epochs | train s | s/epoch | clean | PGD-40 eps=0.3 | PGD-40 eps=0.1 | CO flagged at |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    summaries = []
    for f in sorted(Path(args.runs).glob("*/summary.json")):
        s = json.loads(f.read_text())
        summaries.append(s)

        def g(k: str, s: dict = s) -> str:
            v = s.get(k)
            return "-" if v is None else f"{100 * v:.1f}"
        co = s.get("catastrophic_overfitting_epochs")
        print(f"| {s['tag']} | {s['epochs_done']} | {s['train_seconds']:.0f} | {s['seconds_per_epoch']:.1f} | "
              f"{g('clean_heldout')} | {g('pgd40_heldout')} | {g('pgd40_heldout_eps0.1')} | "
              f"{'-' if co is None else (co or 'never')} |")
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(summaries, indent=1))


# ---------------------------------------------------------------------------------------------------- figures
def _histories(runs: Path, tags: list[str]) -> dict:
    from robustlens.train import TrainingHistory

    out = {}
    for t in tags:
        f = runs / t / "history.json"
        if f.is_file():
            out[t] = TrainingHistory.load(f)
    return out


#: Cost of one epoch in standard epochs (quiet-CPU medians of the timing benchmark with the tuned allocator,
#: BENCHMARKS.md).
EPOCH_COST = {"standard": 1.0, "fgsm": 2.04, "fgsm-rs": 2.17, "gradalign": 5.15, "gradalign-detach": 4.09,
              "gradalign-rs": 5.56, "pgd-10": 10.83, "pgd-40": 40.01, "cure": 4.36, "gaussian": 1.10}


def run_cost(s: dict) -> float:
    """Training cost of a run in standard epochs: its epochs times the per-epoch cost of its objective."""
    name, obj = s["config"]["objective"], s["config"]["objective_config"]
    if name == "pgd":
        key = "pgd-40" if obj.get("steps") == 40 else "pgd-10"
    elif name == "gradalign":
        key = ("gradalign-detach" if obj.get("detach_clean") else
               "gradalign-rs" if obj.get("random_start") else "gradalign")
    else:
        key = name
    return s["epochs_done"] * EPOCH_COST[key]


def schedules_figure(root: Path, path: Path) -> None:
    """Per-epoch PGD-10 accuracy of the equal-schedule runs under ROOT/e10 (and of GradAlign from a random start at
    lam 0.03, ROOT/gradalign-rs) and final PGD-40 accuracy against training cost for every run under ROOT
    (docs/training.md, "Equal schedules")."""
    import matplotlib.pyplot as plt

    from robustlens.train import TrainingHistory

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    curves = sorted((root / "e10").glob("*/history.json")) + [root / "gradalign-rs" / "ga-rs-l0.03" / "history.json"]
    for f in curves:
        h = TrainingHistory.load(f)
        rob = h.series("metrics.robust_accuracy")
        if all(v != v for v in rob):
            rob = h.series("metrics.pgd_accuracy")
        axes[0].plot([r.epoch + 1 for r in h.records], rob, marker="o", ms=3, label=f.parent.name)
    axes[0].set(xlabel="epoch", ylabel="PGD-10 accuracy (500 test images)", title="10-epoch schedule, eps = 0.3")
    axes[0].legend(fontsize=7)
    for f in sorted(root.glob("*/*/summary.json")):
        s = json.loads(f.read_text())
        marker = {"e3": "s", "e10": "o", "gradalign-rs": "D"}.get(f.parent.parent.name, "^")
        axes[1].scatter(run_cost(s), 100 * s["pgd40_heldout"], marker=marker)
        axes[1].annotate(f.parent.name, (run_cost(s), 100 * s["pgd40_heldout"]), fontsize=6, xytext=(3, 2),
                         textcoords="offset points")
    axes[1].set(xlabel="training cost (standard epochs)", ylabel="PGD-40 accuracy, eps 0.3 (10,000)")
    axes[1].set_title("squares: 3 epochs, circles: 10, triangles: GradAlign variants (7),\ndiamonds: GradAlign "
                      "sweep and seeds (10)", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def figures(args: argparse.Namespace) -> None:
    """docs/figures/training_curves.png (robust and clean accuracy per epoch of the main runs),
    training_catastrophic.png (PGD / FGSM accuracy and gradient cosine of the single-step runs, flagged epochs in red)
    and training_certified.png (certified accuracy vs L2 radius of the Gaussian-augmented models)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustlens.certify.smoothing import CertifyResult

    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    main = _histories(runs, ["pgd10-at", "fgsm-rs", "gradalign", "cure", "cure-h3", "standard"])
    if main:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for name, h in main.items():
            ep = [r.epoch + 1 for r in h.records]
            rob = h.series("metrics.robust_accuracy")
            if all(v != v for v in rob):
                rob = h.series("metrics.pgd_accuracy")
            axes[0].plot(ep, rob, marker="o", ms=3, label=name)
            axes[1].plot(ep, h.series("eval.accuracy"), marker="o", ms=3, label=name)
        axes[0].set(xlabel="epoch", ylabel="PGD-10 accuracy", title="robust accuracy, eps = 0.3 (500 test images)")
        axes[1].set(xlabel="epoch", ylabel="clean accuracy", title="clean accuracy (10,000 test images)")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "training_curves.png", dpi=90)
        plt.close(fig)
    co_runs = Path(args.co_runs) if args.co_runs else runs
    co = _histories(co_runs, ["fgsm-co", "fgsm-rs", "gradalign", "pgd-at"])
    if co:
        fig, axes = plt.subplots(1, len(co), figsize=(3.2 * len(co), 3.0), sharey=True)
        for ax, (name, h) in zip(list(axes) if len(co) > 1 else [axes], co.items(), strict=True):
            ep = [r.epoch + 1 for r in h.records]
            pgd = h.series("metrics.pgd_accuracy")
            if all(v != v for v in pgd):  # PGD-AT runs carry the robust-overfitting tracker instead
                pgd = h.series("metrics.robust_accuracy")
            ax.plot(ep, h.series("metrics.fgsm_accuracy"), marker="o", ms=3, label="FGSM acc.")
            ax.plot(ep, pgd, marker="o", ms=3, label="PGD-10 acc.")
            ax.plot(ep, h.series("metrics.grad_cosine"), marker="s", ms=3, label="grad. cosine")
            for e, r in zip(ep, h.records, strict=True):
                if r.metrics.get("catastrophic_overfitting"):
                    ax.axvspan(e - 0.4, e + 0.4, color="red", alpha=0.12)
            ax.set(xlabel="epoch", title=name)
            ax.grid(alpha=0.3)
        (axes[0] if len(co) > 1 else axes).legend(fontsize=7)
        fig.suptitle("training at eps = 0.3 (red: flagged as catastrophic overfitting)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "training_catastrophic.png", dpi=90)
        plt.close(fig)
    if args.schedules:
        schedules_figure(Path(args.schedules), out / "training_schedules.png")
    certs = {t: runs / t / "certify.json" for t in ("gaussian-0.25", "gaussian-0.5")}
    certs = {t: f for t, f in certs.items() if f.is_file()}
    if certs:
        fig, ax = plt.subplots(figsize=(4.8, 3.2))
        for f in certs.values():
            res = CertifyResult.load(f)
            res.curve().plot(ax=ax, label=f"sigma = {res.sigma:g}")
        ax.set_title("MNIST, Gaussian augmentation: certified accuracy", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "training_certified.png", dpi=90)
        plt.close(fig)
    print(f"figures written to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-allocator", choices=["tuned", "default"], default="tuned",
                    help="tuned: keep freed CPU buffers with the process (robustlens.perf, as the CLI does); "
                         "default: glibc's own thresholds")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--batches", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--json", default=None)
    t.add_argument("--data", default="mnist-embedded")
    t.add_argument("--only", default="", help="comma-separated objectives to time beside standard (default: all)")
    t.add_argument("--warmup", action="store_true", help="one untimed step of each objective first")
    r = sub.add_parser("repro")
    r.add_argument("name")
    r.add_argument("--out", default="runs/repro")
    r.add_argument("--tag", default=None, help="run folder name (default: NAME)")
    r.add_argument("--data", default="mnist-embedded")
    r.add_argument("--train-n", type=int, default=0, help="train on the first N images only (0: all)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--width", type=int, default=MODEL_KW["width"])
    r.add_argument("--hidden", type=int, default=MODEL_KW["hidden"])
    r.add_argument("--epochs", type=int, default=15)
    r.add_argument("--eps", type=float, default=0.3)
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--alpha", type=float, default=None, help="step size (PGD-AT, FGSM-RS)")
    r.add_argument("--lam", type=float, default=0.2)
    r.add_argument("--detach-clean", action="store_true", help="gradalign: hold the clean input gradient constant")
    r.add_argument("--random-start", action="store_true",
                   help="gradalign: FGSM step from the regulariser's uniform point (step --alpha, default 1.25 eps)")
    r.add_argument("--unclipped-noise", action="store_true",
                   help="gradalign: take the noisy gradient at x + eta without clipping to [0, 1] (the authors' code)")
    r.add_argument("--h", type=float, default=0.5)
    r.add_argument("--sigma", type=float, default=0.25)
    r.add_argument("--n-cert", type=int, default=0, help="gaussian: certify this many held-out images")
    r.add_argument("--cert-n", type=int, default=100_000)
    r.add_argument("--cert-batch", type=int, default=10_000)
    r.add_argument("--lr", type=float, default=0.05)
    r.add_argument("--wd", type=float, default=5e-4)
    r.add_argument("--schedule", default="onecycle")
    r.add_argument("--optimizer", default="sgd")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--n-eval", type=int, default=1000)
    r.add_argument("--n-track", type=int, default=500)
    r.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    r.add_argument("--budget-minutes", type=float, default=None,
                   help="train for as many epochs (at most --epochs) as fit in this time, measured first")
    s = sub.add_parser("suite")
    s.add_argument("--out", default="runs/suite")
    s.add_argument("--device", default="cpu")
    s.add_argument("--only", default="", help="comma-separated tags of SUITE")
    s.add_argument("--extra", default="", help="extra arguments for every run")
    tb = sub.add_parser("table")
    tb.add_argument("--runs", default="runs/suite")
    tb.add_argument("--json", default=None, help="also write the summaries to this file")
    f = sub.add_parser("figures")
    f.add_argument("--runs", default="runs/suite", help="the suite's runs")
    f.add_argument("--co-runs", default=None, help="runs of fgsm-co / fgsm-rs / gradalign (default: --runs)")
    f.add_argument("--out", default="docs/figures")
    f.add_argument("--schedules", default=None,
                   help="folder of the equal-schedule runs (e3/, e10/, gradalign-variants/): training_schedules.png")
    args = ap.parse_args()
    if args.cpu_allocator == "tuned":
        from robustlens.perf import tune_cpu_allocator

        tune_cpu_allocator()
    {"timing": timing, "repro": repro, "suite": suite, "table": table, "figures": figures}[args.cmd](args)


if __name__ == "__main__":
    main()
