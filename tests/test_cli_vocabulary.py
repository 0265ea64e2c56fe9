"""One vocabulary across the commands: the same options, one error prefix, flags instead of Python keywords, the
deprecated aliases naming their replacement, --version, --limit and --eps checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustlens.cli import app
from robustlens.commands.options import DEFAULT_DATA, cli_message
from robustlens.results import Result
from robustlens.zoo import create_model, save_model

runner = CliRunner()
DIGITS = ["--data", "digits", "--no-progress", "--device", "cpu"]


def cli(*args: str | Path, code: int = 0) -> str:
    res = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert res.exit_code == code, res.output + (repr(res.exception) if res.exception else "")
    return res.output


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "mlp.safetensors"
    save_model(create_model("mlp", num_classes=10, in_channels=1, seed=0, input_size=8, hidden=(16,)), path)
    return path


def _options(command: str) -> set[str]:
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", cli(command, "--help")))


@pytest.mark.parametrize("command", ["attack", "certify", "report", "benchmark", "train"])
def test_every_data_command_speaks_the_same_options(command: str) -> None:
    opts = _options(command)
    assert {"--model", "--data", "--data-root", "--download", "--seed", "--device"} <= opts, command
    assert "--n-samples" not in opts and "--arch" not in opts and "--model-file" not in opts  # deprecated: hidden
    if command != "train":
        assert "--limit" in opts and "--split" in opts
    help_text = cli(command, "--help")
    if command != "report":  # report needs --out; the others default --data alike
        assert DEFAULT_DATA in help_text


def test_version_flag() -> None:
    from robustlens import __version__

    assert cli("--version").strip() == f"robustlens {__version__}"


def test_cli_message_names_flags_not_keywords() -> None:
    from robustlens.runner import run_evaluation  # noqa: F401  (the messages below are the runner's)

    text = ("runs/x.state already holds an evaluation; pass resume=True to continue it, overwrite=True to discard "
            "it, or choose another state_dir. Point root= at its folder or pass download=True "
            "(load_dataset(..., download=True) does this); run without --resume (resume=False) to recompute")
    out = cli_message(text)
    assert "--resume" in out and "--overwrite" in out and "--state-dir" in out and "--data-root" in out
    assert "--download" in out and "=True" not in out and "root=" not in out and "resume=False" not in out


def test_negative_limit_is_an_error_with_the_prefix(digits_model: Path, tmp_path: Path) -> None:
    for command in ("attack", "certify", "benchmark"):
        extra = ["-a", "fgsm", "--eps", "0.1"] if command == "attack" else []
        out = cli(command, *extra, "--model", digits_model, "--limit", "-5", "--out", tmp_path / f"{command}.json",
                  *DIGITS, code=2)
        assert "robustlens: error: --limit must be a positive number" in out, command
        assert not (tmp_path / f"{command}.json").exists()


def test_eps_beyond_the_data_range_asks_about_255(digits_model: Path, tmp_path: Path) -> None:
    out = cli("attack", "-a", "fgsm", "--eps", "8", "--model", digits_model, "--limit", "10",
              "--out", tmp_path / "a.json", *DIGITS)
    assert "robustlens: warning: --eps 8 is beyond the data range [0, 1]" in out and "did you mean 8/255?" in out
    out = cli("attack", "-a", "fgsm", "--eps", "8/255", "--model", digits_model, "--limit", "10",
              "--out", tmp_path / "b.json", *DIGITS)
    assert "warning" not in out


def test_rerun_with_other_settings_names_the_flags(digits_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "pgd.json"
    args = ["attack", "-a", "pgd", "--steps", "2", "--model", digits_model, "--limit", "10", "--out", out, *DIGITS]
    cli(*args, "--eps", "0.1")
    err = cli(*args, "--eps", "0.2", code=2)
    assert err.startswith("robustlens: error: ")
    assert "--overwrite" in err and "--state-dir" in err and "overwrite=True" not in err and "state_dir" not in err
    err = cli(*args, "--eps", "0.1", code=2)  # the same settings again: --resume or --overwrite
    assert "--resume" in err and "--overwrite" in err and "resume=True" not in err
    cli(*args, "--eps", "0.2", "--overwrite")


def test_deprecated_model_options_name_the_new_form(digits_model: Path, tmp_path: Path) -> None:
    out = cli("attack", "-a", "fgsm", "--eps", "0.1", "--model", digits_model, "--arch", "mlp", "--limit", "5",
              "--out", tmp_path / "a.json", *DIGITS)
    assert f"--arch is deprecated: write --model mlp={digits_model}" in out
    same = cli("attack", "-a", "fgsm", "--eps", "0.1", "--model", f"mlp={digits_model}", "--limit", "5",
               "--out", tmp_path / "b.json", *DIGITS)
    assert "is deprecated" not in same
    a, b = Result.load(tmp_path / "a.json"), Result.load(tmp_path / "b.json")
    assert torch.equal(a.adversarial, b.adversarial)  # type: ignore[attr-defined]
    err = cli("attack", "-a", "fgsm", "--eps", "0.1", "--limit", "5", *DIGITS, code=2)
    assert "robustlens: error: give the model with --model: FILE, ZOO=FILE" in err


def test_limit_100_covers_every_class_of_a_sorted_split(tmp_path: Path) -> None:
    path = tmp_path / "lin.safetensors"
    save_model(create_model("mlp", num_classes=10, in_channels=1, seed=0, input_size=28, hidden=(8,)), path)
    out = tmp_path / "a.json"
    cli("attack", "-a", "fgsm", "--eps", "0.1", "--model", path, "--data", "mnist-embedded", "--limit", "100",
        "--out", out, "--no-progress", "--device", "cpu")
    res = Result.load(out)
    assert torch.bincount(res.labels, minlength=10).tolist() == [10] * 10  # type: ignore[attr-defined]
    assert res.settings["subset"]["method"] == "stratified"  # type: ignore[attr-defined]


def test_attack_prints_fooled_of_correct_and_keeps_the_counts(digits_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "df.json"
    text = cli("attack", "-a", "deepfool", "--model", digits_model, "--limit", "30", "--out", out, *DIGITS)
    res = Result.load(out)
    correct = int(res.clean_correct.sum())  # type: ignore[attr-defined]
    fooled = int((res.success & res.clean_correct).sum())  # type: ignore[attr-defined]
    assert f"fooled {fooled} of {correct} correctly classified (clean accuracy {correct / 30:.3f})" in text
    assert res.settings["counts"] == {"samples": 30, "correct": correct, "fooled": fooled,  # type: ignore[attr-defined]
                                      "stopped": 0}
    med = float(res.norm[res.success & res.clean_correct].double().median())  # type: ignore[attr-defined]
    assert f"median L2 norm of the correctly classified samples fooled: {med:.4g}" in text
