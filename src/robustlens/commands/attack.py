"""``robustlens attack``: run any attack by name on a data set and write the result (one .json or .npz file)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..attacks import ATTACKS
from .app import app, parse_number, resolve_device
from .options import (
    DEFAULT_DATA,
    ArchOption,
    DataOption,
    DataRootOption,
    DeviceOption,
    DownloadOption,
    EpsOption,
    LimitOption,
    ModelFileOption,
    ModelOption,
    OverwriteOption,
    ProgressOption,
    ResumeOption,
    SeedOption,
    SplitOption,
    StateDirOption,
    UnsafePickleOption,
    check_eps_range,
    data_classifier,
    load_data,
    load_model_spec,
    resolve_model_spec,
    take_limit,
)


def parse_target(text: str | None) -> str | int | None:
    if text is None or text.lower() in ("none", "untargeted", ""):
        return None
    if text.lower() in ("random", "least-likely", "least_likely", "ll"):
        return text.lower()
    try:
        return int(text)
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError(f"--target {text!r}: use none, random, least-likely or a class index") from None


def _names(minimal: bool) -> str:
    return ", ".join(e.name for e in ATTACKS.entries() if e.meta["minimal"] == minimal)


@app.command()
def attack(
    name: Annotated[str, typer.Option("--attack", "-a", help=f"Attack name: {_names(True)} (minimal-norm) or "
                                      f"{_names(False)} (eps-bounded).")],
    model: ModelOption = None,
    arch: ArchOption = None,
    model_file: ModelFileOption = None,
    unsafe_pickle: UnsafePickleOption = False,
    dataset: DataOption = DEFAULT_DATA,
    split: SplitOption = "test",
    root: DataRootOption = None,
    download: DownloadOption = False,
    limit: LimitOption = 100,
    norm: Annotated[str | None, typer.Option("--norm", help="L0, L1, L2 or Linf (default: the attack's own).")]
    = None,
    eps: EpsOption = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Iterations (Square: queries); default: the "
                                              "attack's own.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="none (untargeted), random, least-likely, or a "
                                               "class index.")] = None,
    eps_grid: Annotated[str | None, typer.Option("--eps-grid", help="Minimal-norm attacks: comma-separated eps at "
                                                 "which to print robust accuracy (eq. 12).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Samples per attack call and checkpoint.")] = 100,
    out: Annotated[Path, typer.Option("--out", help="Result file: .json (one strict JSON file) or .npz (a "
                                      "NumPy archive with the JSON inside).")]
    = Path("attack.json"),
    state_dir: StateDirOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    progress: ProgressOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Attack a model on a data set; print success, robust accuracy (eq. 12) and norms; write the AttackResult.

    Minimal-norm attacks (eq. 8-9) report the median perturbation norm and robust accuracy at --eps-grid; eps-bounded
    attacks (eq. 10-11) report robust accuracy at --eps. Every batch is checkpointed: after an interruption, run the
    same command with --resume. Example:

        robustlens attack -a pgd --eps 0.3 --model runs/smallcnn/model.safetensors --limit 500 --out pgd.json
    """
    _attack(model=resolve_model_spec(model, arch, model_file), name=name, unsafe_pickle=unsafe_pickle,
            dataset=dataset, split=split, root=root, download=download, limit=limit, norm=norm,
            eps=None if eps is None else parse_number(eps, "--eps"),
            steps=steps, target=parse_target(target), eps_grid=eps_grid, batch_size=batch_size, out=out,
            state_dir=state_dir, resume=resume, overwrite=overwrite, progress=progress, seed=seed,
            device=resolve_device(device))


