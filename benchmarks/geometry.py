"""Speed of the geometry analyses as a multiple of their floor (issue 4, "Speed").

    python benchmarks/geometry.py [--threads 2] [--repeats 3] [--skip-resnet] [--skip-resnet-dense]
                                  [--md benchmarks/results/geometry.md]

For each analysis the floor is the unavoidable model work, measured on the same machine in the same run:

- curvature spectrum (eq. 16): Hessian-vector products used x measured time of one batched HVP (per vector);
- cross-section (eq. 6): grid points / measured no-grad forward throughput at the same batch size;
- subspace margins (eq. 18): DeepFool steps the subspace attacks took x measured cost of one step, plus one
  forward pass per clean input and per final point (when ``robustlens.geometry.subspaces`` is present).

The measured multiple is wall time / floor (target <= 1.3x). Then the headline figures on one CIFAR-10 test image
and a ResNet-18: a 201 x 201 cross-section with ``refine="adaptive"`` (floor: the points it evaluated / forward
throughput; the dense grid's estimate beside it), the top-20 curvature eigenpairs and a dense cross-section
(``--resnet-resolution``; ``--skip-resnet-dense`` leaves these two out).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlens.classifier import Classifier
from robustlens.data import CIFAR10_MEAN, CIFAR10_STD, load_dataset
from robustlens.geometry import hessian_eigenpairs
from robustlens.geometry._common import hvp_fn, orthonormalize
from robustlens.geometry.sections import cross_section, section_directions
from robustlens.seeding import generator
from robustlens.zoo import create_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls (after one warm-up call unless ``warmup=False``) and the last value."""
    out = fn() if warmup else None
    ts = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        out = fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def hvp_seconds(clf: Classifier, x: Tensor, y: Tensor, repeats: int) -> float:
    hvp = hvp_fn(clf, "ce")
    v = torch.randn(x.shape, generator=generator(0, "bench-hvp")).to(x)
    with clf.analysis_mode():
        t, _ = timed(lambda: hvp(x, y, v), repeats)
    return t


def forward_seconds(clf: Classifier, x: Tensor, repeats: int) -> float:
    with torch.no_grad(), clf.analysis_mode():
        t, _ = timed(lambda: clf.forward(x), repeats)
    return t


def random_plane(x: Tensor, seed: int) -> Tensor:
    d = x[0].numel()
    g = generator(seed, "bench-plane")
    return orthonormalize(torch.randn(2, d, generator=g)).view(2, *x.shape[1:])


def bench_curvature(name: str, clf: Classifier, x: Tensor, y: Tensor, k: int, repeats: int,
                    tol: float = 0.0, warmup: bool = True) -> dict[str, Any]:
    """Lanczos top-``k`` on a batch; floor = HVP vectors x (time of one batched HVP / batch)."""
    n = x.shape[0]
    t, spec = timed(lambda: hessian_eigenpairs(clf, x, y, k=k, which="top", tol=tol, batch_size=n,
                                               return_vectors=True, seed=0, progress=False), repeats, warmup)
    per_vec = hvp_seconds(clf, x, y, max(3, repeats)) / n
    floor = spec.hvps * per_vec
    return {"analysis": f"curvature top-{k}, {name}, {n} input(s)", "seconds": t, "floor": floor,
            "floor_detail": f"{spec.hvps} HVPs x {per_vec * 1e3:.2f} ms", "multiple": t / floor,
            "top_value": float(spec.top_values[0, 0])}


def bench_section(name: str, clf: Classifier, x: Tensor, res: int, repeats: int, batch: int,
                  warmup: bool = True) -> dict[str, Any]:
    """A ``res x res`` cross-section on a random plane; floor = grid points / forward throughput at ``batch``."""
    u = random_plane(x, 0)
    extent = 0.25 * (clf.bounds[1] - clf.bounds[0]) * x[0].numel() ** 0.5
    passes: dict[str, int] = {}

    def run() -> Any:
        r = cross_section(clf, x[:1], None, u, extent=extent, resolution=res, batch_size=batch, progress=False)
        passes["n"] = r.forward_passes
        return r

    t, _ = timed(run, repeats, warmup)
    xb = x[:1].expand(batch, *x.shape[1:]).contiguous()
    per_point = forward_seconds(clf, xb, max(3, repeats)) / batch
    floor = res * res * per_point
    return {"analysis": f"cross-section {res}x{res}, {name}", "seconds": t, "floor": floor,
            "floor_detail": f"{res * res} points / {1 / per_point:.0f} points/s (batch {batch}); "
                            f"{passes['n'] - res * res} extra passes for the axis distances",
            "multiple": t / floor}


