"""The README, run in order as a new user would after the set-up: every ``robustlens`` command of its bash blocks
(in-process, in a fresh folder), then its Python snippets, which load what the commands wrote.

Epochs, sample counts and iteration counts are shortened by :data:`SHORT` so that the whole README runs in well under
a minute; ``ROBUSTLENS_README_FULL=1`` runs it exactly as written (many minutes). ``make``, ``source`` and
``torchrun`` lines are the set-up and the multi-process variant, which other tests cover.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"
FULL = os.environ.get("ROBUSTLENS_README_FULL") == "1"

#: (pattern, replacement) applied to each command and snippet unless ROBUSTLENS_README_FULL=1.
SHORT: list[tuple[str, str]] = [
    (r"^(robustlens train .*)--epochs \d+", r"\1--epochs 1 --limit 1600 --eval-limit 200"),
    (r"--objective pgd --eps 0\.3", "--objective pgd --eps 0.1 --steps 2"),
    (r"--limit 500", "--limit 20"),
    (r"^(robustlens certify .*)", r"\1 --limit 8 --n0 16 --n 100"),
    (r"^(robustlens benchmark .*)--limit \d+", r"\1--limit 6"),
    (r"^(robustlens report .*)", r"\1 --limit 8 --sections clean,robustness"),
    (r"subset\(100,", "subset(20,"),
    (r"steps=40", "steps=5"),
    (r"resolution=201", "resolution=21"),
    (r"\"random\"\)\)", '"random"), resolution=11)'),
    (r"x\[:8\], k=20", "x[:2], k=3"),
    (r"eps=0\.1, n_samples=100", "eps=0.3, n_samples=6"),  # all fooled by the first stage: no 5,000-query Square
]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), re.S)


def commands() -> list[str]:
    """The ``robustlens`` command lines of the README's bash blocks, continuation lines joined."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("robustlens "):
                out.append(re.sub(r"\s+", " ", line))
    return out


def shorten(text: str) -> str:
    if FULL:
        return text
    for pattern, repl in SHORT:
        text = re.sub(pattern, repl, text, flags=re.M)
    return text


def test_readme_lists_the_commands() -> None:
    names = {c.split()[1] for c in commands()}
    assert {"train", "attack", "certify", "benchmark", "report"} <= names
    assert "source .venv/bin/activate" in README.read_text()


@pytest.mark.slow
def test_readme_runs_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustlens.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for line in commands():
        args = shlex.split(shorten(line))[1:] + (["--no-progress"] if "--version" not in line else [])
        res = runner.invoke(app, args)
        assert res.exit_code == 0, f"{line}\n{res.output}" + (repr(res.exception) if res.exception else "")
    for path in ("runs/std/model.safetensors", "runs/at/model.safetensors", "runs/gauss/model.safetensors",
                 "df.json", "cert.json", "bench.json", "report/report.html"):
        assert (tmp_path / path).is_file(), path  # each file a later line reads was written by an earlier one
    ns: dict[str, object] = {}
    for i, code in enumerate(blocks("python")):
        exec(compile(shorten(code), f"README.md python block {i + 1}", "exec"), ns)  # noqa: S102 - the README's own
    assert float(ns["clf"].accuracy(ns["x"], ns["y"])) > 0.5  # type: ignore[attr-defined]  # the trained model
