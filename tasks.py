"""invoke tasks: each a few lines; the logic lives in mgelib. `invoke --list` shows them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from invoke import task
from invoke.exceptions import Exit

PY = sys.executable


@contextmanager
def _friendly() -> Iterator[None]:
    """mgelib's own errors (a bad parameter, a missing file, a failed notebook) end the task with
    their one-paragraph message and exit status 1, not a traceback; anything else propagates."""
    from mgelib.notebooks import NotebookError

    try:
        yield
    except (ValueError, FileNotFoundError, NotebookError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


def _kv(pairs: str) -> dict:
    """``"a=1,b=x"`` → ``{"a": 1, "b": "x"}`` (values parsed as YAML scalars)."""
    import yaml

    out = {}
    for item in filter(None, (p.strip() for p in pairs.split(","))):
        key, _, value = item.partition("=")
        out[key.strip()] = yaml.safe_load(value)
    return out


@task(
    help={"profile": "smoke, default (the README's) or paper", "workers": "local worker processes"}
)
def reproduce(c, profile="default", workers=0, executor="local"):
    """Run a profile end to end: its grid of runs, then the collection and analysis notebooks."""
    from mgelib.pipeline import reproduce as run

    with _friendly():
        out = run(profile, executor=executor, workers=workers or None)
    print("\nexecuted notebooks (with their figures beside them):")
    for stem, path in out.items():
        print(f"  {stem}: {path.with_suffix('.html')}")


@task(help={"args": "extra pytest arguments", "slow": "include tests marked slow"})
def test(c, args="", slow=True):
    """The full test suite (what CI runs)."""
    marker = "" if slow else '-m "not slow"'
    c.run(f"{PY} -m pytest -n 2 --durations=15 {marker} {args}", pty=False)


@task
def lint(c):
    """ruff check and ruff format --check (notebooks included)."""
    c.run(f"{PY} -m ruff check .")
    c.run(f"{PY} -m ruff format --check .")


@task(
    help={
        "name": "notebook stem, e.g. 20_graph_metrics",
        "profile": "profile giving defaults (none: the notebook's own defaults, runs of 'adhoc')",
        "params": "overrides as k=v,k=v",
        "output": "output folder (default: data/reports/<profile or adhoc>/<name>)",
        "html": "also save an HTML render (default on)",
    }
)
def nb(c, name, profile="", params="", output="", html=True):
    """Execute one notebook with a profile's parameters (unknown parameters are refused)."""
    from mgelib.notebooks import run_notebook

    with _friendly():
        path = run_notebook(
            name, _kv(params), profile or None, output_dir=output or None, html=html
        )
    print(f"executed: {path}")


@task(
    help={
        "profile": "profile name (notebooks/params/<name>.yaml) or path, with a grid section",
        "executor": "local (worker processes), slurm (one job array, returns at once) or debug",
        "workers": "local worker processes",
        "partition": "SLURM partition",
        "gpus_per_job": "SLURM: GPUs per run",
        "time": "SLURM: time limit per run, minutes",
        "array_parallelism": "SLURM: most runs at once",
        "cpus_per_task": "SLURM: CPUs per run",
        "mem_gb": "SLURM: memory per run, GB",
        "wait": "SLURM: wait until every job has ended (Ctrl-C cancels them)",
        "force": "rerun finished runs too",
    }
)
def grid(
    c,
    profile="smoke",
    executor="local",
    workers=0,
    partition="",
    gpus_per_job=-1,
    time=0,
    array_parallelism=0,
    cpus_per_task=0,
    mem_gb=0,
    wait=False,
    force=False,
):
    """Run the unfinished runs of a profile's grid, or submit them to SLURM as one job array.

    Options left out come from the profile's `slurm:` section. Resubmitting submits only the
    runs that are unfinished and have no pending or running job.
    """
    from mgelib.runner import run_grid

    options = dict(
        partition=partition,
        gpus_per_job=gpus_per_job,
        timeout_min=time,
        array_parallelism=array_parallelism,
        cpus_per_task=cpus_per_task,
        mem_gb=mem_gb,
    )
    slurm = {k: v for k, v in options.items() if v not in ("", 0, -1)}
    with _friendly():
        report = run_grid(
            profile,
            executor=executor,
            workers=workers or None,
            slurm=slurm,
            wait=wait or executor != "slurm",
            force=force,
        )
    print(report.summary())
    if executor == "slurm" and report.job_ids:
        arrays = sorted({j.split("_")[0] for j in report.job_ids}, key=int)
        print(
            f"submitted {report.submitted} runs as SLURM job array {', '.join(arrays)}; "
            f"logs in {report.root / '_submitit'}\n"
            f"follow them with `invoke grid-status --profile {profile}`"
        )
    report.raise_for_failures()


