"""`python compare.py <run dirs | multirun dirs | globs>`: which strategy generalizes better, and is the difference real?"""
from __future__ import annotations

import argparse
import base64
import html
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.analysis.runs import Run, find_run_dirs, load_local_run, load_wandb_runs
from genlab.analysis.stats import Summary, summarize, welch_t_test

# Keys that say where or how verbosely a run went, not what it did: never a reason to tell runs apart.
BOOKKEEPING = ("seed", "task_name", "tags", "ckpt_path", "optimized_metric", "paths.", "hydra.", "logger.", "callbacks.",
               "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
               "trainer.log_every_n_steps", "data.data_dir", "data.download", "data.num_workers", "data.pin_memory")
COLUMNS = {  # metric -> column title
    "test/acc": "test acc",
    "train_eval/acc": "train acc (eval)",
    "gap/acc": "gap",
    "test/ece": "ECE",
    "robust/acc_mean": "robust acc",
}


@dataclass
class Group:
    """Runs that share the values of the compared keys."""

    values: tuple[tuple[str, Any], ...]
    runs: list[Run]
    failed: int
    stats: dict[str, Summary]
    delta: float = math.nan
    p_value: float = math.nan
    best: bool = False
    baseline: bool = False

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self.values) or "all runs"


def _show(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, tuple) else str(value)


def varying_keys(runs: list[Run]) -> list[str]:
    """The fewest config keys that tell the compared runs apart, bookkeeping excluded.

    A key whose value is fully determined by keys already kept adds nothing (regularization.name=dropout already
    says model.dropout=0.5), so it is left out; `*.name` keys are considered first, as they read best.
    """
    keys = sorted({k for r in runs for k in r.config if not k.startswith(BOOKKEEPING)})
    differing = [k for k in keys if len({_show(r.config.get(k)) for r in runs}) > 1]
    kept: list[str] = []
    for key in sorted(differing, key=lambda k: (not k.endswith(".name"), k)):
        seen: dict[tuple, str] = {}
        for run in runs:
            signature = tuple(_show(run.config.get(k)) for k in kept)
            if seen.setdefault(signature, _show(run.config.get(key))) != _show(run.config.get(key)):
                kept.append(key)
                break
    return kept


def group_runs(runs: list[Run], by: list[str], metric: str) -> list[Group]:
    buckets: dict[tuple, list[Run]] = {}
    for run in runs:
        buckets.setdefault(tuple((k, run.config.get(k)) for k in by), []).append(run)
    groups = []
    for values, members in buckets.items():
        ok = [r for r in members if r.status == "completed" and metric in r.metrics]
        stats = {m: summarize([r.metrics[m] for r in ok if m in r.metrics]) for m in COLUMNS
                 if any(m in r.metrics for r in ok)}
        groups.append(Group(values, ok, len(members) - len(ok), stats))
    return groups


def rank_and_test(groups: list[Group], metric: str, baseline: dict[str, str] | None) -> list[Group]:
    """Sort by the metric's mean (best first), mark the best, and Welch-test each group against the baseline.

    The baseline is the group matching `baseline` (key=value pairs) or, by default, the best group, so every
    p-value answers "is the winner's lead over this group real?".
    """
    scored = sorted((g for g in groups if metric in g.stats), key=lambda g: -g.stats[metric].mean)
    scored += [g for g in groups if metric not in g.stats]
    if not scored or metric not in scored[0].stats:
        return scored
    scored[0].best = True
    base = scored[0]
    if baseline:
        matches = [g for g in scored if all(_show(dict(g.values).get(k)) == v for k, v in baseline.items())]
        if len(matches) != 1:
            raise SystemExit(f"error: --baseline {baseline} matches {len(matches)} groups; choose from: "
                             + "; ".join(g.label for g in scored))
        base = matches[0]
    base.baseline = True
    base_values = [r.metrics[metric] for r in base.runs]
    for group in scored:
        if group is base or metric not in group.stats:
            continue
        group.delta = group.stats[metric].mean - base.stats[metric].mean
        group.p_value = welch_t_test([r.metrics[metric] for r in group.runs], base_values)[1]
    return scored


