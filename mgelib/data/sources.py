"""Reading the datasets into memory: the :class:`Dataset` container, :func:`load`, the embedded
``digits``, the CIFAR pickles, the Tiny-ImageNet folder (resized once and cached), the download
of the official archives and the per-channel statistics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mgelib import paths
from mgelib.errors import DataFormatError
from mgelib.progress import quiet

__all__ = ["DATASETS", "Augment", "Dataset", "load"]

#: Dataset names accepted by :func:`load`.
DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100", "tinyimagenet")

# Official archives: (url, md5 of the archive or None, folder it unpacks to).
_SOURCES: dict[str, tuple[str, str | None, str]] = {
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
    ),
    "tinyimagenet": ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", None, "tiny-imagenet-200"),
}

_TINY_SIZE = 32  # Tiny-ImageNet is used at 32×32 "as the authors did" (SPEC §3)
_TINY_CLASSES = 200  # what the folder name tiny-imagenet-200 promises without a wnids.txt


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation: random crop from a zero-padded image, optional horizontal flip.

    ``crop_padding`` pixels of zeros are added on every side and a crop of the original size is
    taken at a uniformly random offset (torchvision's ``RandomCrop(size, padding=p)``); ``flip``
    mirrors each image left-right with probability 1/2. ``Augment(0, False)`` is no augmentation.
    """

    crop_padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if int(self.crop_padding) < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset held in memory as uint8 image tensors ``(N, C, H, W)`` and int64 labels.

    ``mean``/``std`` are per-channel statistics of the training images in [0, 1] units (used by
    :func:`normalize`); ``augment`` is the training augmentation. Instances compare by identity,
    so they can key the per-device cache of :class:`DeviceLoader`.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment
    classes: tuple[str, ...] = ()

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"`` or ``"test"``."""
        if split == "train":
            return self.x_train, self.y_train
        if split == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes}, augment={self.augment})"
        )


