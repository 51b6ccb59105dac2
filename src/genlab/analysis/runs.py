"""Read finished runs, from run dirs on disk or from the W&B API, into one shape for the report."""
from __future__ import annotations

import csv
import glob
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


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

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become tuples so values can be grouped on."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def find_run_dirs(paths: list[str]) -> list[Path]:
    """Run dirs (holding a readable results.json) named directly, found below multirun dirs, or matched by globs."""
    found: set[Path] = set()
    for pattern in paths:
        matches = [Path(p) for p in glob.glob(pattern)] or [Path(pattern)]
        for path in matches:
            if (path / "results.json").is_file():
                found.add(path.resolve())
            elif path.is_dir():
                found.update(r.parent.resolve() for r in path.rglob("results.json") if "wandb" not in r.parts)
    return readable_run_dirs(sorted(found))


def readable_run_dirs(run_dirs: list[Path]) -> list[Path]:
    """The run dirs whose results.json reads as a record. The others (cut off by a kill or a full disk, as older
    versions could leave it, or edited by hand) are skipped, and one line on stderr counts and names them."""
    readable, skipped = [], []
    for run_dir in run_dirs:
        try:
            ok = isinstance(json.loads((run_dir / "results.json").read_text()), dict)
        except (OSError, ValueError):  # ValueError: a JSONDecodeError, or bytes that are not UTF-8
            ok = False
        (readable if ok else skipped).append(run_dir)
    if skipped:
        print(f"warning: skipped {len(skipped)} run dir{'s' * (len(skipped) > 1)} whose results.json is cut off or not a "
              f"JSON record: {', '.join(map(str, skipped))}", file=sys.stderr, flush=True)
    return readable


def load_local_run(run_dir: Path) -> Run:
    record = json.loads((run_dir / "results.json").read_text())
    config_path = run_dir / "config.yaml"
    config = flatten(yaml.safe_load(config_path.read_text()) or {}) if config_path.is_file() else {}
    if "seed" not in config and record.get("seed") is not None:
        config["seed"] = record["seed"]
    metrics_csv = run_dir / "metrics.csv"
    curves = []
    if metrics_csv.is_file():
        with open(metrics_csv, newline="") as rows:
            curves = epoch_curves(list(csv.DictReader(rows)))
    git = record.get("git") or {}
    return Run(str(run_dir), config, _numbers(record.get("metrics", {})), record.get("status", "unknown"), curves,
               per_class=_numbers(record.get("per_class_acc") or {}), commit=git.get("commit"), dirty=git.get("dirty"),
               wandb=local_wandb_ref(run_dir, config))


def local_wandb_ref(run_dir: Path, config: dict[str, Any]) -> WandbRef | None:
    """The W&B record of a run dir, from the run id the pipeline wrote and W&B's own folder under the run dir.

    W&B names that folder offline-run-<time>-<id> when it logged offline; `wandb sync` leaves a *.wandb.synced
    file there once uploaded. The URL needs the entity, which config.yaml holds only when it was set
    (logger.wandb.entity: null means the account's default entity, which the run dir does not record).
    """
    id_file = run_dir / WANDB_RUN_ID_FILE
    if not id_file.is_file():
        return None
    run_id = id_file.read_text().strip()
    project, entity = config.get("logger.wandb.project"), config.get("logger.wandb.entity")
    save_dir = Path(str(config.get("logger.wandb.save_dir") or run_dir)) / "wandb"
    # run-<time>-<id> or offline-run-<time>-<id>; a resumed run may have both, and the newest one says where it is
    folders = sorted(save_dir.glob(f"*run-*-{run_id}"), key=lambda p: p.name.split("run-", 1)[1])
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
    """The same records from the W&B API: config, summary metrics and per-epoch history of each run."""
    if api is None:
        import wandb

        api = wandb.Api()
    filters = {"group": group} if group else {}
    runs = []
    for remote in api.runs(entity_project, filters=filters):
        summary = {k: v for k, v in dict(remote.summary).items() if not k.startswith("_")}
        status = "completed" if remote.state == "finished" else remote.state
        history = [row for row in remote.history(pandas=False) if row.get("epoch") is not None]
        curves = epoch_curves([{k: "" if v is None else str(v) for k, v in row.items()} for row in history])
        ref = WandbRef(remote.id, entity_project.split("/")[-1], url=getattr(remote, "url", None))
        runs.append(Run(f"wandb:{entity_project}/{remote.id}", flatten(dict(remote.config)), _numbers(summary), status,
                        curves, wandb=ref))
    return runs


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out
