"""Download the authors' published metric tables, checked against pinned sha256 sums.

The tables live in github.com/eliacunegatti/mge-snn (``graph_data/``, Apache-2.0); the manifest
``mgelib/resources/paper_data_manifest.json`` pins the commit and every file's sha256. The project
commits none of the data: :func:`fetch_paper_data` puts it under ``data/external/paper-data``
(where :func:`mgelib.paths.paper_data_dir` finds it), or ``MGELIB_PAPER_DATA`` points at an
existing copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

from mgelib import paths
from mgelib.io import atomic_path

__all__ = ["manifest", "verify_paper_data", "fetch_paper_data", "RAW_URL"]

RAW_URL = "https://raw.githubusercontent.com/{repository}/{commit}/{folder}/{path}"


def manifest() -> dict[str, Any]:
    """The pinned list of files (path → sha256, bytes) and their source commit."""
    text = resources.files("mgelib.resources").joinpath("paper_data_manifest.json").read_text()
    return json.loads(text)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_paper_data(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Check a copy of the tables: path → ``"ok"``, ``"missing"`` or ``"checksum mismatch"``."""
    root = Path(root) if root else paths.paper_data_dir()
    out = {}
    for rel, info in manifest()["files"].items():
        f = root / rel
        if not f.exists():
            out[rel] = "missing"
        elif _sha256(f) != info["sha256"]:
            out[rel] = "checksum mismatch"
        else:
            out[rel] = "ok"
    return out


def fetch_paper_data(
    dest: str | os.PathLike | None = None, *, force: bool = False, timeout: float = 30.0
) -> Path:
    """Download every manifest file into ``dest`` (default ``data/external/paper-data``).

    Files already present with the right checksum are kept. Each download is verified before it
    is moved into place.

    Raises
    ------
    ConnectionError
        When GitHub cannot be reached (no network): the message says how to use an existing copy.
    ValueError
        When a downloaded file's sha256 differs from the manifest.
    """
    man = manifest()
    dest = Path(dest) if dest else paths.data_dir() / "external" / "paper-data"
    for rel, info in man["files"].items():
        target = dest / rel
        if target.exists() and not force and _sha256(target) == info["sha256"]:
            continue
        url = RAW_URL.format(path=rel, **man)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(target) as tmp:
                with open(tmp, "wb") as fh:
                    while block := resp.read(1 << 20):
                        fh.write(block)
                got = _sha256(tmp)
                if got != info["sha256"]:
                    raise ValueError(
                        f"{rel}: sha256 {got} differs from the pinned {info['sha256']}"
                    )
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ConnectionError(
                f"could not download {url} ({exc}). Without network access, point MGELIB_PAPER_DATA "
                "at an existing copy of the authors' graph_data/ folder."
            ) from exc
    return dest
