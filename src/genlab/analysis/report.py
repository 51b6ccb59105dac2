"""`python compare.py <run dirs | multirun dirs | globs>`: which strategy generalizes better, and is the difference real?"""
from __future__ import annotations

import base64
import difflib
import html
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.analysis import dashboard, exports, figures, robust_stats, terminal
from genlab.analysis.completeness import sweep_dirs_of, unequal_seed_warnings, unfinished_sweep_warnings
from genlab.analysis.compare_args import Refusal, parse_args, report_dir
from genlab.analysis.labels import metric_label
from genlab.analysis.measure_correlations import add_measures_section, gap_of
from genlab.analysis.report_wandb import check_project, log_report, read_wandb_runs
from genlab.analysis.run_files import one_line
from genlab.analysis.runs import REPLICATE_KEYS, Run, find_run_dirs, load_local_runs, note_lines, replicates_note
from genlab.records import write_atomic
from genlab.analysis.stats import (UNBOUNDED, Summary, holm, is_constant, paired_t_test, permutation_p, pooled_std,
                                   seeds_for_power, sign_flip_p, summarize, welch_t_test)

# Keys that say where or how verbosely a run went, not what it did: never a reason to tell runs apart.
BOOKKEEPING = ("seed", "task_name", "tags", "ckpt_path", "resume", "optimized_metric", "paths.", "hydra.", "logger.",
               "callbacks.", "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
               "trainer.log_every_n_steps", "data.data_dir", "data.download", "data.num_workers", "data.pin_memory",
               "augmentation.preview_images", "analysis.confusion_matrix", "analysis.compared_weights", "analysis.measures.",
               "analysis.landscape")
# The callback settings that change what is trained or which weights are tested, unlike the progress bar or the
# LR monitor: these do tell runs apart. A switched-off callback's other settings do not (see experiment_config).
TRAINING_CALLBACK_KEYS = {
    "callbacks.early_stopping": ("enabled", "monitor", "mode", "patience", "min_delta"),
    "callbacks.model_checkpoint": ("enabled", "monitor", "mode"),
    "callbacks.weight_averaging": ("enabled", "kind", "swa_start", "ema_decay"),
}
# The table's measures of one set of weights; final/<key> is the same measure of the last epoch's weights.
TABLE_MEASURES = ("test/acc", "train_eval/acc", "gap/acc", "test/ece")


def columns_for(metric: str) -> dict[str, str]:
    """metric -> column title: the measures of the weights `metric` describes (the last epoch's for final/…, else the
    best checkpoint's), the other weights' test accuracy beside them, robustness (of the weights the runs analysed),
    and the metric itself."""
    prefix = "final/" if metric.startswith("final/") else ""
    other = "" if prefix else "final/"
    keys = [f"{prefix}{key}" for key in TABLE_MEASURES] + [f"{other}test/acc", "robust/acc_mean"]
    return {key: metric_label(key) for key in [*keys, *([] if metric in keys else [metric])]}


# analysis.compared_weights -> the metric a study ranks by when --metric is not given
COMPARED_METRIC = {"best": "test/acc", "last": "final/test/acc"}
LOWER_IS_BETTER = ("loss", "ece", "error", "err", "nll")  # the first word of a metric's last part
ALPHA = 0.05
POWER = 0.8


def default_direction(metric: str) -> str:
    """'min' for losses, calibration error and generalization gaps (test/loss, final/test/ece, gap/acc), else 'max'."""
    *scopes, name = metric.split("/")
    if any(scope.startswith("gap") for scope in scopes) or name.split("_")[0] in LOWER_IS_BETTER:
        return "min"
    return "max"


def metric_bounds(metric: str) -> tuple[float, float]:
    """The values a metric can take, which its confidence interval must not leave: accuracies and ECE in [0, 1],
    an accuracy gap in [-1, 1], losses at least 0."""
    *scopes, name = metric.split("/")
    if any(scope.startswith("gap") for scope in scopes):
        return (-1.0, 1.0) if name.startswith("acc") else UNBOUNDED
    if name.startswith("acc") or name == "ece" or (scopes and scopes[0] == "robust"):
        return 0.0, 1.0
    if name.startswith("loss"):
        return 0.0, math.inf
    return UNBOUNDED


@dataclass
class Group:
    """Runs that share the values of the compared keys, and their comparison with the baseline group."""

    values: tuple[tuple[str, Any], ...]
    runs: list[Run]
    failed: int
    stats: dict[str, Summary]
    delta: float = math.nan  # mean - baseline mean
    p_raw: float = math.nan  # Welch's p, or the exact permutation p when both groups have zero spread
    p_value: float = math.nan  # p_raw, Holm-adjusted over the table's comparisons
    test: str = ""  # "welch", "permutation" or "" (untestable: a group with a single seed)
    p_paired_raw: float = math.nan  # paired by seed, over the seeds both arms share
    p_paired: float = math.nan  # Holm-adjusted over the paired comparisons
    paired_n: int = 0
    pooled_std: float = math.nan
    seeds_needed: int | None = None  # per group, for 80 % power at the observed difference and pooled std
    identical_seeds: int = 0  # shared seeds on which this group and the baseline gave the very same value (if all did)
    comparisons: int = 0  # the size of the Holm family p_value was adjusted in
    paired_comparisons: int = 0
    best: bool = False
    baseline: bool = False

    @property
    def label(self) -> str:
        return group_label(self.values)


