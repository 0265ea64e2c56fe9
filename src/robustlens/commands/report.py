"""``robustlens report``: every analysis on one model, or several side by side, as results.json and report.html."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ConfigError
from .app import app, resolve_device
from .options import (
    DEFAULT_DATA,
    MODEL_FORMS,
    DataOption,
    DataRootOption,
    DeviceOption,
    DownloadOption,
    ProgressOption,
    SeedOption,
    SplitOption,
    UnsafePickleOption,
    check_limit,
    load_data,
    load_model_spec,
    model_name,
    model_names,
    split_model_spec,
    warn,
)

if TYPE_CHECKING:
    from torch import nn

    from ..data import ImageData
    from ..report import ModelEntry, ReportPlan, ReportResults


def build_model(spec: str, *, unsafe: bool = False) -> nn.Module:
    """Load a model given as ``WEIGHTS``, ``ZOO_NAME=WEIGHTS`` or ``file.py:factory=WEIGHTS`` (eval mode)."""
    return load_model_spec(spec, unsafe=unsafe)


def load_report_data(data: str, *, root: str | os.PathLike[str] | None = None, split: str = "test",
                     image_size: tuple[int, int] | None = None, download: bool = False) -> ImageData:
    """A data set by name (``mnist-embedded``, ``mnist``, ``cifar10``... with ``root``), or an image folder
    (``root/<class>/<image>`` or ``root/<split>/<class>/<image>``) given by its path."""
    return load_data(data, split, root=root, download=download, image_size=image_size)


def make_plan(name: str, input_shape: Sequence[int], *, certify_sigma: float | None = None,
              sections: Sequence[str] | None = None, n_samples: int | None = None) -> ReportPlan:
    """The preset plan for the data's input shape with the command line's overrides."""
    from ..report import ReportPlan

    plan = ReportPlan.preset(name, input_shape, certify_sigma=certify_sigma, sections=sections)
    if n_samples is not None:
        plan = dataclasses.replace(plan, name=f"{name}-custom", n_samples=int(n_samples),
                                   batch_size=min(plan.batch_size, int(n_samples)))
    return plan


def headline_text(results: ReportResults) -> str:
    """The headline numbers as a plain-text table (what the terminal shows); the labels carry the threat model."""
    from ..report.html import headline_rows

    rows = [(label, ["-" if c is None else c for c in cells]) for label, cells in headline_rows(results)]
    names = [m.name for m in results.models]
    w0 = max([len(r[0]) for r in rows] + [0])
    ws = [max([len(n)] + [len(r[1][i]) for r in rows]) for i, n in enumerate(names)]
    lines = [" " * w0 + "  " + "  ".join(n.rjust(w) for n, w in zip(names, ws, strict=True))]
    for label, cells in rows:
        lines.append(label.ljust(w0) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, ws, strict=True)))
    return "\n".join(lines)


def verdicts_text(results: ReportResults) -> str:
    """The claims summary and one line per tested claim (what the terminal shows under the table)."""
    from ..report import UNTESTED, summary

    lines = [f"the paper's claims: {summary(results.verdicts)}"]
    for v in results.verdicts:
        if v.status != UNTESTED:
            lines.append(f"  [{v.status}] {v.statement} ({v.subject})")
    return "\n".join(lines)


def sections_text() -> str:
    """Every report section with its key, title, paper reference and claims (``--list-sections``)."""
    from ..report import get_section, section_keys

    lines = []
    for key in section_keys():
        sec = get_section(key)
        lines.append(f"{key:<12} {sec.title} ({sec.paper})")
        lines += [f"{'':<12}   claim: {c.statement} ({c.paper})" for c in sec.claims]
    return "\n".join(lines)


def run_and_print(entries: Sequence[ModelEntry], data: ImageData, plan: ReportPlan, out: Path, *, seed: int,
                  resume: bool, progress: bool) -> ReportResults:
    """Run the report, then print the headline table, the failed sections and the page's path."""
    from ..report import ReportData, run_report

    results = run_report(entries, ReportData.from_image_data(data), plan, out, seed=seed, resume=resume,
                         progress=progress)
    typer.echo(headline_text(results))
    typer.echo(verdicts_text(results))
    for m in results.models:
        for o in m.sections.values():
            if o.status == "error":
                typer.echo(f"warning: section {o.key!r} failed for {m.name}: {o.note}", err=True)
    typer.echo(f"results: {out / 'results.json'}")
    typer.echo(f"report:  {(out / 'report.html').resolve()}")
    return results


def _list_sections(value: bool) -> None:
    if value:
        typer.echo(sections_text())
        raise typer.Exit()


