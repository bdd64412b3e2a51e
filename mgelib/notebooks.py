"""Execute the parameterised notebooks with papermill — each in its own process, parameters checked.

papermill only *warns* about a parameter the notebook does not declare; a typo then silently
runs the default. :func:`run_notebook` refuses it instead, naming the parameter and listing the
accepted ones. Each execution runs in a fresh Python process (one kernel per process avoids the
kernel-start timeouts and port clashes of parallel executions in one process), with the kernel's
working directory set to the output folder (never the caller's cwd), and saves the executed
``.ipynb`` and an HTML render beside the outputs. Profiles (``notebooks/params/<name>.yaml``)
hold per-notebook parameters for a whole pipeline (``smoke``, ``default``, ``paper``).

Examples
--------
>>> sorted(notebook_parameters("30_collect_runs"))[:2]  # doctest: +SKIP
['grid_dir', 'profile']
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mgelib import paths

__all__ = [
    "NotebookError",
    "list_notebooks",
    "notebook_path",
    "notebook_parameters",
    "load_profile",
    "list_profiles",
    "profile_params",
    "check_params",
    "run_notebook",
]

KERNEL_NAME = "mgelib-python"


class NotebookError(RuntimeError):
    """A notebook failed; ``.executed`` is the path of the partially executed copy."""

    def __init__(self, message: str, executed: Path | None = None) -> None:
        super().__init__(message)
        self.executed = executed


def list_notebooks() -> list[str]:
    return sorted(p.stem for p in paths.notebooks_dir().glob("[0-9]*_*.ipynb"))


def notebook_path(stem: str) -> Path:
    path = paths.notebooks_dir() / f"{stem}.ipynb"
    if not path.exists():
        raise ValueError(f"unknown notebook {stem!r}; available: {', '.join(list_notebooks())}")
    return path


@lru_cache(maxsize=32)
def _parameters_cached(path: str, mtime: float) -> dict[str, dict[str, Any]]:
    import papermill as pm

    return {k: dict(v) for k, v in pm.inspect_notebook(path).items()}


def notebook_parameters(stem: str) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares (name → papermill's ``inferred_type_name``,
    ``default``, ``help``)."""
    path = notebook_path(stem)
    return _parameters_cached(str(path), path.stat().st_mtime)


def list_profiles() -> list[str]:
    return sorted(p.stem for p in paths.profiles_dir().glob("*.yaml"))


def load_profile(profile: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A profile by name (``notebooks/params/<name>.yaml``), by path, or as a mapping."""
    if isinstance(profile, Mapping):
        data = dict(profile)
        data.setdefault("name", "custom")
        return data
    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = paths.profiles_dir() / f"{profile}.yaml"
    if not path.exists():
        raise ValueError(
            f"unknown profile {str(profile)!r}; available: {', '.join(list_profiles())}"
        )
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("name", path.stem)
    return data


def profile_params(profile: str | Mapping[str, Any] | None, stem: str) -> dict[str, Any]:
    """The parameters a profile sets for one notebook (its ``notebooks.<stem>`` section)."""
    if profile is None:
        return {}
    data = load_profile(profile)
    return dict((data.get("notebooks") or {}).get(stem) or {})


def check_params(stem: str, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every parameter the notebook does not declare, with the
    closest declared names (``difflib``) as suggestions.

    Examples
    --------
    >>> _suggest(["tims"], ["greeting", "times"])
    " (did you mean 'times'?)"
    """
    declared = notebook_parameters(stem)
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(
            f"notebook {stem!r} has no parameter(s) {', '.join(map(repr, unknown))}"
            f"{_suggest(unknown, declared)}; it accepts: {', '.join(sorted(declared))}"
        )


def _suggest(unknown: list[str], declared: Any) -> str:
    import difflib

    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(declared), n=2, cutoff=0.6)
        hints += [f"{c!r}" for c in close if f"{c!r}" not in hints]
    return f" (did you mean {' or '.join(hints)}?)" if hints else ""


