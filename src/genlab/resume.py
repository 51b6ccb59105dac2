"""Run dirs and resuming: each run gets a dir of its own, a resume finds the run and its newest readable checkpoint,
the checkpoint must fit the model, and a start that is refused leaves an existing run dir as it was.

Nothing here imports torch: the run dir is chosen by a Hydra resolver, before the job (and torch) starts.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import signal
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import OmegaConf

from genlab.errors import ConfigError
from genlab.locks import LOCK_FILE, DirLocked, a_secondary_rank, acquire, holder_of, release

CHECKPOINT_DIR = "checkpoints"
# conf/hydra/default.yaml stamps new run dirs ${now:%Y-%m-%d}_${now:%H-%M-%S}; a run that finds its name taken (another
# run of the task started in the same second) adds .2, .3, ... to the stamp.
STAMP = r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}"
STAMP_LENGTH = len("2026-01-01_10-00-00")
SUFFIX_ROOM = len(".99999")


def wants_resume(resume: bool, ckpt_path: str | None, resume_dir: str | None) -> bool:
    """`resume=true`, `ckpt_path=last` and `resume_dir=<dir>` all mean: continue a run in its own dir."""
    return bool(resume) or ckpt_path == "last" or bool(resume_dir)


def _given(value: Any) -> bool:
    return value not in (None, "None", "null", "")


def name_max(path: Path) -> int:
    """The longest file name the file system holding `path` (or its nearest existing parent) accepts."""
    for folder in (path, *path.parents):
        if folder.is_dir():
            try:
                return os.pathconf(folder, "PC_NAME_MAX")
            except (OSError, ValueError):
                break
    return 255


def check_task_name(task_name: Any, log_dir: str | Path = ".") -> None:
    """task_name names run dirs (<stamp>_<task_name> under <log_dir>/runs/): one plain name that cannot leave that
    folder and fits the file system with the time stamp in front."""
    name = str(task_name)
    limit = name_max(Path(log_dir)) - STAMP_LENGTH - 1 - SUFFIX_ROOM
    if not name or "/" in name or "\\" in name or ".." in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError("task_name", task_name, "a plain name without '/', '\\', '..' or control characters "
                                                  "(it names the run dir under paths.log_dir/runs/)")
    if len(name) > limit:
        raise ConfigError("task_name", f"{name[:20]}... ({len(name)} characters)",
                          f"at most {limit} characters (the file system's longest name, less the run dir's time stamp)")


def run_dir_for(log_dir: str, task_name: str, resume: Any, ckpt_path: Any, resume_dir: Any, stamp: str) -> str:
    """Hydra's run dir (behind the `genlab_run_dir` resolver): see `choose_run_dir`."""
    return str(choose_run_dir(log_dir, task_name, resume, ckpt_path, resume_dir, stamp)[0])


def choose_run_dir(log_dir: str, task_name: str, resume: Any, ckpt_path: Any, resume_dir: Any,
                   stamp: str) -> tuple[Path, bool]:
    """(run dir, whether it was created here): the named or newest resumable run of the task, or a new dir, created
    here and only here, so two runs started in the same second (in one process or many) never share one."""
    if _given(resume_dir):
        return Path(resume_dir).expanduser().resolve(), False
    check_task_name(task_name, log_dir)
    runs = Path(log_dir, "runs")
    if wants_resume(str(resume).lower() == "true", ckpt_path, None):
        # Which run is newest is told by its checkpoints' dates; reading every run's whole checkpoint to tell it would
        # cost a pass over each (the resume then checks the one it loads, see `checkpoint_to_resume`).
        candidates = [(checkpoint.stat().st_mtime, d) for d in runs_of_task(runs, task_name)
                      if (checkpoint := newest_checkpoint(d, checkpoint_is_complete)) is not None]
        if candidates:
            newest = max(candidates)[1]
            holder = holder_of(newest)
            if holder is not None:  # a run still training is never resumed beside itself
                raise DirLocked("ckpt_path" if ckpt_path == "last" else "resume", newest, holder,
                                f"the newest run of task {task_name!r} to resume, not one still running "
                                f"(resume_dir=<run dir> continues another)")
            return newest, False
    return new_run_dir(runs, stamp, task_name), True


