"""Every bad input gets a named error (issue 15): one test per case, each asserting the error
type and that the message names the culprit (the key, the file, the parameter, the run).

The cases are the ones an audit of 88 bad inputs found silent or unclear, and their kin. Tiny
models, tiny files written in the real on-disk formats, nothing expensive: the whole file runs in
seconds. (The graph-encoding cases — NaN weights into a graph, hand-made graphs, the memory guard,
unsupported modules — and ``invoke nb`` messages are tested beside their code.)
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mgelib import data, io, models, pipeline, pruning
from mgelib.errors import (
    BatchError,
    CorruptFileError,
    DataFormatError,
    GridIncompleteError,
    LayerCollapseWarning,
    MaskError,
    MissingRunFileError,
    PaperDataError,
    WeightError,
)
from mgelib.masks import apply_masks, check_masks, prunable_parameters
from mgelib.paperdata import load_ramanujan, load_rolled, load_unrolled
from mgelib.paperdata.schema import KEY, MGE_METRICS
from mgelib.runner import expand_grid, run_grid
from mgelib.runner.grid import check_profile
from mgelib.runner.run import lock_owner, wait_for_locked

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _mlp(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, classes)
    )


def _batch(n: int = 6, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, 4), torch.arange(n) % classes


def _masks(net: nn.Module, value) -> dict:  # noqa: ANN001
    return {k: torch.full(p.shape, value) for k, p in prunable_parameters(net).items()}


# ============================================================================ masks
def test_float_mask_is_refused_with_its_key():
    net = _mlp()
    with pytest.raises(MaskError, match=r"mask '0\.weight' .* values other than 0 and 1 \(0\.3"):
        check_masks(net, _masks(net, 0.3))


def test_int_mask_with_values_other_than_0_1_is_refused():
    net = _mlp()
    masks = {k: torch.randint(-1, 3, p.shape) for k, p in prunable_parameters(net).items()}
    masks["0.weight"][0, :3] = torch.tensor([-1, 0, 2])
    with pytest.raises(MaskError, match=r"mask '0\.weight' \(torch\.int64\).*-1, 2"):
        check_masks(net, masks)


def test_nan_mask_is_refused():
    net = _mlp()
    masks = _masks(net, 1.0)
    masks["2.weight"][0, 0] = float("nan")
    with pytest.raises(MaskError, match=r"mask '2\.weight'.*nan"):
        check_masks(net, masks)


def test_apply_masks_refuses_a_half_mask_and_leaves_weights_alone():
    net = _mlp()
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(MaskError, match=r"mask '0\.weight'.*0\.5"):
        apply_masks(net, _masks(net, 0.5))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_encode_refuses_a_float_mask():
    from mgelib import encode

    net = _mlp()
    with pytest.raises(MaskError, match=r"mask '0\.weight'"):
        encode(net, (4,), masks=_masks(net, 0.3))


def test_numpy_masks_of_any_01_dtype_are_accepted():
    from mgelib import encode

    net = _mlp()
    rng = np.random.default_rng(0)
    masks = {
        k: rng.integers(0, 2, tuple(p.shape)).astype(dt)
        for (k, p), dt in zip(prunable_parameters(net).items(), (np.uint8, np.float32, bool))
    }
    out = check_masks(net, masks)
    assert all(m.dtype == torch.bool for m in out.values())
    apply_masks(net, masks)
    assert int((net[0].weight != 0).sum()) == int(masks["0.weight"].sum())
    graph = encode(net, (4,), masks=masks)
    assert graph.n_edges == sum(int(m.sum()) for m in masks.values())


def test_mask_of_wrong_shape_names_key_and_shapes():
    net = _mlp()
    masks = _masks(net, True)
    masks["2.weight"] = torch.ones(6, 5, dtype=torch.bool)
    with pytest.raises(MaskError, match=r"mask '2\.weight' has shape \(6, 5\).*\(5, 6\)"):
        check_masks(net, masks)


def test_masks_with_missing_and_extra_keys_name_them():
    net = _mlp()
    masks = _masks(net, True)
    masks["classifier.weight"] = masks.pop("4.weight")
    with pytest.raises(
        MaskError, match=r"missing \['4\.weight'\].*unknown \['classifier\.weight'\]"
    ):
        check_masks(net, masks)


def test_masks_that_are_not_a_mapping_or_not_numeric():
    net = _mlp()
    with pytest.raises(MaskError, match="mapping of parameter name"):
        check_masks(net, [torch.ones(6, 4)])
    masks = _masks(net, True)
    masks["0.weight"] = np.full((6, 4), "yes")
    with pytest.raises(MaskError, match=r"mask '0\.weight' is a ndarray that is not a numeric"):
        check_masks(net, masks)


# ============================================================================ pruning
def test_layer_collapse_warns_naming_the_layers():
    net = _mlp()
    with pytest.warns(
        LayerCollapseWarning, match=r"synflow at sparsity 0\.999999: 3 of 3 .*0, 2, 4"
    ):
        masks = pruning.prune("synflow", net, 0.999999, input_shape=(4,), progress=False)
    assert sum(int(m.sum()) for m in masks.values()) == 0


def test_partial_collapse_names_only_the_empty_layers():
    net = nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 2))
    scores = {"0.weight": torch.rand(50, 50) + 1.0, "2.weight": torch.zeros(2, 50)}
    masks = pruning.masks_from_scores(scores, 0.9)
    with pytest.warns(LayerCollapseWarning, match=r"1 of 2 prunable layers keep no weight \(2\)"):
        pruning.warn_collapse(net, masks, (50,))


def test_no_collapse_warning_at_ordinary_sparsity():
    net = _mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerCollapseWarning)
        pruning.prune("snip", net, 0.5, data=_batch())


@pytest.mark.parametrize("pruner", ["snip", "grasp", "prospr"])
def test_labels_beyond_the_model_outputs_name_range_and_outputs(pruner):
    x, _ = _batch()
    y = torch.tensor([0, 1, 2, 50, 1, 0])
    with pytest.raises(BatchError, match=rf"{pruner}: labels .* 0 to 50 .* 3 outputs"):
        pruning.prune(pruner, _mlp(), 0.5, data=(x, y))


def test_negative_labels_are_refused():
    x, _ = _batch()
    with pytest.raises(BatchError, match=r"labels of batch 0 range from -1"):
        pruning.prune("snip", _mlp(), 0.5, data=(x, torch.tensor([0, -1, 2, 1, 1, 0])))


def test_float_labels_are_refused():
    x, y = _batch()
    with pytest.raises(BatchError, match=r"labels of batch 0 are torch\.float32.*integer class"):
        pruning.prune("snip", _mlp(), 0.5, data=(x, y.float()))


def test_label_count_differing_from_inputs_is_refused():
    x, y = _batch()
    with pytest.raises(BatchError, match=r"6 inputs but labels of shape \(5,\)"):
        pruning.prune("snip", _mlp(), 0.5, data=(x, y[:5]))


def test_input_of_the_wrong_shape_names_the_shape():
    with pytest.raises(
        BatchError, match=r"snip: Sequential cannot run on the batch of shape \(6, 7\)"
    ):
        pruning.prune(
            "snip", _mlp(), 0.5, data=(torch.randn(6, 7), torch.zeros(6, dtype=torch.long))
        )


def test_synflow_input_shape_mismatch_names_input_shape():
    with pytest.raises(BatchError, match=r"synflow: .* all-ones input of shape \(1, 9\)"):
        pruning.prune("synflow", _mlp(), 0.5, input_shape=(9,), progress=False)


def test_synflow_nan_weights_name_the_parameter_not_the_depth():
    net = _mlp()
    with torch.no_grad():
        net[2].weight[0, 0] = float("nan")
    with pytest.raises(WeightError, match=r"synflow: parameter '2\.weight' holds 1 NaN") as info:
        pruning.prune("synflow", net, 0.5, input_shape=(4,), progress=False)
    assert "too deep" not in str(info.value)


def test_snip_infinite_weights_name_the_parameter():
    net = _mlp()
    with torch.no_grad():
        net[0].bias[1] = float("inf")
    with pytest.raises(WeightError, match=r"snip: parameter '0\.bias' holds 0 NaN and 1 infinite"):
        pruning.prune("snip", net, 0.5, data=_batch())


def test_seed_that_is_not_an_integer():
    with pytest.raises(TypeError, match=r"seed must be an integer, got 'a'"):
        pruning.prune("erk", _mlp(), 0.5, seed="a")


def test_misspelled_pruner_option_says_did_you_mean():
    with pytest.raises(TypeError, match=r"no option 'round'; did you mean 'rounds'\?"):
        pruning.prune("synflow", _mlp(), 0.5, input_shape=(4,), round=3)


def test_unknown_pruner_lists_the_pruners():
    with pytest.raises(ValueError, match=r"unknown pruner 'snipp'; choose one of snip"):
        pruning.prune("snipp", _mlp(), 0.5)


@pytest.mark.parametrize("bad", [float("nan"), 1.0, -0.1, True, "half"])
def test_sparsity_out_of_range_nan_or_not_a_number(bad):
    with pytest.raises(ValueError, match=r"sparsity must"):
        pruning.prune("erk", _mlp(), bad)


# ============================================================================ CIFAR files
def _cifar10(root: Path, n: int = 4, **overrides) -> Path:  # noqa: ANN003
    """A CIFAR-10 folder of ``n`` images per batch; ``overrides`` replaces a file's bytes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{b}" for b in range(1, 6)] + ["test_batch"]:
        blob = {
            b"data": np.zeros((n, 3072), np.uint8),
            b"labels": [k % 10 for k in range(n)],
            b"batch_label": b"x",
        }
        (folder / name).write_bytes(overrides.get(name, pickle.dumps(blob)))
    return folder


