"""Tables and figures of ``25_topology_during_training``: the topology trajectories of a grid's
DST runs, gathered with :func:`mgelib.io.collect` from their ``topology_trajectory.parquet``.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"pruner": ["rigl"] * 3, "sparsity": [0.9] * 3, "seed": [0] * 3,
...                   "model": ["m"] * 3, "dataset": ["d"] * 3,
...                   "kind": ["init", "update", "final"], "step": [0, 5, 10],
...                   "exploration": [0.1, 0.15, 0.15], "moved": [0, 7, 0]})
>>> with_progress(t)["progress"].tolist()
[0.0, 0.5, 1.0]
>>> summary(with_progress(t))[["updates", "moved", "exploration_final"]].iloc[0].tolist()
[1.0, 7.0, 0.15]
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mgelib.vocabulary import DST_METHODS

__all__ = [
    "RUN_KEYS",
    "with_progress",
    "summary",
    "endpoint_shift",
    "plot_trajectories",
    "plot_endpoint_shift",
]

RUN_KEYS: tuple[str, ...] = ("model", "dataset", "pruner", "sparsity", "seed")
_LABELS = {
    "exploration": "exploration rate (ever active / all)",
    "moved": "weights moved per update",
    "sink_nodes": "sink nodes / V",
    "source_nodes": "source nodes / V",
    "disc_nodes": "disconnected nodes / V",
    "r-out": "r-out / E",
    "r-in": "r-in / E",
    "no_connected_components": "connected components",
    "mean_connected_components": "mean component size / V",
}


def with_progress(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Add ``progress``: each row's step as a fraction of its run's last step (0 … 1)."""
    out = trajectories.copy()
    last = out.groupby(list(RUN_KEYS))["step"].transform("max").replace(0, np.nan)
    out["progress"] = (out["step"] / last).fillna(0.0)
    return out


def summary(trajectories: pd.DataFrame) -> pd.DataFrame:
    """Per (pruner, sparsity), means over seeds: mask updates per run, weights moved per run,
    the exploration rate at the start and at the end."""
    per_run = trajectories.groupby(list(RUN_KEYS)).agg(
        updates=("kind", lambda k: int((k == "update").sum())),
        moved=("moved", "sum"),
        exploration_init=("exploration", "first"),
        exploration_final=("exploration", "last"),
    )
    out = per_run.groupby(["pruner", "sparsity"]).mean().reset_index()
    return out.astype({"updates": float, "moved": float})


def endpoint_shift(trajectories: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table of each run's ``metrics`` at init and at the end, their change
    (``final − init``) and relative change (``(final − init) / |init|``; 0 when both are 0, NaN
    when only init is), one row per (run, metric); metrics missing at an end are NaN."""
    ends = trajectories[trajectories["kind"].isin(["init", "final"])]
    cols = [m for m in metrics if m in ends.columns]
    long = ends.melt(id_vars=[*RUN_KEYS, "kind"], value_vars=cols, var_name="metric")
    wide = long.pivot_table(
        index=[*RUN_KEYS, "metric"], columns="kind", values="value", dropna=False
    ).reset_index()
    wide["change"] = wide["final"] - wide["init"]
    base = wide["init"].abs().where(wide["init"] != 0)
    wide["relative_change"] = (wide["change"] / base).where(wide["change"] != 0, 0.0)
    return wide


def plot_trajectories(
    trajectories: pd.DataFrame, metrics: Sequence[str], *, height: float = 2.2
) -> plt.Figure:
    """One panel per (metric, sparsity): the metric against training progress, one line per
    DST method (mean over seeds, band: ± one standard deviation)."""
    df = trajectories.copy()
    sparsities = sorted(df["sparsity"].unique())
    methods = [m for m in DST_METHODS if m in set(df["pruner"])]
    palette = dict(zip(DST_METHODS, sns.color_palette("colorblind", len(DST_METHODS))))
    fig, axes = plt.subplots(
        len(metrics),
        len(sparsities),
        figsize=(2.9 * len(sparsities) + 0.8, height * len(metrics)),
        squeeze=False,
        sharex=True,
    )
    for i, metric in enumerate(metrics):
        for j, s in enumerate(sparsities):
            ax = axes[i][j]
            sub = df[(df["sparsity"] == s) & df[metric].notna()]
            if len(sub):
                sns.lineplot(
                    data=sub,
                    x="progress",
                    y=metric,
                    hue="pruner",
                    hue_order=methods,
                    palette=palette,
                    errorbar="sd",
                    marker="o",
                    markersize=3,
                    ax=ax,
                    legend=(i == 0 and j == len(sparsities) - 1),
                )
            ax.set_xlabel("training progress (step / last step)" if i == len(metrics) - 1 else "")
            ax.set_ylabel(_LABELS.get(metric, metric) if j == 0 else "")
            if i == 0:
                ax.set_title(f"sparsity {s:g}")
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    legend = axes[0][-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title="method")
    fig.tight_layout()
    return fig


def plot_endpoint_shift(shift: pd.DataFrame, metrics: Sequence[str]) -> plt.Figure:
    """Bars of the mean relative change (end − init) / |init| of each metric, in %, one panel per
    sparsity, one colour per DST method (``shift`` from :func:`endpoint_shift`)."""
    mean = shift.groupby(["metric", "pruner", "sparsity"])["relative_change"].mean().reset_index()
    mean["change"] = 100.0 * mean["relative_change"]
    methods = [m for m in DST_METHODS if m in set(mean["pruner"])]
    g = sns.catplot(
        data=mean,
        x="change",
        y="metric",
        hue="pruner",
        hue_order=methods,
        col="sparsity",
        kind="bar",
        order=[m for m in metrics if m in set(mean["metric"])],
        height=4.2,
        aspect=0.9,
        sharex=False,
        palette="colorblind",
    )
    g.set_axis_labels("change from init to end of training (%)", "")
    g.set_titles("sparsity {col_name}")
    if g.legend is not None:
        g.legend.set_title("method")
    for ax in g.axes.flat:
        ax.axvline(0, color="0.3", lw=0.8)
        ax.tick_params(labelsize=8)
    return g.figure
