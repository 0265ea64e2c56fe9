"""Baseline JPEG compression and decompression in torch, batched: the ``jpeg_compression`` corruption.

The steps of libjpeg as Pillow calls it (``Image.save(..., "JPEG", quality=q)``, then decoding): 8-bit input,
RGB to YCbCr (JFIF), 4:2:0 chroma subsampling (2x2 means; edges replicated to whole 16 x 16 macro-blocks), 8 x 8
DCT, quantisation with the standard luminance and chrominance tables (ITU T.81, Annex K) scaled by libjpeg's
quality rule, and the inverse with "fancy" (triangular) chroma upsampling. The DCT is the exact orthonormal one in
floating point where libjpeg uses fixed-point integer arithmetic, so a decoded pixel may differ from Pillow's by a
level or two (tests/test_shift_peer.py measures it). A grey image is coded as its luma plane alone, which is what
Pillow gives for an ``L`` image converted to RGB and back.

>>> y = jpeg(torch.rand(2, 3, 32, 32), quality=25)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .filters import pad_index

_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32),
]


def quant_table(base: list[int], quality: int) -> Tensor:
    """libjpeg's ``jpeg_set_quality``: the base table scaled by ``5000 / q`` (q < 50) or ``200 - 2 q``, clamped to
    1..255 (baseline)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 // q if q < 50 else 200 - 2 * q
    t = torch.tensor([(b * scale + 50) // 100 for b in base], dtype=torch.float64).clamp(1, 255)
    return t.view(8, 8)


def dct_matrix(dtype: torch.dtype = torch.float64) -> Tensor:
    """The orthonormal 8-point DCT-II matrix ``D`` (``D @ block @ D.T`` is the 2-D DCT)."""
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype)


def _pad_to(x: Tensor, mult: int) -> Tensor:
    h, w = x.shape[-2:]
    hh, ww = -(-h // mult) * mult, -(-w // mult) * mult
    x = x.index_select(-2, pad_index(h, 0, hh - h, "edge", x.device))
    return x.index_select(-1, pad_index(w, 0, ww - w, "edge", x.device))


def _downsample(p: Tensor) -> Tensor:
    """libjpeg's h2v2 downsampling: ``(a + b + c + d + bias) >> 2`` with the bias alternating 1, 2 by column."""
    s = F.avg_pool2d(p[:, None], 2)[:, 0] * 4
    bias = torch.tensor([1.0, 2.0], dtype=p.dtype, device=p.device).repeat(s.shape[-1] // 2 + 1)[: s.shape[-1]]
    return torch.floor((s + bias) / 4)


def _code_plane(p: Tensor, table: Tensor) -> Tensor:
    """Level shift, blockwise DCT, quantise, dequantise, inverse DCT of planes ``(N, H, W)`` (multiples of 8)."""
    n, h, w = p.shape
    d = dct_matrix(p.dtype).to(p.device)
    b = (p - 128).view(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    c = d @ b @ d.T
    t = table.to(p)
    c = torch.round(c / t) * t
    r = d.T @ c @ d
    return torch.round(r.permute(0, 1, 3, 2, 4).reshape(n, h, w) + 128).clamp(0, 255)


def _fancy_up(c: Tensor, h: int, w: int) -> Tensor:
    """libjpeg's h2v2 "fancy" upsampling: each output pixel is ``(9 a + 3 b + 3 c + d) / 16`` of its four nearest
    chroma samples (edges replicated)."""
    def up(t: Tensor, dim: int) -> Tensor:
        n = t.shape[dim]
        prev = t.index_select(dim, pad_index(n, 1, 0, "edge", t.device)[:n])
        nxt = t.index_select(dim, pad_index(n, 0, 1, "edge", t.device)[1:])
        even, odd = 0.75 * t + 0.25 * prev, 0.75 * t + 0.25 * nxt
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)

    return up(up(c, 1), 2)[:, :h, :w]


def jpeg(x: Tensor, quality: int) -> Tensor:
    """``x`` (``(N, C, H, W)`` in ``[0, 1]``, C = 1 or 3) after JPEG coding at ``quality``, in ``[0, 1]`` on the
    1/255 grid (the module docstring lists the steps and where they differ from libjpeg)."""
    n, ch, h, w = x.shape
    x8 = torch.round(x.double().clamp(0, 1) * 255)
    if ch == 1:
        y = _code_plane(_pad_to(x8[:, 0], 8), quant_table(_LUMA, quality))[:, :h, :w]
        return (torch.round(y).clamp(0, 255) / 255).unsqueeze(1).to(x.dtype)
    r, g, b = x8[:, 0], x8[:, 1], x8[:, 2]
    yy = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128
    yy, cb, cr = (_pad_to(torch.round(p), 16) for p in (yy, cb, cr))
    cb, cr = (_downsample(p) for p in (cb, cr))
    yd = _code_plane(yy, quant_table(_LUMA, quality))[:, :h, :w]
    cbd, crd = (_fancy_up(_code_plane(p, quant_table(_CHROMA, quality)), h, w) for p in (cb, cr))
    rgb = torch.stack([yd + 1.402 * (crd - 128), yd - 0.344136286 * (cbd - 128) - 0.714136286 * (crd - 128),
                       yd + 1.772 * (cbd - 128)], 1)
    return (torch.round(rgb).clamp(0, 255) / 255).to(x.dtype)


__all__ = ["dct_matrix", "jpeg", "quant_table"]
