"""``robustlens.benchmark`` and ``robustlens benchmark``: clean + AutoAttack robust accuracy, checked against
pyautoattack (the reference implementation) on the same model and images, resumable, batch-size independent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from models import predict, trained_on_embedded_mnist
from typer.testing import CliRunner

import robustlens as rl
from robustlens.benchmarking import BenchmarkResult
from robustlens.data import load_dataset
from robustlens.errors import ConfigError
from robustlens.results import Result
from robustlens.zoo import create_model, save_model

N_IMAGES = 24
EPS = 0.1


@pytest.mark.slow
@pytest.mark.peers
def test_benchmark_matches_pyautoattack_and_resumes(tmp_path: Path) -> None:
    """Same robust accuracy as pyautoattack's standard ensemble within one image (the known difference of the two
    implementations, tests/test_peer_autoattack.py), on a stratified subset that includes the model's errors."""
    pyaa = pytest.importorskip("pyautoattack")
    model, _, _ = trained_on_embedded_mnist("mlp", 1, one_thread=True)
    test = load_dataset("mnist-embedded", "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours = rl.benchmark(model, test, "Linf", EPS, n_samples=N_IMAGES, batch_size=16, seed=0,
                            state_dir=tmp_path / "state", progress=False)
        sub = test.subset(N_IMAGES, seed=0, stratified=True)
        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        ref = pyaa.AutoAttack(model, norm="Linf", eps=EPS, version="standard", seed=0)
        adv, _ = ref.run_standard_evaluation(sub.x, sub.y, batch_size=N_IMAGES)
    finally:
        torch.set_num_threads(threads)
    theirs = int((predict(model, adv) == sub.y).sum())
    clean = int((predict(model, sub.x) == sub.y).sum())
    assert isinstance(ours, BenchmarkResult) and ours.samples == N_IMAGES
    assert ours.correct == clean and ours.clean_accuracy == pytest.approx(clean / N_IMAGES)
    assert 0 < theirs < clean, "eps should leave a non-trivial robust accuracy"
    assert abs(ours.robust - theirs) <= 1, f"ours {ours.robust} vs pyautoattack {theirs} of {N_IMAGES}"
    assert [s["stage"] for s in ours.stages] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert ours.stages[-1]["robust_accuracy"] == pytest.approx(ours.robust_accuracy)
    assert ours.subset is not None and ours.subset["method"] == "stratified"
    again = rl.benchmark(model, test, "Linf", EPS, n_samples=N_IMAGES, batch_size=16, seed=0,
                         state_dir=tmp_path / "state", resume=True, progress=False)
    assert (again.correct, again.robust, again.stages) == (ours.correct, ours.robust, ours.stages)
    assert again.seconds < ours.seconds / 5  # every batch was read back, none recomputed


def test_benchmark_command_and_settings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "mlp.safetensors"
    save_model(create_model("mlp", num_classes=10, in_channels=1, seed=0, input_size=8, hidden=(16,)), path)
    out = tmp_path / "bench.json"
    from robustlens.cli import app

    res = CliRunner().invoke(app, ["benchmark", "--model", str(path), "--data", "digits", "--eps", "0.5",
                                   "--limit", "10", "--batch-size", "4", "--out", str(out), "--no-progress",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    saved = Result.load(out)
    assert isinstance(saved, BenchmarkResult) and saved.samples == 10 and saved.eps == pytest.approx(0.5)
    assert f"AutoAttack robust accuracy {saved.robust_accuracy:.2%} ({saved.robust} of 10)" in res.output
    assert saved.robust <= saved.correct
    assert "BenchmarkResult(threat_model='Linf'" in repr(saved)
    with pytest.raises(ConfigError, match="threat_model"):
        rl.benchmark(torch.nn.Flatten(), load_dataset("digits", "test"), threat_model="L1")
