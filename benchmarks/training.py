"""Training benchmarks and reproductions (docs/training.md, BENCHMARKS.md "Training").

    python benchmarks/training.py timing [--batches 20] [--repeats 3]
        Epoch time of each objective as a multiple of a standard epoch (same model, data, batches, one thread),
        beside the floor (passes per step: k+1 for PGD-k, 2 for FGSM-RS).
    python benchmarks/training.py repro NAME [--out runs/repro] [--epochs E] [--data mnist-embedded|mnist]
        NAME in: pgd-at, fgsm-rs, gradalign, fgsm-co, cure, standard. Trains on MNIST, evaluates clean accuracy on
        the held-out split and on the real 10,000-image MNIST test set, and PGD-40 robust accuracy, and writes
        OUT/NAME/summary.json beside the history and checkpoints.
    python benchmarks/training.py figures [--runs runs/repro] [--out docs/figures]
"""

from __future__ import annotations

import argparse
import json
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
    PGDAT,
    TRADES,
    CatastrophicOverfittingDetector,
    DeepFoolAT,
    GaussianAugmentation,
    GradAlign,
    RobustOverfittingTracker,
    Standard,
    fit,
)
from robustlens.zoo import create_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL_KW = {"width": 16, "hidden": 100}  # a narrower SmallCNN: robust MNIST training fits the CPU budget


def model(seed: int = 0) -> torch.nn.Module:
    return create_model("smallcnn", 10, seed=seed, **MODEL_KW)


