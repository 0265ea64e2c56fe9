"""The ``robustlens`` command line. Each command lives in ``robustlens/commands/<group>.py``.

The command line owns its process: before anything imports torch it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the
user set a policy (:func:`robustlens.perf.passive_openmp`), and :func:`main` keeps freed CPU buffers with the process
(:func:`robustlens.perf.tune_cpu_allocator`).
"""

from __future__ import annotations

from typing import Any

from .perf import passive_openmp

passive_openmp()  # OpenMP reads it when torch loads: before the commands below import torch

from .commands import attack as _attack  # noqa: E402, F401
from .commands import basic  # noqa: E402, F401  (registers commands)
from .commands import benchmark as _benchmark  # noqa: E402, F401
from .commands import certify as _certify  # noqa: E402, F401
from .commands import corrupt as _corrupt  # noqa: E402, F401
from .commands import demo as _demo  # noqa: E402, F401
from .commands import report as _report  # noqa: E402, F401
from .commands import train as _train  # noqa: E402, F401
from .commands import verify as _verify  # noqa: E402, F401
from .commands.app import app  # noqa: E402
from .commands.options import ERROR_PREFIX, WARNING_PREFIX, cli_message  # noqa: E402

__all__ = ["app", "main"]


def show_library_warnings() -> None:
    """Print a :class:`~robustlens.errors.RobustLensWarning` as ``robustlens: warning: MESSAGE`` with the flags'
    names (:func:`~robustlens.commands.options.cli_message`) instead of Python's ``file:line: category`` form; other
    warnings keep it."""
    import sys
    import warnings

    from .errors import RobustLensWarning

    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        if issubclass(category, RobustLensWarning):
            print(WARNING_PREFIX + cli_message(str(message)), file=sys.stderr if file is None else file)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main() -> None:
    """Run the CLI; a :class:`~robustlens.errors.RobustLensError` (bad input, bad setting, refused file) prints its
    message and exits with status 2 instead of a traceback. ``ROBUSTLENS_TRACEBACK=1`` shows the traceback."""
    import os
    import sys

    from .errors import RobustLensError
    from .perf import tune_cpu_allocator

    tune_cpu_allocator()  # the command line owns its process: keep freed CPU buffers (robustlens.perf)
    show_library_warnings()
    try:
        app()
    except RobustLensError as e:
        if os.environ.get("ROBUSTLENS_TRACEBACK"):
            raise
        print(ERROR_PREFIX + cli_message(str(e)), file=sys.stderr)
        raise SystemExit(2) from None
