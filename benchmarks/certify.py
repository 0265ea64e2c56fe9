"""Randomized-smoothing certification throughput as a multiple of plain forward throughput.

Certification costs ``n0 + n`` forward passes per image; the floor is the time of that many plain batched forward
passes of the model. The ratio (noisy rows per second during certification) / (rows per second of a plain forward
at the same batch size) is what the noise generation, packing and counting cost on top; the target is >= 0.9.
Both run at the classifier's precision: on CUDA a ``Classifier`` turns TF32 off during analysis unless it is built
with ``allow_tf32=True`` (``--tf32`` here), so the floor is timed inside ``clf.full_precision()`` too (a floor left at
PyTorch's default, TF32 convolutions, would measure the precision setting rather than the smoothing overhead).
ART's ``PyTorchRandomizedSmoothing.certify`` runs beside ours on the same model when ART is installed.

    python benchmarks/certify.py [--device cpu|cuda] [--images 4] [--n 10000] [--batch 1000] [--repeats 3] [--tf32]
                                [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from robustlens import Classifier
from robustlens.certify import Smoothed


def make_model(channels: int, size: int, width: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 10),
    )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--n0", type=int, default=100)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--tf32", action="store_true", help="CUDA: certify and time the floor with TF32 allowed")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (CPU device only), less sensitive to other processes on the machine")
    ap.add_argument("--cpu-allocator", choices=["tuned", "default"], default="tuned",
                    help="tuned (as the command line runs): robustlens.perf.tune_cpu_allocator(); default: glibc's")
    args = ap.parse_args()
    if args.cpu_allocator == "tuned":
        from robustlens.perf import tune_cpu_allocator

        tune_cpu_allocator()
    dev = args.device
    if args.clock == "cpu" and dev != "cpu":
        raise SystemExit("--clock cpu measures CPU time: use it with --device cpu")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    model = make_model(3, args.size, args.width).to(dev).eval()
    clf = Classifier(model, allow_tf32=args.tf32)
    x = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(dev)
    y = torch.zeros(args.images, dtype=torch.long, device=dev)
    sm = Smoothed(clf, 0.25)
    rows = args.images * (args.n0 + args.n)

    # floor: plain forward of the same number of rows at the same batch size
    batch = torch.rand(args.batch, 3, args.size, args.size, device=dev)
    n_batches = -(-rows // args.batch)
    fwd_times, cert_times, art_times = [], [], []
    with torch.no_grad():
        model(batch)
    for _ in range(args.repeats):
        sync(dev)
        t = clock()
        with torch.no_grad(), clf.full_precision():
            for _ in range(n_batches):
                model(batch).argmax(1)
        sync(dev)
        fwd_times.append(clock() - t)
        t = clock()
        sm.certify(x, y, n0=args.n0, n=args.n, alpha=0.001, batch_size=args.batch, seed=0)
        sync(dev)
        cert_times.append(clock() - t)

    art = None
    if not args.no_peers:
        try:
            from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing

            art = PyTorchRandomizedSmoothing(
                model=model, loss=nn.CrossEntropyLoss(), input_shape=(3, args.size, args.size), nb_classes=10,
                clip_values=(0.0, 1.0), sample_size=args.n, scale=0.25, alpha=0.001,
                device_type="gpu" if dev.startswith("cuda") else "cpu",
            )
        except Exception as e:  # ART missing or its API changed
            print(f"ART smoothing unavailable: {type(e).__name__}: {e}")
    if art is not None:
        xn = x.cpu().numpy()
        for _ in range(args.repeats):
            t = clock()
            art.certify(xn, n=args.n, batch_size=args.batch)
            sync(dev)
            art_times.append(clock() - t)

    fwd = statistics.median(fwd_times)
    cert = statistics.median(cert_times)
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} images={args.images} "
          f"n0={args.n0} n={args.n} batch={args.batch} model=3-conv CNN width {args.width} on 3x{args.size}^2 "
          f"tf32={args.tf32 and dev.startswith('cuda')} repeats={args.repeats} clock={args.clock} "
          f"cpu-allocator={args.cpu_allocator}")
    print(f"{'method':<28}{'median s':>10}{'rows/s':>14}{'x floor':>10}{'throughput ratio':>18}")
    print(f"{'floor (plain forward)':<28}{fwd:>10.3f}{n_batches * args.batch / fwd:>14.0f}{1.0:>10.2f}{1.0:>18.3f}")
    print(f"{'robustlens Smoothed.certify':<28}{cert:>10.3f}{rows / cert:>14.0f}{cert / fwd:>10.2f}"
          f"{(rows / cert) / (n_batches * args.batch / fwd):>18.3f}")
    print(f"all repeats (s): floor {[round(t, 3) for t in fwd_times]}, certify {[round(t, 3) for t in cert_times]}")
    # each repeat times the floor and then certification back to back: the median of the per-repeat ratios is less
    # sensitive to the machine's drift between repeats than the ratio of the two medians
    paired = [(rows / c) / (n_batches * args.batch / f) for f, c in zip(fwd_times, cert_times, strict=True)]
    print(f"paired throughput ratios: {[round(r, 3) for r in paired]}, median {statistics.median(paired):.3f}")
    if art_times:
        a = statistics.median(art_times)
        art_rows = args.images * (args.n + 32)  # ART's certify: n draws plus its own class-selection draws
        print(f"{'ART certify':<28}{a:>10.3f}{art_rows / a:>14.0f}{a / fwd:>10.2f}"
              f"{(art_rows / a) / (n_batches * args.batch / fwd):>18.3f}")


if __name__ == "__main__":
    main()
