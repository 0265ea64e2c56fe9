"""Common corruptions: speed against ``imagecorruptions`` and the claim of Sec. IV-C1 (docs/shift.md).

    python benchmarks/corruptions.py speed [--n 64] [--severity 3]
        Images per second of every corruption, ours (batched torch on the CPU) against imagecorruptions 1.1.2 (per
        image, numpy), on the same CIFAR-10 test images, ImageNet-C parameters (the peer's); writes
        benchmarks/results/corruptions_speed.json.
    python benchmarks/corruptions.py claim [--train 20000] [--test 1000] [--retrain]
        Trains three small MNIST CNNs (standard, Gaussian augmentation sigma 0.3, PGD-AT Linf eps 0.2; weights
        cached under benchmarks/results/corruption_models/), measures their accuracy under the 15 corruptions x 5
        severities (CIFAR-10-C parameters, the documented choice for 28 px grey images; ``--params imagenet`` for
        the stronger ImageNet-C ones) and their PGD robust accuracy, and writes
        benchmarks/results/corruptions_claim.json (corruptions_claim_imagenet.json).
    python benchmarks/corruptions.py worst [--test 500] [--grid 20] [--params imagenet]
        The worst-case strength of the parametric corruptions per image for the cached models; writes
        benchmarks/results/corruptions_worst_imagenet.json.
    python benchmarks/corruptions.py table
        Prints the Markdown tables of docs/shift.md from the cached results.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from robustlens.classifier import Classifier
from robustlens.data import load_dataset
from robustlens.shift import benchmark_corruptions, corrupt, corruption_robustness

SHARED = Path(os.environ.get("ROBUSTLENS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
RESULTS = Path(__file__).resolve().parent / "results"
PEER_NAMES = {"jpeg": "jpeg_compression", "elastic": "elastic_transform"}
MODELS = {"standard": "standard training", "gaussian": "Gaussian augmentation, sigma 0.3",
          "pgd-at": "PGD-AT, Linf eps 0.2, 5 steps"}


# ------------------------------------------------------------------------------------------------------- speed
def speed(n: int, severity: int, size: int) -> dict[str, dict[str, float | str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import imagecorruptions as ic
    x = load_dataset("cifar10", "test", root=SHARED / "cifar10").subset(n, seed=0).x
    if size != x.shape[-1]:  # ImageNet-sized inputs: the CIFAR images upsampled (bilinear)
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    u8 = np.round(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    out: dict[str, dict[str, float | str]] = {}
    for name in benchmark_corruptions(extra=True):
        corrupt(x[:2], name, severity, params="imagenet")  # warm-up
        t0 = time.perf_counter()
        corrupt(x, name, severity, params="imagenet")
        ours = n / (time.perf_counter() - t0)
        peer_name = PEER_NAMES.get(name, name.replace("-", "_"))
        try:
            np.random.seed(0)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for im in u8:
                    ic.corrupt(im, corruption_name=peer_name, severity=severity)
            theirs: float | str = n / (time.perf_counter() - t0)
        except Exception as e:  # the peer's known crashes on current scikit-image / numpy
            theirs = f"crashes: {type(e).__name__}: {str(e)[:60]}"
        ratio = ours / theirs if isinstance(theirs, float) else float("nan")
        out[name] = {"ours_images_per_s": ours, "imagecorruptions_images_per_s": theirs, "speedup": ratio}
        print(f"{name:16s} ours {ours:10.0f} img/s   imagecorruptions "
              f"{theirs if isinstance(theirs, str) else f'{theirs:8.0f} img/s'}   x{ratio:.1f}", flush=True)
    return out


# ------------------------------------------------------------------------------------------------------- claim
def _train(kind: str, x: torch.Tensor, y: torch.Tensor, epochs: int) -> torch.nn.Module:
    from robustlens.train import PGDAT, GaussianAugmentation, Standard, fit
    from robustlens.zoo import create_model

    net = create_model("smallcnn", 10, seed=0, width=16, hidden=100)
    objective = {"standard": Standard(), "gaussian": GaussianAugmentation(0.3),
                 "pgd-at": PGDAT(0.2, steps=5)}[kind]
    fit(net, (x, y), objective=objective, epochs=epochs, lr=0.05, batch_size=128, seed=0, progress=False,
        bounds=(0.0, 1.0))
    return net.eval()


def claim(n_train: int, n_test: int, retrain: bool, epochs: int, params: str) -> dict[str, object]:
    from robustlens.attacks import PGD
    from robustlens.zoo import load_model, save_model

    train = load_dataset("mnist", "train", root=SHARED / "mnist").subset(n_train, seed=0, stratified=True)
    test = load_dataset("mnist", "test", root=SHARED / "mnist").subset(n_test, seed=0, stratified=True)
    cache = RESULTS / "corruption_models"
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, object] = {"train_images": n_train, "test_images": n_test, "epochs": epochs,
                              "params": params, "models": {}}
    results = {}
    for kind in MODELS:
        path = cache / f"mnist-{kind}.safetensors"
        t0 = time.perf_counter()
        if path.exists() and not retrain:
            net = load_model(path, "smallcnn")
        else:
            net = _train(kind, train.x, train.y, epochs)
            save_model(net, path, metadata={"arch": "smallcnn", "kwargs": {"width": 16, "hidden": 100}})
        t_train = time.perf_counter() - t0
        clf = Classifier(net, bounds=(0.0, 1.0), batch_size=500)
        t0 = time.perf_counter()
        r = corruption_robustness(clf, test.x, test.y, corruptions="benchmark", params=params, seed=0,
                                  progress=False)
        t_eval = time.perf_counter() - t0
        adv = PGD(norm="inf", eps=0.2, steps=20)(clf, test.x[:500], test.y[:500], seed=0)
        results[kind] = r
        out["models"][kind] = {  # type: ignore[index]
            "description": MODELS[kind], "clean": r.clean_accuracy, "pgd20_linf_0.2": float(adv.robust_accuracy()),
            "mean_corrupted": r.mean_accuracy, "family": r.family_accuracy(),
            "per_corruption": {c: float(r.accuracy[i].mean()) for i, c in enumerate(r.corruptions)},
            "per_severity": {c: [float(a) for a in r.accuracy[i]] for i, c in enumerate(r.corruptions)},
            "train_s": t_train, "eval_s": t_eval}
        print(f"{kind}: clean {r.clean_accuracy:.3f} corrupted {r.mean_accuracy:.3f} "
              f"pgd {float(adv.robust_accuracy()):.3f} families {r.family_accuracy()}", flush=True)
    base = results["standard"]
    for kind, r in results.items():
        rb = r.with_baseline(base, "standard")
        out["models"][kind]["mce_vs_standard"] = rb.mce  # type: ignore[index]
        out["models"][kind]["relative_mce_vs_standard"] = rb.relative_mce  # type: ignore[index]
    return out


def worst(n_test: int, grid: int, params: str) -> dict[str, object]:
    """Worst-case strength per image (``worst_case_corruption``) for the cached MNIST models."""
    from robustlens.shift import worst_case_corruption
    from robustlens.zoo import load_model

    test = load_dataset("mnist", "test", root=SHARED / "mnist").subset(n_test, seed=0, stratified=True)
    out: dict[str, object] = {"test_images": n_test, "grid": grid, "params": params, "models": {}}
    for kind in MODELS:
        path = RESULTS / "corruption_models" / f"mnist-{kind}.safetensors"
        if not path.exists():
            raise SystemExit(f"{path} is missing: run 'python benchmarks/corruptions.py claim' first")
        clf = Classifier(load_model(path, "smallcnn"), bounds=(0.0, 1.0), batch_size=500)
        r = worst_case_corruption(clf, test.x, test.y, grid=grid, params=params, seed=0)
        out["models"][kind] = {  # type: ignore[index]
            c: {"worst_case": float(r.worst_case_accuracy(1.0)[i]), "at_severity_5": float(r.fixed_accuracy[i, -1]),
                "median_breaking_strength": float(r.breaking[:, i].median())}
            for i, c in enumerate(r.corruptions)}
        print(kind, {c: round(v["worst_case"], 3) for c, v in out["models"][kind].items()}, flush=True)  # type: ignore[index]
    return out


def table() -> None:
    for fname in ("corruptions_speed.json", "corruptions_speed_224.json"):
        if not (RESULTS / fname).exists():
            continue
        sp = json.loads((RESULTS / fname).read_text())
        print(f"\n{sp['images']}, {sp['n']} images, severity {sp['severity']}, one thread\n")
        print("| corruption | ours (img/s) | imagecorruptions (img/s) | speed-up |\n|---|---|---|---|")
        for name, v in sp["results"].items():
            th = v["imagecorruptions_images_per_s"]
            th_s = f"{th:.0f}" if isinstance(th, float) else th.split(":")[0] + " (" + th.split(":")[1].strip() + ")"
            sp_s = f"{v['speedup']:.1f}x" if isinstance(th, float) else "-"
            print(f"| {name} | {v['ours_images_per_s']:.0f} | {th_s} | {sp_s} |")
    for name in ("corruptions_claim.json", "corruptions_claim_imagenet.json"):
        if not (RESULTS / name).exists():
            continue
        cl = json.loads((RESULTS / name).read_text())
        models = cl["models"]
        print(f"\n{name} ({cl['params']} severities)\n\n| corruption | " + " | ".join(models) + " |\n|---|"
              + "---|" * len(models))
        for c in benchmark_corruptions():
            print(f"| {c} | " + " | ".join(f"{100 * m['per_corruption'][c]:.1f}" for m in models.values()) + " |")
        for fam in ("noise", "blur", "weather", "digital"):
            print(f"| *{fam}* | " + " | ".join(f"{100 * m['family'][fam]:.1f}" for m in models.values()) + " |")
        for key, label in (("clean", "clean"), ("pgd20_linf_0.2", "PGD-20 Linf 0.2"), ("mean_corrupted", "mean")):
            print(f"| **{label}** | " + " | ".join(f"{100 * m[key]:.1f}" for m in models.values()) + " |")
        for key, label in (("mce_vs_standard", "mCE vs standard"), ("relative_mce_vs_standard", "relative mCE")):
            print(f"| **{label}** | " + " | ".join(f"{m[key]:.3f}" if m[key] is not None else "-"
                                                  for m in models.values()) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--severity", type=int, default=3)
    s.add_argument("--size", type=int, default=32)
    c = sub.add_parser("claim")
    c.add_argument("--train", type=int, default=20000)
    c.add_argument("--test", type=int, default=1000)
    c.add_argument("--epochs", type=int, default=2)
    c.add_argument("--retrain", action="store_true")
    c.add_argument("--params", default="cifar", choices=["cifar", "imagenet"])
    w = sub.add_parser("worst")
    w.add_argument("--test", type=int, default=500)
    w.add_argument("--grid", type=int, default=20)
    w.add_argument("--params", default="imagenet", choices=["cifar", "imagenet"])
    sub.add_parser("table")
    a = ap.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if a.cmd == "speed":
        res = speed(a.n, a.severity, a.size)
        doc = {"n": a.n, "severity": a.severity, "params": "imagenet", "size": a.size,
               "images": f"CIFAR-10 test images at {a.size}x{a.size}", "environment": env, "results": res}
        name = "corruptions_speed.json" if a.size == 32 else f"corruptions_speed_{a.size}.json"
        (RESULTS / name).write_text(json.dumps(doc, indent=1))
    elif a.cmd == "claim":
        doc = claim(a.train, a.test, a.retrain, a.epochs, a.params)
        doc["environment"] = env
        name = "corruptions_claim.json" if a.params == "cifar" else f"corruptions_claim_{a.params}.json"
        (RESULTS / name).write_text(json.dumps(doc, indent=1))
    elif a.cmd == "worst":
        doc = worst(a.test, a.grid, a.params)
        doc["environment"] = env
        (RESULTS / f"corruptions_worst_{a.params}.json").write_text(json.dumps(doc, indent=1))
    else:
        table()


if __name__ == "__main__":
    main()
