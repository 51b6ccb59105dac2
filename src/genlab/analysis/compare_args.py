"""compare.py's command line, checked before anything is read or written: its options, the paths it names, and the
folder the report goes to (never a run dir, a folder inside one or a filesystem root, never a file)."""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from genlab.analysis.run_files import one_line

# logger.wandb.init_timeout's default (conf/logger/wandb.yaml; W&B's own wait is 90 s): compare.py runs outside Hydra
WANDB_TIMEOUT_S = 10.0


class Refusal(SystemExit):
    """Bad input to compare.py: one `error: …` line on stderr (report.main prints it) and exit code 2, as train.py and
    eval.py answer bad input. Its str is the line, so a caller (or a test) reads why."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OneLineParser(argparse.ArgumentParser):
    """argparse's own answer to a wrong option (usage, then the error) in one line too."""

    def error(self, message: str) -> NoReturn:
        raise Refusal(f"error: {message} (see python compare.py --help)")


def top_level_pieces(text: str) -> list[str]:
    """`text` split at the commas outside brackets (a list value [1,2] stays one piece)."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            pieces.append(text[start:i])
            start = i + 1
    return [*pieces, text[start:]]


def config_value(key: str, text: str) -> Any:
    """A value as train.py's command line reads it (Hydra's override grammar: false is False, 1e-3 is 0.001, null is
    None, [1,2] a list), made comparable with a run's config value (a list as a tuple, as runs.flatten keeps it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        value = OverridesParser.create().parse_override(f"{key}={text}").value()
    except HydraException as err:
        raise argparse.ArgumentTypeError(f"{key}={text}: not a config value ({one_line(err)})") from None
    return tuple(value) if isinstance(value, list) else value


def key_values(text: str) -> dict[str, Any]:
    """--baseline: key=value[,key=value], each key once, each value read as a config value (see `config_value`)."""
    pairs = [pair.partition("=") for pair in top_level_pieces(text)]
    keys = [key.strip() for key, _, _ in pairs]
    if not all(key and equals for key, (_, equals, _) in zip(keys, pairs)) or len(set(keys)) < len(keys):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected key=value[,key=value] with each key once "
                                         "(e.g. regularization.name=none)")
    return {key: config_value(key, value.strip()) for key, (_, _, value) in zip(keys, pairs)}


def key_list(text: str) -> list[str]:
    """--by: comma-separated config keys."""
    keys = [key.strip() for key in text.split(",")]
    if not all(keys):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected comma-separated config keys (e.g. "
                                         "regularization.name,data.train_fraction)")
    return keys


def entity_project(text: str) -> str:
    """--dashboard: ENTITY/PROJECT, as W&B names a project."""
    entity, slash, project = text.partition("/")
    if not (entity.strip() and slash and project.strip()) or "/" in project:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected ENTITY/PROJECT (e.g. my-team/genlab)")
    return text


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected seconds > 0")
    return value


def parse_args(argv: list[str], description: str | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="compare.py", description=description)
    parser.add_argument("paths", nargs="*", help="run dirs, multirun dirs or globs (quote globs)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from the W&B API instead of disk")
    parser.add_argument("--group", help="with --wandb: only runs of this W&B group")
    parser.add_argument("--by", type=key_list,
                        help="comma-separated config keys to group by (default: every key that differs)")
    parser.add_argument("--baseline", type=key_values,
                        help="key=value[,key=value] picking the baseline group (default: the best group)")
    parser.add_argument("--metric", help="the metric that ranks groups: any key of results.json's metrics (default: "
                        "the test accuracy of the weights the runs compare, analysis.compared_weights: test/acc for "
                        "the best checkpoint, final/test/acc for the last epoch)")
    parser.add_argument("--direction", choices=("max", "min"),
                        help="max: higher is better; min: lower is better (default: min for losses, ECE and gaps, "
                             "else max)")
    parser.add_argument("--measures", action="store_true",
                        help="add which generalization measure (results.json measures/*) predicts the gap of the "
                             "compared weights: Kendall tau, granulated Psi over the varied keys, coupled sign error "
                             "and a figure of each measure against the gap")
    parser.add_argument("--out", help="where report.md, report.html and the plots go (default: the common parent of "
                        "the runs; never a run dir or a filesystem root)")
    parser.add_argument("--log-wandb", metavar="PROJECT", help="also log the table and report to this W&B project "
                        "(offline, under --out, when W&B cannot start online)")
    parser.add_argument("--dashboard", type=entity_project, metavar="ENTITY/PROJECT",
                        help="also build the study's W&B workspace there (needs wandb-workspaces: pip install -e "
                             "'.[dashboard]'); without a key or a network its spec goes into the report's folder")
    parser.add_argument("--wandb-timeout", type=seconds, default=WANDB_TIMEOUT_S, metavar="SECONDS",
                        help=f"how long --wandb and --log-wandb wait for the W&B server (default: {WANDB_TIMEOUT_S:g}, "
                             "as logger.wandb.init_timeout)")
    args = parser.parse_args(argv)
    if bool(args.paths) == bool(args.wandb):
        parser.error("give run dirs / multirun dirs / globs, or --wandb ENTITY/PROJECT" +
                     (", not both" if args.paths else ""))
    if args.group and not args.wandb:
        parser.error("--group picks the runs of a W&B group: it goes with --wandb ENTITY/PROJECT")
    for path in args.paths:
        if not glob.glob(path) and not os.path.lexists(path):
            raise Refusal(f"error: {path}: no such file or directory, and no path matches it")
    return args


def report_dir(out: str | None, run_dirs: list[Path]) -> Path:
    """The folder the report goes to: --out, else the deepest folder holding every run (a multirun dir), or the
    current dir for runs read from W&B. A run dir belongs to its run and a filesystem root to everyone: the report
    goes into neither, nor into a folder inside a run dir, and a file in its way is refused."""
    folder = Path(out) if out else common_folder(run_dirs)
    where = f"--out {out}" if out else f"the report's default folder {folder} (the runs' common folder)"
    resolved = folder.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise Refusal(f"error: {where} is a file; give a folder for report.md, report.html and the figures")
    if resolved == Path(resolved.anchor) or os.path.ismount(resolved):
        raise Refusal(f"error: {where} is a filesystem root ({resolved}); give --out <folder> for the report")
    compared = set(run_dirs)
    run_dir = next((d for d in (resolved, *resolved.parents) if d in compared or os.path.lexists(d / "results.json")),
                   None)
    if run_dir is not None:
        what = "is a run dir" if run_dir == resolved else f"is inside run dir {run_dir}"
        raise Refusal(f"error: {where} {what}, and a run dir belongs to its run; give --out <a folder outside every "
                      "run dir> for the report")
    return fresh_report_dir(folder)


REPORT_FILES = ("report.md", "report.html", "report.csv", "report.tex")


def fresh_report_dir(folder: Path) -> Path:
    """`folder`, or, when an earlier compare.py left a report there, its first report-<n> subfolder without one: a
    second report never overwrites the first (a study's report is evidence), and one line says where it went."""
    candidate, n = folder, 1
    while any(os.path.lexists(candidate / name) for name in REPORT_FILES):
        n += 1
        candidate = folder / f"report-{n}"
    if candidate != folder:
        print(f"note: {folder} already holds a report; this one goes to {candidate}", file=sys.stderr, flush=True)
    return candidate


def common_folder(run_dirs: list[Path]) -> Path:
    if not run_dirs:
        return Path(".")
    return Path(os.path.commonpath([p.parent for p in run_dirs])) if len(run_dirs) > 1 else run_dirs[0]
