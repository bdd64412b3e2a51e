"""The documentation (docs/, MkDocs): every ```python block of every page runs as written — a
page's blocks in order, in one namespace, in a temporary working directory — and the site builds
with no warning (broken links, missing anchors).

A block that must not run (a sketch needing a GPU or a cluster) is preceded by the line
``<!-- no-run -->``; keep those rare. Pages are discovered, not listed: a new page is tested as
soon as it exists."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("**/*.md"))
NO_RUN = "<!-- no-run -->"
_BLOCK = re.compile(r"^(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S | re.M)
#: Pages other parts of the project write; until one exists, a link to it is the only warning
#: the build may give (after they are merged, none is allowed).
PAGES_WRITTEN_ELSEWHERE = ("operations.md", "bring_your_own.md", "dynamic_sparse_training.md")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block not marked ``<!-- no-run -->``.

    Examples
    --------
    >>> python_blocks("x\\n```python\\nprint(1)\\n```\\n<!-- no-run -->\\n```python\\nboom\\n```")
    [(2, 'print(1)')]
    """
    out = []
    for m in _BLOCK.finditer("\n" + text):
        if m.group("before").strip() != NO_RUN:
            out.append((text[: m.start("code") - 1].count("\n"), m.group("code")))
    return out


def test_there_are_pages():
    names = {p.name for p in PAGES}
    assert {"index.md", "method.md", "notebooks.md", "cite.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_code_blocks_run(page: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MGELIB_QUIET", "1")
    namespace: dict = {"__name__": "__docs__"}
    for line, code in python_blocks(page.read_text(encoding="utf-8")):
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            raise AssertionError(f"{page.name}, block at line {line} failed: {exc!r}") from exc


def test_method_has_the_numbered_sections():
    """Code and notebooks cite "method §N": the page must keep §1–§9 (and §5.1, §5.2)."""
    text = (DOCS / "method.md").read_text(encoding="utf-8")
    for n in [*map(str, range(1, 10)), "5.1", "5.2"]:
        assert re.search(rf"^##+ §{re.escape(n)} ", text, re.M), f"method.md lacks §{n}"


def test_notebook_guide_covers_every_notebook_and_parameter():
    import papermill as pm

    text = (DOCS / "notebooks.md").read_text(encoding="utf-8")
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*_*.ipynb")):
        section = text.split(f"## {nb.stem}\n", 1)
        assert len(section) == 2, f"notebooks.md has no section '## {nb.stem}'"
        body = section[1].split("\n## ", 1)[0]
        missing = [p for p in pm.inspect_notebook(str(nb)) if f"`{p}`" not in body]
        assert not missing, f"notebooks.md, {nb.stem}: parameters not described: {missing}"


def test_nothing_points_at_the_team_folder():
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    assert "../" + "shared" not in text and "SPEC" not in text


def test_site_builds_without_warnings(tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    handler.setLevel(logging.WARNING)
    log = logging.getLogger("mkdocs")
    log.addHandler(handler)
    try:
        build(load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site")))
    finally:
        log.removeHandler(handler)
    absent = [p for p in PAGES_WRITTEN_ELSEWHERE if not (DOCS / p).exists()]
    unexpected = [r for r in records if not any(f"'{p}'" in r for p in absent)]
    assert not unexpected, unexpected
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "method" / "index.html").exists()
