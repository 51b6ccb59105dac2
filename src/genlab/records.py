"""The run record: results.json (one schema, written atomically) and the provenance that goes in it."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
TRACKED_PACKAGES = ("torch", "lightning", "torchmetrics", "hydra-core", "omegaconf", "wandb", "numpy", "scikit-learn", "albumentations")


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write `data` via a temp file in the same folder and a rename, so a reader never sees a half-written file and a
    full disk leaves the old file whole. The file gets the user's umask, like any file `open` creates (mkstemp's own
    is 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    try:  # Linux says it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically (see `write_atomic`)."""
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_state(where: Path | None = None) -> dict[str, Any]:
    """The commit of the code that ran, and whether the tree had uncommitted changes."""
    cwd = where or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
