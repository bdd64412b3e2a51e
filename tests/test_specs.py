"""Bring your own network: model and pruner specs (mgelib.specs), their checks, +shuffle, and
their way through grids, provenance and the notebooks (papermill CLI)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from user_code import user_code_on_path, write_user_code

from mgelib import io, models, pipeline, specs
from mgelib.masks import prunable_parameters
from mgelib.pruning import masks_from_scores, prune, shuffle
from mgelib.runner import expand_grid
from mgelib.runner.grid import grid_names, prepare_profile, user_pythonpath
from mgelib.runner.run import stage_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory):
    """The user's code on sys.path (as if on PYTHONPATH), dropped again afterwards."""
    with user_code_on_path(tmp_path_factory.mktemp("user")) as folder:
        yield folder


def _net(spec: str = "mymodels:tiny_vgg", seed: int = 0) -> torch.nn.Module:
    return models.build(spec, in_channels=1, num_classes=10, input_size=8, seed=seed)


# --------------------------------------------------------------------------- specs and labels
def test_labels_are_readable_safe_and_distinct(user: Path, tmp_path: Path) -> None:
    assert specs.label("mymodels:tiny_vgg") == "mymodels.tiny_vgg"
    assert specs.label("conv6") == "conv6"
    assert pipeline.run_label("mypruners:magnitude+shuffle") == "mypruners.magnitude+shuffle"
    assert (
        specs.label("torch:nn.Identity") != specs.label("torch.nn:Identity") == "torch.nn.Identity"
    )
    other = write_user_code(tmp_path / "elsewhere")
    a = specs.label(f"{user}/mymodels.py:tiny_vgg")
    b = specs.label(f"{other}/mymodels.py:tiny_vgg")
    assert a.startswith("mymodels.tiny_vgg-") and b.startswith("mymodels.tiny_vgg-") and a != b
    for lab in (a, b, specs.label("mymodels:tiny_vgg")):
        io.RunSpec(lab, "digits", "snip", 0.9, 0)  # a plain hive name: no '/' or '='
        assert all(c.isalnum() or c in "._+-" for c in lab)
    # the same file reached through a relative path has the same label
    old = Path.cwd()
    os.chdir(user.parent)
    try:
        assert specs.label(f"{user.name}/mymodels.py:tiny_vgg") == a
        assert (
            specs.canonical(f"{user.name}/mymodels.py:tiny_vgg") == f"{user}/mymodels.py:tiny_vgg"
        )
    finally:
        os.chdir(old)


def test_model_specs_build_with_the_declared_arguments(user: Path) -> None:
    net = _net()
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert torch.equal(_net()[0].weight, net[0].weight)  # seeded
    assert not torch.equal(_net(seed=1)[0].weight, net[0].weight)
    by_file = _net(f"{user}/mymodels.py:tiny_vgg")
    assert torch.equal(by_file[0].weight, net[0].weight)  # the same code, the same draw
    mlp = models.build("mymodels:mlp", in_channels=1, num_classes=3, input_size=8, seed=0)
    assert mlp[-1].out_features == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "broken:tiny_vgg",
            r"module 'broken' does not import: ModuleNotFoundError: No module named "
            r"'this_package_does_not_exist_anywhere'",
        ),
        ("no_such_module_xyz:f", r"module 'no_such_module_xyz' does not import.*PYTHONPATH"),
        (
            "mymodels:vgg",
            r"module 'mymodels' has no attribute 'vgg'; it has: mlp, needs_depth, not_a_module, tiny_vgg$",
        ),
        ("mymodels:not_a_module", r"returned a dict, not a torch.nn.Module"),
        ("mymodels:needs_depth", r"required parameter 'depth' that mgelib cannot supply"),
        ("nowhere/models.py:f", r"spec file 'nowhere/models.py' does not exist"),
        ("vgg", r"unknown model 'vgg'; choose one of conv6.*or give a spec"),
    ],
)
def test_bad_model_specs_are_refused_naming_the_culprit(user: Path, spec, message) -> None:
    with pytest.raises(ValueError, match=message):
        _net(spec)


# --------------------------------------------------------------------------- user pruners
def test_user_pruner_gets_what_it_declares_and_its_masks_are_checked(user: Path) -> None:
    import mypruners

    net = _net()
    mypruners.CALLS.clear()
    masks = prune("mypruners:magnitude", net, 0.9, seed=7, data=(torch.zeros(2, 1, 8, 8), None))
    scores = {k: p.detach().abs() for k, p in prunable_parameters(net).items()}
    expected = masks_from_scores(scores, 0.9)
    assert all(torch.equal(masks[k], expected[k]) for k in expected)
    assert mypruners.CALLS == [{"seed": 7}]  # only what it declares
    prune("mypruners:takes_everything", net, 0.9, input_shape=(1, 8, 8))
    assert mypruners.CALLS[-2] == ["data", "input_shape", "seed"]
    floats = prune("mypruners:as_floats", net, 0.9)  # 0/1 values are accepted as booleans
    assert all(v.dtype == torch.bool for v in floats.values())
    assert prune("mypruners:magnitude", net, 0.0)["0.weight"].all()  # sparsity 0: dense


