"""Pictures of image models: sample grids, energy histograms of data against negatives, the cost of negatives.

The image-scale figures of notebooks 8 and 9 and of ``pdviz train`` on images, in the style of
:mod:`pdviz.plotting` (its :func:`~pdviz.plotting.new_figure` and colours); like it, nothing here runs a
sampler: every function draws what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from pdviz.errors import InvalidArgumentError
from pdviz.plotting import OKABE_ITO as _O
from pdviz.plotting import (
    READOUT_CHARS,
    _np,
    format_metrics,
    method_label,
    new_figure,
    readout,
    readout_title,
    subplots,
)


def tile(x: Any, image_shape: Sequence[int], ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Flattened images [n, C*H*W] in a grid: an array [rows*(H+pad)+pad, ncols*(W+pad)+pad, C], padding
    white (1), values clamped to [0, 1], rows filled left to right."""
    shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
    imgs = np.clip(_np(x), 0, 1)
    if imgs.ndim != 2 or math.prod(shape) != imgs.shape[1]:
        raise InvalidArgumentError(f"image_shape {tuple(image_shape)} does not fit images {list(imgs.shape)}")
    n, (c, h, w) = len(imgs), shape
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    canvas = np.ones((math.ceil(n / ncols) * (h + pad) + pad, ncols * (w + pad) + pad, c))
    for i, img in enumerate(imgs.reshape(n, c, h, w).transpose(0, 2, 3, 1)):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = img
    return canvas


def _show_images(ax: Any, x: Any, image_shape: Sequence[int], n: int, ncols: int, title: str, note) -> None:
    canvas = tile(_np(x)[:n], image_shape, ncols=min(ncols, max(1, min(n, len(x)))))
    ax.imshow(canvas[..., 0] if canvas.shape[-1] == 1 else canvas, cmap="gray", vmin=0, vmax=1)
    ax.set(title=title, xticks=[], yticks=[], xlabel=note)


def plot_image_grids(
    panels: Mapping[str, Any], image_shape: Sequence[int], *, n: int = 64, ncols: int = 8,
    notes: Mapping[str, str] | None = None,
) -> Figure:  # fmt: skip
    """One panel per entry (title -> images [m, C*H*W]): the first ``n`` images in a grid; ``notes``
    (title -> text) adds a line of numbers under a panel."""
    if not panels:
        raise InvalidArgumentError("panels must be a non-empty dict title -> images")
    fig = new_figure(2.8 * len(panels), 3.3)
    for ax, (title, x) in zip(subplots(fig, 1, len(panels))[0], panels.items()):
        _show_images(ax, x, image_shape, n, ncols, title, (notes or {}).get(title, ""))
    return fig


def plot_energy_histograms(
    energies: Mapping[str, Any], *, bins: int = 40, title: str = "", ax=None, legend: bool = True
) -> Figure:
    """Overlaid histograms of energies (label -> [n]), e.g. held-out data against negatives: a model
    whose negatives sample it well puts the two on top of each other. Their means are printed above the
    panel; ``legend`` adds a figure legend under the panel (none on the bars: it would hide some)."""
    arrays = {k: _np(v).reshape(-1) for k, v in energies.items()}
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()])
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    edges = np.linspace(lo, max(hi, lo + 1e-6), bins + 1)
    if ax is None:
        ax = subplots(new_figure(5.0, 3.2), 1, 1)[0, 0]
    for label, a in arrays.items():
        ax.hist(np.clip(a, lo, hi), edges, alpha=0.55, density=True, label=label)
    ax.set(xlabel="energy E(x)", ylabel="density")
    means = format_metrics({f"mean {label}": a.mean() for label, a in arrays.items()}, width=READOUT_CHARS)
    readout_title(ax, title, len(means.splitlines()))
    readout(ax, means)
    if legend:
        ax.figure.legend(loc="outside lower center", ncols=len(arrays))
    return ax.figure


def plot_image_comparison(
    data: Any, negatives: Mapping[str, Any], energy_fns: Mapping[str, Callable], image_shape: Sequence[int],
    *, notes: Mapping[str, str] | None = None, n: int = 36, ncols: int = 6,
) -> Figure:  # fmt: skip
    """The image-scale key picture: sample grids on top (held-out data, then each method's negatives),
    below them each method's energy histogram of held-out data against its negatives (energies evaluated
    here, without gradients)."""
    if not negatives or set(negatives) != set(energy_fns):
        raise InvalidArgumentError("negatives and energy_fns must be non-empty dicts with the same names")
    k = len(negatives)
    fig = new_figure(2.8 * (k + 1), 5.8)
    axes = subplots(fig, 2, k + 1)
    for ax, (title, x) in zip(axes[0], {"held-out data": data, **negatives}.items()):
        _show_images(ax, x, image_shape, n, ncols, method_label(title), (notes or {}).get(title, ""))
    for ax, (name, x) in zip(axes[1, 1:], negatives.items()):
        with torch.no_grad():
            e = {"held-out data": energy_fns[name](data.to(x.device)), "negatives": energy_fns[name](x)}
        plot_energy_histograms(e, title=method_label(name), ax=ax, legend=False)
    axes[1, 0].axis("off")  # the histograms' key, beside them rather than on their bars
    axes[1, 0].text(0, 0.75, "energies,\neach under its\nown model:", va="center")
    axes[1, 0].legend(*axes[1, 1].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(0, 0.4))
    return fig


def plot_negatives_cost(costs: Mapping[str, Any]) -> Figure:
    """Bars of milliseconds per training iteration, split into producing negatives and the rest.

    ``costs``: name -> an object with ``seconds_per_iteration``, ``negatives_share`` and
    ``grad_evals_per_iteration`` (the training layer's cost measurement)."""
    names = list(costs)
    ms = np.array([1000 * costs[k].seconds_per_iteration for k in names])
    share = np.array([costs[k].negatives_share for k in names])
    ax = subplots(new_figure(2.0 + 1.5 * len(names), 3.6), 1, 1)[0, 0]
    labels = [method_label(k) for k in names]
    ax.bar(labels, ms * share, color=_O["vermillion"], label="negatives (chains, moves, corrections)")
    ax.bar(labels, ms * (1 - share), bottom=ms * share, color=_O["sky_blue"], label="data batch + update")
    for i, k in enumerate(names):
        text = f"{costs[k].grad_evals_per_iteration:.0f} evals\n{share[i]:.0%}"
        ax.text(i, ms[i], text, ha="center", va="bottom")  # above the bar, not across its top
    ax.set(ylabel="ms per iteration", ylim=(0, 1.5 * ms.max()))
    ax.legend(loc="upper left")
    return ax.figure