def bench_section_adaptive(name: str, clf: Classifier, x: Tensor, res: int, batch: int,
                           coarse: int = 8) -> dict[str, Any]:
    """A ``res x res`` section with ``refine="adaptive"`` on the plane of the DeepFool normal and a random direction,
    half-width three times the DeepFool distance (what ``cross_section`` does by default). The DeepFool run that
    gives the direction is timed on its own; the row's seconds are the section itself (grid and the half-axis
    distances). Floor = evaluated grid points / forward throughput at ``batch``; the dense estimate is
    ``res^2`` points at the same throughput."""
    from robustlens.attacks.deepfool import DeepFool

    t0 = time.perf_counter()
    df = DeepFool(norm=2)(clf, x[:1])
    u, _ = section_directions(clf, x[:1], None, (df.perturbation[0], "random"), seed=0)
    t_dir = time.perf_counter() - t0
    extent = 3.0 * float(df.norm[0])
    passes: dict[str, Any] = {}

    def run() -> Any:
        r = cross_section(clf, x[:1], None, u, extent=extent, resolution=res, batch_size=batch, progress=False,
                          refine="adaptive", coarse=coarse)
        passes["n"], passes["r"] = r.forward_passes, r
        return r

    t, _ = timed(run, 1, warmup=False)
    r = passes["r"]
    assert r.evaluated is not None
    ev = int(r.evaluated.sum())
    xb = x[:1].expand(batch, *x.shape[1:]).contiguous()
    per_point = forward_seconds(clf, xb, 2) / batch
    floor = ev * per_point
    classes = int(r.labels.unique().numel())
    return {"analysis": f"cross-section {res}x{res} adaptive (coarse step {coarse}), {name}", "seconds": t,
            "floor": floor,
            "floor_detail": f"{ev} of {res * res} points evaluated ({ev / (res * res):.1%}; {classes} classes on the "
                            f"plane) / {1 / per_point:.0f} points/s (batch {batch}); {passes['n'] - ev} extra passes "
                            f"for the axis distances; DeepFool direction {t_dir:.1f} s more; dense estimate "
                            f"{res * res * per_point:.0f} s",
            "multiple": t / floor}


def bench_subspaces(name: str, clf: Classifier, x: Tensor, repeats: int) -> dict[str, Any] | None:
    """DCT-subspace margins (eq. 18) on the model's predictions; floor = DeepFool steps x measured cost of one
    DeepFool step (one forward and the ``C - 1`` batched logit-difference gradients, ``logit_jacobian``) per sample,
    plus the forward passes every run needs besides its steps: one on each clean input and one at each final point
    (``N + N x subspaces``), at the measured no-grad forward cost. The steps are the backward sample-passes the
    subspace attacks used (``result.queries``) over ``C - 1``."""
    try:
        from robustlens.geometry.subspaces import diagonal_dct_subspaces, subspace_margins
    except ImportError:
        return None
    subs = diagonal_dct_subspaces(x.shape[1:], block=8)
    t, res = timed(lambda: subspace_margins(clf, x, subs, batch_size=x.shape[0], progress=False), repeats)
    c = clf.num_classes
    steps = res.queries["backward"] / (c - 1)
    yp = clf.predict(x)
    eye = torch.eye(c, device=x.device)
    w = eye[None, :, :].expand(x.shape[0], c, c) - eye[yp][:, None, :]
    others = torch.arange(c, device=x.device)[None, :] != yp[:, None]
    w = w[others].view(x.shape[0], c - 1, c)  # rows e_k - e_y for k != y
    with clf.analysis_mode():
        per_step, _ = timed(lambda: clf.logit_jacobian(x, w), max(3, repeats))
    per_step /= x.shape[0]
    per_fwd = forward_seconds(clf, x, max(3, repeats)) / x.shape[0]
    checks = x.shape[0] * (1 + len(subs))
    floor = steps * per_step + checks * per_fwd
    return {"analysis": f"DCT margins, {len(subs)} subspaces x {x.shape[0]} inputs, {name}", "seconds": t,
            "floor": floor, "floor_detail": f"{steps:.0f} DeepFool sample-steps x {per_step * 1e3:.2f} ms + "
                                            f"{checks} forward passes x {per_fwd * 1e3:.2f} ms; "
                                            f"x{t / (floor + steps * per_fwd):.2f} counting DeepFool's no-grad "
                                            "check pass before every step",
            "multiple": t / floor}


