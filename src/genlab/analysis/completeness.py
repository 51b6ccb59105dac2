"""Whether a comparison rests on the whole study: groups with fewer completed seeds than the others, and sweep dirs
whose planned jobs have no completed record yet, each said in one line (the report's numbers are still computed on
what is there)."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import yaml

from genlab.analysis.run_files import MiB, Unreadable, check_regular_file, one_line, printable
from genlab.sweep import NOT_STARTED, PLAN_FILE, Job, Plan, job_dirs, read_jobs

# What genlab.sweep.read_jobs reads besides the plan, in each job dir. Its plain reads would wait forever on a FIFO
# and fill the memory with a huge file, so each is checked first, as compare.py checks a run dir's files.
JOB_FILES = (".hydra/overrides.yaml", "results.json", "eval_results.json")
JOB_FILE_LIMIT = 64 * MiB
MAX_PLANNED_JOBS = 100_000  # a sweep of more is no genlab plan: its not-started jobs would be listed one by one


def unequal_seed_warnings(groups: Sequence[Any]) -> list[str]:
    """One line per group that has fewer completed seeds than the most any group has."""
    counts = {group.label: len(group.runs) for group in groups}
    most = max(counts.values(), default=0)
    return [f"warning: group {label} has {n} completed seed{'s' * (n != 1)} where others have {most}: its mean and "
            "interval rest on fewer runs" for label, n in counts.items() if n < most]


def sweep_dirs_of(paths: Sequence[str], run_dirs: Sequence[Path]) -> list[Path]:
    """The sweep dirs (holding Hydra's multirun.yaml) named on the command line or holding the runs compared."""
    candidates = {Path(p).resolve() for p in paths if Path(p).is_dir()} | {Path(d).resolve().parent for d in run_dirs}
    return sorted(d for d in candidates if (d / "multirun.yaml").is_file())


def unfinished_sweep_warnings(sweep_dirs: Sequence[Path]) -> list[str]:
    """One line per sweep dir whose jobs (every planned one, started or not) are not all completed."""
    lines = []
    for sweep_dir in sweep_dirs:
        try:
            jobs = readable_jobs(sweep_dir)
        except Unreadable as why:
            lines.append(f"warning: sweep {printable(sweep_dir)}: its jobs are not counted: {why}")
            continue
        missing = [job for job in jobs if job.status != "completed"]
        if not missing:
            continue
        counts = Counter(NOT_STARTED if job.status == NOT_STARTED else job.status if job.status in
                         ("failed", "interrupted") else "failed" for job in missing)
        how = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"warning: sweep {printable(sweep_dir)}: {len(missing)} of {len(jobs)} jobs have no completed "
                     f"record ({how}); the sweep's own command with hydra.sweep.dir=<that dir> ckpt_path=last "
                     "continues it")
    return lines


def readable_jobs(sweep_dir: Path) -> list[Job]:
    """read_jobs, once the files it reads are known to be regular files of a sane size; Unreadable says which is not,
    or what in them did not read as a sweep's."""
    plan_file = sweep_dir / PLAN_FILE
    try:
        numbered = job_dirs(sweep_dir)
        for path in [plan_file, *(job / name for job in numbered for name in JOB_FILES)]:
            if os.path.lexists(path):
                check_regular_file(path, JOB_FILE_LIMIT, str(path.relative_to(sweep_dir)))
        plan = Plan.read(sweep_dir)
        if os.path.lexists(plan_file) and (plan is None or plan.count > MAX_PLANNED_JOBS):
            raise Unreadable(f"{PLAN_FILE} is not a plan of at most {MAX_PLANNED_JOBS} jobs (count, jobs)")
        return read_jobs(sweep_dir, plan)
    except Unreadable:
        raise
    except (OSError, ValueError, TypeError, AttributeError, RecursionError, yaml.YAMLError) as err:
        # a job dir named '²' (a digit to str.isdigit, not to int), overrides or a record of the wrong shape
        raise Unreadable(f"the files there are not a genlab sweep's ({one_line(err)})") from None
