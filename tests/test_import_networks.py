"""Networks trained elsewhere imported as run folders (mgelib.importing, 15_import_networks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.utils.prune as torch_prune
from user_code import user_code_on_path

from mgelib import io, models, pipeline
from mgelib.importing import checkpoint_network, import_checkpoints, read_checkpoint
from mgelib.masks import apply_masks, prunable_modules, prunable_parameters
from mgelib.pruning import prune

REPO = Path(__file__).resolve().parents[1]
TINY = "mymodels:tiny_vgg"


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory):
    with user_code_on_path(tmp_path_factory.mktemp("user")) as folder:
        yield folder


def _net(seed: int = 0, spec: str = TINY) -> torch.nn.Module:
    return models.build(spec, 1, 10, 8, seed=seed)


def _pruned(pruner: str, sparsity: float, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    net = _net(seed)
    masks = prune(pruner, net, sparsity, seed=seed)
    apply_masks(net, masks)
    return net, masks


def _checkpoints(folder: Path) -> Path:
    """Three good checkpoints (dense; magnitude 0.9 by zeros, nested and DataParallel-prefixed;
    ERK 0.8 in the torch.nn.utils.prune layout), one bad (NaN), and their CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(_net(0).state_dict(), folder / "dense.pt")
    net, _ = _pruned("mypruners:magnitude", 0.9, seed=1)
    nested = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 9}
    torch.save(nested, folder / "mag90.pt")
    erk = _net(2)
    masks = prune("erk", erk, 0.8, seed=2)
    for name, module in prunable_modules(erk).items():
        torch_prune.custom_from_mask(module, "weight", masks[f"{name}.weight"])
    torch.save(erk.state_dict(), folder / "erk80.pt")
    bad = net.state_dict()
    bad["3.weight"] = bad["3.weight"] * float("nan")
    torch.save(bad, folder / "nan.pt")
    pd.DataFrame(
        {
            "checkpoint": ["dense.pt", "mag90", str(folder / "erk80.pt"), "nan.pt"],
            "accuracy": [0.9, 0.8, 0.7, 0.5],
            "pruner": ["dense", "magnitude", "erk", "magnitude"],
            "seed": [0, 1, 2, 3],
        }
    ).to_csv(folder / "accuracy.csv", index=False)
    return folder


def test_layouts_and_run_keys(user: Path, tmp_path: Path) -> None:
    ckpts = _checkpoints(tmp_path / "ckpts")
    report = import_checkpoints(
        str(ckpts / "*.pt"), TINY, "1,8,8", root=tmp_path / "runs",
        accuracy_csv=str(ckpts / "accuracy.csv"), graph={"motif_budget": 1e7},
    ).set_index(pd.Index(["dense", "erk80", "mag90", "nan"]))  # fmt: skip
    assert report["status"].tolist() == ["imported", "imported", "imported", "refused"]
    assert report.loc["nan", "reason"] == f"{ckpts / 'nan.pt'}: NaN or inf values in ['3.weight']"
    assert report.loc["mag90", "sparsity"] == 0.9 and report.loc["erk80", "sparsity"] == 0.8
    runs = io.collect(tmp_path / "runs", "result.parquet")
    assert runs[["pruner", "sparsity", "seed"]].values.tolist() == [
        ["dense", 0.0, 0], ["erk", 0.8, 2], ["magnitude", 0.9, 1],
    ]  # fmt: skip
    assert (runs["model"] == "mymodels.tiny_vgg").all()
    assert (runs["sparsity"] - runs["sparsity_realised"]).abs().max() < 1e-3
    # the masks are the pruners' own: torch_prune's weight_mask and the zeros of the weights
    erk_dir = Path(report.loc["erk80", "run_dir"])
    expected = prune("erk", _net(2), 0.8, seed=2)
    got = io.load_masks(erk_dir / "masks.npz")
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    mag, mag_masks = _pruned("mypruners:magnitude", 0.9, seed=1)
    got = io.load_masks(Path(report.loc["mag90", "run_dir"]) / "masks.npz")
    assert all(torch.equal(got[k], mag_masks[k]) for k in mag_masks)
    # graph metrics as 20 computes them, on the checkpoint's weights
    with pytest.warns(UserWarning, match="imported network without initial weights"):
        net = pipeline.load_run_model(report.loc["mag90", "run_dir"], "mymodels.tiny_vgg")
    assert torch.equal(net[0].weight, mag[0].weight)
    tables = pipeline.graph_tables(net, (1, 8, 8), seed=1, weights="trained", motif_budget=1e7)
    metrics = pd.read_parquet(Path(report.loc["mag90", "run_dir"]) / "metrics.parquet")
    assert metrics["edges"].iloc[0] == tables["network"]["edges"].iloc[0]
    assert metrics["k-core"].iloc[0] == tables["network"]["k-core"].iloc[0]
    prov = io.read_json(erk_dir / "params.json")["15_import_networks"]
    assert prov["checkpoint"] == str(ckpts / "erk80.pt") and len(prov["checkpoint_sha256"]) == 64
    # a second import skips the complete runs
    again = import_checkpoints(
        str(ckpts / "dense.pt"), TINY, "1,8,8", root=tmp_path / "runs",
        accuracy_csv=str(ckpts / "accuracy.csv"),
    )  # fmt: skip
    assert again["status"].tolist() == ["skipped"]


