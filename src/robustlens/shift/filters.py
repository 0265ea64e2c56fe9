"""Batched image primitives behind the common corruptions: padding by index, separable and 2-D filters, Gaussian
and disk kernels, linear zoom, shifts with edge replication, colour conversions and per-sample random draws.

Every function works on ``(N, C, H, W)`` float tensors on any device and any image size (padding wider than the
image reflects again, as scipy does). The kernels follow the reference implementations the corruption benchmark
used (Hendrycks & Dietterich, ICLR 2019): scikit-image's ``gaussian`` (``scipy.ndimage`` with ``truncate``), OpenCV's
``filter2D`` (border ``REFLECT_101``) and ``getGaussianKernel``, ``scipy.ndimage.zoom(order=1)``.

>>> x = torch.rand(2, 3, 8, 8)
>>> gaussian_blur(x, 1.0).shape
torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..seeding import generator

#: How each padding mode maps an out-of-range index: ``reflect101`` is OpenCV's default and torch's ``reflect``
#: (``d c b | a b c d``, edge not repeated), ``symmetric`` is scipy's ``reflect`` (``c b a | a b c``), ``edge`` is
#: scipy's ``nearest``.
PAD_MODES = ("reflect101", "symmetric", "edge")
#: kernels with more taps than this are applied through the FFT
FFT_ABOVE = 49


def pad_index(n: int, before: int, after: int, mode: str, device: torch.device | None = None) -> Tensor:
    """Indices into a length-``n`` axis for the padded axis of length ``before + n + after`` (any width)."""
    i = torch.arange(-before, n + after, device=device)
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    if mode == "symmetric":
        period = 2 * n
        i = i.remainder(period)
        return torch.where(i >= n, period - 1 - i, i)
    raise ValueError(f"unknown padding mode {mode!r}; choose one of {PAD_MODES}")


def pad2d(x: Tensor, ph: int, pw: int, mode: str) -> Tensor:
    """``x`` padded by ``ph`` rows and ``pw`` columns on each side."""
    h, w = x.shape[-2:]
    x = x.index_select(-2, pad_index(h, ph, ph, mode, x.device))
    return x.index_select(-1, pad_index(w, pw, pw, mode, x.device))


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """scipy's ``gaussian_filter1d`` weights: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    r = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / max(float(sigma), 1e-12)) ** 2)
    return (k / k.sum()).to(dtype)


def separable(x: Tensor, kh: Tensor, kw: Tensor, mode: str) -> Tensor:
    """Correlate every channel of ``x`` with the separable kernel ``kh`` (rows) x ``kw`` (columns)."""
    n, c, h, w = x.shape
    rh, rw = kh.numel() // 2, kw.numel() // 2
    y = pad2d(x.reshape(n * c, 1, h, w), rh, rw, mode)
    y = F.conv2d(y, kh.to(x).view(1, 1, -1, 1))
    y = F.conv2d(y, kw.to(x).view(1, 1, 1, -1))
    return y.view(n, c, h, w)


def gaussian_blur(x: Tensor, sigma: float | Sequence[float], *, truncate: float = 4.0, mode: str = "edge") -> Tensor:
    """scikit-image's ``gaussian(x, sigma, channel_axis=-1)`` (``mode="nearest"`` is ``"edge"`` here)."""
    sh, sw = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
    return separable(x, gaussian_kernel1d(sh, truncate), gaussian_kernel1d(sw, truncate), mode)