def _blob(**fields) -> bytes:  # noqa: ANN003
    base = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}
    base.update({k.encode(): v for k, v in fields.items()})
    return pickle.dumps({k: v for k, v in base.items() if v is not None})


def test_cifar_label_count_differing_from_image_count_names_the_file(tmp_path):
    _cifar10(tmp_path, data_batch_3=_blob(labels=[0, 1, 2]))
    with pytest.raises(DataFormatError, match=r"data_batch_3: 4 images but 3 labels"):
        data.load("cifar10", tmp_path)


def test_cifar_labels_outside_the_classes_name_the_file(tmp_path):
    _cifar10(tmp_path, test_batch=_blob(labels=[0, 1, 10, 3]))
    with pytest.raises(
        DataFormatError, match=r"test_batch: labels range from 0 to 10, outside \[0, 10\)"
    ):
        data.load("cifar10", tmp_path)


def test_truncated_cifar_pickle_names_the_path(tmp_path):
    _cifar10(tmp_path, data_batch_2=_blob()[:100])
    with pytest.raises(
        DataFormatError, match=r"data_batch_2 is not a readable CIFAR pickle \(truncated"
    ):
        data.load("cifar10", tmp_path)


def test_empty_cifar_pickle_names_the_path(tmp_path):
    _cifar10(tmp_path, data_batch_1=b"")
    with pytest.raises(DataFormatError, match=r"data_batch_1 is empty \(0 bytes\)"):
        data.load("cifar10", tmp_path)


