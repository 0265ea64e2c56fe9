"""The report machinery: plan presets, registered sections, per-section outcomes, claims and verdicts, results.json
(schema, reload), the HTML page and its figures, resume, the command line."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import jsonschema
import pytest
import torch
from models import Affine, affine_distance
from report_helpers import Constant, tiny_plan, train_tiny

from robustlens import Classifier
from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.fmn import FMN
from robustlens.attacks.universal import fooling_rate
from robustlens.data import load_dataset
from robustlens.errors import ConfigError
from robustlens.norms import lp_norm
from robustlens.report import (
    FAILS,
    HOLDS,
    SECTIONS,
    UNJUDGED,
    UNTESTED,
    Evidence,
    Gate,
    ModelClaim,
    ModelEntry,
    PairClaim,
    ReportData,
    ReportPlan,
    ReportResults,
    RunContext,
    claims_markdown,
    get_section,
    judge,
    run_report,
    run_section,
    schema,
    section_keys,
    summary,
    validate_results_json,
)
from robustlens.report.sections.clean import CleanAccuracy
from robustlens.report.text import check_words, versus
from robustlens.state import folder_id


@pytest.fixture(scope="module")
def mnist():
    train = load_dataset("mnist-embedded", split="train")
    test = load_dataset("mnist-embedded", split="test")
    return train, test


@pytest.fixture(scope="module")
def models(mnist):
    train, test = mnist
    return [ModelEntry("a", test.classifier(train_tiny(0, train.x, train.y)), source="tiny cnn seed 0"),
            ModelEntry("b", test.classifier(train_tiny(1, train.x, train.y)), source="tiny cnn seed 1")]


@pytest.fixture(scope="module")
def data(mnist):
    return ReportData.from_image_data(mnist[1])


@pytest.fixture(scope="module")
def quick_plan(mnist):
    """The quick preset at a size that runs in seconds (the demo's tiny sizes) with clean accuracy on 100."""
    return tiny_plan(mnist[1].input_shape, n_samples=40, batch_size=40)


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
    r = get_section("clean").compute(clf, data, quick_plan, RunContext())
    n = quick_plan.n_samples
    x, y = data.head(n)
    pred = clf.model(x).argmax(1)
    assert r.n == n
    assert r.accuracy == pytest.approx(float((pred == y).float().mean()))
    assert int(r.confusion.sum()) == n and int(r.confusion.trace()) == int((pred == y).sum())
    for k in range(10):
        mask = y == k
        assert r.per_class[k] == pytest.approx(float((pred[mask] == k).float().mean()))


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, models, data, quick_plan):
    """One comparison report of the two tiny models (roles standard / robust) with every section."""
    out = tmp_path_factory.mktemp("report")
    entries = [dataclasses.replace(models[0], role="standard"), dataclasses.replace(models[1], role="robust")]
    t0 = time.process_time()  # CPU seconds: a busy machine does not make the check flaky
    res = run_report(entries, data, quick_plan, out, seed=3, progress=False)
    return res, out, time.process_time() - t0


def test_quick_report_end_to_end(report_run, quick_plan):
    res, tmp_path, cpu_seconds = report_run
    assert cpu_seconds < 120
    # every section whose modules exist computes; the others say they are not available
    for m in res.models:
        for key in quick_plan.sections:
            o = m.sections[key]
            expected = "unavailable" if get_section(key).missing() else "ok"
            assert o.status == expected, (m.name, key, o.note)
            if o.ok:
                assert o.sentence and o.headline and o.result is not None
    # results.json validates against the shipped schema and reloads into the same objects
    payload = validate_results_json(tmp_path / "results.json")
    assert payload["data"]["report_schema"] == 2
    back = ReportResults.load(tmp_path / "results.json")
    assert [m.name for m in back.models] == ["a", "b"]
    for m0, m1 in zip(res.models, back.models, strict=True):
        c0, c1 = m0.sections["clean"], m1.sections["clean"]
        assert c1.ok and isinstance(c1.result, CleanAccuracy)
        assert c1.result.accuracy == c0.result.accuracy
        assert torch.equal(c1.result.confusion, c0.result.confusion)
        for key, o0 in m0.sections.items():
            o1 = m1.sections[key]
            assert o1.status == o0.status and o1.sentence == o0.sentence
            assert json.dumps(o1.headline, sort_keys=True) == json.dumps(o0.headline, sort_keys=True)
            assert type(o1.result) is type(o0.result)
            if o0.result is not None:  # the reloaded result serializes to the same JSON, tensors included
                assert o1.result.to_json() == o0.result.to_json()
    assert isinstance(back.plan, ReportPlan) and back.plan == quick_plan
    assert back.comparison == res.comparison
    # every section states a verdict on at least one claim of the paper, and no sentence prints a non-finite number
    assert back.verdicts == res.verdicts and res.verdicts
    judged = {v.section for v in res.verdicts if v.status != UNTESTED}
    assert judged == set(quick_plan.sections), set(quick_plan.sections) - judged
    texts = [o.sentence for m in res.models for o in m.sections.values()] + list(res.comparison.values())
    texts += [v.sentence for v in res.verdicts]
    assert all(not check_words(t) for t in texts), [t for t in texts if check_words(t)]
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
        section = page.split(f'id="{key}"')[1].split("</section>")[0]
        if res.models[0].sections[key].ok:
            assert "<img " in section, f"section {key} has no figure"
        if res.models[0].sections[key].status == "unavailable":
            assert "not available in this version" in section
    assert "the figures of this section could not be drawn" not in page


