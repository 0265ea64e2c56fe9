"""Every numeric setting of every registered training objective, of the Trainer, fit and the callbacks is validated
(robustlens.checks): NaN, inf, a wrong sign, a non-integer count are a ConfigError naming the setting; values in
range construct. The objectives are enumerated from the OBJECTIVES registry, so a new one is covered automatically
(tests/settings_props.py). The ``robustlens train`` options go through the same rules and are named as flags."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from settings_props import (
    assert_accepts,
    assert_refuses,
    case_id,
    cases,
    edge_invalid,
    invalid_values,
    objects,
    undeclared,
    valid_values,
)
from torch import nn
from typer.testing import CliRunner

from robustlens.checks import declared_checks
from robustlens.registry import Registry
from robustlens.train import (
    OBJECTIVES,
    CatastrophicOverfittingDetector,
    RobustOverfittingTracker,
    Trainer,
    fit,
)
from robustlens.train.trainer import SETTINGS

PROPS = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])

LOOP: Registry[Any] = Registry("training loop")
LOOP.add("trainer", Trainer)
LOOP.add("robust-overfitting", RobustOverfittingTracker)
LOOP.add("catastrophic-overfitting", CatastrophicOverfittingDetector)
CASES = cases(OBJECTIVES) + cases(LOOP)


def build(obj: Any) -> dict[str, Any]:
    """The arguments each object needs besides the one under test."""
    if obj is Trainer:  # epochs large enough for any valid eps_warmup
        return {"model": nn.Linear(2, 2), "epochs": 2_000_000}
    if obj in (RobustOverfittingTracker, CatastrophicOverfittingDetector):
        return {"x": torch.zeros(2, 3), "y": torch.zeros(2, dtype=torch.long), "eps": 0.1}
    radius = next((e.meta["radius"] for e in OBJECTIVES.entries() if e.obj is obj), None)
    return {radius: 0.1} if radius else {}


def test_every_registered_objective_and_the_loop_declare_every_numeric_setting() -> None:
    assert len(objects(OBJECTIVES)) >= 10
    missing = {obj.__name__: undeclared(obj) for obj in objects(OBJECTIVES) if undeclared(obj)}
    assert not missing, f"declare these settings with @checked: {missing}"
    # bounds is a pair of data limits, checked by the Classifier the loop builds
    assert set(undeclared(Trainer)) <= {"bounds"}
    assert not undeclared(RobustOverfittingTracker) and not undeclared(CatastrophicOverfittingDetector)
    assert {"epochs", "lr", "momentum", "weight_decay", "batch_size", "eps_warmup"} <= set(declared_checks(Trainer))
    assert declared_checks(fit) == SETTINGS
    radius = {e.name: e.meta["radius"] for e in OBJECTIVES.entries()}
    for e in OBJECTIVES.entries():
        if radius[e.name]:
            assert radius[e.name] in declared_checks(e.obj), e.name


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_edge_values_are_refused(case: tuple[Any, str, Any]) -> None:
    obj, name, rule = case
    for value in edge_invalid(rule):
        assert_refuses(obj, name, value, build)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@PROPS
@given(data=st.data())
def test_values_in_range_construct_and_outside_are_refused(case: tuple[Any, str, Any], data: st.DataObject) -> None:
    obj, name, rule = case
    assert_accepts(obj, name, data.draw(valid_values(rule), "valid"), build)
    assert_refuses(obj, name, data.draw(invalid_values(rule), "invalid"), build)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_fit_refuses_bad_settings_before_training(name: str) -> None:
    x, y = torch.rand(4, 2), torch.zeros(4, dtype=torch.long)
    for value in (float("nan"), -1.0, float("inf")):
        with pytest.raises(Exception, match=name) as info:
            fit(nn.Linear(2, 2), (x, y), progress=False, **{name: value})
        assert type(info.value).__name__ == "ConfigError"


def test_the_issue_settings_are_refused() -> None:
    from robustlens.errors import ConfigError
    from robustlens.train import PGDAT

    with pytest.raises(ConfigError, match="PGDAT: step_size must be a finite number > 0 or None, got -0.05"):
        PGDAT(0.3, step_size=-0.05)
    with pytest.raises(ConfigError, match="Trainer: weight_decay must be a finite number >= 0, got nan"):
        Trainer(nn.Linear(2, 2), weight_decay=float("nan"))
    with pytest.raises(ConfigError, match="eps_warmup .* is longer than the run"):
        Trainer(nn.Linear(2, 2), epochs=2, eps_warmup=3)


runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["--objective", "pgd", "--eps", "0.3", "--step-size", "-0.05"],
     "--objective pgd: --step-size must be a finite number > 0 or None, got -0.05"),
    (["--objective", "pgd", "--eps", "nan"], "--eps must be a finite number >= 0, got nan"),
    (["--objective", "trades", "--eps", "0.3", "--steps", "0"], "--steps must be an integer >= 1, got 0"),
    (["--objective", "gradalign", "--eps", "0.3", "--lam", "-1"], "--lam must be a finite number >= 0, got -1.0"),
    (["--objective", "gaussian", "--eps", "0"], "--eps must be a finite number > 0, got 0.0"),
    (["--objective", "deepfool", "--adv-weight", "1.5"], "--adv-weight must be a finite number in [0, 1], got 1.5"),
    (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0, got nan"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--momentum", "nan"], "--momentum must be a finite number in [0, 1], got nan"),
    (["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    (["--batch-size", "-2"], "--batch-size must be an integer >= 1, got -2"),
    (["--limit", "-5"], "--limit must be an integer >= 0, got -5"),
    (["--objective", "pgd", "--eps", "0.1", "--eps-warmup", "-1"], "--eps-warmup must be a finite number >= 0"),
    (["--eps-warmup", "1"], "--objective standard has none to ramp: drop --eps-warmup"),
    (["--objective", "pgd", "--eps", "0", "--eps-warmup", "1"], "--objective pgd has none to ramp"),
    (["--objective", "pgd", "--eps", "0.1", "--eps-warmup", "5", "--epochs", "2"],
     "--eps-warmup 5 is longer than the run (--epochs 2)"),
])
def test_cli_options_are_checked_under_their_flag_names(tmp_path, args: list[str], message: str) -> None:
    from robustlens.cli import app

    result = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--no-progress", "--device", "cpu", *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "x" / "checkpoint.pt").exists()
