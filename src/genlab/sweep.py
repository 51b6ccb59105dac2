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
# Also beside multirun.yaml: every job of the sweep by number, as Hydra's sweeper expands that config's overrides,
# written when the sweep starts: what the summary, the progress lines and compare.py count, not the dirs that exist.
PLAN_FILE = "sweep_jobs.yaml"
TABLE_ROWS = 20  # one screen: with more jobs the table shows the best ones, the file lists all
STATUSES = ("completed", "failed", "interrupted")
NOT_STARTED = "not started"
# Overrides that say how a sweep is run or continued, not which job is which.
CONTINUATION_KEYS = ("ckpt_path", "retry_failed")
# Exit codes of a sweep that did not complete every job: 1 when jobs failed, the shell's 128 + signal when stopped.
EXIT_FAILED = 1
EXIT_INTERRUPTED = {"SIGTERMException": 143, "SIGTERM": 143}  # SIGTERM; anything else (Ctrl+C, sys.exit) is 130
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
    wall_time_s: float | None = None


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
    wall = record.get("wall_time_s")
    return Job(int(job_dir.name), job_dir, [str(o) for o in overrides], str(record.get("status", "no result")),
               record.get("metrics") or {}, str(record.get("error") or ""),
               float(wall) if isinstance(wall, (int, float)) else None)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs that exist in the sweep dir (<sweep dir>/<job number>/), in job order."""
    dirs = [p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()] if Path(sweep_dir).is_dir() else []
    return sorted(dirs, key=lambda p: int(p.name))


@dataclass
class Plan:
    """What a sweep runs: `count` jobs, each job's overrides when the sweeper fixes them in advance (the basic sweeper;
    Optuna draws its trials as it goes), and how many run at once."""

    count: int
    jobs: list[list[str]] | None
    parallel: int = 1

    def write(self, sweep_dir: Path) -> None:
        from genlab.records import write_atomic

        text = yaml.safe_dump({"count": self.count, "parallel": self.parallel, "jobs": self.jobs}, sort_keys=False)
        write_atomic(Path(sweep_dir) / PLAN_FILE, text.encode())

    @classmethod
    def read(cls, sweep_dir: Path) -> "Plan | None":
        """The plan the sweep wrote when it started; None for a dir without one (not a genlab sweep, or an old one)."""
        try:
            data = yaml.safe_load((Path(sweep_dir) / PLAN_FILE).read_text())
            jobs = data.get("jobs")
            return cls(int(data["count"]), None if jobs is None else [[str(o) for o in job] for job in jobs],
                       int(data.get("parallel") or 1))
        except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError):
            return None


def plan_of(config: Any, config_loader: Any = None) -> Plan:
    """The jobs a multirun's config asks for: with the basic sweeper, the product of `hydra.sweeper.params` and the
    command line's sweep overrides, expanded by Hydra's own parser in the sweeper's order (so job k is the sweep's
    job k); with another sweeper, its `n_trials`. `parallel`: the jobs a launcher runs at once (its n_jobs)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from genlab.threads import jobs_at_once

    hydra_cfg = config.hydra
    sweeper = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default=""))
    parallel = jobs_at_once(OmegaConf.select(hydra_cfg, "launcher") or {})
    if not sweeper.endswith("BasicSweeper"):
        return Plan(int(OmegaConf.select(hydra_cfg, "sweeper.n_trials", default=0) or 0), None, parallel)
    params = [f"{key}={value}" for key, value in (OmegaConf.select(hydra_cfg, "sweeper.params") or {}).items()]
    arguments = [*params, *OmegaConf.to_container(hydra_cfg.overrides.task)]
    overrides = OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)
    jobs = [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    return Plan(len(jobs), jobs, parallel)


def job_identity(overrides: list[str]) -> list[str]:
    """A job's overrides without those that only say how the sweep is run or continued."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in CONTINUATION_KEYS]


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys(jobs: list[list[str]]) -> set[str]:
    """The keys whose value is not the same in every job: what tells a sweep's jobs apart."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            values.setdefault(override_key(override), set()).add(override)
    return {key for key, seen in values.items()
            if len(seen) > 1 or sum(any(override_key(o) == key for o in job) for job in jobs) < len(jobs)}


def only(overrides: list[str], keys: set[str]) -> list[str]:
    return sorted(o for o in overrides if override_key(o) in keys)


def read_jobs(sweep_dir: Path, plan: Plan | None = None) -> list[Job]:
    """Every job of the sweep, in job order: each planned job (those that never started as `not started`), or, for a
    sweep without a plan, every job dir there is."""
    plan = plan or Plan.read(sweep_dir)
    found = {int(p.name): read_job(p) for p in job_dirs(sweep_dir)}
    if plan is None:
        return list(found.values())
    planned = plan.jobs or [[] for _ in range(plan.count)]
    for number, overrides in enumerate(planned):
        if number not in found:
            found[number] = Job(number, Path(sweep_dir) / str(number), overrides, NOT_STARTED)
    return [found[number] for number in sorted(found)]


def continue_command(sweep_dir: Path, argv: list[str]) -> str:
    """The sweep's own command (`argv`, as typed) continuing in `sweep_dir`: what completed is kept, what was
    interrupted resumes, what never started runs."""
    kept = [arg for arg in argv[1:] if not arg.lstrip("+").startswith(("hydra.sweep.dir=", "ckpt_path="))]
    return shlex.join(["python", Path(argv[0]).name, *kept, f"hydra.sweep.dir={sweep_dir}", "ckpt_path=last"])


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def shown_overrides(plan: Plan | None, overrides: list[str]) -> str:
    """A job's overrides as its progress lines show them: the swept values that tell it from the sweep's other jobs."""
    identity = job_identity(overrides)
    if plan is not None and plan.jobs and len(plan.jobs) > 1:
        identity = only(identity, swept_keys([job_identity(job) for job in plan.jobs]))
    return " ".join(o for o in identity if not o.startswith("hydra.")) or "(no overrides)"


def progress_line(sweep_dir: Path, number: int, overrides: list[str]) -> str:
    """`job 3/9: regularization=l2 seed=1 (2 finished; about 1 min 20 s left)`, as a job starts: the estimate is the
    finished jobs' mean wall time for each round of `parallel` jobs still to run, once one has finished."""
    plan = Plan.read(sweep_dir)
    shown = shown_overrides(plan, overrides)
    if plan is None or not plan.count:
        return f"job {number + 1}: {shown}"
    jobs = read_jobs(sweep_dir, plan)
    finished = [job for job in jobs if job.status in ("completed", "failed")]
    times = [job.wall_time_s for job in finished if job.wall_time_s]
    line = f"job {number + 1}/{plan.count}: {shown}"
    if times:
        rounds = math.ceil((plan.count - len(finished)) / plan.parallel)
        line += f" ({len(finished)} finished; about {format_duration(rounds * sum(times) / len(times))} left)"
    return line


def count_line(jobs: list[Job], sweep_dir: Path) -> str:
    """`sweep: 4 jobs, 3 completed, 1 failed, 0 interrupted (outputs/multirun/…)`, and how many never started when
    some did not; a job that started and wrote no result is failed."""
    counts = {status: sum(job.status == status for job in jobs) for status in (*STATUSES, NOT_STARTED)}
    counts["failed"] += sum(job.status not in (*STATUSES, NOT_STARTED) for job in jobs)
    never = f", {counts[NOT_STARTED]} not started" if counts[NOT_STARTED] else ""
    return (f"sweep: {len(jobs)} job{'' if len(jobs) == 1 else 's'}, {counts['completed']} completed, {counts['failed']} failed, "
            f"{counts['interrupted']} interrupted{never} ({sweep_dir})")


def exit_code(jobs: list[Job], stopped_by: str | None = None) -> int:
    """0 when every job completed; the signal's code when the sweep was stopped (`stopped_by`, the exception or signal
    name) or a job was interrupted; else 1."""
    if stopped_by is not None:
        return EXIT_INTERRUPTED.get(stopped_by, EXIT_INTERRUPTED_DEFAULT)
    for job in jobs:
        if job.status == "interrupted":
            kind = job.error.partition("(")[2].partition(")")[0]
            return EXIT_INTERRUPTED.get(kind, EXIT_INTERRUPTED_DEFAULT)
    return 0 if all(job.status == "completed" for job in jobs) else EXIT_FAILED


def varying_overrides(jobs: list[Job]) -> dict[int, str]:
    """Each job's overrides that not every job shares (the swept values), hydra.* aside: what tells the rows apart."""
    identities = {job.number: job_identity(job.overrides) for job in jobs}
    shared = set.intersection(*(set(o) for o in identities.values())) if jobs else set()
    return {number: " ".join(o for o in overrides if o not in shared and not o.startswith("hydra."))
            for number, overrides in identities.items()}


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
    overrides = [o for o in job_identity(job.overrides) if not o.startswith(("hydra.", "~hydra."))]
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


def report(sweep_dir: Path, metric: str = "val/acc_best", maximize: bool = True, script: str = "train.py",
           argv: list[str] | None = None, stopped_by: str | None = None) -> int:
    """Print the sweep's table, its best job's re-run command and the count line, and, when jobs are left to run, the
    command that continues the sweep (`argv`: the sweep's command line); write sweep_summary.md; return the exit code
    the sweep should end with (`stopped_by`: the signal that stopped the sweep, if one did)."""
    from rich.console import Console
    from rich.table import Table

    sweep_dir = Path(sweep_dir)
    jobs = read_jobs(sweep_dir)
    line = count_line(jobs, sweep_dir)
    hints = []
    if argv and any(job.status in ("interrupted", NOT_STARTED) for job in jobs):
        hints.append(f"continue the sweep with: {continue_command(sweep_dir, argv)}")
    if argv and any(job.status not in ("completed", "interrupted", NOT_STARTED) for job in jobs):
        hints.append("a continued sweep keeps its failed jobs as they are; retry_failed=true runs them again")
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
    for hint in hints:
        console.print(hint, soft_wrap=True, highlight=False)
    console.print(line, soft_wrap=True, highlight=False)
    try:
        (sweep_dir / SUMMARY_FILE).write_text(summary_markdown(jobs, sweep_dir, metric, maximize,
                                                               "\n\n".join([line, *hints]), rerun))
    except OSError:  # a read-only or vanished sweep dir: the printed summary is what matters
        pass
    return exit_code(jobs, stopped_by)
