"""Training run used by tests/test_train_ddp.py, once as one process and once under
``torchrun --nproc_per_node=2`` (gloo on CPU), through the Python API (:func:`robustlens.train.fit`).

Each rank writes to OUT: the dataset indices it trained on per epoch, every checkpoint/history write it made, its
final weights and its test accuracy, so the test can compare data coverage, rank-0-only writes and the result of
one process with two.

    python tests/ddp_train_script.py OUT
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_train_script.py OUT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

import robustlens.train.callbacks as callbacks_mod
import robustlens.train.trainer as trainer_mod
from robustlens.train import FGSMRS, TRADES, GradAlign, Objective, RobustOverfittingTracker, Standard, fit

N, D, C = 240, 10, 3
WRITES: list[str] = []


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of three fixed Gaussian blobs in [0, 1]^D (the same tensors on every rank)."""
    centres = torch.rand(C, D, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % C
    x = (centres[y] + 0.3 * torch.randn(N, D, generator=g)).clamp(0, 1)
    return x, y


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 32), nn.Tanh(), nn.Linear(32, C))


def dropout_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 32), nn.Tanh(), nn.Dropout(0.5), nn.Linear(32, C))


class StopAfterFirst:
    def on_epoch_end(self, trainer, epoch, history) -> None:  # noqa: ANN001
        trainer.stop_training = True


class SeenIndices:
    """Records the dataset indices of every batch this rank trains on, per epoch."""

    def __init__(self) -> None:
        self.seen: dict[int, list[int]] = {}

    def on_batch_end(self, trainer, step_ctx, stats) -> None:  # noqa: ANN001
        self.seen.setdefault(step_ctx.epoch, []).extend(int(i) for i in step_ctx.indices)

    def on_epoch_end(self, trainer, epoch, history) -> None:  # noqa: ANN001
        pass


def _record_writes() -> None:
    """Log every checkpoint and history write (with the writing rank) before performing it."""
    rank = os.environ.get("RANK", "0")
    save = trainer_mod.save_checkpoint

    def logged_save(path, payload):  # noqa: ANN001, ANN202
        WRITES.append(f"{rank}:{Path(path).parent.name}/{Path(path).name}")
        return save(path, payload)

    trainer_mod.save_checkpoint = logged_save  # type: ignore[assignment]
    callbacks_mod.save_checkpoint = logged_save  # type: ignore[assignment]
    hist_save = trainer_mod.TrainingHistory.save

    def logged_hist_save(self, path, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        WRITES.append(f"{rank}:{Path(path).parent.name}/{Path(path).name}")
        return hist_save(self, path, *a, **k)

    trainer_mod.TrainingHistory.save = logged_hist_save  # type: ignore[method-assign]


def main(out: Path) -> None:
    torch.set_num_threads(1)
    _record_writes()
    rank = int(os.environ.get("RANK", "0"))
    x, y = data(0)
    xt, yt = data(1)
    report: dict = {"world_size": int(os.environ.get("WORLD_SIZE", "1")), "runs": {}}
    runs: dict[str, tuple[Objective, int]] = {
        "standard": (Standard(), 3),
        "fgsm-rs": (FGSMRS(0.1), 2),
        "trades": (TRADES(0.1, steps=2), 1),  # two forward passes of the wrapped model per step
        "gradalign": (GradAlign(0.1, lam=0.5), 1),  # double back-propagation through the wrapped model
    }
    for tag, (objective, epochs) in runs.items():
        m = model()
        seen = SeenIndices()
        callbacks: list = [seen]
        if tag == "standard":
            callbacks.append(RobustOverfittingTracker(xt, yt, eps=0.05, steps=3))
        hist = fit(m, (x, y), objective=objective, epochs=epochs, lr=0.1, batch_size=48, seed=3, eval_data=(xt, yt),
                   callbacks=callbacks, out_dir=out / tag, progress=True)
        m.eval()
        with torch.no_grad():
            acc = float((m(xt).argmax(1) == yt).float().mean())
        torch.save(m.state_dict(), out / f"weights-{tag}-rank{rank}.pt")
        report["runs"][tag] = {"seen": seen.seen, "accuracy": acc, "samples": [r.samples for r in hist.records],
                               "train_loss": hist.series("train.loss")}
    # dropout draws from the global generator: a run stopped after epoch 1 and resumed must give the weights of an
    # uninterrupted run on every rank (each rank restores its own generator state from the checkpoint)
    for tag, cbs in (("dropout-full", []), ("dropout-resumed", [StopAfterFirst()])):
        for resume in ((False,) if tag == "dropout-full" else (False, True)):
            m = dropout_model()
            if resume:
                cbs = []
            fit(m, (x, y), objective=Standard(), epochs=2, lr=0.1, batch_size=48, seed=3, callbacks=cbs,
                out_dir=out / tag, resume=resume, progress=False)
        torch.save(m.state_dict(), out / f"weights-{tag}-rank{rank}.pt")
    report["writes"] = WRITES
    (out / f"report-rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
