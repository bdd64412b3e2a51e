"""The report site (`invoke report`, mgelib.report): a page that links every executed notebook,
figure and claims table of a grid, checked in a real headless browser (Chromium): the page
loads, every link resolves, the figures render.

Without Chromium the browser test skips, except where ``MGELIB_REQUIRE_BROWSER=1`` (``.ci/run``
sets it after installing Debian's ``chromium``): there a missing browser fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mgelib.report import build_report, report_links  # noqa: E402

PROFILE = {"name": "demo", "description": "a two-run demo", "grid": {"models": ["conv6"]}}


def _red_figure(path: Path) -> None:
    """A figure whose pixels are easy to find in a screenshot: a pure red square."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(3, 3), dpi=60)
    fig.figimage(np.tile(np.array([1.0, 0.0, 0.0]), (180, 180, 1)))
    fig.savefig(path)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def _notebook(path: Path, html: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(), path)
    if html:
        path.with_suffix(".html").write_text("<html><body>executed</body></html>")


@pytest.fixture
def study(tmp_path) -> dict[str, Path]:
    runs, reports = tmp_path / "data" / "runs", tmp_path / "data" / "reports"
    for pruner, sparsity in (("snip", 0.9), ("dense", 0.0)):
        d = (
            runs
            / "demo"
            / "model=conv6/dataset=digits"
            / f"pruner={pruner}/sparsity={sparsity}/seed=0"
        )
        _notebook(d / "notebooks" / "10_prune_and_train.ipynb", html=pruner == "dense")
        _red_figure(d / "figures" / "training_curve.png")
        pd.DataFrame({"accuracy": [0.875]}).to_parquet(d / "result.parquet")
    for stem in ("30_collect_runs", "40_ramanujan_vs_density"):
        d = reports / "demo" / stem
        _notebook(d / "notebooks" / f"{stem}.ipynb", html=True)
        _red_figure(d / "figures" / "overview.png")
    pd.DataFrame({"claim": ["ramanujan only as good as density"], "verdict": ["supported"]}).to_csv(
        reports / "demo" / "40_ramanujan_vs_density" / "claims.csv", index=False
    )
    page = build_report(PROFILE, runs=runs, reports=reports)
    return {"page": page, "runs": runs, "reports": reports}


def test_page_links_everything_relative(study):
    page = study["page"]
    assert page == study["reports"] / "demo" / "index.html"
    text = page.read_text()
    links = report_links(page)
    assert links and not any(Path(link).is_absolute() for link in links)
    for link in links:
        assert (page.parent / link).exists(), link
    names = {Path(link).name for link in links}
    # analyses: HTML renders; a run without HTML links its .ipynb; figures and claims tables
    assert {"30_collect_runs.html", "40_ramanujan_vs_density.html", "claims.csv"} <= names
    assert {"10_prune_and_train.ipynb", "10_prune_and_train.html", "training_curve.png"} <= names
    assert "ramanujan only as good as density" in text and "0.8750" in text
    assert "a two-run demo" in text and "git commit" in text and "models:" in text
    assert text.count("<img ") == 2


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("MGELIB_REQUIRE_BROWSER") == "1":
        pytest.fail("MGELIB_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
    pytest.skip("no chromium on PATH (apt-get install chromium); CI requires it")


def test_page_in_headless_chromium(study, tmp_path):
    browser = _chromium()
    page = study["page"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "mgelib report" in dom and dom.count("<img") == 2
    dumped = tmp_path / "dom.html"
    dumped.write_text(dom)
    for link in report_links(dumped):
        assert (page.parent / link).exists(), link
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = plt.imread(shot)[..., :3]
    assert pixels.std() > 0.05, "blank screenshot"
    red = (pixels[..., 0] > 0.9) & (pixels[..., 1] < 0.1) & (pixels[..., 2] < 0.1)
    assert red.sum() > 2 * 50 * 50, "the figures did not render"
