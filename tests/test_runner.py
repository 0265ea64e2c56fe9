"""The evaluation runner: checkpoints, resume after SIGKILL, refusal of foreign state, full disk, torchrun shards."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import robustlens.runner as runner_mod
from robustlens import Classifier, ConfigError, InputError
from robustlens.runner import EvaluationResult, StorageError, model_hash, run_evaluation
from robustlens.seeding import SampleRNG

ROOT = Path(__file__).resolve().parents[1]

# A deterministic, moderately expensive per-batch function shared by the in-process tests and the subprocesses:
# sign-gradient ascent on the cross-entropy of a small seeded MLP from a random start drawn per sample index
# (a PGD-like loop; the attacks package's PGD is used instead when it is available).
WORKER_LIB = textwrap.dedent(
    """
    import torch
    from torch import nn
    from robustlens import Classifier
    from robustlens.seeding import SampleRNG

    def make_problem(n=96, d=64, c=5):
        g = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, c))
        x = torch.rand(n, d, generator=g)
        y = torch.randint(c, (n,), generator=g)
        return Classifier(net), x, y

    def make_fn(clf, steps, seed, delay=0.0):
        import time
        try:
            from robustlens.attacks import PGD
            attack = PGD(norm="inf", eps=0.1, steps=steps, random_start=True)
        except Exception:
            attack = None

        def fn(bx, by, bi):
            if delay:
                time.sleep(delay)
            if attack is not None:
                res = attack(clf, bx, by, seed=seed, indices=bi)
                return {"adv": res.adversarial, "success": res.success}
            rng = SampleRNG(seed, bi)
            xa = (bx + 0.1 * (2 * rng.rand(bx.shape[1:]) - 1)).clamp(0, 1)
            ce = lambda z: torch.nn.functional.cross_entropy(z, by, reduction="none")
            with clf.analysis_mode():
                for _ in range(steps):
                    _, _, grad = clf.value_and_grad(xa, ce)
                    xa = (bx + (xa + 0.01 * grad.sign() - bx).clamp(-0.1, 0.1)).clamp(0, 1)
                loss = ce(clf.forward(xa)).detach()
            return {"adv": xa, "loss": loss}
        return fn
    """
)


@pytest.fixture(scope="module")
def worker_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("workerlib")
    (d / "runner_worker_lib.py").write_text(WORKER_LIB)
    return d


def _lib(worker_lib: Path):  # import the shared problem definition in this process too
    sys.path.insert(0, str(worker_lib))
    try:
        import runner_worker_lib  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return runner_worker_lib


def _env(worker_lib: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(worker_lib), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


def _equal(a: EvaluationResult, b: EvaluationResult) -> None:
    assert a.outputs.keys() == b.outputs.keys()
    assert torch.equal(a.indices, b.indices)
    for k in a.outputs:
        assert torch.equal(a.outputs[k], b.outputs[k]), k


def _noise_fn(seed: int):
    calls = []

    def fn(bx, by, bi):
        calls.append(bi.tolist())
        noise = SampleRNG(seed, bi).randn(bx.shape[1:])
        return {"s": (bx + noise).sum(1), "y2": by * 2}

    return fn, calls


def test_outputs_match_direct_computation_and_do_not_depend_on_batch_size():
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(23, 4, generator=g), torch.randint(3, (23,), generator=g)
    fn, _ = _noise_fn(5)
    direct = (x + SampleRNG(5, range(23)).randn((4,))).sum(1)
    results = [run_evaluation(fn, (x, y), batch_size=bs, seed=5, progress=False) for bs in (1, 4, 23, 100)]
    for r in results:
        assert torch.equal(r["s"], direct)
        assert torch.equal(r["y2"], y * 2)
        assert torch.equal(r.indices, torch.arange(23))
    sub = run_evaluation(fn, {"x": x, "y": y}, indices=[7, 3, 11], batch_size=2, progress=False)
    assert torch.equal(sub["s"], direct[[7, 3, 11]])


def test_resume_skips_finished_batches(tmp_path: Path):
    x, y = torch.rand(10, 3), torch.arange(10) % 3
    fn, calls = _noise_fn(0)
    full = run_evaluation(fn, (x, y), state_dir=tmp_path / "a", batch_size=3, progress=False)
    assert len(calls) == 4
    # drop two batch files, as if the run had been killed before writing them
    (tmp_path / "a" / "batch_000001.npz").unlink()
    (tmp_path / "a" / "batch_000003.npz").unlink()
    calls.clear()
    again = run_evaluation(fn, (x, y), state_dir=tmp_path / "a", batch_size=3, resume=True, progress=False)
    assert calls == [[3, 4, 5], [9]]
    _equal(full, again)
    saved = EvaluationResult.load(tmp_path / "a" / "result.npz")
    _equal(full, saved)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"seed": 1}, "seed"),
        ({"batch_size": 4}, "batch_size"),
        ({"config": {"attack": "pgd", "eps": 0.2}}, "config.eps"),
        ({"indices": [0, 1, 2, 3, 4, 5, 6, 7]}, "indices_hash"),
        ({"model": torch.nn.Linear(3, 2)}, "model_hash"),
    ],
)
def test_resume_refuses_state_of_another_run(tmp_path: Path, change: dict, field: str):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 3)
    x, y = torch.rand(9, 3), torch.arange(9) % 3
    fn, _ = _noise_fn(0)
    base = {"seed": 0, "batch_size": 3, "config": {"attack": "pgd", "eps": 0.1}, "model": model}
    run_evaluation(fn, (x, y), state_dir=tmp_path, progress=False, **base)
    with pytest.raises(ConfigError, match=f"holds an evaluation with other settings(.|\n)*{field}"):
        run_evaluation(fn, (x, y), state_dir=tmp_path, progress=False, resume=True, **{**base, **change})
    # the original settings still resume (and recompute nothing)
    run_evaluation(fn, (x, y), state_dir=tmp_path, progress=False, resume=True, **base)


def test_existing_state_needs_resume_or_overwrite(tmp_path: Path):
    x = torch.rand(4, 2)
    fn = lambda bx, by, bi: {"v": bx.sum(1)}  # noqa: E731
    run_evaluation(fn, x, state_dir=tmp_path, batch_size=2, progress=False)
    with pytest.raises(ConfigError, match="already holds an evaluation; pass resume=True"):
        run_evaluation(fn, x, state_dir=tmp_path, batch_size=2, progress=False)
    r = run_evaluation(lambda bx, by, bi: {"v": -bx.sum(1)}, x, state_dir=tmp_path, batch_size=2,
                       overwrite=True, progress=False)
    assert torch.equal(r["v"], -x.sum(1))


def test_full_disk_gives_clear_error_and_keeps_earlier_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    x, y = torch.rand(12, 3), torch.arange(12) % 3
    fn, _ = _noise_fn(3)
    reference = run_evaluation(fn, (x, y), batch_size=3, seed=3, progress=False)
    real_write = runner_mod.atomic_write_bytes
    writes = []

    def full_disk(path, data):
        if len(writes) >= 2:  # two batches fit, then the disk is full (as the real writer says it)
            raise StorageError(f"could not write {path}", errno.ENOSPC) from OSError(
                errno.ENOSPC, "No space left on device", str(path))
        writes.append(path)
        real_write(path, data)

    monkeypatch.setattr(runner_mod, "atomic_write_bytes", full_disk)
    with pytest.raises(StorageError, match="no space left on device(.|\n)*2 batch.*kept intact.*resume=True"):
        run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, seed=3, progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["batch_000000.npz", "batch_000001.npz", "manifest.json"]  # no temp file left behind
    monkeypatch.setattr(runner_mod, "atomic_write_bytes", real_write)
    resumed = run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, seed=3, resume=True, progress=False)
    _equal(reference, resumed)


def test_bad_function_outputs_and_empty_data():
    x = torch.rand(4, 2)
    with pytest.raises(ConfigError, match="one row per sample"):
        run_evaluation(lambda bx, by, bi: {"v": bx.sum()}, x, progress=False)
    with pytest.raises(ConfigError, match="dict of per-sample tensors"):
        run_evaluation(lambda bx, by, bi: [1, 2], x, progress=False)
    with pytest.raises(InputError, match="dataset is empty"):
        run_evaluation(lambda bx, by, bi: {"v": bx}, torch.empty(0, 2), progress=False)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        run_evaluation(lambda bx, by, bi: {"v": bx}, x, batch_size=0, progress=False)


def test_model_hash_follows_weights():
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert model_hash(a) == model_hash(b)
    assert model_hash(Classifier(a)) == model_hash(Classifier(b))
    assert model_hash(Classifier(a)) != model_hash(Classifier(a, bounds=(-1, 1)))  # bounds change results
    with torch.no_grad():
        b.bias[0] += 1e-7
    assert model_hash(a) != model_hash(b)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path, worker_lib: Path):
    lib = _lib(worker_lib)
    clf, x, y = lib.make_problem()
    steps, seed, bs = 10, 7, 4  # 24 batches
    reference = run_evaluation(lib.make_fn(clf, steps, seed), (x, y), batch_size=bs, seed=seed, progress=False)
    state = tmp_path / "state"
    script = textwrap.dedent(
        f"""
        import runner_worker_lib as lib
        from robustlens.runner import run_evaluation
        clf, x, y = lib.make_problem()
        run_evaluation(lib.make_fn(clf, {steps}, {seed}, delay=0.15), (x, y), state_dir={str(state)!r},
                       batch_size={bs}, seed={seed}, model=clf, config={{"steps": {steps}}}, progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(worker_lib))
    deadline = time.time() + 50
    try:
        while time.time() < deadline:
            if state.is_dir() and len(list(state.glob("batch_*.npz"))) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"the worker exited early with code {proc.returncode}")
            time.sleep(0.02)
        # while the worker runs, its state folder is refused to a second run (which touches nothing)
        with pytest.raises(ConfigError, match=f"is in use by another evaluation \\(pid {proc.pid} on "):
            run_evaluation(lib.make_fn(clf, steps, seed), (x, y), state_dir=state, batch_size=bs, seed=seed,
                           model=clf, config={"steps": steps}, resume=True, progress=False)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    finished = len(list(state.glob("batch_*.npz")))
    assert 3 <= finished < 24 and not (state / "result.npz").exists()
    # the kernel dropped the killed worker's lock: resuming needs no cleanup and gives the uninterrupted result
    resumed = run_evaluation(lib.make_fn(clf, steps, seed), (x, y), state_dir=state, batch_size=bs, seed=seed,
                             model=clf, config={"steps": steps}, resume=True, progress=False)
    _equal(reference, resumed)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_torchrun_two_gloo_ranks_equal_one_process(tmp_path: Path, worker_lib: Path):
    lib = _lib(worker_lib)
    clf, x, y = lib.make_problem(n=30)
    steps, seed = 3, 11
    single = run_evaluation(lib.make_fn(clf, steps, seed), (x, y), batch_size=4, seed=seed, progress=False)
    script = tmp_path / "dist_worker.py"
    script.write_text(textwrap.dedent(
        f"""
        import json, torch, torch.distributed as dist
        import runner_worker_lib as lib
        from robustlens.runner import run_evaluation
        dist.init_process_group("gloo")
        clf, x, y = lib.make_problem(n=30)
        fn = lib.make_fn(clf, {steps}, {seed})
        calls = []
        def counted(bx, by, bi):
            calls.append(bi.tolist())
            return fn(bx, by, bi)
        on_disk = run_evaluation(counted, (x, y), state_dir={str(tmp_path / 'state')!r}, batch_size=4,
                                 seed={seed}, progress=False)
        in_memory = run_evaluation(fn, (x, y), batch_size=4, seed={seed}, progress=False)
        rank = dist.get_rank()
        try:  # rank 0 decides on the state folder; every rank gets its refusal (none waits at a barrier)
            run_evaluation(fn, (x, y), state_dir={str(tmp_path / 'state')!r}, batch_size=4, seed={seed} + 1,
                           resume=True, progress=False)
            refused = ""
        except Exception as e:
            refused = type(e).__name__ + ": " + str(e)
        open({str(tmp_path)!r} + f"/refused{{rank}}.txt", "w").write(refused)
        torch.save({{"disk": on_disk.outputs, "mem": in_memory.outputs, "idx": on_disk.indices}},
                   {str(tmp_path)!r} + f"/rank{{rank}}.pt")
        open({str(tmp_path)!r} + f"/calls{{rank}}.json", "w").write(json.dumps(calls))
        dist.destroy_process_group()
        """
    ))
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    out = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(script)], env=_env(worker_lib),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    calls = [json.loads((tmp_path / f"calls{r}.json").read_text()) for r in (0, 1)]
    flat0 = {i for b in calls[0] for i in b}
    flat1 = {i for b in calls[1] for i in b}
    assert flat0.isdisjoint(flat1) and flat0 | flat1 == set(range(30))  # disjoint shards covering the data
    for r in (0, 1):
        refused = (tmp_path / f"refused{r}.txt").read_text()
        assert refused.startswith("ConfigError:") and "seed: 11 recorded, 12 now" in refused, refused
        got = torch.load(tmp_path / f"rank{r}.pt")
        assert torch.equal(got["idx"], single.indices)
        for key in ("disk", "mem"):
            for k, v in single.outputs.items():
                assert torch.equal(got[key][k], v), (r, key, k)


