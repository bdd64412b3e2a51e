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


def test_nothing_in_the_repository_points_at_the_team_folder():
    """A clone is self-contained: no tracked file names the team folder beside the checkout (only ``.ci/run``, which
    points the full-table tests at CI's copy of the authors' tables when it exists)."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    needle = "../" + "shared"
    hits = [
        f
        for f in files
        if f != ".ci/run"
        and (ROOT / f).is_file()
        and needle in (ROOT / f).read_text(encoding="utf-8", errors="ignore")
    ]
    assert not hits, hits


def test_rerun_outputs_and_builds_are_git_ignored():
    """What the README's rerun examples, `invoke docs` and `invoke report` write is ignored, so
    `git status` stays clean and lint never reads it."""
    written = [
        "data/10_rerun.ipynb",
        "data/reports/default/index.html",
        "site/index.html",
        "out.ipynb",
        "out2.ipynb",
    ]
    out = subprocess.run(
        ["git", "check-ignore", *written], cwd=ROOT, capture_output=True, text=True
    )
    assert sorted(out.stdout.split()) == sorted(written)


def test_readme_rerun_examples_write_under_data():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- reruns -->", 1)[1].split("<!-- /reruns -->", 1)[0]
    for line in block.splitlines():
        if line.startswith("papermill "):
            assert line.split()[2].startswith("data/"), line
        if line.startswith("invoke nb") and "--output" in line:
            assert line.split("--output")[1].split()[0].startswith("data/"), line