_show = figures.show_value  # one way to print a config value, in labels, tables and figures


def group_label(values: tuple[tuple[str, Any], ...]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in values) or "all runs"


def experiment_config(run: Run) -> dict[str, Any]:
    """The config keys that say what a run trained and tested: bookkeeping left out, the training callbacks' settings
    kept, and the settings of a switched-off early stopping or checkpoint callback set to None (they did nothing)."""
    config = {}
    for key, value in run.config.items():
        owner, _, leaf = key.rpartition(".")
        if key in REPLICATE_KEYS:  # data.fold, which data.folds starts with too
            continue
        if leaf in TRAINING_CALLBACK_KEYS.get(owner, ()) or not key.startswith(BOOKKEEPING):
            config[key] = value
    for owner, leaves in TRAINING_CALLBACK_KEYS.items():
        if run.config.get(f"{owner}.enabled", True) is False:
            config.update({f"{owner}.{leaf}": None for leaf in leaves if leaf != "enabled"})
    return config


def varying_keys(runs: list[Run]) -> list[str]:
    """The fewest config keys that tell the compared runs apart, bookkeeping excluded.

    A key whose value is fully determined by keys already kept adds nothing (regularization.name=dropout already
    says model.dropout=0.5), so it is left out; `*.name` keys are considered first, as they read best.
    """
    configs = [experiment_config(r) for r in runs]
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({_show(c.get(k)) for c in configs}) > 1]
    kept: list[str] = []
    for key in sorted(differing, key=lambda k: (not k.endswith(".name"), k)):
        seen: dict[tuple, str] = {}
        for config in configs:
            signature = tuple(_show(config.get(k)) for k in kept)
            if seen.setdefault(signature, _show(config.get(key))) != _show(config.get(key)):
                kept.append(key)
                break
    return kept


def group_key(run: Run, by: list[str]) -> tuple[tuple[str, Any], ...]:
    """The values a run is grouped on: experiment values (a switched-off callback's settings are None), or the
    raw config value for a key the user groups on that is bookkeeping (--by seed)."""
    config = experiment_config(run)
    return tuple((k, config[k] if k in config else run.config.get(k)) for k in by)


def group_runs(runs: list[Run], by: list[str], metric: str) -> list[Group]:
    buckets: dict[tuple, list[Run]] = {}
    for run in runs:
        buckets.setdefault(group_key(run, by), []).append(run)
    groups = []
    for values, members in buckets.items():
        ok = [r for r in members if r.status == "completed" and metric in r.metrics]
        shown = columns_for(metric)
        stats = {m: summarize([r.metrics[m] for r in ok if m in r.metrics], bounds=metric_bounds(m)) for m in shown
                 if any(m in r.metrics for r in ok)}
        groups.append(Group(values, ok, len(members) - len(ok), stats))
    return groups


def refuse_mixed_data_sets(runs: list[Run]) -> None:
    """A metric means something else on another data set: one report compares runs on one data set."""
    names = sorted({str(r.config["data.name"]) for r in runs if r.config.get("data.name") is not None})
    if len(names) > 1:
        raise Refusal(f"error: the runs are on {len(names)} data sets ({', '.join(names)}) and a metric does not "
                      "compare across data sets; give one data set's runs (dirs or globs) at a time")


def refuse_unknown_keys(runs: list[Run], by: list[str]) -> None:
    """`--by` a key that no run has would make one group of everything: refuse it, naming the keys that differ."""
    known = {k for r in runs for k in r.config}
    for key in by:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise Refusal(f"error: --by {key}: no run has this key (keys that differ between these runs: "
                          f"{', '.join(varying_keys(runs)) or 'none'}){hint}")


def compared_metric(runs: list[Run]) -> str:
    """The test accuracy of the weights the runs say they compare (analysis.compared_weights: the best checkpoint's,
    test/acc, unless a study preset chose the last epoch's, final/test/acc); runs that disagree are refused."""
    chosen: dict[str, int] = {}
    for run in runs:
        weights = _show(run.config.get("analysis.compared_weights", "best"))
        chosen[weights] = chosen.get(weights, 0) + 1
    if len(chosen) > 1 or any(weights not in COMPARED_METRIC for weights in chosen):
        counts = ", ".join(f"{weights} in {n} runs" for weights, n in sorted(chosen.items()))
        what = ("different weights" if len(chosen) > 1 else
                f"weights genlab does not know (not {' or '.join(COMPARED_METRIC)})")
        raise Refusal(f"error: the runs compare {what} (analysis.compared_weights: {counts}); "
                      "pass --metric test/acc (best checkpoints) or --metric final/test/acc (last epochs)")
    return COMPARED_METRIC[next(iter(chosen), "best")]