def test_corrupt_cifar_pickle_names_the_path(tmp_path):
    _cifar10(tmp_path, data_batch_4=b"this is not a pickle at all")
    with pytest.raises(DataFormatError, match=r"data_batch_4 is not a readable CIFAR pickle"):
        data.load("cifar10", tmp_path)


def test_cifar_pickle_of_another_type_names_the_path(tmp_path):
    _cifar10(tmp_path, data_batch_5=pickle.dumps([1, 2, 3]))
    with pytest.raises(DataFormatError, match=r"data_batch_5 holds a list"):
        data.load("cifar10", tmp_path)


def test_missing_labels_key_names_file_and_keys(tmp_path):
    _cifar10(tmp_path, data_batch_1=_blob(labels=None, fine_labels=[0, 1, 2, 3]))
    with pytest.raises(
        DataFormatError,
        match=r"data_batch_1 has no 'labels' entry \(it has \['data', 'fine_labels'\]\)",
    ):
        data.load("cifar10", tmp_path)


def test_wrong_row_size_names_the_file(tmp_path):
    _cifar10(tmp_path, test_batch=_blob(data=np.zeros((4, 1024), np.uint8)))
    with pytest.raises(
        DataFormatError, match=r"test_batch: images have shape \(4, 1024\), expected \(N, 3072\)"
    ):
        data.load("cifar10", tmp_path)


