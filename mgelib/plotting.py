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
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.collections import LineCollection

from mgelib.io import atomic_path

__all__ = [
    "save_figure",
    "layer_densities",
    "training_curve",
    "degree_distribution",
    "draw_mge",
    "accuracy_vs_sparsity",
    "metric_vs_sparsity",
    "PRUNER_ORDER",
]

PRUNER_ORDER = ("dense", "snip", "grasp", "synflow", "prospr", "uniform", "er", "erk")


def _palette(pruners: Sequence[str]) -> dict[str, tuple]:
    ordered = [p for p in PRUNER_ORDER if p in pruners] + sorted(set(pruners) - set(PRUNER_ORDER))
    colours = sns.color_palette("colorblind", n_colors=max(len(ordered), 3))
    return dict(zip(ordered, colours))


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
    sns.lineplot(data=long, x="epoch", y="accuracy", hue="split", ax=a2, marker="o")
    a2.set_ylim(0, 1)
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
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * df["partition"].nunique() + 2), 3.6))
    sns.boxplot(
        data=long, x="partition", y="degree", hue="direction", ax=ax, fliersize=1, linewidth=0.6
    )
    ax.set_yscale("symlog", linthresh=1)
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
    pruners = sorted(df["pruner"].unique())
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(
        data=df,
        x="sparsity",
        y=y,
        hue="pruner",
        hue_order=[p for p in PRUNER_ORDER if p in pruners]
        + [p for p in pruners if p not in PRUNER_ORDER],
        palette=_palette(pruners),
        marker="o",
        errorbar="sd",
        ax=ax,
    )
    if dense is not None and len(dense):
        m, s = dense[y].mean(), dense[y].std(ddof=0)
        ax.axhline(m, color="k", lw=1, ls="--", label="dense")
        ax.axhspan(m - s, m + s, color="k", alpha=0.08)
    ax.set_xscale("logit")
    ax.set_xlabel("sparsity (logit scale)")
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def metric_vs_sparsity(df: pd.DataFrame, metrics: Sequence[str], ncols: int = 4) -> plt.Figure:
    """Each metric vs sparsity per pruner (one panel per metric)."""
    metrics = [m for m in metrics if m in df.columns]
    nrows = max(1, -(-len(metrics) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    pruners = sorted(df["pruner"].unique())
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
        ax.set_xscale("logit")
        ax.set_title(m, fontsize=9)
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