def mnist_model(device: str) -> tuple[Classifier, Tensor, Tensor]:
    m = create_model("smallcnn", 10, seed=0, width=16, hidden=100).eval().to(device)
    data = load_dataset("mnist-embedded", "test")
    return Classifier(m, bounds=(0.0, 1.0), batch_size=1000), data.x.to(device), data.y.to(device)


def resnet_model(device: str, root: Path) -> tuple[Classifier, Tensor, Tensor]:
    """ResNet-18 with random (seeded) weights and the first CIFAR-10 test image."""
    m: nn.Module = create_model("resnet18", 10, seed=0).eval().to(device)
    data = load_dataset("cifar10", "test", root=root)
    clf = Classifier(m, bounds=(0.0, 1.0), mean=CIFAR10_MEAN, std=CIFAR10_STD, batch_size=512)
    return clf, data.x[:1].to(device), data.y[:1].to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--skip-mnist", action="store_true")
    ap.add_argument("--resnet-resolution", type=int, default=201, help="grid points per axis of the ResNet section")
    ap.add_argument("--skip-resnet-dense", action="store_true",
                    help="skip the ResNet curvature and dense-section rows (keep the adaptive section)")
    ap.add_argument("--adaptive-resolution", type=int, default=201,
                    help="grid points per axis of the adaptive ResNet section (0 to skip it)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cifar-root", default=str(SHARED / "cifar10"))
    ap.add_argument("--md", default=None, help="write the table to this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    if not args.skip_mnist:
        clf, x, y = mnist_model(args.device)
        rows.append(bench_curvature("SmallCNN MNIST", clf, x[:1], y[:1], 20, args.repeats))
        rows.append(bench_curvature("SmallCNN MNIST", clf, x[:16], y[:16], 20, args.repeats))
        rows.append(bench_section("SmallCNN MNIST", clf, x[:1], 201, args.repeats, 1000))
        sub = bench_subspaces("SmallCNN MNIST", clf, x[:32], args.repeats)
        if sub is not None:
            rows.append(sub)
    for r in rows:
        print(f"{r['analysis']}: {r['seconds']:.3f}s, floor {r['floor']:.3f}s ({r['floor_detail']}), "
              f"x{r['multiple']:.2f}", flush=True)
    if not args.skip_resnet:
        rclf, rx, ry = resnet_model(args.device, Path(args.cifar_root))
        todo: list[Callable[[], dict[str, Any]]] = []
        if args.adaptive_resolution:
            todo.append(lambda: bench_section_adaptive("ResNet-18 CIFAR-10", rclf, rx, args.adaptive_resolution, 256))
        if not args.skip_resnet_dense:
            todo.append(lambda: bench_curvature("ResNet-18 CIFAR-10", rclf, rx, ry, 20, 1, tol=1e-3, warmup=False))
            todo.append(lambda: bench_section("ResNet-18 CIFAR-10", rclf, rx, args.resnet_resolution, 1, 256,
                                              warmup=False))
        for job in todo:
            r = job()
            rows.append(r)
            print(f"{r['analysis']}: {r['seconds']:.3f}s, floor {r['floor']:.3f}s ({r['floor_detail']}), "
                  f"x{r['multiple']:.2f}", flush=True)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else (
        f"{cpu_name()}, {torch.get_num_threads()} threads")
    machine = (f"{where}, "
               f"torch {torch.__version__}, Python {platform.python_version()}")
    lines = [f"Machine: {machine}.", "", "| analysis | seconds | floor (s) | floor | multiple |",
             "|---|---:|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r['analysis']} | {r['seconds']:.3f} | {r['floor']:.3f} | {r['floor_detail']} | "
                     f"{r['multiple']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.md:
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(table + "\n")


if __name__ == "__main__":
    main()