def _attack(*, name: str, model: str, unsafe_pickle: bool, dataset: str, split: str, root: Path | None,
            download: bool, limit: int, norm: str | None, eps: float | None,
            steps: int | None, target: str | int | None, eps_grid: str | None, batch_size: int, out: Path,
            state_dir: Path | None, resume: bool, overwrite: bool, progress: bool, seed: int, device: str) -> None:
    import torch
    from torch import Tensor

    from ..attacks.base import AttackResult
    from ..attacks.registry import attack_key, make_attack
    from ..errors import ConfigError
    from ..norms import norm_name
    from ..results import check_result_path
    from ..runner import run_evaluation

    key = attack_key(name)
    runner = make_attack(key, norm, eps, steps)
    if hasattr(runner, "progress"):  # AutoAttack: a bar over its sub-attacks inside each batch
        runner.progress = progress
    check_result_path(out)
    data = take_limit(load_data(dataset, split, root=root, download=download), limit)
    check_eps_range(eps, data.bounds, getattr(runner, "p", None))
    net = load_model_spec(model, unsafe=unsafe_pickle)
    x, y = data.x, data.y
    clf = data_classifier(net, data, device)
    p = getattr(runner, "p", None)
    tgt: str | None = None
    if isinstance(target, int):
        if not 0 <= target < clf.num_classes:
            raise ConfigError(f"--target {target} is not a class of this model (0..{clf.num_classes - 1})")
        keep = y != target  # a sample of the target class cannot be attacked towards it
        if not bool(keep.any()):
            raise ConfigError(f"every selected sample belongs to class {target}: nothing to attack towards it")
        if not bool(keep.all()):
            typer.echo(f"skipping {int((~keep).sum())} samples of the target class {target}")
        x, y = x[keep], y[keep]
    else:
        tgt = target

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        t: str | Tensor | None = tgt
        if isinstance(target, int):
            t = torch.full((bx.shape[0],), target, dtype=torch.long)
        res = runner(clf, bx.to(device), by, target=t, seed=seed, indices=bi)
        n = bx.shape[0]
        outs = {"adversarial": res.adversarial, "success": res.success, "clean_correct": res.clean_correct,
                "labels": res.labels, "norm": res.norm,
                "forward": torch.full((n,), res.queries.get("forward", 0) / n, dtype=torch.float64),
                "backward": torch.full((n,), res.queries.get("backward", 0) / n, dtype=torch.float64)}
        if res.targets is not None:
            outs["targets"] = res.targets
        outs["stopped"] = res.stopped if res.stopped is not None else torch.zeros_like(res.success)
        return outs

    sdir = state_dir if state_dir is not None else out.with_suffix(".state")
    settings = dict(getattr(runner, "settings", {}))
    config = {"entry": "attack-cli", "attack": key, "settings": settings, "target": target, "dataset": dataset,
              "split": split, "limit": limit}
    ev = run_evaluation(fn, (x, y), state_dir=sdir, batch_size=batch_size, config=config, seed=seed, model=clf,
                        resume=resume, overwrite=overwrite, progress=progress, desc=key)
    o = ev.outputs
    p = float(p) if p is not None else 2.0
    result = AttackResult(
        attack=key, p=p, clean=x[ev.indices], adversarial=o["adversarial"], labels=o["labels"], success=o["success"],
        clean_correct=o["clean_correct"], norm=o["norm"], targets=o.get("targets"),
        queries={"forward": int(round(float(o["forward"].sum()))), "backward": int(round(float(o["backward"].sum())))},
        eps=eps, settings={**settings, "dataset": dataset, "split": split, "seed": seed, "subset": data.selection},
        stopped=o["stopped"] if bool(o["stopped"].any()) else None,
    )
    result.settings["counts"] = result.counts()  # the JSON keeps both counts, beside the per-sample tensors
    written = result.save(out)
    c = result.counts()
    clean = c["correct"] / max(1, c["samples"])
    typer.echo(f"{key} ({norm_name(p)}) on {c['samples']} samples of {dataset}/{split}: fooled {c['fooled']} of "
               f"{c['correct']} correctly classified (clean accuracy {clean:.3f}), "
               f"{result.queries_per_sample:.1f} passes per sample")
    med = result.median_norm()
    typer.echo(f"median {norm_name(p)} norm of the correctly classified samples fooled: "
               + ("n/a (none fooled)" if med != med else f"{med:.4g}"))
    if eps is not None:
        typer.echo(f"robust accuracy at eps={eps:g}: {float(result.robust_accuracy()[0]):.3f}")
    elif eps_grid:
        grid = [parse_number(t.strip(), "--eps-grid") for t in eps_grid.split(",") if t.strip()]
        ra = result.robust_accuracy(grid)
        typer.echo("eps              " + "".join(f"{e:>9.4g}" for e in grid))
        typer.echo("robust accuracy  " + "".join(f"{float(a):>9.3f}" for a in ra))
    typer.echo(f"wrote {written} (checkpoints in {sdir})")
