"""The registry of report sections: every section registers itself where it is defined, and the plan, the page and the
command line enumerate from here.

A section is a class in one module of :mod:`robustlens.report.sections`, registered with
:func:`robustlens.report.section.register_section`; :func:`load_sections` imports every module of that package, so
adding a module is all it takes to add a section. The page order is the ``order`` each section registers with.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from ..registry import Registry

SECTIONS: Registry[Any] = Registry("report section")
"""Section classes by key (``SECTIONS.entry(key).meta["order"]`` is the page position)."""

PACKAGE = "robustlens.report.sections"


def load_sections() -> Registry[Any]:
    """Import every module of :mod:`robustlens.report.sections` (each registers its section) and return
    :data:`SECTIONS`."""
    pkg = importlib.import_module(PACKAGE)
    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{PACKAGE}.{mod.name}")
    return SECTIONS


def section_keys() -> list[str]:
    """Every registered section key, in page order."""
    reg = load_sections()
    return sorted(reg.names(), key=lambda k: (reg.entry(k).meta.get("order", 1000), k))


__all__ = ["PACKAGE", "SECTIONS", "load_sections", "section_keys"]