def test_robustness_section_is_the_attacks_minimum(report_run, models, data, quick_plan):
    res, _, _ = report_run
    r = res.models[0].sections["robustness"].result
    clf = models[0].clf
    x, y = data.head(quick_plan.n_samples)
    correct = clf.predict(x) == y
    assert torch.equal(r.clean_correct, correct)
    for name, p in (("L2", 2), ("Linf", "inf")):
        nr = r.norms[name]
        df = DeepFool(norm=p, max_iter=quick_plan.deepfool_iter)(clf, x, y, seed=3)
        fm = FMN(norm=p, steps=quick_plan.fmn_steps)(clf, x, y, seed=3)
        zero = torch.zeros(len(y), dtype=torch.float64)
        expect = torch.where(correct, torch.minimum(df.norm, fm.norm).double(), zero)
        assert torch.allclose(nr.distance, expect, rtol=1e-5)
        for e, acc in zip(nr.eps, nr.robust_accuracy, strict=True):
            assert acc == pytest.approx(float((correct & (expect > e + 1e-12)).double().mean()))
        assert nr.robust_accuracy[0] == pytest.approx(float(correct.double().mean()))
        # PGD at the threat eps can only lower the quoted robust accuracy
        curve_at_threat = float((correct & (expect > nr.threat_eps + 1e-12)).double().mean())
        assert nr.robust_at_threat <= curve_at_threat + 1e-12
    h = res.models[0].sections["robustness"].headline
    d = r.norms["L2"].distance[correct]
    assert h["median_l2"] == pytest.approx(float(d[torch.isfinite(d)].median()), rel=0.05)
    assert f"{h['median_l2']:.3g}" in res.models[0].sections["robustness"].sentence


def test_robustness_on_an_affine_model_matches_the_closed_form(tmp_path: Path):
    # inputs in the middle of the box and small distances: the bounds never bind, so eq. (8) has a closed form
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(40, 1, 8, 8, generator=g)
    net = Affine(64, 4, seed=1, input_shape=(1, 8, 8))
    with torch.no_grad():
        net.linear.weight.mul_(8.0)
    clf = Classifier(net, bounds=(0.0, 1.0))
    y = clf.predict(x)
    data = ReportData("affine", x, y, class_names=[str(i) for i in range(4)])
    plan = tiny_plan((1, 8, 8), n_samples=40, batch_size=40, deepfool_iter=50, fmn_steps=50)
    out = run_section("robustness", ModelEntry("affine", clf), data, plan, seed=0)
    assert out.ok, out.note
    xs, _ = data.head(40)
    for name, q in (("L2", 2.0), ("Linf", 1.0)):
        exact = affine_distance(net, xs, q).double()
        got = out.result.norms[name].distance
        assert torch.allclose(got, exact, rtol=0.05), (name, (got / exact).min(), (got / exact).max())


def test_examples_are_adversarial_with_the_stated_norms(report_run):
    res, _, _ = report_run
    r = res.models[0].sections["examples"].result
    for name, p in (("L1", 1.0), ("L2", 2.0), ("Linf", float("inf"))):
        ok = torch.isfinite(r.norms[name])
        assert bool(ok.any())
        assert torch.all(r.predictions[name][ok] != r.labels[ok])
        n = lp_norm(r.adversarial[name] - r.clean, p).double()
        assert torch.allclose(n[ok], r.norms[name][ok], rtol=1e-4, atol=1e-6)
        assert float(r.adversarial[name].min()) >= 0 and float(r.adversarial[name].max()) <= 1


