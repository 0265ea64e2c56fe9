"""The one training loop, :class:`Trainer` (built and run by :func:`robustlens.train.fit`).

Every training method in robustlens (standard training, the adversarial-training family of eq. (14), the
regularisers of Sec. III-B3, noise augmentation for smoothing, ACET of eq. (22)-(23)) is an :class:`Objective`
plugged into this loop; the loop itself owns the optimizer and schedule, the seeded data order, per-epoch
evaluation, callbacks, atomic checkpoints with exact resume, torch.distributed, AMP and channels_last.

Reproducibility:

- the data order of epoch ``e`` is a permutation drawn from a generator seeded with ``(seed, e)`` (through
  ``DistributedSampler``, also with one process), so it does not depend on what ran before;
- random draws inside objectives come from :class:`StepContext` (per-sample streams keyed by the dataset index, or a
  per-step generator), never from the global generator;
- the global RNG states (torch, CUDA, NumPy, Python) are saved in every checkpoint and restored on resume, so code
  that still draws from them (dropout) continues the same stream. Resuming after epoch ``k`` gives bit-identical
  final weights to an uninterrupted run on the same machine and device.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..checks import COUNT, NON_NEGATIVE, POSITIVE, PROBABILITY, Number, checked
from ..classifier import Classifier
from ..errors import ConfigError, InputError, RobustLensWarning
from ..results import _from_jsonable
from ..seeding import seed_everything, stable_hash
from ..state import canonical, diff
from . import distributed as ddp
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .contracts import Callback, Objective, StepContext
from .datasets import DataSpace, DataSpec, IndexedDataset, as_dataset, tensors_of
from .history import EpochRecord, TrainingHistory
from .warmup import EpsWarmup


def _to_float(v: Any) -> float:
    return float(v.detach()) if isinstance(v, Tensor) else float(v)


Schedule = Literal["cosine", "onecycle", "constant"]
OptimizerName = Literal["sgd", "adam"]


#: The rules of the loop's numeric settings, declared once for :class:`Trainer` and :func:`~robustlens.train.fit`
#: (and applied to the ``robustlens train`` options of the same names).
SETTINGS: dict[str, Number] = {
    "epochs": COUNT,
    "lr": POSITIVE,
    "momentum": PROBABILITY,
    "weight_decay": NON_NEGATIVE,
    "batch_size": COUNT,
    "eps_warmup": NON_NEGATIVE,
}


class Trainer:
    """The training loop. :func:`fit` builds one and calls :meth:`fit`; see :func:`fit` for the arguments.

    Attributes set during training that callbacks may read or change: ``model`` (the module trained, unwrapped),
    ``objective`` (may be replaced, e.g. by the catastrophic-overfitting detector), ``optimizer``, ``scheduler``,
    ``epoch``, ``stop_training`` / ``stop_reason``, ``dist`` (rank and world size), ``out_dir``, ``device``,
    ``bounds``, ``eval_data`` (tensors), ``classifier()`` (an eval-mode Classifier on the current model).
    """

    @checked(**SETTINGS, eval_batch_size=COUNT)
    def __init__(
        self,
        model: nn.Module | Classifier,
        *,
        objective: Objective | None = None,
        epochs: int = 1,
        optimizer: OptimizerName = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        schedule: Schedule = "cosine",
        weight_decay: float = 5e-4,
        batch_size: int = 128,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        out_dir: str | Path | None = None,
        resume: bool = False,
        device: str | torch.device | None = None,
        amp: bool = False,
        channels_last: bool = False,
        progress: bool = True,
        bounds: tuple[float, float] | None = None,
        attack_mode: Literal["train", "eval"] = "train",
        eval_batch_size: int = 512,
        eps_warmup: float = 0.0,
    ) -> None:
        if isinstance(model, Classifier):
            clf = model
            net: nn.Module = clf.model
            if clf.mean is not None or clf.std is not None:
                net = DataSpace(clf.model, clf.mean, clf.std)
            bounds = bounds or clf.bounds
        elif isinstance(model, nn.Module):
            net = model
        else:
            raise ConfigError(f"model must be an nn.Module or a Classifier, got {type(model).__name__}")
        if optimizer not in ("sgd", "adam"):
            raise ConfigError(f"unknown optimizer {optimizer!r}; use 'sgd' or 'adam'")
        if schedule not in ("cosine", "onecycle", "constant"):
            raise ConfigError(f"unknown schedule {schedule!r}; use 'cosine', 'onecycle' or 'constant'")
        if attack_mode not in ("train", "eval"):
            raise ConfigError(f"attack_mode must be 'train' or 'eval', got {attack_mode!r}")
        if eps_warmup > epochs:
            raise ConfigError(f"eps_warmup ({eps_warmup:g} epochs) is longer than the run ({epochs} epochs): the "
                              "model would never train at the full radius; use at most the number of epochs")
        if resume and out_dir is None:
            raise ConfigError("resume=True needs out_dir: the checkpoint to resume from lives there")
        if objective is None:
            from .objectives import Standard

            objective = Standard()
        if not isinstance(objective, Objective):
            raise ConfigError(
                f"objective must have a name and a loss(model, x, y, *, step_ctx) method, got {type(objective)}"
            )
        params = list(net.parameters())
        if not params:
            raise ConfigError("the model has no parameters to train")
        self.device = torch.device(device) if device is not None else params[0].device
        if (amp or channels_last) and self.device.type != "cuda":
            raise ConfigError(
                f"amp and channels_last are supported on CUDA only (device is {self.device}); drop them on CPU"
            )
        self.model = net.to(self.device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.objective: Objective = objective
        self.epochs = int(epochs)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.schedule = schedule
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.callbacks = list(callbacks)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.resume = resume
        self.amp = amp
        self.channels_last = channels_last
        self.progress = progress
        self.bounds = bounds or (0.0, 1.0)
        self.attack_mode = attack_mode
        self.eval_batch_size = int(eval_batch_size)
        self.eps_warmup = float(eps_warmup)
        self.warmup = EpsWarmup(0)
        self.stop_training = False
        self.stop_reason: str | None = None
        self.epoch = 0
        self.step = 0
        self.dist = ddp.DistInfo()
        self.eval_data: tuple[Tensor, Tensor] | None = None
        self.history = TrainingHistory()
        self.ddp_model: nn.Module = self.model

    # ------------------------------------------------------------------ public helpers
    def classifier(self, *, eval_mode: bool = True) -> Classifier:
        """A :class:`Classifier` on the current (unwrapped) model, in data space, for evaluation and attacks."""
        return Classifier(self.model, bounds=self.bounds, eval_mode=eval_mode, check_bounds=False,
                          batch_size=self.eval_batch_size)

    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def config(self) -> dict[str, Any]:
        obj_cfg = getattr(self.objective, "config", None)
        return {
            "objective": self.objective.name,
            "objective_config": obj_cfg() if callable(obj_cfg) else {},
            "epochs": self.epochs,
            "optimizer": self.optimizer_name,
            "lr": self.lr,
            "momentum": self.momentum,
            "schedule": self.schedule,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": self.dist.world_size,
            "amp": self.amp,
            "channels_last": self.channels_last,
            "attack_mode": self.attack_mode,
            "eps_warmup": self.eps_warmup,
            "eps_warmup_steps": self.warmup.steps,
            "device": str(self.device),
        }

    # ------------------------------------------------------------------ set-up
    def _build_optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def _build_scheduler(self, opt: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        if self.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
        if self.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(2, total_steps))
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)

    def _fingerprint(self) -> dict[str, Any]:
        cfg = self.config()
        return {k: cfg[k] for k in ("epochs", "optimizer", "lr", "schedule", "weight_decay", "batch_size", "seed",
                                    "world_size", "eps_warmup")}

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_payload(self, epoch: int, rng_ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        cb_states = {}
        for i, cb in enumerate(self.callbacks):
            sd = getattr(cb, "state_dict", None)
            if callable(sd):
                cb_states[f"{i}:{type(cb).__name__}"] = sd()
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state() if rng_ranks is None else rng_ranks[0],
            "history": self.history.to_dict(),
            "objective": self.objective.name,
            "fingerprint": self._fingerprint(),
            "callbacks": cb_states,
        }
        if rng_ranks is not None and len(rng_ranks) > 1:
            payload["rng_ranks"] = rng_ranks  # each rank resumes its own global generators (dropout masks differ)
        if self.scaler is not None:
            payload["scaler"] = self.scaler.state_dict()
        return payload

    def _restore(self, payload: dict[str, Any]) -> int:
        # the one fingerprint comparison of robustlens (state.canonical / state.diff: NaN matches itself)
        recorded = canonical({"eps_warmup": 0.0, **payload.get("fingerprint", {})})  # checkpoints before the warm-up
        mine = canonical(self._fingerprint())
        if recorded != mine:
            lines = "\n  ".join(diff(recorded, mine))
            raise ConfigError(f"cannot resume: the run's settings differ from the checkpoint's:\n  {lines}\nuse the "
                              "same settings, or a fresh out_dir")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and "scaler" in payload:
            self.scaler.load_state_dict(payload["scaler"])
        ranks = payload.get("rng_ranks")
        if isinstance(ranks, list) and len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])
        else:
            set_rng_state(payload["rng"])
        self.step = int(payload["step"])
        hist = _from_jsonable(payload["history"], {})
        if isinstance(hist, TrainingHistory):
            self.history = hist
        if payload.get("objective") != self.objective.name:
            self._restore_objective(str(payload.get("objective")))
        states = payload.get("callbacks", {})
        for i, cb in enumerate(self.callbacks):
            key = f"{i}:{type(cb).__name__}"
            load = getattr(cb, "load_state_dict", None)
            if key in states and callable(load):
                load(states[key])
        return int(payload["epoch"])

    def _restore_objective(self, name: str) -> None:
        for cb in self.callbacks:
            alt = getattr(cb, "switch_to", None)
            if alt is not None and getattr(alt, "name", None) == name:
                self.objective = alt
                return
        raise ConfigError(
            f"the checkpoint was trained with objective {name!r} at the end but this run uses "
            f"{self.objective.name!r}; resume with the same objective"
        )

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Clean accuracy and mean cross-entropy of the current model on the evaluation data (eval mode)."""
        if self.eval_data is None:
            return {}
        x, y = self.eval_data
        clf = self.classifier()
        logits = clf.logits(x.to(self.device), validate=False)
        y = y.to(logits.device)
        return {
            "accuracy": float((logits.argmax(1) == y).float().mean()),
            "loss": float(F.cross_entropy(logits.float(), y)),
        }

    # ------------------------------------------------------------------ the loop
    def fit(self, train_data: DataSpec, eval_data: DataSpec | None = None) -> TrainingHistory:
        """Train for ``epochs`` epochs (or until a callback stops) and return the :class:`TrainingHistory`."""
        train_ds = as_dataset(train_data, "train_data")
        if len(train_ds) == 0:  # type: ignore[arg-type]
            raise InputError("train_data is empty")
        if eval_data is not None:
            self.eval_data = tensors_of(as_dataset(eval_data, "eval_data"))
        self.dist = ddp.setup(self.device)
        try:
            return self._fit(train_ds)
        finally:
            ddp.teardown(self.dist)

    def _fit(self, train_ds: Dataset) -> TrainingHistory:
        info = self.dist
        if info.enabled and self.batch_size % info.world_size:
            raise ConfigError(
                f"batch_size {self.batch_size} is the global batch and must be divisible by the "
                f"{info.world_size} processes"
            )
        sampler: DistributedSampler = DistributedSampler(
            IndexedDataset(train_ds), num_replicas=info.world_size, rank=info.rank, shuffle=True,
            seed=stable_hash(self.seed, "order") % (2**31), drop_last=False,
        )
        loader = DataLoader(IndexedDataset(train_ds), batch_size=self.batch_size // info.world_size,
                            sampler=sampler, num_workers=0, drop_last=False)
        steps_per_epoch = len(loader)
        self.warmup = EpsWarmup(round(self.eps_warmup * steps_per_epoch))
        if info.enabled:
            kw: dict[str, Any] = {}
            if self.device.type == "cuda":
                kw["device_ids"] = [self.device.index or 0]
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, **kw)
        else:
            self.ddp_model = self.model
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler(self.optimizer, self.epochs * steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.history = TrainingHistory(config=self.config())
        start_epoch = 0
        ckpt = self.checkpoint_path()
        # the global generators (dropout, code outside robustlens) start from the seed, so two runs with one seed
        # give bit-identical weights; a resumed run then restores the states saved in its checkpoint
        seed_everything(stable_hash(self.seed, "global-rng", info.rank) % (2**63))
        if self.resume and ckpt is not None and ckpt.is_file():
            start_epoch = self._restore(load_checkpoint(ckpt, map_location=self.device)) + 1
        elif self.resume and info.is_main:
            warnings.warn(f"resume=True but no checkpoint at {ckpt}: training from scratch", RobustLensWarning,
                          stacklevel=3)
        for cb in self.callbacks:
            begin = getattr(cb, "on_train_begin", None)
            if callable(begin):
                begin(self)
        # the inner attacks of training keep TF32 on CUDA: their last iterate needs no exact decision
        attack_clf = Classifier(self.model, bounds=self.bounds, eval_mode=self.attack_mode == "eval",
                                check_bounds=False, device=self.device, allow_tf32=True)
        for epoch in range(start_epoch, self.epochs):
            if self.stop_training:
                break
            self.epoch = epoch
            sampler.set_epoch(epoch)
            record = self._train_epoch(loader, attack_clf, epoch)
            record.eval = self.evaluate()
            self.history.records.append(record)
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, self.history)
            if self.stop_training:
                self.history.stopped_early = True
                self.history.stop_reason = self.stop_reason
            if ckpt is not None:
                # every rank's global RNG state goes into the checkpoint (a collective, so on all ranks)
                rng_ranks = ddp.gather_objects(rng_state(), info)
                if info.is_main:
                    save_checkpoint(ckpt, self._checkpoint_payload(epoch, rng_ranks))
                    self.history.checkpoint = str(ckpt)
                ddp.barrier(info)
        for cb in self.callbacks:
            end = getattr(cb, "on_train_end", None)
            if callable(end):
                end(self, self.history)
        if self.out_dir is not None and info.is_main:
            self.history.save(self.out_dir / "history.json")
        return self.history

    def _train_epoch(self, loader: DataLoader, attack_clf: Classifier, epoch: int) -> EpochRecord:
        info = self.dist
        model = self.ddp_model
        model.train()
        # statistics are summed as float64 tensors on the device (the same arithmetic as Python floats) and read
        # back once per epoch: a float() per statistic and step would synchronise with the GPU every step
        sums: dict[str, Any] = {}
        n_seen = 0
        n_steps = 0
        t0 = time.perf_counter()
        bar = None
        it: Any = loader
        if self.progress and info.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(loader, desc=f"epoch {epoch + 1}/{self.epochs} [{self.objective.name}]", leave=False)
            it = bar
        for x, y, idx in it:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx = StepContext(epoch=epoch, step=self.step, indices=idx, seed=self.seed, clf=attack_clf,
                              rank=info.rank, trainer=self)
            objective, eps = self.warmup.objective_at(self.objective, self.step)
            with torch.autocast(device_type=self.device.type, enabled=self.amp):
                loss, stats = objective.loss(model, x, y, step_ctx=ctx)
            if eps is not None:
                stats = {**stats, "eps": eps}
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {float(loss)} at epoch {epoch}, step {self.step}; lower the "
                    "learning rate or check the data range"
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            b = x.shape[0]
            n_seen += b
            n_steps += 1
            stats = {"loss": loss.detach(), **stats}
            for k, v in stats.items():
                on_device = isinstance(v, Tensor) and v.device.type in ("cpu", "cuda")  # float64 there
                term = v.detach().to(torch.float64) * b if on_device else _to_float(v) * b
                sums[k] = sums.get(k, 0.0) + term
            if bar is not None and n_steps % 10 == 1:
                bar.set_postfix(loss=f"{_to_float(sums['loss']) / n_seen:.3f}")
            for cb in self.callbacks:
                hook = getattr(cb, "on_batch_end", None)
                if callable(hook):
                    hook(self, ctx, stats)
        if bar is not None:
            bar.close()
        keys = sorted(sums)
        values = [_to_float(sums[k]) for k in keys]  # waits for the device's queued work: then the time is right
        elapsed = time.perf_counter() - t0
        packed = torch.tensor(values + [float(n_seen)], dtype=torch.float64)
        packed = ddp.all_reduce_sum(packed, info)
        total = float(packed[-1])
        train = {k: float(packed[i]) / max(total, 1.0) for i, k in enumerate(keys)}
        return EpochRecord(epoch=epoch, lr=float(self.optimizer.param_groups[0]["lr"]), train=train,
                           samples=int(total), time_s=elapsed, objective=self.objective.name)


__all__ = ["OptimizerName", "Schedule", "Trainer"]
