"""``python -m robustlens`` (used by ``torchrun ... -m robustlens train``)."""

from .cli import main

main()
