"""One page to read a study: ``data/reports/<profile>/index.html``.

:func:`build_report` gathers what a profile's pipeline wrote — the executed analysis notebooks
(30–60) with their figures and claims tables under ``reports_dir()/<profile>/``, and every run of
the grid under ``runs_dir()/<profile>/`` with its executed notebooks, figures and accuracy — into
a static HTML page with relative links, the profile's parameters and the provenance of the build
(git SHA, package versions). Nothing is copied: the page links the files where they are, so it
stays valid as long as the data folder moves as a whole. ``invoke report --profile P`` calls it.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> page = build_report({"name": "demo"}, runs=folder / "runs", reports=folder / "reports")
>>> page.name, "demo" in page.read_text()
('index.html', True)
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mgelib import io, paths

__all__ = ["build_report", "report_links"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222;
       padding: 0 1rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
pre { background: #f7f7f7; padding: 0.6rem; overflow-x: auto; font-size: 0.8rem; }
figure { display: inline-block; margin: 0.4rem; text-align: center; font-size: 0.8rem; }
figure img { max-width: 22rem; max-height: 16rem; border: 1px solid #ddd; }
.muted { color: #666; font-size: 0.85rem; }
"""


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def _a(target: Path, start: Path, text: str | None = None) -> str:
    href = html.escape(_rel(target, start), quote=True)
    return f'<a href="{href}">{html.escape(text or target.name)}</a>'


def _notebook_link(nb: Path, start: Path) -> str:
    """The HTML render where it exists (per-run HTML is optional), else the ``.ipynb``."""
    rendered = nb.with_suffix(".html")
    return _a(rendered if rendered.exists() else nb, start, nb.stem)


def _figures(folder: Path, start: Path, *, images: bool) -> str:
    pngs = sorted(folder.rglob("*.png"))
    if not images:
        return " · ".join(_a(p, start, p.stem) for p in pngs)
    out = []
    for p in pngs:
        pdf = p.with_suffix(".pdf")
        caption = html.escape(p.stem) + (f" ({_a(pdf, start, 'pdf')})" if pdf.exists() else "")
        src = html.escape(_rel(p, start), quote=True)
        out.append(
            f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(p.stem)}"></a>'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return "\n".join(out)


def _analysis_section(folder: Path, start: Path) -> str:
    import pandas as pd

    parts = [f'<h3 id="{html.escape(folder.name)}">{html.escape(folder.name)}</h3>']
    notebooks = sorted((folder / "notebooks").glob("*.ipynb"))
    notebooks = [nb for nb in notebooks if not nb.name.startswith(".")]  # not a running copy
    if notebooks:
        parts.append(
            "<p>executed notebook: "
            + ", ".join(_notebook_link(nb, start) for nb in notebooks)
            + "</p>"
        )
    for claims in sorted(folder.rglob("claims.csv")):
        table = pd.read_csv(claims)
        parts.append(f"<p>claims table ({_a(claims, start)}):</p>")
        parts.append(
            table.to_html(index=False, escape=True, na_rep="", float_format="{:.4g}".format)
        )
    figures = _figures(folder, start, images=True)
    if figures:
        parts.append(f"<div>{figures}</div>")
    return "\n".join(parts)


def _runs_section(grid: Path, start: Path) -> str:
    import pandas as pd

    rows = []
    for spec, d in io.iter_runs(grid):
        acc = ""
        if (d / "result.parquet").exists():
            value = pd.read_parquet(d / "result.parquet").get("accuracy")
            acc = f"{float(value.iloc[0]):.4f}" if value is not None and len(value) else ""
        nbs = sorted((d / "notebooks").glob("*.ipynb")) if (d / "notebooks").is_dir() else []
        nbs = [nb for nb in nbs if not nb.name.startswith(".")]
        cells = [html.escape(str(getattr(spec, k))) for k in io.KEYS]
        links = ", ".join(_notebook_link(nb, start) for nb in nbs) or "—"
        rows.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + f"<td>{acc}</td><td>{links}</td><td>{_figures(d, start, images=False)}</td></tr>"
        )
    if not rows:
        return f'<p class="muted">no runs under {html.escape(str(grid))} yet.</p>'
    head = "".join(f"<th>{k}</th>" for k in (*io.KEYS, "accuracy", "notebooks", "figures"))
    return f"<table><tr>{head}</tr>\n" + "\n".join(rows) + "</table>"


def report_links(page: str | os.PathLike) -> list[str]:
    """Every ``href`` and ``src`` of a report page (relative to the page), for checking."""
    import re

    text = Path(page).read_text(encoding="utf-8")
    return [html.unescape(m) for m in re.findall(r'(?:href|src)="([^"#]+)"', text)]


def build_report(
    profile: str | Mapping[str, Any],
    *,
    runs: str | os.PathLike | None = None,
    reports: str | os.PathLike | None = None,
) -> Path:
    """Write ``<reports>/<profile>/index.html`` for a profile's grid and analyses.

    Parameters
    ----------
    profile : str or mapping
        Profile name (``notebooks/params/<name>.yaml``), path or mapping (see
        :func:`mgelib.notebooks.load_profile`).
    runs, reports : path, optional
        Roots of the run store and of the reports; default :func:`mgelib.paths.runs_dir` and
        :func:`mgelib.paths.reports_dir`.

    Returns
    -------
    Path
        The page. Links are relative, so the data folder can be moved or served as a whole.
    """
    from mgelib.notebooks import load_profile
    from mgelib.pipeline import ANALYSIS_NOTEBOOKS

    prof = load_profile(profile)
    name = prof["name"]
    grid = Path(runs or paths.runs_dir()) / name
    out_dir = Path(reports or paths.reports_dir()) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    analyses = [out_dir / s for s in ANALYSIS_NOTEBOOKS if (out_dir / s).is_dir()]
    analyses += sorted(
        d for d in out_dir.iterdir() if d.is_dir() and d not in analyses and d.name[:2].isdigit()
    )
    prov = io.provenance()
    versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if v)
    toc = " · ".join(
        f'<a href="#{html.escape(d.name)}">{html.escape(d.name)}</a>' for d in analyses
    )
    body = [
        f"<h1>mgelib report · profile <code>{html.escape(name)}</code></h1>",
        f'<p class="muted">{html.escape(str(prof.get("description", "")))}</p>',
        "<h2>Analyses</h2>",
        f"<p>{toc}</p>"
        if toc
        else '<p class="muted">no analysis notebooks executed yet '
        f"(<code>invoke reproduce --profile {html.escape(name)}</code>).</p>",
        *(_analysis_section(d, out_dir) for d in analyses),
        '<h2 id="runs">Runs</h2>',
        '<p class="muted">grid folder: '
        + (_a(grid, out_dir, _rel(grid, out_dir)) if grid.is_dir() else html.escape(str(grid)))
        + "</p>",
        _runs_section(grid, out_dir),
        '<h2 id="parameters">Profile parameters</h2>',
        f"<pre>{html.escape(yaml.safe_dump(dict(prof), sort_keys=False))}</pre>",
        '<h2 id="provenance">Provenance of this page</h2>',
        "<table>"
        + "".join(
            f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in (
                ("git commit", f"{prov['git_sha']}{' (dirty tree)' if prov['git_dirty'] else ''}"),
                ("built (UTC)", prov["time_utc"]),
                ("python", prov["python"]),
                ("packages", versions),
                ("platform", prov["platform"]),
            )
        )
        + "</table>",
    ]
    text = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>mgelib · {html.escape(name)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    with io.atomic_path(page) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return page
