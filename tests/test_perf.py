"""The CPU allocator setting keeps freed buffers with the process: a freed activation-sized block stays in the heap
(glibc's ``mallinfo2``) instead of going back to the kernel, each setting checked in a fresh process.

The speed this buys is measured, not tested: BENCHMARKS.md, "Epoch time of each objective".
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

from robustlens.perf import ENV_VAR

PROBE = """
import ctypes, ctypes.util, sys, torch
from robustlens.perf import tune_cpu_allocator
applied = tune_cpu_allocator() if sys.argv[1] == "tuned" else False
libc = ctypes.CDLL(ctypes.util.find_library("c"))
if not hasattr(libc, "mallinfo2"):  # not glibc >= 2.33: nothing to read the heap with
    print(applied, -1)
    raise SystemExit
class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().arena
x = torch.empty(6_000_000)  # 24 MB: above glibc's default mmap threshold, below the tuned one
x.fill_(1.0)
del x
print(applied, libc.mallinfo2().arena - before)  # heap bytes kept after the free
"""


def _probe(mode: str, env: dict[str, str] | None = None) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}).stdout.split()
    return out[0] == "True", int(out[1])


def test_tuned_allocator_keeps_freed_blocks_in_the_heap():
    applied, kept_tuned = _probe("tuned")
    glibc = platform.libc_ver()[0] == "glibc"
    assert applied is glibc  # glibc accepts both settings; elsewhere the call reports that it changed nothing
    opted_out, kept_opted_out = _probe("tuned", {ENV_VAR: "default"})
    assert opted_out is False
    _, kept_default = _probe("default")
    if glibc and kept_tuned >= 0:
        # tuned: the 24 MB block came from the heap and stays there once freed (reused by the next pass without
        # page faults); by default it was mapped on its own and handed back to the kernel at the free
        assert kept_tuned >= 20_000_000, kept_tuned  # (less whatever free heap it could reuse)
        assert kept_default < 1_000_000 and kept_opted_out < 1_000_000, (kept_default, kept_opted_out)
    else:
        assert kept_tuned == kept_default  # nothing changed