def run_notebook(
    stem: str,
    params: Mapping[str, Any] | None = None,
    profile: str | Mapping[str, Any] | None = None,
    *,
    output_dir: str | os.PathLike | None = None,
    quiet: bool = True,
    timeout: float | None = None,
    html: bool = True,
) -> Path:
    """Execute ``notebooks/<stem>.ipynb`` with papermill in a fresh process.

    Parameters
    ----------
    stem : str
        Notebook name without extension, e.g. ``"10_prune_and_train"``.
    params : mapping, optional
        Parameter values; they override the profile's values for this notebook.
    profile : str or mapping, optional
        A profile name (``notebooks/params/<name>.yaml``) whose ``notebooks.<stem>`` section gives
        default values; the profile name is also passed as ``profile`` if the notebook has it.
    output_dir : path, optional
        Where the executed copy goes (``<output_dir>/notebooks/<stem>.ipynb`` and ``.html``) and
        the kernel's working directory; default ``reports_dir()/<profile>/<stem>``. Also passed
        as the notebook's ``output_dir`` parameter, where it has one and ``params`` do not set it.
    quiet : bool
        Silence progress bars in the kernel (``MGELIB_QUIET=1``; they would only be saved as
        outputs of the executed notebook). ``False`` sets ``MGELIB_QUIET=0``.
    timeout : float, optional
        Seconds before the execution is abandoned.
    html : bool
        Also save an HTML render beside the executed notebook.

    Returns
    -------
    Path
        The executed notebook.

    Raises
    ------
    ValueError
        For an unknown notebook or a parameter the notebook does not declare.
    NotebookError
        If a cell fails: the message names the cell, its exception and the partially executed
        copy, kept as ``<stem>.failed.ipynb``.

    Notes
    -----
    String parameters that are paths inside the project root are written into the executed
    copy relative to that root, so executed notebooks carry no machine-specific paths.
    """
    nb = notebook_path(stem)
    merged = profile_params(profile, stem)
    declared = notebook_parameters(stem)
    if profile is not None and "profile" in declared:
        merged.setdefault("profile", load_profile(profile)["name"])
    merged.update(params or {})
    check_params(stem, merged)
    if output_dir is None:
        name = load_profile(profile)["name"] if profile is not None else "adhoc"
        output_dir = paths.reports_dir() / name / stem
    elif "output_dir" in declared:  # one folder for the executed copy and what the notebook writes
        merged.setdefault("output_dir", str(Path(output_dir).resolve()))
    out_dir = Path(output_dir).resolve()
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    target = out_dir / "notebooks" / f"{stem}.ipynb"
    env = dict(os.environ)
    env["MGELIB_ROOT"] = str(paths.root())
    env["MGELIB_QUIET"] = "1" if quiet else "0"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(merged, fh, default=str)
        params_file = fh.name
    cmd = [
        sys.executable,
        "-m",
        "mgelib.notebooks",
        str(nb),
        str(target),
        params_file,
        str(out_dir),
    ]
    if not html:
        cmd.append("--no-html")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise NotebookError(f"notebook {stem} timed out after {timeout} s", None) from exc
    finally:
        os.unlink(params_file)
    if proc.returncode != 0:
        failed = target.with_name(f"{stem}.failed.ipynb")
        raise NotebookError(
            f"notebook {stem} failed: {_cause(proc.stderr or proc.stdout)}. "
            + (
                f"The partially executed copy, with the traceback, is {failed}."
                if failed.exists()
                else "No executed copy was saved."
            ),
            failed if failed.exists() else None,
        )
    return target


_CAUSE = "mgelib-notebook-error: "


def _cause(stderr: str) -> str:
    """The failure's one-line cause that the child printed (see :func:`_execute`), else the
    last lines of its output."""
    for line in reversed(stderr.strip().splitlines()):
        if line.startswith(_CAUSE):
            return json.loads(line[len(_CAUSE) :])
    return "\n".join(stderr.strip().splitlines()[-10:])


def _describe(exc: BaseException) -> str:
    """``cell [3] raised FileNotFoundError: …`` for a failing cell, else the exception itself;
    long messages are cut to 600 characters."""
    name, value = getattr(exc, "ename", None), getattr(exc, "evalue", None)
    if name is not None:
        cell = getattr(exc, "exec_count", None)
        where = f"cell [{cell}]" if cell is not None else "a cell"
        text = f"{where} raised {name}: {value}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 600 else text[:597] + "..."


