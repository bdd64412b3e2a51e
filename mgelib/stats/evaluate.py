"""Out-of-fold prediction of a target from several feature sets (method §8.2), honestly scored.

:func:`evaluate` runs every feature set × learner × fold scheme on the same folds and the same
bootstrap resamples per unit — (model, dataset), (model, dataset, sparsity), or all rows pooled
with (model, dataset) fixed effects — so their scores are paired (:func:`mgelib.stats.compare`).
What is evaluated how is one frozen :class:`Design` (folds, learners, scopes, bootstrap).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.normal(size=60), "pruner": np.repeat(list("abc"), 20)})
>>> df["y"] = 2 * df["x"] + 0.01 * rng.normal(size=60)
>>> scores = evaluate(df, {"x": ["x"]}, "y", group_cols=(), learners=("ridge",), n_boot=200)
>>> round(float(scores["r2"].iloc[0]), 2)
1.0
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mgelib.stats._common import (
    InsufficientData,
    _boot_idx,
    _check_columns,
    _progress,
    _single_thread,
    _unit_rng,
)
from mgelib.stats.folds import FOLD_SCHEMES, _as_labels, _splits
from mgelib.stats.learners import LEARNERS, _dummies, _fit_arrays, _predict_arrays
from mgelib.stats.scores import bootstrap_scores

__all__ = ["SCOPES", "Design", "evaluate"]

logger = logging.getLogger(__name__)

#: ``per_group``: one fit per (model, dataset); ``per_sparsity``: per (model, dataset, sparsity);
#: ``pooled``: all rows, (model, dataset) as a categorical (fixed effects).
SCOPES: tuple[str, ...] = ("per_group", "per_sparsity", "pooled")
_SCORE_COLUMNS = ("n", "r2", "r2_lo", "r2_hi", "mae", "mae_lo", "mae_hi")


@dataclasses.dataclass(frozen=True)
class Design:
    """The evaluation design of :func:`evaluate`: what is fitted, on which folds, how scored.

    Attributes
    ----------
    folds : tuple of {"kfold", "lopo"}
        Random K-fold (the paper's setting) and/or leave-one-pruner-out.
    learners : tuple of {"ridge", "gbt"}
        Prediction learners (:mod:`mgelib.stats.learners`).
    group_cols : tuple of str
        Grouping of the ``per_group`` scope (``()`` = a single group).
    per_group, by_sparsity, pooled : bool
        Which scopes (:data:`SCOPES`) run; ``pooled`` needs ≥ 2 groups, else it is skipped.
    k : int
        Folds of K-fold.
    fold_groups : str or tuple of str, optional
        Columns kept within one K-fold fold (e.g. the configuration, so seeds stay together).
    sparsity_col, pruner_col : str
        Column names.
    n_boot, seed, level : int, int, float
        Bootstrap resamples, seed (folds, resamples, inner CV, trees), confidence level.
    min_group_size : int
        Units with fewer rows are skipped (logged).
    gbt_params : tuple of (name, value) pairs, optional
        Overrides for the tree model (a tuple so the design stays hashable).

    Examples
    --------
    >>> Design(folds=("lopo",)).learners
    ('ridge', 'gbt')
    """

    folds: tuple[str, ...] = ("kfold",)
    learners: tuple[str, ...] = LEARNERS
    group_cols: tuple[str, ...] = ("model", "dataset")
    per_group: bool = True
    by_sparsity: bool = False
    pooled: bool = True
    k: int = 5
    fold_groups: str | tuple[str, ...] | None = None
    sparsity_col: str = "sparsity"
    pruner_col: str = "pruner"
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    min_group_size: int = 10
    gbt_params: tuple[tuple[str, Any], ...] | None = None

    def __post_init__(self) -> None:
        # Accept a string or any sequence where a tuple is meant, and say what is wrong early.
        for name in ("folds", "learners", "group_cols"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if isinstance(self.fold_groups, list):
            object.__setattr__(self, "fold_groups", tuple(self.fold_groups))
        if isinstance(self.gbt_params, Mapping):
            object.__setattr__(self, "gbt_params", tuple(sorted(self.gbt_params.items())))
        bad = [s for s in self.folds if s not in FOLD_SCHEMES]
        if bad or not self.folds:
            raise ValueError(f"evaluate: unknown fold scheme(s) {bad}; use {FOLD_SCHEMES}")
        bad = [lr for lr in self.learners if lr not in LEARNERS]
        if bad or not self.learners:
            raise ValueError(f"evaluate: unknown learner(s) {bad}; use {LEARNERS}")


def _inner_labels(sub: pd.DataFrame, scheme: str, design: Design) -> np.ndarray | None:
    """Groups of the ridge penalty's inner CV: the outer scheme's own grouping, so the penalty
    is chosen for what the outer folds test (an unseen pruner; unseen configurations)."""
    if scheme == "lopo":
        return pd.factorize(sub[design.pruner_col].to_numpy())[0]
    if design.fold_groups is not None:
        return _as_labels(sub, design.fold_groups)
    return None


def _fit_oof(
    A: np.ndarray,
    y: np.ndarray,
    D: np.ndarray | None,
    splits: list,
    learner: str,
    inner: np.ndarray | None,
    design: Design,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold predictions of one feature set × learner over ``splits``."""
    pred = np.full(len(y), np.nan)
    logged: set[str] = set()
    dropped: set[int] = set()
    imputed, alphas = 0, []
    gbt = dict(design.gbt_params) if design.gbt_params else None
    for tr, te in splits:
        st = _fit_arrays(
            A[tr],
            y[tr],
            None if D is None else D[tr],
            learner,
            random_state=design.seed,
            gbt_params=gbt,
            inner_groups=None if inner is None else inner[tr],
        )
        pred[te], n_imp, _ = _predict_arrays(st, A[te], None if D is None else D[te])
        logged.update(np.flatnonzero(st["logged"]).tolist())
        dropped.update(np.flatnonzero(st["constant"] | st["all_nan"]).tolist())
        imputed += n_imp
        if "alpha" in st:
            alphas.append(st["alpha"] / len(tr))
    info = {"logged": logged, "dropped": dropped, "n_imputed": imputed}
    info["alpha_rel"] = float(np.median(alphas)) if alphas else np.nan
    return pred, info


def _run_unit(
    unit: dict[str, Any],
    sub: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    categoricals: Sequence[str],
    keep_cols: Sequence[str],
    design: Design,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame], list[str]]:
    rows: list[dict[str, Any]] = []
    oofs: list[pd.DataFrame] = []
    skipped: list[str] = []
    y = sub[target].to_numpy(dtype=float)
    n = len(sub)
    idx = _boot_idx(n, design.n_boot, _unit_rng(design.seed, unit["label"]))
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
        for scheme in design.folds:
            if scheme == "lopo" and sub[design.pruner_col].nunique() < 2:
                skipped.append(f"{unit['label']}: a single pruner, leave-one-pruner-out skipped")
                continue
            try:
                splits = _splits(
                    sub, scheme, design.k, design.seed, design.fold_groups, design.pruner_col
                )
            except ValueError as err:
                skipped.append(f"{unit['label']}: {scheme} folds skipped ({err})")
                continue
            fold_id = np.empty(n, dtype=int)
            for f, (_, te) in enumerate(splits):
                fold_id[te] = f
            inner = _inner_labels(sub, scheme, design)
            for fs_name, feats in feature_sets.items():
                for learner in design.learners:
                    pred, info = _fit_oof(arrays[fs_name], y, D, splits, learner, inner, design)
                    sc = bootstrap_scores(y, pred, idx=idx, level=design.level)
                    rows.append(
                        {
                            **unit["keys"],
                            "feature_set": fs_name,
                            "learner": learner,
                            "folds": scheme,
                            **sc,
                            "n_folds": len(splits),
                            "n_features": len(feats),
                            "logged": ",".join(sorted(feats[i] for i in info["logged"])),
                            "dropped": ",".join(sorted(feats[i] for i in info["dropped"])),
                            "n_imputed": info["n_imputed"],
                            "alpha_rel": info["alpha_rel"],
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


def _check_inputs(
    df: pd.DataFrame, feature_sets: Mapping[str, Sequence[str]], target: str, design: Design
) -> pd.DataFrame:
    """Every name checked before any fit (a typo raises, naming it); NaN targets dropped."""
    if len(df) == 0:
        raise ValueError("evaluate: empty frame")
    if not feature_sets:
        raise ValueError("evaluate: no feature sets")
    _check_columns(df, [target], "target")
    _check_columns(df, design.group_cols, "group column(s)")
    for name, feats in feature_sets.items():
        if not list(feats):
            raise ValueError(f"evaluate: feature set {name!r} is empty")
        missing = [c for c in feats if c not in df.columns]
        if missing:
            raise ValueError(f"evaluate: feature set {name!r} names unknown feature(s) {missing}")
    if "lopo" in design.folds:
        _check_columns(df, [design.pruner_col], "pruner column (needed for leave-one-pruner-out)")
    if isinstance(design.fold_groups, (str, tuple)):
        groups = (
            (design.fold_groups,) if isinstance(design.fold_groups, str) else design.fold_groups
        )
        _check_columns(df, groups, "fold_groups column(s)")
    if design.by_sparsity:
        _check_columns(df, [design.sparsity_col], "sparsity column")
    bad_y = ~np.isfinite(df[target].to_numpy(dtype=float))
    if bad_y.any():
        logger.warning("evaluate: %d rows with a NaN/inf target dropped", int(bad_y.sum()))
        df = df[~bad_y]
    return df


def _units(df: pd.DataFrame, design: Design) -> list[tuple[dict[str, Any], pd.DataFrame, list]]:
    """The units of the design's scopes, each ``(label and keys, rows, categoricals)``."""
    group_cols, scol = list(design.group_cols), design.sparsity_col
    units: list[tuple[dict[str, Any], pd.DataFrame, list[str]]] = []
    grouped = list(df.groupby(group_cols, sort=True, dropna=False)) if group_cols else [((), df)]
    if design.pooled and len(grouped) > 1:
        pdf = df.copy()
        pdf["__group__"] = pdf[group_cols].astype(str).agg("/".join, axis=1)
        keys = {"scope": "pooled", **{c: "all" for c in group_cols}, scol: np.nan}
        units.append(({"label": "pooled", "keys": keys}, pdf, ["__group__"]))
    elif design.pooled:
        logger.info("evaluate: a single group, pooled scope skipped")
    for gkey, gdf in grouped:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        gvals = dict(zip(group_cols, gkey))
        if design.per_group:
            keys = {"scope": "per_group", **gvals, scol: np.nan}
            units.append(({"label": f"per_group/{gkey}", "keys": keys}, gdf, []))
        if design.by_sparsity:
            for s, sdf in gdf.groupby(scol, sort=True):
                keys = {"scope": "per_sparsity", **gvals, scol: s}
                units.append(({"label": f"per_sparsity/{gkey}/{s!r}", "keys": keys}, sdf, []))
    runnable = []
    for unit, sub, cats in units:
        if len(sub) < design.min_group_size:
            logger.warning(
                "evaluate: %s has %d rows < %d, skipped",
                unit["label"],
                len(sub),
                design.min_group_size,
            )
            continue
        runnable.append((unit, sub, cats))
    return runnable


def evaluate(
    df: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    design: Design | None = None,
    *,
    return_oof: bool = False,
    n_jobs: int = 1,
    progress: bool | None = None,
    **overrides: Any,
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
    design : Design, optional
        Folds, learners, scopes and bootstrap settings; default :class:`Design()`.
    return_oof : bool
        Also return the out-of-fold predictions.
    n_jobs : int
        Processes (joblib) over units; fits inside a unit run single-threaded.
    progress : bool, optional
        tqdm bar; default on unless ``MGELIB_QUIET=1``.
    **overrides
        Fields of :class:`Design` replacing those of ``design`` (e.g. ``folds="lopo"``).

    Returns
    -------
    scores : DataFrame
        ``scope``, ``group_cols``…, ``sparsity_col``, ``feature_set``, ``learner``, ``folds``,
        ``n``, ``r2``, ``r2_lo``, ``r2_hi``, ``mae``, ``mae_lo``, ``mae_hi``, ``n_folds``,
        ``n_features``, ``logged`` (features log-transformed in some fold), ``dropped``
        (constant/all-NaN in some fold), ``n_imputed`` (test cells imputed), ``alpha_rel``
        (ridge: median penalty / training size over folds). Group columns are ``"all"`` in the
        pooled scope; ``sparsity_col`` is NaN outside ``per_sparsity``.
    oof : DataFrame, only with ``return_oof``
        One row per (unit, feature set, learner, scheme, network): ``scope``, ``row`` (index
        label in ``df``), ``group_cols``, ``sparsity_col``, ``pruner_col``, ``seed`` (when
        present), ``feature_set``, ``learner``, ``folds``, ``fold``, ``y``, ``y_pred``.

    Raises
    ------
    ValueError
        A name that is not a column (feature, target, group), an unknown fold scheme or learner.
    InsufficientData
        No unit large enough, or no unit that any fold scheme can split.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"g": np.repeat(["a", "b"], 40), "pruner": np.tile(list("pqrs"), 20),
    ...                    "x": rng.normal(size=80)})
    >>> df["y"] = df["x"] + 0.1 * rng.normal(size=80)
    >>> s = evaluate(df, {"x": ["x"]}, "y", folds=("kfold", "lopo"), group_cols=("g",),
    ...              learners=("ridge",), n_boot=100)
    >>> s[["scope", "g", "folds"]].drop_duplicates().shape[0]
    6
    """
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Design)})
    if unknown:
        raise TypeError(f"evaluate: unknown argument(s) {unknown}; Design fields or keywords")
    design = dataclasses.replace(design or Design(), **overrides)
    df = _check_inputs(df, feature_sets, target, design)
    if len(df) == 0:
        raise InsufficientData(f"evaluate: every {target!r} is NaN")
    keep_cols = list(dict.fromkeys([*design.group_cols, design.sparsity_col, design.pruner_col]))
    keep_cols = [c for c in [*keep_cols, "seed"] if c in df.columns]
    runnable = _units(df, design)
    if not runnable:
        raise InsufficientData(f"evaluate: no group has ≥ {design.min_group_size} rows")
    sets = {k_: list(v) for k_, v in feature_sets.items()}
    args = dict(feature_sets=sets, target=target, keep_cols=keep_cols, design=design)
    if n_jobs == 1:
        units_iter: Any = runnable
        if _progress(progress):  # imported only when shown: tqdm.auto warns without ipywidgets
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
        raise InsufficientData("evaluate: no unit could be evaluated with any fold scheme")
    scores = pd.DataFrame(score_rows)
    order = ["scope", *design.group_cols, design.sparsity_col, "feature_set", "learner", "folds"]
    order += list(_SCORE_COLUMNS)
    scores = scores[order + [c for c in scores.columns if c not in order]]
    if not return_oof:
        return scores
    oof = pd.concat([o for _, oofs, _ in results for o in oofs], ignore_index=True)
    return scores, oof
