"""A run dir or sweep dir is written by one live process at a time: a lock file in it names that process.

The file holds the pid, the host and the process's start time, so a lock left behind by `kill -9` (or a crash, or a
reboot) is recognised as stale and taken over, even where the pid has been reused since. A lock taken on another host
(a shared file system, a SLURM job on another node) cannot be checked from here and counts as live.

Nothing here imports torch: run dirs are chosen and locked by a Hydra resolver, before the job starts.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from genlab.errors import ConfigError

LOCK_FILE = ".genlab.lock"
DISTRIBUTED_RANKS = ("RANK", "LOCAL_RANK", "SLURM_PROCID")  # set by Lightning's DDP launcher, torchrun and srun


def process_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/<pid>/stat, field 22): a reused pid starts later."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])  # the fields after the command name, which may hold spaces


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """The process a lock file names."""

    pid: int
    host: str
    started: int | None

    @classmethod
    def this_process(cls) -> "Holder":
        return cls(os.getpid(), socket.gethostname(), process_start_time(os.getpid()))

    @classmethod
    def read(cls, path: Path) -> "Holder | None":
        """The lock file's holder; None when the file is gone or unreadable (a crash while writing it: stale)."""
        try:
            data = json.loads(path.read_text())
            return cls(int(data["pid"]), str(data["host"]), data.get("started"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return cls(-1, "", None)

    def is_live(self) -> bool:
        if self.host != socket.gethostname():
            return self.pid > 0  # cannot be checked from here
        if self.pid <= 0 or not pid_alive(self.pid):
            return False
        return self.started is None or process_start_time(self.pid) in (None, self.started)

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{where}"


class DirLocked(ConfigError):
    """The dir is being written by another live process."""

    def __init__(self, key: str, folder: Path, holder: Holder, expected: str):
        self.holder = holder
        super().__init__(key, str(folder), f"{expected}; it is being written by {holder.describe()} "
                                           f"({folder / LOCK_FILE}; remove it if that process is gone)")


_held: set[Path] = set()


def a_secondary_rank() -> bool:
    """A DDP worker of rank > 0: it writes into its rank 0's run dir, which rank 0 has locked."""
    for name in DISTRIBUTED_RANKS:
        try:
            if int(os.environ.get(name, "0") or 0) > 0:
                return True
        except ValueError:
            continue
    return False


def holder_of(folder: Path) -> Holder | None:
    """The live process (not this one) that holds `folder`'s lock, if any."""
    holder = Holder.read(Path(folder) / LOCK_FILE)
    if holder is None or holder == Holder.this_process() or not holder.is_live():
        return None
    return holder


def acquire(folder: Path, key: str, expected: str) -> None:
    """Lock `folder` for this process (idempotent); a stale lock is taken over. Raises DirLocked, naming `key` and
    what was `expected` of it, when another live process holds it."""
    folder = Path(folder).resolve()
    if folder in _held or a_secondary_rank():
        return
    me = Holder.this_process()
    lock = folder / LOCK_FILE
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{LOCK_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump({"pid": me.pid, "host": me.host, "started": me.started}, file)
        for _ in range(10):
            try:
                os.link(tmp, lock)  # atomic: exactly one process creates the lock file
                break
            except FileExistsError:
                holder = Holder.read(lock)
                if holder is not None and holder.is_live() and holder != me:
                    raise DirLocked(key, folder, holder, expected) from None
                # stale: move it aside atomically, so of two processes finding it stale only one takes over
                try:
                    os.rename(lock, f"{tmp}.stale")
                    os.unlink(f"{tmp}.stale")
                except FileNotFoundError:
                    pass
        else:
            raise DirLocked(key, folder, Holder.read(lock) or me, expected)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _held.add(folder)


def release(folder: Path) -> None:
    """Remove `folder`'s lock if this process holds it."""
    folder = Path(folder).resolve()
    if folder not in _held:
        return
    _held.discard(folder)
    lock = folder / LOCK_FILE
    if Holder.read(lock) == Holder.this_process():
        lock.unlink(missing_ok=True)


def release_all() -> None:
    for folder in list(_held):
        release(folder)


atexit.register(release_all)
