"""Read finished runs, from run dirs on disk or from the W&B API, into one shape for the report."""
from __future__ import annotations

import csv
import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Run:
    """One run as the report sees it: flat config, final metrics, status, and per-epoch curves."""

    source: str
    config: dict[str, Any]
    metrics: dict[str, float]
    status: str
    curves: list[dict[str, float]] = field(default_factory=list)  # one row per epoch


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
    """Run dirs (holding results.json) named directly, found below multirun dirs, or matched by globs."""
    found: set[Path] = set()
    for pattern in paths:
        matches = [Path(p) for p in glob.glob(pattern)] or [Path(pattern)]
        for path in matches:
            if (path / "results.json").is_file():
                found.add(path.resolve())
            elif path.is_dir():
                found.update(r.parent.resolve() for r in path.rglob("results.json") if "wandb" not in r.parts)
    return sorted(found)


def load_local_run(run_dir: Path) -> Run:
    record = json.loads((run_dir / "results.json").read_text())
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    metrics_csv = run_dir / "metrics.csv"
    curves = epoch_curves(list(csv.DictReader(open(metrics_csv)))) if metrics_csv.is_file() else []
    return Run(str(run_dir), flatten(config), _numbers(record.get("metrics", {})), record.get("status", "unknown"), curves)


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
        runs.append(Run(f"wandb:{entity_project}/{remote.id}", flatten(dict(remote.config)), _numbers(summary), status,
                        epoch_curves([{k: "" if v is None else str(v) for k, v in row.items()} for row in history])))
    return runs


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    return out
