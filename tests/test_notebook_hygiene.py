"""Every committed notebook in notebooks/: no outputs, exactly one cell tagged `parameters`
holding literal assignments only, and papermill sees every one of them — a trailing help comment
with an `=` in it, or an `x: str | None` annotation, makes papermill drop the parameter silently
(papermill's inspection), and `run_notebook` would then refuse it as unknown."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from mgelib import paths

NOTEBOOKS = sorted(paths.notebooks_dir().glob("*.ipynb"))


def _parameters_cells(nb) -> list:  # noqa: ANN001
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def _declared(source: str) -> list[str]:
    """Names assigned at the top level of a parameters cell (each value must be a literal)."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
            value = node.value
        elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            names += [t.id for t in node.targets]
            value = node.value
        else:
            raise AssertionError(f"not a parameter assignment: {ast.unparse(node)!r}")
        ast.literal_eval(value)  # derived values belong in the next cell (STYLE.md)
    return names


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3, paths.notebooks_dir()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        c.get("id", i)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells with outputs or execution counts: {dirty}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_seen_whole_by_papermill(path: Path):
    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    declared = _declared(cells[0].source)
    assert declared, f"{path.name}: the parameters cell declares nothing"
    assert len(set(declared)) == len(declared), f"{path.name}: a parameter is declared twice"
    seen = pm.inspect_notebook(str(path))
    missing = [n for n in declared if n not in seen]
    assert not missing, (
        f"{path.name}: papermill does not see {missing} (an '=' in a help comment? an "
        "'x: str | None' annotation?)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_has_help_for_papermill(path: Path):
    """``papermill --help-notebook`` shows each parameter's trailing comment; a comment that
    ruff's formatter moved inside parentheses (``x: int = (\n    0  # …\n)``, a line over
    100 characters) is lost, so every parameter must stay on one line with its comment."""
    import papermill as pm

    no_help = [n for n, v in pm.inspect_notebook(str(path)).items() if not v["help"].strip()]
    assert not no_help, (
        f"{path.name}: parameters without a help comment for papermill: {no_help} (keep each "
        "parameter on one line of at most 100 characters, with its comment)"
    )


def test_the_checker_catches_the_pitfalls(tmp_path):
    import papermill as pm

    cell = nbformat.v4.new_code_cell(
        'a: int = 1  # fine\nb: str = "x"  # empty means a=b\nc: str | None = None  # optional'
    )
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "bad.ipynb")
    assert _declared(cell.source) == ["a", "b", "c"]
    assert set(pm.inspect_notebook(str(tmp_path / "bad.ipynb"))) == {"a"}
    with pytest.raises(AssertionError, match="not a parameter"):
        _declared("import os")
    with pytest.raises(ValueError):
        _declared("x = len('abc')")
