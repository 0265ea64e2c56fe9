"""The corruptions against the peer ``imagecorruptions`` 1.1.2 (the ImageNet-C parameters it packages) on the same
32 x 32 CIFAR-10 test images: deterministic corruptions to 8-bit rounding (the peer truncates to uint8), JPEG within
the spread of an integer versus a floating-point DCT, random ones in distribution (mean and standard deviation of
the difference image). Skipped where the peer or the data is missing. The peer crashes on glass blur and gaussian
blur (scikit-image's removed ``multichannel``) and fog (``np.float_``), so those are checked in
tests/test_shift_corruptions.py against scipy instead."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from robustlens.shift import corrupt

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    ic = pytest.importorskip("imagecorruptions")

ROOT = Path(os.environ.get("ROBUSTLENS_SHARED_DATA", "/work/shared/data")) / "cifar10"
DETERMINISTIC = {"brightness": "brightness", "contrast": "contrast", "zoom-blur": "zoom_blur",
                 "defocus-blur": "defocus_blur", "saturate": "saturate", "pixelate": "pixelate"}
#: corruption: (peer name, tolerance on the mean of the difference, relative tolerance on its standard deviation)
RANDOM = {"gaussian-noise": ("gaussian_noise", 0.003, 0.03), "shot-noise": ("shot_noise", 0.006, 0.03),
          # the peer's impulse noise draws from an unseeded numpy Generator (scikit-image's random_noise): over 8 of
          # its runs the mean of the difference moved by up to 0.003 and its std by up to 3%
          "impulse-noise": ("impulse_noise", 0.006, 0.07), "speckle-noise": ("speckle_noise", 0.004, 0.03),
          "elastic": ("elastic_transform", 0.006, 0.08),
          "snow": ("snow", 0.03, 0.2)}


@pytest.fixture(scope="module")
def cifar() -> tuple[torch.Tensor, np.ndarray]:
    if not (ROOT / "cifar-10-batches-py").exists():
        pytest.skip(f"CIFAR-10 not found under {ROOT}")
    from robustlens.data import load_dataset

    x = load_dataset("cifar10", "test", root=ROOT).subset(16, seed=0).x
    u8 = np.round(x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255, u8


def peer(u8: np.ndarray, name: str, severity: int) -> np.ndarray:
    np.random.seed(severity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.stack([np.uint8(ic.corrupt(im, corruption_name=name, severity=severity)) for im in u8]) / 255.0


def ours(x: torch.Tensor, name: str, severity: int) -> np.ndarray:
    y = corrupt(x, name, severity, seed=severity, params="imagenet").permute(0, 2, 3, 1).double().numpy()
    return np.floor(y * 255 + 1e-6) / 255  # the peer's np.uint8 truncates


@pytest.mark.parametrize("name", list(DETERMINISTIC))
def test_deterministic_equal_the_peer(cifar: tuple[torch.Tensor, np.ndarray], name: str) -> None:
    x, u8 = cifar
    for s in (1, 3, 5):
        diff = np.abs(ours(x, name, s) - peer(u8, DETERMINISTIC[name], s)) * 255
        # one 8-bit level: float32 rounding on either side of a truncation
        assert diff.max() <= 1.0 + 1e-6, (name, s, diff.max())
        assert diff.mean() <= 0.5, (name, s, diff.mean())


def test_jpeg_near_the_peer(cifar: tuple[torch.Tensor, np.ndarray]) -> None:
    x, u8 = cifar
    for s in (1, 3, 5):
        diff = np.abs(ours(x, "jpeg", s) - peer(u8, "jpeg_compression", s)) * 255
        # libjpeg's integer DCT and ours differ by a level on some pixels and now and then flip the rounding of a
        # coarsely quantised coefficient, which moves its whole 8 x 8 block: measured mean 0.17-0.47 levels, 99th
        # percentile 1-9 levels, maximum 10-25 levels over severities 1-5
        assert diff.mean() <= 0.75, diff.mean()
        assert np.percentile(diff, 99) <= 10, np.percentile(diff, 99)


@pytest.mark.parametrize("name", list(RANDOM))
def test_random_match_the_peer_in_distribution(cifar: tuple[torch.Tensor, np.ndarray], name: str) -> None:
    x, u8 = cifar
    theirs, mean_tol, std_rel = RANDOM[name]
    for s in (1, 5):
        d_ours = ours(x, name, s) - u8 / 255
        d_peer = peer(u8, theirs, s) - u8 / 255
        assert abs(d_ours.mean() - d_peer.mean()) <= mean_tol, (s, d_ours.mean(), d_peer.mean())
        assert abs(d_ours.std() / d_peer.std() - 1) <= std_rel, (s, d_ours.std(), d_peer.std())


def test_frost_substitute_is_close_in_distribution(cifar: tuple[torch.Tensor, np.ndarray]) -> None:
    """Frost blends a procedural texture instead of the peer's photographs: the brightening it causes agrees with
    the peer's to within 0.06 and its spread to within 20% over 16 images at severities 1, 3, 5 (the peer picks one
    of five photographs per image, whose mean brightness ranges from 0.48 to 0.81: with 16 images the mean
    brightening itself varies by about 0.03 between seeds)."""
    x, u8 = cifar
    for s in (1, 3, 5):
        d_ours = ours(x, "frost", s) - u8 / 255
        d_peer = peer(u8, "frost", s) - u8 / 255
        assert abs(d_ours.mean() - d_peer.mean()) <= 0.06
        assert abs(d_ours.std() / d_peer.std() - 1) <= 0.2


@pytest.mark.parametrize("angle", [-45.0, -10.0, 0.0, 30.0, 45.0])
def test_motion_blur_kernel_equals_the_peer(cifar: tuple[torch.Tensor, np.ndarray], angle: float) -> None:
    """The motion blur at a fixed angle equals the peer's ``_motion_blur`` (the angle is the only randomness)."""
    from imagecorruptions.corruptions import _motion_blur

    from robustlens.shift.filters import motion_blur

    x, u8 = cifar
    for radius, sigma in ((10, 3), (20, 15)):
        ref = np.stack([_motion_blur(im.astype(np.float64), radius=radius, sigma=sigma, angle=angle) for im in u8[:4]])
        got = motion_blur(x[:4].double() * 255, radius, sigma, torch.full((4,), angle)).permute(0, 2, 3, 1).numpy()
        assert np.abs(got - ref).max() < 1e-3
