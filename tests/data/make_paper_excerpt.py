"""Write the committed excerpt of the authors' published tables (``tests/data/paper-excerpt``).

Usage: ``python tests/data/make_paper_excerpt.py SOURCE`` with SOURCE a full copy of the
authors' ``graph_data/`` (``graph_metrics/``, ``ramanunjan_results/``; ``invoke
fetch-paper-data`` writes one to ``data/external/paper-data``). The project never commits the
full tables; this excerpt (~300 KB) keeps every parsing quirk the loaders handle (method §9), so
``tests/test_paperdata.py`` checks them on a clone; the tests on the full tables run when
``MGELIB_PAPER_DATA`` points at a copy.

What is kept, as the original lines of text (so number formats, NaN and ``-inf`` stay as written):
- per rolled file (12 per encoding, both schemas): one network — one with an empty layer (NaN
  spectra) and a ``-inf`` Δr in the matching Ramanujan file where there is one, else one with
  either, else the file's first; the same networks in the rolled-channel files; the Ramanujan
  files keep the same row positions as their rolled file (they align by position, having no
  pruner column);
- ``unrolled.csv``: those networks, the 4 collapsed ResNet-32/ProsPr networks (NaN local
  metrics), the 2 networks with a negative raw ``sink_nodes``, 3 networks of the Wide-ResNet /
  Tiny-ImageNet block with their exact duplicates, and 3 MobileNetV2 networks (only in this table).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "paper-excerpt"
NET = ["model", "dataset", "pruner", "sparsity", "seed"]


def _keys(df: pd.DataFrame) -> pd.DataFrame:
    pruner = "pruning_algorithm" if "pruning_algorithm" in df.columns else "pruning"
    return pd.DataFrame(
        {
            "model": df["model"].astype(str),
            "dataset": df["dataset"].astype(str).str.lower(),
            "pruner": df[pruner].astype(str).str.strip().str.lower(),
            "sparsity": df["sparsity"].astype(float).round(6),
            "seed": df["seed"].astype(int),
        }
    )


def _tuples(df: pd.DataFrame) -> pd.Series:
    return pd.Series(list(df[NET].itertuples(index=False, name=None)), index=df.index)


def _write_lines(src: Path, dest: Path, rows: np.ndarray) -> None:
    lines = src.read_text().splitlines(keepends=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(lines[0] + "".join(lines[1 + int(i)] for i in sorted(set(rows.tolist()))))


def main(source: Path) -> None:
    unrolled_path = source / "graph_metrics" / "unrolled" / "unrolled.csv"
    unrolled = pd.read_csv(unrolled_path)
    ukeys = _tuples(_keys(unrolled))
    special = set()
    local = ["sink_nodes", "source_nodes", "disc_nodes", "r-out", "r-in"]
    special |= set(ukeys[unrolled[local].isna().any(axis=1)])
    special |= set(ukeys[unrolled["sink_nodes"] * unrolled["nodes"] < -0.5])
    chosen: set = set()
    for path in sorted((source / "graph_metrics" / "rolled").glob("*.csv")):
        g = pd.read_csv(path)
        k = _tuples(_keys(g))
        gap = "spectral_gap" if "spectral_gap" in g else "spectral_gap_weighted_undirected"
        ram = source / "ramanunjan_results" / str(g["model"].iloc[0]) / path.name
        r = pd.read_csv(ram)
        empty, inf = set(k[g[gap].isna()]), set(k[np.isneginf(r["degree_bound"].to_numpy(float))])
        # one network per file: with both quirks if one has them, else either, else the first
        for pool in (empty & inf, inf, empty, {k.iloc[0]}):
            if pool:
                chosen.add(min(pool))
                break
    # write the per-layer tables: the chosen networks' rows, same positions in Ramanujan files
    for enc in ("rolled", "rolled_channel"):
        for path in sorted((source / "graph_metrics" / enc).glob("*.csv")):
            g = pd.read_csv(path)
            rows = np.flatnonzero(_tuples(_keys(g)).isin(chosen).to_numpy())
            _write_lines(path, OUT / "graph_metrics" / enc / path.name, rows)
            if enc == "rolled":
                ram = source / "ramanunjan_results" / str(g["model"].iloc[0]) / path.name
                _write_lines(ram, OUT / "ramanunjan_results" / ram.parent.name / path.name, rows)
    keep = ukeys.isin(chosen | special).to_numpy().copy()
    dup = unrolled.duplicated(keep=False).to_numpy()
    dup_keys = list(dict.fromkeys(ukeys[dup]))[:3]
    keep |= ukeys.isin(dup_keys).to_numpy()
    mobile = list(dict.fromkeys(ukeys[unrolled["model"] == "MobileNetV2"]))[:3]
    keep |= ukeys.isin(mobile).to_numpy()
    _write_lines(
        unrolled_path, OUT / "graph_metrics" / "unrolled" / "unrolled.csv", np.flatnonzero(keep)
    )
    size = sum(f.stat().st_size for f in OUT.rglob("*.csv"))
    print(f"{len(chosen)} networks; {int(keep.sum())} unrolled rows; {size // 1024} KiB in {OUT}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
