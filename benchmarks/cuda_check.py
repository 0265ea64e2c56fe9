"""CUDA path check: device placement, CPU/CUDA agreement, AMP and channels_last training, and GPU timings.

    python benchmarks/cuda_check.py [--device cuda] [--quick]

Needs only torch, numpy, scipy and tqdm (no data files: inputs are random, shaped like MNIST and CIFAR-10), so it
runs from a bare checkout with ``PYTHONPATH=src``. Prints one markdown table per check; BENCHMARKS.md ("CUDA")
records what it printed on an H100.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.pgd import PGD
from robustlens.certify.smoothing import Smoothed
from robustlens.classifier import Classifier
from robustlens.geometry import hessian_eigenpairs
from robustlens.geometry.sections import cross_section
from robustlens.train import PGDAT, Standard, fit
from robustlens.zoo import create_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls after one warm-up."""
    out = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def fwd_bwd_cost(clf: Classifier, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Seconds of one forward + backward pass of the batch ``x`` (the floor's unit)."""

    def once() -> None:
        xg = x.detach().requires_grad_(True)
        loss = F.cross_entropy(clf.forward(xg), y, reduction="sum")
        torch.autograd.grad(loss, xg)

    with clf.analysis_mode():
        t, _ = timed(once, device, repeats=5)
    return t


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def check_placement(device: torch.device) -> None:
    print("\n## Placement and CPU/CUDA agreement (smallcnn, random weights, 64 MNIST-shaped inputs)")
    net = create_model("smallcnn", num_classes=10, seed=0)
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cpu = Classifier(net, bounds=(0, 1))
    y = cpu.predict(x)
    res_cpu = DeepFool(norm=2)(cpu, x, y)
    gpu = Classifier(create_model("smallcnn", num_classes=10, seed=0).to(device), bounds=(0, 1))
    res_gpu = DeepFool(norm=2)(gpu, x.to(device), y.to(device))
    fast = Classifier(gpu.model, bounds=(0, 1), allow_tf32=True)
    res_tf32 = DeepFool(norm=2)(fast, x.to(device), y.to(device))
    print(f"with allow_tf32=True: DeepFool success {res_tf32.success.float().mean():.3f}, median L2 "
          f"{res_tf32.norm.median().item():.5f}")
    print(row("what", "cpu", str(device)))
    print(row("---", "---", "---"))
    print(row("classifier device", cpu.device, gpu.device))
    print(row("result device", res_cpu.adversarial.device, res_gpu.adversarial.device))
    print(row("DeepFool success", f"{res_cpu.success.float().mean():.3f}", f"{res_gpu.success.float().mean():.3f}"))
    med_c, med_g = res_cpu.norm.median().item(), res_gpu.norm.median().item()
    print(row("DeepFool median L2", f"{med_c:.5f}", f"{med_g:.5f}"))
    print(f"relative difference of the medians: {abs(med_c - med_g) / med_c:.2e}")
    try:  # CPU inputs given to a CUDA classifier: moved, or a clear error
        r = PGD(eps=0.1, steps=5)(gpu, x, y)
        print(f"CPU inputs to a CUDA classifier: accepted, result on {r.adversarial.device}")
    except Exception as e:  # noqa: BLE001 - we print whatever the library says
        print(f"CPU inputs to a CUDA classifier: {type(e).__name__}: {e}")


def check_attack_speed(device: torch.device, n: int) -> None:
    print(f"\n## PGD Linf on ResNet-18 (CIFAR stem, random weights), batch {n}: time as a multiple of the floor")
    net = create_model("resnet18", num_classes=10, seed=0).to(device).eval()
    clf = Classifier(net, bounds=(0, 1), mean=[0.4914, 0.4822, 0.4465], std=[0.247, 0.243, 0.261])
    x = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    y = clf.predict(x)
    unit = fwd_bwd_cost(clf, x, y, device)
    print(row("attack", "seconds", "passes/sample", "floor s", "x floor"))
    print(row("---", "---", "---", "---", "---"))
    with clf.analysis_mode():
        print(f"TF32 inside analysis: cudnn {torch.backends.cudnn.allow_tf32}")
    fast = Classifier(net, bounds=(0, 1), mean=clf.mean, std=clf.std, allow_tf32=True)
    t_fast, res_fast = timed(lambda: PGD(eps=8 / 255, steps=50, early_stop=False)(fast, x, y), device, repeats=2)
    print(f"PGD-50 with allow_tf32=True: {t_fast:.3f} s, robust accuracy {res_fast.robust_accuracy().item():.3f}")
    for steps in (10, 50):
        attack = PGD(eps=8 / 255, steps=steps, early_stop=False)
        t, res = timed(lambda a=attack: a(clf, x, y), device, repeats=2)
        passes = res.queries_per_sample  # type: ignore[attr-defined]
        floor = passes / 2 * unit  # a forward+backward pass counts one forward and one backward
        name = f"PGD-{steps} (robust acc {res.robust_accuracy().item():.3f})"  # type: ignore[attr-defined]
        print(row(name, f"{t:.3f}", f"{passes:.1f}", f"{floor:.3f}", f"{t / floor:.2f}"))
    t, res = timed(lambda: DeepFool(norm=2)(clf, x, y), device, repeats=2)
    print(row("DeepFool L2", f"{t:.3f}", f"{res.queries_per_sample:.1f}", "-", "-"))  # type: ignore[attr-defined]


def check_training(device: torch.device, n: int, epochs: int) -> None:
    print(f"\n## Training ResNet-18 on {n} random CIFAR-shaped images, {epochs} epoch(s): AMP and channels_last")
    g = torch.Generator().manual_seed(2)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    print(row("objective", "amp", "channels_last", "s/epoch (last)", "final loss finite"))
    print(row("---", "---", "---", "---", "---"))
    for objective_name, objective in (("standard", Standard()), ("pgd-7", PGDAT(8 / 255, steps=7))):
        for amp, cl in ((False, False), (True, True)):
            net = create_model("resnet18", num_classes=10, seed=0)
            hist = fit(net, (x, y), objective=objective, epochs=epochs, batch_size=256, lr=0.05, seed=0,
                       device=device, amp=amp, channels_last=cl)
            last = hist.last
            dt = last.time_s  # the last epoch: the first one pays for cuDNN's autotuning
            finite = all(torch.isfinite(torch.tensor(float(v))) for v in last.train.values())
            print(row(objective_name, amp, cl, f"{dt:.2f}", finite))


def check_geometry(device: torch.device) -> None:
    print("\n## Geometry on ResNet-18 (one CIFAR-shaped input)")
    net = create_model("resnet18", num_classes=10, seed=0).to(device)
    clf = Classifier(net, bounds=(0, 1))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)).to(device)
    sync(device)
    t0 = time.perf_counter()
    spec = hessian_eigenpairs(clf, x, k=20, which="top", progress=False)
    sync(device)
    t_h = time.perf_counter() - t0
    top = spec.top_values[0, 0].item()
    print(f"top-20 input-Hessian eigenpairs: {t_h:.2f} s (largest eigenvalue {top:.4g})")
    sync(device)
    t0 = time.perf_counter()
    sec = cross_section(clf, x, directions=("random", "random"), resolution=201, progress=False)
    sync(device)
    print(f"201 x 201 cross-section: {time.perf_counter() - t0:.2f} s ({sec.labels.numel()} points)")


