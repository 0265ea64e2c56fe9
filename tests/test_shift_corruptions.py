"""The common corruptions against closed forms and the reference primitives (scipy, Pillow): identity at severity
0, bounds and shapes at every size, seeds per sample independent of batching, formulas of the deterministic ones,
severity monotone in distortion where the benchmark's table is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlens import ConfigError, InputError
from robustlens.shift import CORRUPTIONS, benchmark_corruptions, corrupt
from robustlens.shift import filters as K
from robustlens.shift.corruptions import pil_resize_matrix, plasma_fractal
from robustlens.shift.jpeg import jpeg

ALL = list(CORRUPTIONS)
#: where the parameter table grows monotonically, so the distortion must too
MONOTONE = ["gaussian-noise", "shot-noise", "impulse-noise", "speckle-noise", "defocus-blur", "motion-blur",
            "zoom-blur", "gaussian-blur", "snow", "fog", "brightness", "contrast", "pixelate", "jpeg"]


def images(n: int = 3, c: int = 3, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, c, 1, 1, generator=g)
    return (0.6 * base + 0.4 * torch.rand(n, c, h, w, generator=g)).clamp(0, 1)


def test_registry_lists_the_benchmark() -> None:
    assert len(benchmark_corruptions()) == 15 and len(benchmark_corruptions(extra=True)) == 19
    assert benchmark_corruptions()[:3] == ["gaussian-noise", "shot-noise", "impulse-noise"]
    assert CORRUPTIONS.key("jpeg_compression") == "jpeg"
    with pytest.raises(ConfigError, match="choose one of"):
        corrupt(images(), "rain", 1)


@pytest.mark.parametrize("name", ALL)
def test_identity_bounds_shape_and_batch_independence(name: str) -> None:
    x = images(3, 3, 10, 9)
    assert torch.equal(corrupt(x, name, 0), x)
    for params in ("cifar", "imagenet"):
        y = corrupt(x, name, 5, seed=7, params=params)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert bool(torch.isfinite(y).all()) and float(y.min()) >= 0 and float(y.max()) <= 1
        one = corrupt(x[2:3], name, 5, seed=7, indices=[2], params=params)
        torch.testing.assert_close(one, y[2:3], rtol=0, atol=1e-6)
    for shape in ((2, 1, 28, 28), (2, 1, 4, 4), (1, 3, 5, 7)):
        z = corrupt(images(*shape), name, 3)
        assert z.shape == shape and float(z.min()) >= 0 and float(z.max()) <= 1


@pytest.mark.parametrize("name", [n for n in ALL if CORRUPTIONS.get(n).random])
def test_seeds(name: str) -> None:
    x = images()
    a, b = corrupt(x, name, 3, seed=1), corrupt(x, name, 3, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, corrupt(x, name, 3, seed=2))


@pytest.mark.parametrize("name", MONOTONE)
@pytest.mark.parametrize("params", ["cifar", "imagenet"])
def test_distortion_grows_with_severity(name: str, params: str) -> None:
    x = K.gaussian_blur(images(4, 3, 32, 32), 1.5)  # smooth images of the size both tables were written for
    x = (x - x.amin((1, 2, 3), keepdim=True)) / (x.amax((1, 2, 3), keepdim=True) - x.amin((1, 2, 3), keepdim=True))
    d = [float((corrupt(x, name, s, params=params) - x).pow(2).mean()) for s in range(6)]
    assert all(b >= a - 1e-7 for a, b in zip(d, d[1:], strict=False)), d
    assert d[5] > d[0]


def test_brightness_contrast_closed_forms() -> None:
    g = images(2, 1, 6, 6)
    torch.testing.assert_close(corrupt(g, "brightness", 4, params="imagenet"), (g + 0.4).clamp(0, 1))
    x = images(2, 3, 6, 6)
    m = x.mean((2, 3), keepdim=True)
    torch.testing.assert_close(corrupt(x, "contrast", 2, params="cifar"), ((x - m) * 0.5 + m).clamp(0, 1))
    y = corrupt(x, "brightness", 2, params="cifar")  # HSV value + 0.1, hue and saturation kept
    hx, hy = K.rgb_to_hsv(x), K.rgb_to_hsv(y)
    torch.testing.assert_close(hy[:, 2], (hx[:, 2] + 0.1).clamp(max=1), atol=1e-6, rtol=0)
    torch.testing.assert_close(hy[:, :2], hx[:, :2], atol=1e-5, rtol=0)


def test_hsv_round_trip() -> None:
    x = images(3, 3, 8, 8)
    torch.testing.assert_close(K.hsv_to_rgb(K.rgb_to_hsv(x)), x, atol=1e-6, rtol=0)


def test_noise_statistics_closed_form() -> None:
    x = torch.full((2, 3, 64, 64), 0.5)
    d = corrupt(x, "gaussian-noise", 3, params="cifar") - x  # N(0, 0.08^2), no clipping at 0.5 +- 5 sigma
    assert abs(float(d.mean())) < 0.002 and abs(float(d.std()) - 0.08) < 0.002
    imp = corrupt(x, "impulse-noise", 5, params="imagenet")  # s&p with amount 0.27
    assert abs(float((imp != x).float().mean()) - 0.27) < 0.01
    assert abs(float((imp == 1).float().mean()) - 0.135) < 0.01
    shot = corrupt(x, "shot-noise", 1, params="imagenet") * 60  # Poisson(30) / 60, never clipped in practice
    assert abs(float(shot.mean()) - 30) < 0.2 and abs(float(shot.var()) / 30 - 1) < 0.05


def test_gaussian_blur_equals_scipy() -> None:
    from scipy.ndimage import gaussian_filter

    x = images(2, 3, 9, 11)
    for sigma in (0.4, 1.0, 3.0):
        ref = np.stack([[gaussian_filter(c.double().numpy(), sigma, mode="nearest", truncate=4.0) for c in im]
                        for im in x])
        torch.testing.assert_close(K.gaussian_blur(x.double(), sigma), torch.from_numpy(ref), atol=1e-10, rtol=0)


def test_zoom_equals_scipy_and_padding_modes() -> None:
    from scipy.ndimage import zoom

    a = torch.rand(7, dtype=torch.float64)
    for n_out in (7, 8, 11):
        ref = zoom(a.numpy(), n_out / 7, order=1)
        assert len(ref) == n_out
        torch.testing.assert_close(K.zoom_matrix(7, n_out) @ a, torch.from_numpy(ref), atol=1e-12, rtol=0)
    v = torch.arange(4.0)
    for mode, npmode in (("reflect101", "reflect"), ("symmetric", "symmetric"), ("edge", "edge")):
        ref = np.pad(v.numpy(), 9, mode=npmode)  # wider than the axis: folds again
        assert K.pad_index(4, 9, 9, mode).tolist() == [int(t) for t in ref]


def test_pillow_box_resize_weights() -> None:
    from PIL import Image

    img = np.random.default_rng(0).random((13, 13)).astype(np.float32)
    for n_out in (12, 8, 4, 20):
        ref = np.asarray(Image.fromarray(img, mode="F").resize((n_out, n_out), Image.BOX))
        m = pil_resize_matrix(13, n_out, "box")
        ours = m @ torch.from_numpy(img).double() @ m.T
        torch.testing.assert_close(ours.float(), torch.from_numpy(ref.copy()), atol=1e-5, rtol=0)


def test_jpeg_quality_100_is_nearly_lossless() -> None:
    g = torch.round(images(2, 1, 16, 16) * 255) / 255
    assert float((jpeg(g, 100) - g).abs().max()) <= 1.01 / 255
    assert float((jpeg(g, 10) - g).abs().mean()) > float((jpeg(g, 50) - g).abs().mean())


def test_plasma_fractal_range() -> None:
    m = plasma_fractal(K.SampleStreams(0, [0, 1], ("t",)), 16, 2.0)
    assert m.shape == (2, 16, 16)
    torch.testing.assert_close(m.amin((1, 2)), torch.zeros(2, dtype=m.dtype))
    torch.testing.assert_close(m.amax((1, 2)), torch.ones(2, dtype=m.dtype))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        corrupt(images() * 2, "fog", 1)
    with pytest.raises(InputError, match="C = 1 or 3"):
        corrupt(torch.rand(2, 2, 8, 8), "fog", 1)
    with pytest.raises(InputError, match="NaN"):
        corrupt(torch.full((1, 1, 4, 4), float("nan")), "fog", 1)
    with pytest.raises(ConfigError, match="severity"):
        corrupt(images(), "fog", 6)
    with pytest.raises(ConfigError, match="parameter set"):
        corrupt(images(), "fog", 1, params="tiny")