@pytest.mark.parametrize(
    ("pruner", "message"),
    [
        (
            "mypruners:wrong_shape",
            r"mask '0.weight' has shape \(72, 1\) but the weight has shape \(8, 1, 3, 3\)",
        ),
        (
            "mypruners:wrong_count",
            r"kept 1864 of 1864 weights \(sparsity 0\); sparsity 0.9 keeps 186 \(± 1\)",
        ),
        ("mypruners:missing_layer", r"missing \['0.weight'\]"),
        ("mypruners:not_binary", r"mask '0.weight' has values other than 0/1"),
        ("mypruners:one_argument", r"must take \(model, sparsity, \*, data=None"),
        ("mypruners:nope", r"has no attribute 'nope'"),
        ("broken:tiny_vgg", r"module 'broken' does not import"),
        ("snip+shufle", r"unknown pruner 'snip\+shufle'"),
    ],
)
def test_bad_user_pruners_are_refused(user: Path, pruner, message) -> None:
    with pytest.raises(ValueError, match=message):
        prune(pruner, _net(), 0.9)


# --------------------------------------------------------------------------- +shuffle
def test_shuffle_keeps_each_layer_count_and_redraws_positions(user: Path) -> None:
    net = _net()
    batch = (torch.randn(16, 1, 8, 8), torch.arange(16) % 10)
    for base in ("snip", "mypruners:magnitude"):
        masks = prune(base, net, 0.9, data=batch, seed=3)
        shuffled = prune(f"{base}+shuffle", net, 0.9, data=batch, seed=3)
        assert {k: int(v.sum()) for k, v in shuffled.items()} == {
            k: int(v.sum()) for k, v in masks.items()
        }
        assert all(torch.equal(shuffled[k], shuffle(masks, seed=3)[k]) for k in masks)
        assert any(not torch.equal(shuffled[k], masks[k]) for k in masks)
    again = prune("mypruners:magnitude+shuffle", net, 0.9, data=batch, seed=3)
    assert all(torch.equal(again[k], shuffled[k]) for k in again)  # deterministic for a seed
    other = prune("mypruners:magnitude+shuffle", net, 0.9, data=batch, seed=4)
    assert any(not torch.equal(again[k], other[k]) for k in again)


def test_shuffle_draws_positions_uniformly() -> None:
    """Oracle: over many seeds each of the n positions is kept with frequency k/n."""
    mask = {"w": torch.tensor([True] * 5 + [False] * 15)}
    freq = np.mean([shuffle(mask, seed=s)["w"].numpy() for s in range(2000)], axis=0)
    assert np.abs(freq - 0.25).max() < 0.05  # sd of one frequency ≈ 0.0097
    assert all(int(shuffle(mask, seed=s)["w"].sum()) == 5 for s in range(20))