def refuse_unrecorded_metric(runs: list[Run], metric: str) -> None:
    recorded = sorted({k for r in runs if r.status == "completed" for k in r.metrics})
    if metric not in recorded:
        raise Refusal(f"error: --metric {metric}: no completed run has {metric}; recorded: "
                      f"{', '.join(recorded) or 'nothing (no completed run)'}")


def pooling_warning(runs: list[Run], by: list[str]) -> str | None:
    """One line when a group made by --by holds runs that differ in more than their seed (different experiments)."""
    buckets: dict[tuple, list[Run]] = {}
    for run in runs:
        buckets.setdefault(group_key(run, by), []).append(run)
    pooled: dict[str, list[str]] = {}
    for values, members in buckets.items():
        differing = varying_keys(members)  # the fewest keys that tell the pooled runs apart
        if differing:
            pooled[", ".join(f"{k}={_show(v)}" for k, v in values) or "all runs"] = differing
    if not pooled:
        return None
    keys = sorted({k for ks in pooled.values() for k in ks})
    labels = list(pooled)
    where = labels[0] + (f" and {len(labels) - 1} more" if len(labels) > 1 else "")
    return (f"warning: --by {','.join(by)} pools runs that differ in {', '.join(keys)} into one group ({where}); "
            f"add {'it' if len(keys) == 1 else 'them'} to --by to keep different experiments apart")


def seed_values(group: Group, metric: str) -> dict[Any, float]:
    """The metric by seed, for the seeds that appear once in the group (a repeated seed cannot be paired)."""
    seeds = [r.seed for r in group.runs]  # with K-fold, (seed, fold)
    return {s: r.metrics[metric] for s, r in zip(seeds, group.runs) if s is not None and seeds.count(s) == 1}


def compare_pair(group: Group, base: Group, metric: str) -> tuple[float, str, float, int]:
    """(primary p, its test, paired p, pairs) of one group against another: Welch's t-test, or the exact
    permutation test when both groups gave one value on every seed; the paired t-test over the shared seeds."""
    a, b = [r.metrics[metric] for r in group.runs], [r.metrics[metric] for r in base.runs]
    if len(a) < 2 or len(b) < 2:
        p, test = math.nan, ""
    elif is_constant(a) and is_constant(b):
        p, test = permutation_p(a, b), "permutation"
    else:
        p, test = welch_t_test(a, b)[1], "welch"
    mine, theirs = seed_values(group, metric), seed_values(base, metric)
    shared = sorted((s for s in mine if s in theirs), key=str)
    paired = math.nan
    if len(shared) >= 2:
        x, y = [mine[s] for s in shared], [theirs[s] for s in shared]
        paired = paired_t_test(x, y)[1]
        if math.isnan(paired):  # the same difference on every seed: the exact sign-flip test
            paired = sign_flip_p([u - v for u, v in zip(x, y)])
    return p, test, paired, len(shared) if len(shared) >= 2 else 0


def same_value(value: Any, wanted: Any) -> bool:
    """A run's config value is the one --baseline asks for: the same config value (False is not 0, 1 is 1.0), or, for
    text, the same text as the report shows it."""
    if isinstance(wanted, str):
        return _show(value) == wanted
    if isinstance(wanted, bool) or isinstance(value, bool) or wanted is None or value is None:
        return type(value) is type(wanted) and value == wanted
    return value == wanted


def rank_and_test(groups: list[Group], metric: str, baseline: dict[str, str] | None,
                  direction: str | None = None) -> list[Group]:
    """Sort by the metric's mean (best first: highest, or lowest for direction 'min'), mark the best, and test each
    group against the baseline, with p-values Holm-adjusted over the comparisons the table makes.

    The baseline is the group matching `baseline` (key=value pairs, declared before seeing the results: the family
    is its k - 1 comparisons) or, by default, the best group. The best group is picked after seeing the data, so
    its comparisons are a data-chosen subset of all k (k - 1) / 2 pairs, and the correction runs over all pairs.
    """
    sign = 1 if (direction or default_direction(metric)) == "min" else -1
    scored = sorted((g for g in groups if metric in g.stats), key=lambda g: sign * g.stats[metric].mean)
    scored += [g for g in groups if metric not in g.stats]
    if not scored or metric not in scored[0].stats:
        return scored
    scored[0].best = True
    base = scored[0]
    if baseline:
        matches = [g for g in scored if all(same_value(dict(g.values).get(k), v) for k, v in baseline.items())]
        if len(matches) != 1:
            typed = ",".join(f"{key}={_show(value)}" for key, value in baseline.items())
            raise Refusal(f"error: --baseline {typed} matches {len(matches)} groups; choose from: "
                          + "; ".join(g.label for g in scored))
        base = matches[0]
    base.baseline = True
    tested = [g for g in scored if metric in g.stats]
    pairs = [(g, base) for g in tested if g is not base] if baseline else list(itertools.combinations(tested, 2))
    results = [compare_pair(g, h, metric) for g, h in pairs]
    adjusted, adjusted_paired = holm([r[0] for r in results]), holm([r[2] for r in results])
    comparisons = sum(not math.isnan(r[0]) for r in results)
    paired_comparisons = sum(not math.isnan(r[2]) for r in results)
    for (g, h), (p, test, paired, pairs_n), p_adj, paired_adj in zip(pairs, results, adjusted, adjusted_paired):
        if base not in (g, h):
            continue
        group = h if g is base else g
        group.p_raw, group.test, group.p_value = p, test, p_adj
        group.p_paired_raw, group.p_paired, group.paired_n = paired, paired_adj, pairs_n
        group.comparisons, group.paired_comparisons = comparisons, paired_comparisons
    for group in tested:
        if group is base:
            continue
        group.delta = group.stats[metric].mean - base.stats[metric].mean
        a, b = [r.metrics[metric] for r in group.runs], [r.metrics[metric] for r in base.runs]
        group.pooled_std = pooled_std(a, b)
        group.seeds_needed = seeds_for_power(group.delta, group.pooled_std, ALPHA, POWER)
        mine, theirs = seed_values(group, metric), seed_values(base, metric)
        shared = [s for s in mine if s in theirs]
        group.identical_seeds = len(shared) if shared and all(mine[s] == theirs[s] for s in shared) else 0
    return scored


