"""The end of a multirun as a person reads it: one table of its jobs, one line of counts, the command that re-runs the
best job, and an exit code that says whether every job completed."""
from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SUMMARY_FILE = "sweep_summary.md"  # in the sweep dir, beside Hydra's multirun.yaml
TABLE_ROWS = 20  # one screen: with more jobs the table shows the best ones, the file lists all
STATUSES = ("completed", "failed", "interrupted")
# Exit codes of a sweep that did not complete every job: 1 when jobs failed, the shell's 128 + signal when stopped.
EXIT_FAILED = 1
EXIT_INTERRUPTED = {"SIGTERMException": 143}  # SIGTERM; anything else (Ctrl+C, sys.exit) is 130, as SIGINT
EXIT_INTERRUPTED_DEFAULT = 130


@dataclass
class Job:
    """One job of a sweep, as its run dir records it."""

    number: int
    dir: Path
    overrides: list[str]
    status: str  # completed | failed | interrupted | no result (the job never wrote results.json)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def read_job(job_dir: Path) -> Job:
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) or [] if overrides_file.is_file() else []
    record = {"status": "no result"}
    for name in ("results.json", "eval_results.json"):  # train.py's, eval.py's
        try:
            record = json.loads((job_dir / name).read_text())
            break
        except (OSError, ValueError):
            continue
    return Job(int(job_dir.name), job_dir, [str(o) for o in overrides], str(record.get("status", "no result")),
               record.get("metrics") or {}, str(record.get("error") or ""))


def read_jobs(sweep_dir: Path) -> list[Job]:
    """Every job dir of the sweep (<sweep dir>/<job number>/), in job order."""
    dirs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()] if Path(sweep_dir).is_dir() else []
    return [read_job(p) for p in sorted(dirs, key=lambda p: int(p.name))]


def count_line(jobs: list[Job], sweep_dir: Path) -> str:
    """`sweep: 4 jobs, 3 completed, 1 failed, 0 interrupted (outputs/multirun/…)`; a job that wrote no result is failed."""
    counts = {status: sum(job.status == status for job in jobs) for status in STATUSES}
    counts["failed"] += sum(job.status not in STATUSES for job in jobs)
    return (f"sweep: {len(jobs)} job{'' if len(jobs) == 1 else 's'}, {counts['completed']} completed, {counts['failed']} failed, "
            f"{counts['interrupted']} interrupted ({sweep_dir})")


def exit_code(jobs: list[Job]) -> int:
    """0 when every job completed; the signal's code when a job was interrupted; else 1."""
    for job in jobs:
        if job.status == "interrupted":
            kind = job.error.partition("(")[2].partition(")")[0]
            return EXIT_INTERRUPTED.get(kind, EXIT_INTERRUPTED_DEFAULT)
    return 0 if all(job.status == "completed" for job in jobs) else EXIT_FAILED


def varying_overrides(jobs: list[Job]) -> dict[int, str]:
    """Each job's overrides that not every job shares (the swept values), hydra.* aside: what tells the rows apart."""
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if jobs else set()
    return {job.number: " ".join(o for o in job.overrides if o not in shared and not o.startswith("hydra."))
            for job in jobs}


def _value(job: Job, key: str) -> float | None:
    value = job.metrics.get(key)
    return None if value is None or not math.isfinite(value) else float(value)


def best_job(jobs: list[Job], metric: str, maximize: bool = True) -> Job | None:
    """The completed job with the best `metric` (the sweep's optimized_metric)."""
    scored = [job for job in jobs if job.status == "completed" and _value(job, metric) is not None]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda job: _value(job, metric))


def rerun_command(job: Job, script: str = "train.py") -> str:
    """The single run that repeats `job`: its overrides, hydra.* aside; a search preset's sweep is switched off."""
    overrides = [o for o in job.overrides if not o.startswith(("hydra.", "~hydra."))]
    if any(o.startswith("hparams_search=") for o in overrides):
        overrides.append("hydra.mode=RUN")  # the preset sets MULTIRUN; one run of the best trial's values
    return " ".join(["python", script, *map(shlex.quote, overrides)])


COLUMNS = ("test/acc", "final/test/acc")


def table_rows(jobs: list[Job], metric: str, maximize: bool = True) -> list[list[str]]:
    """job, swept overrides, status, metric, test/acc, final/test/acc: best first when there are more than a screen."""
    labels = varying_overrides(jobs)
    shown = jobs
    if len(jobs) > TABLE_ROWS:
        sign = -1 if maximize else 1
        shown = sorted(jobs, key=lambda j: (_value(j, metric) is None, sign * (_value(j, metric) or 0.0)))[:TABLE_ROWS]
    keys = [metric, *(k for k in COLUMNS if k != metric)]

    def cell(job: Job, key: str) -> str:
        value = _value(job, key)
        return "" if value is None else f"{value:.4f}"

    return [[str(job.number), labels[job.number] or "(none)", job.status, *(cell(job, k) for k in keys)] for job in shown]


def summary_markdown(jobs: list[Job], sweep_dir: Path, metric: str, maximize: bool, line: str,
                     rerun: str | None) -> str:
    keys = [metric, *(k for k in COLUMNS if k != metric)]
    header = ["job", "overrides", "status", *keys]
    rows = [header, ["---"] * len(header)]
    labels = varying_overrides(jobs)
    for job in jobs:
        values = ["" if _value(job, k) is None else f"{_value(job, k):.4f}" for k in keys]
        rows.append([str(job.number), f"`{labels[job.number]}`" if labels[job.number] else "(none)", job.status, *values])
    text = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    best = f"\n\nBest by {metric} ({'highest' if maximize else 'lowest'}), re-run with:\n\n```\n{rerun}\n```" if rerun else ""
    return f"# Sweep {sweep_dir.name}\n\n{line}\n\n{text}{best}\n"


def report(sweep_dir: Path, metric: str = "val/acc_best", maximize: bool = True, script: str = "train.py") -> int:
    """Print the sweep's table, its best job's re-run command and the count line; write sweep_summary.md; return the
    exit code the sweep should end with."""
    from rich.console import Console
    from rich.table import Table

    sweep_dir = Path(sweep_dir)
    jobs = read_jobs(sweep_dir)
    line = count_line(jobs, sweep_dir)
    best = best_job(jobs, metric, maximize)
    rerun = rerun_command(best, script) if best is not None and len(jobs) > 1 else None
    console = Console()
    if not (console.is_terminal or console.is_jupyter):
        console = Console(width=200)  # a log file: a table only as wide as its cells, never folded at 80 columns
    if jobs:
        more = f", the best {TABLE_ROWS} of {len(jobs)} (all in {SUMMARY_FILE})" if len(jobs) > TABLE_ROWS else ""
        table = Table(title=f"Sweep jobs{more}", title_justify="left")
        for name in ("job", "overrides", "status", metric, *(k for k in COLUMNS if k != metric)):
            table.add_column(name, justify="right" if "/" in name else "left", overflow="fold")
        for row in table_rows(jobs, metric, maximize):
            table.add_row(*row)
        console.print(table)
    if rerun:
        console.print(f"best by {metric}: job {best.number}; re-run it with: {rerun}", soft_wrap=True, highlight=False)
    console.print(line, soft_wrap=True, highlight=False)
    try:
        (sweep_dir / SUMMARY_FILE).write_text(summary_markdown(jobs, sweep_dir, metric, maximize, line, rerun))
    except OSError:  # a read-only or vanished sweep dir: the printed summary is what matters
        pass
    return exit_code(jobs)