def filter2d(x: Tensor, kernel: Tensor, mode: str = "reflect101") -> Tensor:
    """OpenCV's ``filter2D(x, -1, kernel)`` on every channel: a correlation with an odd-sized 2-D kernel."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    y = pad2d(x.reshape(n * c, 1, h, w), kh // 2, kw // 2, mode)
    if kh * kw <= FFT_ABOVE:
        return F.conv2d(y, kernel.to(x).view(1, 1, kh, kw)).view(n, c, h, w)
    # a large kernel (the defocus disk is 17 x 17): the same correlation through the FFT, as OpenCV switches to a DFT
    hh, ww = y.shape[-2:]
    k = torch.zeros(hh, ww, dtype=x.dtype, device=x.device)
    k[:kh, :kw] = kernel.to(x).flip(0, 1)
    full = torch.fft.irfft2(torch.fft.rfft2(y[:, 0]) * torch.fft.rfft2(k), s=(hh, ww))
    return full[:, kh - 1:kh - 1 + h, kw - 1:kw - 1 + w].reshape(n, c, h, w)


def cv2_gaussian_kernel(ksize: int, sigma: float) -> Tensor:
    """OpenCV's ``getGaussianKernel(ksize, sigma)`` for ``sigma > 0``."""
    t = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The anti-aliased disk of the defocus blur: the indicator of ``x^2 + y^2 <= r^2`` on a ``17 x 17`` grid (or
    ``2r + 1`` for ``r > 8``), normalised, then smoothed by OpenCV's ``GaussianBlur`` (3x3, or 5x5 for ``r > 8``)."""
    half = 8 if radius <= 8 else int(radius)
    ks = 3 if radius <= 8 else 5
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    d = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).double()
    d = d / d.sum()
    g = cv2_gaussian_kernel(ks, alias_blur)
    return separable(d[None, None], g, g, "reflect101")[0, 0]


def zoom_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``(n_out, n_in)`` linear interpolation of ``scipy.ndimage.zoom(order=1)``: output ``o`` samples the input at
    ``o (n_in - 1) / (n_out - 1)`` (corners aligned)."""
    if n_out == 1 or n_in == 1:
        pos = torch.zeros(n_out, dtype=torch.float64)
    else:
        pos = torch.arange(n_out, dtype=torch.float64) * (n_in - 1) / (n_out - 1)
    lo = pos.floor().clamp(0, n_in - 1).long()
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = pos - lo.double()
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m[torch.arange(n_out), lo] += 1 - frac
    m[torch.arange(n_out), hi] += frac
    return m.to(dtype)


def clipped_zoom(x: Tensor, factor: float, *, center_trim: bool) -> Tensor:
    """Zoom into the centre of ``x`` by ``factor`` (>= 1) and keep ``H x W`` pixels: the centre crop of
    ``ceil(H / factor)`` rows (and columns) is zoomed linearly to ``round(crop * factor)`` and trimmed, either
    around the centre (CIFAR-10-C) or from the top-left corner (ImageNet-C as ``imagecorruptions`` does it)."""
    h, w = x.shape[-2:]
    out = x
    for axis, n in ((-2, h), (-1, w)):
        ch = int(math.ceil(n / factor))
        top = (n - ch) // 2
        size = int(round(ch * factor))
        m = zoom_matrix(ch, size, x.dtype).to(x.device)
        start = (size - n) // 2 if center_trim else 0
        m = m[start:start + n]
        if m.shape[0] < n:  # a zoom that comes out short keeps the image's own pixels below it
            pad = torch.zeros(n - m.shape[0], ch, dtype=m.dtype, device=m.device)
            m = torch.cat([m, pad])
        crop = out.narrow(axis, top, ch)
        out = torch.matmul(m, crop) if axis == -2 else torch.matmul(crop, m.T)
    return out


def shift_edge(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """``out[n, :, h, w] = x[n, :, clamp(h - dy[n]), clamp(w - dx[n])]``: a per-sample integer shift whose
    uncovered border repeats the edge (the ``shift`` of the motion blur)."""
    n, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None] - dy[:, None].to(x.device)).clamp(0, h - 1)  # (n, h)
    cols = (torch.arange(w, device=x.device)[None] - dx[:, None].to(x.device)).clamp(0, w - 1)  # (n, w)
    y = torch.gather(x, 2, rows[:, None, :, None].expand(n, c, h, w))
    return torch.gather(y, 3, cols[:, None, None, :].expand(n, c, h, w))


def motion_blur(x: Tensor, radius: int, sigma: float, angle_deg: Tensor) -> Tensor:
    """ImageMagick's ``MotionBlurImage`` as ``imagecorruptions`` ports it: ``2 radius + 1`` copies of the image
    shifted along ``angle`` (per sample, degrees) with one-sided Gaussian weights ``exp(-i^2 / 2 sigma^2)``; copies
    that would leave the image are dropped (the weights are not renormalised)."""
    width = 2 * int(radius) + 1
    kt = torch.exp(-torch.arange(width, dtype=torch.float64) ** 2 / (2 * sigma**2))
    k = (kt / kt.sum()).tolist()
    ang = torch.deg2rad(angle_deg.double().cpu())
    py, px = width * torch.sin(ang), width * torch.cos(ang)
    hyp = torch.hypot(py, px)
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    alive = torch.ones(x.shape[0], dtype=torch.bool)
    for i in range(width):
        dy = -torch.ceil(i * py / hyp - 0.5).long()
        dx = -torch.ceil(i * px / hyp - 0.5).long()
        alive &= (dy.abs() < h) & (dx.abs() < w)
        if not bool(alive.any()):
            break
        wgt = (alive.to(x.dtype) * k[i]).to(x.device).view(-1, 1, 1, 1)
        out = out + wgt * shift_edge(x, dy, dx)
    return out


def gray(x: Tensor) -> Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` (OpenCV's ``RGB2GRAY``) as ``(N, 1, H, W)``; a grey image itself."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(1, keepdim=True)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """scikit-image's ``rgb2hsv`` on ``(N, 3, H, W)``: hue in ``[0, 1)``, saturation ``delta / max``, value ``max``."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = torch.where(delta == 0, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    h = torch.where(b == v, 4.0 + (r - g) / safe, torch.zeros_like(v))
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(r == v, (g - b) / safe, h)
    h = torch.where(delta == 0, torch.zeros_like(h), (h / 6.0).remainder(1.0))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """scikit-image's ``hsv2rgb``."""
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.long().remainder(6)
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(hsv)
    for k, (r, g, b) in enumerate(table):
        m = (hi == k)[:, None]
        out = torch.where(m, torch.stack([r, g, b], 1), out)
    return out


