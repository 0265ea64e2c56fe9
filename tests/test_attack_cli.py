"""``robustlens attack``: a thin layer over the attacks and the runner (same numbers as the API, resumable)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustlens import Classifier
from robustlens.attacks import PGD, DeepFool
from robustlens.attacks.base import AttackResult, MinimalNormAttack
from robustlens.attacks.registry import ATTACKS, make_attack
from robustlens.data import load_dataset
from robustlens.errors import ConfigError
from robustlens.results import Result
from robustlens.zoo import create_model, load_model, save_model

runner = CliRunner()
COMMON = ["--dataset", "digits", "--split", "test", "--no-progress", "--device", "cpu"]


def cli(*args: str | Path, code: int = 0) -> str:
    from robustlens.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + (repr(result.exception) if result.exception else "")
    return result.output


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    net = create_model("mlp", num_classes=10, in_channels=1, seed=0, input_size=8, hidden=(32,))
    train = load_dataset("digits", "train")
    tx, ty = train.x[:400], train.y[:400]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):  # full-batch training: a model that is right on most digits, so the attacks have work
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(tx), ty).backward()
        opt.step()
    net.eval()
    path = tmp_path_factory.mktemp("m") / "mlp.safetensors"
    save_model(net, path)
    return path


def setup(path: Path, n: int) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    data = load_dataset("digits", "test")
    clf = Classifier(load_model(path), bounds=data.bounds, mean=data.mean, std=data.std)
    sub = data.subset(n, seed=0, stratified=True)  # the samples --limit N takes
    return clf, sub.x, sub.y


def test_bounded_attack_matches_the_api(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "pgd.json"
    text = cli("attack", "-a", "pgd", "--eps", "8/255", "--steps", "5", "--model", model_file, "--limit", "20",
               "--batch-size", "8", "--seed", "3", "--out", out, *COMMON)
    res = Result.load(out)
    assert isinstance(res, AttackResult) and not out.with_suffix(".npz").exists()  # one path, one result
    clf, x, y = setup(model_file, 20)
    direct = PGD("Linf", 8 / 255, steps=5)(clf, x, y, seed=3)
    assert torch.equal(res.labels, y)
    torch.testing.assert_close(res.adversarial, direct.adversarial, rtol=0, atol=1e-6)
    assert torch.equal(res.success, direct.success)
    assert torch.equal(res.success, clf.predict(res.adversarial) != y)  # judged on the returned images
    assert res.eps == pytest.approx(8 / 255)
    assert f"robust accuracy at eps={8 / 255:g}: {float(direct.robust_accuracy()[0]):.3f}" in text


def test_minimal_attack_resumes_and_prints_the_curve(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "df.json"
    args = ["attack", "-a", "deepfool", "--model", model_file, "--limit", "15", "--batch-size", "4", "--out", out,
            "--eps-grid", "0.1,0.5,1", *COMMON]
    first = cli(*args)
    state = out.with_suffix(".state")
    assert len(list(state.glob("batch_*.npz"))) == 4
    again = cli(*args, "--resume")
    assert first.splitlines()[:-1] == again.splitlines()[:-1]
    res = Result.load(out)
    clf, x, y = setup(model_file, 15)
    direct = DeepFool()(clf, x, y)
    torch.testing.assert_close(res.norm, direct.norm, rtol=1e-5, atol=1e-7)
    assert "robust accuracy" in first and "median L2 norm" in first
    assert float(res.clean_correct.double().mean()) > 0.7
    cli(*args, code=2)  # the state folder exists: neither --resume nor --overwrite is refused with a message


def test_targeted_class_and_errors(model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    text = cli("attack", "-a", "pgd", "--eps", "0.5", "--steps", "10", "--target", "3", "--model", model_file,
               "--limit", "30", "--out", out, *COMMON)
    res = Result.load(out)
    assert bool((res.targets == 3).all()) and bool((res.labels != 3).all())
    assert "skipping" in text
    assert torch.equal(res.success, torch.as_tensor(res.targets) == setup(model_file, 1)[0].predict(res.adversarial))
    err = cli("attack", "-a", "deepfool", "--eps", "0.3", "--model", model_file, "--out", tmp_path / "e.json",
              *COMMON, code=2)
    assert "minimal-norm" in err
    err = cli("attack", "-a", "nosuch", "--model", model_file, *COMMON, code=2)
    assert "choose one of" in err
    err = cli("attack", "-a", "pgd", "--model", model_file, *COMMON, code=2)
    assert "eps" in err


def test_registry_builds_every_attack() -> None:
    for entry in ATTACKS.entries():
        meta = entry.meta
        att = make_attack(entry.name, meta["norms"][-1], None if meta["minimal"] else 0.1, 3)
        assert isinstance(att, entry.obj) and att.name
        assert isinstance(att, MinimalNormAttack) == meta["minimal"]
    assert make_attack("apgd-dlr", eps=0.1).loss == "dlr" and make_attack("APGD", eps=0.1).loss == "ce"
    assert make_attack("pgd", eps=0.1, steps=7).steps == 7 and make_attack("square", eps=0.1, steps=7).queries == 7
    with pytest.raises(ConfigError):
        make_attack("cw", "Linf")
    with pytest.raises(ConfigError):
        make_attack("square", "L1", 0.1)
