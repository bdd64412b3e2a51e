"""Seaborn figures of the study notebooks: the data (:func:`plot_overview`), out-of-fold scores
(:func:`plot_scores`, :func:`plot_scores_by_sparsity`, :func:`plot_layer_scores`), coefficients
(:func:`plot_coefficients`), permutation importance (:func:`plot_importance`) and Kendall τ
(:func:`plot_tau`). Each returns the ``Figure``; save it with
:func:`mgelib.plotting.save_figure` (PNG + PDF).

Examples
--------
>>> import pandas as pd
>>> scores = pd.DataFrame({"feature_set": ["a", "b"], "learner": "ols", "folds": "kfold",
...                        "r2": [0.5, 0.7], "r2_lo": [0.4, 0.6], "r2_hi": [0.6, 0.8]})
>>> len(plot_scores(scores, ["a", "b"]).axes)
1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mgelib import plotting

__all__ = [
    "plot_overview",
    "plot_scores",
    "plot_scores_by_sparsity",
    "plot_layer_scores",
    "plot_correlations",
    "plot_ranks",
    "plot_coefficients",
    "plot_importance",
    "plot_tau",
]


def _err(estimate, low, high) -> np.ndarray:  # noqa: ANN001
    """Error-bar lengths below/above an estimate. A percentile bootstrap interval need not
    contain the point estimate (or a floor may clip it); matplotlib refuses negative lengths."""
    est, lo, hi = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (estimate, low, high))
    return np.clip(np.vstack([est - lo, hi - est]), 0.0, None)


def _grid(rows: Sequence[str], cols: Sequence[str], w: float = 4.2, h: float = 3.0):  # noqa: ANN202
    fig, axes = plt.subplots(
        len(rows), len(cols), figsize=(w * len(cols), h * len(rows)), squeeze=False, sharey=True
    )
    return fig, axes


_FOLDS = {"kfold": "random K-fold", "lopo": "leave one pruner out"}


def plot_overview(df: pd.DataFrame, target: str, x: str = "sparsity") -> plt.Figure:
    """The target against ``x`` per pruner (mean ± sd over seeds), one panel per group."""
    data = df.assign(group=df["model"] + " · " + df["dataset"])
    pruners = plotting._order(data["pruner"].unique())
    palette = plotting.pruner_palette(pruners)
    g = sns.relplot(
        data=data,
        x=x,
        y=target,
        hue="pruner",
        hue_order=pruners,
        palette=palette,
        col="group",
        col_wrap=min(4, data["group"].nunique()),
        kind="line",
        marker="o",
        errorbar="sd",
        height=2.6,
        aspect=1.2,
        facet_kws={"sharey": False},
    )
    if x == "sparsity" and data[x].between(0, 1, inclusive="neither").all():
        plotting.sparsity_axis(g.axes, data[x])
    g.set_titles("{col_name}")
    _legend_right(g)
    g.set_axis_labels(plotting.label(x) + (" (logit scale)" if x == "sparsity" else ""),
                      plotting.label(target))  # fmt: skip
    return g.figure


def _clip_note(ax: Any, text: str) -> None:
    """A red note in the axes' lower left corner saying which values were drawn clipped."""
    ax.annotate(text, (0.02, 0.02), xycoords="axes fraction", fontsize=6.5, color="tab:red")


def _mark_clipped(ax: Any, n: int, floor: float, what: str = "R²") -> None:
    """A visible note of how many values lie below the axis floor (drawn at it as ▼)."""
    if n:
        _clip_note(ax, f"▼ {n} value{'s' * (n > 1)} with {what} < {floor:g}, drawn at {floor:g}")


def _clip(v: pd.Series, lo: float) -> tuple[pd.Series, pd.Series]:
    return v.clip(lower=lo), v < lo


