"""``robustlens demo``: the paper's story end to end on the embedded MNIST-5k.

Trains a standard and an adversarially trained small CNN (cached in the output folder), runs the comparison report
(roles ``standard`` and ``robust``, so that the paper's claims about adversarial training are judged on this pair) and
prints the path of report.html with the headline numbers and the claims' verdicts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .app import app, resolve_device
from .options import DeviceOption, ProgressOption, SeedOption

if TYPE_CHECKING:
    from torch import nn

    from ..data import ImageData
    from ..report import ReportPlan


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is: the CNN's width, the training of each model and the report's sample counts."""

    width: int
    hidden: int
    standard_epochs: int
    robust_epochs: int
    robust_objective: str  # "fgsm-rs" or "pgd"
    robust_eps: float
    robust_steps: int
    plan: dict[str, Any]
    train_samples: int | None = None  # N random training images (None: all 4,000)
    batch_size: int = 64


DEMO_SIZES: dict[str, DemoSettings] = {
    # under 3 minutes on 2 CPU cores, training included
    "quick": DemoSettings(width=16, hidden=64, standard_epochs=3, robust_epochs=3, robust_objective="fgsm-rs",
                          robust_eps=0.15, robust_steps=1, plan={}),
    # under 10 minutes
    "default": DemoSettings(width=32, hidden=128, standard_epochs=4, robust_epochs=4, robust_objective="pgd",
                            robust_eps=0.2, robust_steps=5,
                            plan={"n_samples": 200, "fmn_steps": 100, "curvature_samples": 8, "section_samples": 2,
                                  "n_examples": 3, "uap_samples": 200, "uap_eval_samples": 200, "dct_samples": 20,
                                  "noise_samples": 40, "certify_samples": 50, "certify_n": 500, "section_grid": 61}),
    # for tests: seconds
    "tiny": DemoSettings(width=8, hidden=32, standard_epochs=2, robust_epochs=2, robust_objective="fgsm-rs",
                         robust_eps=0.1, robust_steps=1,
                         plan={"n_samples": 20, "batch_size": 20, "fmn_steps": 10, "pgd_steps": 5, "deepfool_iter": 20,
                               "n_examples": 1, "section_grid": 15, "curvature_samples": 1, "curvature_k": 3,
                               "uap_samples": 20, "uap_eval_samples": 20, "uap_passes": 1, "dct_samples": 4,
                               "noise_samples": 4, "noise_directions": 2, "noise_draws": 5, "certify_samples": 4,
                               "certify_n0": 8, "certify_n": 40, "sanity_samples": 8, "sanity_queries": 30},
                         train_samples=1500, batch_size=16),
}
CERTIFY_SIGMA = 0.25


def demo_plan(size: str, input_shape: tuple[int, ...]) -> ReportPlan:
    """The report plan of a demo size: the quick preset, smoothed at sigma 0.25, with the size's overrides."""
    from ..report import ReportPlan

    plan = ReportPlan.preset("quick", input_shape, certify_sigma=CERTIFY_SIGMA)
    over = DEMO_SIZES[size].plan
    return dataclasses.replace(plan, name=f"demo-{size}", **over) if over else plan


def _objective(s: DemoSettings, robust: bool) -> Any:
    from ..train import FGSMRS, PGDAT, Standard

    if not robust:
        return Standard()
    if s.robust_objective == "pgd":
        return PGDAT(eps=s.robust_eps, steps=s.robust_steps)
    return FGSMRS(eps=s.robust_eps)


def train_or_load(kind: str, s: DemoSettings, train: ImageData, folder: Path, *, seed: int, device: str,
                  progress: bool) -> tuple[nn.Module, bool]:
    """The ``kind`` ("standard" or "robust") model: loaded from ``folder/<kind>.safetensors`` when it was trained
    with the same settings and seed, trained with :func:`robustlens.train.fit` and saved otherwise. Returns the model
    and whether it was loaded from the cache."""
    from ..train import fit
    from ..zoo import create_model, load_model, save_model

    robust = kind == "robust"
    config = {"kind": kind, "seed": seed, **dataclasses.asdict(s)}
    config.pop("plan")
    path = folder / f"{kind}.safetensors"
    meta = folder / f"{kind}.json"
    if path.is_file() and meta.is_file():
        try:
            if json.loads(meta.read_text()) == json.loads(json.dumps(config)):
                arch = create_model("smallcnn", width=s.width, hidden=s.hidden)
                return load_model(path, arch).to(device), True
        except (ValueError, OSError):
            pass
    net = create_model("smallcnn", width=s.width, hidden=s.hidden, seed=seed + (1 if robust else 0)).to(device)
    epochs = s.robust_epochs if robust else s.standard_epochs
    if s.train_samples is not None and s.train_samples < len(train.y):
        train = train.subset(s.train_samples, seed=seed)  # a random subset: the set is stored sorted by class
    fit(net, (train.x, train.y), objective=_objective(s, robust), epochs=epochs, lr=0.05, batch_size=s.batch_size,
        seed=seed, device=device, progress=progress)
    net.eval()
    save_model(net, path, metadata={"data": train.name, "objective": kind})
    meta.write_text(json.dumps(config, indent=2))
    return net, False


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder (the trained models are cached there).")] = Path(
        "demo-out"),
    quick: Annotated[bool, typer.Option("--quick", help="Smaller models and report: under 3 minutes on 2 CPU "
                                        "cores (default run: under 10).")] = False,
    tiny: Annotated[bool, typer.Option("--tiny", hidden=True, help="Seconds-long run for the tests.")] = False,
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Reuse report sections already computed in "
                                         "--out with the same settings.")] = True,
    progress: ProgressOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Train a standard and an adversarially trained CNN on the embedded MNIST-5k, compare them in one report and
    print where report.html is, with the headline numbers and how many of the paper's claims hold."""
    from ..data import load_dataset
    from ..report import ModelEntry
    from .report import run_and_print

    t0 = time.perf_counter()
    size = "tiny" if tiny else "quick" if quick else "default"
    s = DEMO_SIZES[size]
    dev = resolve_device(device)
    train = load_dataset("mnist-embedded", split="train")
    test = load_dataset("mnist-embedded", split="test")
    models = out / "models" / size
    entries = []
    for kind in ("standard", "robust"):
        t = time.perf_counter()
        net, cached = train_or_load(kind, s, train, models, seed=seed, device=dev, progress=progress)
        what = f"loaded from {models}" if cached else f"trained in {time.perf_counter() - t:.0f} s"
        obj = "cross-entropy" if kind == "standard" else (
            f"{s.robust_objective} adversarial training, Linf eps {s.robust_eps:g}")
        typer.echo(f"{kind} model ({obj}): {what}")
        entries.append(ModelEntry(kind, test.classifier(net), source=f"smallcnn width {s.width}, {obj}", role=kind))
    plan = demo_plan(size, test.input_shape)
    run_and_print(entries, test, plan, out, seed=seed, resume=resume, progress=progress)
    typer.echo(f"demo finished in {time.perf_counter() - t0:.0f} s")


__all__ = ["DEMO_SIZES", "DemoSettings", "demo", "demo_plan", "train_or_load"]
