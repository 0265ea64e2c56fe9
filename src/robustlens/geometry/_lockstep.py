"""Run several iterative solvers (one per thread) whose matrix-vector requests are served as one batched call.

ARPACK (:func:`scipy.sparse.linalg.eigsh`) asks for one matrix-vector product at a time through a
:class:`~scipy.sparse.linalg.LinearOperator`. With one solver per sample in its own thread, :class:`Lockstep`
waits until every live solver has posted its request, then answers them all with a single ``batch_fn`` call (for
the Hessian, one ``vmap``-ed Hessian-vector product), so a batch of samples costs one batched call per Lanczos
step rather than one per sample. :func:`run_lockstep` owns the threads and re-raises a solver's error in the
calling thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

BatchFn = Callable[[list[int], np.ndarray], np.ndarray]
"""``batch_fn(indices, vectors)``: ``vectors`` of shape ``(m, D)``, one row per requesting solver, in the order of
``indices``; returns the ``(m, D)`` products."""


class Lockstep:
    """Serve the matrix-vector requests of several solvers (one per thread) as one batched call."""

    def __init__(self, n: int, batch_fn: BatchFn) -> None:
        self.cond = threading.Condition()
        self.pending: dict[int, np.ndarray] = {}
        self.results: dict[int, np.ndarray] = {}
        self.alive = n
        self.batch_fn = batch_fn
        self.calls = 0
        self.vectors = 0
        self.error: BaseException | None = None

    def matvec(self, i: int, v: np.ndarray) -> np.ndarray:
        """Called by solver ``i``: post ``v`` and wait for its product."""
        with self.cond:
            if self.error is not None:
                raise RuntimeError("another solver failed") from self.error
            self.pending[i] = np.asarray(v, dtype=np.float64).reshape(-1)
            self.cond.notify_all()
            while i not in self.results:
                if self.error is not None:
                    raise RuntimeError("the batched matrix-vector product failed") from self.error
                self.cond.wait()
            return self.results.pop(i)

    def done(self) -> None:
        """Called by a solver when it finishes (successfully or not)."""
        with self.cond:
            self.alive -= 1
            self.cond.notify_all()

    def serve(self, bar: Any = None) -> None:
        """Answer batches of requests until every solver is done (run in the calling thread)."""
        while True:
            with self.cond:
                while self.alive > 0 and len(self.pending) < self.alive:
                    self.cond.wait()
                if self.alive == 0 and not self.pending:
                    return
                batch = dict(self.pending)
                self.pending.clear()
            idx = sorted(batch)
            try:
                out = self.batch_fn(idx, np.stack([batch[i] for i in idx]))
            except BaseException as e:  # wake the solvers, then re-raise here
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
                raise
            self.calls += 1
            self.vectors += len(idx)
            if bar is not None:
                bar.update(1)
            with self.cond:
                for j, i in enumerate(idx):
                    self.results[i] = out[j]
                self.cond.notify_all()


def run_lockstep(
    n: int,
    batch_fn: BatchFn,
    solve: Callable[[int, Callable[[np.ndarray], np.ndarray]], Any],
    bar: Any = None,
) -> tuple[list[Any], int]:
    """Run ``solve(j, matvec)`` for ``j < n``, each in its own thread, with ``matvec`` served by ``batch_fn``.

    Returns the ``n`` answers in order and the number of vectors multiplied. The first error of a solver (or of
    ``batch_fn``) is raised here, after every thread has stopped.
    """
    lock = Lockstep(n, batch_fn)
    answers: dict[int, Any] = {}
    errors: list[BaseException] = []

    def run(j: int) -> None:
        try:
            answers[j] = solve(j, lambda v: lock.matvec(j, v))
        except BaseException as e:  # reported in the calling thread
            errors.append(e)
        finally:
            lock.done()

    threads = [threading.Thread(target=run, args=(j,), daemon=True) for j in range(n)]
    for t in threads:
        t.start()
    try:
        lock.serve(bar)
    finally:
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return [answers[j] for j in range(n)], lock.vectors


__all__ = ["BatchFn", "Lockstep", "run_lockstep"]
