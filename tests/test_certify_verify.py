"""``verify`` and ``robustlens verify``: verified <= PGD's upper bound, methods in order, the CLI equals the API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustlens import Classifier, ConfigError
from robustlens.certify import VerifyResult, verify
from robustlens.data import load_dataset
from robustlens.results import Result
from robustlens.zoo import create_model, load_model, save_model

COMMON = ["--dataset", "digits", "--split", "test", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    net = create_model("mlp", num_classes=10, in_channels=1, seed=0, input_size=8, hidden=(32,))
    train = load_dataset("digits", "train")
    tx, ty = train.x[:400], train.y[:400]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(tx), ty).backward()
        opt.step()
    path = tmp_path_factory.mktemp("m") / "mlp.safetensors"
    save_model(net.eval(), path)
    return path


def _setup(path: Path, n: int) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    data = load_dataset("digits", "test")
    clf = Classifier(load_model(path), bounds=data.bounds, mean=data.mean, std=data.std)
    sub = data.subset(n, seed=0, stratified=True)
    return clf, sub.x, sub.y


def test_verified_accuracy_is_ordered_and_below_the_attacked_bound(model_file: Path) -> None:
    clf, x, y = _setup(model_file, 20)
    radii = [0.002, 0.01, 0.03]
    res = {m: verify(clf, x, y, radii, "inf", m, steps=10, seed=0) for m in ("ibp", "crown", "alpha-crown")}
    for r in res.values():
        assert r.attacked is not None and not bool((r.verified & r.attacked).any())
        for v, u in zip(r.verified_accuracy, r.attacked_accuracy_upper, strict=True):
            assert v <= u
        assert all(c["verified"] + c["attacked"] + c["unknown"] == 20 for c in r.counts())
    assert bool((res["ibp"].verified <= res["crown"].verified).all())
    assert bool((res["crown"].verified <= res["alpha-crown"].verified).all())
    assert res["crown"].verified_accuracy[2] > res["ibp"].verified_accuracy[2]
    with pytest.raises(ConfigError, match="unknown bound method 'zonotope'"):
        verify(clf, x, y, 0.01, method="zonotope")
    with pytest.raises(ConfigError, match="eps must be a finite number >= 0"):
        verify(clf, x, y, [0.01, float("nan")])


def test_the_command_writes_what_the_api_computes(model_file: Path, tmp_path: Path) -> None:
    from robustlens.cli import app

    out = tmp_path / "verify.json"
    result = CliRunner().invoke(app, ["verify", "--model", str(model_file), "--limit", "12", "--eps", "1/255,0.02",
                                      "--method", "crown", "--steps", "5", "--out", str(out), *COMMON])
    assert result.exit_code == 0, result.output
    assert "verified acc" in result.output and "PGD upper bound" in result.output
    json.loads(out.read_text())  # strict JSON
    got = Result.load(out)
    assert isinstance(got, VerifyResult)
    clf, x, y = _setup(model_file, 12)
    ref = verify(clf, x, y, [1 / 255, 0.02], "inf", "crown", steps=5, seed=0)
    assert torch.equal(got.verified, ref.verified) and torch.equal(got.attacked, ref.attacked)
    bad = CliRunner().invoke(app, ["verify", "--model", str(model_file), "--method", "nope", "--out",
                                   str(tmp_path / "v.json"), *COMMON])
    assert bad.exit_code != 0
