"""The report machinery: plan presets, per-section outcomes, results.json (schema, reload), the HTML page, resume."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import jsonschema
import pytest
import torch
import torch.nn.functional as F
from models import TinyCNN

from robustlens.data import load_dataset
from robustlens.errors import ConfigError
from robustlens.report import (
    SECTIONS,
    ModelEntry,
    ReportData,
    ReportPlan,
    ReportResults,
    run_report,
    schema,
    validate_results_json,
)
from robustlens.report.sections import CleanAccuracy, compute_clean


def _train(seed: int, x: torch.Tensor, y: torch.Tensor, steps: int = 25) -> TinyCNN:
    """A tiny CNN trained for a few seeded SGD steps (enough to be far better than chance)."""
    net = TinyCNN(seed=seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(y), (32,), generator=g)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def mnist():
    train = load_dataset("mnist-embedded", split="train")
    test = load_dataset("mnist-embedded", split="test")
    return train, test


@pytest.fixture(scope="module")
def models(mnist):
    train, test = mnist
    return [ModelEntry("a", test.classifier(_train(0, train.x, train.y)), source="tiny cnn seed 0"),
            ModelEntry("b", test.classifier(_train(1, train.x, train.y)), source="tiny cnn seed 1")]


@pytest.fixture(scope="module")
def data(mnist):
    return ReportData.from_image_data(mnist[1])


@pytest.fixture(scope="module")
def quick_plan(mnist):
    return dataclasses.replace(ReportPlan.preset("quick", mnist[1].input_shape), n_samples=100)


def test_plan_presets_scale_to_the_data():
    gray = ReportPlan.preset("quick", (1, 28, 28))
    colour = ReportPlan.preset("full", (3, 32, 32))
    assert gray.eps_linf[-1] == pytest.approx(0.3) and gray.threat_linf == pytest.approx(0.1)
    assert colour.eps_linf[-1] == pytest.approx(16 / 255, rel=1e-5) and colour.threat_linf == pytest.approx(8 / 255)
    assert colour.n_samples > gray.n_samples and colour.dct_block == 8 and gray.dct_block == 7
    with pytest.raises(ConfigError, match="unknown report section"):
        ReportPlan(sections=["clean", "nonsense"])
    with pytest.raises(ConfigError, match="unknown plan"):
        ReportPlan.preset("medium")


def test_samples_are_a_fixed_class_mixing_prefix(data):
    x1, y1 = data.head(100)
    x2, y2 = data.head(50)
    assert torch.equal(x1[:50], x2) and torch.equal(y1[:50], y2)
    # the embedded test set is stored sorted by class; the report's samples must cover every class
    assert len(torch.unique(y1)) == 10


def test_clean_section_matches_a_direct_count(models, data, quick_plan):
    clf = models[0].clf
    r = compute_clean(clf, data, quick_plan, seed=0)
    x, y = data.head(100)
    pred = clf.model(x).argmax(1)
    assert r.n == 100
    assert r.accuracy == pytest.approx(float((pred == y).float().mean()))
    assert int(r.confusion.sum()) == 100 and int(r.confusion.trace()) == int((pred == y).sum())
    for k in range(10):
        mask = y == k
        assert r.per_class[k] == pytest.approx(float((pred[mask] == k).float().mean()))


def test_quick_report_end_to_end(tmp_path: Path, models, data, quick_plan):
    t0 = time.perf_counter()
    res = run_report(models, data, quick_plan, tmp_path, seed=3, progress=False)
    assert time.perf_counter() - t0 < 60
    # results.json validates against the shipped schema and reloads into the same objects
    payload = validate_results_json(tmp_path / "results.json")
    assert payload["data"]["report_schema"] == 1
    back = ReportResults.load(tmp_path / "results.json")
    assert [m.name for m in back.models] == ["a", "b"]
    for m0, m1 in zip(res.models, back.models, strict=True):
        c0, c1 = m0.sections["clean"], m1.sections["clean"]
        assert c1.ok and isinstance(c1.result, CleanAccuracy)
        assert c1.result.accuracy == c0.result.accuracy
        assert torch.equal(c1.result.confusion, c0.result.confusion)
        assert c1.sentence == c0.sentence
    assert isinstance(back.plan, ReportPlan) and back.plan == quick_plan
    # the sentences quote the computed numbers
    for m in res.models:
        acc = m.sections["clean"].result.accuracy
        assert f"{100 * acc:.1f}%" in m.sections["clean"].sentence
    a, b = (m.sections["clean"].result.accuracy for m in res.models)
    comp = res.comparison["clean"]
    assert f"{100 * a:.1f}%" in comp and f"{100 * b:.1f}%" in comp
    assert ("higher" in comp) == (b > a) and ("lower" in comp) == (b < a)
    # the page is self-contained: embedded PNGs, no external references, and every section is present
    page = (tmp_path / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'(href|src)="(https?:)?//', page) and "<link" not in page and "<script" not in page
    for key in quick_plan.sections:
        assert f'id="{key}"' in page
    unavailable = [k for k in quick_plan.sections if res.models[0].sections[k].status == "unavailable"]
    for key in unavailable:
        section = page.split(f'id="{key}"')[1].split("</section>")[0]
        assert "not available in this version" in section


def test_resume_reuses_finished_sections_and_refuses_other_settings(tmp_path: Path, models, data, quick_plan,
                                                                    monkeypatch):
    plan = dataclasses.replace(quick_plan, sections=["clean"])
    first = run_report(models[:1], data, plan, tmp_path, seed=0, progress=False)

    def boom(*args, **kwargs):
        raise AssertionError("a finished section was recomputed on resume")

    monkeypatch.setitem(SECTIONS, "clean", dataclasses.replace(SECTIONS["clean"], compute=boom))
    again = run_report(models[:1], data, plan, tmp_path, seed=0, resume=True, progress=False)
    assert again.models[0].sections["clean"].sentence == first.models[0].sections["clean"].sentence
    with pytest.raises(ConfigError, match="other settings"):
        run_report(models[:1], data, plan, tmp_path, seed=1, resume=True, progress=False)
    # without resume the section is recomputed: the failing computation is reported, not hidden
    with pytest.warns(UserWarning, match="failed"):
        res = run_report(models[:1], data, plan, tmp_path, seed=0, progress=False)
    out = res.models[0].sections["clean"]
    assert out.status == "error" and "recomputed on resume" in out.note
    assert "this section failed" in (tmp_path / "report.html").read_text()
    validate_results_json(tmp_path / "results.json")


def test_schema_rejects_malformed_results(tmp_path: Path, models, data, quick_plan):
    plan = dataclasses.replace(quick_plan, sections=["clean"])
    run_report(models[:1], data, plan, tmp_path, progress=False)
    payload = json.loads((tmp_path / "results.json").read_text())
    bad = json.loads(json.dumps(payload))
    bad["data"]["models"][0]["sections"]["clean"]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())
    bad = json.loads(json.dumps(payload))
    bad["data"]["models"][0]["sections"]["clean"]["sentence"] = ""  # an ok section must say something
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())
    bad = json.loads(json.dumps(payload))
    del bad["data"]["plan"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema())


def test_duplicate_model_names_are_refused(tmp_path: Path, models, data, quick_plan):
    with pytest.raises(ConfigError, match="distinct"):
        run_report([models[0], models[0]], data, quick_plan, tmp_path, progress=False)
