"""Read finished runs, from run dirs on disk or from the W&B API, into one shape for the report."""
from __future__ import annotations

import glob
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.analysis.run_files import (Unreadable, finite, is_number, printable, read_config, read_metrics_rows,
                                       read_record, read_wandb_run_id)

# What tells replicates of one experiment apart, never a reason to group runs apart: runs differing only in their
# fold are replicates of one group (with data.folds=K), as runs differing in seed are.
REPLICATE_KEYS = ("seed", "data.fold")
WANDB_RUN_ID_FILE = "wandb_run_id"  # written into the run dir by the pipeline when W&B logged the run


@dataclass(frozen=True)
class WandbRef:
    """Where a run's W&B record is, as far as the run dir (or the API) tells: the URL only when it is known."""

    run_id: str
    project: str | None = None
    url: str | None = None  # online (or synced) with a known entity and project, or read from the API
    sync_dir: str | None = None  # logged offline and not uploaded yet: `wandb sync <sync_dir>` uploads it
    note: str = ""  # what is not known, when neither url nor sync_dir says it


@dataclass
class Run:
    """One run as the report sees it: flat config, final metrics, status, per-epoch curves, per-class accuracy,
    and where it came from (the code's commit, its W&B record)."""

    source: str
    config: dict[str, Any]
    metrics: dict[str, float]
    status: str
    curves: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    per_class: dict[str, float] = field(default_factory=dict)  # class name -> test accuracy
    commit: str | None = None
    dirty: bool | None = None  # the commit had uncommitted changes on top
    wandb: WandbRef | None = None
    notes: list[str] = field(default_factory=list)  # what was left out of the run's record, and why

    @property
    def seed(self) -> Any:
        """The run's replicate, which pairs it with runs of other groups: its seed, or with K-fold its seed and fold."""
        fold = self.config.get("data.fold")
        return self.config.get("seed") if fold is None else f"{self.config.get('seed')}, fold {fold}"


def replicates_note(runs: list[Run]) -> str | None:
    """The report's sentence on K-fold runs: folds count as replicates, n as seeds x folds."""
    folds = sorted({str(run.config.get("data.folds")) for run in runs if run.config.get("data.fold") is not None})
    if not folds:
        return None
    seeds = len({run.config.get("seed") for run in runs})
    return (f"Folds are replicates, as seeds are: runs differing only in data.fold (data.folds={', '.join(folds)}) are "
            f"one group, and n counts seeds × folds ({seeds} seed{'s' * (seeds > 1)} × {', '.join(folds)} folds); the "
            "folds of one seed share training images, so the tests treat correlated runs as independent (Nadeau and "
            "Bengio 2003: their p-values are optimistic).")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, every value one that runs can be grouped on (see `groupable`)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = groupable(value)
    return flat


def groupable(value: Any) -> Any:
    """A config value made hashable: a list of plain values as a tuple, one holding mappings or lists (a custom
    augmentation's `transforms`) as its JSON text, which the report shows the same way."""
    if isinstance(value, list) and not any(isinstance(item, (list, dict, set)) for item in value):
        return tuple(value)
    if isinstance(value, (list, dict, set)):
        return json.dumps(value, default=str)
    return value


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Run dirs named directly, found below multirun dirs, or matched by globs."""
    found: set[Path] = set()
    for pattern in paths:
        for path in [Path(p) for p in glob.glob(pattern)] or [Path(pattern)]:
            found.update(run_dirs_under(path))
    return sorted(found)


def is_run_dir(path: Path) -> bool:
    # lexists: a results.json that is no regular file (a FIFO, a broken link) still marks a run dir, which the reader
    # then names, rather than the dir going unseen
    return os.path.lexists(path / "results.json")


def run_dirs_under(path: Path) -> set[Path]:
    """`path` when it is a run dir, else the run dirs below it. A symbolic link to a run dir counts (a study folder
    of links to runs); links to other folders are not followed, since one to / would have the whole disk searched,
    and one line names them."""
    if is_run_dir(path):
        return {path.resolve()}
    found, unfollowed = set(), []
    for folder, subdirs, _ in os.walk(path):
        subdirs[:] = [name for name in subdirs if name != "wandb"]  # W&B keeps copies of results.json in its folders
        for sub in (Path(folder) / name for name in subdirs):
            if is_run_dir(sub):
                found.add(sub.resolve())
            elif sub.is_symlink():
                unfollowed.append(printable(sub))
    if unfollowed:
        print(f"warning: not followed: {len(unfollowed)} symbolic link{'s' * (len(unfollowed) > 1)} to folders under "
              f"{printable(path)} ({', '.join(unfollowed)}); name them, or a glob of them, to compare the runs there",
              file=sys.stderr, flush=True)
    return found


def load_local_runs(run_dirs: list[Path]) -> tuple[list[Run], list[str]]:
    """The run dirs that read as genlab's records, and one warning line per reason for those skipped, counting and
    naming them (a results.json cut off by a kill, as older versions could leave it, a file edited by hand, a FIFO)."""
    runs, skipped = [], {}
    for run_dir in run_dirs:
        try:
            runs.append(load_local_run(run_dir))
        except Unreadable as why:
            skipped.setdefault(str(why), []).append(run_dir)
    lines = [f"warning: skipped {len(dirs)} run dir{'s' * (len(dirs) > 1)} whose {why}: "
             f"{', '.join(map(printable, dirs))}" for why, dirs in skipped.items()]
    return runs, lines


def note_lines(runs: list[Run]) -> list[str]:
    """One warning line per thing left out of a run's record."""
    return [f"warning: run {printable(run.source)}: {note}" for run in runs for note in run.notes]


