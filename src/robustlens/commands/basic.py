"""``robustlens version``."""

from __future__ import annotations

import platform

import typer

from .app import app


@app.command()
def version() -> None:
    """Print the versions of robustlens, PyTorch and Python."""
    import torch

    from .. import __version__

    typer.echo(f"robustlens {__version__}")
    typer.echo(f"torch {torch.__version__} (cuda available: {torch.cuda.is_available()})")
    typer.echo(f"python {platform.python_version()}")