def runs_of_task(runs: Path, task_name: str) -> list[Path]:
    """The run dirs of exactly this task (<stamp>[.n]_<task_name>), read as names, never as a glob pattern."""
    pattern = re.compile(rf"{STAMP}(\.\d+)?_{re.escape(str(task_name))}")
    return [d for d in runs.iterdir() if d.is_dir() and pattern.fullmatch(d.name)] if runs.is_dir() else []


def new_run_dir(runs: Path, stamp: str, task_name: str) -> Path:
    """Create <runs>/<stamp>_<task_name>, or <stamp>.2_<task_name>, .3, ... when the name is taken: mkdir is atomic,
    so the run that creates a dir owns it."""
    name = f"{stamp}_{task_name}"
    try:
        runs.mkdir(parents=True, exist_ok=True)
        for n in range(1, 100_000):
            candidate = runs / (name if n == 1 else f"{stamp}.{n}_{task_name}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as err:
        raise ConfigError("paths.log_dir", str(runs.parent), f"a folder where run dirs can be created ({err.strerror})") from err
    raise ConfigError("paths.log_dir", str(runs.parent), f"a folder with fewer runs named {name}")


def resume_command(run_dir: Path) -> str:
    """The command that continues `run_dir` with exactly its own config (saved by Hydra in .hydra/)."""
    return f"python train.py --config-dir {run_dir / '.hydra'} --config-name config hydra.run.dir={run_dir} ckpt_path=last"


def checkpoint_is_complete(path: Path) -> bool:
    """Whether a checkpoint file was written to its end: torch saves a zip, whose directory comes last, so a file cut
    short by a full disk or a kill has none. (Its contents are checked when it is loaded.)"""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def corrupt_member(path: Path) -> str | None:
    """The first member of a zip checkpoint whose bytes fail their CRC-32 (a bit flipped on disk, in memory or in a
    copy: torch.load reads such a file without a word), or None. Reads the whole file: for the one checkpoint a resume
    or eval.py loads, never for each save. A file that is no zip at all is torch.load's to refuse."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return None


def checkpoint_is_whole(path: Path) -> bool:
    """Complete, and every byte as saved (see `corrupt_member`)."""
    return checkpoint_is_complete(path) and corrupt_member(path) is None


def newest_checkpoint(run_dir: Path, usable: Callable[[Path], bool] = checkpoint_is_whole) -> Path | None:
    """The run's newest usable checkpoint: a newer one cut short (a full disk, a kill while saving) or corrupted (its
    CRC-32 fails) is passed over, as the older whole one is what the run can continue from."""
    checkpoints = sorted((Path(run_dir) / CHECKPOINT_DIR).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in checkpoints if usable(p)), None)


def requeued() -> bool:
    """True when SLURM restarted this job (preemption or timeout requeue)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def checkpoint_to_resume(ckpt_path: str | None, resume: bool, resume_dir: str | None, run_dir: Path,
                         in_sweep: bool = False) -> Path | None:
    """The checkpoint training continues from, or None for a fresh start: a job of a sweep continued with
    ckpt_path=last that has no checkpoint (it never started, or was killed before its first) starts afresh."""
    if ckpt_path not in (None, "last"):
        path = Path(ckpt_path).expanduser()
        if not path.is_file():
            raise ConfigError("ckpt_path", ckpt_path, "an existing .ckpt file, or 'last' for the run dir's newest checkpoint")
        return path
    newest = newest_checkpoint(run_dir)
    if wants_resume(resume, ckpt_path, resume_dir):
        if newest is None and not in_sweep:
            unreadable = sorted(p.name for p in (run_dir / CHECKPOINT_DIR).glob("*.ckpt"))
            found = f"only unreadable ones ({', '.join(unreadable)})" if unreadable else "none"
            raise ConfigError("ckpt_path" if ckpt_path == "last" else "resume", ckpt_path or resume,
                              f"a run dir with checkpoints to resume; {run_dir / CHECKPOINT_DIR} has {found}")
        return newest
    return newest if requeued() else None


FARM_STATE = "genlab_farm"  # the key the retired seed farm's checkpoints have (they hold no Lightning loop state)