# ---------------------------------------------------------------------------------------------- damaged state
def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x08]) + data[at + 1:]


def _damage(kind: str, path: Path, other: Path) -> None:
    import io as _io

    import numpy as np

    raw = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00not a zip at all" * 10)
    elif kind == "bit-flip-data":
        path.write_bytes(_flip(raw, raw.index(b"\x93NUMPY", raw.index(b"s.npy")) + 130))
    elif kind == "bit-flip-name":  # an output's name in the zip directory: the arrays read fine, the key is wrong
        at = raw.rindex(b"s.npy")
        path.write_bytes(raw[:at] + b"t" + raw[at + 1:])
    elif kind == "other-batch":
        shutil.copyfile(other, path)
    elif kind in ("no-digest", "tampered"):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if kind == "no-digest":  # a batch file from an earlier version, or written by hand
            del arrays["__digest__"]
        else:  # a valid archive whose values no longer match the digest written with them
            arrays["s"] = arrays["s"] + 1
        buf = _io.BytesIO()
        np.savez(buf, **arrays)
        path.write_bytes(buf.getvalue())
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage", "bit-flip-data", "bit-flip-name", "other-batch",
                                  "no-digest", "tampered"])
def test_a_damaged_batch_file_is_recomputed_with_a_warning(tmp_path: Path, kind: str) -> None:
    from robustlens.errors import RobustLensWarning

    x, y = torch.rand(10, 3), torch.arange(10) % 3
    fn, calls = _noise_fn(0)
    full = run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, progress=False)
    _damage(kind, tmp_path / "batch_000001.npz", tmp_path / "batch_000002.npz")
    calls.clear()
    with pytest.warns(RobustLensWarning, match="batch_000001.npz is damaged or does not match its batch"):
        again = run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, resume=True, progress=False)
    assert calls == [[3, 4, 5]]  # only the damaged batch is recomputed
    _equal(full, again)