def _cell(s: Summary | None, with_ci: bool) -> str:
    if s is None:
        return "—"
    if s.n == 1:  # one seed: a value, with no spread or interval to show
        return f"{s.mean:.4f}"
    return f"{s.mean:.4f} ± {s.std:.4f}" + (f" [{s.ci_low:.4f}, {s.ci_high:.4f}]" if with_ci else "")


def _p_cell(g: Group) -> str:
    if math.isnan(g.p_value):
        return "—"
    star = " *" if g.p_value < ALPHA else ""
    return f"{g.p_value:.3g}{star}" + (" (exact: same on every seed)" if g.test == "permutation" else "")


def table_rows(groups: list[Group], metric: str, with_ci: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows shared by the terminal (without CIs, for width), Markdown and HTML renderings."""
    shown = columns_for(metric)
    present = [m for m in shown if any(m in g.stats for g in groups)]
    header = (["", "group", "n", "failed"] + [shown[m] for m in present]
              + [f"Δ {shown[metric]}", "p Welch (Holm)", "p paired (Holm)",
                 f"seeds for {POWER * 100:.0f} % power"])
    rows = []
    for g in groups:
        cells = ["★" if g.best else ("base" if g.baseline else ""), g.label, str(len(g.runs)), str(g.failed)]
        cells += [_cell(g.stats.get(m), with_ci) for m in present]
        cells.append("—" if math.isnan(g.delta) else f"{g.delta:+.4f}")
        cells.append(_p_cell(g))
        cells.append("—" if math.isnan(g.p_paired) else f"{g.p_paired:.3g} ({g.paired_n} seeds)")
        cells.append("—" if g.seeds_needed is None else str(g.seeds_needed))
        rows.append(cells)
    return header, rows


def table_note(groups: list[Group], explicit_baseline: bool) -> str:
    """What the p-value columns are: which test, which correction, over how many comparisons."""
    tested = next((g for g in groups if g.comparisons), None)
    if tested is None:
        return "No group could be tested against the baseline (a t-test needs at least 2 seeds per group)."
    family = ("each group against the pre-declared baseline" if explicit_baseline else
              "every pair of groups, since the baseline is the best group, picked after seeing the results")
    plural = "s" if tested.comparisons != 1 else ""
    note = (f"p-values are Holm-adjusted over {tested.comparisons} comparison{plural} ({family}); "
            f"* marks Welch p < {ALPHA} after adjustment. ")
    paired_plural = "s" if tested.paired_comparisons != 1 else ""
    note += ("Paired: the paired t-test over the seeds both groups share, Holm-adjusted over "
             f"{tested.paired_comparisons} paired comparison{paired_plural}. " if tested.paired_comparisons else "")
    return note + (f"Seeds for {POWER * 100:.0f} % power: per group, for a two-sample t-test at alpha {ALPHA} to "
                   "detect the observed difference, if the observed pooled std is the true one.")


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def _holm_text(adjusted: float, comparisons: int) -> str:
    return f", Holm-adjusted over {comparisons} comparisons: {adjusted:.3g}" if comparisons > 1 else ""


def assess(row: Group, other: Group, metric: str) -> str:
    """Whether `row`'s difference from `other` is real, worded for the seeds there are."""
    n_row, n_other = len(row.runs), len(other.runs)
    seeds = f"{n_row} vs {n_other} seeds"
    if not row.test:
        single = row if n_row < 2 else other
        return (f"not testable: {single.label} has {_seeds(len(single.runs))} and a test needs at least 2 per group; "
                "run more seeds")
    holm_text = _holm_text(row.p_value, row.comparisons)
    if row.test == "permutation":
        exact = f"exact permutation p = {row.p_raw:.3g}{holm_text}"
        if row.p_value < ALPHA:
            return f"significant: the difference is the same on every seed ({seeds}; {exact})"
        why = (f"{seeds} cannot reach p < {ALPHA} with it" if row.p_raw >= ALPHA else
               "it is not below 0.05 after the correction for multiple comparisons")
        return (f"consistent across all {seeds} (each group gave one value on every seed, so no t-test applies), "
                f"but {why} ({exact}); run more seeds")
    paired = ""
    if not math.isnan(row.p_paired):
        paired = (f"; paired by seed over {row.paired_n} seeds: p = {row.p_paired_raw:.3g}"
                  + _holm_text(row.p_paired, row.paired_comparisons))
    tests = f"Welch p = {row.p_raw:.3g}{holm_text}{paired}"
    if row.p_value < ALPHA:
        return f"significant ({tests})"
    if row.seeds_needed is not None:
        power = (f"about {row.seeds_needed} seeds per group would detect a difference of {abs(row.delta):.4f} with "
                 f"{POWER * 100:.0f} % power (two-sample t-test at alpha {ALPHA}, observed pooled std "
                 f"{row.pooled_std:.4f})")
    else:
        power = "no practical number of seeds would detect a difference this small at this spread"
    also = ("; the paired test is below 0.05, which is evidence if the seed affects both groups alike (the same "
            "split and initialisation)" if row.p_paired < ALPHA else "")
    return (f"inconclusive at {seeds} ({tests}){also}; this is not evidence that the groups are equal: {power}")


def headline_pair(scored: list[Group]) -> tuple[Group, Group]:
    """The pair the headline compares, of groups ranked best first: (the group tested against the baseline, the group
    it is tested against); the runner-up against the best when the best is the baseline, else the best against it."""
    best = scored[0]
    base = next((g for g in scored if g.baseline), best)
    return (scored[1], best) if base is best else (best, base)


def verdict(groups: list[Group], metric: str, direction: str | None = None) -> str:
    """One sentence: who won, and whether its lead is real: over the runner-up when the best group is the baseline,
    else over the baseline."""
    scored = [g for g in groups if metric in g.stats]
    if not scored:
        return f"No completed run has {metric}."
    best = scored[0]
    better = "lower" if (direction or default_direction(metric)) == "min" else "higher"
    name = metric_label(metric)
    head = f"Best: {best.label}: {name} {best.stats[metric].mean:.4f} ({better} is better)"
    if len(scored) == 1:
        return f"{head}; it is the only group ({_seeds(best.stats[metric].n)})."
    row, other = headline_pair(scored)
    over = (other if row is best else row).label
    if row.delta == 0:
        same = (f", and gave the very same value on each of the {_seeds(row.identical_seeds)} they share"
                if row.identical_seeds else "")
        return (f"No lead: {best.label} and {over} tie at {name} {best.stats[metric].mean:.4f} "
                f"({len(row.runs)} vs {len(other.runs)} seeds){same}.")
    return f"{head}; its lead of {abs(row.delta):.4f} over {over} is {assess(row, other, metric)}."


def improvement(group: Group, other: Group, metric: str, direction: str) -> robust_stats.Estimate:
    return robust_stats.improvement_estimate([r.metrics[metric] for r in group.runs],
                                             [r.metrics[metric] for r in other.runs], direction)


def welch_text(row: Group) -> str:
    """The p-value the table shows for `row` against the baseline, for a line beside P(A > B)."""
    if not row.test:
        return "no t-test (a group of one seed)"
    name = "exact permutation p" if row.test == "permutation" else "Welch p"
    return f"{name} = {row.p_raw:.3g}" + _holm_text(row.p_value, row.comparisons)


def improvement_verdict(groups: list[Group], metric: str, direction: str) -> str | None:
    """Bouthillier et al.'s verdict on the pair the headline compares (the best group and the runner-up, or the
    baseline), beside the p-value of the same pair."""
    scored = [g for g in groups if metric in g.stats]
    if len(scored) < 2:
        return None
    best = scored[0]
    row, other = headline_pair(scored)  # row: the group whose p-value against the baseline the table shows
    rival = other if row is best else row
    if row.delta == 0 and row.identical_seeds:  # the headline says they tie, value for value
        return None
    estimate = improvement(best, rival, metric, direction)
    return f"{robust_stats.improvement_text(best.label, rival.label, estimate)}; {welch_text(row)}."


def arm_verdicts(groups: list[Group], metric: str, direction: str) -> list[str]:
    """With a declared baseline: one line per arm against it, with the Holm-adjusted test and P(arm better)."""
    base = next((g for g in groups if g.baseline), None)
    lines = []
    for g in groups:
        if g is base or base is None or metric not in g.stats:
            continue
        estimate = improvement(g, base, metric, direction)
        lines.append(f"{g.label} vs baseline {base.label}: Δ {g.delta:+.4f}, {assess(g, base, metric)}; "
                     f"{robust_stats.improvement_text(g.label, 'baseline', estimate)}.")
    return lines


def robust_table(groups: list[Group], metric: str, direction: str) -> tuple[list[str], list[list[str]]]:
    """Per group: seeds, IQM with its BCa interval, and P(group better than the baseline) with its interval."""
    base = next((g for g in groups if g.baseline), None)
    header = ["group", "n", f"IQM {metric_label(metric)} [95 % BCa]", "P(better than baseline) [95 % BCa]",
              f"Bouthillier et al. (P > {robust_stats.MEANINGFUL}, interval above 0.5)"]
    rows = []
    for g in groups:
        if metric not in g.stats:
            continue
        values = [r.metrics[metric] for r in g.runs]
        cells = [g.label, str(len(values)), robust_stats.interval_text(robust_stats.iqm_estimate(values))]
        if g is base or base is None:
            cells += ["baseline", "—"]
        else:
            estimate = improvement(g, base, metric, direction)
            cells += [robust_stats.interval_text(estimate), robust_stats.decision(estimate)]
        rows.append(cells)
    return header, rows


ROBUST_NOTE = (f"IQM: the mean of the middle 50 % of the seeds (rliable, Agarwal et al. 2021). P(better than "
               "baseline): the share of (run, baseline run) pairs in which the run is better, ties counting one half "
               "(Mann–Whitney U / (n m)). Intervals: 95 % BCa from a bootstrap that resamples each group's seeds "
               f"within the group, {robust_stats.RESAMPLES} resamples, seed {robust_stats.BOOTSTRAP_SEED}; none for a "
               "group of one seed or where every resample gives the same value (BCa is then undefined).")


def to_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


FIGURES = {  # file stem -> (heading, what the reader sees)
    "metric": ("The ranking metric", "Values: each seed as a dot, beside its group's mean and 95 % t-interval (a "
               "hollow mean is a single seed: no interval). Differences: each group's difference from the baseline "
               "with Welch's 95 % interval of the difference; dots are the differences on the seeds both share. The "
               "y axes span the values, not 0 to 1, so small differences show."),
    "gap": ("Generalization gap", "train_eval accuracy − test accuracy per group, of the weights the ranking metric "
            "describes (the last epoch's for final/…, else the best checkpoint's): seeds as dots, mean and 95 % "
            "interval; 0 is no gap."),
    "learning_curves": ("Learning curves", "Accuracy and loss per epoch (1 = after the first epoch), validation solid "
                        "and train in eval mode dashed: each group's mean over seeds with a ±1 std band, over the "
                        "epochs every seed reached."),
    "trend": ("Trend", "The ranking metric against the numeric grouping key; a scale (batch size, train fraction, "
              "or values spanning 10x) is on a log axis with ticks at the values run."),
    "per_class": ("Per-class accuracy", "Test accuracy per class: seeds as dots, mean and 95 % interval, groups side "
                  "by side."),
    "profile": ("Performance profile", "rliable's performance profile: for each threshold τ, the share of a group's "
                "runs that score better than τ; a curve that stays higher for longer wins."),
    "robustness": ("Robustness to corruptions", "Test accuracy under each corruption by severity; 'clean' is test/acc. "
                   "Seeds as dots, mean and 95 % interval."),
}


def write_figures(groups: list[Group], by: list[str], metric: str, direction: str, colors: dict[str, str],
                  out: Path) -> list[Path]:
    """Every figure the runs have data for, as PNGs in `out`, in the order the report shows them."""
    trend = next((f for key in by if (f := figures.figure_trend(groups, key, metric, colors, direction,
                                                                 metric_bounds(metric))) is not None), None)
    gap = "final/gap/acc" if metric.startswith("final/") else "gap/acc"  # the gap of the weights the metric describes
    made = {
        "metric": figures.figure_summary(groups, metric, colors, direction, metric_bounds(metric)),
        "trend": trend,
        "gap": (figures.figure_summary(groups, gap, colors, "min", metric_bounds(gap), with_differences=False)
                if metric != gap and any(gap in g.stats for g in groups) else None),
        "profile": figures.figure_performance_profile(groups, metric, colors, direction),
        "learning_curves": figures.figure_learning_curves(groups, colors),
        "per_class": figures.figure_per_class(groups, colors),
        "robustness": figures.figure_robustness(groups, colors),
    }
    return [figures.save(fig, out / f"{name}.png") for name, fig in made.items() if fig is not None]


RunRow = tuple[str, list[str], str | None]  # group label, cells, W&B URL (None when not known)


def run_rows(runs: list[Run], groups: list[Group], by: list[str], metric: str,
             out: Path) -> tuple[list[str], list[RunRow]]:
    """The list of runs, failed ones included: (group label, cells, W&B URL or None), groups in the table's order,
    then by seed. A W&B cell says what the run dir knows: the URL, the command that uploads an offline run, or why
    there is no URL."""
    header = ["group", "run", "seed", "status", metric, "commit", "W&B"]
    order = {g.label: i for i, g in enumerate(groups)}
    rows = []
    for run in sorted(runs, key=lambda r: (order.get(group_label(group_key(r, by)), len(order)), str(r.seed),
                                           r.source)):
        source = Path(run.source)
        shown = run.source if run.source.startswith("wandb:") else (
            str(source.relative_to(out)) if source.is_relative_to(out) and source != out else str(source))
        commit = "—" if not run.commit else run.commit[:12] + (" + uncommitted changes" if run.dirty else "")
        value = f"{run.metrics[metric]:.4f}" if metric in run.metrics else "—"
        ref, url = run.wandb, None
        if ref is None:
            wandb_cell = "—"
        elif ref.url:
            wandb_cell, url = ref.run_id, ref.url
        elif ref.sync_dir:
            wandb_cell = f"{ref.run_id}: offline, not uploaded; wandb sync {ref.sync_dir}"
        else:
            wandb_cell = f"{ref.run_id}" + (f" in project {ref.project}" if ref.project else "") + f": {ref.note}"
        rows.append((group_label(group_key(run, by)), [shown, str(run.seed), run.status, value, commit, wandb_cell],
                     url))
    return header, rows


def runs_markdown(header: list[str], rows: list[RunRow]) -> str:
    cells = [[label, *c[:-1], f"[{c[-1]}]({url})" if url else c[-1]] for label, c, url in rows]
    return to_markdown(header, cells)


def path_html(text: str) -> str:
    """A path that may break after its slashes, and only there (a date in a run dir's name stays whole)."""
    return "/<wbr>".join(f'<span class="seg">{html.escape(part)}</span>' for part in text.split("/"))


def swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def to_html(title: str, sentence: str, header: list[str], rows: list[list[str]], images: list[Path],
            notes: list[str] = (), colors: dict[str, str] | None = None,
            runs: tuple[list[str], list[RunRow]] | None = None,
            robust: tuple[list[str], list[list[str]]] | None = None) -> str:
    """A self-contained page: the table (each group with its colour in the figures), notes, the figures embedded as
    data URIs, each with what it shows, and the list of runs."""
    colors = colors or {}
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)

    def cell(j: int, text: str) -> str:
        if j == 1:  # the group, with its colour in every figure
            return f'<td class="group">{swatch(colors[text]) if text in colors else ""}{esc(text)}</td>'
        value, bracket, interval = text.partition(" [")  # the interval on a line of its own, never split in a number
        return f"<td>{esc(value)}" + (f"<br>[{esc(interval)}" if bracket else "") + "</td>"

    body = "".join("<tr>" + "".join(cell(j, c) for j, c in enumerate(row)) + "</tr>" for row in rows)
    figures_html = "".join(
        f'<section><h2>{esc(FIGURES.get(p.stem, (p.stem, ""))[0])}</h2><p class="caption">'
        f'{esc(FIGURES.get(p.stem, ("", ""))[1])}</p><img alt="{esc(p.stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></section>' for p in images)
    robust_html = ""
    if robust:
        robust_html = ("<section><h2>Robust statistics</h2><div class='scroll'><table><tr>"
                       + "".join(f"<th>{esc(h)}</th>" for h in robust[0]) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in robust[1])
                       + f"</table></div><p class='caption'>{esc(ROBUST_NOTE)}</p></section>")
    runs_html = ""
    if runs:
        runs_header, run_list = runs
        cells = "".join(
            f'<tr><td class="group">{swatch(colors[label]) if label in colors else ""}{esc(label)}</td>'
            + f'<td class="path">{path_html(row[0])}</td>' + "".join(f"<td>{esc(c)}</td>" for c in row[1:-1])
            + (f'<td class="path"><a href="{esc(url)}">{esc(row[-1])}</a></td>' if url
               else f'<td class="path">{path_html(row[-1])}</td>') + "</tr>"
            for label, row, url in run_list)
        runs_html = (f"<section><h2>Runs</h2><div class='scroll'><table><tr>"
                     f"{''.join(f'<th>{esc(h)}</th>' for h in runs_header)}</tr>{cells}</table></div></section>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1320px;padding:0 1em;color:#222}"
             ".scroll{overflow-x:auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;"
             "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%;height:auto}"
             ".swatch{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.4em;"
             "vertical-align:-.05em}.caption{color:#555;font-size:14px;max-width:80em}h2{margin-top:1.6em}"
             "td{white-space:nowrap}td.path{white-space:normal}.seg{white-space:nowrap}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body><h1>{esc(title)}</h1><p>{'<br>'.join(map(esc, sentence.splitlines()))}</p>"
            f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"
            + "".join(f"<p>{esc(n)}</p>" for n in notes) + f"{robust_html}{figures_html}{runs_html}</body></html>")


