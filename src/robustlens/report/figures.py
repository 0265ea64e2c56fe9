"""Figures of the report: drawn with matplotlib's Agg backend at twice the resolution they are shown at (sharp on
HiDPI screens) and embedded as ``data:image/png;base64,...`` URIs, so that the page opens from disk with no network.

Sections draw their figures with the library's own plot functions (``robustlens.geometry.plot_*``, the ``plot``
methods of results) inside :func:`style`, which gives every figure the report's colours (``"C0"``, ``"C1"``... are
the models in report order); the helpers here cover what the library has no plot for (per-class bars, histograms of
distances, image grids).
"""

from __future__ import annotations

import base64
import contextlib
import io
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
LAYOUT_DPI = 90  # the size figures are laid out for (CSS pixels per inch on the page)
SCALE = 2  # pixels per CSS pixel: 2 for HiDPI screens
DPI = LAYOUT_DPI * SCALE


@dataclass
class Figure:
    """One embedded figure: its caption, its PNG as a data URI, and the size the page shows it at (CSS pixels,
    half its pixel size)."""

    caption: str
    uri: str
    width: int = 0
    height: int = 0


def png_size(png: bytes) -> tuple[int, int]:
    """Pixel width and height of a PNG (from its IHDR chunk)."""
    w, h = struct.unpack(">II", png[16:24])
    return int(w), int(h)


def render(fig: MplFigure, caption: str) -> Figure:
    """Render a matplotlib figure at :data:`DPI` into a :class:`Figure` and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    png = buf.getvalue()
    w, h = png_size(png)
    return Figure(caption, "data:image/png;base64," + base64.b64encode(png).decode("ascii"), w // SCALE, h // SCALE)


def to_data_uri(fig: MplFigure) -> str:
    """Render a matplotlib figure to a base64 PNG data URI (at :data:`DPI`) and close it."""
    return render(fig, "").uri


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The report's look: its colour cycle (``"C0"`` is the first model's colour) and font sizes."""
    with plt.rc_context({"axes.prop_cycle": cycler(color=list(COLORS)), "font.size": 9, "axes.titlesize": 10,
                         "legend.fontsize": 8, "axes.labelsize": 9}):
        yield


def new_figure(w: float = 5.0, h: float = 3.4, ncols: int = 1, nrows: int = 1) -> tuple[MplFigure, Any]:
    """A figure with a grid of axes (``squeeze=False``: always a 2-d array)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False)
    return fig, axes


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def integer_axis(ax: Any, which: str = "x") -> None:
    """Integer ticks only on an axis of counts or indices."""
    (ax.xaxis if which == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def fraction_top(values: Sequence[float]) -> float:
    """The upper y-limit of a plot of fractions: 1 when the largest is above 0.5, else a little above the largest,
    so that small rates (0.05) are not flattened against a 0-1 axis."""
    finite = [float(v) for v in values if np.isfinite(v)]
    top = max(finite, default=0.0)
    return 1.02 if top > 0.5 else max(0.05, 1.25 * top)


def image_array(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (C, H, W) or (H, W) image as an array imshow understands ((H, W) grayscale or (H, W, 3) colour)."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    elif a.ndim == 1:
        side = int(round(a.shape[0] ** 0.5))
        if side * side == a.shape[0]:
            a = a.reshape(side, side)
        else:
            a = a.reshape(1, -1)
    return a


def show_image(ax: Any, x: torch.Tensor | np.ndarray, title: str = "", *, signed: bool = False) -> None:
    """Draw an image (data range) or a perturbation (``signed``: rescaled symmetrically around zero)."""
    a = image_array(x).astype(np.float64)
    if signed:
        m = float(np.abs(a).max()) or 1.0
        a = 0.5 + 0.5 * a / m
        ax.imshow(np.clip(a, 0, 1), cmap="RdBu_r" if a.ndim == 2 else None, vmin=0, vmax=1)
    else:
        lo, hi = float(a.min()), float(a.max())
        if a.ndim == 3 and (lo < 0 or hi > 1):
            a = (a - lo) / max(hi - lo, 1e-12)
        ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0 if a.ndim == 2 else None,
                  vmax=max(1.0, hi) if a.ndim == 2 else None)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def curves(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    markers: bool = True,
    integer_x: bool = False,
) -> MplFigure:
    """Several labelled curves on one axis (``integer_x``: the x values are counts or indices)."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    for i, (label, xs, ys) in enumerate(series):
        ax.plot(list(xs), list(ys), marker="o" if markers else None, ms=3, color=f"C{i}", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    if integer_x:
        integer_axis(ax, "x")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1 or series and series[0][0]:
        ax.legend()
    return fig


def histograms(
    series: Sequence[tuple[str, Sequence[float]]], *, xlabel: str, title: str = "", bins: int = 30
) -> MplFigure:
    """Overlaid histograms with a dashed line at each median (the y axis counts samples: integer ticks)."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    values = [np.asarray(v, dtype=np.float64) for _, v in series]
    allv = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else np.zeros(1)
    edges = np.histogram_bin_edges(allv, bins=bins)
    for i, ((label, _), v) in enumerate(zip(series, values, strict=True)):
        if v.size == 0:
            continue
        ax.hist(v, bins=edges, alpha=0.5, color=f"C{i}", label=f"{label} (median {np.median(v):.3g})")
        ax.axvline(float(np.median(v)), color=f"C{i}", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    integer_axis(ax, "y")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return fig


def bars(
    groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, ylabel: str, title: str = "",
    ylim: tuple[float, float] | None = None, percent_labels: bool = False,
) -> MplFigure:
    """Grouped bars: one group per entry of ``groups``, one bar per series (``percent_labels``: each bar's value
    written above it as a percentage)."""
    fig, axes = new_figure(w=max(5.0, 0.45 * len(groups) * max(1, len(series))))
    ax = axes[0, 0]
    k = max(1, len(series))
    width = 0.8 / k
    idx = np.arange(len(groups))
    for i, (label, vals) in enumerate(series):
        bars_i = ax.bar(idx + (i - (k - 1) / 2) * width, list(vals), width=width, color=f"C{i}", label=label)
        if percent_labels:
            ax.bar_label(bars_i, labels=[f"{100 * v:.1f}%" for v in vals], fontsize=7, padding=1)
    ax.set_xticks(idx)
    ax.set_xticklabels(list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=max(1, len(series)), frameon=False)
    return fig


__all__ = [
    "COLORS",
    "DPI",
    "SCALE",
    "Figure",
    "bars",
    "color",
    "curves",
    "fraction_top",
    "histograms",
    "image_array",
    "integer_axis",
    "new_figure",
    "png_size",
    "render",
    "show_image",
    "style",
    "to_data_uri",
]