def test_missing_cifar_file_names_it(tmp_path):
    folder = _cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 is missing"):
        data.load("cifar10", tmp_path)


def test_data_root_pointing_nowhere_names_the_expected_folder(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"expected the dataset at .*nowhere/cifar-100-python"
    ):
        data.load("cifar100", tmp_path / "nowhere")


def test_unknown_dataset_lists_the_datasets():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar11'; choose one of digits"):
        data.load("cifar11")


@pytest.mark.parametrize("bad", [-3, 0, "x", 2.5])
def test_upsample_not_a_positive_integer(bad):
    with pytest.raises(ValueError, match=r"upsample must be a positive integer"):
        data.load("digits", upsample=bad)


# ============================================================================ Tiny-ImageNet
def _tiny(root: Path, wnids=("n01", "n02"), per_class: int = 2, listed: bool = True) -> Path:  # noqa: ANN001
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    if listed:
        (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, w in enumerate(wnids):
        images = folder / "train" / w / "images"
        images.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (64, 64), (40 * k, 10, 200)).save(images / f"{w}_{i}.JPEG")
        Image.new("RGB", (64, 64), (40 * k, 10, 200)).save(
            folder / "val" / "images" / f"val_{w}.JPEG"
        )
        lines.append(f"val_{w}.JPEG\t{w}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MGELIB_DATA", str(tmp_path / "data"))
    return tmp_path


def test_tiny_missing_class_without_wnids_is_refused(data_home):
    _tiny(data_home, listed=False)
    with pytest.raises(
        DataFormatError, match=r"holds 2 class folders, not Tiny-ImageNet's 200.*wnids\.txt"
    ):
        data.load("tinyimagenet", data_home)


def test_tiny_missing_class_folder_listed_in_wnids_is_named(data_home):
    folder = _tiny(data_home, wnids=("n01", "n02", "n03"))
    shutil.rmtree(folder / "train" / "n03")
    (folder / "val" / "val_annotations.txt").write_text("val_n01.JPEG\tn01\t0\t0\t63\t63\n")
    with pytest.raises(DataFormatError, match=r"no folder for \['n03'\]"):
        data.load("tinyimagenet", data_home)


def test_tiny_class_folder_without_images_is_named(data_home):
    folder = _tiny(data_home)
    for f in (folder / "train" / "n02" / "images").iterdir():
        f.unlink()
    with pytest.raises(DataFormatError, match=r"class folder .*train/n02 has no images"):
        data.load("tinyimagenet", data_home)


def test_tiny_val_annotation_of_an_unknown_class_is_named(data_home):
    folder = _tiny(data_home)
    with (folder / "val" / "val_annotations.txt").open("a") as fh:
        fh.write("val_x.JPEG\tn99\t0\t0\t63\t63\n")
    with pytest.raises(DataFormatError, match=r"line 3 labels val_x\.JPEG with class 'n99'"):
        data.load("tinyimagenet", data_home)


