"""Figures: seaborn for tables, matplotlib collections for graph drawings; PNG + PDF output.

Every function returns the matplotlib ``Figure`` so a notebook can show it and
:func:`save_figure` can write it (atomically, as PNG and PDF).

Examples
--------
>>> import pandas as pd
>>> fig = layer_densities(pd.DataFrame({"layer": ["a", "b"], "density": [0.5, 0.1]}))
>>> len(fig.axes)
1
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection
from matplotlib.ticker import FormatStrFormatter

from mgelib import vocabulary
from mgelib.io import atomic_path

__all__ = [
    "PRUNER_COLOURS",
    "LABELS",
    "label",
    "pruner_palette",
    "sparsity_axis",
    "set_title",
    "save_figure",
    "layer_densities",
    "training_curve",
    "degree_distribution",
    "draw_mge",
    "accuracy_vs_sparsity",
    "metric_vs_sparsity",
    "PRUNER_ORDER",
]

#: Pruners in the order of the paper's tables (dense first, DST methods last).
PRUNER_ORDER: tuple[str, ...] = ("dense", *vocabulary.PAI_PRUNERS, *vocabulary.DST_METHODS)

#: One fixed colour per pruner in every figure (a pruner keeps its colour whichever others are
#: drawn). Twelve hues far apart: no two PaI pruners share a hue family (uniform is grey, erk
#: purple), DST methods get the remaining ones; ``<p>+shuffle`` takes ``p``'s colour, lightened
#: (and dashed where lines are drawn).
PRUNER_COLOURS: dict[str, str] = {
    "dense": "#000000",
    "snip": "#1f77b4",
    "grasp": "#ff7f0e",
    "synflow": "#2ca02c",
    "prospr": "#d62728",
    "uniform": "#7f7f7f",
    "er": "#8c564b",
    "erk": "#9467bd",
    "set": "#17becf",
    "snfs": "#bcbd22",
    "dsr": "#e377c2",
    "rigl": "#393b79",
    "itop": "#637939",
}
_EXTRA = ("#843c39", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194", "#6b6ecf")

#: Human labels of column and feature-set names (anything else: underscores become spaces).
LABELS: dict[str, str] = {
    "train_acc": "training accuracy",
    "test_acc": "test accuracy",
    "loss": "training loss",
    "accuracy": "accuracy",
    "accuracy_drop": "accuracy drop",
    "relative_drop": "relative accuracy drop",
    "sparsity": "sparsity",
    "density": "density",
    "density_realised": "realised density",
    "layer_density": "layer-wise density",
    "layer_density__mean": "mean layer density",
    "layer_density__wmean": "weighted mean layer density",
    "ramanujan": "Ramanujan (Δr, imsg, imdb)",
    "ramanujan+density": "Ramanujan + density",
    "ramanujan+layer_density": "Ramanujan + layer-wise density",
    "rolled": "rolled BGE",
    "rolled_channel": "rolled-channel BGE",
    "mge": "MGE topometrics",
    "mge+sparsity": "MGE + sparsity",
    "degree_bound__mean": "Δr (mean over layers)",
    "iterative_spectral_gap__mean": "imsg (mean over layers)",
    "iterative_degree_bound__mean": "imdb (mean over layers)",
    "r-out": "removable edges (out)",
    "r-in": "removable edges (in)",
    "1-hop_nei": "1-hop neighbours",
    "2-hop_nei": "2-hop neighbours",
    "disc_nodes": "disconnected nodes",
    "no_connected_components": "connected components",
    "mean_connected_components": "mean component size",
    "avg_node_strength": "mean node strength",
}


def label(name: str) -> str:
    """The human label of a column or feature-set name.

    Examples
    --------
    >>> label("train_acc"), label("sink_nodes"), label("snip+shuffle")
    ('training accuracy', 'sink nodes', 'snip+shuffle')
    """
    name = str(name)
    if name in LABELS:
        return LABELS[name]
    if ":" in name or name.endswith("+shuffle"):
        return name
    if "+" in name:  # a union of feature sets
        return " + ".join(label(part) for part in name.split("+"))
    return name.replace("__", " ").replace("_", " ")


def _lighten(colour: str, amount: float = 0.5) -> tuple[float, float, float]:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def pruner_palette(pruners: Sequence[str]) -> dict[str, tuple]:
    """Colour of each pruner label from :data:`PRUNER_COLOURS` (``+shuffle`` twins lightened;
    unknown pruners get further fixed colours in sorted order).

    Examples
    --------
    >>> pal = pruner_palette(["erk", "uniform", "snip+shuffle"])
    >>> pal["erk"] != pal["uniform"], pal["snip+shuffle"] != pruner_palette(["snip"])["snip"]
    (True, True)
    """
    from matplotlib.colors import to_rgb

    out: dict[str, tuple] = {}
    unknown = sorted({str(p).split("+")[0] for p in pruners} - set(PRUNER_COLOURS))
    extra = {u: _EXTRA[i % len(_EXTRA)] for i, u in enumerate(unknown)}
    for p in pruners:
        base = str(p).split("+")[0]
        colour = PRUNER_COLOURS.get(base) or extra[base]
        out[p] = _lighten(colour) if str(p).endswith("+shuffle") else to_rgb(colour)
    return out


def _order(pruners: Sequence[str]) -> list[str]:
    """Pruner labels in :data:`PRUNER_ORDER`, each followed by its ``+shuffle`` twin."""

    def key(p: str) -> tuple:
        base = str(p).split("+")[0]
        pos = PRUNER_ORDER.index(base) if base in PRUNER_ORDER else len(PRUNER_ORDER)
        return (pos, base, str(p) != base, str(p))

    return sorted(dict.fromkeys(pruners), key=key)


def _palette(pruners: Sequence[str]) -> dict[str, tuple]:
    return pruner_palette(_order(pruners))


def sparsity_axis(axes, levels: Sequence[float], min_gap: float = 0.45) -> None:  # noqa: ANN001
    """A logit sparsity axis (it spreads 0.9 … 0.98) with readable ticks: the levels
    themselves, labelled where they are at least ``min_gap`` apart in logit units (the largest
    level, e.g. 0.98, is always labelled), rotated; no minor ticks."""
    levels = sorted({float(v) for v in levels if 0 < float(v) < 1})
    if not levels:
        return
    logit = np.log(np.asarray(levels) / (1 - np.asarray(levels)))
    shown, last = set(), np.inf
    for i in range(len(levels) - 1, -1, -1):  # from the top: the largest is always shown
        if last - logit[i] >= min_gap:
            shown.add(i)
            last = logit[i]
    names = [f"{v:g}" if i in shown else "" for i, v in enumerate(levels)]
    lo, hi = levels[0], levels[-1]
    pad = 0.15 * (logit[-1] - logit[0] or 1.0)
    lim = (1 / (1 + np.exp(-(logit[0] - pad))), 1 / (1 + np.exp(-(logit[-1] + pad))))
    for ax in np.ravel(axes):
        ax.set_xscale("logit")
        ax.set_xlim(min(lim[0], lo), max(lim[1], hi))
        ax.set_xticks(levels, names, rotation=45, ha="right", fontsize=7)
        ax.minorticks_off()


def set_title(fig: plt.Figure, text: str, fontsize: int = 10) -> None:
    """A figure title that never overlaps the panels' own titles: space is reserved above
    them (the layout is recomputed)."""
    fig.suptitle(text, fontsize=fontsize)
    lines = text.count("\n") + 1
    reserve = min(0.3, (lines * 1.6 * fontsize / 72) / fig.get_figheight())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a cramped figure keeps its layout
        fig.tight_layout(rect=(0, 0, 1, 1 - reserve))


def save_figure(
    fig: plt.Figure, folder: str | os.PathLike, name: str, dpi: int = 150
) -> list[Path]:
    """Write ``<folder>/<name>.png`` and ``.pdf`` atomically; returns the two paths."""
    out = []
    for ext in ("png", "pdf"):
        path = Path(folder) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=dpi, bbox_inches="tight")
        out.append(path)
    return out


def layer_densities(report: pd.DataFrame, hue: str | None = None) -> plt.Figure:
    """Per-layer density (a bar per layer; ``hue`` e.g. ``"pruner"`` to compare pruners)."""
    n_layers = report["layer"].nunique()
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * n_layers + 2), 3.6))
    sns.barplot(
        data=report,
        x="layer",
        y="density",
        hue=hue,
        ax=ax,
        palette=_palette(report[hue].unique()) if hue else None,
        color=None if hue else "tab:blue",
    )
    ax.set_yscale("log")
    ax.set_xlabel("layer (forward order)")
    ax.set_ylabel("density (kept fraction)")
    ax.tick_params(axis="x", rotation=90, labelsize=7)
    fig.tight_layout()
    return fig


def training_curve(history: pd.DataFrame) -> plt.Figure:
    """Loss and train/test accuracy per epoch."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.lineplot(data=history, x="epoch", y="loss", ax=a1, marker="o")
    a1.set_ylabel("training loss")
    long = history.melt(
        id_vars="epoch",
        value_vars=["train_acc", "test_acc"],
        var_name="split",
        value_name="accuracy",
    )
    long["split"] = long["split"].map(label)
    sns.lineplot(data=long, x="epoch", y="accuracy", hue="split", ax=a2, marker="o")
    a2.set_ylim(0, 1)
    a2.legend(title=None, fontsize=8)
    fig.tight_layout()
    return fig