# ------------------------------------------------------------------------------------- loading
def load(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    download: bool = False,
    upsample: int | None = None,
) -> Dataset:
    """Load one of :data:`DATASETS` into memory.

    Parameters
    ----------
    name
        ``"digits"``, ``"cifar10"``, ``"cifar100"`` or ``"tinyimagenet"``.
    root
        Folder holding ``cifar-10-batches-py/``, ``cifar-100-python/`` or ``tiny-imagenet-200/``;
        defaults to :func:`mgelib.paths.datasets_dir`. Ignored for ``digits``.
    seed
        ``digits`` only: seed of the stratified train/test split (test fraction 0.25).
    download
        Fetch the official archive into ``root`` if the folder is missing (needs a network).
    upsample
        Resize every image once to ``upsample × upsample`` (bilinear, then rounded to uint8),
        e.g. 32 to train CIFAR-sized models on digits. The crop padding scales with it (digits:
        one original pixel).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name (the message lists :data:`DATASETS`) or a bad ``upsample``.
    FileNotFoundError
        The dataset folder is missing; the message names the expected path and how to get it.
    ConnectionError
        ``download=True`` and the archive cannot be fetched.

    Examples
    --------
    >>> ds = load("digits", seed=1, upsample=16)
    >>> tuple(ds.x_test.shape), ds.augment
    ((450, 1, 16, 16), Augment(crop_padding=2, flip=False))
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if upsample is not None and not (
        isinstance(upsample, (int, np.integer)) and not isinstance(upsample, bool) and upsample >= 1
    ):
        raise ValueError(
            "upsample must be a positive integer (the new image side in pixels, e.g. 32) or "
            f"None, got {upsample!r}"
        )
    if name == "digits":
        arrays = _digits(seed)
        pad, flip = 1, False  # digits are not flip-invariant (a mirrored 2 is no 2)
    else:
        base = Path(root).expanduser() if root is not None else paths.datasets_dir()
        folder = base / _SOURCES[name][2]
        if not folder.is_dir():
            if download:
                _download_and_extract(name, base)
            else:
                raise FileNotFoundError(_missing_message(name, folder))
        if name == "cifar10":
            arrays = _cifar(
                folder,
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
                "test_batch",
                b"labels",
                "batches.meta",
                b"label_names",
            )
        elif name == "cifar100":
            arrays = _cifar(folder, ("train",), "test", b"fine_labels", "meta", b"fine_label_names")
        else:
            arrays = _tinyimagenet(folder)
        pad, flip = 4, True
    x_train, y_train, x_test, y_test, classes = arrays
    size = int(x_train.shape[-1])
    if upsample is not None:
        upsample = int(upsample)
        if upsample < size:
            raise ValueError(
                f"upsample={upsample} is smaller than the images ({size}×{size}); "
                "it only enlarges images"
            )
        if upsample != size:
            pad = max(1, round(pad * upsample / size))
            x_train, x_test = _resize(x_train, upsample), _resize(x_test, upsample)
            size = upsample
    mean, std = _channel_stats(x_train)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(classes),
        in_channels=int(x_train.shape[1]),
        input_size=size,
        mean=mean,
        std=std,
        augment=Augment(pad, flip),
        classes=tuple(classes),
    )


_Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]


def _digits(seed: int) -> _Arrays:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Grey levels 0..16 → 0..255, so every dataset is uint8 in [0, 255].
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=int(seed)
    )
    idx_train.sort()
    idx_test.sort()
    return (
        torch.from_numpy(images[idx_train]),
        torch.from_numpy(labels[idx_train]),
        torch.from_numpy(images[idx_test]),
        torch.from_numpy(labels[idx_test]),
        [str(c) for c in range(10)],
    )


def _unpickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with bytes keys; a named error for an empty, truncated or corrupt
    file (pickle's own ``EOFError`` / ``UnpicklingError`` say nothing of which file)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; the dataset folder looks incomplete")
    if path.stat().st_size == 0:
        raise DataFormatError(
            f"{path} is empty (0 bytes); delete the dataset folder and download it again"
        )
    try:
        with path.open("rb") as fh:
            raw = pickle.load(fh, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, MemoryError) as err:  # fmt: skip
        raise DataFormatError(
            f"{path} is not a readable CIFAR pickle (truncated or corrupt: {type(err).__name__}: "
            f"{err}); delete the dataset folder and download it again"
        ) from err
    if not isinstance(raw, dict):
        raise DataFormatError(
            f"{path} holds a {type(raw).__name__}, not the dict of a CIFAR batch file"
        )
    # The official files use bytes keys; accept str keys too (files written by other tools).
    return {(k.encode() if isinstance(k, str) else k): v for k, v in raw.items()}


def _field(d: dict, key: bytes, path: Path) -> object:
    if key not in d:
        have = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in d)
        raise DataFormatError(
            f"{path} has no {key.decode()!r} entry (it has {have}); is it a file of another "
            "dataset (CIFAR-10 uses 'labels', CIFAR-100 'fine_labels')?"
        )
    return d[key]


def _cifar_batch(path: Path, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` and labels of one CIFAR file, checked: 3072 bytes a row, one
    label per image, labels in ``[0, n_classes)``."""
    d = _unpickle(path)
    try:
        data = np.asarray(_field(d, b"data", path), dtype=np.uint8)
        labels = np.asarray(_field(d, label_key, path), dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: images or labels are not numeric arrays ({err})") from err
    row = 3 * 32 * 32
    if data.ndim != 2 or data.shape[1] != row:
        raise DataFormatError(
            f"{path}: images have shape {data.shape}, expected (N, {row}) (32×32 RGB rows); "
            "the file is not a CIFAR batch or is damaged"
        )
    if len(labels) != len(data):
        raise DataFormatError(
            f"{path}: {len(data)} images but {len(labels)} labels ({label_key.decode()!r}); "
            "the file is damaged: download the dataset again"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataFormatError(
            f"{path}: labels range from {labels.min()} to {labels.max()}, outside [0, {n_classes}) "
            f"for a {n_classes}-class dataset; the file belongs to another dataset or is damaged"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _cifar(
    folder: Path,
    train_files: tuple[str, ...],
    test_file: str,
    label_key: bytes,
    meta_file: str,
    names_key: bytes,
) -> _Arrays:
    n_classes = 100 if label_key == b"fine_labels" else 10

    def read(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for f in files:
            x, y = _cifar_batch(folder / f, label_key, n_classes)
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    x_train, y_train = read(train_files)
    x_test, y_test = read((test_file,))
    classes = [str(i) for i in range(n_classes)]
    if (folder / meta_file).is_file():
        names = _unpickle(folder / meta_file).get(names_key)
        if names is not None and len(names) == n_classes:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return x_train, y_train, x_test, y_test, classes


def _fingerprint(folder: Path) -> str:
    """A digest of every file under ``folder`` (relative name, size, mtime): the Tiny-ImageNet
    cache is keyed on it, so a folder whose content changed is read again, not served stale."""
    h = hashlib.sha1()
    stack = [folder]
    entries = []
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=True):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=True):
                    st = e.stat()
                    entries.append(
                        f"{os.path.relpath(e.path, folder)}\0{st.st_size}\0{st.st_mtime_ns}"
                    )
    for line in sorted(entries):
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def _tinyimagenet(folder: Path) -> _Arrays:
    key = _fingerprint(folder)
    cache = paths.interim_dir() / f"tinyimagenet{_TINY_SIZE}-{key}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return (
                torch.from_numpy(z["x_train"]),
                torch.from_numpy(z["y_train"]),
                torch.from_numpy(z["x_test"]),
                torch.from_numpy(z["y_test"]),
                [str(w) for w in z["wnids"]],
            )
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        raise ImportError(
            "reading Tiny-ImageNet needs Pillow (pip install pillow); it is normally installed "
            "with matplotlib"
        ) from None

    train_dir = folder / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"{train_dir} is missing; the Tiny-ImageNet folder is incomplete")
    # Labels index the *sorted* wnids, as torchvision's ImageFolder (the authors' loader) does,
    # so a classifier trained by their code has the same output order.
    wnids = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if (folder / "wnids.txt").is_file():
        listed = sorted(w.strip() for w in (folder / "wnids.txt").read_text().split() if w.strip())
        if listed != wnids:
            absent = sorted(set(listed) - set(wnids))
            unlisted = sorted(set(wnids) - set(listed))
            raise DataFormatError(
                f"{folder / 'wnids.txt'} lists {len(listed)} classes but {train_dir} holds "
                f"{len(wnids)} class folders (no folder for {absent[:5]}; not listed: "
                f"{unlisted[:5]}); the dataset looks incomplete"
            )
    elif len(wnids) != _TINY_CLASSES:
        raise DataFormatError(
            f"{train_dir} holds {len(wnids)} class folders, not Tiny-ImageNet's {_TINY_CLASSES}, "
            f"and {folder / 'wnids.txt'} (the class list) is missing: a class folder may be lost. "
            "Download the dataset again, or write wnids.txt listing the classes to use"
        )
    label = {w: i for i, w in enumerate(wnids)}
    train = []
    for w in wnids:
        images = sorted((train_dir / w / "images").glob("*.JPEG"))
        if not images:
            raise DataFormatError(
                f"class folder {train_dir / w} has no images (expected {w}/images/*.JPEG); "
                "the dataset is incomplete: download it again or remove the class from wnids.txt"
            )
        train += [(p, label[w]) for p in images]
    val_dir = folder / "val"
    annotations = val_dir / "val_annotations.txt"
    if annotations.is_file():
        val = []
        for number, line in enumerate(annotations.read_text().splitlines(), 1):
            parts = line.split("\t")
            if len(parts) >= 2:
                if parts[1] not in label:
                    raise DataFormatError(
                        f"{annotations} line {number} labels {parts[0]} with class {parts[1]!r}, "
                        f"which has no folder under {train_dir}; the dataset is incomplete"
                    )
                val.append((val_dir / "images" / parts[0], label[parts[1]]))
        val.sort(key=lambda t: t[0].name)
    else:
        # The authors' script moves val images into val/<wnid>/images/ and deletes the .txt files.
        val = [
            (p, label[w]) for w in wnids for p in sorted((val_dir / w / "images").glob("*.JPEG"))
        ]
    if not train or not val:
        raise FileNotFoundError(
            f"no JPEG images found under {train_dir} or {val_dir}; expected "
            "train/<wnid>/images/*.JPEG and val/images/*.JPEG with val/val_annotations.txt"
        )

    def read(items: list[tuple[Path, int]], what: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((len(items), _TINY_SIZE, _TINY_SIZE, 3), dtype=np.uint8)
        for i, (path, _) in enumerate(
            tqdm(items, desc=f"Tiny-ImageNet {what} → 32×32", disable=quiet(), leave=False)
        ):
            try:
                with Image.open(path) as im:
                    # A few Tiny-ImageNet images are greyscale; BOX is the authors' resize filter.
                    im = im.convert("RGB").resize((_TINY_SIZE, _TINY_SIZE), Image.BOX)
                    x[i] = np.asarray(im)
            except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
                raise DataFormatError(
                    f"{path} is not a readable image ({err}); the dataset is damaged"
                ) from err
        return x.transpose(0, 3, 1, 2).copy(), np.array([y for _, y in items], dtype=np.int64)

    x_train, y_train = read(train, "train")
    x_test, y_test = read(val, "val")
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                x_train=x_train,
                y_train=y_train,
                x_test=x_test,
                y_test=y_test,
                wnids=np.array(wnids),
            )
        os.replace(tmp, cache)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
        wnids,
    )


