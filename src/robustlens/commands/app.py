"""The typer application shared by every command module."""

from __future__ import annotations

from typing import Annotated

import typer

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