def degree_distribution(graph, max_partitions: int = 24) -> plt.Figure:  # noqa: ANN001
    """In- and out-degree distribution per partition of an MGE (box plots)."""
    indeg, outdeg = graph.in_degree(), graph.out_degree()
    part = np.repeat(np.arange(len(graph.dims)), graph.dims)
    df = pd.DataFrame({"partition": part, "in": indeg, "out": outdeg})
    if len(graph.dims) > max_partitions:
        keep = np.unique(np.linspace(0, len(graph.dims) - 1, max_partitions).round().astype(int))
        df = df[df["partition"].isin(keep)]
    long = df.melt(id_vars="partition", var_name="direction", value_name="degree")
    # Degrees are ≥ 0 and span decades: a log axis of degree + 1 starts at 1 (degree 0) and
    # never shows a negative degree (a symlog box plot's whiskers could).
    long["degree + 1"] = long["degree"] + 1
    long["direction"] = long["direction"].map({"in": "in-degree", "out": "out-degree"})
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * df["partition"].nunique() + 2), 3.6))
    sns.boxplot(
        data=long,
        x="partition",
        y="degree + 1",
        hue="direction",
        ax=ax,
        fliersize=1,
        linewidth=0.6,
        log_scale=True,
    )
    ax.set_ylim(bottom=0.8)
    ax.set_ylabel("degree + 1 (log scale)")
    ax.legend(title=None, fontsize=8)
    labels = [graph.layers[int(t.get_text())] for t in ax.get_xticklabels()]
    ax.set_xticks(ax.get_xticks(), labels, rotation=90, fontsize=7)
    ax.set_xlabel("partition (producing layer)")
    fig.tight_layout()
    return fig