def print_table(header: list[str], rows: list[list[str]], sentence: str, note: str = "") -> None:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=400)  # piped or logged: no terminal width to respect, so do not squeeze the table
    table, dropped = terminal.fitted_table(console, header, rows)
    console.print(table)
    if dropped:
        console.print(f"left out to fit {console.width} columns: {'; '.join(dropped)} (all are in report.md)",
                      soft_wrap=True, style="dim")
    if note:
        console.print(note, soft_wrap=True, style="dim")
    console.print(sentence, soft_wrap=True)


def load_runs(args) -> tuple[list[Run], list[str]]:
    """The runs to compare, and one warning line (printed at once, and kept for the report) for each reason run dirs
    were skipped, counting and naming them, and for each thing left out of a run's record."""
    if args.wandb:
        runs, skipped = read_wandb_runs(args.wandb, args.group, args.wandb_timeout), []
        none = f"--wandb {args.wandb}: no runs" + (f" in group {args.group}" if args.group else "")
    else:
        runs, skipped = load_local_runs(find_run_dirs(args.paths))
        none = f"no run dirs ({'none reads as a run record' if skipped else 'with results.json'}) under " \
               f"{' '.join(args.paths)}"
    warnings = skipped + note_lines(runs)
    for warning in warnings:
        print(warning, file=sys.stderr, flush=True)
    if not runs:
        raise Refusal(f"error: {none}")
    return runs, warnings


