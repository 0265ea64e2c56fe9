"""Every file robustlens writes: strict JSON (no bare NaN / Infinity, which standard parsers reject) and the user's
umask (not the 0600 of a temporary file renamed into place)."""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from robustlens.files import atomic_write_bytes, decode_floats, dumps_strict


def strict_loads(text: str | bytes) -> object:
    def refuse(name: str) -> object:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def json_documents(folder: Path) -> Iterator[tuple[str, bytes]]:
    """Every JSON document robustlens wrote under ``folder``: ``.json`` files, the JSON member of result archives
    and the JSON metadata in safetensors headers."""
    for p in sorted(folder.rglob("*")):
        if p.suffix == ".json":
            yield str(p), p.read_bytes()
        elif p.suffix == ".npz" and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                for name in zf.namelist():
                    if name.endswith(".json"):
                        yield f"{p}:{name}", zf.read(name)
        elif p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), "pt") as f:
                for key, text in (f.metadata() or {}).items():
                    if key.startswith("robustlens."):
                        yield f"{p}:{key}", text.encode()


def test_strict_json_helpers_round_trip_non_finite_values() -> None:
    value = {"a": [1.0, math.nan, {"b": (math.inf, -math.inf)}], "s": "nan"}
    text = dumps_strict(value)
    back = decode_floats(strict_loads(text))
    assert back["s"] == "nan" and math.isnan(back["a"][1]) and back["a"][2]["b"] == [math.inf, -math.inf]
    with pytest.raises(TypeError):
        dumps_strict({"x": object()})


def _train_and_evaluate(out: Path) -> None:
    """Write every kind of file: a result in both formats, runner state, a manifest, model files (with non-finite
    metadata), a training run's history, summary and model, and a report's results and state."""
    from models import Affine
    from report_helpers import tiny_plan

    from robustlens import Classifier
    from robustlens.attacks.pgd import PGD
    from robustlens.cli import app
    from robustlens.data import load_dataset
    from robustlens.report import ModelEntry, ReportData, run_report
    from robustlens.runner import run_evaluation
    from robustlens.state import check_manifest
    from robustlens.zoo import create_model, save_model

    clf = Classifier(Affine(6, 3, seed=0), bounds=(0, 1))
    x = torch.rand(8, 6, generator=torch.Generator().manual_seed(0))
    res = PGD(eps=1e-4, steps=2, random_start=False)(clf, x, clf.predict(x), seed=0)  # norms are inf
    res.save(out / "results" / "pgd.json")
    res.save(out / "results" / "pgd.npz")
    run_evaluation(lambda bx, by, bi: {"n": torch.full((bx.shape[0],), math.inf)}, x, state_dir=out / "runner",
                   config={"eps": math.nan, "grid": torch.tensor([math.inf])}, batch_size=4, progress=False)
    check_manifest(out / "state", {"sigma": math.nan}, resume=False)
    net = create_model("mlp", in_channels=1, input_size=4, hidden=(5,))
    save_model(net, out / "models" / "m.safetensors", metadata={"accuracy": math.nan, "eps": math.inf})
    save_model(net, out / "models" / "m.pt")
    r = CliRunner().invoke(app, ["train", "--model", "mlp", "--data", "digits", "--epochs", "1", "--limit", "64",
                                 "--eval-limit", "32", "--batch-size", "32", "--no-progress", "--device", "cpu",
                                 "--allow-chance", "--out", str(out / "train")])
    assert r.exit_code == 0, r.output
    data = ReportData.from_image_data(load_dataset("digits", "test"))
    plan = tiny_plan((1, 8, 8), n_samples=20, batch_size=20, sections=("clean", "robustness"))
    run_report([ModelEntry("affine", Classifier(torch.nn.Sequential(torch.nn.Flatten(), Affine(64, 10, seed=1))))],
               data, plan, out / "report", progress=False)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.slow
def test_every_file_robustlens_writes_is_strict_json_and_keeps_the_umask(tmp_path: Path) -> None:
    with umask(0o027):
        _train_and_evaluate(tmp_path)
    docs = dict(json_documents(tmp_path))
    kinds = {"pgd.json", "pgd.npz:result.json", "runner/manifest.json", "runner/result.npz:result.json",
             "state/manifest.json", "m.safetensors:robustlens.arch", "m.safetensors:robustlens.metadata",
             "train/history.json", "train/summary.json", "report/results.json", "report/state/manifest.json"}
    for kind in kinds:
        assert any(name.endswith(kind) for name in docs), (kind, sorted(docs))
    assert any("/report/state/" in n and n.endswith("clean.json") for n in docs)
    for text in docs.values():
        strict_loads(text)  # raises on NaN / Infinity
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written) and any(p.suffix == ".pt" for p in written)
    for p in written:
        assert stat.S_IMODE(p.stat().st_mode) == 0o640, (p, oct(p.stat().st_mode))


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_keep_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    from robustlens.results import Result
    from robustlens.runner import EvaluationResult
    from robustlens.zoo import create_model, save_model

    res = EvaluationResult(outputs={"v": torch.zeros(2)}, indices=torch.arange(2))
    with umask(mask):
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        atomic_write_bytes(tmp_path / "a.bin", b"y")  # replacing a file gives the new one the umask's mode too
        res.save(tmp_path / "r.json")
        res.save(tmp_path / "r.npz")
        save_model(create_model("mlp", in_channels=1, input_size=2, hidden=(2,)), tmp_path / "m.safetensors")
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == mode, (p.name, oct(p.stat().st_mode))
    assert isinstance(Result.load(tmp_path / "r.npz"), EvaluationResult)
