"""What ``robustlens train`` guards against: two runs in one ``--out`` (an output lock), a model that ends near
chance (a loud warning and exit status 3 unless ``--allow-chance``), and adversarial training from scratch without
a radius warm-up (the eps ramp, on by default for objectives with a radius, recorded and resumable exactly)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from robustlens.commands.train import TrainRun
from robustlens.train import PGDAT, EpsWarmup, Standard, TrainingHistory, fit
from robustlens.zoo import read_weights

runner = CliRunner()
SMALL = ["--limit", "128", "--eval-limit", "100", "--batch-size", "32", "--no-progress", "--device", "cpu"]


def cli(*args: str | Path, code: int = 0) -> str:
    from robustlens.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + (repr(result.exception) if result.exception else "")
    return " ".join(result.output.split())


def test_a_second_run_into_the_same_out_is_refused(tmp_path: Path) -> None:
    """Another process holds --out's lock (as a running ``robustlens train`` does, with OutputLock's flock on the
    lock file): this run is refused and writes nothing; so is a second run inside this process."""
    from robustlens.state import LOCK_FILE, OutputLock

    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(  # no torch import: the holder starts in a blink
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"fd = os.open({str(out / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); os.write(fd, f'pid {os.getpid()}'.encode())\n"
         "print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        text = cli("train", "--epochs", "1", "--out", out, *SMALL, code=2)
        assert f"{out} is in use by another training run (pid {holder.pid})" in text
        assert not (out / "checkpoint.pt").exists() and not (out / "model.safetensors").exists()
    finally:
        holder.communicate("", timeout=60)
    with OutputLock(out, "training run"):
        text = cli("train", "--epochs", "1", "--out", out, *SMALL, code=2)
        assert "is already in use by a training run in this process" in text
    # once the holders are gone the folder is free again
    cli("train", "--epochs", "1", "--out", out, *SMALL, "--allow-chance")
    assert (out / "model.safetensors").is_file() and not (out / LOCK_FILE).exists()


def _constant_images(root: Path, classes: int = 2, per_class: int = 8) -> Path:
    """A folder data set whose images are all black: no model can beat the majority class."""
    from PIL import Image

    for split in ("train", "test"):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.new("L", (8, 8)).save(d / f"{i}.png")
    return root


def test_a_model_near_chance_warns_and_fails_unless_allowed(tmp_path: Path) -> None:
    data = _constant_images(tmp_path / "data")
    args = ["train", "--model", "mlp", "--data", str(data), "--epochs", "1", "--batch-size", "4", "--no-progress",
            "--device", "cpu"]
    from robustlens.cli import app

    result = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    text = " ".join(result.output.split())
    assert result.exit_code == 3, text
    assert "WARNING: the trained model is near chance: held-out accuracy 0.500 with 2 classes" in text
    assert "Likely cause" in text and "--allow-chance" in text
    assert TrainRun.load(tmp_path / "a" / "summary.json").near_chance
    assert _metadata(tmp_path / "a" / "model.safetensors")["near_chance"] is True
    # the files stay for inspection, the model's metadata says what happened
    assert (tmp_path / "a" / "model.safetensors").is_file()
    text = cli(*args, "--out", tmp_path / "b", "--allow-chance")
    assert "near chance" in text


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {})["robustlens.metadata"])


def test_adversarial_objectives_warm_up_by_default_and_record_it(tmp_path: Path) -> None:
    cli("train", "--epochs", "2", "--objective", "pgd", "--eps", "0.2", "--steps", "2", "--out", tmp_path / "on",
        *SMALL, "--allow-chance")
    hist = TrainingHistory.load(tmp_path / "on" / "history.json")
    assert hist.config["eps_warmup"] == 1.0 and hist.config["eps_warmup_steps"] == 4  # 128 / 32 steps per epoch
    ramp = [0.2 * (s + 1) / 4 for s in range(4)]
    assert hist.series("train.eps") == pytest.approx([sum(ramp) / 4, 0.2])
    meta = _metadata(tmp_path / "on" / "model.safetensors")
    assert meta["eps_warmup"] == 1.0 and meta["objective_config"]["eps"] == 0.2
    cli("train", "--epochs", "2", "--objective", "pgd", "--eps", "0.2", "--steps", "2", "--eps-warmup", "0",
        "--out", tmp_path / "off", *SMALL, "--allow-chance")
    off = TrainingHistory.load(tmp_path / "off" / "history.json")
    assert off.config["eps_warmup"] == 0.0 and "eps" not in off.records[0].train
    assert _metadata(tmp_path / "off" / "model.safetensors")["eps_warmup"] == 0.0
    # standard training has no radius: no warm-up
    cli("train", "--epochs", "1", "--out", tmp_path / "std", *SMALL, "--allow-chance")
    assert TrainingHistory.load(tmp_path / "std" / "history.json").config["eps_warmup"] == 0.0


def test_resume_inside_the_warm_up_is_bit_identical(tmp_path: Path) -> None:
    base = ["train", "--epochs", "3", "--objective", "pgd", "--eps", "0.2", "--steps", "2", "--eps-warmup", "2",
            *SMALL, "--allow-chance"]
    cli(*base, "--out", tmp_path / "whole")
    cli(*base, "--out", tmp_path / "cut", "--stop-after", "1")
    cli(*base, "--out", tmp_path / "cut", "--resume")
    a, _ = read_weights(tmp_path / "whole" / "model.safetensors")
    b, _ = read_weights(tmp_path / "cut" / "model.safetensors")
    assert isinstance(a, dict) and isinstance(b, dict)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    whole = TrainingHistory.load(tmp_path / "whole" / "history.json").series("train.eps")
    assert TrainingHistory.load(tmp_path / "cut" / "history.json").series("train.eps") == whole


class _Record:
    def __init__(self) -> None:
        self.eps: list[float] = []

    def on_batch_end(self, trainer, step_ctx, stats) -> None:  # noqa: ANN001
        self.eps.append(float(stats["eps"]))

    def on_epoch_end(self, trainer, epoch, history) -> None:  # noqa: ANN001
        pass


def test_the_ramp_is_linear_in_the_step_and_reaches_eps() -> None:
    torch.manual_seed(0)
    x, y = torch.rand(24, 6), torch.randint(0, 3, (24,))
    rec = _Record()
    hist = fit(nn.Linear(6, 3), (x, y), objective=PGDAT(0.3, steps=1), epochs=2, batch_size=4, eps_warmup=1.5,
               callbacks=[rec], progress=False)
    n = 9  # 1.5 epochs of 6 steps
    assert rec.eps == pytest.approx([0.3 * (s + 1) / n for s in range(n)] + [0.3] * 3)
    assert hist.config["eps_warmup_steps"] == n
    warm = EpsWarmup(4)
    assert [warm.factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    obj, eps = warm.objective_at(PGDAT(0.3, steps=10), 1)
    assert eps == pytest.approx(0.15) and obj.eps == pytest.approx(0.15) and obj.step_size == pytest.approx(0.0375)
    std = Standard()
    assert warm.objective_at(std, 0) == (std, None)  # no radius: untouched


def test_resume_with_other_settings_lists_each_difference(tmp_path: Path) -> None:
    from robustlens.errors import ConfigError

    torch.manual_seed(0)
    x, y = torch.rand(8, 4), torch.randint(0, 2, (8,))
    fit(nn.Linear(4, 2), (x, y), epochs=1, lr=0.1, batch_size=4, out_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"cannot resume: the run's settings differ from the checkpoint's:\n  "
                                          r"eps_warmup: 0.0 recorded, 0.5 now\n  lr: 0.1 recorded, 0.2 now"):
        fit(nn.Linear(4, 2), (x, y), epochs=1, lr=0.2, batch_size=4, out_dir=tmp_path, resume=True, progress=False,
            eps_warmup=0.5)


def test_the_readme_training_line_runs_and_is_the_one_measured(tmp_path: Path) -> None:
    """The README's ``robustlens train`` line, with short settings appended (the last value of an option wins), runs
    with the warm-up on; it is the command benchmarks/readme_training.py measures for BENCHMARKS.md."""
    import shlex

    root = Path(__file__).resolve().parents[1]
    lines = [ln for ln in (root / "README.md").read_text().splitlines()
             if ln.startswith("robustlens train ") and "--objective pgd" in ln]
    assert len(lines) == 1, lines
    args = shlex.split(lines[0])[1:]
    assert args == ["train", "--model", "smallcnn", "--data", "mnist-embedded", "--epochs", "3", "--objective", "pgd",
                    "--eps", "0.3", "--out", "runs/at"]
    bench = (root / "benchmarks" / "readme_training.py").read_text()
    assert '"--model", "smallcnn", "--data", "mnist-embedded"' in bench
    assert '"--objective", "pgd", "--eps", "0.3"' in bench
    assert "robustlens train --model smallcnn --data mnist-embedded --epochs 3 --objective pgd --eps 0.3" in (
        root / "BENCHMARKS.md").read_text()
    text = cli(*args, "--epochs", "1", "--steps", "2", "--out", tmp_path / "at", *SMALL, "--allow-chance")
    assert "with pgd, eps warm-up over 0.5 epoch(s), 1 epochs" in text
    assert TrainingHistory.load(tmp_path / "at" / "history.json").config["objective_config"]["eps"] == 0.3
