"""The ``robustlens`` command line. Each command lives in ``robustlens/commands/<group>.py``."""

from __future__ import annotations

from .commands import attack as _attack  # noqa: F401
from .commands import basic  # noqa: F401  (registers commands)
from .commands import certify as _certify  # noqa: F401
from .commands import corrupt as _corrupt  # noqa: F401
from .commands import demo as _demo  # noqa: F401
from .commands import report as _report  # noqa: F401
from .commands import train as _train  # noqa: F401
from .commands.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Run the CLI; a :class:`~robustlens.errors.RobustLensError` (bad input, bad setting, refused file) prints its
    message and exits with status 2 instead of a traceback. ``ROBUSTLENS_TRACEBACK=1`` shows the traceback."""
    import os
    import sys

    from .errors import RobustLensError
    from .perf import tune_cpu_allocator

    tune_cpu_allocator()  # the command line owns its process: keep freed CPU buffers (robustlens.perf)
    try:
        app()
    except RobustLensError as e:
        if os.environ.get("ROBUSTLENS_TRACEBACK"):
            raise
        print(f"robustlens: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