class SampleStreams:
    """One ``torch.Generator`` per sample, seeded from ``(seed, index, *key)``: the draws of sample ``i`` depend on
    its dataset index only, never on the batch it is in (as :class:`robustlens.seeding.SampleRNG`, but stateful, so
    that a corruption can draw several times)."""

    def __init__(self, seed: int, indices: Sequence[int], key: tuple[object, ...]) -> None:
        self.gens = [generator(seed, int(i), *key) for i in indices]

    def _stack(self, draws: list[Tensor], shape: Sequence[int]) -> Tensor:
        return torch.stack(draws) if draws else torch.empty(0, *shape, dtype=torch.float64)

    def rand(self, shape: Sequence[int]) -> Tensor:
        """Uniform ``[0, 1)`` draws, ``(n, *shape)`` float64 on the CPU."""
        return self._stack([torch.rand(tuple(shape), generator=g, dtype=torch.float64) for g in self.gens], shape)

    def uniform(self, low: float, high: float, shape: Sequence[int] = ()) -> Tensor:
        return low + (high - low) * self.rand(shape)

    def randn(self, shape: Sequence[int]) -> Tensor:
        """Standard normal draws, ``(n, *shape)`` float64 on the CPU."""
        return self._stack([torch.randn(tuple(shape), generator=g, dtype=torch.float64) for g in self.gens], shape)

    def poisson(self, rate: Tensor) -> Tensor:
        """Poisson draws with per-element ``rate`` (``(n, ...)``)."""
        r = rate.detach().double().cpu()
        return torch.stack([torch.poisson(r[i], generator=g) for i, g in enumerate(self.gens)]) if self.gens else r

    def randint(self, low: int, high: int, shape: Sequence[int]) -> Tensor:
        return self._stack([torch.randint(low, high, tuple(shape), generator=g) for g in self.gens], shape)


__all__ = [
    "PAD_MODES", "SampleStreams", "clipped_zoom", "cv2_gaussian_kernel", "disk_kernel", "filter2d", "gaussian_blur",
    "gaussian_kernel1d", "gray", "hsv_to_rgb", "motion_blur", "pad2d", "pad_index", "rgb_to_hsv", "separable",
    "shift_edge", "zoom_matrix",
]
