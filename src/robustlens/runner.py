"""The evaluation runner: one loop over a dataset that checkpoints, resumes and shards.

Long robustness evaluations (an attack on 10,000 test images, randomized-smoothing certification with 100,000
noise draws per image) run for hours. :func:`run_evaluation` makes them safe to interrupt:

- the data are processed in batches (with a tqdm bar); after each batch its per-sample results are written
  atomically (temporary file + rename, :func:`robustlens.files.atomic_write_bytes`) to ``state_dir``, with a digest
  of their content, so a truncated, bit-flipped or foreign batch file is recognised on resume and recomputed with a
  warning;
- ``resume=True`` skips the finished batches after checking that the run's *fingerprint* (model weights hash,
  the caller's configuration such as attack settings, the data and index hashes, the seed, the batch size) matches
  the one recorded in the state directory (:func:`robustlens.state.check_manifest`: NaN settings match themselves),
  and refuses with a :class:`~robustlens.errors.ConfigError` otherwise;
- a state directory in use by another live run (another process, or this one) is refused
  (:class:`robustlens.state.OutputLock`), so two runs never interleave their batches;
- under ``torch.distributed`` (e.g. launched by ``torchrun``) each rank takes a disjoint set of batches
  (batch ``b`` goes to rank ``b % world_size``) and rank 0 merges them in dataset order;
- the function receives each sample's *dataset index*, so per-sample random streams
  (:class:`robustlens.seeding.SampleRNG`, the ``indices=`` argument of attacks) make the merged result independent
  of the batch size, the number of shards and the resume point.

A write that fails (a full disk) raises :class:`StorageError` naming the folder and what to do; the batches written
before it are left intact and a later ``resume=True`` continues from them.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import distributed
from .classifier import Classifier
from .errors import ConfigError, InputError, RobustLensWarning, StorageError
from .files import atomic_write_bytes
from .results import Result
from .state import MANIFEST, OutputLock, check_manifest, model_hash, tensor_hash
from .state import canonical as _canonical

STATE_VERSION = 2  # 2: batch files carry a digest of their content
RESULT_FILE = "result.npz"  # one archive: large per-sample arrays stream into it
_BATCH_RE = re.compile(r"^batch_(\d{6})\.npz$")
_INDEX_KEY = "__indices__"
_DIGEST_KEY = "__digest__"

BatchFn = Callable[[Tensor, "Tensor | None", Tensor], "Mapping[str, Tensor] | Result"]


# ---------------------------------------------------------------------------------------------- data
def _as_tensors(data: Any) -> tuple[Tensor, Tensor | None]:
    """Accept ``(x, y)``, ``x`` alone, a dict with ``x``/``y``, an object with ``.x``/``.y`` or a map-style dataset."""
    x: Any
    y: Any = None
    if isinstance(data, Tensor):
        x = data
    elif isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data
    elif isinstance(data, Mapping) and "x" in data:
        x, y = data["x"], data.get("y")
    elif hasattr(data, "x"):
        x, y = data.x, getattr(data, "y", None)
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        if len(data) == 0:
            raise InputError("the dataset is empty: nothing to evaluate; check the split and any filters applied")
        items = [data[i] for i in range(len(data))]
        if isinstance(items[0], (tuple, list)):
            x = torch.stack([torch.as_tensor(it[0]) for it in items])
            y = torch.as_tensor([int(it[1]) for it in items])
        else:
            x = torch.stack([torch.as_tensor(it) for it in items])
    else:
        raise InputError(
            f"cannot read inputs from a {type(data).__name__}; pass (x, y) tensors, a dict with 'x' and 'y', "
            "an object with .x and .y, or a map-style dataset of (x, y) pairs"
        )
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if y is not None and not isinstance(y, Tensor):
        y = torch.as_tensor(y)
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputError("the dataset is empty: nothing to evaluate; check the split and any filters applied")
    if y is not None and (y.ndim == 0 or y.shape[0] != x.shape[0]):
        raise InputError(
            f"the dataset has {x.shape[0]} inputs but {y.shape[0] if y.ndim else 'a scalar'} labels; "
            "pass one label per input"
        )
    return x, y


# ---------------------------------------------------------------------------------------------- results
@dataclass
class EvaluationResult(Result):
    """Per-sample outputs of :func:`run_evaluation`, merged in dataset order.

    Attributes:
        outputs: each key the function returned, concatenated over batches (first dimension = samples).
        indices: the dataset index of each row.
        config: the caller's configuration.
        fingerprint: the full fingerprint the state directory was checked against (hashes, seed, batch size).
    """

    outputs: dict[str, Tensor]
    indices: Tensor
    config: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Tensor:
        return self.outputs[key]


def _per_sample(out: Mapping[str, Tensor] | Result, n: int) -> dict[str, Tensor]:
    """The per-sample tensors of a function's output: every tensor (field) whose first dimension is ``n``."""
    if isinstance(out, Result):
        items = [(f.name, getattr(out, f.name)) for f in dataclasses.fields(out)]
        found = {k: v for k, v in items if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == n}
        if not found:
            raise ConfigError(
                f"the evaluation function returned a {type(out).__name__} without per-sample tensors "
                f"(first dimension {n}); return a dict of per-sample tensors instead"
            )
        return {k: v.detach().cpu() for k, v in found.items()}
    if not isinstance(out, Mapping):
        raise ConfigError(
            f"the evaluation function must return a dict of per-sample tensors or a Result, got {type(out).__name__}"
        )
    clean: dict[str, Tensor] = {}
    for k, v in out.items():
        if not isinstance(k, str) or k.startswith("__"):
            raise ConfigError(f"output names must be strings not starting with '__', got {k!r}")
        t = torch.as_tensor(v)
        if t.ndim == 0 or t.shape[0] != n:
            raise ConfigError(
                f"output {k!r} has shape {tuple(t.shape)} but the batch has {n} samples; "
                "return one row per sample (first dimension = batch size)"
            )
        clean[k] = t.detach().cpu()
    return clean