def test_universal_noise_and_certified_numbers_recompute(report_run, models, data, quick_plan):
    res, _, _ = report_run
    clf = models[0].clf
    u = res.models[0].sections["universal"]
    x_eval, _ = data.head(quick_plan.uap_eval_samples)
    assert u.headline["fooling_rate"] == pytest.approx(fooling_rate(clf, x_eval, u.result.uap.perturbation))
    assert float(lp_norm(u.result.uap.perturbation[None], float("inf"))) <= quick_plan.uap_eps + 1e-6
    c = res.models[0].sections["certified"]
    assert c.headline["certified_0"] == pytest.approx(float(c.result.certified_accuracy(0.0)))
    assert c.result.sigma == quick_plan.certify_sigma and c.result.n == quick_plan.certify_n
    n = res.models[0].sections["noise"]
    s = n.result.sqrt_d
    assert n.headline["ratio"] == pytest.approx(s.median_constant * s.dim ** 0.5)
    assert float(n.result.noise.error_rate[0]) == 0.0  # sigma = 0 changes nothing
    sec = res.models[0].sections["sections"]
    assert sec.headline["adversarial_distance"] == pytest.approx(sec.result.adversarial[0].axis_distance["+u1"])
    cur = res.models[0].sections["curvature"]
    assert cur.headline["top_eigenvalue"] >= cur.headline["bottom_eigenvalue"]
    nrm = res.models[0].sections["normals"]
    k90, energy = int(nrm.headline["k90"]), nrm.result.spectrum.energy
    assert k90 == nrm.result.spectrum.k90 and float(energy[k90 - 1]) >= 0.9 - 1e-9
    assert k90 == 1 or float(energy[k90 - 2]) < 0.9
    san = res.models[0].sections["sanity"]
    assert san.headline["flags"] == sum(c.flagged for c in san.result.checks if not c.skipped)
    assert san.result.eps == quick_plan.threat_linf


def test_same_seed_same_numbers(models, data, quick_plan):
    for key in ("robustness", "universal", "noise", "certified"):
        a = run_section(key, models[0], data, quick_plan, seed=5)
        b = run_section(key, models[0], data, quick_plan, seed=5)
        assert a.ok and a.headline == b.headline and a.sentence == b.sentence, key


MARGINS = PairClaim(key="m", statement="robust models have larger margins", paper="Sec. II-D", measure="m",
                    label="margin", robust_larger=True)


def _ev(name: str, role: str, m: float, *gates: Gate) -> Evidence:
    return Evidence(name, role, {"m": m}, gates=gates)


def test_pair_claims_follow_the_numbers_and_the_gates():
    holds = MARGINS.judge("s", [_ev("std", "standard", 1.0), _ev("rob", "robust", 2.4)])
    assert [v.status for v in holds] == [HOLDS] and "margin 2.4 for rob vs 1 for std" in holds[0].sentence
    assert MARGINS.judge("s", [_ev("std", "standard", 2.0), _ev("rob", "robust", 1.0)])[0].status == FAILS
    untested = MARGINS.judge("s", [_ev("a", "", 1.0), _ev("b", "", 2.0)])
    assert untested[0].status == UNTESTED and "--roles" in untested[0].reason
    # a near-chance model or a non-finite number: "cannot be judged", with the reason, never "holds"
    chance = MARGINS.judge("s", [_ev("std", "standard", 1.0), _ev("rob", "robust", 9.0, Gate("is near chance"))])
    assert chance[0].status == UNJUDGED and "rob is near chance" in chance[0].reason
    for bad in (float("nan"), float("inf")):
        v = MARGINS.judge("s", [_ev("std", "standard", 1.0), _ev("rob", "robust", bad)])[0]
        assert v.status == UNJUDGED and not check_words(v.sentence), v.sentence
    # a gradient-masking gate blocks claims whose numbers come from gradients, not the others
    flagged = Gate("raises 1 gradient-masking flag", gradient_only=True)
    assert MARGINS.judge("s", [_ev("std", "standard", 1.0), _ev("rob", "robust", 2.0, flagged)])[0].status == UNJUDGED
    free = PairClaim(key="c", statement="s", paper="p", measure="m", label="clean", robust_larger=True,
                     trusts_gradients=False)
    assert free.judge("s", [_ev("std", "standard", 1.0), _ev("rob", "robust", 2.0, flagged)])[0].status == HOLDS
    # a section without numbers for a model: cannot be judged (failed) or not tested (skipped)
    failed = Evidence("rob", "robust", None, missing="ValueError: boom")
    assert MARGINS.judge("s", [_ev("std", "standard", 1.0), failed])[0].status == UNJUDGED
    skipped = Evidence("rob", "robust", None, missing="not smoothed", skipped=True)
    assert MARGINS.judge("s", [_ev("std", "standard", 1.0), skipped])[0].status == UNTESTED


