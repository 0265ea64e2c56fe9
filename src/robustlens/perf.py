"""Process-level performance settings for CPU runs.

PyTorch's CPU tensors come from ``malloc``. glibc hands blocks above its mmap threshold straight back to the
operating system when they are freed, and trims the top of the heap once more than its trim threshold is free. An
attack or a training step frees and re-allocates the same activation-sized buffers every pass, so under the defaults
each pass can page-fault its buffers in afresh (the kernel zeroes every new page): on the 2-core development machine
an adversarial-training epoch of a small CNN took 12-20% longer, and varied twice as much from run to run, than with
the thresholds raised (BENCHMARKS.md, "Epoch time of each objective").

:func:`tune_cpu_allocator` raises both thresholds so that freed blocks stay with the process. It changes the whole
process, so the library never calls it on its own: the ``robustlens`` command line does (set
``ROBUSTLENS_CPU_ALLOCATOR=default`` to keep glibc's settings), and so do the benchmarks; a script can call it
first thing. The price is memory: the process keeps its peak heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: The largest mmap threshold glibc accepts on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``): blocks below it come
#: from the heap, where freed memory is reused.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept before trimming.
TRIM_THRESHOLD = 1024 * 1024 * 1024
ENV_VAR = "ROBUSTLENS_CPU_ALLOCATOR"


def tune_cpu_allocator() -> bool:
    """Keep freed blocks of up to 32 MB, and up to 1 GiB of free heap, with the process (glibc only).

    Returns True when glibc accepted both settings; False (and nothing changed) on other C libraries, on other
    systems, or when ``ROBUSTLENS_CPU_ALLOCATOR=default``. Safe to call more than once.
    """
    if os.environ.get(ENV_VAR, "").lower() == "default":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt), or no C library to load
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return ok_mmap and ok_trim


OMP_ENV_VAR = "OMP_WAIT_POLICY"


def passive_openmp() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy; True when this call set it.

    OpenMP's threads spin between parallel regions by default. On a machine whose cores are busy with other work
    that spinning takes the cores the computation needs: the same ``robustlens attack`` ran about twice as fast with
    the passive policy at a load of 3 on 2 cores (BENCHMARKS.md, "OpenMP wait policy"). OpenMP reads the variable
    when torch loads it, so this must run before ``import torch``; the command line calls it first thing
    (``robustlens.cli``), the library never does.
    """
    if os.environ.get(OMP_ENV_VAR):
        return False
    os.environ[OMP_ENV_VAR] = "PASSIVE"
    return True


__all__ = ["OMP_ENV_VAR", "passive_openmp", "tune_cpu_allocator"]