def main(argv: list[str] | None = None) -> Path:
    """Build the report; returns the output dir. Bad input is one `error: …` line on stderr and exit code 2."""
    try:
        return build_report(parse_args(sys.argv[1:] if argv is None else argv, __doc__))
    except Refusal as refusal:
        print(refusal, file=sys.stderr, flush=True)
        raise


def build_report(args) -> Path:
    """The report on the runs `args` names, in the folder `report_dir` picks; returns that folder."""
    if args.log_wandb:
        check_project(args.log_wandb)
    if args.dashboard:
        dashboard.require_package()
    runs, warnings = load_runs(args)
    local = [Path(r.source) for r in runs if not r.source.startswith("wandb:")]
    out = report_dir(args.out, local)
    refuse_mixed_data_sets(runs)
    metric = args.metric or compared_metric(runs)
    refuse_unrecorded_metric(runs, metric)
    if args.by:
        by = args.by
        refuse_unknown_keys(runs, by)
    else:
        by = varying_keys(runs)
    study = dashboard.plan_study(args.dashboard, runs, by, metric, args.group) if args.dashboard else None
    direction = args.direction or default_direction(metric)
    groups = rank_and_test(group_runs(runs, by, metric), metric, args.baseline, direction)
    later = [w for w in [pooling_warning(runs, by) if args.by else None] if w]
    later += unequal_seed_warnings(groups) + unfinished_sweep_warnings(sweep_dirs_of(args.paths, local))
    for warning in later:
        print(warning, file=sys.stderr, flush=True)
    header, rows = table_rows(groups, metric)
    lines = [verdict(groups, metric, direction)]
    if args.baseline:  # a declared baseline: each arm is a question of its own
        lines += arm_verdicts(groups, metric, direction)
    else:
        lines.append(improvement_verdict(groups, metric, direction))
    sentence = "\n".join(line for line in lines if line)
    note = " ".join(filter(None, [table_note(groups, args.baseline is not None), replicates_note(runs)]))
    try:
        files = write_report(groups, runs, by, metric, direction, header, rows, sentence, [note, *warnings, *later],
                             out)
    except OSError as err:  # a read-only or full disk, a file where a folder belongs
        raise Refusal(f"error: cannot write the report into {out}: {one_line(err)}") from None
    print_table(*table_rows(groups, metric, with_ci=False), sentence, note)
    if args.measures:  # its own module; a section appended to the report just written
        print_table(*add_measures_section(runs, by, gap_of(compared_metric(runs)), out), "Which measure predicts the gap")
    print(f"report: {(out / 'report.md').resolve()}, report.html, report.csv and report.tex", flush=True)
    if args.log_wandb:
        said = log_report(args.log_wandb, header, rows, files, out, args.wandb_timeout)
        if said:
            print(said, file=sys.stderr, flush=True)
    if study:
        said = dashboard.publish(dashboard.build_workspace(study), out, args.dashboard)
        print(said, file=sys.stderr if said.startswith("warning") else sys.stdout, flush=True)
    return out


