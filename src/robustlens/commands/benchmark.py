"""``robustlens benchmark``: clean and AutoAttack robust accuracy of a saved model, RobustBench-style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, parse_number, resolve_device
from .options import (
    DEFAULT_DATA,
    DataOption,
    DataRootOption,
    DeviceOption,
    DownloadOption,
    ModelOption,
    OverwriteOption,
    ProgressOption,
    ResumeOption,
    SeedOption,
    SplitOption,
    StateDirOption,
    UnsafePickleOption,
    check_eps_range,
    check_limit,
    data_classifier,
    load_data,
    load_model_spec,
    resolve_model_spec,
)


@app.command()
def benchmark(
    model: ModelOption = None,
    dataset: DataOption = DEFAULT_DATA,
    split: SplitOption = "test",
    root: DataRootOption = None,
    download: DownloadOption = False,
    threat_model: Annotated[str, typer.Option("--threat-model", "--norm", help="Linf or L2.")] = "Linf",
    eps: Annotated[str, typer.Option("--eps", help="Radius of the threat model in data units, e.g. 0.3 (MNIST) or "
                                     "8/255 (CIFAR-10).")] = "8/255",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Evaluate N images, a stratified subset (every class "
                                       "in proportion; 0: the whole test split).")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per checkpointed batch.")] = 500,
    out: Annotated[Path, typer.Option("--out", help="Result file (.json or .npz).")] = Path("benchmark.json"),
    state_dir: StateDirOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    unsafe_pickle: UnsafePickleOption = False,
    progress: ProgressOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Clean and AutoAttack robust accuracy (eq. 12) on the test split, as RobustBench reports it; resumable.

    Example:

        robustlens benchmark --model runs/at/model.safetensors --data mnist-embedded --eps 0.3 --limit 200
    """
    from ..benchmarking import benchmark as run_benchmark
    from ..results import check_result_path

    check_result_path(out)
    n = check_limit(limit)
    radius = parse_number(eps, "--eps")
    dev = resolve_device(device)
    data = load_data(dataset, split, root=root, download=download)
    check_eps_range(radius, data.bounds, float("inf") if threat_model.lower() == "linf" else 2.0)
    net = load_model_spec(resolve_model_spec(model), unsafe=unsafe_pickle)
    clf = data_classifier(net, data, dev)
    res = run_benchmark(clf, data, threat_model, radius, n_samples=n or None, seed=seed, batch_size=batch_size,
                        state_dir=state_dir if state_dir is not None else out.with_suffix(".state"), resume=resume,
                        overwrite=overwrite, progress=progress)
    written = res.save(out)
    typer.echo(res.summary())
    typer.echo(f"wrote {written}")