def check_smoothing(device: torch.device, n: int) -> None:
    print(f"\n## Randomized smoothing on ResNet-18: certify 4 inputs with n={n} draws each")
    net = create_model("resnet18", num_classes=10, seed=0).to(device)
    clf = Classifier(net, bounds=(0, 1))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4)).to(device)
    sm = Smoothed(clf, sigma=0.25)
    t_c, _ = timed(lambda: sm.certify(x, n0=100, n=n, batch_size=1000, seed=0), device, repeats=1)
    batch = torch.rand(1000, 3, 32, 32, device=device)
    with torch.no_grad(), clf.analysis_mode():
        t_f, _ = timed(lambda: clf.forward(batch), device, repeats=5)
    images_per_s = 4 * (n + 100) / t_c
    print(f"certify: {images_per_s:.0f} noisy images/s; forward alone: {1000 / t_f:.0f} images/s; "
          f"ratio {images_per_s / (1000 / t_f):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (to check the script itself on a CPU)")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    q = args.quick
    steps = [
        ("placement", lambda: check_placement(device)),
        ("attack speed", lambda: check_attack_speed(device, 16 if q else 512)),
        ("training", lambda: check_training(device, 64 if q else 5120, 1 if q else 2)),
        ("geometry", lambda: check_geometry(device)),
        ("smoothing", lambda: check_smoothing(device, 200 if q else 10_000)),
    ]
    for name, fn in steps:
        if device.type == "cpu" and name in ("training",) and not q:
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report and go on to the next check
            import traceback

            print(f"\n!! {name} failed: {type(e).__name__}: {e}")
            traceback.print_exc()


if __name__ == "__main__":
    main()