@app.command()
def report(
    model: Annotated[str, typer.Option("--model", help=f"The model: {MODEL_FORMS}. A file.py:factory runs that "
                                       "file: only files you trust.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for results.json and report.html.")],
    data: DataOption = DEFAULT_DATA,
    compare: Annotated[list[str] | None, typer.Option("--compare", help="Another model to report side by side "
                                                       "(same forms as --model); repeat for more.")] = None,
    names: Annotated[str | None, typer.Option("--names", help="Comma-separated display names, one per model "
                                              "(default: the weights files' names, or their folders' names where "
                                              "two files share one).")] = None,
    roles: Annotated[str | None, typer.Option("--roles", help="Comma-separated roles, 'standard' or 'robust' per "
                                              "model, so that the sentences test the paper's claims on the pair.")
                     ] = None,
    plan: Annotated[str, typer.Option("--plan", help="'quick' (minutes on a CPU) or 'full'.")] = "quick",
    resume: Annotated[bool, typer.Option("--resume", help="Reuse the sections already computed in --out.")] = False,
    data_root: DataRootOption = None,
    download: DownloadOption = False,
    split: SplitOption = "test",
    image_size: Annotated[int | None, typer.Option("--image-size", help="Resize folder images to this side.")] = None,
    normalize: Annotated[bool, typer.Option("--normalize", help="Apply the data set's mean/std inside the "
                                            "classifier (for models trained on normalised inputs).")] = False,
    certify_sigma: Annotated[float | None, typer.Option("--certify-sigma", help="Also certify the models smoothed "
                                                        "with Gaussian noise of this sigma.")] = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated section keys to run, in page "
                                                 "order (default: all; --list-sections lists them).")] = None,
    list_sections: Annotated[bool, typer.Option("--list-sections", callback=_list_sections, is_eager=True,
                                                help="List the report's sections and the paper's claims each "
                                                     "tests, then exit.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Override the plan's sample count (the report "
                                              "takes a stratified subset of N).")] = None,
    n_samples: Annotated[int | None, typer.Option("--n-samples", hidden=True, help="Deprecated: write --limit.")]
    = None,
    unsafe_pickle: UnsafePickleOption = False,
    progress: ProgressOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Write OUT/results.json and the self-contained OUT/report.html: clean and robust accuracy, distances to the
    boundary, adversarial examples, cross-sections, curvature, universal perturbation, noise and more."""
    from ..report import SECTIONS, ModelEntry, section_keys

    if n_samples is not None:
        warn(f"--n-samples is deprecated: write --limit {n_samples}")
        limit = n_samples if limit is None else limit
    if limit is not None and check_limit(limit) == 0:
        limit = None  # 0: the plan's own count
    dev = resolve_device(device)
    specs = [model, *(compare or [])]
    shown = [n.strip() for n in names.split(",")] if names else model_names(specs)
    if len(shown) != len(specs):
        raise ConfigError(f"--names gives {len(shown)} names for {len(specs)} models")
    role_list = [r.strip() for r in roles.split(",")] if roles else [""] * len(specs)
    if len(role_list) != len(specs) or any(r not in ("", "standard", "robust") for r in role_list):
        raise ConfigError("--roles needs one of 'standard' or 'robust' per model, comma-separated")
    if len(set(shown)) != len(shown):
        raise ConfigError(f"--names gives the same name twice ({', '.join(shown)}); give each model its own")
    try:
        keys = [SECTIONS.key(s.strip()) for s in sections.split(",")] if sections else section_keys()
    except ConfigError:
        raise ConfigError(f"--sections {sections!r}: choose among {', '.join(section_keys())} "
                                 "(robustlens report --list-sections describes them)") from None
    ds = load_report_data(data, root=data_root, split=split, download=download,
                          image_size=None if image_size is None else (image_size, image_size))
    entries = []
    for spec, name, role in zip(specs, shown, role_list, strict=True):
        net = build_model(spec, unsafe=unsafe_pickle).to(dev)
        kw: dict[str, object] = {"mean": ds.mean, "std": ds.std} if normalize and ds.mean is not None else {}
        entries.append(ModelEntry(name, ds.classifier(net, **kw), source=spec, role=role))
    p = make_plan(plan, ds.input_shape, certify_sigma=certify_sigma, sections=keys, n_samples=limit)
    run_and_print(entries, ds, p, out, seed=seed, resume=resume, progress=progress)


__all__ = ["build_model", "headline_text", "load_report_data", "make_plan", "model_name", "model_names", "report",
           "run_and_print", "sections_text", "split_model_spec", "verdicts_text"]