def plot_scores(
    scores: pd.DataFrame, order: Sequence[str], metric: str = "r2", floor: float = -1.0
) -> plt.Figure:
    """Out-of-fold scores per feature set: one dot per unit (groups), the mean (◆) and the
    median (—); a single unit (pooled) is drawn with its bootstrap CI. R² below ``floor`` is
    drawn at the floor as ▼ (OLS on an unseen pruner can reach R² ≪ −1)."""
    learners, folds = list(dict.fromkeys(scores["learner"])), list(dict.fromkeys(scores["folds"]))
    fig, axes = _grid(learners, folds)
    rng = np.random.default_rng(0)
    for i, lr in enumerate(learners):
        for j, fo in enumerate(folds):
            ax, sub = axes[i, j], scores[(scores["learner"] == lr) & (scores["folds"] == fo)]
            if metric == "r2":
                _mark_clipped(ax, int((sub["r2"] < floor).sum()), floor)
            for x, fs in enumerate(order):
                s = sub[sub["feature_set"] == fs]
                if len(s) == 0:
                    continue
                v, low = (
                    _clip(s[metric], floor) if metric == "r2" else (s[metric], s[metric] < -np.inf)
                )
                if len(s) == 1:
                    lo_, hi_ = s[f"{metric}_lo"].iloc[0], s[f"{metric}_hi"].iloc[0]
                    ax.errorbar(
                        x,
                        v.iloc[0],
                        yerr=_err(v.iloc[0], max(lo_, floor), max(hi_, floor)),
                        fmt="v" if bool(low.iloc[0]) else "o",
                        color="tab:red" if bool(low.iloc[0]) else "k",
                        capsize=3,
                    )
                    continue
                xs = x + rng.uniform(-0.2, 0.2, len(s))
                ax.scatter(xs[~low], v[~low], s=10, color="0.55", zorder=2)
                ax.scatter(xs[low], v[low], s=18, marker="v", color="tab:red", zorder=2)
                mean, median = s[metric].mean(), s[metric].median()
                if metric == "r2" and mean < floor:  # drawn at the floor, value written
                    ax.annotate(f"mean {mean:.3g}", (x, floor), xytext=(4, 5), fontsize=6,
                                textcoords="offset points")  # fmt: skip
                ax.scatter(
                    x,
                    max(mean, floor) if metric == "r2" else mean,
                    marker="D",
                    color="k",
                    s=30,
                    zorder=3,
                    label="mean" if x == 0 else None,
                )
                ax.hlines(
                    max(median, floor) if metric == "r2" else median,
                    x - 0.3,
                    x + 0.3,
                    color="tab:orange",
                    lw=2.5,
                    zorder=3,
                    label="median" if x == 0 else None,
                )
            ax.axhline(0, color="0.3", lw=0.8, ls=":")
            names = [plotting.label(o) for o in order]
            ax.set_xticks(range(len(order)), names, rotation=30, ha="right", fontsize=8)
            ax.set_title(f"{lr} · {_FOLDS.get(fo, fo)}", fontsize=9)
            ax.set_ylabel({"r2": "out-of-fold R²", "mae": "out-of-fold MAE"}[metric])
    if metric == "r2":
        axes[0, 0].set_ylim(floor - 0.05, 1.02)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_scores_by_sparsity(
    scores: pd.DataFrame,
    order: Sequence[str],
    floor: float = -1.0,
    y: str = "r2",
    estimator: str = "median",
) -> plt.Figure:
    """``estimator`` (median) over groups of ``y`` (the per-sparsity out-of-fold R², or τ per
    cell) against sparsity, per feature set; values below ``floor`` are drawn at it."""
    data = scores.assign(
        **{y: scores[y].clip(lower=floor)},
        **{"feature set": scores["feature_set"].map(plotting.label)},
        folds=scores["folds"].map(lambda f: _FOLDS.get(f, f)),
    )
    g = sns.relplot(
        data=data,
        x="sparsity",
        y=y,
        hue="feature set",
        hue_order=[plotting.label(o) for o in order],
        row="learner",
        col="folds",
        kind="line",
        estimator=estimator,
        errorbar=None,
        marker="o",
        height=2.8,
        aspect=1.4,
    )
    g.set(ylim=(floor - 0.05, 1.02))
    plotting.sparsity_axis(g.axes, data["sparsity"])
    label = {"r2": "out-of-fold R²", "tau": "Kendall τ"}.get(y, y)
    g.set_axis_labels("sparsity (logit scale)", f"{estimator} {label}")
    g.set_titles("{row_name} · {col_name}", size=9)
    _legend_right(g)
    for (lr, fo), ax in g.axes_dict.items():
        ax.axhline(0, color="0.3", lw=0.8, ls=":")
        raw = scores[
            (scores["learner"] == lr) & (scores["folds"].map(lambda f: _FOLDS.get(f, f)) == fo)
        ]
        _mark_clipped(ax, int((raw[y] < floor).sum()), floor, label.split()[-1])
    return g.figure


