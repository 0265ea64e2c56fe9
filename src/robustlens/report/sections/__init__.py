"""The report's sections, one module per topic. Each module defines a result type (or uses the library's), one
:class:`~robustlens.report.section.Section` subclass registered with
:func:`~robustlens.report.section.register_section`, and the paper's claims it tests.

This package imports nothing itself: :func:`robustlens.report.registry.load_sections` imports every module in it, so
a new section is one new module here (see ``docs/design.md``, "Adding an analysis").
"""