def table_rows(groups: list[Group], metric: str, with_ci: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows shared by the terminal (without CIs, for width), Markdown and HTML renderings."""
    present = [m for m in COLUMNS if any(m in g.stats for g in groups)]
    header = ["", "group", "n", "failed"] + [COLUMNS[m] for m in present] + [f"Δ {COLUMNS.get(metric, metric)}", "p (Welch)"]
    rows = []
    for g in groups:
        cells = ["★" if g.best else ("base" if g.baseline else ""), g.label, str(len(g.runs)), str(g.failed)]
        for m in present:
            s = g.stats.get(m)
            ci = f" [{s.ci_low:.4f}, {s.ci_high:.4f}]" if s is not None and with_ci else ""
            cells.append("—" if s is None else f"{s.mean:.4f} ± {s.std:.4f}{ci}")
        cells.append("—" if math.isnan(g.delta) else f"{g.delta:+.4f}")
        cells.append("—" if math.isnan(g.p_value) else (f"{g.p_value:.3g}" + (" *" if g.p_value < 0.05 else "")))
        rows.append(cells)
    return header, rows


def verdict(groups: list[Group], metric: str) -> str:
    """One sentence: who won, and whether the lead over the runner-up is significant at 5 %."""
    scored = [g for g in groups if metric in g.stats]
    if not scored:
        return f"No completed run has {metric}."
    best = scored[0]
    if len(scored) == 1:
        return f"Only one group: {best.label} ({metric} {best.stats[metric].mean:.4f}, n={best.stats[metric].n})."
    runner = scored[1]
    _, p = welch_t_test([r.metrics[metric] for r in best.runs], [r.metrics[metric] for r in runner.runs])
    lead = best.stats[metric].mean - runner.stats[metric].mean
    if math.isnan(p):
        real = "not testable (fewer than 2 seeds per group, or no variance): run more seeds"
    elif p < 0.05:
        real = f"significant (Welch p = {p:.3g} < 0.05)"
    else:
        real = f"not significant (Welch p = {p:.3g} ≥ 0.05): the groups are indistinguishable with these seeds"
    return f"Best: {best.label} with {metric} {best.stats[metric].mean:.4f}; its lead of {lead:+.4f} over {runner.label} is {real}."


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend: reports are written on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_learning_curves(groups: list[Group], path: Path) -> Path | None:
    """train_eval vs val accuracy per epoch for each group: mean over seeds with a ±1 std band."""
    plt = pyplot()
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = False
    for i, g in enumerate(groups):
        color = f"C{i % 10}"
        for key, style in (("val/acc", "-"), ("train_eval/acc", "--")):
            series = [[row[key] for row in r.curves if key in row] for r in g.runs]
            series = [s for s in series if s]
            if not series:
                continue
            length = min(map(len, series))
            values = np.array([s[:length] for s in series])
            epochs = np.arange(length)
            mean, std = values.mean(0), values.std(0)
            ax.plot(epochs, mean, style, color=color, label=f"{g.label} ({key.split('/')[0]})")
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="epoch", ylabel="accuracy", title="Learning curves: val (solid) vs train in eval mode (dashed)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_bars(groups: list[Group], metric: str, title: str, path: Path) -> Path | None:
    """One bar per group: mean with its 95 % confidence interval."""
    plt = pyplot()

    shown = [g for g in groups if metric in g.stats]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(shown)), 4.5))
    means = [g.stats[metric].mean for g in shown]
    errors = [[m - g.stats[metric].ci_low for m, g in zip(means, shown)], [g.stats[metric].ci_high - m for m, g in zip(means, shown)]]
    ax.bar(range(len(shown)), means, yerr=errors, capsize=4, color=["C1" if g.best else "C0" for g in shown])
    ax.set_xticks(range(len(shown)), [g.label for g in shown], rotation=30, ha="right", fontsize=7)
    ax.set(ylabel=metric, title=title)
    return save_figure(fig, path)


def plot_trend(groups: list[Group], key: str, metric: str, path: Path) -> Path | None:
    """The metric against one numeric key (train fraction, noise, depth…), one line per value of the other keys."""
    plt = pyplot()

    lines: dict[str, list[tuple[float, Summary]]] = {}
    for g in groups:
        values = dict(g.values)
        if metric not in g.stats or not isinstance(values.get(key), (int, float)) or isinstance(values.get(key), bool):
            return None
        rest = ", ".join(f"{k}={_show(v)}" for k, v in g.values if k != key) or metric
        lines.setdefault(rest, []).append((float(values[key]), g.stats[metric]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in lines.items():
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        ax.errorbar(xs, [p[1].mean for p in points], yerr=[[p[1].mean - p[1].ci_low for p in points],
                    [p[1].ci_high - p[1].mean for p in points]], marker="o", capsize=3, label=name)
    ax.set(xlabel=key, ylabel=metric, title=f"{metric} vs {key} (95 % CI)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def first_trend(groups: list[Group], keys: list[str], metric: str, path: Path) -> Path | None:
    """The trend plot against the first numeric grouping key (train fraction, noise, depth…), if there is one."""
    return next((p for key in keys if (p := plot_trend(groups, key, metric, path)) is not None), None)


def to_html(title: str, sentence: str, header: list[str], rows: list[list[str]], images: list[Path]) -> str:
    """A self-contained page: the table and the plots embedded as data URIs."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    figures = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in images)
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(sentence)}</p><table><tr>{head}</tr>{body}</table>"
            f"{figures}</body></html>")


