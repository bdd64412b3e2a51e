"""ruff check and ruff format --check are clean (notebooks included) — CI runs them through the
test suite, so the README's one test command covers lint too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"]
)
def test_ruff_is_clean(args):
    out = _ruff(*args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