def load_local_run(run_dir: Path) -> Run:
    """A run dir as the report sees it. Unreadable when results.json or config.yaml is not what genlab writes; a
    NaN metric, a metrics.csv or a W&B run id that cannot be read leave out that part, with a note."""
    record = read_record(run_dir)
    config = flatten(read_config(run_dir))
    if "seed" not in config and record.seed is not None:
        config["seed"] = record.seed
    notes = not_finite_notes("results.json's", list(record.not_finite))
    try:
        curves = epoch_curves(read_metrics_rows(run_dir))
    except Unreadable as why:
        curves = []
        notes.append(f"{why}: its learning curves are left out")
    try:
        wandb = local_wandb_ref(run_dir, config)
    except Unreadable as why:
        wandb = None
        notes.append(f"{why}: its W&B record is unknown")
    return Run(str(run_dir), config, record.metrics, record.status, curves, per_class=record.per_class,
               commit=record.commit, dirty=record.dirty, wandb=wandb, notes=notes)


def local_wandb_ref(run_dir: Path, config: dict[str, Any]) -> WandbRef | None:
    """The W&B record of a run dir, from the run id the pipeline wrote and W&B's own folder under the run dir.

    W&B names that folder offline-run-<time>-<id> when it logged offline; `wandb sync` leaves a *.wandb.synced
    file there once uploaded. The URL needs the entity, which config.yaml holds only when it was set
    (logger.wandb.entity: null means the account's default entity, which the run dir does not record).
    """
    id_file = run_dir / WANDB_RUN_ID_FILE
    if not os.path.lexists(id_file):
        return None
    run_id = read_wandb_run_id(id_file)
    project, entity = config.get("logger.wandb.project"), config.get("logger.wandb.entity")
    save_dir = Path(str(config.get("logger.wandb.save_dir") or run_dir)) / "wandb"
    # run-<time>-<id> or offline-run-<time>-<id>; a resumed run may have both, and the newest one says where it is
    folders = sorted(save_dir.glob(f"*run-*-{glob.escape(run_id)}"), key=lambda p: p.name.split("run-", 1)[1])
    latest = folders[-1] if folders else None
    if latest is not None and latest.name.startswith("offline-") and not any(latest.glob("*.wandb.synced")):
        return WandbRef(run_id, project, sync_dir=str(latest))
    if latest is None:
        return WandbRef(run_id, project, note="no W&B folder in the run dir: whether it was uploaded is unknown")
    if entity and project:
        return WandbRef(run_id, project, url=f"https://wandb.ai/{entity}/{project}/runs/{run_id}")
    return WandbRef(run_id, project, note="uploaded; URL unknown: logger.wandb.entity was not set (the account's "
                                         "default entity, which the run dir does not record)")


def epoch_curves(rows: list[dict[str, str]]) -> list[dict[str, float]]:
    """Collapse Lightning's CSV rows (one per log call) into one row per epoch; the final test rows are left out."""
    per_epoch: dict[int, dict[str, float]] = {}
    for row in rows:
        if not row.get("epoch") or any(row.get(k) for k in row if k.startswith("test/")):
            continue
        epoch = int(float(row["epoch"]))
        target = per_epoch.setdefault(epoch, {"epoch": epoch})
        target.update({k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("epoch", "step")})
    return [per_epoch[e] for e in sorted(per_epoch)]


def load_wandb_runs(entity_project: str, group: str | None = None, api=None) -> list[Run]:
    """The same records from the W&B API: config, summary metrics and per-epoch history of each run. A summary and a
    history also hold media, tables and text, which are no metrics; a NaN or infinite number is left out with a note."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else {}
    runs = []
    for remote in api.runs(entity_project, filters=filters):
        summary = {k: finite(v) for k, v in dict(remote.summary).items() if not k.startswith("_") and is_number(v)}
        metrics = {k: v for k, v in summary.items() if v is not None}
        notes = not_finite_notes("its W&B summary's", [k for k, v in summary.items() if v is None])
        status = "completed" if remote.state == "finished" else remote.state
        history = [{k: str(v) for k, v in row.items() if is_number(v)} for row in remote.history(pandas=False)]
        curves = epoch_curves([row for row in history if finite(float(row.get("epoch", "nan"))) is not None])
        ref = WandbRef(remote.id, entity_project.split("/")[-1], url=getattr(remote, "url", None))
        runs.append(Run(f"wandb:{entity_project}/{remote.id}", flatten(dict(remote.config)), metrics, status, curves,
                        wandb=ref, notes=notes))
    return runs


def not_finite_notes(where: str, keys: list[str]) -> list[str]:
    if not keys:
        return []
    return [f"{where} metrics {', '.join(keys)} {'are' if len(keys) > 1 else 'is'} NaN or infinite: left out of its "
            "metrics"]