# --------------------------------------------------------------------------- grids
def test_grids_take_specs_and_shuffle_and_hand_the_specs_to_the_notebooks(
    user: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(user)
    grid = {
        "models": ["conv6", "mymodels:tiny_vgg"],
        "datasets": ["digits"],
        "pruners": ["snip+shuffle", "mypruners.py:magnitude", "mypruners:magnitude+shuffle"],
        "sparsities": [0.9],
        "dense": False,
    }
    original = {"name": "mine", "grid": grid}
    prof = prepare_profile(original)
    assert original["grid"]["pruners"][1] == "mypruners.py:magnitude"  # a copy is prepared
    rel = prepare_profile({"name": "x", "pythonpath": ".", "grid": {"models": ["conv6"]}})
    assert rel["pythonpath"] == [str(user)]  # relative entries: against the current folder
    file_label = specs.label(f"{user}/mypruners.py:magnitude")
    assert prof["grid"]["pruners"][1] == f"{user}/mypruners.py:magnitude"  # made absolute
    assert prof["pythonpath"] == [str(user)]  # where this process imports mymodels from
    runs = expand_grid(prof["grid"])
    assert {(r.model, r.pruner) for r in runs} == {
        (m, p)
        for m in ("conv6", "mymodels.tiny_vgg")
        for p in ("snip+shuffle", file_label, "mypruners.magnitude+shuffle")
    }
    run = next(r for r in runs if r.model == "mymodels.tiny_vgg" and r.pruner == file_label)
    params = stage_params(run, tmp_path, prof)
    assert params["model"] == "mymodels:tiny_vgg"
    assert params["pruner"] == f"{user}/mypruners.py:magnitude"
    with user_pythonpath(prof):
        assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(user)
    assert str(user) not in os.environ.get("PYTHONPATH", "")
    with pytest.raises(ValueError, match="grid pruners: unknown pruner 'magic'"):
        grid_names({**grid, "pruners": ["magic"]})
    with pytest.raises(ValueError, match="module 'broken' does not import"):
        expand_grid({**grid, "models": ["broken:tiny_vgg"]})


def test_provenance_and_run_folders_name_the_spec(user: Path, tmp_path: Path) -> None:
    run = pipeline.resolve_run_dir(
        "", "mine", "mymodels:tiny_vgg", "digits", "mypruners:magnitude+shuffle", 0.9, 0
    )
    assert run.relative_to(io.grid_root("mine")).as_posix() == (
        "model=mymodels.tiny_vgg/dataset=digits/pruner=mypruners.magnitude+shuffle/"
        "sparsity=0.9/seed=0"
    )
    params = {"model": "mymodels:tiny_vgg", "pruner": "mypruners:magnitude+shuffle"}
    io.record_stage(tmp_path, "10_prune_and_train", params)
    prov = io.read_json(tmp_path / "provenance.json")["10_prune_and_train"]["specs"]
    sha = hashlib.sha256((user / "mymodels.py").read_bytes()).hexdigest()
    assert prov["model"] == {
        "spec": "mymodels:tiny_vgg",
        "label": "mymodels.tiny_vgg",
        "file": str(user / "mymodels.py"),
        "sha256": sha,
    }
    assert prov["pruner"]["label"] == "mypruners.magnitude+shuffle"
    # a run folder's label leads back to the recorded spec
    assert pipeline.run_model_spec(tmp_path, "mymodels.tiny_vgg") == "mymodels:tiny_vgg"
    assert pipeline.run_model_spec(tmp_path, "conv6") == "conv6"
    from mgelib.train import paper_config

    assert paper_config("mymodels:tiny_vgg", "digits").weight_decay == 1e-4


# --------------------------------------------------------------------------- notebooks
def _papermill(nb: str, out: Path, env: dict, *params: str) -> None:
    args = [a for i in range(0, len(params), 2) for a in ("-p", params[i], params[i + 1])]
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks" / f"{nb}.ipynb"), str(out)]
    proc = subprocess.run(
        [*cmd, *args, "--cwd", str(out.parent)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.notebooks
def test_papermill_cli_trains_and_measures_a_user_model_and_pruner(
    user: Path, tmp_path: Path
) -> None:
    """The user's module on PYTHONPATH: 10 with a module spec model and pruner, then 20 on the
    same run folder; then 10 with the file.py:factory form and a shuffled user pruner."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(user), str(REPO)]),
        "MGELIB_RUNS": str(tmp_path / "runs"),
        "MGELIB_QUIET": "1",
    }
    run = tmp_path / "run"
    tiny = ("epochs", "1", "threads", "1", "sparsity", "0.9", "dataset", "digits")
    _papermill(
        "10_prune_and_train", tmp_path / "10.ipynb", env,
        "model", "mymodels:tiny_vgg", "pruner", "mypruners:magnitude", "run_dir", str(run), *tiny,
    )  # fmt: skip
    _papermill(
        "20_graph_metrics", tmp_path / "20.ipynb", env,
        "model", "mymodels:tiny_vgg", "pruner", "mypruners:magnitude", "run_dir", str(run),
        "sparsity", "0.9", "threads", "1",
    )  # fmt: skip
    assert io.run_done(run)
    kept = pd.read_parquet(run / "layers.parquet")["kept"].sum()
    assert pd.read_parquet(run / "ramanujan.parquet")["no_weights"].sum() == kept == 186
    prov = json.loads((run / "provenance.json").read_text())["10_prune_and_train"]["specs"]
    assert (
        prov["pruner"]["sha256"] == hashlib.sha256((user / "mypruners.py").read_bytes()).hexdigest()
    )

    _papermill(
        "10_prune_and_train", tmp_path / "10b.ipynb", env,
        "model", f"{user}/mymodels.py:tiny_vgg", "pruner", "mypruners:magnitude+shuffle",
        "profile", "mine", *tiny,
    )  # fmt: skip
    label = specs.label(f"{user}/mymodels.py:tiny_vgg")
    second = (
        tmp_path / "runs" / "mine" / f"model={label}" / "dataset=digits"
        / "pruner=mypruners.magnitude+shuffle" / "sparsity=0.9" / "seed=0"
    )  # fmt: skip
    assert io.stage_done(second, "10_prune_and_train")
    first_layers = pd.read_parquet(run / "layers.parquet")["kept"].tolist()
    assert pd.read_parquet(second / "layers.parquet")["kept"].tolist() == first_layers