def write_report(groups: list[Group], runs: list[Run], by: list[str], metric: str, direction: str,
                 header: list[str], rows: list[list[str]], sentence: str, notes: list[str], out: Path) -> list[Path]:
    """report.md, report.html, report.csv, report.tex and the figures in `out`, each written whole (a temp file, then
    a rename, which also replaces a link there rather than the file it points to); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    colors = figures.group_colors(groups)
    images = write_figures(groups, by, metric, direction, colors, out)
    runs_table = run_rows(runs, groups, by, metric, out.resolve())
    title = f"genlab comparison: {len(runs)} runs, grouped by {', '.join(by) or 'nothing (one group)'}"
    robust = robust_table(groups, metric, direction)
    markdown = (f"# {title}\n\n{sentence.replace(chr(10), '  ' + chr(10))}\n\n{to_markdown(header, rows)}\n\n"
                + "".join(f"{n}\n\n" for n in notes)
                + f"## Robust statistics\n\n{to_markdown(*robust)}\n\n{ROBUST_NOTE}\n\n"
                + "".join(f"## {FIGURES[p.stem][0]}\n\n{FIGURES[p.stem][1]}\n\n![{p.stem}]({p.name})\n\n"
                          for p in images)
                + f"## Runs\n\n{runs_markdown(*runs_table)}\n")
    write_atomic(out / "report.md", markdown.encode())
    page = to_html(title, sentence, header, rows, images, notes, colors, runs_table, robust)
    write_atomic(out / "report.html", page.encode())
    columns = {key: label for key, label in columns_for(metric).items() if any(key in g.stats for g in groups)}
    write_atomic(out / "report.csv", exports.table_csv(groups, columns).encode())
    write_atomic(out / "report.tex", exports.table_latex(groups, columns, metric, ALPHA).encode())
    return [out / "report.md", out / "report.html", out / "report.csv", out / "report.tex", *images]