def _relative_parameters(path: Path, root: Path, target: Path | None = None) -> None:
    """Rewrite absolute paths under ``root`` in the injected-parameters cell and papermill's
    metadata (parameters, input and output path) of an executed notebook as paths relative to
    ``root``; ``target`` is the name the copy will have."""
    import nbformat

    prefix = str(root).rstrip(os.sep) + os.sep
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            if prefix in cell.source:
                cell.source = cell.source.replace(prefix, "")
                changed = True
    papermill = nb.metadata.get("papermill", {})
    meta = papermill.get("parameters", {})
    for key, value in meta.items():
        if isinstance(value, str) and value.startswith(prefix):
            meta[key] = value[len(prefix) :]
            changed = True
    if target is not None:  # papermill wrote the temporary name; record the final one
        papermill["output_path"] = str(target)
    for key in ("input_path", "output_path"):
        value = papermill.get(key)
        if isinstance(value, str) and value.startswith(prefix):
            papermill[key] = value[len(prefix) :]
            changed = True
    if changed:
        nbformat.write(nb, path)


# --------------------------------------------------------------------------- child process
def _kernel_dir() -> str:
    """A kernelspec pointing at *this* interpreter, so the kernel sees this environment even
    when the user's Jupyter has another ``python3`` kernel registered."""
    d = Path(tempfile.mkdtemp(prefix="mgelib-kernel-"))
    spec = d / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "mgelib (Python 3)",
                "language": "python",
            }
        )
    )
    return str(d)


# A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, 104 on macOS).
_MAX_IPC_PATH = 100
_KERNEL_START_ERRORS = ("kernel didn't respond", "address already in use")


def _kernel_manager_class(kdir: str):  # noqa: ANN202
    """A kernel manager that talks to its kernel over Unix sockets in ``kdir``, or None for
    jupyter's default (TCP) where those are unavailable (Windows, an over-long temp path).

    Why: for TCP, jupyter_client picks five free ports by binding and releasing them, and a
    kernel starting at the same moment on the same node (a grid's workers, SLURM array tasks)
    can take one first; the kernel then dies with "Address already in use" and papermill waits
    out its start timeout. Socket files in a private folder cannot collide."""
    ip = os.path.join(kdir, "ipc")
    if os.name != "posix" or len(ip) + 8 > _MAX_IPC_PATH:
        return None
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{"transport": "ipc", "ip": ip, **kwargs})

    return IPCKernelManager


def _execute(nb: str, target: str, params_file: str, cwd: str, html: bool) -> int:
    import shutil

    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel

    params = json.loads(Path(params_file).read_text())
    kdir = _kernel_dir()
    os.environ["JUPYTER_PATH"] = kdir + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    manager = _kernel_manager_class(kdir)
    target_path = Path(target)
    tmp = target_path.with_name(f".{target_path.name}.running.ipynb")
    try:
        for attempt in (1, 2):  # one retry on a kernel-start error
            try:
                pm.execute_notebook(
                    nb,
                    str(tmp),
                    parameters=params,
                    cwd=cwd,
                    kernel_name=KERNEL_NAME,
                    progress_bar=False,
                    start_timeout=180,
                    report_mode=False,
                    **({"kernel_manager_class": manager} if manager else {}),
                )
                break
            except (RuntimeError, NoSuchKernel) as exc:
                message = str(exc).lower()
                starting = "kernel" in message and "start" in message
                if attempt == 2 or not (
                    starting or any(e in message for e in _KERNEL_START_ERRORS)
                ):
                    raise
    except Exception as exc:  # noqa: BLE001 - report the failing cell and keep the copy
        if tmp.exists():
            os.replace(tmp, target_path.with_name(target_path.stem + ".failed.ipynb"))
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        print(_CAUSE + json.dumps(_describe(exc)), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(kdir, ignore_errors=True)
    _relative_parameters(tmp, paths.root(), target_path)
    if html:  # render first: the executed .ipynb, renamed last, marks the stage complete
        _render_html(tmp, target_path.with_suffix(".html"))
    os.replace(tmp, target_path)
    return 0


def _render_html(nb_path: Path, html_path: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    from mgelib.io import atomic_path

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(nb_path, as_version=4))
    with atomic_path(html_path) as tmp:
        tmp.write_text(body, encoding="utf-8")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="internal: execute one notebook (see run_notebook)"
    )
    parser.add_argument("notebook")
    parser.add_argument("target")
    parser.add_argument("params_file")
    parser.add_argument("cwd")
    parser.add_argument("--no-html", action="store_true")
    args = parser.parse_args(argv)
    return _execute(args.notebook, args.target, args.params_file, args.cwd, not args.no_html)


if __name__ == "__main__":
    raise SystemExit(_main())
