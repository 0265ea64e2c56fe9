"""Compare the numbers of two report results (``results.json``, any format version): every number, array and status
must match exactly; sentences, timings and versions may differ.

    python benchmarks/compare_results.py OLD/results.json NEW/results.json [--rtol 0] [--show 20]

Walks both files' JSON trees (arrays by reference, :func:`robustlens.results.read_document`), pairs values by
their path (e.g. ``models.0.sections.noise.result.sqrt_d.slope``) and prints how many numbers matched, every one
that differs, the numbers the old file has and the new one lacks (a failure: nothing may disappear) and those only
the new one has (new numbers, listed for information). Exits 1 when a number differs or disappears. NaN equals
NaN; ``inf`` equals ``inf``. Result type names (``__result__``), strings other than section statuses, timings
(``seconds``), the creation time, versions and the environment are not compared.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

SKIP_KEYS = {"__result__", "created", "robustlens_version", "environment", "seconds", "report_schema",
             "schema_version", "arrays"}
COMPARED_STRINGS = {"status"}


def load(path: Path) -> tuple[Any, dict[str, np.ndarray]]:
    """The JSON payload of a saved result and its arrays."""
    from robustlens.results import read_document

    return read_document(path)


def flatten(value: Any, arrays: dict[str, np.ndarray], path: str = "",
            out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{path: number | array | status string}`` for every compared leaf."""
    out = {} if out is None else out
    if isinstance(value, dict):
        ref = value.get("__tensor__", value.get("__ndarray__"))
        if ref is not None:  # the reference name; its array (inline or in an archive) is in ``arrays``
            out[path] = np.asarray(arrays[ref])
        elif "__float__" in value:
            out[path] = float(value["__float__"])
        else:
            for k, v in value.items():
                if k not in SKIP_KEYS:
                    flatten(v, arrays, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            flatten(v, arrays, f"{path}.{i}", out)
    elif isinstance(value, (bool, int, float)):
        out[path] = value
    elif isinstance(value, str) and path.rsplit(".", 1)[-1] in COMPARED_STRINGS:
        out[path] = value
    return out


def same(a: Any, b: Any, rtol: float) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return bool(np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol, atol=0, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    return fa == fb or (rtol > 0 and math.isclose(fa, fb, rel_tol=rtol))


def brief(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)} {v.dtype}: {np.array2string(v.ravel()[:6], precision=6)}"
    return repr(v)


def compare(old: Path, new: Path, *, rtol: float = 0.0, show: int = 20) -> int:
    pa, aa = load(old)
    pb, ab = load(new)
    fa, fb = flatten(pa, aa), flatten(pb, ab)
    common = [k for k in fa if k in fb]
    differ = [k for k in common if not same(fa[k], fb[k], rtol)]
    gone = [k for k in fa if k not in fb]
    added = [k for k in fb if k not in fa]
    n_values = sum(int(np.asarray(fa[k]).size) if isinstance(fa[k], np.ndarray) else 1 for k in common)
    print(f"compared {len(common)} entries ({n_values} numbers): {len(common) - len(differ)} identical, "
          f"{len(differ)} differ; {len(gone)} only in {old}; {len(added)} only in {new}")
    for title, keys in (("differ", differ), (f"only in {old}", gone), (f"only in {new}", added)):
        if keys:
            print(f"\n{title}:")
            for k in keys[:show]:
                if k in fa and k in fb:
                    print(f"  {k}\n    old {brief(fa[k])}\n    new {brief(fb[k])}")
                else:
                    print(f"  {k}: {brief(fa.get(k, fb.get(k)))}")
            if len(keys) > show:
                print(f"  ... and {len(keys) - show} more")
    return 1 if differ or gone else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: exact)")
    ap.add_argument("--show", type=int, default=20, help="entries listed per kind of difference")
    args = ap.parse_args(argv)
    return compare(args.old, args.new, rtol=args.rtol, show=args.show)


if __name__ == "__main__":
    sys.exit(main())
