"""A run dir's files read as untrusted input: a run dir may be cut off by a kill, edited by hand, copied from elsewhere
or planted. A file is read only when it is a regular file of a size genlab could have written, and taken only in the
shape the pipeline writes it (genlab.pipeline, genlab.records); anything else raises Unreadable, whose one-line
message names the file and says what is wrong with it."""
from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import yaml

from genlab.records import SCHEMA_VERSION
from genlab.sweep import STATUSES

KiB, MiB = 2**10, 2**20
# Far above what a run writes (kilobytes of JSON and YAML, megabytes of CSV for a long run), far below what would
# stall the report or fill its memory: a larger file is not genlab's.
SIZE_LIMITS = {"results.json": 64 * MiB, "config.yaml": 4 * MiB, "metrics.csv": 256 * MiB, "wandb_run_id": 4 * KiB}
FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
              (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class Unreadable(ValueError):
    """A file of a run dir is not what genlab writes; the message names the file and says why, in one line."""


def one_line(text: object, limit: int = 200) -> str:
    """Text as one line of at most `limit` characters: parsers' and W&B's messages span several."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def printable(path: object) -> str:
    """A path as one line shows it: a newline or other control character in a dir's name escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))


def shown(value: Any) -> str:
    """A value as a message quotes it: short, on one line."""
    return one_line(repr(value), 60)


def size_text(n: int) -> str:
    for unit, name in ((2**30, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n >= unit:
            return f"{n / unit:.0f} {name}"
    return f"{n} bytes"


def file_kind(mode: int) -> str:
    return next((kind for is_kind, kind in FILE_KINDS if is_kind(mode)), "a special file")


def read_text(path: Path, limit: int | None = None) -> str:
    """The text of `path`, a regular file of at most `limit` bytes (its SIZE_LIMITS entry by default)."""
    limit = SIZE_LIMITS[path.name] if limit is None else limit
    with open_regular_file(path, limit) as file:
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew since it was checked
        raise Unreadable(f"{path.name} is more than {size_text(limit)}, more than genlab writes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:  # valid UTF-8, but no text genlab writes (a file of zeros, as a crash can leave)
        raise Unreadable(f"{path.name} is binary, not UTF-8 text")
    return text


def check_regular_file(path: Path, limit: int, name: str) -> None:
    """Unreadable, named `name`, unless `path` is a regular file of at most `limit` bytes."""
    open_regular_file(path, limit, name).close()


def open_regular_file(path: Path, limit: int, name: str | None = None) -> BinaryIO:
    """`path` opened for reading once it is known to be a regular file of at most `limit` bytes.

    Opened without blocking and checked before anything is read: a plain read of a FIFO waits forever for a writer,
    and one of a device (a link to /dev/zero) never ends.
    """
    name = name or path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise Unreadable(f"{name} {why_unopened(path, err)}") from None
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and info.st_size <= limit:
        return os.fdopen(fd, "rb")
    os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable(f"{name} is {file_kind(info.st_mode)}, not a regular file")
    raise Unreadable(f"{name} is {size_text(info.st_size)}, more than genlab writes (the limit is {size_text(limit)})")


def why_unopened(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "is a loop of symbolic links"
    if err.errno == errno.ENOENT and os.path.islink(path):
        return "is a broken symbolic link"
    try:  # a socket cannot be opened at all
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        return f"is {file_kind(mode)}, not a regular file"
    return f"cannot be read ({err.strerror})"


@dataclass(frozen=True)
class RunRecord:
    """What the report takes from results.json, checked."""

    status: str
    metrics: dict[str, float]  # the finite ones
    not_finite: tuple[str, ...]  # metrics recorded as NaN or infinite: not numbers the report can average
    per_class: dict[str, float]
    seed: int | None
    commit: str | None
    dirty: bool | None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: int | float) -> float | None:
    """`value` as a float, or None for NaN, infinity and integers beyond a float's range."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def optional(kind: type) -> Callable[[Any], bool]:
    """None, or a `kind` (JSON's true and false are no whole numbers here)."""
    return lambda value: value is None or isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def checked(value: Any, name: str, ok: Callable[[Any], bool], expected: str) -> Any:
    if not ok(value):
        raise Unreadable(f"results.json's {name} is {shown(value)}, expected {expected}")
    return value


def numbers_of(record: dict[str, Any], key: str) -> dict[str, float | None]:
    """A mapping of names to numbers, each as a float or None where it is not finite (JSON from Python may hold NaN
    and Infinity)."""
    values = checked(record.get(key), key, optional(dict), "a mapping of names to numbers") or {}
    for name, value in values.items():
        checked(value, f"{key} {name}", is_number, "a number")
    return {name: finite(value) for name, value in values.items()}


def read_record(run_dir: Path) -> RunRecord:
    """results.json in the schema this genlab writes (SCHEMA_VERSION), checked field by field."""
    text = read_text(run_dir / "results.json")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, an integer too long to convert, or nesting too deep
        raise Unreadable("results.json is cut off or not a JSON record") from None
    if not isinstance(record, dict):
        raise Unreadable(f"results.json is {shown(record)}, not a JSON record")
    version = record.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise Unreadable("results.json has no schema_version" if version is None else
                         f"results.json has schema_version {shown(version)}, and this genlab reads version "
                         f"{SCHEMA_VERSION}")
    status = checked(record.get("status"), "status", lambda v: isinstance(v, str) and v in STATUSES,
                     f"one of {', '.join(STATUSES)}")
    metrics = numbers_of(record, "metrics")
    git = checked(record.get("git"), "git", optional(dict), "a mapping (commit, dirty)") or {}
    return RunRecord(
        status, {name: value for name, value in metrics.items() if value is not None},
        tuple(name for name, value in metrics.items() if value is None),
        # a class absent from the test labels has accuracy NaN (evaluation.per_class_accuracy): nothing to plot
        {name: value for name, value in numbers_of(record, "per_class_acc").items() if value is not None},
        checked(record.get("seed"), "seed", optional(int), "a whole number"),
        checked(git.get("commit"), "git.commit", optional(str), "a commit hash"),
        checked(git.get("dirty"), "git.dirty", optional(bool), "true or false"))


class ConfigLoader(yaml.SafeLoader):
    """YAML without aliases: the pipeline's config.yaml has none, and a few nested ones (a "billion laughs") expand
    to more keys and text than the report could hold."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "an alias (*name), which genlab's config.yaml never has",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


def yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + one_line(getattr(err, "problem", None) or err)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The resolved config the pipeline saved (config.yaml), as its nested mapping."""
    path = run_dir / "config.yaml"
    if not os.path.lexists(path):
        raise Unreadable("config.yaml is missing")
    text = read_text(path)
    try:
        tree = yaml.load(text, Loader=ConfigLoader)  # noqa: S506  (a SafeLoader)
    except yaml.YAMLError as err:
        raise Unreadable(f"config.yaml is not YAML ({yaml_problem(err)})") from None
    except (ValueError, RecursionError):  # an integer too long to convert; nesting too deep
        raise Unreadable("config.yaml is not a config genlab writes (nested too deep, or a number too long)") from None
    if tree is None:
        raise Unreadable("config.yaml is empty")
    if not isinstance(tree, dict):
        raise Unreadable(f"config.yaml is {shown(tree)}, not a mapping of config keys")
    key = non_finite_key(tree)
    if key is not None:  # genlab refuses inf and NaN before a run starts (config.py), and the report's axes need floats
        raise Unreadable(f"config.yaml's {key} is not a finite number")
    return tree


def non_finite_key(tree: dict[str, Any], prefix: str = "") -> str | None:
    """The dotted key of the first NaN, infinity or integer beyond a float's range in the config, if any."""
    for key, value in tree.items():
        if isinstance(value, dict):
            found = non_finite_key(value, f"{prefix}{key}.")
            if found is not None:
                return found
        elif is_number(value) and finite(value) is None:
            return f"{prefix}{key}"
    return None


def read_metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv's rows as Lightning's CSV logger writes them: a header, then numbers or empty cells (the
    epoch a whole number); [] when there is no metrics.csv."""
    path = run_dir / "metrics.csv"
    if not os.path.lexists(path):
        return []
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    rows = []
    try:
        for row in reader:
            if None in row:
                raise Unreadable(f"metrics.csv line {reader.line_num} has more cells than its header")
            for column, cell in row.items():
                if cell not in ("", None):
                    check_cell(column, cell, reader.line_num)
            rows.append(row)
    except csv.Error as err:  # a field longer than csv's limit; raised before the line it is on is counted
        raise Unreadable(f"metrics.csv line {reader.line_num + 1}: {one_line(err)}") from None
    return rows


def check_cell(column: str, cell: str, line: int) -> None:
    try:
        number = float(cell)
    except ValueError:
        raise Unreadable(f"metrics.csv line {line}: {column} is {shown(cell)}, not a number") from None
    if column == "epoch" and not (number >= 0 and number.is_integer()):  # NaN and infinity are not
        raise Unreadable(f"metrics.csv line {line}: epoch is {shown(cell)}, not a whole number")


def read_wandb_run_id(path: Path) -> str:
    """The W&B run id the pipeline wrote: one word (W&B's own are letters and digits)."""
    run_id = read_text(path).strip()
    if not run_id or not run_id.isprintable() or any(c.isspace() or c in "/\\" for c in run_id) or len(run_id) > 128:
        raise Unreadable(f"{path.name} is {shown(run_id)}, not a W&B run id")
    return run_id
