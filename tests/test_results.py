"""Result files: one path is one result (``.json`` or ``.npz``), bit-exact round trips, strict JSON, atomic saves
that fail whole at every stage, the extension check, and results written by earlier versions."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

import robustlens.files as files_mod
from robustlens.errors import ConfigError, CorruptFileError, StorageError
from robustlens.results import _REGISTRY, Result


@dataclass
class Inner(Result):
    values: torch.Tensor
    name: str = "inner"


@dataclass
class Outer(Result):
    score: float
    inner: Inner
    arr: np.ndarray
    items: list[Inner] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    missing: float | None = None


def make(seed: int = 0) -> Outer:
    g = torch.Generator().manual_seed(seed)
    norms = torch.rand(5, generator=g)
    norms[1], norms[3] = math.inf, math.nan
    return Outer(
        score=0.5 + seed,
        inner=Inner(torch.randn(2, 3, generator=g)),
        arr=np.array([1, 2, 3 + seed]),
        items=[Inner(torch.tensor([1, 2 + seed]), "a"), Inner(norms.to(torch.bfloat16), "bf16")],
        meta={"eps": [0.1, 0.2], "inf": float("inf"), "nan": float("nan"), "mask": torch.tensor([True, False]),
              "half": torch.rand(3, generator=g).half(), "norms": norms, "x.y": torch.zeros(2) + seed,
              "x": {"y": torch.ones(3) + seed}},  # "x.y" and "x"/"y" must never share an array
    )


def strict_loads(text: str | bytes) -> object:
    """``json.loads`` that refuses the non-standard constants NaN, Infinity and -Infinity."""

    def refuse(name: str) -> object:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def assert_same(a: object, b: object) -> None:
    """Equal values, tensors bit for bit (NaN where NaN, same dtype)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.view(-1).view(torch.uint8) if a.dtype != torch.bool else a,
                           b.view(-1).view(torch.uint8) if b.dtype != torch.bool else b)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    elif isinstance(a, Result):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            assert_same(u, v)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_round_trip_is_bit_exact_and_one_file(tmp_path: Path, suffix: str) -> None:
    r = make()
    path = r.save(tmp_path / f"r{suffix}")
    assert path == tmp_path / f"r{suffix}" and sorted(p.name for p in tmp_path.iterdir()) == [f"r{suffix}"]
    back = Outer.load(path)
    assert_same(r, back)
    assert back.meta["norms"].dtype == torch.float32 and back.items[1].values.dtype == torch.bfloat16


def test_the_json_file_is_strict_and_the_npz_holds_it_with_plain_arrays(tmp_path: Path) -> None:
    r = make()
    payload = strict_loads(r.save(tmp_path / "r.json").read_bytes())
    assert isinstance(payload, dict) and payload["type"] == "Outer" and "arrays" not in payload
    assert payload["data"]["meta"]["inf"] == {"__float__": "inf"}
    with zipfile.ZipFile(r.save(tmp_path / "r.npz")) as zf:
        inside = strict_loads(zf.read("result.json"))
    assert isinstance(inside, dict) and inside["data"]["score"] == 0.5
    with np.load(tmp_path / "r.npz", allow_pickle=False) as npz:  # arrays readable without robustlens
        np.testing.assert_array_equal(npz["inner.values"], r.inner.values.numpy())


def test_to_dict_and_to_json_are_strict() -> None:
    r = make()
    d = r.to_dict()
    assert d["meta"]["norms"][1] == {"__float__": "inf"} and d["meta"]["norms"][3] == {"__float__": "nan"}
    assert d["arr"] == [1, 2, 3] and d["inner"]["values"] == r.inner.values.tolist()
    assert d["items"][1]["values"][0] == float(r.items[1].values[0])  # bfloat16 as its values
    strict_loads(r.to_json())
    json.dumps(d, allow_nan=False)


def test_attack_result_to_json_is_strict() -> None:
    from models import Affine

    from robustlens import Classifier
    from robustlens.attacks.pgd import PGD

    clf = Classifier(Affine(4, 3, seed=0), bounds=(0, 1))
    x = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    res = PGD(eps=1e-4, steps=2, random_start=False)(clf, x, clf.predict(x), seed=0)
    assert bool(torch.isinf(res.norm).any())  # unfooled samples carry an infinite norm
    payload = strict_loads(res.to_json())
    assert {"__float__": "inf"} in payload["norm"]  # type: ignore[index]


