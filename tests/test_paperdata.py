"""mgelib.paperdata: the authors' tables (method §9) — every quirk pinned down by a test.

The quirk tests run twice: on the committed excerpt (``tests/data/paper-excerpt``, always) and,
marked ``paperdata``, on the full tables at ``mgelib.paths.paper_data_dir()`` (``MGELIB_PAPER_DATA``;
skipped where absent). The others run on small synthetic tables written to ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgelib import paperdata as pdt
from mgelib import paths

#: The committed excerpt (``tests/data/make_paper_excerpt.py``): every quirk, 12 + 11 networks.
EXCERPT = Path(__file__).resolve().parent / "data" / "paper-excerpt"
#: The full tables: ``MGELIB_PAPER_DATA`` or ``data/external/paper-data`` (``.ci/run`` sets it).
FULL = paths.paper_data_dir()

#: What each copy holds; the full-table numbers are the published files' (method §9).
EXPECTED = {
    "excerpt": dict(
        n_read=26,
        n_duplicates=3,
        n_unrolled=23,
        n_dropna=19,
        n_networks=12,
        n_layers=282,
        n_nan_spectra=29,
        n_inf=11,
        n_nan_degree_bound=44,
        n_joined=12,
        membership={"unrolled+rolled+rolled_channel+ramanujan": 12, "unrolled": 11},
        not_joined_mobilenet=4,
        n_outer=(23, 23, 12),
        n_nan_feature_sets=None,
    ),
    "full": dict(
        n_read=2337,
        n_duplicates=47,
        n_unrolled=2290,
        n_dropna=2286,
        n_networks=1975,
        n_layers=46392,
        n_nan_spectra=187,
        n_inf=90,
        n_nan_degree_bound=350,  # 260 NaN + 90 former −inf
        n_joined=1932,
        membership={
            "unrolled+rolled+rolled_channel+ramanujan": 1932,
            "unrolled": 358,
            "rolled+rolled_channel+ramanujan": 43,
        },
        not_joined_mobilenet=358,
        n_outer=(2333, 2290, 1975),
        # 4 collapsed networks lack the MGE local metrics; in 44 ResNet networks at high
        # sparsity (mostly 0.98) no layer qualifies for imsg / imdb (method §7: NaN).
        n_nan_feature_sets={
            "sparsity": 0,
            "density": 0,
            "ramanujan": 44,
            "ramanujan+density": 44,
            "rolled": 0,
            "rolled_channel": 0,
            "mge": 4,
            "mge+sparsity": 4,
        },
    ),
}


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(
    scope="module", params=["excerpt", pytest.param("full", marks=pytest.mark.paperdata)]
)
def src(request) -> tuple[Path, dict]:
    """(root, expected numbers) of the excerpt, and of the full tables when present."""
    if request.param == "excerpt":
        return EXCERPT, EXPECTED["excerpt"]
    if not (FULL / "graph_metrics").is_dir():
        pytest.skip(f"the authors' full tables are not at {FULL} (set MGELIB_PAPER_DATA)")
    return FULL, EXPECTED["full"]


@pytest.fixture(scope="module")
def expected(src) -> dict:
    return src[1]


@pytest.fixture(scope="module")
def unrolled(src) -> pd.DataFrame:
    return pdt.load_unrolled(src[0])


@pytest.fixture(scope="module")
def raw_unrolled(src) -> pd.DataFrame:
    return pd.read_csv(src[0] / "graph_metrics" / "unrolled" / "unrolled.csv")


@pytest.fixture(scope="module")
def rolled(src) -> pd.DataFrame:
    return pdt.load_rolled("rolled", src[0])


@pytest.fixture(scope="module")
def rolled_channel(src) -> pd.DataFrame:
    return pdt.load_rolled("rolled_channel", src[0])


@pytest.fixture(scope="module")
def ramanujan(src) -> pd.DataFrame:
    return pdt.load_ramanujan(src[0])


@pytest.fixture(scope="module")
def joined(src) -> pd.DataFrame:
    return pdt.joined(src[0])


# --------------------------------------------------------------------------- authors' tables
class TestUnrolled:
    def test_exact_duplicates_all_wrn_tinyimagenet(self, raw_unrolled, unrolled, expected):
        assert len(raw_unrolled) == expected["n_read"]
        dup = raw_unrolled[raw_unrolled.duplicated()]
        assert len(dup) == expected["n_duplicates"]
        assert set(zip(dup["model"], dup["dataset"])) == {("Wide-Resnet-28-2", "tinyimagenet")}
        rep = unrolled.attrs["report"]
        assert rep["n_duplicates"] == expected["n_duplicates"]
        assert rep["n_read"] == expected["n_read"]
        assert len(unrolled) == expected["n_unrolled"]
        assert not unrolled.duplicated(list(pdt.KEY)).any()

    def test_vocabulary(self, unrolled, src):
        full = src[0] != EXCERPT
        assert set(unrolled["model"]) == set(pdt.MODEL_NAMES.values())
        assert set(unrolled["dataset"]) == {"cifar10", "cifar100", "tinyimagenet"}
        pruners = set(pdt.PAI_PRUNERS) | set(pdt.DST_PRUNERS)
        assert set(unrolled["pruner"]) == pruners if full else set(unrolled["pruner"]) <= pruners
        fam = unrolled.groupby("pruner")["family"].unique().map(tuple).to_dict()
        assert all(fam[p] == ("pai",) for p in pdt.PAI_PRUNERS if p in fam)
        assert all(fam[p] == ("dst",) for p in pdt.DST_PRUNERS if p in fam)
        assert set(unrolled["sparsity"]) <= {0.6, 0.8, 0.9, 0.95, 0.98}
        np.testing.assert_allclose(unrolled["density"], 1 - unrolled["sparsity"])
        assert unrolled["accuracy"].between(0, 1).all()
        assert list(unrolled.columns[: len(pdt.KEY)]) == list(pdt.KEY)
        assert all(m in unrolled.columns for m in pdt.MGE_METRICS)

    @pytest.mark.parametrize("metric", pdt.INTEGER_METRICS)
    def test_integer_metrics_pin_down_the_divisor(self, unrolled, metric):
        """value × divisor is an integer on every row; × the other divisor it is not."""
        div = pdt.NORMALISED_BY[metric]
        other = "edges" if div == "nodes" else "nodes"
        v = unrolled[metric].dropna()
        raw = v * unrolled.loc[v.index, div]
        assert np.abs(raw - np.rint(raw)).max() < 1e-6
        wrong = v * unrolled.loc[v.index, other]
        assert (np.abs(wrong - np.rint(wrong)) > 1e-3).mean() > 0.5
        np.testing.assert_array_equal(unrolled.loc[v.index, f"raw_{metric}"], np.rint(raw))

    def test_other_divisors_by_identity(self, unrolled, src):
        V = unrolled["nodes"].astype(float)
        E = unrolled["edges"].astype(float)
        # mean out-neighbourhood size incl. the node itself = 1 + E/V, stored ÷ E
        np.testing.assert_allclose(unrolled["1-hop_nei"] * E, 1 + E / V, rtol=1e-9)
        # mean component size = V / #components, stored ÷ V
        prod = unrolled["mean_connected_components"] * unrolled["no_connected_components"]
        np.testing.assert_allclose(prod, 1.0, rtol=1e-9)
        # sums over nodes of integer counts: value × E × V is an integer
        for m, tol in (("2-hop_nei", 1e-3), ("k-core", 1e-6)):
            s = unrolled[m] * E * V
            assert np.abs(s - np.rint(s)).max() < tol, m
        # the motif estimate is an integer count, stored ÷ E
        s = unrolled["motif"] * E
        small = s < 1e11  # beyond, float64 spacing ~1e-5 makes the check meaningless
        assert small.sum() > (500 if src[0] != EXCERPT else 3)
        assert np.abs(s[small] - np.rint(s[small])).max() < 1e-3

    def test_nan_rows_reported_and_droppable(self, unrolled, src, expected):
        rep = unrolled.attrs["report"]
        assert rep["n_nan_rows"] == 4
        nan = pdt.nan_report(unrolled)
        assert len(nan) == 4
        assert set(nan["model"]) == {"resnet32"} and set(nan["pruner"]) == {"prospr"}
        assert set(nan["sparsity"]) == {0.98}
        local = "sink_nodes,source_nodes,disc_nodes,r-out,r-in"
        assert set(nan["nan_columns"]) == {local}
        chance = {"cifar10": 0.1, "cifar100": 0.01, "tinyimagenet": 0.005}
        assert all(abs(a - chance[d]) < 1e-9 for a, d in zip(nan["accuracy"], nan["dataset"]))
        dropped = pdt.load_unrolled(src[0], dropna=True)
        assert len(dropped) == expected["n_dropna"]
        assert not dropped[list(pdt.MGE_METRICS)].isna().any().any()

    def test_negative_sink_nodes_reference_defect(self, unrolled):
        # The authors subtract the whole output partition (method §6): it can go negative.
        neg = unrolled[unrolled["raw_sink_nodes"] < 0]
        assert sorted(neg["raw_sink_nodes"].tolist()) == [-21.0, -6.0]


class TestRolled:
    @pytest.mark.parametrize(
        ("encoding", "short"),
        [
            ("rolled", "rolled-tinyimagenet-CONV-6.csv"),
            ("rolled_channel", "rolled_channel-tinyimagenet-Resnet-32.csv"),
        ],
    )
    def test_two_schemas_unified(self, encoding, short, rolled, rolled_channel, expected):
        df = rolled if encoding == "rolled" else rolled_channel
        rep = df.attrs["report"]
        assert rep["short_schema_files"] == [short] and short in pdt.SHORT_SCHEMA_FILES
        assert len(rep["long_schema_files"]) == 11
        assert set(df["schema"]) == {"57", "21"}  # method §9 once said 68; the files have 57
        assert set(df.loc[df["source_file"] == short, "schema"]) == {"21"}
        assert set(rep["dropped_all_nan_columns"]) == {"motifs", "coreness_out", "transitivity"}
        assert "layer_sparsity" not in df.columns and "pruning_algorithm" not in df.columns
        is_short = df["schema"] == "21"
        # The shared metrics are filled in both schemas…
        for m in ("cut-edges", "cut-nodes", "motif", "1-hop_nei", "k-core"):
            assert df[m].notna().all(), m
        # …the 57-only ones are NaN on the short-schema rows.
        assert df.loc[is_short, "assortativity"].isna().all()
        assert df.loc[~is_short, "unique_edges"].notna().all()
        assert rep["n_networks"] == expected["n_networks"]
        assert len(df) == expected["n_layers"]

    def test_nan_spectra_are_empty_layers(self, rolled, rolled_channel, expected):
        for df in (rolled, rolled_channel):
            nan = df["spectral_gap"].isna()
            assert nan.sum() == expected["n_nan_spectra"]
            assert (df.loc[nan, "no_weights"] == 0).all()

    def test_layer_sparsity_is_a_density(self, rolled, ramanujan):
        # rolled: edges are the kept weights of the layer = layer_density × layer size
        np.testing.assert_array_equal(rolled["edges"], rolled["no_weights"])
        ratio = ramanujan["no_weights"] / ramanujan["no_params"]
        assert np.abs(ratio - ramanujan["layer_density"]).max() < 1e-6
        # and it is not a sparsity: summed over a PaI network it gives 1 − sparsity
        pai = ramanujan[ramanujan["pruner"].isin(["snip", "grasp", "synflow", "prospr"])]
        assert len(pai)
        tot = pai.groupby(list(pdt.KEY))[["no_weights", "no_params"]].sum().reset_index()
        realised = tot["no_weights"] / tot["no_params"]
        assert np.abs(realised - (1 - tot["sparsity"])).max() < 1e-3


class TestRamanujan:
    def test_aligned_with_rolled(self, ramanujan, rolled):
        rep = ramanujan.attrs["report"]
        assert rep["mismatches"] == {} and rep["n_files"] == 12
        assert len(ramanujan) == len(rolled)
        # The attached pruner makes every (network, layer) match its rolled row exactly.
        on = [*pdt.KEY, "layer_id"]
        m = ramanujan.merge(rolled, on=on, how="outer", indicator=True, validate="1:1")
        assert (m["_merge"] == "both").all()
        assert (m["layer_name_x"] == m["layer_name_y"]).all()
        np.testing.assert_array_equal(m["no_weights_x"], m["edges"])
        np.testing.assert_array_equal(m["accuracy_x"], m["accuracy_y"])

    def test_inf_degree_bound_to_nan(self, ramanujan, expected):
        assert ramanujan.attrs["report"]["inf_to_nan"] == {"degree_bound": expected["n_inf"]}
        assert np.isfinite(ramanujan[list(pdt.RAMANUJAN_METRICS)].fillna(0)).all().all()
        assert ramanujan["degree_bound"].isna().sum() == expected["n_nan_degree_bound"]


class TestJoined:
    def test_counts(self, joined, expected):
        rep = joined.attrs["report"]
        assert rep["n_joined"] == len(joined) == expected["n_joined"]
        assert rep["membership"] == expected["membership"]
        assert rep["not_joined_by_model"]["mobilenetv2"] == expected["not_joined_mobilenet"]
        assert rep["accuracy_mismatches"] == 0
        assert "mobilenetv2" not in set(joined["model"])
        assert not joined.duplicated(list(pdt.KEY)).any()

    def test_outer_keeps_everything_with_flags(self, src, expected):
        out = pdt.joined(src[0], how="outer")
        n, n_unrolled, n_ramanujan = expected["n_outer"]
        assert len(out) == n
        assert out["in_unrolled"].sum() == n_unrolled
        assert out["in_ramanujan"].sum() == n_ramanujan

    def test_feature_sets_resolve(self, joined, expected):
        sets = pdt.feature_sets(joined, aggregations=("mean", "wmean"))
        assert len(sets["mge"]) == 16 and len(sets["rolled"]) == 20
        n_nan = {name: int(joined[cols].isna().any(axis=1).sum()) for name, cols in sets.items()}
        if expected["n_nan_feature_sets"] is not None:
            assert n_nan == expected["n_nan_feature_sets"]
        else:
            assert n_nan["sparsity"] == n_nan["density"] == 0


# --------------------------------------------------------------------------- synthetic tables
def _write(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def _synthetic_root(tmp_path: Path) -> Path:
    """Two networks × two layers of CONV-6 / CIFAR-10, in both rolled schemas + Ramanujan."""
    layers = pd.DataFrame(
        {
            "accuracy": [0.5, 0.5, 0.6, 0.6],
            "sparsity": [0.9, 0.9, 0.9, 0.9],
            "model": "CONV-6",
            "dataset": "CIFAR-10",
            "seed": [0, 0, 0, 0],
            "layer_id": [0, 1, 0, 1],
            "layer_name": ["convs1.0", "convs1.3", "convs1.0", "convs1.3"],
            "layer_sparsity": [0.5, 0.25, 0.75, 0.125],
            "nodes": [10, 20, 10, 20],
            "edges": [8, 16, 12, 8],
        }
    )
    long_ = layers.assign(
        pruning_algorithm=["snip", "snip", "RigL", "RigL"],
        bridges=[1, 2, 3, 4],
        a_point=0,
        motifs_count=5,
        motifs=np.nan,
        nei_one_hop=1.5,
        strenght_all=2.0,
        coreness_all=1.0,
        weak_clusters=1,
        strong_clusters=2,
        mean_weak=10.0,
        mean_strong=5.0,
        spectral_gap_weighted_undirected=0.1,
        spectral_radius_laplacian_weighted_undirected=3.0,
        assortativity=0.2,
    )
    short = layers.assign(
        pruning=["snip", "snip", "rigl", "rigl"],
        **{
            "cut-edges": [1, 2, 3, 4],
            "cut-nodes": 0,
            "motif": 5,
            "no_connected_components": 1,
            "mean_connected_components": 10.0,
            "avg_node_strength": 2.0,
            "1-hop_nei": 1.5,
            "k-core": 1.0,
            "spectral_gap": 0.1,
            "spectral_radius": 3.0,
        },
    )
    _write(tmp_path / "graph_metrics/rolled/rolled-CIFAR-10-CONV-6.csv", long_)
    _write(
        tmp_path / "graph_metrics/rolled/rolled-CIFAR-100-CONV-6.csv",
        short.assign(dataset="CIFAR-100"),
    )
    ram = layers.drop(columns=["nodes", "edges"]).assign(
        iterative_spectral_gap=[0.5, np.nan, 0.7, 0.8],
        iterative_degree_bound=[0.1, np.nan, 0.2, 0.3],
        degree_bound=[0.3, -np.inf, 0.1, 0.2],
        no_weights=[8.0, 16.0, 12.0, 8.0],
        no_params=[16.0, 64.0, 16.0, 64.0],
    )
    _write(tmp_path / "ramanunjan_results/CONV-6/rolled-CIFAR-10-CONV-6.csv", ram)
    _write(
        tmp_path / "ramanunjan_results/CONV-6/rolled-CIFAR-100-CONV-6.csv",
        ram.assign(dataset="CIFAR-100"),
    )
    return tmp_path


def test_synthetic_schema_union(tmp_path):
    root = _synthetic_root(tmp_path)
    df = pdt.load_rolled("rolled", root)
    rep = df.attrs["report"]
    assert rep["short_schema_files"] == ["rolled-CIFAR-100-CONV-6.csv"]
    assert rep["dropped_all_nan_columns"] == ["motifs"]
    assert set(df["pruner"]) == {"snip", "rigl"}  # "RigL" normalised
    assert df.loc[df["schema"] == "21", "assortativity"].isna().all()
    assert df.loc[df["schema"] != "21", "strong_clusters"].eq(2).all()
    # weak components are the method's connected components
    assert df["no_connected_components"].eq(1).all()
    np.testing.assert_array_equal(df["no_weights"], df["edges"])
    assert {"model", "dataset"} <= set(df.columns) and set(df["model"]) == {"conv6"}


def test_synthetic_ramanujan_alignment(tmp_path):
    root = _synthetic_root(tmp_path)
    ram = pdt.load_ramanujan(root)
    assert ram["pruner"].tolist()[:4] == ["snip", "snip", "rigl", "rigl"]
    assert ram.attrs["report"]["inf_to_nan"] == {"degree_bound": 2}
    assert ram["degree_bound"].isna().sum() == 2


def test_synthetic_ramanujan_count_mismatch_raises(tmp_path):
    root = _synthetic_root(tmp_path)
    p = root / "ramanunjan_results/CONV-6/rolled-CIFAR-10-CONV-6.csv"
    pd.read_csv(p).iloc[:3].to_csv(p, index=False)
    with pytest.raises(ValueError, match="counts agree"):
        pdt.load_ramanujan(root)


def test_synthetic_ramanujan_value_mismatch_reported(tmp_path):
    root = _synthetic_root(tmp_path)
    p = root / "ramanunjan_results/CONV-6/rolled-CIFAR-10-CONV-6.csv"
    pd.read_csv(p).assign(seed=[0, 1, 0, 0]).to_csv(p, index=False)
    with pytest.warns(UserWarning, match="disagree"):
        ram = pdt.load_ramanujan(root)
    assert ram.attrs["report"]["mismatches"] == {"rolled-CIFAR-10-CONV-6.csv": {"seed": 1}}


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="MGELIB_PAPER_DATA"):
        pdt.load_unrolled(tmp_path)


def test_unknown_spelling_raises(tmp_path):
    root = _synthetic_root(tmp_path)
    p = root / "graph_metrics/rolled/rolled-CIFAR-10-CONV-6.csv"
    pd.read_csv(p).assign(pruning_algorithm="magic").to_csv(p, index=False)
    with pytest.raises(ValueError, match="unknown pruner"):
        pdt.load_rolled("rolled", root)


def test_network_features_mean_and_weighted_mean():
    layers = pd.DataFrame(
        {
            "model": "m",
            "dataset": "d",
            "pruner": "snip",
            "sparsity": 0.9,
            "seed": [0, 0, 0, 1, 1],
            "accuracy": [0.5, 0.5, 0.5, 0.7, 0.7],
            "x": [1.0, 2.0, np.nan, 4.0, 6.0],
            "no_weights": [1.0, 3.0, 100.0, 1.0, 1.0],
        }
    )
    out = pdt.network_features(layers, ["x"], ("mean", "weighted_mean"), prefix="p__")
    assert out["p__n_layers"].tolist() == [3, 2]
    np.testing.assert_allclose(out["p__x__mean"], [1.5, 5.0])
    np.testing.assert_allclose(out["p__x__wmean"], [(1 + 6) / 4, 5.0])  # NaN layer's weight skipped
    assert out["accuracy"].tolist() == [0.5, 0.7]
    with pytest.raises(ValueError, match="unknown column"):
        pdt.network_features(layers, ["nope"])
    with pytest.raises(ValueError, match="unknown aggregation"):
        pdt.network_features(layers, ["x"], ("median",))
    with pytest.raises(ValueError, match="varies within a network"):
        pdt.network_features(layers.assign(accuracy=[0.1, 0.2, 0.3, 0.4, 0.5]), ["x"])


def test_add_accuracy_drop():
    runs = pd.DataFrame(
        {
            "model": ["a", "a", "a", "b"],
            "dataset": "d",
            "accuracy": [0.8, 0.7, 0.5, 0.4],
        }
    )
    dense = pd.DataFrame({"model": ["a", "a", "b"], "dataset": "d", "accuracy": [0.9, 0.92, 0.5]})
    out = pdt.add_accuracy_drop(runs, dense)
    np.testing.assert_allclose(out["accuracy_ref"], [0.91, 0.91, 0.91, 0.5])
    np.testing.assert_allclose(out["accuracy_drop"], [0.11, 0.21, 0.41, 0.1])
    np.testing.assert_allclose(out["accuracy_drop_rel"], out["accuracy_drop"] / out["accuracy_ref"])
    assert set(out["accuracy_ref_source"]) == {"dense"}
    best = pdt.add_accuracy_drop(runs)
    np.testing.assert_allclose(best["accuracy_drop"], [0.0, 0.1, 0.3, 0.0])
    assert set(best["accuracy_ref_source"]) == {"best"}
    # within a group the drops are affine in accuracy: correlation −1
    a = best[best["model"] == "a"]
    assert np.corrcoef(a["accuracy"], a["accuracy_drop_rel"])[0, 1] == pytest.approx(-1)
    mapped = pdt.add_accuracy_drop(runs, {("a", "d"): 0.9, ("b", "d"): 0.5})
    np.testing.assert_allclose(mapped["accuracy_drop"], [0.1, 0.2, 0.4, 0.1])
    with pytest.raises(ValueError, match="no dense accuracy"):
        pdt.add_accuracy_drop(runs, {("a", "d"): 0.9})
    with pytest.raises(ValueError, match="not in df"):
        pdt.add_accuracy_drop(runs.drop(columns="dataset"))


def test_feature_sets_names_missing_columns():
    with pytest.raises(ValueError, match="not in the frame"):
        pdt.feature_sets(pd.DataFrame({"sparsity": [0.5]}))
    assert pdt.feature_sets()["mge+sparsity"][-1] == "sparsity"