def test_model_claims_summary_and_docs_row():
    claim = ModelClaim(key="k", statement="the margin exceeds one", paper="eq. (13)", measures=(("m", "margin"),),
                       test=lambda h: h["m"] > 1, rule="it holds when the margin is above 1",
                       measured=lambda h: f"margin {h['m']:g}")
    vs = claim.judge("s", [_ev("a", "", 2.0), _ev("b", "", 0.5), _ev("c", "", float("nan")),
                           _ev("d", "", 3.0, Gate("is near chance"))])
    assert [v.status for v in vs] == [HOLDS, FAILS, UNJUDGED, UNJUDGED]
    assert summary(vs) == "1 of 4 claims hold (1 does not hold, 2 cannot be judged)"
    md = claims_markdown(vs).splitlines()
    assert md[0].startswith("| claim |") and "| a | margin 2 | **holds** |" in md[2]
    assert "d is near chance" in md[5]


def test_text_never_prints_non_finite_numbers():
    assert versus("b", {"m": float("nan")}, "a", {"m": 1.17}, "m", "margin") == (
        "b's margin cannot be compared with a's (b's is not measured)")
    assert "2x" in versus("b", {"m": 2.0}, "a", {"m": 1.0}, "m", "margin")
    assert check_words("ratio nan vs 1.17") == ["nan"] and check_words("an infinite, unbounded distance") == []


def test_resume_reuses_finished_sections_and_refuses_other_settings(tmp_path: Path, models, data, quick_plan,
                                                                    monkeypatch):
    plan = dataclasses.replace(quick_plan, sections=["clean"])
    first = run_report(models[:1], data, plan, tmp_path, seed=0, progress=False)

    def boom(*args, **kwargs):
        raise AssertionError("a finished section was recomputed on resume")

    monkeypatch.setattr(get_section("clean"), "compute", boom)
    again = run_report(models[:1], data, plan, tmp_path, seed=0, resume=True, progress=False)
    assert again.models[0].sections["clean"].sentence == first.models[0].sections["clean"].sentence
    with pytest.raises(ConfigError, match=r"other settings(.|\n)*seed: 0 recorded, 1 now(.|\n)*without --resume"):
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


def test_sections_are_registered_with_claims_in_page_order():
    keys = section_keys()
    assert keys == list(ReportPlan().sections) == [e.name for e in sorted(SECTIONS.entries(),
                                                                           key=lambda e: e.meta["order"])]
    for key in keys:
        sec = get_section(key)
        assert sec.key == key and sec.title and sec.paper and sec.claims, key
        assert sec.result_type.__name__ != "Result", key  # read from Section[R]
        assert len({c.key for c in sec.claims}) == len(sec.claims)
    with pytest.raises(ConfigError, match="choose from clean, robustness"):
        ReportPlan(sections=["clean", "nonsense"])


