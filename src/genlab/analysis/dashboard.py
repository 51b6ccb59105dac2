"""`compare.py <dirs> --dashboard ENTITY/PROJECT`: the study as a W&B workspace, built with the wandb-workspaces
package's own classes. Its runs are filtered to the study's W&B groups (one per sweep) and grouped by the keys the
report groups by; its panels show the names genlab logs. Saved to W&B when a key and the network are there; otherwise
the workspace's spec is written as JSON beside the report, and `python -m genlab.analysis.dashboard <file>` saves it
later. The package is imported only here and only with --dashboard: compare.py without it costs nothing."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from genlab.analysis.compare_args import OneLineParser, Refusal
from genlab.analysis.run_files import one_line
from genlab.analysis.runs import Run
from genlab.records import write_atomic

INSTALL = "pip install -e '.[dashboard]' (or make install)"
SPEC_FILE = "dashboard.json"
# What genlab logs (training/module.py, pipeline.py, training/loggers.py), and the x axis Lightning's WandbLogger
# defines for every metric.
STEP = "trainer/global_step"
CURVES = ("val/acc", "val/loss")
PER_CLASS_TABLE = "per_class_acc"  # ResilientWandbLogger.log_class_results
CONFUSION_PLOT = "confusion_matrix_plot_table"  # the table behind wandb.plot.confusion_matrix's custom chart
CONFUSION_CHART = "wandb/confusion_matrix/v1"  # that chart's Vega spec, with its fields
CONFUSION_FIELDS = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
CONFUSION_IMAGE = "confusion_matrix"  # the PNG the pipeline draws (analysis.confusion_matrix)


@dataclass(frozen=True)
class Study:
    """What the workspace shows: which runs (W&B groups, or run ids where a run has no group), grouped by which config
    keys, and the metrics of the weights the report compares."""

    entity: str
    project: str
    groups: tuple[str, ...]
    run_ids: tuple[str, ...]
    by: tuple[str, ...]
    metric: str

    @property
    def prefix(self) -> str:
        """final/ when the study compares the last epoch's weights, else '' (the best checkpoint's)."""
        return "final/" if self.metric.startswith("final/") else ""

    @property
    def bars(self) -> list[str]:
        """The metric that ranks groups, then the gap and the calibration error of the same weights."""
        measures = [self.metric, f"{self.prefix}gap/acc", f"{self.prefix}test/ece"]
        return list(dict.fromkeys(measures))


def require_package() -> None:
    """wandb-workspaces, an optional extra: its absence is one line saying how to install it."""
    try:
        import wandb_workspaces.workspaces  # noqa: F401
    except ImportError as err:
        raise Refusal(f"error: --dashboard needs the wandb-workspaces package ({one_line(err)}); install it with: "
                      f"{INSTALL}") from None


def wandb_group(run: Run) -> str | None:
    """The W&B group a local run logged under: logger.wandb.group when set, else the one `wandb_identity` gave a
    multirun job, `<experiment or task>/<sweep dir>`, from the job's saved Hydra config; None for a single run."""
    if run.config.get("logger.wandb.group"):
        return str(run.config["logger.wandb.group"])
    saved = Path(run.source) / ".hydra" / "hydra.yaml"
    if not saved.is_file():
        return None
    hydra = OmegaConf.load(saved).hydra
    if str(hydra.mode) != "MULTIRUN":
        return None
    study = hydra.runtime.choices.get("experiment") or run.config.get("task_name")
    return f"{study}/{Path(hydra.runtime.output_dir).parent.name}"


def plan_study(target: str, runs: list[Run], by: list[str], metric: str, wandb_group_asked: str | None) -> Study:
    """The study's runs on W&B: their groups when every one has a group (a sweep's jobs), else their run ids; runs
    read with --wandb --group are that group. Refused in one line when no run logged to W&B."""
    logged = [run for run in runs if run.wandb is not None]
    if not logged:
        raise Refusal(f"error: --dashboard {target}: none of the {len(runs)} runs logged to W&B (logger=default or "
                      "logger=wandb logs them), so a workspace would show nothing; leave out --dashboard")
    entity, _, project = target.partition("/")
    projects = sorted({str(run.wandb.project) for run in logged if run.wandb.project})
    if projects and project not in projects:
        raise Refusal(f"error: --dashboard {target}: the runs logged to W&B project {', '.join(projects)} "
                      f"(logger.wandb.project), and a workspace in {project} would show none of them; give --dashboard "
                      f"{entity}/{projects[0]}")
    if wandb_group_asked:
        groups = [wandb_group_asked]
    else:
        found = [None if run.source.startswith("wandb:") else wandb_group(run) for run in logged]
        groups = sorted(set(found)) if None not in found else []
    ids = () if groups else tuple(sorted(run.wandb.run_id for run in logged))
    return Study(entity, project, tuple(groups), ids, tuple(by), metric)