def check_checkpoint_fits(checkpoint: Path, model: dict[str, Any], data_name: str,
                          split: dict[str, Any] | None = None) -> dict[str, Any]:
    """Refuse a checkpoint of another model family or data set, or of a network that `model` (the build spec the config
    gives) builds otherwise, or of another train/val split than `split` (split_seed, folds, fold: the images it
    validated on would be trained on), naming every setting that differs with both values; one of the retired seed farm (it holds
    no Lightning loop state: a run resumed from it would start again at epoch 0); and one that is unreadable, corrupt
    or would run code when loaded, before anything reads it further. Returns its contents, whose tensors
    `checkpoints.check_resumable` checks against the module."""
    from genlab.training.checkpoints import read_checkpoint, saved_hyper_parameters

    contents = read_checkpoint(checkpoint)
    if FARM_STATE in contents:
        raise ConfigError("ckpt_path", str(checkpoint), "a single run's checkpoint; this one is a seed farm member's "
                          "(the farm is retired and its checkpoints cannot be resumed): test it with eval.py")
    saved = saved_hyper_parameters(contents, checkpoint)
    saved_model, saved_data = saved["model"], saved.get("data", {})
    if saved_model["name"] != model["name"]:
        raise ConfigError("model.name", model["name"], f"{saved_model['name']!r}, as in {checkpoint}")
    if saved_data.get("name") not in (None, data_name):
        raise ConfigError("data", data_name, f"data={saved_data['name']}, the data set {checkpoint} was trained on")
    differences = network_differences(model, saved_model)
    # a checkpoint from before the split was kept says nothing of it: its holdout was drawn with the run's seed
    split_differences = [f"data.{key} is {value!r} here and {saved_data[key]!r} in the checkpoint"
                         for key, value in (split or {}).items() if key in saved_data and saved_data[key] != value]
    if split_differences:
        raise ConfigError("ckpt_path", str(checkpoint), f"a checkpoint of this train/val split: "
                          f"{'; '.join(split_differences)} (resume with the checkpoint's split, or start a new run)")
    if differences:
        raise ConfigError("ckpt_path", str(checkpoint), f"a checkpoint of this network: {'; '.join(differences)} "
                          "(resume with the checkpoint's settings, or start a new run)")
    return contents


def network_differences(here: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """'model.width is 16 here and 32 in the checkpoint', for each build setting of one family's network that differs;
    a knob one side lacks counts as the family's default, as build_model makes it, and a knob the family lacks (a
    preset switching it off for every model) as off."""
    from genlab.models import model_knobs
    from genlab.models.registry import DATA_ARGS, is_off

    defaults = model_knobs(here["name"])
    differences = []
    for key in [*here, *(key for key in saved if key not in here)]:
        mine, theirs = here.get(key, defaults.get(key, 0)), saved.get(key, defaults.get(key, 0))
        if key not in defaults and key not in DATA_ARGS and is_off(mine) and is_off(theirs):
            continue
        if mine != theirs:
            name = f"the data's {key}" if key in DATA_ARGS else f"model.{key}"
            differences.append(f"{name} is {mine!r} here and {theirs!r} in the checkpoint")
    return differences


# A start that is refused (a bad value, a checkpoint that does not fit, missing data) must leave an existing run dir as
# it was, though Hydra has already written its .hydra/ files and opened its log there by then: what they were is kept
# here, from before Hydra writes, and put back if the start is refused; a run dir this start created is removed.
HYDRA_WRITES = (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "config.yaml")


@dataclass
class RunDirBefore:
    """What a run dir held before this start touched it: Hydra's files and the sizes of the logs."""

    run_dir: Path
    created: bool  # this start created the dir
    files: dict[str, bytes | None] = field(default_factory=dict)
    logs: dict[str, int] = field(default_factory=dict)
    had_hydra_dir: bool = False

    @classmethod
    def capture(cls, run_dir: Path, created: bool) -> "RunDirBefore":
        if created:
            return cls(run_dir, True)
        files = {rel: (run_dir / rel).read_bytes() if (run_dir / rel).is_file() else None for rel in HYDRA_WRITES}
        logs = {p.name: p.stat().st_size for p in run_dir.glob("*.log") if p.is_file()}
        return cls(run_dir, False, files, logs, (run_dir / ".hydra").is_dir())

    def restore(self) -> None:
        """Put the run dir back as it was; best effort, file by file (a start that failed may have failed on the disk)."""
        from genlab.records import write_atomic

        for rel in HYDRA_WRITES:
            path, before = self.run_dir / rel, self.files.get(rel)
            try:
                if before is None:
                    path.unlink(missing_ok=True)
                elif not path.is_file() or path.read_bytes() != before:
                    write_atomic(path, before)
            except OSError:
                pass
        for log in self.run_dir.glob("*.log"):
            try:
                if log.name not in self.logs:
                    log.unlink()
                elif log.stat().st_size > self.logs[log.name]:
                    os.truncate(log, self.logs[log.name])
            except OSError:
                pass
        for folder in ([] if self.had_hydra_dir else [self.run_dir / ".hydra"]) + ([self.run_dir] if self.created else []):
            try:
                folder.rmdir()  # only if empty: nothing but what this start wrote is removed
            except OSError:
                pass


_before_start: RunDirBefore | None = None
_locked_run_dir: Path | None = None
# What Hydra writes into a run dir before genlab's checks run: a dir holding only these holds no run yet.
HYDRA_ONLY = (".hydra", LOCK_FILE)


def run_files(run_dir: Path) -> list[str]:
    """The entries of `run_dir` that belong to a run (or to anything else): all but Hydra's own files and logs."""
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name not in HYDRA_ONLY and not p.name.startswith(f"{LOCK_FILE}.") and p.suffix != ".log")


