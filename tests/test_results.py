from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from robustlens.results import Result


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


def make() -> Outer:
    return Outer(
        score=0.5,
        inner=Inner(torch.arange(6.0).reshape(2, 3)),
        arr=np.array([1, 2, 3]),
        items=[Inner(torch.tensor([1, 2]), "a")],
        meta={"eps": [0.1, 0.2], "inf": float("inf")},
    )


def test_roundtrip(tmp_path):
    r = make()
    path = r.save(tmp_path / "r.json")
    back = Outer.load(path)
    assert back.score == 0.5 and back.meta["inf"] == float("inf")
    torch.testing.assert_close(back.inner.values, r.inner.values)
    assert back.items[0].name == "a" and torch.equal(back.items[0].values, torch.tensor([1, 2]))
    np.testing.assert_array_equal(back.arr, r.arr)
    assert (tmp_path / "r.npz").exists()


def test_to_dict_is_json_ready():
    d = make().to_dict()
    assert d["inner"]["values"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert d["arr"] == [1, 2, 3]


def test_load_refuses_other_files(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("not json")
    with pytest.raises(ValueError, match="not a robustlens result"):
        Outer.load(p)
    Inner(torch.zeros(1)).save(tmp_path / "inner.json")
    with pytest.raises(TypeError, match="not a Outer"):
        Outer.load(tmp_path / "inner.json")
