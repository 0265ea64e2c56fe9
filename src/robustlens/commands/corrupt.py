"""``robustlens corrupt``: write a corrupted copy of a data set (the common corruptions of Hendrycks & Dietterich
2019, in the layout of CIFAR-10-C: every corruption and severity stacked), or, with ``--model``, measure a saved
model's accuracy under them."""

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
    SeedOption,
    SplitOption,
    UnsafePickleOption,
    data_classifier,
    load_data,
    load_model_spec,
    resolve_model_spec,
    take_limit,
)


def parse_severities(text: str) -> list[int]:
    """``"1,3,5"`` or ``"all"`` as a list of severities (checked where used)."""
    from ..errors import ConfigError

    if text.strip().lower() == "all":
        return [1, 2, 3, 4, 5]
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--severity {text!r}: write severities from 1 to 5 as e.g. 3 or 1,3,5 or all") from None


@app.command()
def corrupt(
    corruption: Annotated[str, typer.Option("--corruption", help="A corruption name (e.g. fog, gaussian-noise), a "
                                            "comma-separated list, 'benchmark' (the 15) or 'all' (the 19).")],
    out: Annotated[Path, typer.Option("--out", help="Output: a .npz of uint8 images x (N, C, H, W), labels y, "
                                      "per-row corruption and severity; with --model a result .json or .npz.")],
    severity: Annotated[str, typer.Option("--severity", help="Severities 1-5: 3, 1,3,5 or all.")] = "all",
    dataset: DataOption = DEFAULT_DATA,
    split: SplitOption = "test",
    root: DataRootOption = None,
    download: DownloadOption = False,
    limit: LimitOption = 0,
    params: Annotated[str, typer.Option("--params", help="Severity table: cifar (CIFAR-10-C), imagenet "
                                        "(ImageNet-C) or auto (by image size).")] = "auto",
    model: ModelOption = None,
    arch: ArchOption = None,
    model_file: ModelFileOption = None,
    unsafe_pickle: UnsafePickleOption = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per batch.")] = 256,
    progress: ProgressOption = False,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Corrupt a data set with the common corruptions, or measure a model's accuracy under them."""
    import io
    import json

    import numpy as np
    import torch

    from ..files import atomic_write_bytes
    from ..shift import CORRUPTIONS
    from ..shift import corrupt as corrupt_images
    from ..shift.robustness import resolve_corruptions, resolve_severities

    names = resolve_corruptions(corruption if corruption in ("benchmark", "all") or "," not in corruption
                   else [c.strip() for c in corruption.split(",") if c.strip()])
    sev = resolve_severities(parse_severities(severity))
    names = [CORRUPTIONS.key(n) for n in names]
    data = take_limit(load_data(dataset, split, root=root, download=download), limit)
    dev = resolve_device(device)
    spec = None if model is None and arch is None and model_file is None else resolve_model_spec(model, arch,
                                                                                                   model_file)
    if spec is not None:
        from ..results import check_result_path
        from ..shift import corruption_robustness

        check_result_path(out)
        net = load_model_spec(spec, unsafe=unsafe_pickle)
        clf = data_classifier(net, data, dev, batch_size=batch_size)
        r = corruption_robustness(clf, data.x.to(dev), data.y.to(dev), corruptions=names, severities=sev,
                                  params=params, seed=seed, batch_size=batch_size, progress=progress)
        typer.echo(f"clean accuracy {r.clean_accuracy:.3f} on {r.n} images ({r.params} severities)")
        typer.echo(f"{'corruption':16s}" + "".join(f"{s:>7d}" for s in r.severities))
        for i, c in enumerate(r.corruptions):
            typer.echo(f"{c:16s}" + "".join(f"{float(a):>7.3f}" for a in r.accuracy[i]))
        typer.echo(f"wrote {r.save(out)}")
        return
    if out.suffix.lower() != ".npz":
        from ..errors import ConfigError

        raise ConfigError(f"--out {out}: the corrupted copy is written as one .npz file; name it e.g. fog.npz")
    lo, hi = data.bounds
    x01 = ((data.x - lo) / (hi - lo)).to(dev)
    rows, cs, ss = [], [], []
    for c in names:
        for s in sev:
            start = 0
            while start < len(x01):
                xb = x01[start:start + batch_size]
                idx = list(range(start, start + len(xb)))
                rows.append(torch.round(corrupt_images(xb, c, s, seed=seed, indices=idx, params=params) * 255)
                            .to(torch.uint8).cpu())
                start += len(xb)
            cs += [c] * len(x01)
            ss += [s] * len(x01)
    meta = {"data": dataset, "split": split, "n": len(x01), "corruption": names[0] if len(names) == 1 else names,
            "severity": sev[0] if len(sev) == 1 else sev, "params": params, "seed": seed,
            "layout": "rows are corruption-major, then severity, then the data set's order"}
    buf = io.BytesIO()
    np.savez_compressed(buf, x=torch.cat(rows).numpy(), y=data.y.repeat(len(names) * len(sev)).numpy(),
                        corruption=np.array(cs), severity=np.array(ss, dtype=np.int64), meta=json.dumps(meta))
    atomic_write_bytes(out, buf.getvalue())
    typer.echo(f"wrote {out}: {len(cs)} images ({len(names)} corruption(s) x {len(sev)} severities x {len(x01)})")