def _missing_message(name: str, folder: Path) -> str:
    url = _SOURCES[name][0]
    return (
        f"{name}: expected the dataset at {folder}, which does not exist. Download {url} and "
        f"unpack it into {folder.parent} (or call load({name!r}, download=True), or pass root= / "
        "set MGELIB_DATASETS to the folder that contains it)."
    )


def _download_and_extract(name: str, base: Path) -> None:
    url, md5, folder = _SOURCES[name]
    base.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=base, suffix=".part")
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as fh:
                shutil.copyfileobj(response, fh, length=1 << 20)
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionError(
                f"could not download {name} from {url} ({err}); this machine may have no "
                f"network. Download the archive elsewhere and unpack it so that {base / folder} "
                "exists."
            ) from err
        if md5 is not None:
            digest = hashlib.md5(Path(tmp).read_bytes()).hexdigest()
            if digest != md5:
                raise ConnectionError(
                    f"the download of {url} is corrupt (md5 {digest}, expected {md5}); try again"
                )
        if url.endswith(".zip"):
            with zipfile.ZipFile(tmp) as zf:
                zf.extractall(base)
        else:
            with tarfile.open(tmp, "r:gz") as tf:
                tf.extractall(base, filter="data")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not (base / folder).is_dir():
        raise FileNotFoundError(f"unpacking {url} did not create {base / folder}")


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def _channel_stats(
    x: torch.Tensor, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std in [0, 1] units, chunked to bound memory."""
    s = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk].to(torch.float64)
        s += part.sum(dim=(0, 2, 3))
        s2 += part.square().sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant channel: do not divide by 0
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())
