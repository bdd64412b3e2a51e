"""What notebooks 40, 50 and 55 share beyond single steps: one setup (:func:`setup` →
:class:`Study`), the pruner subsets every claim is reported for (:func:`pruner_subsets`:
PaI only, DST only, all algorithms, from the ``pruner`` column), and the checks of their last
cell (:func:`check_claims`, :func:`check_importance`, :func:`check_scores`).

Examples
--------
>>> pruner_family("snip+shuffle"), pruner_family("rigl"), is_shuffled("snip+shuffle")
('pai', 'dst', True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgelib import stats, vocabulary
from mgelib.analysis.data import (
    load_networks,
    parse_list,
    record_params,
    resolve_output_dir,
    target_column,
)

__all__ = [
    "SUBSETS",
    "SHUFFLE_SUFFIX",
    "Study",
    "setup",
    "notebook_params",
    "pruner_family",
    "is_shuffled",
    "pruner_subsets",
    "check_claims",
    "check_importance",
    "check_scores",
    "evaluate_subsets",
    "verdict_counts",
    "strip_paths",
]

#: The pruner subsets every claim is reported for: the PaI algorithms, the DST methods, all.
SUBSETS: tuple[str, ...] = ("pai", "dst", "all")
#: A pruner label ``<pruner>+shuffle`` is the layer-wise-density null model of ``<pruner>``.
SHUFFLE_SUFFIX = "+shuffle"


def pruner_family(pruner: str) -> str:
    """``"pai"``, ``"dst"`` or ``"other"`` (a user pruner) of a label, ``+shuffle`` ignored.

    Examples
    --------
    >>> [pruner_family(p) for p in ("erk", "set", "mine.py:prune")]
    ['pai', 'dst', 'other']
    """
    base = str(pruner).split("+")[0]
    if base in vocabulary.PAI_PRUNERS:
        return "pai"
    if base in vocabulary.DST_METHODS:
        return "dst"
    return "other"


def is_shuffled(pruner: str) -> bool:
    """Whether a pruner label is a ``+shuffle`` twin (method §4)."""
    return str(pruner).endswith(SHUFFLE_SUFFIX)


def pruner_subsets(
    nets: pd.DataFrame, names: Sequence[str] = SUBSETS
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The networks of each subset ``names`` (``+shuffle`` twins excluded: they are the null
    model, compared separately), with notes on the subsets left out (empty, or identical to
    an earlier one, e.g. "all" when there is no DST run).

    Examples
    --------
    >>> nets = pd.DataFrame({"pruner": ["snip", "erk", "rigl", "snip+shuffle"]})
    >>> subsets, notes = pruner_subsets(nets)
    >>> {k: len(v) for k, v in subsets.items()}
    {'pai': 2, 'dst': 1, 'all': 3}
    """
    bad = [n for n in names if n not in SUBSETS]
    if bad:
        raise ValueError(f"unknown pruner subset(s) {bad}; use {SUBSETS}")
    family = nets["pruner"].map(pruner_family)
    original = ~nets["pruner"].map(is_shuffled)
    out: dict[str, pd.DataFrame] = {}
    notes = []
    for name in names:
        keep = original if name == "all" else original & (family == name)
        sub = nets[keep.to_numpy()]
        if len(sub) == 0:
            notes.append(f"subset {name}: no network, not reported")
            continue
        same = [k for k, v in out.items() if v.index.equals(sub.index)]
        if same:
            notes.append(f"subset {name}: the same networks as {same[0]}, not repeated")
            continue
        out[name] = sub
    return out, notes