@task(
    name="grid-status",
    help={"profile": "profile name or path", "full": "list every run, not only the failed ones"},
)
def grid_status(c, profile="smoke", full=False):
    """Pending / running / done / failed per run (run store + squeue), with failed runs' logs."""
    from mgelib.io import KEYS
    from mgelib.runner import grid_status as status

    df = status(profile)
    counts = df["state"].value_counts()
    print(f"{len(df)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    active = df[df["state"].isin(["pending", "running"])]
    if len(active):
        arrays = sorted({j.split("_")[0] for j in active["job_id"]}, key=int)
        print(f"queued or running in SLURM job array {', '.join(arrays)}")
    cols = [*KEYS, "state", "job_id", "slurm_state", "log", "error"]
    shown = df if full else df[df["state"] == "failed"]
    if len(shown):
        title = "runs" if full else "failed runs (read the log)"
        print(f"\n{title}:\n" + shown[cols].to_string(index=False))
    if (df["state"].isin(["failed", "missing"])).any():
        print(
            f"\nresubmit the failed and missing runs: "
            f"`invoke grid --profile {profile} --executor slurm`"
        )


@task(
    help={"which": "graphs, metrics, bge, train, pruning or all", "quick": "skip the largest cases"}
)
def bench(c, which="all", quick=False):
    """Benchmarks (print tables): graph encoding, topometrics, BGE/Ramanujan, training, pruning, DST."""
    names = (
        ["graphs", "metrics", "bge", "train", "pruning", "dst"]
        if which == "all"
        else which.split(",")
    )
    for name in names:
        flag = " --quick" if quick else ""
        c.run(f"{PY} benchmarks/bench_{name}.py{flag}")


@task(name="fetch-paper-data", help={"dest": "target folder (default data/external/paper-data)"})
def fetch_paper_data(c, dest="", force=False):
    """Download the authors' published tables (sha256-checked); offline: set MGELIB_PAPER_DATA."""
    from mgelib.fetch import fetch_paper_data as fetch
    from mgelib.fetch import verify_paper_data

    if os.environ.get("MGELIB_PAPER_DATA") and not dest:
        bad = {k: v for k, v in verify_paper_data().items() if v != "ok"}
        print(f"MGELIB_PAPER_DATA is set: using that copy ({len(bad)} problems: {bad or 'none'})")
        return
    print(f"paper data in {fetch(dest or None, force=force)}")


@task(name="paper-analysis", help={"subset": "'' for all tables, 'ci' for a small subset"})
def paper_analysis(c, subset="", output=""):
    """Run notebooks 40/50/55 on the authors' tables; executed copies + claims.csv in reports/paper."""
    from pathlib import Path

    from mgelib.analysis import strip_paths
    from mgelib.notebooks import run_notebook

    out = Path(output or "reports/paper").resolve()
    for stem in ("40_ramanujan_vs_density", "50_predict_accuracy_drop", "55_rank_pruners"):
        with _friendly():
            path = run_notebook(
                stem,
                {"source": "paper", "paper_subset": subset, "output_dir": str(out / stem)},
                output_dir=out / stem,
                quiet=False,
            )
        strip_paths(out / stem, Path(__file__).parent)  # committed: no absolute paths of ours
        print(f"{stem}: {path}  claims: {out / stem / 'claims.csv'}")


@task(help={"strict": "fail on MkDocs warnings (broken links; tests/test_docs.py checks them)"})
def docs(c, strict=False):
    """Build the documentation (docs/, MkDocs) into site/ (git-ignored); open site/index.html."""
    c.run(f"{PY} -m mkdocs build {'--strict ' if strict else ''}--site-dir site")
    print(f"docs: {os.path.abspath('site/index.html')}")


@task(help={"profile": "profile whose grid and analyses the page shows"})
def report(c, profile="default"):
    """Write data/reports/<profile>/index.html: every executed notebook, figure and claims table."""
    from mgelib.report import build_report

    with _friendly():
        path = build_report(profile)
    print(f"report: {path}")
