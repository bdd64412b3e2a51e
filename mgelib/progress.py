"""Progress bars that stay out of executed notebooks.

Bars are off when ``MGELIB_QUIET=1`` or when the code runs in a kernel that papermill started
(the plain ``papermill`` CLI as well as :func:`mgelib.notebooks.run_notebook`): a bar's hundreds
of redraws would otherwise be saved as outputs of the executed notebook, together with tqdm's
warning about missing ipywidgets. Interactive use (a terminal, JupyterLab) keeps them.

Examples
--------
>>> show_progress(False)
False
"""

from __future__ import annotations

import os
from functools import lru_cache

__all__ = ["quiet", "show_progress", "under_papermill", "silence_notebook_warning"]


@lru_cache(maxsize=1)
def under_papermill() -> bool:
    """True in a kernel whose parent process runs papermill (read from ``/proc`` on Linux;
    elsewhere False, and ``MGELIB_QUIET`` is the switch)."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return b"papermill" in cmdline or b"mgelib.notebooks" in cmdline


def quiet() -> bool:
    """True when ``MGELIB_QUIET`` is set to anything but ``""``/``0``/``false``/``no``, or when
    running under papermill (:func:`under_papermill`) and ``MGELIB_QUIET`` is not ``0``."""
    value = os.environ.get("MGELIB_QUIET", "").strip().lower()
    if value in ("0", "false", "no"):
        return False
    return bool(value) or under_papermill()


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` when given, else on unless :func:`quiet`."""
    return (not quiet()) if progress is None else bool(progress)


def silence_notebook_warning() -> None:
    """When :func:`quiet`, ignore tqdm's "IProgress not found" warning, which ``import
    tqdm.auto`` emits in a kernel without ipywidgets even if every bar is disabled (it would be
    saved in each executed notebook). Called when :mod:`mgelib` is imported."""
    if quiet():
        import warnings

        warnings.filterwarnings("ignore", message="IProgress not found")
