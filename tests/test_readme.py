"""The README's two Quickstart commands and CI agree (CI runs the README's test command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_command(which: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "readme_command.py"), which],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_quickstart_has_an_install_and_main_job_and_a_test_command():
    main, test = readme_command("main"), readme_command("test")
    assert "pip install" in main and main.endswith("invoke reproduce")
    assert "pip install" in test and '".[dev]"' in test and test.endswith("invoke test")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_command.py test" in ci and 'bash -c "$cmd"' in ci


def test_invoke_test_runs_the_whole_pytest_suite():
    tasks = (ROOT / "tasks.py").read_text()
    assert "-m pytest" in tasks
