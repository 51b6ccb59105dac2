"""What the entry points share: user mistakes end in one clear line, not a traceback, and leave no trace in run dirs."""
from __future__ import annotations

import atexit
import functools
import gc
import os
import re
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from genlab.errors import ConfigError, DataError, RunFailed
from genlab.locks import a_secondary_rank
from genlab.resume import (_given, check_named_run_dir, choose_run_dir, mark_refused_job_failed, protect_run_dir,
                           undo_refused_start)
from genlab.training.ddp import remember_entry_script


# Set by one_line_hydra_errors, so that Hydra raises its own errors (which genlab reads) instead of printing them; a
# process started by this one (a DDP worker, a launcher's job) inherits both variables and knows the user did not ask.
GENLAB_SET_FULL_ERROR = "GENLAB_SET_HYDRA_FULL_ERROR"


def tracebacks_wanted() -> bool:
    """The user set HYDRA_FULL_ERROR=1: errors come as tracebacks, not one line."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and os.environ.get(GENLAB_SET_FULL_ERROR) != "1"


def refuse(err: ConfigError) -> None:
    """Stop before Hydra starts the job: one `error: …` line and exit code 2 (`HYDRA_FULL_ERROR=1`: the traceback).

    Hydra reports an exception of its own set-up (a resolver's, the run dir's) as a traceback with exit code 1; a
    SystemExit goes through it as is.
    """
    if tracebacks_wanted():
        raise err
    print(f"error: {err}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def resolve_run_dir(log_dir: str, task_name: str, resume, ckpt_path, resume_dir, stamp: str) -> str:
    """The `genlab_run_dir` resolver: `choose_run_dir`, remembered as it is before Hydra writes into it (.hydra/, the
    log), so a refused start leaves it so. Hydra resolves it once per job (the resolver is cached on the job's config)."""
    try:
        run_dir, created = choose_run_dir(log_dir, task_name, resume, ckpt_path, resume_dir, stamp)
        key = "resume_dir" if _given(resume_dir) else "ckpt_path" if ckpt_path == "last" else "resume"
        protect_run_dir(run_dir, created=True if created else None, key=key)
    except ConfigError as err:
        refuse(err)
    return str(run_dir)


def resolve_job_subdir(sweep_dir: str, job_num: Any) -> str:
    """The `genlab_job_subdir` resolver (hydra.sweep.subdir): the job's number, as Hydra's default; on the way, the
    job's dir (<sweep dir>/<number>) is locked and remembered as it is, before Hydra writes into it, so a job that a
    continued sweep skips (or a refused one) leaves it as it was. Resolved once per job, in the process that runs it."""
    job_dir = Path(sweep_dir) / str(job_num)
    try:
        protect_run_dir(job_dir, created=None, key="hydra.sweep.dir")
    except ConfigError as err:
        refuse(err)
    return str(job_num)


# conf/hydra/default.yaml names the run dir with this resolver, so a resumed run writes into the run it continues.
OmegaConf.register_new_resolver("genlab_run_dir", resolve_run_dir, replace=True, use_cache=True)
OmegaConf.register_new_resolver("genlab_job_subdir", resolve_job_subdir, replace=True, use_cache=True)
remember_entry_script()  # imported by the entry points at start-up, in the process the user started
# Registered this early, so it runs after every exit handler registered later (torch's, Lightning's, W&B's): the
# interpreter's teardown then skips collecting the million objects those libraries made, 2.2 s of every run's exit
# here (0.3 s frozen), which a sweep's workers each pay too. Nothing a finished process holds needs collecting.
atexit.register(gc.freeze)

# Options after which Hydra starts no job here (or starts sweep jobs in dirs of their own).
NO_SINGLE_JOB = ("-m", "--multirun", "-c", "--cfg", "-h", "--help", "--hydra-help", "-i", "--info", "-sc",
                 "--shell-completion", "-p", "--package")


def run_dir_named_on_the_command_line(argv: list[str]) -> str | None:
    """The run dir of a single run given as `hydra.run.dir=<dir>` (the resume command, DDP workers, a user), as typed,
    if any."""
    if any(arg.split("=", 1)[0] in NO_SINGLE_JOB for arg in argv):
        return None
    for arg in argv:
        found = re.fullmatch(r"\+{0,2}hydra\.run\.dir=(.*)", arg)
        if found:
            value = found.group(1)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return None if "${" in value else value
    return None


def resumes_its_run(argv: list[str]) -> bool:
    """Whether the command continues the run in its run dir (`ckpt_path=last`, `resume=true`, `resume_dir=`)."""
    settings = dict(arg.lstrip("+").split("=", 1) for arg in argv if "=" in arg and not arg.startswith("-"))
    return (settings.get("ckpt_path") == "last" or settings.get("resume", "").lower() == "true"
            or _given(settings.get("resume_dir")))


def protect_the_run_dir_on_the_command_line(argv: list[str]) -> None:
    """A run dir named on the command line is not chosen by the resolver, so it is checked, locked and remembered here,
    at the entry point's start, before Hydra creates it or writes into it: a new run needs a dir of its own, a resume
    the run it continues, and no other live process may be writing it."""
    value = run_dir_named_on_the_command_line(argv)
    if value is not None:
        try:
            run_dir = Path(value) if a_secondary_rank() else check_named_run_dir(value, resumes_its_run(argv))
            protect_run_dir(run_dir.expanduser())
        except ConfigError as err:
            refuse(err)


# group=option[,option…] as typed; sweeps' glob(…)/choice(…)/range(…) and interpolations are Hydra's to read.
GROUP_CHOICE = re.compile(r"\+{0,2}(?P<group>[A-Za-z_]\w*(?:/\w+)?)=(?P<options>[\w.-]+(?:,[\w.-]+)*)")


# Options that no longer exist, with what replaces them.
RETIRED_OPTIONS = {("hydra/launcher", "farm"): "parallel: the seed farm is retired; hydra/launcher=parallel runs a "
                                              "sweep's jobs side by side (README, Experiments and sweeps)"}


def hydra_group_options(group: str, conf_dir: Path) -> list[str]:
    """The options of one of Hydra's own groups (hydra/launcher, hydra/sweeper): the plugins' and genlab's."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # registers the installed plugins' configs, as Hydra does when it starts
    node = ConfigStore.instance().repo
    for part in group.split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    stored = {name.removesuffix(".yaml") for name, value in node.items() if not isinstance(value, dict)}
    return sorted(stored | {path.stem for path in (conf_dir / group).glob("*.yaml")})


def unknown_option(argv: list[str], conf_dir: Path) -> ConfigError | None:
    """The first `group=option` whose option is not a file of the group in `conf_dir` (or, for Hydra's launcher and
    sweeper groups, of the installed plugins), as a ConfigError listing the options. Not checked where another config
    dir may add options (--config-dir, --config-path)."""
    if any(arg.split("=", 1)[0] in ("-cd", "--config-dir", "-cp", "--config-path") for arg in argv):
        return None
    for arg in argv:
        found = GROUP_CHOICE.fullmatch(arg)
        if found is None:
            continue
        group = found.group("group")
        if group in ("hydra/launcher", "hydra/sweeper"):
            options = hydra_group_options(group, conf_dir)
        elif (conf_dir / group).is_dir():
            options = sorted(path.stem for path in (conf_dir / group).glob("*.yaml"))
        else:
            continue
        for option in found.group("options").split(","):
            if (group, option) in RETIRED_OPTIONS:
                return ConfigError(group, option, RETIRED_OPTIONS[group, option])
            if option not in options and option != "null":
                return ConfigError(group, option, f"one of {options}")
    return None


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def user_errors_exit_cleanly(main):
    """User mistakes and failed runs end in one `error: …` line on stderr, not a traceback.

    Bad config or data: exit code 2, and the run dir is left as it was before the start (a new one is removed). A failed
    run (results.json says why): exit code 1, except inside a multirun, where the job returns NaN so the sweep goes on
    and the report counts it as failed. `HYDRA_FULL_ERROR=1` re-raises for the full traceback.
    """
    if main.__module__ == "__main__":  # the entry script itself, as `python train.py …` started it
        # An unknown option is one line before Hydra answers with its own several (model=nope, model=_common).
        wrong = unknown_option(sys.argv[1:], Path(sys.modules["__main__"].__file__).resolve().parent / "conf")
        if wrong is not None:
            refuse(wrong)
        protect_the_run_dir_on_the_command_line(sys.argv[1:])

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ConfigError, DataError, RunFailed) as err:
            if in_multirun() and not isinstance(err, RunFailed):
                mark_refused_job_failed(err)  # its record says why; the sweep goes on with its other jobs
            else:
                undo_refused_start()
            if tracebacks_wanted():
                raise
            print(f"error: {err}", file=sys.stderr, flush=True)
            if in_multirun():
                return float("nan")
            raise SystemExit(1 if isinstance(err, RunFailed) else 2) from None
        except BaseException:
            undo_refused_start()
            raise

    return wrapper


def one_line_hydra_errors(hydra_main):
    """Hydra's own errors (an unknown key, a `+` on a key that exists, a malformed override, a value list without
    -m, a config it cannot find or a target it will not build) as one `error: …` line with the fix, exit code 2,
    where Hydra prints several lines and exits 1. Wraps the @hydra.main function (the entry points' `main`)."""

    @functools.wraps(hydra_main)
    def wrapper(*args, **kwargs):
        from hydra.errors import HydraException

        if tracebacks_wanted():
            return hydra_main(*args, **kwargs)
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # Hydra raises, genlab reads
        os.environ.setdefault(GENLAB_SET_FULL_ERROR, "1")
        try:
            return hydra_main(*args, **kwargs)
        except HydraException as err:
            undo_refused_start()
            print(f"error: {hydra_error_line(err, sys.argv[1:], conf_dir_of_entry())}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper


def conf_dir_of_entry() -> Path:
    return Path(sys.modules["__main__"].__file__).resolve().parent / "conf"


def hydra_error_line(err: BaseException, argv: list[str], conf_dir: Path) -> str:
    """What a Hydra error means for the command typed, in one line naming the override and the fix."""
    text = str(err)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    unknown = re.search(r"Could not override '([^']+)'|Key '([^']+)' is not in struct", text)
    if unknown:
        key = unknown.group(1) or unknown.group(2)
        group, _, knob = key.partition(".")
        if group == "regularization":
            from genlab.config import STRATEGY_KEYS  # (imports Lightning: only for this case)
        if group == "regularization" and knob in STRATEGY_KEYS:
            return (f"{key}: no such key: set {STRATEGY_KEYS[knob]}, which the presets set and an explicit value "
                    "overrides")
        close = close_keys(key, argv, conf_dir)
        hint = f"did you mean {close[0]}?" if close else f"to add a new key, write +{key}=…"
        return f"{key}: no such key; {hint}"
    present = re.search(r"already at '([^']+)'", text)
    if present:
        key = present.group(1)
        return f"+{key}: drop the +: {key} is already a key ({key}=<value> sets it)"
    ambiguous = re.search(r"Ambiguous value for argument '([^']+)'", text)
    if ambiguous:
        key, _, value = ambiguous.group(1).partition("=")
        return (f"{key}: got '{value}', expected one value: add -m (--multirun) to sweep over them, or write "
                f"{key}=[{value}] for a list")
    if type(err).__name__ == "OverrideParseException":
        bad = next((arg for arg in argv if "=" in arg and not arg.startswith("-") and not parses(arg)), "an override")
        return f"{bad}: not a Hydra override ({first}); see https://hydra.cc/docs/advanced/override_grammar/basic/"
    return first


def parses(override: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        OverridesParser.create().parse_overrides([override])
    except OverrideParseException:
        return False
    return True


def close_keys(key: str, argv: list[str], conf_dir: Path) -> list[str]:
    """The config's keys closest to a misspelt one, in the config the command's group choices compose."""
    import difflib

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    choices = [arg.split(",")[0] for arg in argv if GROUP_CHOICE.fullmatch(arg) and "/" not in arg.split("=")[0]]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            config = OmegaConf.to_container(compose("train" if "train" in sys.argv[0] else "eval", overrides=choices))
    except Exception:  # whatever else is wrong with the command: no suggestion rather than a second error
        return []
    keys = [k for k in dotted_keys(config) if k.count(".") == key.count(".")]  # a key's siblings, not its parents
    return difflib.get_close_matches(key, keys, n=1, cutoff=0.75)


def dotted_keys(tree: Any, prefix: str = "") -> Any:
    for name, value in (tree.items() if isinstance(tree, dict) else []):
        yield f"{prefix}{name}"
        yield from dotted_keys(value, f"{prefix}{name}.")
