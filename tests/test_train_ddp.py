"""The training loop under ``torchrun --nproc_per_node=2`` with the gloo backend on CPU, end to end.

tests/ddp_train_script.py trains four objectives (standard, FGSM-RS, TRADES with two forward passes of the wrapped
model per step, GradAlign with double back-propagation) once as one process and once as two processes. The global
batch of the two-process run holds exactly the samples of the one-process batch (the ``DistributedSampler``
interleaves one permutation), and the objectives' random draws are keyed by dataset index, so DistributedDataParallel
must reproduce the one-process weights up to floating-point summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ddp_train_script.py")
N = 240


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


CLI = ["-m", "robustlens", "train", "--model", "mlp", "--data", "digits", "--limit", "240", "--epochs", "3", "--lr",
       "0.5", "--batch-size", "48", "--no-progress"]


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    one = tmp_path_factory.mktemp("one")
    two = tmp_path_factory.mktemp("two")
    logs = tmp_path_factory.mktemp("logs")
    cli1, cli2 = tmp_path_factory.mktemp("cli1"), tmp_path_factory.mktemp("cli2")
    # start-up (importing torch) dominates: the runs go side by side
    procs = {
        # --redirects 3 --log-dir: each rank's stdout/stderr in its own file, to check who logs
        "api-torchrun": subprocess.Popen(_torchrun("--log-dir", str(logs), "--redirects", "3", str(SCRIPT), str(two)),
                                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        "cli-torchrun": subprocess.Popen(_torchrun(*CLI, "--out", str(cli2)), env=_env(),
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        "cli-one": subprocess.Popen([sys.executable, *CLI, "--out", str(cli1)], env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    }
    # the one-process API run in this process; the script's write logging is undone afterwards
    import robustlens.train.callbacks as callbacks_mod
    import robustlens.train.trainer as trainer_mod

    sys.path.insert(0, str(SCRIPT.parent))
    import ddp_train_script

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "save_checkpoint", trainer_mod.save_checkpoint)
        mp.setattr(callbacks_mod, "save_checkpoint", callbacks_mod.save_checkpoint)
        mp.setattr(trainer_mod.TrainingHistory, "save", trainer_mod.TrainingHistory.save)
        mp.setattr(ddp_train_script, "WRITES", [])
        mp.delenv("WORLD_SIZE", raising=False)
        mp.delenv("RANK", raising=False)
        threads = torch.get_num_threads()
        try:
            ddp_train_script.main(one)
        finally:
            torch.set_num_threads(threads)
    out = {k: p.communicate(timeout=150)[0] for k, p in procs.items()}
    for k, p in procs.items():
        assert p.returncode == 0, (k, out[k][-3000:])
    (cli2 / "stdout.txt").write_text(out["cli-torchrun"])
    return one, two, logs, cli1, cli2


def _report(d: Path, rank: int) -> dict:
    return json.loads((d / f"report-rank{rank}.json").read_text())


TAGS = ["standard", "fgsm-rs", "trades", "gradalign"]


def test_each_sample_once_per_epoch_across_ranks(runs) -> None:  # noqa: ANN001
    one, two, *_ = runs
    r0, r1 = _report(two, 0), _report(two, 1)
    assert r0["world_size"] == 2 and _report(one, 0)["world_size"] == 1
    for tag in TAGS:
        for epoch, idx0 in r0["runs"][tag]["seen"].items():
            idx1 = r1["runs"][tag]["seen"][epoch]
            assert len(idx0) == len(idx1) == N // 2
            assert sorted(idx0 + idx1) == list(range(N))  # a partition: every sample once, none twice
        assert r0["runs"][tag]["samples"] == [N] * len(r0["runs"][tag]["seen"])  # counts summed over ranks


def test_checkpoints_and_histories_written_by_rank_zero_only(runs) -> None:  # noqa: ANN001
    one, two, logs, *_ = runs
    w0, w1 = _report(two, 0)["writes"], _report(two, 1)["writes"]
    assert w1 == []
    assert w0 and all(w.startswith("0:") for w in w0)
    assert w0 == _report(one, 0)["writes"]  # the same files as one process, once each
    for tag in TAGS:
        assert (two / tag / "checkpoint.pt").is_file() and (two / tag / "history.json").is_file()
    assert (two / "standard" / "best_robust.pt").is_file()
    ckpt = torch.load(two / "standard" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["fingerprint"]["world_size"] == 2
    # the progress bar (the run's log) is printed by rank 0 only
    err = {r: "".join(p.read_text() for p in logs.rglob(f"{r}/stderr.log")) for r in (0, 1)}
    assert "epoch 1/3 [standard]" in err[0]
    assert "epoch 1/3" not in err[1]


def test_two_processes_reproduce_one(runs) -> None:  # noqa: ANN001
    one, two, *_ = runs
    for tag in TAGS:
        w_one = torch.load(one / f"weights-{tag}-rank0.pt", weights_only=True)
        w0 = torch.load(two / f"weights-{tag}-rank0.pt", weights_only=True)
        w1 = torch.load(two / f"weights-{tag}-rank1.pt", weights_only=True)
        for k in w_one:
            assert torch.equal(w0[k], w1[k]), (tag, k)  # DDP keeps the replicas identical
            # GradAlign's uniform noise is a per-step batched draw keyed by rank, so it differs slightly
            atol = 1e-3 if tag == "gradalign" else 1e-5
            assert torch.allclose(w0[k], w_one[k], atol=atol), (tag, k, float((w0[k] - w_one[k]).abs().max()))
        a_one = _report(one, 0)["runs"][tag]["accuracy"]
        a_two = _report(two, 0)["runs"][tag]["accuracy"]
        assert abs(a_one - a_two) <= 0.02, (tag, a_one, a_two)
    # resuming after epoch 1 gives the uninterrupted weights, with dropout, on every rank
    for d, ranks in ((one, (0,)), (two, (0, 1))):
        for r in ranks:
            full = torch.load(d / f"weights-dropout-full-rank{r}.pt", weights_only=True)
            resumed = torch.load(d / f"weights-dropout-resumed-rank{r}.pt", weights_only=True)
            assert all(torch.equal(full[k], resumed[k]) for k in full), (d.name, r)
    # the runs learnt something, so matching accuracies mean something
    assert _report(two, 0)["runs"]["standard"]["accuracy"] > 0.85
    assert _report(two, 0)["runs"]["fgsm-rs"]["accuracy"] > 0.75


def test_cli_under_torchrun(runs) -> None:  # noqa: ANN001
    """``torchrun --nproc_per_node=2 -m robustlens train``: one set of outputs and log lines, the same result as one
    process."""
    *_, cli1, cli2 = runs
    s1 = json.loads((cli1 / "summary.json").read_text())["data"]
    s2 = json.loads((cli2 / "summary.json").read_text())["data"]
    assert s1["world_size"] == 1 and s2["world_size"] == 2
    assert abs(s1["eval_accuracy"] - s2["eval_accuracy"]) <= 0.02
    assert s2["eval_accuracy"] > 0.5  # it learnt (10 classes)
    hist = json.loads((cli2 / "history.json").read_text())["data"]
    assert [r["samples"] for r in hist["records"]] == [N] * 3
    assert {p.name for p in cli2.iterdir()} >= {"checkpoint.pt", "history.json", "model.safetensors", "summary.json"}
    log = (cli2 / "stdout.txt").read_text()
    assert log.count("epoch 1/3") == 1 and log.count("held-out accuracy") == 1  # rank 0 logs, once
