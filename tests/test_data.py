"""Tests for mgelib.data on tiny files written in the real on-disk formats."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from mgelib import data

pytestmark = pytest.mark.usefixtures("torch_single_thread")

# ----------------------------------------------------------------------------- fake datasets


def _pattern(n: int, offset: int = 0) -> np.ndarray:
    """(n, 3, 32, 32) uint8 images whose pixels encode (image, channel, y, x)."""
    i, c, y, x = np.meshgrid(
        np.arange(n) + offset, np.arange(3), np.arange(32), np.arange(32), indexing="ij"
    )
    return ((i * 7 + c * 50 + y * 3 + x) % 256).astype(np.uint8)


def _write_cifar10(root: Path, per_batch: int = 20) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        imgs = _pattern(per_batch, offset=(b - 1) * per_batch)
        labels = [int(k) % 10 for k in range((b - 1) * per_batch, b * per_batch)]
        blob = {b"batch_label": b"x", b"labels": labels, b"data": imgs.reshape(per_batch, -1)}
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(blob))
    test = {
        b"labels": [k % 10 for k in range(per_batch)],
        b"data": _pattern(per_batch, 999).reshape(per_batch, -1),
    }
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    names = [f"class{k}".encode() for k in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))


def _write_cifar100(root: Path, n: int = 20) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, off in (("train", 0), ("test", 500)):
        blob = {
            b"data": _pattern(n, off).reshape(n, -1),
            b"fine_labels": [(k * 7) % 100 for k in range(n)],
            b"coarse_labels": [k % 20 for k in range(n)],
        }
        (folder / split).write_bytes(pickle.dumps(blob))
    meta = {b"fine_label_names": [f"f{k}".encode() for k in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))


TINY_COLOURS = {"n02": (200, 30, 30), "n01": (20, 40, 220)}  # wnids.txt is not sorted


def _write_tiny(root: Path, per_class: int = 3) -> None:
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_COLOURS) + "\n")
    lines = []
    for w, colour in TINY_COLOURS.items():
        images = folder / "train" / w / "images"
        images.mkdir(parents=True)
        for k in range(per_class):
            Image.new("RGB", (64, 64), colour).save(images / f"{w}_{k}.JPEG")
        name = f"val_{w}.JPEG"
        Image.new("L", (64, 64), colour[0]).save(
            folder / "val" / "images" / name
        )  # a greyscale one
        lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def digits() -> data.Dataset:
    return data.load("digits", seed=0)


def test_digits_layout(digits):
    assert digits.x_train.shape == (1347, 1, 8, 8) and digits.x_test.shape == (450, 1, 8, 8)
    assert digits.x_train.dtype == torch.uint8 and digits.y_train.dtype == torch.int64
    assert int(digits.x_train.max()) == 255 and int(digits.x_train.min()) == 0
    assert (digits.num_classes, digits.in_channels, digits.input_size) == (10, 1, 8)
    assert digits.augment == data.Augment(crop_padding=1, flip=False)
    x = digits.x_train.double() / 255
    assert digits.mean[0] == pytest.approx(float(x.mean()))
    assert digits.std[0] == pytest.approx(float(x.std(unbiased=False)))


def test_digits_split_is_stratified_and_fixed(digits):
    test_counts = torch.bincount(digits.y_test, minlength=10)
    all_counts = test_counts + torch.bincount(digits.y_train, minlength=10)
    assert torch.all((test_counts - 0.25 * all_counts).abs() <= 1)
    again = data.load("digits", seed=0)
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_test, digits.y_test)
    other = data.load("digits", seed=1)
    assert not torch.equal(other.x_test, digits.x_test)
    assert len(other.y_test) == 450


def test_digits_upsample():
    ds = data.load("digits", upsample=32)
    assert ds.x_train.shape == (1347, 1, 32, 32) and ds.input_size == 32
    assert ds.augment.crop_padding == 4 and not ds.augment.flip
    with pytest.raises(ValueError, match="upsample"):
        data.load("digits", upsample=4)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="digits, cifar10, cifar100, tinyimagenet"):
        data.load("mnist")


# ------------------------------------------------------------------------------ disk formats


def test_cifar10_format(tmp_path):
    _write_cifar10(tmp_path)
    ds = data.load("cifar10", tmp_path)
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert torch.equal(ds.x_train, torch.from_numpy(_pattern(100)))
    assert torch.equal(ds.y_train, torch.arange(100) % 10)
    assert ds.classes[3] == "class3" and ds.num_classes == 10
    assert ds.augment == data.Augment(4, True)
    x = ds.x_train.double() / 255
    assert ds.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()))
    assert ds.std == pytest.approx(tuple(x.std(dim=(0, 2, 3), unbiased=False).tolist()))


def test_cifar100_format(tmp_path):
    _write_cifar100(tmp_path)
    ds = data.load("cifar100", root=tmp_path)
    assert ds.num_classes == 100 and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.y_train.tolist() == [(k * 7) % 100 for k in range(20)]  # fine, not coarse, labels
    assert torch.equal(ds.x_test, torch.from_numpy(_pattern(20, 500)))


def test_tinyimagenet_format_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MGELIB_DATA", str(tmp_path / "data"))
    _write_tiny(tmp_path)
    ds = data.load("tinyimagenet", tmp_path)
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    assert ds.classes == ("n01", "n02")  # sorted wnids, as torchvision's ImageFolder
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    red = ds.x_train[ds.y_train == 1].float().mean(dim=(0, 2, 3))
    assert torch.allclose(red, torch.tensor([200.0, 30.0, 30.0]), atol=4)
    assert ds.x_test.shape[1] == 3  # the greyscale val image became RGB
    caches = list((tmp_path / "data" / "interim").glob("tinyimagenet32-*.npz"))
    assert len(caches) == 1

    import PIL.Image

    def no_read(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(PIL.Image, "open", no_read)
    cached = data.load("tinyimagenet", tmp_path)
    assert torch.equal(cached.x_train, ds.x_train) and torch.equal(cached.y_test, ds.y_test)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tinyimagenet"])
def test_missing_files(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        data.load(name, tmp_path)
    assert str(tmp_path) in str(err.value) and "download" in str(err.value)


def test_download_offline(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ConnectionError, match="cifar-10-python.tar.gz"):
        data.load("cifar10", tmp_path, download=True)
    assert not list(tmp_path.iterdir())  # no partial file left behind


# ------------------------------------------------------------------------------ augmentation


def _shifts(x: torch.Tensor, p: int) -> list[torch.Tensor]:
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    h, w = x.shape[-2:]
    return [padded[..., i : i + h, j : j + w] for i in range(2 * p + 1) for j in range(2 * p + 1)]


def test_crop_is_a_real_shift():
    x = (torch.arange(36, dtype=torch.uint8) + 1).reshape(1, 1, 6, 6).repeat(64, 2, 1, 1)
    out = data.augment(x, data.Augment(2, False), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    candidates = _shifts(x[:1], 2)
    used = set()
    for img in out:
        hits = [k for k, c in enumerate(candidates) if torch.equal(img, c[0])]
        assert len(hits) == 1
        used.add(hits[0])
    assert len(used) > 10  # many of the 25 offsets occur
    # Known case: shift down-right by one → first row/column are zero padding.
    manual = torch.nn.functional.pad(x[:1], (1, 0, 1, 0))[..., :6, :6]
    assert any(torch.equal(img, manual[0]) for img in out)


def test_flip_only_when_allowed():
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).repeat(200, 1, 1, 1)
    flipped = data.augment(x, data.Augment(0, True), torch.Generator().manual_seed(1))
    is_flip = torch.tensor([torch.equal(a, x[0].flip(-1)) for a in flipped])
    is_same = torch.tensor([torch.equal(a, x[0]) for a in flipped])
    assert torch.all(is_flip | is_same) and 60 < int(is_flip.sum()) < 140
    never = data.augment(x, data.Augment(0, False), torch.Generator().manual_seed(1))
    assert torch.equal(never, x)


def test_digits_loader_never_flips(digits):
    # Through the loader: every augmented image is an un-flipped 1-pixel shift of its source
    # (the loader draws its permutation first, so the same seed gives the order).
    perm = torch.randperm(len(digits.y_train), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    xb, yb = next(iter(data.DeviceLoader(digits, "train", 64, "cpu", train=True, generator=g)))
    raw = ((xb * digits.std[0] + digits.mean[0]) * 255).round().to(torch.uint8)
    assert torch.equal(yb, digits.y_train[perm[:64]])
    for img, src in zip(raw, digits.x_train[perm[:64]]):
        assert any(torch.equal(img, s[0]) for s in _shifts(src[None], 1))
    # Direct check: the augmentation of a chiral pattern never produces its mirror image.
    x = torch.zeros(300, 1, 8, 8, dtype=torch.uint8)
    x[:, 0, 2:6, 2] = 255
    x[:, 0, 2, 2:5] = 255  # a "Γ"
    out = data.augment(x, digits.augment, torch.Generator().manual_seed(0))
    mirrors = _shifts(x[:1].flip(-1), 1)
    assert not any(torch.equal(o, m[0]) for o in out for m in mirrors)


def test_loader_batches_and_determinism(tmp_path):
    _write_cifar10(tmp_path)
    ds = data.load("cifar10", tmp_path)

    def run(seed: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [x for x, _ in data.DeviceLoader(ds, "train", 32, "cpu", train=True, generator=g)]

    a, b, c = run(0), run(0), run(1)
    assert [x.shape[0] for x in a] == [32, 32, 32, 4]
    assert all(x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    # Labels follow their images through the shuffle.
    g = torch.Generator().manual_seed(0)
    ys = torch.cat([y for _, y in data.DeviceLoader(ds, "train", 32, train=True, generator=g)])
    assert sorted(ys.tolist()) == sorted(ds.y_train.tolist())


def test_test_split_is_never_augmented(tmp_path):
    _write_cifar10(tmp_path)
    ds = data.load("cifar10", tmp_path)
    expected = data.normalize(ds.x_test, ds.mean, ds.std)
    batches = list(data.batches(ds, "test", 8, "cpu", train=False))
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), expected)
    assert torch.equal(torch.cat([b[1] for b in batches]), ds.y_test)
    # train=True on the test split shuffles (from the generator) but still never augments.
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    batches = list(data.batches(ds, "test", 8, "cpu", train=True, generator=g))
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), expected[perm])
    assert torch.equal(torch.cat([b[1] for b in batches]), ds.y_test[perm])


def test_normalised_train_set_is_standardised(digits):
    x = data.normalize(digits.x_train, digits.mean, digits.std)
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)


def test_loader_drops_a_single_sample_last_batch(digits):
    loader = data.DeviceLoader(digits, "train", 1346, train=True, generator=torch.Generator())
    assert len(loader) == 1 and [len(y) for _, y in loader] == [1346]
    assert len(data.DeviceLoader(digits, "train", 1346, train=False)) == 2
    with pytest.raises(ValueError, match="batch_size"):
        data.DeviceLoader(digits, "train", 0, train=False)
    with pytest.raises(ValueError, match="split"):
        data.DeviceLoader(digits, "val", 8, train=False)
