"""The report's W&B side: runs read from the API (--wandb) and the report logged to a project (--log-wandb), each
waiting at most --wandb-timeout seconds for the server and answering a failure in one line. W&B is imported only
here and only when asked for: the report from run dirs never waits for it."""
from __future__ import annotations

from pathlib import Path

from genlab.analysis.compare_args import Refusal
from genlab.analysis.run_files import one_line
from genlab.analysis.runs import Run, load_wandb_runs


def read_wandb_runs(entity_project: str, group: str | None, timeout: float) -> list[Run]:
    """The runs of a W&B project (and group); no key, no network or no such project is one line."""
    import wandb

    try:
        return load_wandb_runs(entity_project, group, api=wandb.Api(timeout=timeout))
    except Exception as err:  # W&B's own errors, and those of the HTTP client under it
        raise Refusal(f"error: --wandb {entity_project}: {failure(err, timeout)}") from None


def failure(err: Exception, timeout: float) -> str:
    """What went wrong with W&B, in one line; for a failure to reach the server, how long it was waited for."""
    import wandb

    waited = f" (waited at most {timeout:g} s: --wandb-timeout)" if isinstance(err, wandb.errors.CommError) else ""
    return one_line(err) + waited


def check_project(project: str) -> None:
    """A --log-wandb project W&B would refuse at the end, refused before the report is made."""
    import wandb

    try:
        wandb.Settings(project=project)
    except Exception as err:  # W&B's UsageError, or the settings' validation error
        raise Refusal(f"error: --log-wandb {project}: {one_line(err)}") from None


def log_report(project: str, header: list[str], rows: list[list[str]], files: list[Path], out: Path,
               timeout: float) -> str | None:
    """The comparison table as a W&B table and the report files as an artifact, in a W&B run kept under `out`.

    Without a key or a network, W&B logs offline there after at most `timeout` s, as training runs do. Returns the
    line to show when the run is offline (with the `wandb sync` command) or W&B failed: like training, the report
    never fails for the dashboard.
    """
    import wandb

    try:
        run, why = start_run(project, out, timeout)
        offline, sync_dir = run.offline, Path(run.dir).parent
        with run:
            run.log({"comparison": wandb.Table(columns=header, data=rows)})
            artifact = wandb.Artifact("comparison-report", type="report")
            for path in files:
                artifact.add_file(str(path))
            run.log_artifact(artifact)
    except Exception as err:
        return f"warning: --log-wandb {project}: W&B failed ({one_line(err)}); the report is in {out}, not on W&B"
    return f"warning: --log-wandb {project}: {why}; logged offline, upload later with: wandb sync {sync_dir}" \
        if offline else None


def start_run(project: str, out: Path, timeout: float):
    """A W&B run kept under `out`, online if W&B can start so within `timeout` s, else offline; and why it would be
    offline."""
    import wandb

    # Silent from the start: W&B's login announces the key it found before wandb.init's own settings apply, and
    # compare.py says in one line what became of the run.
    wandb.setup(settings=wandb.Settings(silent=True))

    def start(**mode: str):
        return wandb.init(project=project, job_type="compare", dir=str(out), **mode,
                          settings=wandb.Settings(init_timeout=timeout, silent=True))

    try:
        return start(), "W&B is set to offline (WANDB_MODE or `wandb offline`)"
    except Exception as err:  # no key, no network: W&B's errors, and those of the HTTP client under it
        return start(mode="offline"), f"W&B could not start online: {failure(err, timeout)}"