def test_no_result_type_bypasses_the_strict_writer() -> None:
    import robustlens.analyses  # noqa: F401  imports every analysis module, so every Result subclass is known
    import robustlens.attacks  # noqa: F401
    import robustlens.commands.train  # noqa: F401
    import robustlens.report  # noqa: F401
    import robustlens.train  # noqa: F401

    assert len(_REGISTRY) > 20
    for cls in _REGISTRY.values():
        for method in ("to_dict", "to_json", "save", "load", "_payload"):
            assert getattr(cls, method).__qualname__.startswith("Result."), (cls.__name__, method)


@pytest.mark.parametrize("first, second", [("same.json", "same.npz"), ("same.npz", "same.json"),
                                           ("r.json", "r.JSON.npz"), ("dir/r.json", "dir/r.npz")])
def test_paths_that_used_to_share_an_npz_hold_their_own_results(tmp_path: Path, first: str, second: str) -> None:
    a, b = make(0), make(1)
    pa, pb = a.save(tmp_path / first), b.save(tmp_path / second)
    assert_same(a, Outer.load(pa))
    assert_same(b, Outer.load(pb))


@pytest.mark.parametrize("name", ["same.txt", "r", "r.json.bak", "r.pt"])
def test_other_extensions_are_refused_naming_the_accepted_ones(tmp_path: Path, name: str) -> None:
    make().save(tmp_path / "same.json")
    before = listing(tmp_path)
    with pytest.raises(ConfigError, match=r"must end in \.json .* or \.npz"):
        make(1).save(tmp_path / name)
    assert listing(tmp_path) == before
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        make().save(tmp_path / "folder.json")
    assert isinstance(Outer.load(make().save(tmp_path / "UPPER.JSON")), Outer)


def test_an_npz_out_no_longer_loses_its_arrays(tmp_path: Path) -> None:
    """``--out out/r.npz`` used to write the JSON over the arrays file it had just written."""
    r = make()
    r.save(tmp_path / "out" / "r.npz")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.npz"]
    assert_same(r, Outer.load(tmp_path / "out" / "r.npz"))


def _fail(exc: BaseException):
    def fail(*args: object, **kwargs: object) -> None:
        raise exc

    return fail


ENOSPC = OSError(28, "No space left on device")


