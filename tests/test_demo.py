"""``robustlens demo``: trains the pair, caches it, runs the comparison report and prints the headline table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from robustlens.cli import app
from robustlens.report import ReportResults, validate_results_json


@pytest.mark.slow
def test_demo_tiny_end_to_end_and_cached(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["demo", "--tiny", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, (res.output, res.exception)
    out = res.output
    assert "standard model (cross-entropy): trained" in out and "robust model (fgsm-rs" in out
    assert str((tmp_path / "report.html").resolve()) in out
    assert "median L2 distance to the boundary" in out and "clean accuracy" in out
    validate_results_json(tmp_path / "results.json")
    back = ReportResults.load(tmp_path / "results.json")
    assert [m.name for m in back.models] == ["standard", "robust"]
    # the roles make the claims about adversarial training testable on the pair, whichever way the numbers go
    pairs = [v for v in back.verdicts if v.subject == "robust vs standard"]
    assert {v.section for v in pairs} >= {"robustness", "curvature", "clean"}
    assert all(v.status in ("holds", "does not hold", "cannot be judged") for v in pairs)
    assert {v.section for v in back.verdicts if v.status != "not tested"} == set(back.plan.sections)
    assert re.search(r"the paper's claims: \d+ of \d+ claims hold", out)
    for m in back.models:
        assert m.sections["certified"].ok  # the demo smooths both models
    assert (tmp_path / "models" / "tiny" / "standard.safetensors").is_file()
    # a second run loads both models from the cache and resumes every section: same numbers
    again = runner.invoke(app, ["demo", "--tiny", "--out", str(tmp_path), "--no-progress"])
    assert again.exit_code == 0, (again.output, again.exception)
    assert "standard model (cross-entropy): loaded from" in again.output
    assert "robust model (fgsm-rs adversarial training, Linf eps 0.1): loaded from" in again.output
    table = [ln for ln in out.splitlines() if "distance to the boundary" in ln]
    assert table and all(ln in again.output for ln in table)