def _digest(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """A digest of a batch's arrays (names, dtypes, shapes and bytes), stored in the batch file beside them."""
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint8).copy()


def _encode_batch(outputs: dict[str, Tensor], indices: Tensor) -> bytes:
    arrays: dict[str, np.ndarray] = {_INDEX_KEY: indices.numpy()}
    for k, v in outputs.items():
        if v.dtype == torch.bfloat16:
            v = v.float()
        arrays[k] = v.numpy()
    arrays[_DIGEST_KEY] = _digest(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def _read_batch(path: Path) -> tuple[dict[str, Tensor], Tensor]:
    """A batch file's outputs and indices; ``ValueError`` when it is damaged (its content does not match the digest
    written with it) or not a batch file."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    stored = arrays.pop(_DIGEST_KEY, None)
    if stored is None or _INDEX_KEY not in arrays or not np.array_equal(stored, _digest(arrays)):
        raise ValueError(f"{path.name} does not match the digest written with it")
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return {k: v for k, v in tensors.items() if k != _INDEX_KEY}, tensors[_INDEX_KEY]


def _load_finished(path: Path, expect: Tensor) -> bool:
    """Whether ``path`` holds a whole, undamaged batch of the indices ``expect``; warns before a recomputation."""
    if not path.exists():
        return False
    try:
        _, got = _read_batch(path)
        if torch.equal(got, expect):
            return True
        why = "it holds other samples"
    except Exception as e:  # noqa: BLE001 - a damaged file can fail in any layer (zip, zlib, npy header, digest)
        why = f"{type(e).__name__}: {str(e)[:120]}"
    warnings.warn(f"{path} is damaged or does not match its batch ({why}); recomputing it", RobustLensWarning,
                  stacklevel=3)
    return False


def _write(path: Path, data: bytes, done: int, state_dir: Path) -> None:
    try:
        atomic_write_bytes(path, data)
    except StorageError as e:
        what = "no space left on device" if e.errno == errno.ENOSPC else e.reason
        raise StorageError(
            f"could not write evaluation results to {path} ({what}). The {done} batch(es) finished before are "
            f"kept intact in {state_dir}: free some space (or choose another state_dir) and rerun with "
            "resume=True to continue", e.errno, e.reason
        ) from e


def _prepare_state(state_dir: Path, fingerprint: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Rank 0's checks of a state directory (see :func:`run_evaluation`); raises what the run must stop with."""
    existing = sorted(p for p in state_dir.glob("*") if _BATCH_RE.match(p.name)) if state_dir.is_dir() else []
    manifest = state_dir / MANIFEST
    if overwrite:
        for p in (*existing, manifest, state_dir / RESULT_FILE, state_dir / "result.json"):
            p.unlink(missing_ok=True)
        existing = []
    if existing and not manifest.exists():
        raise ConfigError(
            f"the state directory {state_dir} holds batch files but no {MANIFEST}; it was not written by "
            "run_evaluation or was damaged: choose an empty state_dir or pass overwrite=True"
        )
    try:
        check_manifest(state_dir, fingerprint, resume=resume, what="evaluation",
                       again="pass resume=True to continue it, overwrite=True to discard it, or choose another "
                       "state_dir",
                       fix="use the original settings, another state_dir, or overwrite=True to start afresh",
                       afresh="pass overwrite=True", extra={"state_version": STATE_VERSION})
    except StorageError as e:
        raise StorageError(f"could not write the manifest of {state_dir} ({e.reason}); choose a writable "
                           "state_dir", e.errno, e.reason) from e


def _open_state(stack: ExitStack, state_dir: Path, fingerprint: dict[str, Any], resume: bool, overwrite: bool
                ) -> None:
    """Lock and check the state directory on rank 0; every rank raises the same error if it is refused."""
    error: BaseException | None = None
    if distributed.rank() == 0:
        try:
            if state_dir.exists() and not state_dir.is_dir():
                raise ConfigError(f"state_dir {state_dir} exists and is not a folder; choose a folder path")
            try:
                state_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(f"cannot create the state directory {state_dir}: {e}; choose a writable "
                                   "folder") from e
            stack.enter_context(OutputLock(state_dir, "evaluation"))
            _prepare_state(state_dir, fingerprint, resume, overwrite)
        except (ConfigError, StorageError) as e:
            error = e
    error = distributed.broadcast_object(error)
    if error is not None:
        raise error


# ---------------------------------------------------------------------------------------------- runner
def run_evaluation(
    fn: BatchFn,
    data: Any,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    model: nn.Module | Classifier | None = None,
    indices: Tensor | Sequence[int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    desc: str = "evaluating",
) -> EvaluationResult:
    """Apply ``fn`` to a dataset batch by batch, checkpointing every batch; resumable and shardable.

    Args:
        fn: ``fn(batch_x, batch_y, batch_indices)`` returning a dict of per-sample tensors (first dimension the
            batch size) or a :class:`~robustlens.results.Result` whose per-sample tensor fields are kept.
            ``batch_indices`` are dataset indices: pass them to attacks (``indices=``) or
            :class:`~robustlens.seeding.SampleRNG` so that random draws do not depend on batching.
        data: ``(x, y)`` tensors, ``x`` alone, a dict or object with ``x``/``y``, or a map-style dataset.
        state_dir: folder for the per-batch checkpoints (``batch_NNNNNN.npz``), the ``manifest.json`` fingerprint
            and the merged ``result.npz`` (:meth:`EvaluationResult.load` reads it). ``None`` keeps everything in
            memory (no resume).
        batch_size: samples per batch (part of the fingerprint: batch files are only reusable with it).
        config: the settings that determine the results (attack name and parameters...), recorded and checked.
        seed: the evaluation's seed, recorded and checked (``fn`` should use it with the batch indices).
        model: the model (or Classifier) evaluated; its weights hash is recorded and checked.
        indices: the subset of dataset indices to evaluate (default: all), in the order given.
        resume: continue the evaluation recorded in ``state_dir``, skipping finished batches.
        overwrite: discard what ``state_dir`` holds and start afresh.
        progress: show a tqdm bar (rank 0 only).
        desc: the bar's label.

    Returns:
        An :class:`EvaluationResult` with every output concatenated in the order of ``indices`` (on every rank).

    Raises:
        ConfigError: a state directory from another evaluation, or an existing one without ``resume``.
        StorageError: writing a batch failed (e.g. a full disk); earlier batches stay intact.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    x, y = _as_tensors(data)
    n_total = x.shape[0]
    if indices is None:
        idx = torch.arange(n_total)
    else:
        idx = torch.as_tensor(indices).long().flatten()
        if idx.numel() == 0:
            raise InputError("indices is empty: nothing to evaluate")
        if int(idx.min()) < 0 or int(idx.max()) >= n_total:
            raise InputError(f"indices must lie in [0, {n_total}) for a dataset of {n_total} samples")
        if torch.unique(idx).numel() != idx.numel():
            raise InputError("indices contain duplicates; each sample can be evaluated once per run")
    n = idx.numel()
    fingerprint: dict[str, Any] = _canonical({
        "config": dict(config or {}),
        "seed": int(seed),
        "batch_size": int(batch_size),
        "num_samples": int(n),
        "indices_hash": tensor_hash(idx),
        "data_hash": tensor_hash(x[idx], None if y is None else y[idx]),
        "model_hash": None if model is None else model_hash(model),
    })
    sdir = Path(state_dir) if state_dir is not None else None
    with ExitStack() as held:
        if sdir is not None:
            _open_state(held, sdir, fingerprint, resume, overwrite)
        return _run(fn, x, y, idx, batch_size, sdir, config, fingerprint, progress and distributed.rank() == 0, desc)


def _run(fn: BatchFn, x: Tensor, y: Tensor | None, idx: Tensor, batch_size: int, sdir: Path | None,
         config: Mapping[str, Any] | None, fingerprint: dict[str, Any], progress: bool, desc: str
         ) -> EvaluationResult:
    from tqdm.auto import tqdm

    rank, world = distributed.rank(), distributed.world_size()
    num_batches = (idx.numel() + batch_size - 1) // batch_size
    mine = [b for b in range(num_batches) if b % world == rank]

    def batch(b: int) -> Tensor:
        return idx[b * batch_size:(b + 1) * batch_size]

    def batch_path(b: int) -> Path:
        assert sdir is not None
        return sdir / f"batch_{b:06d}.npz"

    todo = [b for b in mine if sdir is None or not _load_finished(batch_path(b), batch(b))]
    done_here: dict[int, tuple[dict[str, Tensor], Tensor]] = {}
    finished = len(mine) - len(todo)
    bar = tqdm(total=len(mine), initial=finished, desc=desc, unit="batch", disable=not progress)
    try:
        for b in todo:
            bi = batch(b)
            outs = _per_sample(fn(x[bi], None if y is None else y[bi], bi.clone()), bi.numel())
            if sdir is not None:
                _write(batch_path(b), _encode_batch(outs, bi), finished, sdir)
            else:
                done_here[b] = (outs, bi)
            finished += 1
            bar.update(1)
    finally:
        bar.close()

    # ---- merge (rank 0), then share the merged result
    if sdir is None:
        merged: dict[int, tuple[dict[str, Tensor], Tensor]] = {}
        for part in distributed.all_gather_object(done_here):
            merged.update(part)
        return _merge([merged[b] for b in range(num_batches)], dict(config or {}), fingerprint)
    distributed.barrier()
    result: EvaluationResult | None = None
    if rank == 0:
        result = _merge([_read_batch(batch_path(b)) for b in range(num_batches)], dict(config or {}), fingerprint)
        try:
            result.save(sdir / RESULT_FILE)
        except StorageError as e:
            raise StorageError(
                f"could not write the merged result to {sdir} ({e.reason}); the batch "
                "files are intact: free space and rerun with resume=True", e.errno, e.reason
            ) from e
    distributed.barrier()
    return result if result is not None else EvaluationResult.load(sdir / RESULT_FILE)


def _merge(
    parts: list[tuple[dict[str, Tensor], Tensor]], config: dict[str, Any], fingerprint: dict[str, Any]
) -> EvaluationResult:
    keys = list(parts[0][0])
    for outs, _ in parts:
        if list(outs) != keys:
            raise ConfigError(
                f"the evaluation function returned different outputs in different batches ({keys} vs "
                f"{list(outs)}); return the same keys for every batch"
            )
    outputs = {k: torch.cat([p[0][k] for p in parts]) for k in keys}
    indices = torch.cat([p[1] for p in parts])
    return EvaluationResult(outputs=outputs, indices=indices, config=_canonical(config), fingerprint=fingerprint)


__all__ = ["EvaluationResult", "StorageError", "model_hash", "run_evaluation", "tensor_hash"]
