"""The typer application shared by every command module.

Every command registered with ``@app.command()`` reports a :class:`~robustlens.errors.RobustLensError` (or a missing
optional package) the same way: one line ``robustlens: error: ...`` on stderr, with the library's Python keywords
rewritten as the flags that do the same (:func:`robustlens.commands.options.cli_message`), and exit status 2.
``ROBUSTLENS_TRACEBACK=1`` re-raises instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import typer

from .options import ERROR_PREFIX, DeviceOption, SeedOption, cli_message


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


def report_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command: a RobustLensError or MissingDependencyError becomes ``robustlens: error: MESSAGE`` (flags,
    not Python keywords) and exit status 2."""
    from ..errors import MissingDependencyError, RobustLensError

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RobustLensError, MissingDependencyError) as e:
            if os.environ.get("ROBUSTLENS_TRACEBACK"):
                raise
            typer.echo(ERROR_PREFIX + cli_message(str(e)), err=True)
            raise typer.Exit(2) from None

    return command


class RobustLensApp(typer.Typer):
    """A Typer application whose commands report library errors with one prefix and the CLI's flag names."""

    def command(self, *args: Any, **kwargs: Any) -> Any:  # typer.Typer.command, each command wrapped
        register = super().command(*args, **kwargs)

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(report_errors(fn))
            return fn

        return decorator


app = RobustLensApp(
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


def resolve_device(device: str) -> str:
    """Map 'auto' to 'cuda' when available, else 'cpu'."""
    import torch

    from ..errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return device


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"robustlens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print robustlens's version and exit ('robustlens version' adds torch's)."),
) -> None:
    """robustlens: adversarial robustness as a lens on deep classifiers."""


__all__ = ["DeviceOption", "RobustLensApp", "SeedOption", "app", "parse_number", "report_errors", "resolve_device"]
