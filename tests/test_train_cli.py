"""``robustlens train`` and the top-level CLI, through typer's CliRunner (and torchrun for the distributed path).

The command must be a thin layer over the one training loop: a run through the CLI gives bit-identical weights to
the same settings passed to :func:`robustlens.train.fit`, and its reported accuracy is recomputed from the saved
model file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustlens import Classifier, RobustLensWarning, __version__
from robustlens.commands.train import DEFAULT_BATCH_SIZE, DEFAULT_LR, DEFAULT_WEIGHT_DECAY, TrainRun
from robustlens.data import CIFAR10_MEAN, CIFAR10_STD, load_dataset
from robustlens.errors import ConfigError
from robustlens.train import TrainingHistory, fit
from robustlens.zoo import create_model, load_model, read_weights

runner = CliRunner()
# tiny smoke runs: a model of 128 samples may end near chance, which is not what these tests check
SMALL = ["--limit", "128", "--eval-limit", "100", "--batch-size", "32", "--no-progress", "--device", "cpu",
         "--allow-chance"]


def cli(*args: str | Path, code: int = 0) -> str:
    from robustlens.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + (repr(result.exception) if result.exception else "")
    return result.output


def app_for_help():
    from robustlens.cli import app

    return app


def weights(path: Path) -> dict[str, torch.Tensor]:
    sd, _ = read_weights(path)
    assert isinstance(sd, dict)
    return sd


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_help_explains_the_commands():
    top = cli("--help")
    assert "train" in top and "version" in top
    text = " ".join(cli("train", "--help").split())
    for needle in ("--model", "--data", "--epochs", "--optimizer", "--schedule", "--objective", "--eps", "--out",
                   "--resume", "--seed", "--device", "torchrun", "fgsm-rs", "8/255", "eq. (14)"):
        assert needle in text, needle


def test_every_objective_is_reachable_from_the_command_line():
    from robustlens.commands.train import _SPELLING
    from robustlens.train import OBJECTIVES, make_objective

    # without the help panel's borders and whitespace (rich may wrap a line at a hyphen)
    # a wide terminal: in a narrow one rich shortens a long word of the help to "..."
    wide = runner.invoke(app_for_help(), ["train", "--help"], env={"COLUMNS": "200"})
    assert wide.exit_code == 0, wide.output
    text = "".join(wide.output.replace("\u2502", " ").split())
    for e in OBJECTIVES.entries():  # the help enumerates the registry, with each objective's summary
        assert "".join(f"{e.name}: {e.meta['summary']}".split()) in text, e.name
        eps = None if e.meta["radius"] is None else 0.1
        obj = make_objective(e.name, eps, spelling=_SPELLING)
        assert isinstance(obj, e.obj) and obj.name == e.name

    def build(name, eps, **options):
        return make_objective(name, eps, spelling=_SPELLING, **options)

    assert build("trades", 8 / 255, beta=3.0, steps=4).beta == 3.0
    assert build("acet", 0.2, noise="permuted").noise_kind == "permuted"
    assert build("gaussian", 0.5).sigma == 0.5
    ga = build("gradalign", 0.3, random_start=True, alpha=0.375, lam=0.3)
    assert (ga.random_start, ga.alpha, ga.lam) == (True, 0.375, 0.3)
    assert build("gradalign", 0.3).alpha == 0.3  # zero start: one step of eps
    assert build("gradalign", 0.3, clip_noise=False).clip_noise is False
    assert build("gradalign", 0.3).clip_noise is True
    with pytest.raises(ConfigError, match="--clip-noise does not apply"):
        build("fgsm-rs", 0.3, clip_noise=False)


def test_version():
    out = cli("version")
    assert f"robustlens {__version__}" in out and f"torch {torch.__version__}" in out


def test_one_epoch_on_a_subset_writes_its_outputs_and_matches_fit(tmp_path):
    out = tmp_path / "run"
    text = cli("train", "--epochs", "1", "--seed", "3", "--out", out, *SMALL)
    assert "epoch 1/1" in text and "held-out accuracy" in text
    for name in ("checkpoint.pt", "history.json", "model.safetensors", "summary.json"):
        assert (out / name).is_file(), name
    run = TrainRun.load(out / "summary.json")
    hist = TrainingHistory.load(out / "history.json")
    assert (run.epochs, run.train_samples, run.eval_samples, run.objective) == (1, 128, 100, "standard")
    assert len(hist.records) == 1 and hist.config["seed"] == 3 and hist.config["batch_size"] == 32

    # the same settings through the Python API give bit-identical weights: the CLI adds no loop of its own
    train = load_dataset("mnist-embedded", "train").subset(128, seed=3)
    held = load_dataset("mnist-embedded", "test").subset(100, seed=0)
    net = create_model("smallcnn", seed=3, input_size=28)
    fit(net, (train.x, train.y), epochs=1, lr=DEFAULT_LR, batch_size=32, weight_decay=DEFAULT_WEIGHT_DECAY,
        schedule="cosine", seed=3, progress=False)
    saved = weights(out / "model.safetensors")
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())

    # the reported held-out accuracy is that of the saved model on the held-out subset
    loaded = load_model(out / "model.safetensors")
    acc = float((Classifier(loaded).predict(held.x) == held.y).float().mean())
    assert run.eval_accuracy == pytest.approx(acc, abs=1e-6)


def test_same_seed_same_weights_and_resume_continues_exactly(tmp_path):
    base = ["train", "--epochs", "2", *SMALL]
    cli(*base, "--out", tmp_path / "a")
    cli(*base, "--out", tmp_path / "b")
    cli(*base, "--out", tmp_path / "c", "--seed", "1")
    assert same_weights(tmp_path / "a" / "model.safetensors", tmp_path / "b" / "model.safetensors")
    assert not same_weights(tmp_path / "a" / "model.safetensors", tmp_path / "c" / "model.safetensors")

    text = cli(*base, "--out", tmp_path / "r", "--stop-after", "1")
    assert "epoch 1/2" in text and "epoch 2/2" not in text and "continue with --resume" in text
    assert TrainRun.load(tmp_path / "r" / "summary.json").epochs == 1
    text = cli(*base, "--out", tmp_path / "r", "--resume")
    assert "epoch 2/2" in text and "epoch 1/2" not in text
    assert same_weights(tmp_path / "a" / "model.safetensors", tmp_path / "r" / "model.safetensors")
    hist = TrainingHistory.load(tmp_path / "r" / "history.json")
    assert [r.epoch for r in hist.records] == [0, 1] and not hist.stopped_early
    assert hist.series("eval.accuracy") == TrainingHistory.load(tmp_path / "a" / "history.json").series(
        "eval.accuracy")


def test_adversarial_objective_and_its_options(tmp_path):
    out = tmp_path / "adv"
    cli("train", "--epochs", "1", "--objective", "pgd", "--eps", "0.1", "--steps", "2", "--norm", "2",
        "--out", out, *SMALL)
    run = TrainRun.load(out / "summary.json")
    assert run.objective == "pgd" and run.config["objective"] == "pgd"


def test_cifar10_trains_with_its_normalisation_inside(tmp_path, shared_data):
    out = tmp_path / "cifar"
    with pytest.warns(RobustLensWarning, match="only 2 of the 5 training batches"):
        cli("train", "--data", "cifar10", "--data-root", shared_data / "cifar10", "--epochs", "1", "--out", out,
            *SMALL)
    meta = json.loads(safe_open_metadata(out / "model.safetensors")["robustlens.metadata"])
    assert meta["mean"] == pytest.approx(list(CIFAR10_MEAN)) and meta["std"] == pytest.approx(list(CIFAR10_STD))
    held = load_dataset("cifar10", "test", root=shared_data / "cifar10").subset(100, seed=0)
    net = load_model(out / "model.safetensors")
    assert net.robustlens_spec["in_channels"] == 3 and net.robustlens_spec["input_size"] == 32
    clf = Classifier(net, mean=meta["mean"], std=meta["std"])
    acc = float((clf.predict(held.x) == held.y).float().mean())
    assert TrainRun.load(out / "summary.json").eval_accuracy == pytest.approx(acc, abs=1e-6)


def safe_open_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata() or {}


@pytest.mark.parametrize("args, message", [
    (["--objective", "pgd"], "--objective pgd needs --eps"),
    (["--objective", "fgsm", "--eps", "8/255", "--steps", "3"], "--steps does not apply to --objective fgsm; it "
                                                                "takes --eps, --norm"),
    (["--objective", "cure", "--eps", "0.1"], "--eps does not apply to --objective cure"),
    (["--objective", "pgd", "--eps", "eight"], "--eps 'eight' is not a number; write e.g. 0.3 or 8/255"),
    (["--objective", "bogus"], "unknown --objective 'bogus'; choose one of standard, pgd"),
    (["--data", "imagenet"], "--data 'imagenet' is neither a data set name"),
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--resume"], "no checkpoint at"),
    (["--data", "digits", "--model", "lenet"], "--model lenet does not fit digits/train (1x8x8 images): LeNet needs"),
])
def test_bad_settings_exit_with_a_message(tmp_path, args, message):
    out = cli("train", "--out", tmp_path / "x", *SMALL, *args, code=2)
    assert message in " ".join(out.split())


def test_a_test_set_of_another_size_fails_before_training(tmp_path, shared_data):
    out = cli("train", "--data", "digits", "--test-data", "mnist", "--test-root", shared_data / "mnist",
              "--out", tmp_path, *SMALL, code=2)
    assert "--test-data mnist has images of shape (1, 28, 28) but --data digits has (1, 8, 8)" in " ".join(out.split())
    assert not (tmp_path / "checkpoint.pt").exists()


def test_an_existing_run_is_not_overwritten_silently(tmp_path):
    cli("train", "--epochs", "1", "--out", tmp_path, *SMALL)
    before = weights(tmp_path / "model.safetensors")
    out = cli("train", "--epochs", "1", "--out", tmp_path, *SMALL, "--seed", "5", code=2)
    assert "already holds a training checkpoint; pass --resume" in " ".join(out.split())
    assert all(torch.equal(v, weights(tmp_path / "model.safetensors")[k]) for k, v in before.items())
    cli("train", "--epochs", "1", "--out", tmp_path, *SMALL, "--seed", "5", "--overwrite")
    assert TrainRun.load(tmp_path / "summary.json").config["seed"] == 5


@pytest.mark.slow
def test_torchrun_with_two_processes_matches_one_process(tmp_path):
    """Two gloo processes each take half of every batch and average gradients: the same step as one process on
    the whole batch, so the weights agree up to floating-point summation order."""
    args = ["train", "--epochs", "1", "--limit", "128", "--eval-limit", "50", "--batch-size", "32",
            "--no-progress", "--device", "cpu", "--allow-chance"]
    cli(*args, "--out", tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "robustlens", *args, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("held-out accuracy") == 1  # only rank 0 reports
    run = TrainRun.load(tmp_path / "two" / "summary.json")
    assert run.world_size == 2 and run.train_samples == 128
    w1, w2 = weights(tmp_path / "one" / "model.safetensors"), weights(tmp_path / "two" / "model.safetensors")
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], atol=2e-5, rtol=1e-4)


@pytest.mark.slow
def test_done_when_smallcnn_on_mnist_embedded(tmp_path, shared_data):
    """The foundation's done-when figure (docs/foundation.md): 3 epochs of the small CNN on mnist-embedded with the
    command's defaults reach >= 96% on the held-out split and >= 95% on the real MNIST test set."""
    assert DEFAULT_BATCH_SIZE == 16
    text = cli("train", "--model", "smallcnn", "--data", "mnist-embedded", "--epochs", "3", "--test-data", "mnist",
               "--test-root", shared_data / "mnist", "--no-progress", "--device", "cpu", "--out", tmp_path)
    run = TrainRun.load(tmp_path / "summary.json")
    assert run.epochs == 3 and run.train_samples == 4000 and run.eval_samples == 1000, text
    assert run.eval_accuracy >= 0.96, text
    assert run.test_accuracy["mnist/test"] >= 0.95, text
    mnist = load_dataset("mnist", "test", root=shared_data / "mnist")
    clf = Classifier(load_model(tmp_path / "model.safetensors"))
    assert float((clf.predict(mnist.x) == mnist.y).float().mean()) == pytest.approx(run.test_accuracy["mnist/test"])