def test_tiny_unreadable_image_is_named(data_home):
    folder = _tiny(data_home)
    (folder / "train" / "n01" / "images" / "n01_1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match=r"n01_1\.JPEG is not a readable image"):
        data.load("tinyimagenet", data_home)


def test_tiny_cache_follows_the_folder_content(data_home):
    from PIL import Image

    folder = _tiny(data_home)
    first = data.load("tinyimagenet", data_home)
    assert len(first.x_train) == 4
    Image.new("RGB", (64, 64), (0, 255, 0)).save(folder / "train" / "n02" / "images" / "n02_9.JPEG")
    second = data.load("tinyimagenet", data_home)  # same path, new content: rebuilt, not stale
    assert len(second.x_train) == 5
    caches = list((data_home / "data" / "interim").glob("tinyimagenet32-*.npz"))
    assert len(caches) == 2


# ============================================================================ the authors' tables
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "paper-data"
needs_tables = pytest.mark.skipif(
    not (SHARED / "graph_metrics").is_dir(), reason=f"the authors' tables are not at {SHARED}"
)


def _linked_copy(tmp_path: Path) -> Path:
    """The authors' tables as symlinks (fast), so one file can be replaced or removed."""
    root = tmp_path / "paper"
    for f in SHARED.rglob("*.csv"):
        target = root / f.relative_to(SHARED)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(f.resolve())
    return root


def _replace(path: Path, text: str) -> None:
    path.unlink()
    path.write_text(text)


@needs_tables
def test_truncated_unrolled_csv_is_named(tmp_path):
    root = _linked_copy(tmp_path)
    f = root / "graph_metrics/unrolled/unrolled.csv"
    text = f.read_text()
    _replace(f, text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")
    with pytest.raises(
        PaperDataError, match=r"unrolled/unrolled\.csv: size differs \(truncated\?\)"
    ):
        load_unrolled(root)


@needs_tables
def test_dropped_metric_column_is_named(tmp_path):
    root = _linked_copy(tmp_path)
    f = root / "graph_metrics/unrolled/unrolled.csv"
    df = pd.read_csv(f)
    _replace(f, df.drop(columns=["spectral_gap"]).to_csv(index=False))
    with pytest.raises(PaperDataError, match=r"unrolled\.csv: size differs"):
        load_unrolled(root)
    with pytest.raises(PaperDataError, match=r"column\(s\) \['spectral_gap'\] are missing"):
        load_unrolled(root, check="schema")


@needs_tables
def test_missing_per_model_file_is_named(tmp_path):
    root = _linked_copy(tmp_path)
    (root / "graph_metrics/rolled_channel/rolled_channel-CIFAR-100-Resnet-32.csv").unlink()
    with pytest.raises(PaperDataError, match=r"rolled_channel-CIFAR-100-Resnet-32\.csv: missing"):
        load_rolled("rolled_channel", root)


@needs_tables
def test_missing_ramanujan_folder_is_named(tmp_path):
    root = _linked_copy(tmp_path)
    shutil.rmtree(root / "ramanunjan_results" / "Resnet-20")
    with pytest.raises(PaperDataError, match=r"3 of 24 files:\n  ramanunjan_results/Resnet-20/"):
        load_ramanujan(root)
    with pytest.raises(PaperDataError, match=r"ramanunjan_results/Resnet-20/.*missing"):
        load_rolled("rolled", root)  # its no_params come from there


def _unrolled_excerpt(root: Path, **columns) -> Path:  # noqa: ANN003
    """A two-network unrolled.csv of our own (no manifest file: checked by schema only)."""
    rows = {
        "model": ["CONV-6", "CONV-6"],
        "dataset": ["CIFAR-10", "CIFAR-10"],
        "pruning": ["snip", "erk"],
        "sparsity": [0.9, 0.9],
        "seed": [0, 0],
        "accuracy": [0.5, 0.6],
        "nodes": [100, 100],
        "edges": [50, 60],
        **{m: [0.1, 0.2] for m in MGE_METRICS},
    }
    rows.update(columns)
    path = root / "graph_metrics" / "unrolled" / "unrolled.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_an_excerpt_of_our_own_loads_with_schema_checks(tmp_path):
    _unrolled_excerpt(tmp_path)
    df = load_unrolled(tmp_path)
    assert len(df) == 2 and list(df.columns[: len(KEY)]) == list(KEY)


def test_zero_byte_unrolled_csv_is_named(tmp_path):
    path = _unrolled_excerpt(tmp_path)
    path.write_text("")
    with pytest.raises(PaperDataError, match=r"unrolled\.csv is empty \(0 bytes\)"):
        load_unrolled(tmp_path)


def test_header_only_unrolled_csv_is_named(tmp_path):
    path = _unrolled_excerpt(tmp_path)
    path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(PaperDataError, match=r"unrolled\.csv has a header but no rows"):
        load_unrolled(tmp_path)


def test_non_numeric_metric_names_file_and_column(tmp_path):
    _unrolled_excerpt(tmp_path, **{"k-core": [0.1, "n/a?"]})
    with pytest.raises(
        PaperDataError, match=r"unrolled\.csv: column 'k-core' is not numeric: row 3 .* 'n/a\?'"
    ):
        load_unrolled(tmp_path)


def test_unknown_check_mode():
    with pytest.raises(ValueError, match=r"check must be one of"):
        load_unrolled(SHARED if SHARED.is_dir() else None, check="sha")


# ============================================================================ the run store
def test_corrupt_masks_file_is_named(tmp_path):
    (tmp_path / "masks.npz").write_bytes(b"garbage")
    with pytest.raises(
        CorruptFileError, match=r"masks\.npz is not a masks file .* rerun 10_prune_and_train"
    ):
        io.load_masks(tmp_path / "masks.npz")


def test_missing_masks_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"masks file .*masks\.npz does not exist"):
        io.load_masks(tmp_path / "masks.npz")


def test_masks_file_of_another_model_names_the_keys(tmp_path):
    io.save_masks({"features.0.weight": np.ones((2, 2), bool)}, tmp_path / "masks.npz")
    with pytest.raises(
        MaskError, match=r"missing \['0\.weight'.*unknown \['features\.0\.weight'\]"
    ):
        apply_masks(_mlp(), io.load_masks(tmp_path / "masks.npz"))


def test_corrupt_checkpoint_is_named(tmp_path):
    io.save_torch({"epoch": 1}, tmp_path / "checkpoint.pt")
    blob = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CorruptFileError, match=r"checkpoint\.pt is not a readable torch file"):
        io.load_torch(tmp_path / "checkpoint.pt")


