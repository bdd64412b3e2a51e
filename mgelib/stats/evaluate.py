"""Out-of-fold prediction of a target from several feature sets (method §8.2), honestly scored.

:func:`evaluate` runs every feature set × learner × fold scheme on the same folds and the same
bootstrap resamples per unit — (model, dataset), (model, dataset, sparsity), or all rows pooled
with (model, dataset) fixed effects — so their scores are paired (:func:`mgelib.stats.compare`).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.normal(size=60), "pruner": np.repeat(list("abc"), 20)})
>>> df["y"] = 2 * df["x"] + 0.01 * rng.normal(size=60)
>>> scores = evaluate(df, {"x": ["x"]}, "y", group_cols=(), learners=("ols",), n_boot=200)
>>> round(float(scores["r2"].iloc[0]), 3)
1.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mgelib.stats._common import _boot_idx, _check_columns, _progress, _single_thread, _unit_rng
from mgelib.stats.folds import FOLD_SCHEMES, _splits
from mgelib.stats.learners import LEARNERS, _dummies, _fit_arrays, _info, _predict_arrays
from mgelib.stats.scores import bootstrap_scores

__all__ = ["SCOPES", "evaluate"]

logger = logging.getLogger(__name__)

#: ``per_group``: one fit per (model, dataset); ``per_sparsity``: per (model, dataset, sparsity);
#: ``pooled``: all rows, (model, dataset) as a categorical (fixed effects).
SCOPES: tuple[str, ...] = ("per_group", "per_sparsity", "pooled")
_SCORE_COLUMNS = ("n", "r2", "r2_lo", "r2_hi", "mae", "mae_lo", "mae_hi")


def _run_unit(
    unit: dict[str, Any],
    sub: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    schemes: Sequence[str],
    learners: Sequence[str],
    k: int,
    fold_groups: Any,
    pruner_col: str,
    categoricals: Sequence[str],
    n_boot: int,
    seed: int,
    level: float,
    keep_cols: Sequence[str],
    gbt_params: Mapping | None,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], list[str]]:
    rows: list[dict[str, Any]] = []
    oofs: list[pd.DataFrame] = []
    skipped: list[str] = []
    y = sub[target].to_numpy(dtype=float)
    n = len(sub)
    idx = _boot_idx(n, n_boot, _unit_rng(seed, unit["label"]))
    # Arrays once per unit: the fold loop below runs thousands of times (no pandas inside).
    arrays = {name: sub[list(feats)].to_numpy(dtype=float) for name, feats in feature_sets.items()}
    D = None
    if categoricals:
        D = np.hstack(
            [
                _dummies(v, sorted(pd.unique(v)))
                for v in (sub[c].astype(str).to_numpy(dtype=object) for c in categoricals)
            ]
        )
    base = sub[list(keep_cols)].copy()
    base.insert(0, "row", sub.index.to_numpy())
    base.insert(0, "scope", unit["keys"]["scope"])
    with _single_thread():
        for scheme in schemes:
            if scheme == "lopo" and sub[pruner_col].nunique() < 2:
                skipped.append(f"{unit['label']}: a single pruner, leave-one-pruner-out skipped")
                continue
            try:
                splits = _splits(sub, scheme, k, seed, fold_groups, pruner_col)
            except ValueError as err:
                skipped.append(f"{unit['label']}: {scheme} folds skipped ({err})")
                continue
            fold_id = np.empty(n, dtype=int)
            for f, (_, te) in enumerate(splits):
                fold_id[te] = f
            for fs_name, feats in feature_sets.items():
                A = arrays[fs_name]
                for learner in learners:
                    pred = np.full(n, np.nan)
                    logged: set[str] = set()
                    dropped: set[str] = set()
                    imputed = 0
                    for tr, te in splits:
                        st = _fit_arrays(
                            A[tr],
                            y[tr],
                            None if D is None else D[tr],
                            learner,
                            random_state=seed,
                            gbt_params=gbt_params,
                        )
                        pred[te], n_imp, _ = _predict_arrays(
                            st, A[te], None if D is None else D[te]
                        )
                        info = _info(st, feats)
                        logged.update(info["logged"])
                        dropped.update(info["dropped_constant"] + info["dropped_all_nan"])
                        imputed += n_imp
                    sc = bootstrap_scores(y, pred, idx=idx, level=level)
                    rows.append(
                        {
                            **unit["keys"],
                            "feature_set": fs_name,
                            "learner": learner,
                            "folds": scheme,
                            **sc,
                            "n_folds": len(splits),
                            "n_features": len(feats),
                            "logged": ",".join(sorted(logged)),
                            "dropped": ",".join(sorted(dropped)),
                            "n_imputed": imputed,
                        }
                    )
                    oofs.append(
                        base.assign(
                            feature_set=fs_name,
                            learner=learner,
                            folds=scheme,
                            fold=fold_id,
                            y=y,
                            y_pred=pred,
                        )
                    )
    return rows, oofs, skipped


def evaluate(
    df: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    *,
    folds: str | Sequence[str] = "kfold",
    learners: Sequence[str] = LEARNERS,
    group_cols: Sequence[str] = ("model", "dataset"),
    by_sparsity: bool = False,
    per_group: bool = True,
    pooled: bool = True,
    k: int = 5,
    fold_groups: str | Sequence[str] | None = None,
    sparsity_col: str = "sparsity",
    pruner_col: str = "pruner",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_group_size: int = 10,
    return_oof: bool = False,
    n_jobs: int = 1,
    progress: bool | None = None,
    gbt_params: Mapping[str, Any] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-fold R² and MAE (with bootstrap CIs) of each feature set × learner × fold scheme.

    Scopes (see :data:`SCOPES`): ``per_group`` fits each (``group_cols``) group separately;
    ``per_sparsity`` (``by_sparsity=True``) each group × sparsity level; ``pooled`` fits all rows
    at once with the groups as one categorical (fixed effects, so between-group differences are
    absorbed; the sparsity-only baseline shows what that alone explains). Within a unit, every
    feature set and learner sees the same folds and the same bootstrap resamples, so their
    scores are paired (:func:`compare`).

    Parameters
    ----------
    df : DataFrame
        One row per network. Rows with a NaN target are dropped (logged).
    feature_sets : mapping name -> list of column names
        E.g. :func:`mgelib.paperdata.feature_sets`.
    target : str
        What is predicted (e.g. ``"accuracy"``; within a group the accuracy drop is affine in
        it, see :func:`mgelib.paperdata.add_accuracy_drop`).
    folds : {"kfold", "lopo"} or a sequence of them
        Random K-fold (the paper's setting) and/or leave-one-pruner-out.
    learners : sequence of {"ols", "gbt"}
        Learners.
    group_cols : sequence of str
        Grouping of the ``per_group`` scope (``()`` = a single group).
    by_sparsity, per_group, pooled : bool
        Which scopes to run (``pooled`` needs ≥ 2 groups, else it is skipped).
    k : int
        Folds of K-fold.
    fold_groups : str or sequence of str, optional
        Keep these groups within one K-fold fold (e.g. the configuration, so seeds stay
        together); default the paper's plain random K-fold.
    sparsity_col, pruner_col : str
        Column names.
    n_boot, seed, level : int, int, float
        Bootstrap resamples, seed (folds and resamples), confidence level.
    min_group_size : int
        Units with fewer rows are skipped (logged).
    return_oof : bool
        Also return the out-of-fold predictions.
    n_jobs : int
        Processes (joblib) over units; fits inside a unit run single-threaded.
    progress : bool, optional
        tqdm bar; default on unless ``MGELIB_QUIET=1``.
    gbt_params : mapping, optional
        Overrides for the tree model.

    Returns
    -------
    scores : DataFrame
        ``scope``, ``group_cols``…, ``sparsity_col``, ``feature_set``, ``learner``, ``folds``,
        ``n``, ``r2``, ``r2_lo``, ``r2_hi``, ``mae``, ``mae_lo``, ``mae_hi``, ``n_folds``,
        ``n_features``, ``logged`` (features log-transformed in some fold), ``dropped``
        (constant/all-NaN in some fold), ``n_imputed`` (test cells imputed). Group columns are
        ``"all"`` in the pooled scope; ``sparsity_col`` is NaN outside ``per_sparsity``.
    oof : DataFrame, only with ``return_oof``
        One row per (unit, feature set, learner, scheme, network): ``scope``, ``row`` (index
        label in ``df``), ``group_cols``, ``sparsity_col``, ``pruner_col``, ``seed`` (when
        present), ``feature_set``, ``learner``, ``folds``, ``fold``, ``y``, ``y_pred``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"g": np.repeat(["a", "b"], 40), "pruner": np.tile(list("pqrs"), 20),
    ...                    "x": rng.normal(size=80)})
    >>> df["y"] = df["x"] + 0.1 * rng.normal(size=80)
    >>> s = evaluate(df, {"x": ["x"]}, "y", folds=("kfold", "lopo"), group_cols=("g",),
    ...              learners=("ols",), n_boot=100)
    >>> s[["scope", "g", "folds"]].drop_duplicates().shape[0]
    6
    """
    if len(df) == 0:
        raise ValueError("evaluate: empty frame")
    if not feature_sets:
        raise ValueError("evaluate: no feature sets")
    schemes = [folds] if isinstance(folds, str) else list(folds)
    bad = [s for s in schemes if s not in FOLD_SCHEMES]
    if bad or not schemes:
        raise ValueError(f"evaluate: unknown fold scheme(s) {bad}; use {FOLD_SCHEMES}")
    bad = [lr for lr in learners if lr not in LEARNERS]
    if bad or not learners:
        raise ValueError(f"evaluate: unknown learner(s) {bad}; use {LEARNERS}")
    _check_columns(df, [target], "target")
    group_cols = list(group_cols)
    _check_columns(df, group_cols, "group column(s)")
    for name, feats in feature_sets.items():
        if not list(feats):
            raise ValueError(f"evaluate: feature set {name!r} is empty")
        missing = [c for c in feats if c not in df.columns]
        if missing:
            raise ValueError(f"evaluate: feature set {name!r} names unknown feature(s) {missing}")
    if "lopo" in schemes:
        _check_columns(df, [pruner_col], "pruner column (needed for leave-one-pruner-out)")
    if by_sparsity:
        _check_columns(df, [sparsity_col], "sparsity column")
    bad_y = ~np.isfinite(df[target].to_numpy(dtype=float))
    if bad_y.any():
        logger.warning("evaluate: %d rows with a NaN/inf target dropped", int(bad_y.sum()))
        df = df[~bad_y]
        if len(df) == 0:
            raise ValueError(f"evaluate: every {target!r} is NaN")

    keep_cols = [c for c in dict.fromkeys([*group_cols, sparsity_col, pruner_col, "seed"])]
    keep_cols = [c for c in keep_cols if c in df.columns]
    units: list[tuple[dict[str, Any], pd.DataFrame, list[str]]] = []
    grouped = list(df.groupby(group_cols, sort=True, dropna=False)) if group_cols else [((), df)]
    if pooled and len(grouped) > 1:
        pdf = df.copy()
        pdf["__group__"] = pdf[group_cols].astype(str).agg("/".join, axis=1)
        keys = {"scope": "pooled", **{c: "all" for c in group_cols}, sparsity_col: np.nan}
        units.append(({"label": "pooled", "keys": keys}, pdf, ["__group__"]))
    elif pooled:
        logger.info("evaluate: a single group, pooled scope skipped")
    for gkey, gdf in grouped:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        gvals = dict(zip(group_cols, gkey))
        if per_group:
            keys = {"scope": "per_group", **gvals, sparsity_col: np.nan}
            units.append(({"label": f"per_group/{gkey}", "keys": keys}, gdf, []))
        if by_sparsity:
            for s, sdf in gdf.groupby(sparsity_col, sort=True):
                keys = {"scope": "per_sparsity", **gvals, sparsity_col: s}
                units.append(({"label": f"per_sparsity/{gkey}/{s!r}", "keys": keys}, sdf, []))
    runnable = []
    for unit, sub, cats in units:
        if len(sub) < min_group_size:
            logger.warning(
                "evaluate: %s has %d rows < %d, skipped", unit["label"], len(sub), min_group_size
            )
            continue
        runnable.append((unit, sub, cats))
    if not runnable:
        raise ValueError(f"evaluate: no group has ≥ {min_group_size} rows")

    args = dict(
        feature_sets={k_: list(v) for k_, v in feature_sets.items()},
        target=target,
        schemes=schemes,
        learners=list(learners),
        k=k,
        fold_groups=fold_groups,
        pruner_col=pruner_col,
        n_boot=n_boot,
        seed=seed,
        level=level,
        keep_cols=keep_cols,
        gbt_params=gbt_params,
    )
    show = _progress(progress)
    if n_jobs == 1:
        units_iter: Any = runnable
        if show:  # imported only when shown: tqdm.auto warns in kernels without ipywidgets
            from tqdm.auto import tqdm

            units_iter = tqdm(runnable, desc="evaluate")
        results = [_run_unit(u, s, categoricals=c, **args) for u, s, c in units_iter]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(
            delayed(_run_unit)(u, s, categoricals=c, **args) for u, s, c in runnable
        )
    for _, _, skipped in results:  # logged here: worker processes' logs would be lost
        for message in skipped:
            logger.warning("%s", message)
    score_rows = [r for rows, _, _ in results for r in rows]
    if not score_rows:
        raise ValueError("evaluate: no unit could be evaluated with any fold scheme")
    scores = pd.DataFrame(score_rows)
    order = ["scope", *group_cols, sparsity_col, "feature_set", "learner", "folds", *_SCORE_COLUMNS]
    scores = scores[order + [c for c in scores.columns if c not in order]]
    if not return_oof:
        return scores
    oof = pd.concat([o for _, oofs, _ in results for o in oofs], ignore_index=True)
    return scores, oof
