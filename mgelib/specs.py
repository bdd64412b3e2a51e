"""User code by import path: ``package.module:callable`` or ``path/to/file.py:callable``.

Everywhere a model or pruner *name* is accepted, a *spec* naming the user's own callable is
accepted too (SPEC §4, "User pruners"). This module is the one place that parses, imports,
labels and fingerprints specs; :mod:`mgelib.models` and :mod:`mgelib.pruning` call it.

- A **module spec** ``mymodels:tiny_vgg`` imports ``mymodels`` (it must be importable: on
  ``PYTHONPATH``, installed, or in the current folder) and takes its attribute ``tiny_vgg``
  (dotted attributes such as ``mymodels:Zoo.tiny`` are allowed).
- A **file spec** ``nets/tiny.py:tiny_vgg`` loads that file by its path — no ``PYTHONPATH``
  needed. A relative path is looked up in the current folder, then in each ``sys.path`` entry;
  :func:`canonical` turns it into an absolute path, which is what a grid hands to its notebooks
  (their kernels run in the run folder, not in yours).

A spec's **label** (:func:`label`) names its run folders: readable and filesystem-safe, and
distinct for distinct specs — ``mymodels:tiny_vgg`` → ``mymodels.tiny_vgg``; a file spec gets
its file stem and a short hash of its absolute path (``tiny.tiny_vgg-1f3a9c``), since two files
``a/tiny.py`` and ``b/tiny.py`` must not share a folder, and a dotted attribute a hash of the
spec (``a:b.c`` and ``a.b:c`` differ). Built-in names are their own labels.

Examples
--------
>>> is_spec("conv6"), is_spec("mymodels:tiny_vgg"), is_spec("nets/tiny.py:tiny_vgg")
(False, True, True)
>>> label("mymodels:tiny_vgg")
'mymodels.tiny_vgg'
>>> label("snip")
'snip'
>>> fn = resolve("math:sqrt")
>>> fn(16.0)
4.0
>>> resolve("math:nope")
Traceback (most recent call last):
...
ValueError: spec 'math:nope': module 'math' has no attribute 'nope'; it has: acos, acosh, asin, ...
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Spec",
    "is_spec",
    "parse",
    "resolve",
    "canonical",
    "label",
    "source_file",
    "source_sha256",
    "describe",
    "import_root",
    "call_declared",
    "split_transforms",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
_LOADED: dict[tuple[str, float], Any] = {}  # file specs: (absolute path, mtime) → module


@dataclass(frozen=True)
class Spec:
    """A parsed spec: ``target`` is a module name or a file path, ``attr`` the callable."""

    text: str
    target: str
    attr: str
    is_file: bool


def is_spec(name: Any) -> bool:
    """Whether ``name`` is a spec (``target:callable``) rather than a built-in name."""
    return isinstance(name, str) and ":" in name and not name.startswith(":")


def parse(text: str) -> Spec:
    """Split ``text`` into target and attribute, refusing malformed specs with the reason."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(
            f"{text!r} is not a spec; write 'package.module:callable' or 'path/to/file.py:callable'"
        )
    target, _, attr = text.strip().rpartition(":")
    # A Windows drive letter ("C:\\x.py:f") leaves a colon inside the target: that is fine.
    if not target or not attr:
        raise ValueError(f"spec {text!r} needs both parts: 'module:callable' or 'file.py:callable'")
    if not _IDENT.match(attr):
        raise ValueError(f"spec {text!r}: {attr!r} is not a Python attribute name")
    is_file = target.endswith(".py") or "/" in target or os.sep in target
    if not is_file and not _IDENT.match(target):
        raise ValueError(
            f"spec {text!r}: {target!r} is neither a module name (dotted identifiers) nor a "
            "path ending in .py"
        )
    return Spec(text, target, attr, is_file)


def _find_file(target: str) -> Path:
    path = Path(target).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    if not path.is_absolute():
        candidates += [Path(p or ".") / path for p in sys.path]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    where = "" if path.is_absolute() else " (looked in the current folder and on sys.path)"
    raise ValueError(f"spec file {target!r} does not exist{where}")


