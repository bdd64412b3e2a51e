"""run_notebook: parameters checked against the notebook, own process, cwd-independent, executed
copy saved beside the outputs, failures reported with the failed copy."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from mgelib import notebooks

pytestmark = pytest.mark.notebooks


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project root with one tiny notebook and one profile."""
    root = tmp_path / "project"
    (root / "notebooks" / "params").mkdir(parents=True)
    params = new_code_cell(
        'greeting: str = "hello"  # what to write\ntimes: int = 2  # repetitions'
    )
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[
            new_markdown_cell("# tiny"),
            params,
            new_code_cell(
                "import os\nfrom pathlib import Path\n"
                "Path('out.txt').write_text(greeting * times)\n"
                "assert times >= 0, 'times must be non-negative'\n"
                "print(os.environ.get('MGELIB_QUIET'))\n"
                "from ipykernel.kernelapp import IPKernelApp\n"
                "Path('transport.txt').write_text(IPKernelApp.instance().transport)"
            ),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "notebooks" / "01_tiny.ipynb")
    (root / "notebooks" / "params" / "mini.yaml").write_text(
        "notebooks:\n  01_tiny: {greeting: hi, times: 3}\n"
    )
    monkeypatch.setenv("MGELIB_ROOT", str(root))
    return root


def test_declared_parameters_are_read(project):
    declared = notebooks.notebook_parameters("01_tiny")
    assert set(declared) == {"greeting", "times"}
    assert declared["times"]["help"] == "repetitions"


def test_unknown_parameter_is_refused_with_its_name(project, tmp_path):
    with pytest.raises(ValueError, match=r"no parameter\(s\) 'tims'.*accepts: greeting, times"):
        notebooks.run_notebook("01_tiny", {"tims": 3}, output_dir=tmp_path / "o")
    assert not (tmp_path / "o" / "notebooks" / "01_tiny.ipynb").exists()


def test_unknown_notebook_and_profile_are_refused(project):
    with pytest.raises(ValueError, match="unknown notebook '02_nothing'.*01_tiny"):
        notebooks.run_notebook("02_nothing")
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        notebooks.run_notebook("01_tiny", profile="nope")


def test_runs_in_its_own_process_in_the_output_folder(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the caller's cwd must not matter
    out = tmp_path / "out"
    path = notebooks.run_notebook("01_tiny", {"times": 4}, profile="mini", output_dir=out)
    assert path == out / "notebooks" / "01_tiny.ipynb"
    assert (out / "out.txt").read_text() == "hi" * 4  # profile value + explicit override
    assert path.with_suffix(".html").exists()
    assert not list(elsewhere.iterdir())
    executed = nbformat.read(path, as_version=4)
    assert executed.metadata["papermill"]["parameters"] == {"greeting": "hi", "times": 4}
    assert "1" in executed.cells[-1].outputs[0]["text"]  # progress bars silenced in the kernel
    assert os.getpid() != executed.metadata["papermill"].get("pid", -1)


def test_failure_raises_and_keeps_the_failed_copy(project, tmp_path):
    with pytest.raises(notebooks.NotebookError, match="times must be non-negative") as err:
        notebooks.run_notebook("01_tiny", {"times": -1}, output_dir=tmp_path / "bad")
    assert err.value.executed is not None and err.value.executed.name == "01_tiny.failed.ipynb"
    assert err.value.executed.exists()
    assert not (tmp_path / "bad" / "notebooks" / "01_tiny.ipynb").exists()


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets: POSIX only (TCP elsewhere)")
def test_kernels_started_at_once_do_not_collide(project, tmp_path):
    """Kernels talk over Unix sockets in a private folder: with TCP, kernels starting at the same
    moment on one node (a grid's workers, SLURM array tasks) could take each other's ports and
    die with "Address already in use" (seen in CI)."""
    from concurrent.futures import ThreadPoolExecutor

    outs = [tmp_path / f"o{i}" for i in range(6)]
    with ThreadPoolExecutor(len(outs)) as pool:
        paths = list(pool.map(lambda o: notebooks.run_notebook("01_tiny", output_dir=o), outs))
    assert all(p.is_file() for p in paths)
    assert {(o / "transport.txt").read_text() for o in outs} == {"ipc"}
