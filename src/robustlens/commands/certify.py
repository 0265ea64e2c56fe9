"""``robustlens certify``: randomized-smoothing certification of a saved model on a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, resolve_device
from .options import (
    DEFAULT_DATA,
    ArchOption,
    DataOption,
    DataRootOption,
    DeviceOption,
    DownloadOption,
    LimitOption,
    ModelFileOption,
    ModelOption,
    ProgressOption,
    ResumeOption,
    SeedOption,
    SplitOption,
    UnsafePickleOption,
    data_classifier,
    load_data,
    load_model_spec,
    resolve_model_spec,
    take_limit,
)


@app.command()
def certify(
    model: ModelOption = None,
    arch: ArchOption = None,
    model_file: ModelFileOption = None,
    unsafe_pickle: UnsafePickleOption = False,
    dataset: DataOption = DEFAULT_DATA,
    split: SplitOption = "test",
    root: DataRootOption = None,
    download: DownloadOption = False,
    limit: LimitOption = 100,
    sigma: Annotated[float, typer.Option("--sigma", help="Noise level of the smoothing, in data units.")] = 0.25,
    n0: Annotated[int, typer.Option("--n0", help="Noisy copies to select the top class.")] = 100,
    n: Annotated[int, typer.Option("--n", help="Noisy copies to bound its probability.")] = 10_000,
    alpha: Annotated[float, typer.Option("--alpha", help="Failure probability of each certificate.")] = 0.001,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Noisy copies per forward pass.")] = 1000,
    data_batch_size: Annotated[int, typer.Option("--data-batch-size", help="Images per checkpoint.")] = 16,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="Checkpoint folder (enables --resume).")] = None,
    resume: ResumeOption = False,
    out: Annotated[Path, typer.Option("--out", help="Result file: .json or .npz (one file).")] = Path("certify.json"),
    plot: Annotated[Path | None, typer.Option("--plot", help="Also save the certified-accuracy curve (PNG).")] = None,
    progress: ProgressOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Certify L2 robustness by randomized smoothing (Cohen et al., 2019) and print certified accuracy by radius."""
    from ..certify import Smoothed, certify_dataset
    from ..results import check_result_path

    dev = resolve_device(device)
    check_result_path(out)
    spec = resolve_model_spec(model, arch, model_file)
    data = take_limit(load_data(dataset, split, root=root, download=download), limit)
    net = load_model_spec(spec, unsafe=unsafe_pickle)
    x, y = data.x, data.y
    clf = data_classifier(net, data, dev)
    result = certify_dataset(
        Smoothed(clf, sigma), (x, y), n0=n0, n=n, alpha=alpha, batch_size=batch_size,
        data_batch_size=data_batch_size, seed=seed, state_dir=None if state_dir is None else str(state_dir),
        resume=resume, progress=progress,
    )
    written = result.save(out)
    radii = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    acc = result.certified_accuracy(radii)
    typer.echo(f"certified {x.shape[0]} samples, sigma={sigma:g}, n0={n0}, n={n}, alpha={alpha:g}; "
               f"abstained {float(result.abstained.double().mean()):.1%}")
    typer.echo("radius   " + "".join(f"{r:>7.2f}" for r in radii))
    typer.echo("accuracy " + "".join(f"{float(a):>7.3f}" for a in acc))
    typer.echo(f"wrote {written}")
    if plot is not None:
        ax = result.curve().plot()
        ax.figure.savefig(plot, dpi=120, bbox_inches="tight")
        typer.echo(f"wrote {plot}")