def _load_module(spec: Spec) -> Any:
    if spec.is_file:
        path = _find_file(spec.target)
        key = (str(path), path.stat().st_mtime)
        if key not in _LOADED:
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
            name = f"mgelib_user_{_SAFE.sub('_', path.stem)}_{digest}"
            loader_spec = importlib.util.spec_from_file_location(name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise ValueError(f"spec {spec.text!r}: cannot load {path} as a Python file")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up here
            try:
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(name, None)
                raise ValueError(
                    f"spec {spec.text!r}: running {path} failed: {type(exc).__name__}: {exc}"
                ) from exc
            _LOADED[key] = module
        return _LOADED[key]
    try:
        return importlib.import_module(spec.target)
    except Exception as exc:
        hint = (
            "; put its folder on PYTHONPATH, install it, or use the 'path/to/file.py:callable' form"
            if isinstance(exc, ModuleNotFoundError)
            else ""
        )
        raise ValueError(
            f"spec {spec.text!r}: module {spec.target!r} does not import: "
            f"{type(exc).__name__}: {exc}{hint}"
        ) from exc


def resolve(text: str) -> Callable[..., Any]:
    """Import the callable a spec names.

    Raises
    ------
    ValueError
        If the module does not import (naming it and the import error), the attribute is
        missing (listing what the module has), or the attribute is not callable.
    """
    spec = parse(text)
    obj = _load_module(spec)
    where = f"{'file' if spec.is_file else 'module'} {spec.target!r}"
    for i, part in enumerate(spec.attr.split(".")):
        if not hasattr(obj, part):
            # what the module defines, not the modules it imported (``nn``, ``torch``)
            names = sorted(
                n
                for n in dir(obj)
                if not n.startswith("_") and not inspect.ismodule(getattr(obj, n, None))
            )
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            owner = where if i == 0 else repr(".".join(spec.attr.split(".")[:i]))
            raise ValueError(
                f"spec {text!r}: {owner} has no attribute {part!r}; it has: {shown or 'nothing'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"spec {text!r}: {spec.attr!r} is a {type(obj).__name__}, not callable")
    return obj


def canonical(text: str) -> str:
    """The spec with a file path made absolute (module specs are returned unchanged)."""
    spec = parse(text)
    if not spec.is_file:
        return spec.text.strip()
    return f"{_find_file(spec.target)}:{spec.attr}"


def label(name: str) -> str:
    """The run-folder label of a model/pruner name or spec (see the module docstring)."""
    if not is_spec(name):
        return name
    spec = parse(name)
    if spec.is_file:
        path = _find_file(spec.target)
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:6]
        return _SAFE.sub("_", f"{path.stem}.{spec.attr}") + f"-{digest}"
    if "." in spec.attr:  # "a:b.c" must not share "a.b.c" with "a.b:c"
        digest = hashlib.sha256(spec.text.strip().encode()).hexdigest()[:6]
        return f"{spec.target}.{spec.attr}-{digest}"
    return f"{spec.target}.{spec.attr}"


def source_file(text: str) -> Path | None:
    """The file the spec's callable comes from (``None`` for a built-in/compiled module)."""
    spec = parse(text)
    if spec.is_file:
        return _find_file(spec.target)
    module = _load_module(spec)
    path = getattr(module, "__file__", None)
    return Path(path).resolve() if path else None


def source_sha256(text: str) -> str | None:
    """sha256 of the spec's source file: what the provenance records."""
    path = source_file(text)
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def describe(params: Mapping[str, Any], keys: Iterable[str] = ("model", "pruner")) -> dict:
    """Provenance of the specs among ``params[key]``: ``{key: {spec, label, file, sha256}}``.

    A ``+transform`` suffix (``mypruners:magnitude+shuffle``) is recorded and stripped first.
    Never raises: provenance must not fail a finished run (the error is recorded instead).
    """
    out: dict[str, Any] = {}
    for key in keys:
        value = params.get(key)
        if not is_spec(value):
            continue
        base = split_transforms(value)[0] if key == "pruner" else value
        try:
            path = source_file(base)
            out[key] = {
                "spec": value,
                "label": label(base) + value[len(base) :],
                "file": str(path) if path else None,
                "sha256": source_sha256(base),
            }
        except ValueError as exc:
            out[key] = {"spec": value, "error": str(exc)}
    return out


def split_transforms(name: str) -> tuple[str, tuple[str, ...]]:
    """Split trailing ``+<transform>`` suffixes (:data:`mgelib.vocabulary.PRUNER_TRANSFORMS`)
    off a pruner name or spec.

    Examples
    --------
    >>> split_transforms("snip+shuffle")
    ('snip', ('shuffle',))
    >>> split_transforms("mypruners:magnitude")
    ('mypruners:magnitude', ())
    """
    from mgelib.vocabulary import PRUNER_TRANSFORMS

    transforms: list[str] = []
    base = name
    while "+" in base:
        head, _, tail = base.rpartition("+")
        if tail not in PRUNER_TRANSFORMS:
            break
        transforms.insert(0, tail)
        base = head
    return base, tuple(transforms)


def import_root(text: str) -> str | None:
    """For a module spec, the ``sys.path`` folder its top-level package was imported from —
    what a child process needs on ``PYTHONPATH``; ``None`` for file specs and installed or
    built-in modules (which every process of this environment imports anyway)."""
    spec = parse(text)
    if spec.is_file:
        return None
    _load_module(spec)
    top = sys.modules.get(spec.target.split(".")[0])
    origin = getattr(top, "__file__", None)
    if not origin:
        return None
    path = Path(origin).resolve()
    root = path.parent.parent if path.name == "__init__.py" else path.parent
    if "site-packages" in root.parts or "dist-packages" in root.parts:
        return None
    return str(root)


def call_declared(fn: Callable[..., Any], what: str, available: Mapping[str, Any]) -> Any:
    """Call ``fn`` with those of ``available`` that it declares (all of them if it takes
    ``**kwargs``), refusing a signature with a required parameter we cannot supply.

    ``what`` names the callable in messages (e.g. ``"model factory 'mymodels:tiny_vgg'"``).

    Examples
    --------
    >>> call_declared(lambda num_classes: num_classes, "f", {"num_classes": 3, "seed": 0})
    3
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        return fn(**available)
    params = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return fn(**available)
    kwargs = {}
    for p in params:
        if p.name in available and p.kind is not p.POSITIONAL_ONLY:
            kwargs[p.name] = available[p.name]
        elif p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(
                f"{what} has a required parameter {p.name!r} that mgelib cannot supply; it "
                f"passes only {', '.join(available)} (by keyword): give {p.name!r} a default "
                "or rename it"
            )
    return fn(**kwargs)
