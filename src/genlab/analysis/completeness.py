"""Whether a comparison rests on the whole study: groups with fewer completed seeds than the others, and sweep dirs
whose planned jobs have no completed record yet, each said in one line (the report's numbers are still computed on
what is there)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from genlab.sweep import NOT_STARTED, read_jobs


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
        jobs = read_jobs(sweep_dir)
        missing = [job for job in jobs if job.status != "completed"]
        if not missing:
            continue
        counts = Counter(NOT_STARTED if job.status == NOT_STARTED else job.status if job.status in
                         ("failed", "interrupted") else "failed" for job in missing)
        how = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"warning: sweep {sweep_dir}: {len(missing)} of {len(jobs)} jobs have no completed record ({how}); "
                     "the sweep's own command with hydra.sweep.dir=<that dir> ckpt_path=last continues it")
    return lines
