"""Figures of the report: each a function of section results, drawn with matplotlib's Agg backend and returned as
``data:image/png;base64,...`` URIs, so that the page embeds them and opens from disk with no network.

Figure functions take ``[(model name, result), ...]``: curves of several models share one axis (side by side in the
legend), images get one panel per model.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
DPI = 90


@dataclass
class Figure:
    """One embedded figure: its caption and its PNG as a data URI."""

    caption: str
    uri: str


def to_data_uri(fig: MplFigure) -> str:
    """Render a matplotlib figure to a base64 PNG data URI and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def new_figure(w: float = 5.0, h: float = 3.4, ncols: int = 1, nrows: int = 1) -> tuple[MplFigure, Any]:
    """A figure with a grid of axes (``squeeze=False``: always a 2-d array)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False)
    return fig, axes


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


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
) -> MplFigure:
    """Several labelled curves on one axis."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    for i, (label, xs, ys) in enumerate(series):
        ax.plot(list(xs), list(ys), marker="o" if markers else None, ms=3, color=color(i), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1 or series and series[0][0]:
        ax.legend(fontsize=8)
    return fig


def histograms(
    series: Sequence[tuple[str, Sequence[float]]], *, xlabel: str, title: str = "", bins: int = 30
) -> MplFigure:
    """Overlaid histograms with a dashed line at each median."""
    fig, axes = new_figure()
    ax = axes[0, 0]
    values = [np.asarray(v, dtype=np.float64) for _, v in series]
    allv = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else np.zeros(1)
    edges = np.histogram_bin_edges(allv, bins=bins)
    for i, ((label, _), v) in enumerate(zip(series, values, strict=True)):
        if v.size == 0:
            continue
        ax.hist(v, bins=edges, alpha=0.5, color=color(i), label=f"{label} (median {np.median(v):.3g})")
        ax.axvline(float(np.median(v)), color=color(i), ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def bars(
    groups: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, ylabel: str, title: str = "",
    ylim: tuple[float, float] | None = None,
) -> MplFigure:
    """Grouped bars: one group per entry of ``groups``, one bar per series."""
    fig, axes = new_figure(w=max(5.0, 0.45 * len(groups) * max(1, len(series))))
    ax = axes[0, 0]
    k = max(1, len(series))
    width = 0.8 / k
    idx = np.arange(len(groups))
    for i, (label, vals) in enumerate(series):
        ax.bar(idx + (i - (k - 1) / 2) * width, list(vals), width=width, color=color(i), label=label)
    ax.set_xticks(idx)
    ax.set_xticklabels(list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def field_map(
    ax: Any, values: np.ndarray, extent: tuple[float, float, float, float], *, labels: bool, title: str = "",
    xlabel: str = "", ylabel: str = "",
) -> None:
    """A 2-d field on a plane through x (origin marked): class regions (``labels``) or a scalar (e.g. the loss)."""
    if labels:
        ax.imshow(values.T, origin="lower", extent=extent, cmap="tab10", vmin=0, vmax=9, interpolation="nearest",
                  aspect="equal")
    else:
        im = ax.imshow(values.T, origin="lower", extent=extent, cmap="viridis", aspect="equal")
        plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.plot([0], [0], marker="*", color="white", mec="black", ms=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