# ---------------------------------------------------------------------------------------------------- timing
def timing(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    data = load_dataset("mnist-embedded", "train")
    n = args.batches * args.batch_size
    x, y = data.x[:n], data.y[:n]
    eps = 0.3
    objectives = {
        "standard": Standard(),
        "fgsm": FGSMAT(eps),
        "fgsm-rs": FGSMRS(eps),
        "pgd-3": PGDAT(eps, steps=3),
        "pgd-7": PGDAT(eps, steps=7),
        "pgd-10": PGDAT(eps, steps=10),
        "trades-10": TRADES(eps, steps=10),
        "gradalign": GradAlign(eps),
        "cure": CURE(h=0.5, lam=1.0),
        "deepfool": DeepFoolAT(max_iter=5),
        "gaussian": GaussianAugmentation(0.25),
    }
    floor = {"standard": 1, "fgsm": 2, "fgsm-rs": 2, "pgd-3": 4, "pgd-7": 8, "pgd-10": 11, "trades-10": 12,
             "gaussian": 1}
    times: dict[str, list[float]] = {k: [] for k in objectives}
    for _ in range(args.repeats):  # interleave objectives so machine-load drift hits all of them alike
        for name, obj in objectives.items():
            m = model()
            h = fit(m, (x, y), objective=obj, epochs=1, lr=0.05, batch_size=args.batch_size, progress=False,
                    seed=0)
            times[name].append(h.last.time_s)
    base = statistics.median(times["standard"])
    print(f"# torch {torch.__version__}, 1 thread, {args.batches} batches of {args.batch_size}, "
          f"smallcnn{MODEL_KW}, median of {args.repeats}")
    print("| objective | epoch time (s) | x standard | floor (passes) | ratio / floor |")
    print("|---|---:|---:|---:|---:|")
    rows = []
    for name in objectives:
        t = statistics.median(times[name])
        r = t / base
        fl = floor.get(name)
        rows.append({"objective": name, "seconds": t, "ratio": r, "floor": fl})
        fs = "-" if fl is None else str(fl)
        rf = "-" if fl is None else f"{r / fl:.2f}"
        print(f"| {name} | {t:.2f} | {r:.2f} | {fs} | {rf} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


# ---------------------------------------------------------------------------------------------------- repro
def _eval_sets(name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    sets = {}
    held = load_dataset(name, "test", root=SHARED / "mnist" if name == "mnist" else None)
    sets["heldout"] = (held.x, held.y)
    try:
        full = load_dataset("mnist", "test", root=SHARED / "mnist")
        sets["mnist-test"] = (full.x, full.y)
    except Exception as e:  # the real test set is optional
        print(f"real MNIST test set unavailable: {e}", file=sys.stderr)
    return sets


def pgd_eval(m: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 40,
             alpha: float = 0.01, restarts: int = 1, seed: int = 1) -> float:
    from robustlens.attacks.pgd import PGD

    clf = Classifier(m, bounds=(0, 1))
    attack = PGD(norm="inf", eps=eps, steps=steps, alpha=alpha, random_start=True, restarts=restarts)
    robust = 0
    for i in range(0, x.shape[0], 500):
        res = attack(clf, x[i:i + 500], y[i:i + 500], seed=seed, indices=torch.arange(i, min(i + 500, x.shape[0])))
        robust += int((res.clean_correct & ~res.success).sum())
    return robust / x.shape[0]


class PrintEpoch:
    """Prints one line per epoch (the run logs)."""

    def on_epoch_end(self, trainer, epoch: int, history) -> None:  # noqa: ANN001
        r = history.records[-1]
        print(f"epoch {epoch + 1}: {r.time_s:.1f}s train={ {k: round(v, 4) for k, v in r.train.items()} } "
              f"eval={ {k: round(v, 4) for k, v in r.eval.items()} } metrics={r.metrics}", flush=True)


def repro(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    name = args.name
    eps = args.eps
    train = load_dataset(args.data, "train", root=SHARED / "mnist" if args.data == "mnist" else None)
    sets = _eval_sets("mnist-embedded" if args.data == "mnist-embedded" else "mnist")
    hx, hy = sets["heldout"]
    n_track = 500
    callbacks: list = []
    lr, epochs = args.lr, args.epochs
    if name == "pgd-at":
        obj = PGDAT(eps, steps=args.steps)
    elif name == "fgsm-rs":
        obj = FGSMRS(eps, alpha=args.alpha)
    elif name == "gradalign":
        obj = GradAlign(eps, lam=args.lam)
    elif name == "fgsm-co":
        obj = FGSMAT(eps)
    elif name == "cure":
        obj = CURE(h=args.h, lam=args.lam)
    elif name == "standard":
        obj = Standard()
    else:
        raise SystemExit(f"unknown reproduction {name}")
    if name in ("fgsm-co", "fgsm-rs", "gradalign"):
        callbacks.append(CatastrophicOverfittingDetector(hx[-n_track:], hy[-n_track:], eps=eps, n=None,
                                                         action="warn", pgd_steps=10))
    else:
        callbacks.append(RobustOverfittingTracker(hx[-n_track:], hy[-n_track:], eps=eps, steps=10))
    callbacks.append(PrintEpoch())
    out = Path(args.out) / name
    m = model(args.seed)
    t0 = time.perf_counter()
    hist = fit(m, train, objective=obj, epochs=epochs, lr=lr, schedule=args.schedule, optimizer=args.optimizer,
               weight_decay=args.wd, batch_size=args.batch_size, seed=args.seed, eval_data=(hx, hy),
               callbacks=callbacks, out_dir=out, resume=True, progress=False)
    train_time = sum(r.time_s for r in hist.records)
    summary: dict = {"name": name, "objective": hist.config, "train_seconds": train_time,
                     "wall_seconds_incl_eval": time.perf_counter() - t0, "eps": eps, "data": args.data}
    m.eval()
    clf = Classifier(m, bounds=(0, 1))
    for key, (x, y) in sets.items():
        summary[f"clean_{key}"] = clf.accuracy(x, y)
    ne = args.n_eval
    summary["n_pgd_eval"] = ne
    summary["pgd40_heldout"] = pgd_eval(m, hx[:ne], hy[:ne], eps)
    if name == "cure" or name == "standard":
        summary["pgd40_heldout_eps0.1"] = pgd_eval(m, hx[:ne], hy[:ne], 0.1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


# ---------------------------------------------------------------------------------------------------- figures
def figures(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustlens.train import TrainingHistory

    runs = Path(args.runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hists = {}
    for d in sorted(runs.iterdir()):
        if (d / "history.json").is_file():
            hists[d.name] = TrainingHistory.load(d / "history.json")
    if not hists:
        raise SystemExit(f"no histories under {runs}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, h in hists.items():
        ep = [r.epoch + 1 for r in h.records]
        rob = h.series("metrics.robust_accuracy")
        if all(v != v for v in rob):
            rob = h.series("metrics.pgd_accuracy")
        axes[0].plot(ep, rob, marker="o", label=name)
        axes[1].plot(ep, h.series("eval.accuracy"), marker="o", label=name)
    axes[0].set(xlabel="epoch", ylabel="PGD-10 accuracy (held-out)", title="robust accuracy, eps=0.3")
    axes[1].set(xlabel="epoch", ylabel="clean accuracy (held-out)", title="clean accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=110)
    if "fgsm-co" in hists:
        h = hists["fgsm-co"]
        ep = [r.epoch + 1 for r in h.records]
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.plot(ep, h.series("metrics.fgsm_accuracy"), marker="o", label="FGSM accuracy")
        ax.plot(ep, h.series("metrics.pgd_accuracy"), marker="o", label="PGD-10 accuracy")
        ax.plot(ep, h.series("metrics.grad_cosine"), marker="s", label="gradient cosine")
        flagged = [e for e, r in zip(ep, h.records, strict=True) if r.metrics.get("catastrophic_overfitting")]
        for e in flagged:
            ax.axvline(e, color="red", alpha=0.2)
        ax.set(xlabel="epoch", title="FGSM-AT: catastrophic overfitting (red: flagged)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "training_catastrophic.png", dpi=110)
    print(f"figures written to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("timing")
    t.add_argument("--batches", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--json", default=None)
    r = sub.add_parser("repro")
    r.add_argument("name")
    r.add_argument("--out", default="runs/repro")
    r.add_argument("--data", default="mnist-embedded")
    r.add_argument("--epochs", type=int, default=15)
    r.add_argument("--eps", type=float, default=0.3)
    r.add_argument("--steps", type=int, default=10)
    r.add_argument("--alpha", type=float, default=None)
    r.add_argument("--lam", type=float, default=0.2)
    r.add_argument("--h", type=float, default=0.5)
    r.add_argument("--lr", type=float, default=0.05)
    r.add_argument("--wd", type=float, default=5e-4)
    r.add_argument("--schedule", default="onecycle")
    r.add_argument("--optimizer", default="sgd")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--n-eval", type=int, default=1000)
    f = sub.add_parser("figures")
    f.add_argument("--runs", default="runs/repro")
    f.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    {"timing": timing, "repro": repro, "figures": figures}[args.cmd](args)


if __name__ == "__main__":
    main()
