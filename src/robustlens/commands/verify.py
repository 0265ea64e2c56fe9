"""``robustlens verify``: verified accuracy of a saved model by IBP, CROWN or alpha-CROWN, beside PGD's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, parse_number, resolve_device
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
def verify(
    model: ModelOption = None,
    arch: ArchOption = None,
    model_file: ModelFileOption = None,
    unsafe_pickle: UnsafePickleOption = False,
    dataset: DataOption = DEFAULT_DATA,
    split: SplitOption = "test",
    root: DataRootOption = None,
    download: DownloadOption = False,
    limit: LimitOption = 100,
    eps: Annotated[str, typer.Option("--eps", help="Radius, or comma-separated radii, e.g. 0.1 or 1/255,2/255.")]
    = "0.1",
    norm: Annotated[str, typer.Option("--norm", help="Linf, L2 or L1.")] = "Linf",
    method: Annotated[str, typer.Option("--method", help="Bound method: ibp, crown or alpha-crown.")] = "crown",
    attack: Annotated[bool, typer.Option("--attack/--no-attack", help="Also run PGD for the attacked upper bound "
                                         "of robust accuracy.")] = True,
    steps: Annotated[int, typer.Option("--steps", help="PGD iterations.")] = 40,
    out: Annotated[Path, typer.Option("--out", help="Result file: .json or .npz (one file).")] = Path("verify.json"),
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Verify robustness at eps (paper Sec. II, certified robustness after eq. (12)) with a bound method on the
    model's traced forward: per radius, the verified / attacked / unknown counts and verified accuracy.

    Example:

        robustlens verify --model runs/mlp.safetensors --data mnist --eps 0.02,0.05 --method alpha-crown
    """
    from ..certify import verify as run_verify
    from ..results import check_result_path

    dev = resolve_device(device)
    check_result_path(out)
    radii = [parse_number(t.strip(), "--eps") for t in eps.split(",") if t.strip()]
    spec = resolve_model_spec(model, arch, model_file)
    data = take_limit(load_data(dataset, split, root=root, download=download), limit)
    net = load_model_spec(spec, unsafe=unsafe_pickle)
    clf = data_classifier(net, data, dev)
    result = run_verify(clf, data.x, data.y, radii, norm, method, attack=attack, steps=steps, seed=seed)
    result.settings.update({"dataset": dataset, "split": split, "limit": limit})
    written = result.save(out)
    typer.echo(f"{result.method} on {data.x.shape[0]} samples, {result.settings['norm']}; clean accuracy "
               f"{float(result.clean_correct.double().mean()):.3f}")
    typer.echo(f"{'eps':>10} {'verified':>9} {'attacked':>9} {'unknown':>8} {'verified acc':>13} {'seconds':>8}")
    upper = result.attacked_accuracy_upper
    for i, row in enumerate(result.counts()):
        pgd = f"  PGD upper bound {upper[i]:.3f}" if upper is not None else ""
        typer.echo(f"{row['eps']:>10.4g} {row['verified']:>9} {row['attacked']:>9} {row['unknown']:>8} "
                   f"{result.verified_accuracy[i]:>13.3f} {result.seconds[i]:>8.2f}{pgd}")
    typer.echo(f"wrote {written}")
