"""The ``shift`` report section on two tiny MNIST models: its numbers are the library's, its claims are judged, its
figures render; the ``corrupt`` command writes a corrupted copy of a data set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from report_helpers import tiny_plan, train_tiny

from robustlens.data import load_dataset
from robustlens.report import ModelEntry, ReportData, run_report
from robustlens.report.sections.shift import mce_against
from robustlens.shift import corruption_robustness


@pytest.fixture(scope="module")
def mnist():  # type: ignore[no-untyped-def]
    return load_dataset("mnist-embedded", split="train"), load_dataset("mnist-embedded", split="test")


def test_section_numbers_and_verdicts(tmp_path: Path, mnist) -> None:  # type: ignore[no-untyped-def]
    train, test = mnist
    models = [ModelEntry("std", test.classifier(train_tiny(0, train.x, train.y)), role="standard"),
              ModelEntry("rob", test.classifier(train_tiny(1, train.x, train.y)), role="robust")]
    data = ReportData.from_image_data(test)
    plan = dataclasses.replace(tiny_plan(test.input_shape, n_samples=12, batch_size=12), sections=["clean", "shift"])
    res = run_report(models, data, plan, tmp_path, seed=2, progress=False)
    out = res.models[0].sections["shift"]
    assert out.ok, out
    r = out.result
    x, y = data.head(12)
    direct = corruption_robustness(models[0].clf, x, y, corruptions="benchmark", seed=2, progress=False)
    assert torch.equal(r.accuracy, direct.accuracy) and len(r.corruptions) == 15
    h0, h1 = res.models[0].sections["shift"].headline, res.models[1].sections["shift"].headline
    base = direct.with_baseline(direct)
    assert base.mce == pytest.approx(1.0) and mce_against(h0, h0) == pytest.approx(1.0)
    other = corruption_robustness(models[1].clf, x, y, corruptions="benchmark", seed=2, progress=False)
    if bool((direct.error.sum(1) > 0).all()):
        assert mce_against(h1, h0) == pytest.approx(other.with_baseline(direct).mce)
    verdicts = [v for v in res.verdicts if v.section == "shift"]
    assert {v.claim for v in verdicts} == {"noise", "low-frequency"}
    assert all(v.status in ("holds", "does not hold", "cannot be judged") for v in verdicts)
    html = (tmp_path / "report.html").read_text()
    assert "Common corruptions" in html


def test_corrupt_command_writes_a_copy(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustlens.cli import app

    out = tmp_path / "fog.npz"
    res = CliRunner().invoke(app, ["corrupt", "--data", "digits", "--split", "test", "--corruption", "fog",
                                   "--severity", "3", "--limit", "20", "--out", str(out), "--seed", "1"])
    assert res.exit_code == 0, res.output
    z = np.load(out)
    assert z["x"].shape[0] == 20 and z["x"].dtype == np.uint8 and z["y"].shape == (20,)
    meta = json.loads(str(z["meta"]))
    assert meta["corruption"] == "fog" and meta["severity"] == 3
    bad = CliRunner().invoke(app, ["corrupt", "--data", "digits", "--corruption", "rain", "--out", str(out)])
    assert bad.exit_code != 0


def test_corrupt_command_measures_a_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustlens.cli import app
    from robustlens.results import Result
    from robustlens.shift import CorruptionResult
    from robustlens.zoo import create_model, save_model

    model = tmp_path / "m.safetensors"
    save_model(create_model("mlp", 10, seed=0, input_size=8, hidden=(16,)), model)
    out = tmp_path / "acc.json"
    res = CliRunner().invoke(app, ["corrupt", "--data", "digits", "--corruption", "fog,contrast", "--severity", "1,5",
                                   "--limit", "20", "--model", str(model), "--arch", "mlp", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = Result.load(out)
    assert isinstance(r, CorruptionResult) and r.corruptions == ["fog", "contrast"] and r.severities == [1, 5]
    assert "contrast" in res.output