def test_corrupt_result_table_is_named(tmp_path):
    (tmp_path / "result.parquet").write_bytes(b"PAR1 broken")
    with pytest.raises(CorruptFileError, match=r"result\.parquet is not a readable Parquet table"):
        io.read_table(tmp_path / "result.parquet")


def test_load_run_model_on_a_folder_that_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run folder .*no-such-run does not exist"):
        pipeline.load_run_model(tmp_path / "no-such-run", "conv6")


def test_load_run_model_without_init_pt_names_it(tmp_path):
    io.write_table(
        pd.DataFrame([{"in_channels": 1, "num_classes": 10, "input_size": 8}]),
        tmp_path / "result.parquet",
    )
    io.save_masks({"w": np.ones(1, bool)}, tmp_path / "masks.npz")
    with pytest.raises(
        MissingRunFileError, match=r"has no init\.pt: 10_prune_and_train has not finished"
    ):
        pipeline.load_run_model(tmp_path, "conv6")


def test_collect_on_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"grid folder .*nowhere does not exist"):
        io.collect(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"no run folders .* under"):
        io.collect(tmp_path)


# ============================================================================ grids and profiles
GRID = {"models": ["conv6"], "datasets": ["digits"], "pruners": ["snip"], "sparsities": [0.9]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": []}, r"seeds list is empty"),
        ({"seeds": ["a", 1]}, r"grid seeds must be integers, got \['a'\]"),
        ({"dense": "false"}, r"'dense' must be true or false, got 'false'"),
        ({"models": []}, r"the grid names no models"),
        ({"models": ["resnet21"]}, r"unknown model\(s\) \['resnet21'\]"),
        ({"pruners": ["snip", "snip"]}, r"pruner\(s\) \['snip'\] twice"),
        ({"sparsities": [0.9, 1.5]}, r"sparsity must lie in \[0, 1\).*1\.5"),
        ({"sparsity": [0.9]}, r"unknown grid keys \['sparsity'\]"),
    ],
)
def test_bad_grids(change, message):
    with pytest.raises(ValueError, match=message):
        expand_grid({**GRID, **change})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"notebook": {}}, r"unknown section\(s\) \['notebook'\] \(did you mean 'notebooks'\?\)"),
        ({"executor": {"workers": 0}}, r"executor\.workers must be a positive integer, got 0"),
        ({"executor": {"worker": 2}}, r"unknown executor key\(s\) \['worker'\]"),
        (
            {"notebooks": {"10_prune_and_trian": {}}},
            r"no notebook '10_prune_and_trian' \(did you mean '10_prune_and_train'\?\)",
        ),
        (
            {"notebooks": {"55_rank_pruners": {"n_bot": 200}}},
            r"'55_rank_pruners' has no parameter\(s\) 'n_bot'",
        ),
        ({"grid": ["conv6"]}, r"section 'grid' must be a mapping"),
    ],
)
def test_bad_profiles_are_refused_before_any_run(tmp_path, change, message):
    prof = {"name": "bad", "grid": GRID, **change}
    with pytest.raises(ValueError, match=message):
        check_profile(prof)
    with pytest.raises(ValueError, match=message):
        run_grid(prof, root=tmp_path, executor="debug")
    assert not list(tmp_path.glob("model=*"))