@pytest.mark.parametrize("suffix", [".json", ".npz"])
@pytest.mark.parametrize("stage", ["encode", "create", "write", "fsync", "rename"])
def test_a_failed_save_at_any_stage_leaves_the_old_file_and_nothing_else(tmp_path: Path, suffix: str, stage: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    old = make(0)
    path = old.save(tmp_path / f"r{suffix}")
    before = listing(tmp_path)
    new = make(1)
    if stage == "encode":
        new.meta["bad"] = object()  # not serializable: found while encoding, before any file is touched
        expected: type[BaseException] = TypeError
    else:
        expected = StorageError
        if stage == "create":
            monkeypatch.setattr(files_mod, "_new_temp", _fail(PermissionError(13, "Permission denied")))
        elif stage == "write":
            if suffix == ".json":
                real_open = open

                def open_then_fail(file, mode="r", *a, **k):  # type: ignore[no-untyped-def]
                    f = real_open(file, mode, *a, **k)
                    if "w" in mode and ".tmp" in str(file):
                        f.write(b"half")
                        f.close()
                        raise ENOSPC
                    return f

                monkeypatch.setattr("builtins.open", open_then_fail)
            else:
                real_write = np.lib.format.write_array
                calls = [0]

                def write_then_fail(*a, **k):  # type: ignore[no-untyped-def]
                    calls[0] += 1
                    if calls[0] > 2:  # two arrays are in the archive, then the disk is full
                        raise ENOSPC
                    real_write(*a, **k)

                monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
        elif stage == "fsync":
            monkeypatch.setattr(os, "fsync", _fail(ENOSPC))
        else:
            monkeypatch.setattr(os, "replace", _fail(OSError(30, "Read-only file system")))
    with pytest.raises(expected) as e:
        new.save(path)
    if expected is StorageError:
        assert "is unchanged" in str(e.value) and isinstance(e.value.__cause__, OSError)
    monkeypatch.undo()
    assert listing(tmp_path) == before  # the old file, byte for byte, and no temporary file
    assert_same(old, Outer.load(path))


def test_damaged_or_foreign_files_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("not json")
    with pytest.raises(CorruptFileError, match="not a robustlens result"):
        Outer.load(tmp_path / "x.json")
    np.savez(tmp_path / "plain.npz", a=np.zeros(2))
    with pytest.raises(CorruptFileError, match="not a robustlens result .no result.json member"):
        Outer.load(tmp_path / "plain.npz")
    raw = make().save(tmp_path / "r.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError, match="damaged"):
        Outer.load(tmp_path / "cut.npz")
    text = make().save(tmp_path / "r.json").read_text()
    i = text.index('"base64": "') + 20
    (tmp_path / "flip.json").write_text(text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:])
    with pytest.raises(CorruptFileError, match="damaged"):
        Outer.load(tmp_path / "flip.json")
    Inner(torch.zeros(1)).save(tmp_path / "inner.json")
    with pytest.raises(TypeError, match="not a Outer"):
        Outer.load(tmp_path / "inner.json")
    with pytest.raises(ConfigError, match="not found"):
        Outer.load(tmp_path / "absent.json")


def test_results_written_by_earlier_versions_still_load(tmp_path: Path) -> None:
    """The format before this one: ``path`` as JSON with references into ``<stem>.npz`` beside it."""
    values = torch.arange(6.0).reshape(2, 3)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{"r.inner.values": values.numpy(), "r.arr": np.array([4, 5])})
    (tmp_path / "old.npz").write_bytes(buf.getvalue())
    ref = {"__tensor__": "r.inner.values", "dtype": "float32", "shape": [2, 3]}
    payload = {"schema_version": 1, "type": "Outer", "arrays": "old.npz", "data": {
        "__result__": "Outer", "score": {"__float__": "inf"}, "arr": {"__ndarray__": "r.arr", "dtype": "int64",
                                                                        "shape": [2]},
        "inner": {"__result__": "Inner", "values": ref, "name": "inner"}, "items": [], "meta": {}, "missing": None}}
    (tmp_path / "old.json").write_text(json.dumps(payload))
    back = Outer.load(tmp_path / "old.json")
    assert back.score == math.inf and torch.equal(back.inner.values, values)
    np.testing.assert_array_equal(back.arr, [4, 5])


def test_read_document_gives_the_raw_tree_and_every_array(tmp_path: Path) -> None:
    from robustlens.results import read_document

    r = make()
    for suffix in (".json", ".npz"):
        payload, arrays = read_document(r.save(tmp_path / f"r{suffix}"))
        ref = payload["data"]["inner"]["values"]
        np.testing.assert_array_equal(arrays[ref["__tensor__"]], r.inner.values.numpy())
        assert len(arrays) == 9  # every tensor and array of the result, the colliding "x.y" keys apart


def test_short_repr_and_attack_summary() -> None:
    """A result's repr names shapes and dtypes, never the values; AttackResult.summary() gives the counts."""
    from robustlens import Classifier
    from robustlens.attacks import PGD

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    clf = Classifier(net, bounds=(0, 1))
    x = torch.rand(40, 1, 4, 4)
    y = clf.predict(x)
    y[:4] = (y[:4] + 1) % 3  # four samples the model gets wrong
    res = PGD("Linf", 0.2, steps=5)(clf, x, y)
    text = repr(res)
    assert text.startswith("AttackResult(attack='pgd'") and "clean=Tensor(40x1x4x4 float32)" in text
    assert "tensor(" not in text and len(text) < 800
    c = res.counts()
    fooled = int((res.success & res.clean_correct).sum())
    assert c == {"samples": 40, "correct": 36, "fooled": fooled, "stopped": 0}
    assert int(res.success.sum()) == fooled + 4  # success also counts the four wrong ones: the summary does not
    s = res.summary()
    assert f"fooled {fooled} of 36 correctly classified (clean accuracy 0.900)" in s
    assert f"robust accuracy {(36 - fooled) / 40:.3f}" in s and "eps 0.2" in s
    med = float(res.norm[res.success & res.clean_correct].median())
    assert f"median Linf norm of the fooled {med:.4g}" in s