def plot_layer_scores(
    scores: pd.DataFrame, a: str = "ramanujan", b: str = "density", floor: float = -1.0
) -> plt.Figure:
    """R²(``a``) − R²(``b``) of each layer's own features, layer by layer (one line per fold
    scheme and learner), one panel per group; above 0 the layer's ``a`` features predict better.
    Differences are clipped to [``floor``, −``floor``]."""
    keys = ["model", "dataset", "layer_name", "layer_id", "learner", "folds"]
    wide = scores.pivot_table(index=keys, columns="feature_set", values="r2").reset_index()
    data = wide.assign(
        delta=(wide[a] - wide[b]).clip(floor, -floor),
        group=wide["model"] + " · " + wide["dataset"],
        scheme=wide["learner"] + " · " + wide["folds"],
    )
    g = sns.relplot(
        data=data,
        x="layer_id",
        y="delta",
        hue="scheme",
        col="group",
        col_wrap=min(4, data["group"].nunique()),
        kind="line",
        marker="o",
        markersize=3,
        height=2.3,
        aspect=1.3,
        facet_kws={"sharex": False},
    )
    g.set(ylim=(floor - 0.05, -floor + 0.05))
    raw = wide[a] - wide[b]
    for grp, ax in g.axes_dict.items():
        ax.axhline(0, color="0.3", lw=0.8, ls=":")
        r = raw[data["group"] == grp]
        n_out = int(((r < floor) | (r > -floor)).sum())
        if n_out:
            _clip_note(
                ax, f"{n_out} difference{'s' * (n_out > 1)} beyond ±{-floor:g}, drawn at the edge"
            )
    g.set_titles("{col_name}")
    # one y label for the figure: repeated per row, long labels run into each other
    g.set_axis_labels("layer (forward order)", "")
    g.figure.supylabel(f"R²({plotting.label(a)}) − R²({plotting.label(b)})", fontsize=9)
    _legend_right(g)
    return g.figure


def _legend_right(g: Any) -> None:
    # Outside the panels, so a later tight layout or figure title cannot overlap it.
    if g.legend is not None:
        sns.move_legend(g, "center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def plot_correlations(table: pd.DataFrame, label: str = "Spearman ρ") -> plt.Figure:
    """A heatmap of correlations (rows × features), e.g.
    :func:`mgelib.analysis.feature_correlations`."""
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * table.shape[1], 2.4 + 0.3 * table.shape[0]))
    sns.heatmap(
        table.astype(float),
        annot=True,
        fmt=".2f",
        cmap="vlag",
        vmin=-1,
        vmax=1,
        ax=ax,
        annot_kws={"size": 7},
        cbar_kws={"label": label},
        xticklabels=[plotting.label(c) for c in table.columns],
    )
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    for t in ax.get_xticklabels():
        t.set_ha("right")
    ax.set_xlabel("")
    ax.set_ylabel("")
    return fig


def plot_ranks(df: pd.DataFrame, target: str, higher_is_better: bool = True) -> plt.Figure:
    """The pruners' rank (1 = best mean ``target`` over seeds) in each (model, dataset, sparsity)
    cell, as a heatmap: the rankings that the models must reproduce."""
    cells = df.groupby(["model", "dataset", "sparsity", "pruner"])[target].mean().reset_index()
    cells["rank"] = cells.groupby(["model", "dataset", "sparsity"])[target].rank(
        ascending=not higher_is_better
    )
    cells["cell"] = (
        cells["model"] + " · " + cells["dataset"] + " · " + cells["sparsity"].map("{:g}".format)
    )
    table = cells.pivot(index="cell", columns="pruner", values="rank")
    table = table[plotting._order(table.columns)]
    fig, ax = plt.subplots(figsize=(2.8 + 0.55 * table.shape[1], 0.8 + 0.2 * table.shape[0]))
    sns.heatmap(
        table,
        annot=True,
        fmt=".0f",
        cmap="viridis_r",
        ax=ax,
        annot_kws={"size": 6},
        cbar_kws={"label": "rank (1 = best)"},
    )
    ax.tick_params(axis="y", labelsize=6)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return fig