def draw_mge(
    graph,  # noqa: ANN001
    *,
    max_nodes_per_partition: int = 200,
    seed: int = 0,
    ax: plt.Axes | None = None,
    title: str | None = None,
    edge_alpha: float = 0.25,
) -> plt.Figure:
    """Draw an MGE as a multipartite graph, layers left to right (the authors' figure style).

    Large graphs stay legible by sampling: at most ``max_nodes_per_partition`` nodes of each
    partition (seeded), spread evenly over its column, and every edge among the sampled nodes.
    Node colour encodes degree (darker = more connected; removed-in-effect nodes, with no edges,
    are pale), so dead ends and sources show up as pale dots.
    """
    rng = np.random.default_rng(seed)
    offsets = graph.offsets
    chosen = []
    ys = []
    xs = []
    for p, d in enumerate(graph.dims):
        d = int(d)
        k = min(d, max_nodes_per_partition)
        ids = np.sort(rng.choice(d, size=k, replace=False)) if k < d else np.arange(d)
        chosen.append(offsets[p] + ids)
        ys.append(np.linspace(0.0, 1.0, k) if k > 1 else np.array([0.5]))
        xs.append(np.full(k, p, dtype=float))
    nodes = np.concatenate(chosen)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    index = np.full(graph.n_nodes, -1, dtype=np.int64)
    index[nodes] = np.arange(nodes.size)
    sub = graph.adjacency[nodes][:, nodes].tocoo()
    deg = (graph.in_degree() + graph.out_degree())[nodes]
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(graph.dims) + 2), 4))
    else:
        fig = ax.figure
    segs = np.stack(
        [np.column_stack([x[sub.row], y[sub.row]]), np.column_stack([x[sub.col], y[sub.col]])],
        axis=1,
    )
    ax.add_collection(LineCollection(segs, colors="0.45", linewidths=0.2, alpha=edge_alpha))
    ax.scatter(x, y, c=np.log1p(deg), cmap="Greys", s=4, vmin=0, edgecolors="none", zorder=3)
    ax.set_xlim(-0.5, len(graph.dims) - 0.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.set_xticks(range(len(graph.dims)), graph.layers, rotation=90, fontsize=6)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    sampled = nodes.size < graph.n_nodes
    ax.set_title(
        (title + "\n" if title else "")
        + f"{graph.n_nodes:,} nodes, {graph.n_edges:,} edges"
        + (f" (drawn: {nodes.size:,} sampled nodes, {sub.nnz:,} edges)" if sampled else ""),
        fontsize=8,
    )
    fig.tight_layout()
    return fig


def accuracy_vs_sparsity(
    df: pd.DataFrame, y: str = "accuracy", dense: pd.DataFrame | None = None
) -> plt.Figure:
    """The standard PaI plot: accuracy vs sparsity per pruner (mean ± sd over seeds), dense as a
    horizontal band."""
    pruners = _order(df["pruner"].unique())
    shuffled = df["pruner"].astype(str).str.endswith("+shuffle")
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(
        data=df.assign(topology=shuffled.map({False: "as pruned", True: "+shuffle (null model)"})),
        x="sparsity",
        y=y,
        hue="pruner",
        hue_order=pruners,
        palette=_palette(pruners),
        style="topology" if shuffled.any() else None,
        marker="o",
        errorbar="sd",
        ax=ax,
    )
    if dense is not None and len(dense):
        m, s = dense[y].mean(), dense[y].std(ddof=0)
        ax.axhline(m, color="k", lw=1, ls="--", label="dense")
        ax.axhspan(m - s, m + s, color="k", alpha=0.08)
    sparsity_axis(ax, df["sparsity"])
    ax.set_xlabel("sparsity (logit scale)")
    ax.set_ylabel(label(y))
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def metric_vs_sparsity(df: pd.DataFrame, metrics: Sequence[str], ncols: int = 4) -> plt.Figure:
    """Each metric vs sparsity per pruner (one panel per metric)."""
    metrics = [m for m in metrics if m in df.columns]
    nrows = max(1, -(-len(metrics) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    pruners = _order(df["pruner"].unique())
    pal = _palette(pruners)
    for ax, m in zip(axes.ravel(), metrics):
        sns.lineplot(
            data=df,
            x="sparsity",
            y=m,
            hue="pruner",
            palette=pal,
            marker="o",
            errorbar="sd",
            ax=ax,
            legend=False,
            markersize=3,
        )
        sparsity_axis(ax, df["sparsity"])
        ax.set_title(label(m), fontsize=9)
        # tick labels carry their own exponent: an axis offset ("1e-5") would collide with the title
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(metrics) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=pal[p], marker="o", label=p) for p in pruners]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncols=min(len(pruners), 8),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02),
    )
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