def check_named_run_dir(value: str, resumes: bool) -> Path:
    """A run dir named with hydra.run.dir: a dir of its own for a new run (missing, empty, or holding only Hydra's files),
    or the run that the command resumes; never empty, the launch dir or a folder above it."""
    if not value.strip():
        raise ConfigError("hydra.run.dir", value, "a directory for the run (an empty value would mean the launch dir)")
    run_dir = Path(value).expanduser()
    resolved, here = run_dir.resolve(), Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise ConfigError("hydra.run.dir", value, "a directory of the run's own, not the launch dir or a folder above "
                          "it, where the run's files would mix with others")
    found = run_files(run_dir)
    if found and not resumes:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        what = "a run" if {"results.json", "checkpoints", "config.yaml", "metrics.csv"} & set(found) else "other files"
        raise ConfigError("hydra.run.dir", str(run_dir), f"a new or empty directory: it holds {what} ({shown}); add "
                          "ckpt_path=last to continue the run there, or choose another directory")
    return run_dir


def protect_run_dir(run_dir: Path, created: bool | None = None, key: str = "hydra.run.dir") -> None:
    """Lock `run_dir` for this run and remember it as it is, before Hydra writes into it, so a refused start can leave
    it so. `created`: this start made it (None: it is made here if missing). Refuses, in one line, a dir that cannot be
    created or that another live process is writing (`key` names the setting that chose it)."""
    global _before_start, _locked_run_dir
    if created is None:
        created = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not run_dir.is_dir():
                raise NotADirectoryError(20, "Not a directory")
        except OSError as err:
            raise ConfigError(key, str(run_dir), f"a directory that can be created ({err.strerror})") from err
    stop_on_sigterm_while_starting()
    if not a_secondary_rank():  # a DDP worker writes into its rank 0's run dir, locked by rank 0
        try:
            acquire(run_dir, key, "a run dir no other process is writing")
        except DirLocked:
            if created:
                run_dir.rmdir()
            raise
        _locked_run_dir = run_dir
    _before_start = RunDirBefore.capture(run_dir, created)


class StoppedWhileStarting(SystemExit):
    """SIGTERM before the run was accepted: the start is undone as a refused one (exit code 143, as the signal's)."""

    def __init__(self, code: int = 143) -> None:  # `code`: how pickle rebuilds it (a parallel worker's result)
        super().__init__(code)


_default_sigterm: Any = None
_sigterm_left_to_the_sweep = False


def leave_sigterm_to_the_sweep() -> None:
    """A parallel launcher's worker: the sweep's process stops its jobs (it keeps sending SIGTERM until they have
    stopped, and starts none once stopping), so a start is never cut short here. Raised from the signal, the stop
    could land in Hydra's own code before the job's, where nothing undoes the start."""
    global _sigterm_left_to_the_sweep
    _sigterm_left_to_the_sweep = True


def stop_on_sigterm_while_starting() -> None:
    """Until the start is accepted (or undone), SIGTERM ends the process through the start's own undo, so a scheduler
    that stops a job during its start-up (imports, data) leaves no half-made run dir; then SIGTERM is Lightning's
    again (it saves a checkpoint) or the default."""
    global _default_sigterm
    if _sigterm_left_to_the_sweep:
        return
    if _default_sigterm is None and threading.current_thread() is threading.main_thread():
        _default_sigterm = signal.signal(signal.SIGTERM, _raise_stopped)


