"""The runnable examples in the docstrings of the main attack and metrics entry points run and print what they say."""

from __future__ import annotations

import doctest

import pytest

from robustlens.attacks import AutoAttack, autoattack
from robustlens.geometry import boundary_curvature, cross_section, hessian_eigenpairs
from robustlens.metrics import evaluate_minimal


@pytest.mark.parametrize(
    "obj", [AutoAttack, autoattack, evaluate_minimal, cross_section, hessian_eigenpairs, boundary_curvature],
    ids=lambda o: o.__name__,
)
def test_docstring_example_runs(obj: object) -> None:
    tests = doctest.DocTestFinder(recurse=False).find(obj, globs={})
    assert tests and tests[0].examples, f"{obj} has no example"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    assert runner.summarize(verbose=False).failed == 0
