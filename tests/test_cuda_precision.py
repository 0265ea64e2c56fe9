"""The TF32 guard of Classifier.analysis_mode: full FP32 on CUDA unless allow_tf32, flags restored on exit.

The flags are global torch settings, so the logic is checked here on any machine by giving the classifier a CUDA
device label (no kernel runs); benchmarks/cuda_check.py shows the effect on a real GPU.
"""

from __future__ import annotations

import torch
from torch import nn

from robustlens import Classifier


def _flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_tf32_is_off_during_cuda_analysis_and_restored_after() -> None:
    saved = _flags()
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
        clf = Classifier(nn.Linear(3, 2), bounds=(0, 1))
        clf.device = torch.device("cuda")
        with clf.analysis_mode():
            assert _flags() == (False, False)
            with clf.analysis_mode():  # nested entry keeps it off and restores the outer state
                assert _flags() == (False, False)
            assert _flags() == (False, False)
        assert _flags() == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_allow_tf32_and_cpu_leave_the_flags_alone() -> None:
    saved = _flags()
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
        fast = Classifier(nn.Linear(3, 2), bounds=(0, 1), allow_tf32=True)
        fast.device = torch.device("cuda")
        cpu = Classifier(nn.Linear(3, 2), bounds=(0, 1))
        for clf in (fast, cpu):
            with clf.analysis_mode():
                assert _flags() == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
