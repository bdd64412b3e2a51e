"""Progress bars that can be silenced for papermill/CI: ``MGELIB_QUIET=1`` turns them off.

Examples
--------
>>> show_progress(False)
False
"""

from __future__ import annotations

import os

__all__ = ["quiet", "show_progress"]


def quiet() -> bool:
    """True when ``MGELIB_QUIET`` is set to anything but ``""``/``0``/``false``/``no``."""
    return os.environ.get("MGELIB_QUIET", "").strip().lower() not in ("", "0", "false", "no")


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` when given, else on unless :func:`quiet`."""
    return (not quiet()) if progress is None else bool(progress)
