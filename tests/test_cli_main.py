"""The console entry point turns a RobustLensError into a message and exit status 2, not a traceback."""

from __future__ import annotations

import sys

import pytest

from robustlens.cli import app, main
from robustlens.errors import InputError


@app.command("raise-input-error", hidden=True)
def _raise_input_error() -> None:
    raise InputError("inputs hold NaN: clean the data")


def test_robustlens_error_exits_2_with_its_message(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["robustlens", "raise-input-error"])
    monkeypatch.delenv("ROBUSTLENS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "robustlens: error: inputs hold NaN: clean the data" in err
    assert "Traceback" not in err


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["robustlens", "raise-input-error"])
    monkeypatch.setenv("ROBUSTLENS_TRACEBACK", "1")
    with pytest.raises(InputError, match="inputs hold NaN"):
        main()


def test_every_data_command_takes_data_and_data_root() -> None:
    """train, report, attack and certify name their data options alike (attack/certify keep --dataset/--root)."""
    from typer.testing import CliRunner

    runner = CliRunner()
    for command in ("train", "report", "attack", "certify"):
        out = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "--data " in out or "--data," in out, command
        assert "--data-root" in out, command


@app.command("warn-resume", hidden=True)
def _warn_resume() -> None:
    import warnings

    from robustlens.errors import RobustLensWarning

    warnings.warn("resume=True but no checkpoint at x/checkpoint.pt: training from scratch", RobustLensWarning,
                  stacklevel=1)


def test_library_warnings_name_flags_with_the_prefix(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import warnings

    monkeypatch.setattr(sys, "argv", ["robustlens", "warn-resume"])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it: restore it after
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exc:
            main()
    assert exc.value.code == 0
    err = capsys.readouterr().err
    assert "robustlens: warning: --resume but no checkpoint at x/checkpoint.pt" in err and "resume=True" not in err


def test_limit_is_checked_and_subsets_are_stratified() -> None:
    from robustlens.commands.options import check_limit, take_limit
    from robustlens.data import load_dataset
    from robustlens.errors import ConfigError

    with pytest.raises(ConfigError, match="--limit must be a positive number"):
        check_limit(-5)
    data = load_dataset("mnist-embedded", "test")
    assert take_limit(data, 0) is data and take_limit(data, 10**6) is data
    assert take_limit(data, 100).class_counts() == [10] * 10