def print_table(header: list[str], rows: list[list[str]], sentence: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*header, title="genlab comparison", title_justify="left")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped or logged: no terminal width to respect, so do not squeeze the table
    console.print(table)
    console.print(sentence, soft_wrap=True)


def log_to_wandb(project: str, header: list[str], rows: list[list[str]], files: list[Path]) -> None:
    """The comparison table as a W&B table, and the report files as an artifact."""
    import wandb

    with wandb.init(project=project, job_type="compare") as run:
        run.log({"comparison": wandb.Table(columns=header, data=rows)})
        artifact = wandb.Artifact("comparison-report", type="report")
        for path in files:
            artifact.add_file(str(path))
        run.log_artifact(artifact)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="compare.py", description=__doc__)
    parser.add_argument("paths", nargs="*", help="run dirs, multirun dirs or globs (quote globs)")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from the W&B API instead of disk")
    parser.add_argument("--group", help="with --wandb: only runs of this W&B group")
    parser.add_argument("--by", help="comma-separated config keys to group by (default: every key that differs)")
    parser.add_argument("--baseline", help="key=value[,key=value] picking the baseline group (default: the best group)")
    parser.add_argument("--metric", default="test/acc", help="the metric that ranks groups (default: test/acc)")
    parser.add_argument("--out", help="where report.md, report.html and the plots go (default: the common parent of the runs)")
    parser.add_argument("--log-wandb", metavar="PROJECT", help="also log the table and report to this W&B project")
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb:
        parser.error("give run dirs / multirun dirs / globs, or --wandb ENTITY/PROJECT")
    return args


def load_runs(args: argparse.Namespace) -> list[Run]:
    if args.wandb:
        return load_wandb_runs(args.wandb, args.group)
    dirs = find_run_dirs(args.paths)
    if not dirs:
        raise SystemExit(f"error: no run dirs (with results.json) under {' '.join(args.paths)}")
    return [load_local_run(d) for d in dirs]


def default_out_dir(runs: list[Run]) -> Path:
    """The deepest folder holding every run (a multirun dir), or the current dir for runs read from W&B."""
    local = [Path(r.source) for r in runs if not r.source.startswith("wandb:")]
    if not local:
        return Path(".")
    return Path(os.path.commonpath([p.parent for p in local])) if len(local) > 1 else local[0]


def main(argv: list[str] | None = None) -> Path:
    """Build the report; returns the output dir."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    runs = load_runs(args)
    by = [k.strip() for k in args.by.split(",")] if args.by else varying_keys(runs)
    baseline = dict(pair.split("=", 1) for pair in args.baseline.split(",")) if args.baseline else None
    groups = rank_and_test(group_runs(runs, by, args.metric), args.metric, baseline)
    header, rows = table_rows(groups, args.metric)
    sentence = verdict(groups, args.metric)
    out = Path(args.out or default_out_dir(runs))
    out.mkdir(parents=True, exist_ok=True)
    images = [p for p in (
        plot_learning_curves(groups, out / "learning_curves.png"),
        plot_bars(groups, "gap/acc", "Generalization gap (train_eval acc − test acc) per group, 95 % CI", out / "gap.png"),
        plot_bars(groups, args.metric, f"{args.metric} per group, 95 % CI", out / "metric.png"),
        first_trend(groups, by, args.metric, out / "trend.png"),
    ) if p is not None]
    title = f"genlab comparison: {len(runs)} runs, grouped by {', '.join(by) or 'nothing (one group)'}"
    markdown = f"# {title}\n\n{sentence}\n\n{to_markdown(header, rows)}\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in images) + "\n"
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(to_html(title, sentence, header, rows, images))
    print_table(*table_rows(groups, args.metric, with_ci=False), sentence)
    print(f"report: {(out / 'report.md').resolve()} and report.html", flush=True)
    if args.log_wandb:
        log_to_wandb(args.log_wandb, header, rows, [out / "report.md", out / "report.html", *images])
    return out