def test_bad_checkpoints_are_refused_one_by_one(user: Path, tmp_path: Path) -> None:
    good = _net().state_dict()
    torch.save(good, tmp_path / "good.pt")
    missing = {k: v for k, v in good.items() if k != "3.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    torch.save({**good, "head.weight": torch.zeros(2)}, tmp_path / "extra.pt")
    torch.save({**good, "7.weight": torch.zeros(10, 32)}, tmp_path / "shape.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "dict.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint at all")
    torch.save(_net(), tmp_path / "module.pt")  # a pickled module, not a state dict
    report = import_checkpoints(
        str(tmp_path / "*.pt"), TINY, "1,8,8", root=tmp_path / "runs", dataset="digits",
        num_classes=10,
    ).set_index("checkpoint")  # fmt: skip
    reasons = {Path(k).stem: v for k, v in report["reason"].items()}
    status = {Path(k).stem: v for k, v in report["status"].items()}
    assert status == {n: "refused" for n in status if n != "good"} | {"good": "imported"}
    assert "missing ['3.bias']" in reasons["missing"]
    assert "unexpected ['head.weight']" in reasons["extra"]
    assert "7.weight: (10, 32) vs (10, 64)" in reasons["shape"]
    assert "not a state dict (list)" in reasons["list"]
    assert "not a state dict (a dict with keys ['epoch', 'lr'])" in reasons["dict"]
    assert "not a torch checkpoint" in reasons["text"]
    assert "not a torch checkpoint" in reasons["module"] and "state_dict()" in reasons["module"]
    for name, reason in reasons.items():
        assert name == "good" or reason.startswith(str(tmp_path / f"{name}.pt")), reason
    # evaluated on the digits test split (the run's seed), as train.evaluate does
    from mgelib import data
    from mgelib.train import evaluate

    acc = evaluate(
        checkpoint_network(tmp_path / "good.pt", TINY, (1, 8, 8))[0], data.load("digits")
    )
    assert report.loc[str(tmp_path / "good.pt"), "accuracy"] == acc
    with pytest.raises(ValueError, match="give accuracy_csv"):
        import_checkpoints(str(tmp_path / "good.pt"), TINY, "1,8,8", root=tmp_path / "r")
    with pytest.raises(ValueError, match="no checkpoint matches"):
        import_checkpoints(str(tmp_path / "*.nope"), TINY, "1,8,8", root=tmp_path, dataset="x")


def test_mask_sources_and_the_authors_layout(user: Path, tmp_path: Path) -> None:
    """conv6 (the authors' parameter names) with weight_mask buffers, a masks file, zeros."""
    net = models.build("conv6", 1, 10, 8, seed=0)
    masks = prune("er", net, 0.95, seed=0)
    apply_masks(net, masks)
    state = net.state_dict()
    buffers = {**state, **{f"{k}_mask": v for k, v in masks.items()}}
    torch.save(buffers, tmp_path / "buffers.pt")
    torch.save(state, tmp_path / "plain.pt")
    io.save_masks(masks, tmp_path / "plain.masks.npz")
    for file, source in (
        ("buffers.pt", "weight_mask"),
        ("buffers.pt", "auto"),
        ("plain.pt", "zeros"),
        ("plain.pt", "{stem}.masks.npz"),
    ):
        classes = 0 if source == "auto" else 10  # 0: read off the checkpoint's classifier
        got_net, got = checkpoint_network(
            tmp_path / file, "conv6", "1,8,8", mask_source=source, num_classes=classes
        )
        assert all(torch.equal(got[k], masks[k]) for k in masks), (file, source)
        assert got_net.linear[6].out_features == 10
    with pytest.raises(ValueError, match="no convs1.0.weight_mask entry"):
        checkpoint_network(
            tmp_path / "plain.pt", "conv6", "1,8,8", mask_source="weight_mask", num_classes=10
        )
    with pytest.raises(ValueError, match="unknown mask_source 'holes'"):
        checkpoint_network(
            tmp_path / "plain.pt", "conv6", "1,8,8", mask_source="holes", num_classes=10
        )
    with pytest.raises(ValueError, match="input_shape must be one input's C,H,W"):
        checkpoint_network(tmp_path / "plain.pt", "conv6", "8,8")
    assert len(read_checkpoint(tmp_path / "plain.pt")) == len(state)
    assert set(prunable_parameters(got_net)) == set(masks)


@pytest.mark.slow
@pytest.mark.notebooks
def test_notebooks_15_then_30_collect_the_imported_runs(user: Path, tmp_path: Path) -> None:
    """Through the papermill CLI: three checkpoints + a CSV (and one bad checkpoint) into
    15_import_networks -p profile imported, then 30_collect_runs -p profile imported."""
    ckpts = _checkpoints(tmp_path / "ckpts")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(user), str(REPO)]),
        "MGELIB_RUNS": str(tmp_path / "runs"),
        "MGELIB_REPORTS": str(tmp_path / "reports"),
        "MGELIB_QUIET": "1",
    }
    nb = REPO / "notebooks"
    for cmd in (
        [str(nb / "15_import_networks.ipynb"), str(tmp_path / "15.ipynb"),
         "-p", "checkpoints", str(ckpts / "*.pt"), "-p", "model", TINY,
         "-p", "input_shape", "1,8,8", "-p", "accuracy_csv", str(ckpts / "accuracy.csv"),
         "-p", "motif_budget", "1e7", "-p", "profile", "imported"],
        [str(nb / "30_collect_runs.ipynb"), str(tmp_path / "30.ipynb"), "-p", "profile",
         "imported"],
    ):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "papermill", *cmd, "--cwd", str(tmp_path)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    imported = pd.read_parquet(
        tmp_path / "reports" / "imported" / "15_import_networks" / "imported.parquet"
    )
    assert sorted(imported["status"]) == ["imported"] * 3 + ["refused"]
    runs = pd.read_parquet(tmp_path / "reports" / "imported" / "30_collect_runs" / "runs.parquet")
    assert len(runs) == 3
    assert runs["pruner"].tolist() == ["dense", "erk", "magnitude"]
    assert runs["k-core"].notna().all() and runs["edges"].notna().all()
    assert runs.set_index("pruner")["accuracy_drop"].round(6).to_dict() == {
        "dense": 0.0, "erk": 0.2, "magnitude": 0.1,
    }  # fmt: skip