def plot_coefficients(coefs: pd.DataFrame, unit_col: str = "unit", col_wrap: int = 5) -> plt.Figure:
    """Standardised coefficients with their CIs (a forest plot per unit); a CI that excludes 0
    is drawn dark."""
    features = list(dict.fromkeys(coefs["feature"]))

    def forest(data: pd.DataFrame, **_: Any) -> None:
        ax = plt.gca()
        d = data.set_index("feature").reindex(features)
        y = np.arange(len(features))
        sig = (d["ci_low"] > 0) | (d["ci_high"] < 0)
        ax.errorbar(
            d["coef"],
            y,
            xerr=_err(d["coef"], d["ci_low"], d["ci_high"]),
            fmt="none",
            ecolor="0.7",
            lw=1,
        )
        ax.scatter(d["coef"], y, c=np.where(sig, "k", "0.6"), s=12, zorder=3)
        ax.axvline(0, color="tab:red", lw=0.8)

    g = sns.FacetGrid(
        coefs,
        col=unit_col,
        col_wrap=min(col_wrap, coefs[unit_col].nunique()),
        sharex=False,
        height=3.6,
        aspect=0.8,
    )
    g.map_dataframe(forest)
    g.set(yticks=range(len(features)), yticklabels=[plotting.label(f) for f in features])
    g.set_titles("{col_name}", size=9)
    g.set_axis_labels("standardised coefficient", "")
    return g.figure


def plot_importance(imp: pd.DataFrame, unit_col: str = "unit") -> plt.Figure:
    """Permutation importance (drop in held-out R²) as a heatmap: features × units; ``*`` marks
    a bootstrap CI above 0. Undefined importances (NaN) are not drawn as values: their cells
    read "undefined", and the reasons are written under the figure."""
    table = imp.pivot(index="feature", columns=unit_col, values="importance")
    table = table.loc[list(dict.fromkeys(imp["feature"])), list(dict.fromkeys(imp[unit_col]))]
    low = imp.pivot(index="feature", columns=unit_col, values="ci_low").reindex_like(table)
    text = np.where(
        np.isfinite(table.to_numpy(float)),
        [[f"{v:.2f}{'*' if lo > 0 else ''}" for v, lo in zip(r, q)]
         for r, q in zip(table.to_numpy(float), low.to_numpy(float))],
        "undefined",
    )  # fmt: skip
    fig, ax = plt.subplots(figsize=(3.5 + 0.9 * table.shape[1], 1.2 + 0.32 * table.shape[0]))
    sns.heatmap(
        table,
        annot=text,
        fmt="",
        cmap="vlag",
        center=0,
        ax=ax,
        annot_kws={"size": 7},
        cbar_kws={"label": "drop in held-out R²"},
        yticklabels=[plotting.label(f) for f in table.index],
    )
    # seaborn leaves NaN cells blank: say what they are instead of leaving a gap to read into
    for i, j in zip(*np.nonzero(~np.isfinite(table.to_numpy(float)))):
        ax.text(j + 0.5, i + 0.5, "undefined", ha="center", va="center", fontsize=6.5, color="0.4")
    ax.set_xlabel("")
    ax.set_ylabel("")
    undefined = imp[~np.isfinite(imp["importance"].to_numpy(float))]
    notes = ["* bootstrap CI above 0"]
    if len(undefined):
        why = undefined.groupby(unit_col)["reason"].first()
        notes += [f"undefined at {u}: {r}" for u, r in why.items()]
    fig.text(0.01, -0.02, "\n".join(notes), fontsize=7, va="top")
    return fig


def plot_tau(tau: pd.DataFrame, summary: pd.DataFrame, order: Sequence[str]) -> plt.Figure:
    """Kendall τ per (model, dataset, sparsity) cell (dots) and its mean with a bootstrap CI
    (black), per feature set; 0 is a random ranking."""
    learners, folds = list(dict.fromkeys(tau["learner"])), list(dict.fromkeys(tau["folds"]))
    fig, axes = _grid(learners, folds)
    for i, lr in enumerate(learners):
        for j, fo in enumerate(folds):
            ax = axes[i, j]
            sub = tau[(tau["learner"] == lr) & (tau["folds"] == fo)]
            sns.stripplot(
                data=sub,
                x="feature_set",
                y="tau",
                order=list(order),
                ax=ax,
                color="0.6",
                size=3,
                jitter=0.25,
            )
            sm = summary[(summary["learner"] == lr) & (summary["folds"] == fo)].set_index(
                "feature_set"
            )
            sm = sm.reindex([o for o in order if o in sm.index])
            xs = [list(order).index(f) for f in sm.index]
            ax.errorbar(
                xs,
                sm["tau_mean"],
                yerr=_err(sm["tau_mean"], sm["ci_low"], sm["ci_high"]),
                fmt="D",
                color="k",
                capsize=3,
                zorder=3,
            )
            ax.axhline(0, color="tab:red", lw=0.8)
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(f"{lr} · {_FOLDS.get(fo, fo)}", fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel("Kendall τ (true vs predicted ranking)")
            ax.set_xticks(range(len(order)), [plotting.label(o) for o in order])
            ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.tight_layout()
    return fig