def test_a_section_module_imported_first_registers_every_section():
    import subprocess
    import sys

    code = ("import robustlens.report.sections.noise as n; from robustlens.report import section_keys; "
            "assert n.NoiseSection.key == 'noise'; print(len(section_keys()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) == len(section_keys())


def test_headline_rows_state_the_threat_model(report_run, quick_plan):
    from robustlens.report.html import headline_rows

    res, out, _ = report_run
    labels = [label for label, _ in headline_rows(res)]
    assert f"robust accuracy at Linf eps {quick_plan.threat_linf:g}" in labels
    assert f"robust accuracy at L2 eps {quick_plan.threat_l2:g}" in labels
    assert "certified accuracy at L2 radius 0.125 (sigma 0.25)" in labels
    page = (out / "report.html").read_text()
    assert "Threat model: L2 eps 2 and Linf eps 0.1" in page and "smoothing noise sigma 0.25" in page
    assert re.search(r"\d+ of \d+ claims hold", page) and 'class="claims"' in page


def test_broken_models_cannot_be_judged(tmp_path: Path, models, data, mnist):
    """A constant classifier (near chance) beside a trained one: its failed sections name the cause, every claim
    involving it "cannot be judged" (never "holds"), and no sentence prints a non-finite number."""
    plan = tiny_plan(mnist[1].input_shape, n_samples=30, batch_size=30,
                     sections=["clean", "robustness", "curvature", "noise", "certified"])
    entries = [dataclasses.replace(models[0], name="trained", role="standard"),
               ModelEntry("constant", mnist[1].classifier(Constant()), role="robust")]
    with pytest.warns(UserWarning, match="failed"):
        res = run_report(entries, data, plan, tmp_path, progress=False)
    broken = res.models[1]
    failed = [o for o in broken.sections.values() if o.status == "error"]
    assert failed and all("constant on these inputs" in o.note or "correctly" in o.note for o in failed), [
        o.note for o in failed]
    assert any("constant on these inputs" in o.note and o.detail for o in failed)
    mine = [v for v in res.verdicts if "constant" in v.subject]
    assert mine and all(v.status == UNJUDGED for v in mine), [(v.claim, v.status) for v in mine]
    assert any("near chance" in v.reason for v in mine)
    texts = [o.sentence + o.note for m in res.models for o in m.sections.values()] + list(res.comparison.values())
    texts += [v.sentence for v in res.verdicts]
    assert all(not check_words(t) for t in texts), [t for t in texts if check_words(t)]
    page = (tmp_path / "report.html").read_text()
    assert "this section failed: the classifier is constant" in page and "<details>" in page


def test_verdicts_without_clean_accuracy_or_with_masking_flags_cannot_be_judged(report_run):
    res, _, _ = report_run
    back = dataclasses.replace(res, models=[dataclasses.replace(m, sections={k: o for k, o in m.sections.items()
                                                                             if k != "clean"}) for m in res.models])
    assert all(v.status in (UNJUDGED, UNTESTED) for v in judge(back))
    assert any("has no clean accuracy" in v.reason for v in judge(back))
    flagged = json.loads(json.dumps(res.models[1].sections["sanity"].headline))
    flagged.update(flags=1.0, flag_unbounded=1.0)
    sanity = dataclasses.replace(res.models[1].sections["sanity"], headline=flagged)
    masked = dataclasses.replace(res, models=[res.models[0], dataclasses.replace(
        res.models[1], sections={**res.models[1].sections, "sanity": sanity})])
    by = {(v.section, v.claim): v for v in judge(masked) if "b" in v.subject.split(" ")}
    assert by[("robustness", "larger-margins")].status == UNJUDGED
    assert "gradient-masking flag" in by[("robustness", "larger-margins")].reason
    assert by[("clean", "accuracy-trade-off")].status in (HOLDS, FAILS)  # no gradients in clean accuracy
    assert by[("sanity", "no-gradient-masking")].status == FAILS


def test_state_folders_never_collide_and_resume_keeps_each_models_numbers(tmp_path: Path, models, data, quick_plan):
    plan = dataclasses.replace(quick_plan, sections=["clean"])
    entries = [dataclasses.replace(models[0], name="std net"), dataclasses.replace(models[1], name="std-net")]
    first = run_report(entries, data, plan, tmp_path, progress=False)
    folders = {p.name for p in (tmp_path / "state").iterdir() if p.is_dir()}
    assert folders == {folder_id("std net"), folder_id("std-net")}
    again = run_report(entries, data, plan, tmp_path, resume=True, progress=False)
    for m0, m1, e in zip(first.models, again.models, entries, strict=True):
        direct = get_section("clean").compute(e.clf, data, plan, RunContext()).accuracy
        assert m0.sections["clean"].result.accuracy == m1.sections["clean"].result.accuracy == direct


def test_failure_cause_names_a_constant_classifier(models, data, mnist):
    from robustlens.report.diagnose import failure_cause

    assert "constant on these inputs" in failure_cause(mnist[1].classifier(Constant()), data)
    assert failure_cause(models[0].clf, data) == ""


# ---------------------------------------------------------------------------------------------- the command line
CLI_SECTIONS = "clean,robustness,examples,noise"


def _cli(*args: str) -> str:
    from typer.testing import CliRunner

    from robustlens.cli import app

    res = CliRunner().invoke(app, ["report", *args, "--no-progress"])
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


def _check_cli_report(out: Path, n_models: int, sections: str = CLI_SECTIONS) -> ReportResults:
    validate_results_json(out / "results.json")
    back = ReportResults.load(out / "results.json")
    assert len(back.models) == n_models
    for m in back.models:
        for key in sections.split(","):
            assert m.sections[key].ok, (m.name, key, m.sections[key].note)
    assert (out / "report.html").read_text().count("<img ") >= len(sections.split(","))
    return back


def test_cli_report_on_a_user_model_file(tmp_path: Path, mnist):
    train, _ = mnist
    (tmp_path / "mynet.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(),\n"
        "                         nn.Linear(4 * 7 * 7, 10))\n"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet", tmp_path / "mynet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.make()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    order = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(0))
    for i in range(60):
        xb, yb = train.x[order[64 * i: 64 * i + 64]], train.y[order[64 * i: 64 * i + 64]]
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    other = train_tiny(0, train.x, train.y, steps=10)
    from robustlens.zoo import save_model

    save_model(other, tmp_path / "tiny.safetensors")  # not a zoo model: loaded through its factory below
    (tmp_path / "tinynet.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom models import TinyCNN\n\n\n"
        "def make():\n    return TinyCNN()\n"
    )
    out = tmp_path / "out"
    text = _cli("--model", f"{tmp_path / 'mynet.py'}:make={tmp_path / 'w.pt'}", "--compare",
                f"{tmp_path / 'tinynet.py'}:make={tmp_path / 'tiny.safetensors'}", "--names", "mine,tiny",
                "--data", "mnist-embedded", "--out", str(out), "--limit", "12", "--sections", CLI_SECTIONS)
    back = _check_cli_report(out, 2)
    assert [m.name for m in back.models] == ["mine", "tiny"]
    assert back.models[0].sections["clean"].result.accuracy > 0.5  # the user's weights were loaded
    assert "median L2 distance to the boundary" in text and str(out / "report.html") in text
    assert back.data.n == 12 and back.models[0].sections["clean"].result.n == 12
    # the same weights give the same numbers on resume, without recomputing
    again = _cli("--model", f"{tmp_path / 'mynet.py'}:make={tmp_path / 'w.pt'}", "--compare",
                 f"{tmp_path / 'tinynet.py'}:make={tmp_path / 'tiny.safetensors'}", "--names", "mine,tiny",
                 "--data", "mnist-embedded", "--out", str(out), "--limit", "12", "--sections", CLI_SECTIONS,
                 "--resume")
    assert again.splitlines()[:5] == text.splitlines()[:5]


def test_cli_report_on_cifar10(tmp_path: Path, shared_data: Path):
    from robustlens.zoo import create_model, save_model

    root = shared_data / "cifar10"
    net = create_model("smallcnn", in_channels=3, input_size=32, width=4, hidden=16, seed=0).eval()
    save_model(net, tmp_path / "cifar.safetensors")
    out = tmp_path / "out"
    _cli("--model", str(tmp_path / "cifar.safetensors"), "--data", "cifar10", "--data-root", str(root),
         "--out", str(out), "--limit", "6", "--sections", "clean,robustness,examples", "--normalize")
    back = _check_cli_report(out, 1, "clean,robustness,examples")
    assert back.data.input_shape == [3, 32, 32] and back.data.class_names[0] == "airplane"
    assert back.plan.threat_linf == pytest.approx(8 / 255)


def test_cli_report_on_an_image_folder(tmp_path: Path):
    from PIL import Image

    from robustlens.zoo import create_model, save_model

    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(("dark", "light")):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            a = (40 + 150 * k + 60 * torch.rand(12, 12, generator=g)).clamp(0, 255).byte().numpy()
            Image.fromarray(a, mode="L").save(tmp_path / "imgs" / name / f"{i}.png")
    ds = load_dataset("folder", "all", root=tmp_path / "imgs")
    net = create_model("mlp", num_classes=2, input_size=12, hidden=(16,), seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(100):
        loss = torch.nn.functional.cross_entropy(net(ds.x), ds.y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_model(net.eval(), tmp_path / "mlp.safetensors")
    out = tmp_path / "out"
    _cli("--model", f"mlp={tmp_path / 'mlp.safetensors'}", "--data", str(tmp_path / "imgs"), "--out", str(out),
         "--limit", "12", "--sections", "clean,robustness,sections")
    back = _check_cli_report(out, 1, "clean,robustness,sections")
    assert back.data.class_names == ["dark", "light"] and back.data.n == 12
    assert back.models[0].sections["clean"].result.accuracy == 1.0


def test_cli_names_models_saved_as_model_safetensors_by_their_folders(tmp_path: Path):
    from robustlens.commands.report import model_names

    assert model_names(["runs/std/model.safetensors", "runs/at/model.safetensors"]) == ["std", "at"]
    assert model_names(["a.safetensors", "smallcnn=b.safetensors"]) == ["a", "b"]
    with pytest.raises(ConfigError, match="--names"):
        model_names(["x/run/model.safetensors", "y/run/model.safetensors"])


def test_cli_lists_the_sections_from_the_registry():
    from typer.testing import CliRunner

    from robustlens.cli import app

    res = CliRunner().invoke(app, ["report", "--list-sections"])
    assert res.exit_code == 0, res.output
    for key in section_keys():
        assert any(line.startswith(key) for line in res.output.splitlines()), key
    bad = CliRunner().invoke(app, ["report", "--model", "m.pt", "--data", "mnist-embedded", "--out", "o",
                                   "--sections", "clean,nonsense"])
    assert bad.exit_code != 0 and "choose among clean, robustness" in bad.output


def test_cli_report_explains_bad_arguments(tmp_path: Path):
    from typer.testing import CliRunner

    from robustlens.cli import app

    res = CliRunner().invoke(app, ["report", "--model", "x.pt", "--data", str(tmp_path / "nowhere"), "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "robustlens: error: --data" in res.output and "neither a data set" in res.output


# ---------------------------------------------------------------------------------------------- figures
@pytest.fixture()
def drawn(report_run, monkeypatch):
    """``drawn(key)``: the matplotlib figures section ``key`` draws for the report run's models (before rendering)."""
    import matplotlib.pyplot as plt

    from robustlens.report import figures as F

    res, _, _ = report_run
    figs: list = []
    monkeypatch.setattr(F, "render", lambda fig, caption: figs.append(fig) or F.Figure(caption, "", 1, 1))

    def draw(key: str) -> list:
        figs.clear()
        named = [(m.name, m.sections[key].result) for m in res.models]
        with F.style():
            get_section(key).figures(named, res.plan)
        return list(figs)

    yield draw
    plt.close("all")


def test_figures_render_at_twice_their_page_size(report_run):
    import base64

    from robustlens.report.figures import png_size

    page = (report_run[1] / "report.html").read_text()
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)" width="(\d+)" height="(\d+)"', page)
    assert len(imgs) == page.count("<img ")
    for b64, w, h in imgs:
        pw, ph = png_size(base64.b64decode(b64[:64] + "=" * (-len(b64[:64]) % 4)))
        assert abs(pw - 2 * int(w)) <= 1 and abs(ph - 2 * int(h)) <= 1


def test_cross_sections_have_a_class_key_and_the_landscapes_one_colour_scale(drawn, report_run):
    (fig,) = drawn("sections")[:1]
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert legend.get_title().get_text() == "class" and any(lab.endswith("(clean)") for lab in labels)
    res = report_run[0]
    profile, landscape = drawn("curvature")
    clims = [ax.collections[0].get_clim() for ax in landscape.axes if ax.collections and ax.get_label() != "<colorbar>"]
    assert len(clims) == len(res.models) and len(set(clims)) == 1
    losses = torch.cat([m.sections["curvature"].result.landscape.loss.flatten() for m in res.models])
    assert clims[0][0] == pytest.approx(float(losses.min())) and clims[0][1] == pytest.approx(float(losses.max()))
    # the profile: top k at ranks 1..k, bottom k after a one-slot gap, ticks naming the true ranks (D = 784)
    ax = profile.axes[0]
    k = int(res.models[0].sections["curvature"].result.spectrum.top_values.shape[1])
    xs = [list(line.get_xdata()) for line in ax.get_lines() if len(line.get_xdata()) == k]
    assert xs[0] == list(range(1, k + 1)) and xs[1] == list(range(k + 2, 2 * k + 2))
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "784"


def test_certified_curve_marks_the_radius_cap(drawn, report_run):
    from scipy.stats import norm

    from robustlens.report.sections.certification import radius_cap

    r = report_run[0].models[0].sections["certified"].result
    cap = radius_cap(r.sigma, r.n, r.alpha)
    assert cap == pytest.approx(r.sigma * norm.ppf(r.alpha ** (1 / r.n)), rel=1e-9)
    assert float(r.radius.max()) <= cap + 1e-12
    (fig,) = drawn("certified")
    ax = fig.axes[0]
    assert any(list(line.get_xdata()) == [cap, cap] for line in ax.get_lines())
    assert any(f"radius cap of n = {r.n}" in t.get_text() for t in ax.texts)


def test_integer_axes_and_small_rates_get_readable_scales(drawn):
    hist = drawn("robustness")[1]
    ticks = hist.axes[0].get_yticks()
    assert all(float(t).is_integer() for t in ticks)
    bars = drawn("universal")[1].axes[0]
    heights = [p.get_height() for p in bars.patches]
    top = bars.get_ylim()[1]
    assert top < 1.0 or max(heights) > 0.5
    assert max(heights) <= top and (max(heights) > 0.5 or top <= max(0.05, 1.25 * max(heights)) + 1e-9)


# ---------------------------------------------------------------------------------------------- the recipe
def test_design_recipe_runs(tmp_path: Path, monkeypatch, models, data, quick_plan):
    """The "Adding an analysis" recipe of docs/design.md, executed as written: its function, plot, section and
    command register and run, and the section is judged on its claim in a report."""
    from typer.testing import CliRunner

    from robustlens.analyses import ANALYSES
    from robustlens.cli import app
    from robustlens.commands import app as app_module
    from robustlens.zoo import create_model, save_model

    doc = (Path(__file__).parents[1] / "docs" / "design.md").read_text().split("## Adding an analysis")[1]
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert len(blocks) == 4
    for reg in (SECTIONS, ANALYSES):  # the registrations vanish with the test
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
        monkeypatch.setattr(reg, "_aliases", dict(reg._aliases))
    monkeypatch.setattr(app_module.app, "registered_commands", list(app_module.app.registered_commands))
    ns: dict = {}
    for code in blocks:
        exec(compile(code, "docs/design.md", "exec"), ns)  # noqa: S102 - the documentation's own example
    assert "noise-flips" in SECTIONS and "noise-flips" in ANALYSES and "noise-flips" in section_keys()
    r = ns["noise_flips"](models[0].clf, data.x[:20], sigma=0.0, seed=0)
    assert r.flip_rate == 0.0  # no noise, no flip
    plan = dataclasses.replace(quick_plan, sections=["clean", "noise-flips"])
    res = run_report([models[0]], data, plan, tmp_path, progress=False)
    assert res.models[0].sections["noise-flips"].ok
    assert [v.status for v in res.verdicts if v.section == "noise-flips"] in (["holds"], ["does not hold"])
    assert "Decisions changed by Gaussian noise" in (tmp_path / "report.html").read_text()
    save_model(create_model("smallcnn", width=4, hidden=16, seed=0).eval(), tmp_path / "m.safetensors")
    out = CliRunner().invoke(app, ["noise-flips", "--model", str(tmp_path / "m.safetensors"), "--sigma", "0.1"])
    assert out.exit_code == 0 and "changes" in out.output, (out.output, out.exception)


def test_resume_refuses_the_state_of_an_older_report_with_the_fix(tmp_path: Path, models, data, quick_plan):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "manifest.json").write_text(json.dumps({"report_schema": 1, "seed": 0}))  # version 1
    plan = dataclasses.replace(quick_plan, sections=["clean"])
    with pytest.raises(ConfigError, match="older or damaged report(.|\n)*without --resume"):
        run_report(models[:1], data, plan, tmp_path, resume=True, progress=False)
    assert run_report(models[:1], data, plan, tmp_path, progress=False).models[0].sections["clean"].ok


def test_docs_list_every_claim_of_every_section():
    doc = (Path(__file__).parents[1] / "docs" / "report.md").read_text().split("## Claims and verdicts")[1]
    rows = re.findall(r"^\| `([a-z-]+)` \|[^|]+\| (pair|model) \|", doc, re.M)
    for key in section_keys():
        kinds = sorted("pair" if isinstance(c, PairClaim) else "model" for c in get_section(key).claims)
        assert sorted(k for s, k in rows if s == key) == kinds, key