def _raise_stopped(signum: int, frame: Any) -> None:
    raise StoppedWhileStarting()


def _sigterm_as_before() -> None:
    global _default_sigterm
    if _default_sigterm is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _default_sigterm)
    _default_sigterm = None


def start_accepted() -> None:
    """Every check of the start passed: from here on the run dir holds this run, whatever happens."""
    global _before_start
    _before_start = None
    _sigterm_as_before()


def undo_refused_start() -> None:
    """The start was refused or failed before `start_accepted`, or found nothing to do: put the run dir back as it was
    (remove it if this start created it and it holds nothing else), and unlock it."""
    global _before_start
    before, _before_start = _before_start, None
    _sigterm_as_before()
    release_run_dir()
    if before is not None:
        before.restore()


def lock_run_dir(run_dir: Path) -> None:
    """Lock the run dir where no resolver did (a run dir chosen by a config of the user's own, a test's run)."""
    global _locked_run_dir
    if _locked_run_dir is None and not a_secondary_rank():
        acquire(run_dir, "paths.output_dir", "a run dir no other process is writing")
        _locked_run_dir = run_dir


def mark_refused_job_failed(err: Exception) -> None:
    """A job of a sweep refused at its start (a bad value of its own, missing data): its dir keeps a results.json that
    says failed and why, where a single run's refused start leaves nothing, so the sweep's other jobs run and its
    summary names this one."""
    from genlab.records import SCHEMA_VERSION, write_json_atomic

    global _before_start
    before, _before_start = _before_start, None
    _sigterm_as_before()
    release_run_dir()
    if before is not None:
        try:
            write_json_atomic(before.run_dir / "results.json", {"schema_version": SCHEMA_VERSION, "status": "failed",
                                                                "error": str(err), "metrics": {}})
        except OSError:
            before.restore()


def release_run_dir() -> None:
    """The run is over (or never started): its dir is free for the next process that continues it."""
    global _locked_run_dir
    locked, _locked_run_dir = _locked_run_dir, None
    if locked is not None:
        release(locked)


def read_record(run_dir: Path) -> dict[str, Any]:
    """The run's results.json as written ({} when there is none or it cannot be read)."""
    try:
        record = json.loads((Path(run_dir) / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def trains_further(cfg: Any, run_dir: Path) -> bool:
    """Whether `cfg` asks a finished run for more than it trained: a higher trainer.max_epochs (or max_steps) than the
    run's own config.yaml says it ran with."""
    try:
        saved = OmegaConf.load(Path(run_dir) / "config.yaml")
    except Exception:  # no config or an unreadable one: nothing says how long the run was
        return False
    for key in ("max_epochs", "max_steps"):
        new, old = OmegaConf.select(cfg, f"trainer.{key}"), OmegaConf.select(saved, f"trainer.{key}")
        if isinstance(new, int) and isinstance(old, int) and new > old >= 0:
            return True
    return False


def kept_record(cfg: Any, run_dir: Path, in_sweep: bool) -> dict[str, Any] | None:
    """The record of a run that continuing has nothing to do for, to keep as it is: a run that completed at this length
    (or longer), or, in a sweep continued with ckpt_path=last, a job that failed (unless retry_failed=true)."""
    if not wants_resume(cfg.get("resume", False), cfg.get("ckpt_path"), cfg.get("resume_dir")):
        return None
    record = read_record(run_dir)
    status = record.get("status")
    if status == "completed" and not trains_further(cfg, run_dir):
        return record
    if status == "failed" and in_sweep and not cfg.get("retry_failed", False):
        return record
    return None


# A start cut short outside the job's own handlers (SIGTERM while Hydra writes its files, a crash in a resolver) is
# undone at exit too.
atexit.register(undo_refused_start)


def log_dir_for(root_dir: str, fast_dev_run: Any) -> str:
    """The `genlab_log_dir` resolver (paths.log_dir): <root>/outputs, and <root>/outputs/debug for a fast_dev_run run,
    as for debug=…, so `compare.py 'outputs/runs/*'` never counts a smoke check as a result."""
    debugging = str(fast_dev_run).lower() not in ("false", "0", "none", "null")
    return str(Path(root_dir) / "outputs" / ("debug" if debugging else ""))


# Registered here, where every process that composes or resolves a genlab config imports it from (cli, pipeline).
OmegaConf.register_new_resolver("genlab_log_dir", log_dir_for, replace=True)
