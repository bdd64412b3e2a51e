"""The run store: hive paths, atomic writes (a write killed midway leaves nothing), provenance,
collect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mgelib import io


def test_runspec_round_trip_and_hive_path(tmp_path):
    spec = io.RunSpec("resnet20", "cifar10", "snip", 0.98, 2)
    assert (
        spec.relpath.as_posix() == "model=resnet20/dataset=cifar10/pruner=snip/sparsity=0.98/seed=2"
    )
    assert io.RunSpec.from_path(tmp_path / spec.relpath) == spec
    assert io.RunSpec("conv6", "digits", "dense", 0, 0).relpath.parts[3] == "sparsity=0"


@pytest.mark.parametrize("bad", ["", "a/b", "x=y"])
def test_runspec_rejects_unsafe_names(bad):
    with pytest.raises(ValueError, match="plain name"):
        io.RunSpec(bad, "digits", "snip", 0.5, 0)


def test_write_killed_midway_leaves_no_product_and_rerun_completes(tmp_path):
    target = tmp_path / "run" / "result.parquet"

    class Boom(RuntimeError):
        pass

    df = pd.DataFrame({"accuracy": [0.5]})
    with pytest.raises(Boom):
        with io.atomic_path(target) as tmp:
            df.to_parquet(tmp)  # half of the work is on disk …
            raise Boom("killed")  # … when the process dies
    assert not target.exists()
    assert list(target.parent.iterdir()) == [], "temporary file left behind"
    io.write_table(df, target)  # the rerun
    pd.testing.assert_frame_equal(io.read_table(target), df)


def test_atomic_write_never_exposes_a_partial_file_over_an_old_one(tmp_path):
    target = tmp_path / "x.json"
    io.write_json({"v": 1}, target)
    with pytest.raises(ValueError):
        with io.atomic_path(target) as tmp:
            tmp.write_text('{"v": ')
            raise ValueError
    assert io.read_json(target) == {"v": 1}


def test_masks_round_trip(tmp_path):
    masks = {"a.weight": torch.rand(3, 4) > 0.5, "b.weight": torch.zeros(2, dtype=torch.bool)}
    io.save_masks(masks, tmp_path / "masks.npz")
    back = io.load_masks(tmp_path / "masks.npz")
    assert set(back) == set(masks)
    for k in masks:
        assert back[k].dtype == torch.bool and torch.equal(back[k], masks[k])


def test_provenance_records_sha_versions_and_device(tmp_path):
    io.record_stage(tmp_path, "10_prune_and_train", {"epochs": 1}, device="cpu")
    prov = json.loads((tmp_path / "provenance.json").read_text())["10_prune_and_train"]
    assert prov["device"] == "cpu"
    assert prov["versions"]["torch"] and prov["versions"]["numpy"]
    assert "git_sha" in prov and "time_utc" in prov and prov["python"]
    params = json.loads((tmp_path / "params.json").read_text())
    assert params == {"10_prune_and_train": {"epochs": 1}}
    io.record_stage(tmp_path, "20_graph_metrics", {"seed": 0})
    assert set(json.loads((tmp_path / "params.json").read_text())) == {
        "10_prune_and_train",
        "20_graph_metrics",
    }


def test_stage_done_and_collect(tmp_path):
    specs = [io.RunSpec("conv6", "digits", p, s, 0) for p, s in [("dense", 0), ("snip", 0.9)]]
    for i, spec in enumerate(specs):
        d = spec.dir(tmp_path)
        for f in io.STAGE_PRODUCTS["10_prune_and_train"]:
            if f.endswith(".parquet"):
                io.write_table(pd.DataFrame({"accuracy": [0.9 - i / 10], "epochs": [1]}), d / f)
            else:
                io.save_masks({"w": np.ones(2, bool)}, d / f)
        assert io.stage_done(d, "10_prune_and_train")
        assert not io.run_done(d)
    (tmp_path / "model=conv6" / "dataset=digits" / "pruner=er" / "sparsity=0.5" / "seed=0").mkdir(
        parents=True
    )
    df = io.collect(tmp_path, "result.parquet")
    assert list(df.columns[:5]) == list(io.KEYS)
    assert df["pruner"].tolist() == ["dense", "snip"]
    assert df["accuracy"].tolist() == [0.9, 0.8]
    with pytest.raises(FileNotFoundError, match="lack result.parquet"):
        io.collect(tmp_path, "result.parquet", missing="raise")
    with pytest.raises(ValueError, match="unknown stage"):
        io.stage_done(tmp_path, "99_nothing")
