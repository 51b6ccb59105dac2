"""Jobs side by side: what `hydra/launcher=parallel` adds around Hydra's joblib launcher, which runs
`hydra.launcher.n_jobs` jobs at once in worker processes (hydra_plugins/genlab_parallel).

The basic launcher's promises stay: Ctrl+C or SIGTERM stops the whole sweep (every running job saves its checkpoint
and records `interrupted`; no further job starts; no process is left), the job table and exit code at the end, and
continuing with `hydra.sweep.dir=<dir> ckpt_path=last`. Each job's output goes to `output.log` in its run dir, and
the terminal gets one line as each job starts (genlab.hydra_callbacks) and one as it finishes.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

OUTPUT_FILE = "output.log"  # a job's stdout and stderr, in its run dir
STOP_FILE = ".stop"  # in the sweep dir: the signal that stopped the sweep; a job that finds it does not start
# What loky sets in its workers to cap their thread pools (cores // n_jobs, unless the parent has a value); genlab
# sets torch's threads itself and records why (genlab.threads), so the workers get the parent's own values back.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")
RESEND_EVERY_S = 1.0  # a job that gets SIGTERM before Lightning handles it would miss it: it is sent again


def stop_requested(sweep_dir: Path) -> str | None:
    """The name of the signal that stopped the sweep, if one did."""
    try:
        return (Path(sweep_dir) / STOP_FILE).read_text().strip() or "SIGINT"
    except OSError:
        return None


def prepare_worker(parent_environ: dict[str, str | None]) -> None:
    """A worker process's start (loky's initializer): the parent's thread variables, and signals left to the parent.

    Ctrl+C in a terminal reaches every process of the foreground group, workers included: a worker idle between jobs
    would die of it and joblib would then kill every other worker mid-checkpoint. So the workers ignore it, and a
    SIGTERM that comes before Lightning's own handler (which chains this one) is no death either: the parent sends it
    again until the job has stopped.
    """
    for name, value in parent_environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # loky makes its own start method the worker's default, and a job's DataLoader workers cannot start with it
    multiprocessing.set_start_method(None, force=True)
    from genlab.resume import leave_sigterm_to_the_sweep

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, ignore_until_lightning_handles_it)
    leave_sigterm_to_the_sweep()


def ignore_until_lightning_handles_it(signum: int, frame: Any) -> None:
    """A worker's SIGTERM handler outside Lightning's (which calls it too): the parent sends the signal again."""


def running_jobs(sweep_dir: Path) -> list[int]:
    """The pids of the live processes that hold a job dir of the sweep (genlab.locks)."""
    from genlab.locks import LOCK_FILE, Holder

    pids = []
    for lock in Path(sweep_dir).glob(f"*/{LOCK_FILE}"):
        holder = Holder.read(lock)
        if holder is not None and holder.pid != os.getpid() and holder.is_live():
            pids.append(holder.pid)
    return pids


@contextlib.contextmanager
def stop_on_signals(sweep_dir: Path) -> Iterator[None]:
    """While the jobs run: Ctrl+C or SIGTERM writes the stop file (no further job starts) and sends SIGTERM to every
    running job, again every RESEND_EVERY_S until the jobs are done, so each stops between two steps and saves an
    exact checkpoint (Lightning's SIGTERM path)."""
    done = threading.Event()

    def forward() -> None:
        while not done.is_set():
            for pid in running_jobs(sweep_dir):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGTERM)
            done.wait(RESEND_EVERY_S)

    def stop(signum: int, frame: Any) -> None:
        stop_file = Path(sweep_dir) / STOP_FILE
        if not stop_file.exists():
            stop_file.write_text(signal.Signals(signum).name)
            print(f"sweep stopping ({signal.Signals(signum).name}): the running jobs save their checkpoints; no further "
                  "job starts", file=sys.stderr, flush=True)
            threading.Thread(target=forward, name="genlab-stop", daemon=True).start()

    (Path(sweep_dir) / STOP_FILE).unlink(missing_ok=True)  # a continued sweep starts again
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        done.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (the file descriptors, so Lightning, Rich and child processes follow) appended
    to `path`, then put back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.dup2(log, 1)
        os.dup2(log, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, log):
            os.close(fd)


def finished_line(job_dir: Path, number: int, overrides: Sequence[str], seconds: float, kept: bool) -> str:
    """`job 3/9 completed in 41.2 s: test/acc 0.9361 (regularization=l2 seed=1); output: <run dir>/output.log`."""
    from genlab.sweep import Plan, read_job, shown_overrides

    plan = Plan.read(job_dir.parent)
    job = read_job(job_dir)
    status = "not started" if job.status == "no result" and not job_dir.exists() else job.status
    scores = ", ".join(f"{key} {job.metrics[key]:.4f}" for key in ("test/acc", "final/test/acc")
                       if isinstance(job.metrics.get(key), (int, float)))
    how = "kept as it was" if kept else f"in {seconds:.1f} s"
    count = f"/{plan.count}" if plan else ""
    return (f"job {number + 1}{count} {status} {how}{': ' + scores if scores else ''} "
            f"({shown_overrides(plan, list(overrides))}); output: {job_dir / OUTPUT_FILE}")


def take_back_output(log: Path, size: int | None) -> str:
    """What a job kept as it was wrote to its output.log, removed from it (its dir stays byte for byte as it was; a
    log that was not there is deleted) and returned, for the terminal."""
    with contextlib.suppress(OSError):
        with open(log, "r+b") as file:
            file.seek(size or 0)
            text = file.read().decode(errors="replace")
            file.truncate(size or 0)
        if size is None:
            log.unlink()
        return text
    return ""


class JobInWorker:
    """The task function as a parallel launcher's worker runs it: not at all once the sweep is stopping; else with its
    output in the job's run dir, and one line to the terminal when it finishes."""

    def __init__(self, task_function: Callable[[Any], Any]):
        self.task_function = task_function

    def __call__(self, cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from genlab.resume import read_record, undo_refused_start

        hydra_cfg = HydraConfig.get()
        job_dir = Path(hydra_cfg.runtime.output_dir)
        if stop_requested(job_dir.parent):
            undo_refused_start()  # Hydra made the job's dir and wrote into it: the job never started
            return None
        t0, before = time.perf_counter(), read_record(job_dir)
        log = job_dir / OUTPUT_FILE
        logged = log.stat().st_size if log.is_file() else None
        try:
            with output_to(log):
                return self.task_function(cfg)
        finally:
            kept = bool(before) and read_record(job_dir) == before
            if kept:
                print(take_back_output(log, logged), end="", flush=True)
            print(finished_line(job_dir, int(hydra_cfg.job.num), [str(o) for o in hydra_cfg.overrides.task],
                                time.perf_counter() - t0, kept), flush=True)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
    """Hydra's joblib launch, with workers prepared by `prepare_worker` and the sweep stopped by `stop_on_signals`."""
    from hydra_plugins.hydra_joblib_launcher import _core

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    parent_environ = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    launcher.joblib.update(initializer=prepare_worker, initargs=(parent_environ,))
    with stop_on_signals(sweep_dir):
        return _core.launch(launcher=launcher, job_overrides=job_overrides, initial_job_idx=initial_job_idx)
