"""The typer application shared by every command module."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from torch import nn

def parse_number(text: str, option: str) -> float:
    """``"0.3"`` or a fraction such as ``"8/255"`` (the usual way to write CIFAR-10 radii) given to ``option``; a
    :class:`~robustlens.errors.ConfigError` naming the option otherwise. Range and sign are checked where the value
    is used (``robustlens.checks``)."""
    from ..errors import ConfigError

    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{option} {text!r} is not a number; write e.g. 0.3 or 8/255") from None


app = typer.Typer(
    name="robustlens",
    help=(
        "robustlens: measure how far a PyTorch classifier's decision boundary lies from its data, in which "
        "directions, and train it to be robust. Run 'robustlens demo' for the end-to-end story, or "
        "'robustlens COMMAND --help' for one step."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by every command (typer needs them as annotated parameters).
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random choice; same seed, same numbers.")]
DeviceOption = Annotated[
    str, typer.Option("--device", help="Where to run: 'cpu', 'cuda', 'cuda:1' or 'auto' (cuda when available).")
]


# Options of the commands that load a saved model and a data set (attack, certify).
ArchOption = Annotated[str | None, typer.Option(
    "--arch", help="Zoo architecture to load the weights into, when the file does not record it (e.g. smallcnn).")]
ModelFileOption = Annotated[str | None, typer.Option(
    "--model-file", help="'path/file.py:factory' building the model (weights from --model if given). Runs that "
    "file's code: only files you trust.")]
UnsafePickleOption = Annotated[bool, typer.Option(
    "--unsafe-pickle", help="Allow a fully pickled model file (can execute arbitrary code: trusted files only).")]
DataOption = Annotated[str, typer.Option("--data", "--dataset", help="Data set name (see robustlens.data).")]
SplitOption = Annotated[str, typer.Option("--split", help="Split of the data set: train or test.")]
DataRootOption = Annotated[Path | None, typer.Option("--data-root", "--root", help="Folder holding the data files.")]


def load_cli_model(model: Path | None, arch: str | None, model_file: str | None, unsafe: bool) -> nn.Module:
    """The model named on the command line: ``--model-file`` (runs that file) with optional ``--model`` weights,
    or ``--model`` alone (safetensors / ``weights_only`` state dict; a pickle only with ``--unsafe-pickle``)."""
    from ..errors import ConfigError
    from ..zoo import load_model

    if model_file is not None:
        from ..zoo.io import load_user_model

        return load_user_model(model_file, model, unsafe=unsafe)
    if model is None:
        raise ConfigError("give the model: --model FILE (with --arch if the file does not record it), or "
                          "--model-file path/file.py:factory")
    return load_model(model, arch, unsafe=unsafe)


def resolve_device(device: str) -> str:
    """Map 'auto' to 'cuda' when available, else 'cpu'."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


@app.callback()
def _root() -> None:
    """robustlens: adversarial robustness as a lens on deep classifiers."""