def notebook_params(stem: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The values of notebook ``stem``'s declared parameters in ``namespace`` (its globals):
    what it ran with, without listing the names a second time."""
    from mgelib.notebooks import notebook_parameters

    declared = notebook_parameters(stem)
    missing = [n for n in declared if n not in namespace]
    if missing:
        raise ValueError(f"{stem}: parameter(s) {missing} are not defined in the namespace")
    return {n: namespace[n] for n in declared}


@dataclasses.dataclass(frozen=True)
class Study:
    """The setup of a study notebook: where it writes, what it predicts, how it evaluates."""

    stem: str
    params: dict[str, Any]
    out: Path
    figures: Path
    target: str
    nets: pd.DataFrame
    design: stats.Design
    aggregations: list[str]
    n_jobs: int

    def evaluate_kwargs(self) -> dict[str, Any]:
        """Keywords of :func:`mgelib.analysis.evaluate_or_skip` for this study's design."""
        return {"design": self.design, "progress": False}


def setup(stem: str, namespace: Mapping[str, Any]) -> Study:
    """Everything a study notebook does before its analysis: parse and record its parameters,
    resolve its output folder, load the networks and state what was loaded.

    The notebook's parameters are read from ``namespace`` (pass ``globals()``); the names that
    matter here — ``source``, ``collected``, ``paper_data``, ``paper_subset``, ``profile``,
    ``output_dir``, ``pruners``, ``folds``, ``learners``, ``aggregation``, ``k``, ``n_boot``,
    ``seed``, ``n_jobs`` — are those of notebooks 40, 50 and 55.
    """
    from mgelib.analysis.evaluation import resolve_jobs

    p = notebook_params(stem, namespace)
    out = resolve_output_dir(p["output_dir"], p["profile"], stem)
    target = target_column(p["source"])
    design = stats.Design(
        folds=tuple(parse_list(p["folds"], stats.FOLD_SCHEMES, "folds")),
        learners=tuple(parse_list(p["learners"], stats.LEARNERS, "learners")),
        k=p["k"],
        n_boot=p["n_boot"],
        seed=p["seed"],
    )
    aggs = parse_list(p["aggregation"], ("mean", "wmean"), "aggregation")
    # Paths are recorded as given (empty = resolved through mgelib.paths), never expanded.
    record_params(out, {k: v for k, v in p.items() if k != "output_dir"})
    nets = load_networks(
        p["source"],
        collected=p["collected"],
        paper_data=p["paper_data"],
        paper_subset=p["paper_subset"],
        profile=p["profile"],
        pruners=p.get("pruners", "all"),
    )
    print(f"source: {p['source']}; target: {target}; output folder: {out.name}")
    print(
        f"{len(nets)} sparse networks in {nets.groupby(['model', 'dataset']).ngroups} "
        f"(model, dataset) groups, {nets['pruner'].nunique()} pruners "
        f"({', '.join(sorted(nets['pruner'].unique()))}), {nets['sparsity'].nunique()} sparsities"
    )
    return Study(
        stem=stem,
        params=p,
        out=out,
        figures=out / "figures",
        target=target,
        nets=nets,
        design=design,
        aggregations=aggs,
        n_jobs=resolve_jobs(p["n_jobs"], len(nets)),
    )


def check_claims(folder: str | Path) -> pd.DataFrame:
    """The last cell's checks of a ``claims.csv``: its columns, a rule on every row, every
    verdict in :data:`mgelib.stats.VERDICTS`, finite numbers wherever a verdict was decided.
    Raises ``AssertionError`` naming the first failure; returns the table."""
    written = pd.read_csv(Path(folder) / "claims.csv", keep_default_na=False, na_values=[""])
    assert list(written.columns) == list(stats.CLAIMS_COLUMNS), list(written.columns)
    assert len(written) >= 1, "claims.csv has no row"
    bad = written[~written["verdict"].isin(stats.VERDICTS)]
    assert bad.empty, f"verdicts outside {stats.VERDICTS}: {sorted(set(bad['verdict']))}"
    assert written["rule"].astype(str).str.strip().ne("").all(), "a claims row states no rule"
    decided = written["verdict"] != stats.INSUFFICIENT
    vals = written.loc[decided, ["estimate", "ci_low", "ci_high"]].to_numpy(float)
    assert np.isfinite(vals).all(), "a decided claims row has a non-finite estimate or CI"
    return written


def check_importance(imp: pd.DataFrame) -> None:
    """No NaN importance is ranked; ranks are 1…m within each unit over the defined ones."""
    if len(imp) == 0:
        return
    undefined = ~np.isfinite(imp["importance"].to_numpy(float))
    assert imp.loc[undefined, "rank"].isna().all(), "a NaN importance was ranked"
    assert (imp.loc[undefined, "status"] == "undefined").all(), "a NaN importance is not marked"
    for unit, g in imp[~undefined].groupby("unit"):
        ranks = sorted(g["rank"].astype(int))
        assert ranks == list(range(1, len(g) + 1)), f"ranks of {unit} are {ranks}"


def check_scores(scores: pd.DataFrame, floor: float = -1.0) -> None:
    """No linear learner's mean out-of-fold R² over the units of a scope, feature set and
    scheme falls below ``floor``: such a value is a learner that blew up, a bug to fix."""
    if len(scores) == 0:
        return
    lin = scores[scores["learner"].isin(stats.LINEAR_LEARNERS)]
    if len(lin) == 0:
        return
    mean = lin.groupby(["scope", "feature_set", "folds"])["r2"].mean()
    bad = mean[mean < floor]
    assert bad.empty, f"a linear learner blew up (mean R² < {floor}): {bad.round(2).to_dict()}"


def evaluate_subsets(
    subsets: Mapping[str, pd.DataFrame],
    feature_sets: Mapping[str, Sequence[str]],
    study: Study,
    **overrides: Any,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """:func:`mgelib.analysis.evaluate_or_skip` of the same feature sets on every pruner subset
    (same design, folds and resamples per unit): ``{subset: (scores, oof)}``. Under
    leave-one-pruner-out every pruner of a subset — DST methods included — is held out once."""
    from mgelib.analysis.evaluation import evaluate_or_skip, resolve_jobs

    out = {}
    for name, sub in subsets.items():
        print(f"subset {name}: {len(sub)} networks, {sub['pruner'].nunique()} pruners")
        scores, oof, _ = evaluate_or_skip(
            sub,
            feature_sets,
            study.target,
            design=study.design,
            progress=False,
            n_jobs=resolve_jobs(study.params["n_jobs"], len(sub)),
            **overrides,
        )
        out[name] = (scores, oof)
    return out


def verdict_counts(claims: pd.DataFrame) -> pd.DataFrame:
    """How many claims rows reach each verdict, per subset (columns in
    :data:`mgelib.stats.VERDICTS` order), printed as one sentence per subset.

    Examples
    --------
    >>> t = pd.DataFrame({"subset": ["pai", "pai"], "verdict": ["supported", "contradicted"]})
    >>> verdict_counts(t).loc["pai", "supported"]
    pai: 1 supported, 1 contradicted, 0 no difference shown, 0 insufficient data (of 2 rows).
    np.int64(1)
    """
    table = (
        claims.groupby(["subset", "verdict"], sort=False)
        .size()
        .unstack(fill_value=0)
        .reindex(columns=list(stats.VERDICTS), fill_value=0)
    )
    for subset, row in table.iterrows():
        parts = ", ".join(f"{int(n)} {v}" for v, n in row.items())
        print(f"{subset or 'all rows'}: {parts} (of {int(row.sum())} rows).")
    return table


def strip_paths(folder: str | Path, root: str | Path) -> list[Path]:
    """Rewrite the executed notebooks (``.ipynb``, ``.html``) and JSON files under ``folder``
    so that no absolute path of this machine remains: ``root`` (the repository) becomes ``.``,
    the Python prefix ``<python>`` and the home folder ``~``. For reports that are committed.
    Returns the files changed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.ipynb").write_text('{"output_dir": "/repo/reports/paper"}')
    >>> [p.name for p in strip_paths(d, "/repo")], (d / "a.ipynb").read_text()
    (['a.ipynb'], '{"output_dir": "./reports/paper"}')
    """
    import re
    import sys

    from mgelib import io

    swaps = [(str(Path(root).resolve()), "."), (str(Path(root)), ".")]
    swaps += [(sys.prefix, "<python>"), (sys.base_prefix, "<python>"), (str(Path.home()), "~")]
    swaps = [(a, b) for a, b in swaps if a not in ("", "/", ".")]
    changed = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix not in (".ipynb", ".html", ".json") or not path.is_file():
            continue
        text = new = path.read_text(encoding="utf-8")
        for a, b in sorted(set(swaps), key=lambda s: -len(s[0])):
            # a whole path component only: /repo must not match the start of /reports
            new = re.sub(re.escape(a) + r"(?![\w.-])", b, new)
        if new != text:
            with io.atomic_path(path) as tmp:
                tmp.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed
