"""Run genlab's entry scripts (train.py, eval.py, compare.py) in processes of their own, as `python script.py args`
would, but forked from a server that has already imported torch, Lightning, W&B and albumentations.

A process started the usual way spends ~7 s on those imports (more with two test workers on two cores): most of what
a small test run costs. A forked run is still a separate process, with its own pid, exit code, signals, working dir,
environment and file descriptors; the script runs as __main__ and its atexit handlers run at exit. What it cannot
show is a warning printed while those modules are imported: tests that assert on a clean first start use
`subprocess` itself (test_entrypoints.py).
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import weakref
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The third-party modules the entry scripts import, ~7 s of the ~7.1 s that importing genlab.pipeline, .analysis.report
# and .cli takes. Never genlab itself: its import-time work (genlab.cli records the entry script for DDP workers)
# belongs to the run.
PRELOAD = ["torch", "lightning.pytorch", "torchmetrics", "wandb", "albumentations", "hydra", "sklearn.datasets",
           "scipy.stats", "matplotlib.pyplot"]
_forkserver: Any = None


def _context() -> Any:
    global _forkserver
    if _forkserver is None:
        _forkserver = multiprocessing.get_context("forkserver")
        _forkserver.set_forkserver_preload(PRELOAD)
    return _forkserver


def _exit_code(exit: SystemExit) -> int:
    """The status `python script.py` exits with after `sys.exit(code)`: a message is printed and means 1."""
    if exit.code is None or isinstance(exit.code, int):
        return exit.code or 0
    print(exit.code, file=sys.stderr)
    return 1


def _own_temporary_directories() -> None:
    """Give the script temp dirs of its own where the preloaded modules made some at import, as a fresh process would.

    W&B stages media in a TemporaryDirectory made when it is imported, and cleans it at exit: forked scripts shared the
    server's, and the first to exit deleted it for every later one (their W&B tables then failed). The server's
    finalizers never run in a script; each such dir is swapped for a new one, which the script's own exit removes.
    """
    for inherited in list(weakref.finalize._registry):  # noqa: SLF001  (no public way to list them)
        inherited.atexit = False
        referent = inherited.peek()
        if referent and isinstance(referent[0], tempfile.TemporaryDirectory):
            referent[0].name = tempfile.mkdtemp(prefix="script-", suffix=os.path.basename(referent[0].name))


def _run_as_main(script: str, args: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str,
                 new_session: bool) -> None:
    """The forked child: become `python script args` in `cwd` with `env`, writing to the given files."""
    if new_session:
        os.setsid()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((0, os.devnull), (1, stdout), (2, stderr)):
        opened = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_APPEND)
        os.dup2(opened, fd)
        os.close(opened)
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    sys.stdout = open(1, "w", buffering=1 if unbuffered else -1, encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = [script, *args]
    _own_temporary_directories()
    # The fork server made this process the forkserver way and its preparation set that start method for it; a real
    # `python train.py` starts its loader workers with the platform's default (fork on Linux). Left as it was, every
    # worker started a fresh server and imported torch again: ~6 s per loader, and not what a user's run does.
    multiprocessing.set_start_method(None, force=True)
    code, died_of = 0, None
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit:
        code = _exit_code(exit)
    except KeyboardInterrupt:  # as the interpreter does: the traceback, then death by the signal itself
        traceback.print_exc()
        died_of = signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    # The interpreter's own exit order: join the threads (and run what they registered with threading, as loky's
    # executor shuts its workers down there), then the atexit handlers.
    threading._shutdown()  # noqa: SLF001  (no public way to run it)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    if died_of is not None:
        signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
    os._exit(code)


class ScriptProcess:
    """The running script, with the parts of `subprocess.Popen`'s interface the tests use (text mode)."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], merge_stderr: bool,
                 start_new_session: bool):
        self.args = command
        self._files = tempfile.mkdtemp(prefix="script-")
        self._stdout = os.path.join(self._files, "stdout")
        self._stderr = self._stdout if merge_stderr else os.path.join(self._files, "stderr")
        for path in {self._stdout, self._stderr}:
            Path(path).touch()
        script = str(Path(command[0]) if Path(command[0]).is_absolute() else REPO / command[0])
        self._process = _context().Process(
            target=_run_as_main, args=(script, command[1:], str(cwd), env, self._stdout, self._stderr,
                                       start_new_session), daemon=False)
        self._process.start()
        self.pid = self._process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self._process.join()
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        self.wait(timeout)
        out = Path(self._stdout).read_text(errors="backslashreplace")
        err = None if self._stderr == self._stdout else Path(self._stderr).read_text(errors="backslashreplace")
        return out, err

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_script(*command: str, cwd: Path, env: dict[str, str] | None = None, merge_stderr: bool = False,
                 start_new_session: bool = False) -> ScriptProcess:
    """Start `python <command>` (a script of the repo, then its arguments); `env` replaces the environment."""
    return ScriptProcess(list(command), cwd, dict(os.environ if env is None else env), merge_stderr, start_new_session)


def run_script(*command: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
               merge_stderr: bool = False, check: bool = False) -> subprocess.CompletedProcess:
    """`subprocess.run([python, *command], capture_output=True, text=True)` through the preloaded server."""
    process = start_script(*command, cwd=cwd, env=env, merge_stderr=merge_stderr)
    try:
        out, err = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    if check:
        result.check_returncode()
    return result


def processes_in_session(session: int) -> list[int]:
    """The live processes of a session (a script started with start_new_session=True and all it started), by /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return found