def test_a_damaged_manifest_is_refused_with_what_to_do(tmp_path: Path) -> None:
    x = torch.rand(4, 2)
    fn = lambda bx, by, bi: {"v": bx.sum(1)}  # noqa: E731
    run_evaluation(fn, x, state_dir=tmp_path, batch_size=2, progress=False)
    (tmp_path / "manifest.json").write_text('{"fingerprint": ')
    with pytest.raises(ConfigError, match="manifest.json is unreadable or not a robustlens manifest.*overwrite=True"):
        run_evaluation(fn, x, state_dir=tmp_path, batch_size=2, resume=True, progress=False)
    assert torch.equal(run_evaluation(fn, x, state_dir=tmp_path, batch_size=2, overwrite=True, progress=False)["v"],
                       x.sum(1))


def test_nan_in_the_config_resumes_and_a_changed_nan_is_refused(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    x, y = torch.rand(6, 3), torch.arange(6) % 3
    fn, calls = _noise_fn(0)
    config = {"eps": nan, "grid": torch.tensor([nan, 1.0, inf]), "nested": {"a": [nan, {"b": -inf}], "t": (nan,)}}
    first = run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, config=config, progress=False)
    calls.clear()
    again = run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, resume=True, progress=False,
                           config={"eps": float("nan"), "grid": torch.tensor([nan, 1.0, inf]),
                                   "nested": {"t": [nan], "a": [nan, {"b": -inf}]}})
    assert calls == [] and first.fingerprint == again.fingerprint  # NaN matched NaN: nothing was recomputed
    _equal(first, again)
    assert json.loads((tmp_path / "manifest.json").read_text())["fingerprint"]["config"]["grid"] == ["nan", 1.0,
                                                                                                     "inf"]
    changed = {**config, "nested": {"a": [nan, {"b": 0.5}], "t": (nan,)}}
    with pytest.raises(ConfigError, match='holds an evaluation with other settings(.|\n)*config.nested.a: \\["nan", '
                       '\\{"b": "-inf"\\}\\] recorded'):
        run_evaluation(fn, (x, y), state_dir=tmp_path, batch_size=3, resume=True, config=changed, progress=False)


def test_a_state_dir_in_use_in_this_process_is_refused(tmp_path: Path) -> None:
    x = torch.rand(4, 2)
    inner_error = []

    def fn(bx, by, bi):
        try:
            run_evaluation(lambda a, b, c: {"v": a.sum(1)}, x, state_dir=tmp_path, resume=True, progress=False)
        except ConfigError as e:
            inner_error.append(str(e))
        return {"v": bx.sum(1)}

    run_evaluation(fn, x, state_dir=tmp_path, batch_size=2, progress=False)
    assert inner_error and all("already in use by an evaluation in this process" in e for e in inner_error)
    assert not (tmp_path / ".robustlens.lock").exists()  # released and removed at the end