def test_models_and_training_inputs():
    from mgelib.train import TrainConfig

    with pytest.raises(ValueError, match=r"unknown model 'resnet21'"):
        models.build("resnet21")
    with pytest.raises(ValueError, match=r"in_channels must be a positive integer, got 0"):
        models.build("conv6", in_channels=0)
    with pytest.raises(ValueError, match=r"TrainConfig\.epochs must be a positive integer, got -1"):
        TrainConfig(epochs=-1)
    with pytest.raises(ValueError, match=r"TrainConfig\.batch_size must be a positive integer"):
        TrainConfig(batch_size=0)


# ============================================================================ reproduce and locks
def _finish(spec, root: Path) -> None:  # noqa: ANN001
    """Leave every product of a run, as a finished notebook run would."""
    from mgelib.io import STAGE_PRODUCTS
    from mgelib.runner.grid import stages_for

    d = spec.dir(root)
    for stage in stages_for(spec):
        for name in (*STAGE_PRODUCTS[stage], f"notebooks/{stage}.ipynb"):
            (d / name).parent.mkdir(parents=True, exist_ok=True)
            (d / name).write_text("x")


def _holder(lock: Path, seconds: float, then: str = "") -> subprocess.Popen:
    """Another process that holds ``lock`` for ``seconds`` (then runs ``then``) and releases it."""
    code = (
        "import os, socket, sys, time, pathlib\n"
        f"lock = pathlib.Path({str(lock)!r})\n"
        "fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)\n"
        "os.write(fd, f'{socket.gethostname()}:{os.getpid()}'.encode()); os.close(fd)\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n{then}\n"
        "lock.unlink()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_wait_for_locked_reports_the_run_and_its_holder(tmp_path):
    spec = expand_grid(GRID)[1]
    spec.dir(tmp_path).mkdir(parents=True)
    proc = _holder(spec.dir(tmp_path) / ".lock", 30)
    try:
        assert lock_owner(spec.dir(tmp_path)) == f"{socket.gethostname()}:{proc.pid}"
        said: list[str] = []
        left = wait_for_locked([spec], tmp_path, timeout_s=0.3, poll_s=0.05, echo=said.append)
        assert left == [spec]
        assert said and "waiting for 1 run(s) locked by another process" in said[0]
    finally:
        proc.kill()
        proc.wait()


def _fake_grid(monkeypatch, calls: list):  # noqa: ANN001, ANN202
    """run_grid that finishes every free run at once (no notebooks), and a run_notebook stub."""
    import mgelib.notebooks
    import mgelib.runner
    from mgelib.runner.grid import GridReport, RunStatus

    def fake_run_grid(prof, root=None, **kwargs):  # noqa: ANN001, ANN003
        root = Path(os.environ["MGELIB_RUNS"]) / prof["name"]
        report = GridReport(root=root, total=0)
        for spec in expand_grid(prof["grid"]):
            report.total += 1
            if lock_owner(spec.dir(root)) is None:
                _finish(spec, root)
                report.statuses.append(RunStatus(spec, "done"))
            else:
                report.statuses.append(RunStatus(spec, "locked"))
        return report

    monkeypatch.setattr(mgelib.runner, "run_grid", fake_run_grid)
    monkeypatch.setattr(
        mgelib.notebooks, "run_notebook", lambda stem, *a, **k: calls.append(stem) or Path(stem)
    )


def test_reproduce_never_analyses_a_grid_with_runs_locked_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("MGELIB_RUNS", str(tmp_path / "runs"))
    calls: list[str] = []
    _fake_grid(monkeypatch, calls)
    prof = {"name": "two", "grid": GRID, "analysis": ["30_collect_runs"]}
    spec = expand_grid(GRID)[1]
    d = spec.dir(tmp_path / "runs" / "two")
    d.mkdir(parents=True)
    proc = _holder(d / ".lock", 30)
    try:
        with pytest.raises(GridIncompleteError, match=rf"1 of 2 runs .*\n  {spec}: locked by "):
            pipeline.reproduce(prof, lock_timeout_s=0.5)
    finally:
        proc.kill()
        proc.wait()
    assert calls == []  # no analysis notebook ran


def test_reproduce_waits_for_the_other_process_then_analyses(tmp_path, monkeypatch):
    monkeypatch.setenv("MGELIB_RUNS", str(tmp_path / "runs"))
    calls: list[str] = []
    _fake_grid(monkeypatch, calls)
    prof = {"name": "two", "grid": GRID, "analysis": ["30_collect_runs"]}
    spec = expand_grid(GRID)[1]
    root = tmp_path / "runs" / "two"
    spec.dir(root).mkdir(parents=True)
    # The other process finishes its run after a second, then releases the lock (plain Python:
    # it writes the products _finish would write, listed here).
    from mgelib.io import STAGE_PRODUCTS
    from mgelib.runner.grid import stages_for

    products = [
        str(spec.dir(root) / name)
        for stage in stages_for(spec)
        for name in (*STAGE_PRODUCTS[stage], f"notebooks/{stage}.ipynb")
    ]
    finish = (
        f"for p in {products!r}:\n"
        "    pathlib.Path(p).parent.mkdir(parents=True, exist_ok=True)\n"
        "    pathlib.Path(p).write_text('x')\n"
    )
    proc = _holder(spec.dir(root) / ".lock", 1.0, finish)
    t0 = time.monotonic()
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: real_sleep(min(s, 0.1)))  # poll fast
    pipeline.reproduce(prof, lock_timeout_s=30)
    proc.wait(timeout=30)
    assert calls == ["30_collect_runs"]
    assert time.monotonic() - t0 >= 0.9


def test_resume_from_a_corrupt_checkpoint_names_it(tmp_path):
    from mgelib.data import Augment, Dataset
    from mgelib.train import TrainConfig, train

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (8, 1, 4, 4), generator=g, dtype=torch.uint8)
    y = torch.arange(8) % 2
    ds = Dataset("digits", x, y, x, y, 2, 1, 4, (0.5,), (0.25,), Augment(0, False))
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a zip")  # killed while saving
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(CorruptFileError, match=r"checkpoint\.pt is not a readable torch file"):
        train(net, None, ds, TrainConfig(epochs=1, batch_size=4), run_dir=tmp_path, progress=False)