def build_workspace(study: Study):
    """The workspace: finished runs of the study, grouped by the report's keys (by their W&B group when the report
    makes one group), learning curves and test measures as mean ± std per group, the per-class table and the
    confusion matrices."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    spread = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}
    curves = [wr.LinePlot(title=key, x=STEP, y=[key], **spread) for key in CURVES]
    bars = [wr.BarPlot(title=key, metrics=[key], **spread) for key in study.bars]
    per_class = [wr.WeavePanelSummaryTable(table_name=PER_CLASS_TABLE),
                 wr.CustomChart(query={"summaryTable": {"tableKey": CONFUSION_PLOT}}, chart_name=CONFUSION_CHART,
                                chart_fields=CONFUSION_FIELDS),
                 wr.MediaBrowser(title="confusion matrix (PNG)", media_keys=[CONFUSION_IMAGE])]
    # W&B keeps each of genlab's flat dotted config keys ("data.batch_size") as one key with its value below it
    groupby = [expr.Config(f"{key}.value") for key in study.by] or [expr.Metric("Group")]
    runs = expr.Metric("Group").isin(list(study.groups)) if study.groups else expr.Metric("ID").isin(list(study.run_ids))
    # finished: the runs whose numbers the report's statistics use (a failed run ends failed or crashed on W&B)
    filters = [runs, expr.Metric("State") == "finished"]
    columns = [f"summary:{key}" for key in study.bars]
    more = f" and {len(study.groups) - 1} more" if len(study.groups) > 1 else ""
    where = f"{study.groups[0]}{more}" if study.groups else f"{len(study.run_ids)} runs"
    return ws.Workspace(
        entity=study.entity, project=study.project, name=f"genlab study: {where}",
        sections=[ws.Section(name="Learning curves (mean ± std per group)", panels=curves, is_open=True),
                  ws.Section(name="Test (mean ± std per group)", panels=bars, is_open=True),
                  ws.Section(name="Per class", panels=per_class, is_open=True)],
        runset_settings=ws.RunsetSettings(filters=filters, groupby=groupby, pinned_columns=columns))


def spec_json(workspace) -> str:
    """The workspace as the W&B view it saves, in the package's own serialisation (pydantic, by W&B's field names)."""
    return workspace._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=1)


def load_spec(path: Path):
    """A workspace back from `spec_json`'s file, with the package's own classes."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.workspaces import internal

    return ws.Workspace._from_model(internal.View.model_validate_json(path.read_text()))


NO_KEY = "no W&B key: set WANDB_API_KEY or run `wandb login`"


def publish(workspace, out: Path, target: str) -> str:
    """Save the workspace to W&B, or, without a key or a network (or with WANDB_MODE=offline), write its spec into
    `out`; the one line to show either way."""
    from genlab.training.loggers import wandb_credentials_available

    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun"):
        why = f"WANDB_MODE={os.environ['WANDB_MODE']}"
    elif not wandb_credentials_available():  # asked without a key, W&B's client keeps online settings for the process
        why = NO_KEY
    else:
        try:
            saved = workspace.save()
            return f"dashboard: {saved.url}"
        except Exception as err:  # no key (W&B's UsageError), no network, a project that refuses the view
            why = one_line(err)
    path = out / SPEC_FILE
    write_atomic(path, spec_json(workspace).encode())
    return (f"warning: --dashboard {target}: not saved to W&B ({why}); its spec is in {path}, save it when online "
            f"with: python -m genlab.analysis.dashboard {path}")


def main(argv: list[str] | None = None) -> str:
    """`python -m genlab.analysis.dashboard <dashboard.json>`: save a workspace compare.py could not save."""
    parser = OneLineParser(prog="python -m genlab.analysis.dashboard", description=main.__doc__)
    parser.add_argument("spec", type=Path, help=f"the {SPEC_FILE} compare.py --dashboard wrote")
    args = parser.parse_args(argv)
    require_package()
    try:
        workspace = load_spec(args.spec)
    except (OSError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        raise Refusal(f"error: {args.spec}: {one_line(err, 160)}; expected the {SPEC_FILE} compare.py --dashboard "
                      "wrote") from None
    from genlab.training.loggers import wandb_credentials_available

    if not wandb_credentials_available():
        raise Refusal(f"error: {args.spec}: not saved to W&B ({NO_KEY}); with WANDB_API_KEY set and the network "
                      "there, run this again")
    try:
        return f"dashboard: {workspace.save().url}"
    except Exception as err:
        raise Refusal(f"error: {args.spec}: not saved to W&B ({one_line(err)}); with WANDB_API_KEY set and the "
                      "network there, run this again") from None


if __name__ == "__main__":
    import sys

    try:
        print(main(), flush=True)
    except Refusal as refusal:
        print(refusal, file=sys.stderr, flush=True)
        raise
