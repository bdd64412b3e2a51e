"""What an `invoke` user sees when something is wrong (issue 16): a misspelled parameter gets
"did you mean", a failing notebook one paragraph naming the cell, its exception and the saved
copy — no traceback; executed copies carry project-relative paths; progress bars stay quiet
under the plain papermill CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mgelib import notebooks

pytestmark = pytest.mark.notebooks
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "project"
    (root / "notebooks" / "params").mkdir(parents=True)
    params = new_code_cell(
        'times: int = 2  # repetitions\nwhere: str = ""  # a folder; empty means here'
    )
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "import mgelib.progress\n"
        "import tqdm.auto  # warns about ipywidgets in a kernel, unless mgelib silenced it\n"
        "print('quiet', mgelib.progress.quiet())\n"
        "if times < 0:\n"
        "    raise FileNotFoundError(f'no run with times={times}: run notebook 10 first')"
    )
    nb = new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "notebooks" / "01_tiny.ipynb")
    monkeypatch.setenv("MGELIB_ROOT", str(root))
    return root


def test_misspelled_parameter_suggests_the_declared_one(project):
    with pytest.raises(ValueError, match=r"'tims' \(did you mean 'times'\?\); it accepts"):
        notebooks.check_params("01_tiny", {"tims": 1})
    with pytest.raises(ValueError) as err:
        notebooks.check_params("01_tiny", {"zzz": 1})
    assert "did you mean" not in str(err.value)


def test_failing_notebook_names_cell_exception_and_copy(project, tmp_path):
    with pytest.raises(notebooks.NotebookError) as err:
        notebooks.run_notebook("01_tiny", {"times": -1}, output_dir=tmp_path / "bad")
    msg = str(err.value)
    assert "cell [3] raised FileNotFoundError: no run with times=-1: run notebook 10 first" in msg
    assert str(tmp_path / "bad" / "notebooks" / "01_tiny.failed.ipynb") in msg
    assert "Traceback" not in msg and len(msg.splitlines()) == 1


def test_executed_copy_carries_project_relative_paths(project, tmp_path):
    where = project / "data" / "x"
    path = notebooks.run_notebook("01_tiny", {"where": str(where)}, output_dir=tmp_path / "ok")
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["papermill"]["parameters"]["where"] == "data/x"
    assert nb.metadata["papermill"]["input_path"] == "notebooks/01_tiny.ipynb"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and str(project) not in injected[0].source
    assert 'where = "data/x"' in injected[0].source
    assert "quiet True" in nb.cells[-1].outputs[0]["text"]


def test_invoke_prints_one_paragraph_and_exits_1(project):
    env = dict(os.environ, MGELIB_ROOT=str(project), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "invoke", "nb", "01_tiny"]
    out = subprocess.run(
        [*cmd, "--params", "tims=3"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1
    assert "did you mean 'times'?" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [*cmd, "--params", "times=-1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stderr
    assert "raised FileNotFoundError: no run with times=-1" in out.stderr
    assert ".failed.ipynb" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_plain_papermill_is_quiet(project, tmp_path):
    """A kernel started by the papermill CLI turns progress bars off (mgelib.progress)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("MGELIB_QUIET", None)
    out = tmp_path / "plain.ipynb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(project / "notebooks" / "01_tiny.ipynb"),
            str(out),
            "-k",
            "python3",
            "--no-progress-bar",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    nb = nbformat.read(out, as_version=4)
    assert "quiet True" in nb.cells[-1].outputs[0]["text"]
    assert [o.get("name") for o in nb.cells[-1].outputs] == ["stdout"]  # no TqdmWarning
