"""The report's figures. Every figure gives a group the same colour (the table's swatch); every summary shows each
seed as a dot beside the group's mean and 95 % interval, on an axis scaled to the values and their differences
(never bars from 0); epochs are whole numbers; a scale (batch size, train fraction) gets a log x axis.

Each artist drawn for a group carries the gid `seeds:<label>`, `mean:<label>` or `line:<label>`, so tests can
check colours and seeds on the figure objects themselves.
"""
from __future__ import annotations

import io
import math
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.analysis import labels
from genlab.analysis.robust_stats import performance_profile
from genlab.analysis.stats import summarize, welch_interval
from genlab.records import write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from genlab.analysis.report import Group

# Six colours that stay apart for every reader: each pair differs by CIEDE2000 >= 18 in normal vision and in simulated
# protanopia, deuteranopia and tritanopia, and each stands off white and NEUTRAL (tests/analysis/
# test_analysis_report_labels.py checks it). Okabe & Ito's orange and vermillion fall to 12.5 in deuteranopia, so only
# their orange is kept, beside Paul Tol's blue, red, cyan and indigo. No 7th colour keeps that distance: larger
# studies get tab20, told apart by the legends.
PALETTE = ("#4477aa", "#e69f00", "#cc3311", "#66ccee", "#332288", "#000000")
# Fewer seeds than this get no t-interval in the figures: at 2 seeds the 95 % t multiplier is 12.7 and an accuracy's
# interval spans most of [0, 1], which says nothing; the seeds and their mean are drawn instead.
INTERVAL_SEEDS = 3
NEUTRAL = "#777777"  # zero lines and the trend's joining lines: never a group's colour
# Keys whose values are scales (each step a multiple of the last): their trends read on a log axis. Any key whose
# positive values span 10x or more is treated alike (learning rates, weight decays, imbalance ratios).
SCALE_KEYS = ("batch_size", "base_batch_size", "train_fraction", "train_size", "lr", "weight_decay", "width")
ROBUST_KEY = re.compile(r"^robust/(?P<corruption>.+)_s(?P<severity>\d+)$")
MOST_CLASSES = 20  # more classes than this: the per-class figure shows those the groups differ most on
SLOTS_PER_ROW = 40  # (class, group) slots that fit across one panel of the per-class figure
DPI = 110
# Where a label may break: after a space or an underscore, and after a dot between names (never inside "0.5").
WRAP_AT = re.compile(r"(?<=[_ ])|(?<=\.)(?=[A-Za-z])")


def show_value(value: Any) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, tuple) else str(value)


def sortable(value: Any) -> tuple:
    """A config value's place in a legend or an axis: numbers by size (0.001 before 0.01 before 0.1), then the rest
    as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, show_value(value)


def group_colors(groups: list[Group]) -> dict[str, str]:
    """Group label -> colour, assigned in the order of the grouping values (not the ranking), so a group keeps its
    colour in every figure and the table, and when a rerun changes the ranking."""
    order = sorted(groups, key=lambda g: tuple(sortable(v) for _, v in g.values))
    palette = PALETTE
    if len(order) > len(PALETTE):
        from matplotlib import colormaps
        from matplotlib.colors import to_hex

        palette = tuple(to_hex(c) for c in colormaps["tab20"].colors)
    return {g.label: palette[i % len(palette)] for i, g in enumerate(order)}


def new_figure(width: float, height: float) -> Figure:
    """A figure with no pyplot state (reports are written on machines without a display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    """The figure as a PNG written whole (a rename replaces a link at `path`, never the file it points to)."""
    image = io.BytesIO()
    fig.savefig(image, dpi=DPI, format="png")
    write_atomic(path, image.getbuffer())
    return path


def fit_title(ax: Axes, text: str, size: float = 10.5) -> None:
    """A title wrapped to the width of its axes, so it never runs off the figure."""
    spec = ax.get_subplotspec()  # the axes' share of the figure: its final position is known only after layout
    columns = spec.get_gridspec().ncols if spec is not None else 1
    span = (spec.colspan.stop - spec.colspan.start) if spec is not None else 1
    width_in = ax.figure.get_size_inches()[0] * span / columns * 0.85
    characters = max(24, int(width_in * 72 / (size * 0.52)))
    ax.set_title(wrap(text, characters), fontsize=size)


def wrap(text: str, width: int) -> str:
    """Lines of at most `width` characters, broken at spaces, after underscores and after dots between names
    (config keys and values have no spaces; "0.5" is never split); a longer piece is cut only as a last resort."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for piece in WRAP_AT.split(paragraph):
            if line and len(line) + len(piece.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            line += piece
        lines.extend(textwrap.wrap(line, width) or [""])
    return "\n".join(lines)


def category_ticks(groups: list[Group]) -> tuple[list[str], str]:
    """Tick labels for one slot per group, and the axis label: the grouping values under the keys' names when
    every group has the same keys (a short label each), else the whole labels."""
    keys = [k for k, _ in groups[0].values] if groups else []
    if keys and all([k for k, _ in g.values] == keys for g in groups):
        ticks = ["\n".join(wrap(show_value(v), 18) for _, v in g.values) for g in groups]
        return ticks, " / ".join(keys)
    return [wrap(g.label, 18) for g in groups], "group"


def seed_offsets(count: int, centre: float, width: float) -> list[float]:
    """x positions for `count` seed dots, spread evenly around `centre` so that equal values do not hide each other."""
    if count <= 1:
        return [centre]
    return [centre - width / 2 + width * i / (count - 1) for i in range(count)]


def values_by_seed(group: Group, metric: str) -> list[float]:
    """The group's values of a metric, in seed order (the same order in every group, so seeds can be compared)."""
    runs = sorted((r for r in group.runs if metric in r.metrics), key=lambda r: str(r.seed))
    return [r.metrics[metric] for r in runs]


def summary_legend(counts: list[int]) -> str:
    """What a summary figure draws, for the seed counts its groups have: each seed, the mean, and the 95 % interval
    only where there are INTERVAL_SEEDS seeds or more; a single seed is one hollow circle."""
    parts = ["each seed (dots), mean (filled circle)"]
    if any(n >= INTERVAL_SEEDS for n in counts):
        parts.append("95 % t-interval")
    if any(1 < n < INTERVAL_SEEDS for n in counts):
        parts.append(f"no interval under {INTERVAL_SEEDS} seeds")
    if 1 in counts:
        parts.append("hollow circle: a single seed")
    return ", ".join(parts)


def seed_counts(groups: list[Group], metric: str | None = None) -> list[int]:
    """The number of seeds each group has (of `metric`, when given)."""
    return [sum(metric is None or metric in r.metrics for r in g.runs) for g in groups]


def draw_summary(ax: Axes, x: float, values: list[float], color: str, label: str, dot_x: list[float],
                 bounds: tuple[float, float]) -> None:
    """Seeds as dots at `dot_x`, and beside them at `x` the mean, with its 95 % t-interval from INTERVAL_SEEDS seeds
    on. A single seed is one hollow circle: its value is its mean, so a dot beside it would draw it twice."""
    if len(values) == 1:
        ax.plot([x], values, "o", color=color, mfc="white", ms=6.5, zorder=4, gid=f"mean:{label}")
        return
    ax.scatter(dot_x, values, s=18, color=color, alpha=0.7, linewidths=0, zorder=3, gid=f"seeds:{label}")
    summary = summarize(values, bounds=bounds)
    if summary.n >= INTERVAL_SEEDS:
        lines = ax.errorbar(x, summary.mean, yerr=[[summary.mean - summary.ci_low], [summary.ci_high - summary.mean]],
                            fmt="o", color=color, ms=6.5, capsize=4, lw=1.6, zorder=4)
        for artist in lines.get_children():
            artist.set_gid(f"mean:{label}")
    else:
        ax.plot([x], [summary.mean], "o", color=color, ms=6.5, zorder=4, gid=f"mean:{label}")


def figure_summary(groups: list[Group], metric: str, colors: dict[str, str], direction: str,
                   bounds: tuple[float, float], with_differences: bool = True) -> Figure | None:
    """One slot per group (ranked as in the table): each seed's value and the group's mean with its 95 % interval;
    beside it, each group's difference from the baseline with Welch's 95 % interval of the difference, and each
    shared seed's difference as a dot. The axes span the values, so a difference of 0.002 is visible."""
    shown = [g for g in groups if metric in g.stats]
    if not shown:
        return None
    base = next((g for g in shown if g.baseline), None)
    differences = with_differences and base is not None and len(shown) > 1
    panel = min(12.0, max(6.0, 1.1 * len(shown) + 3))
    # values and differences side by side up to 3 groups; more groups get the page's width each, one above the other
    rows, columns = (1, 1) if not differences else ((2, 1) if panel > 6.5 else (1, 2))
    fig = new_figure(panel * columns, 4.6 * rows)
    axes = list(fig.subplots(rows, columns, squeeze=False).flat)
    ticks, axis_label = category_ticks(shown)
    ax = axes[0]
    for i, g in enumerate(shown):
        values = values_by_seed(g, metric)
        draw_summary(ax, i + 0.1, values, colors[g.label], g.label, seed_offsets(len(values), i - 0.18, 0.2), bounds)
    if bounds[0] < 0 < bounds[1]:  # a gap: the sign matters
        ax.axhline(0, color=NEUTRAL, lw=0.8, ls=":")
    ax.set_xticks(range(len(shown)), ticks, fontsize=8)
    ax.set_xlim(-0.7, len(shown) - 0.3)
    ax.set(xlabel=axis_label, ylabel=labels.axis_label(metric, direction))
    fit_title(ax, f"{labels.metric_label(metric)} per group: {summary_legend(seed_counts(shown, metric))}")
    if differences:
        draw_differences(axes[1], shown, base, metric, colors, ticks, axis_label, direction)
    return fig


def draw_differences(ax: Axes, shown: list[Group], base: Group, metric: str, colors: dict[str, str],
                     ticks: list[str], axis_label: str, direction: str) -> None:
    ax.axhline(0, color=NEUTRAL, lw=1)
    base_seeds = {r.seed: r.metrics[metric] for r in base.runs}
    for i, g in enumerate(shown):
        color = colors[g.label]
        if g is base:
            continue
        shared = sorted((r for r in g.runs if r.seed in base_seeds), key=lambda r: str(r.seed))
        paired = [r.metrics[metric] - base_seeds[r.seed] for r in shared]
        if len(paired) > 1:  # one shared seed: the hollow difference alone, not a dot beside it
            ax.scatter(seed_offsets(len(paired), i - 0.18, 0.2), paired, s=18, color=color, alpha=0.7, linewidths=0,
                       zorder=3, gid=f"seeds:{g.label}")
        low, high = welch_interval([r.metrics[metric] for r in g.runs], [r.metrics[metric] for r in base.runs])
        if math.isnan(low) or min(len(g.runs), len(base.runs)) < INTERVAL_SEEDS:  # the difference alone
            ax.plot([i + 0.1], [g.delta], "o", color=color, mfc="white", ms=6.5, zorder=4, gid=f"mean:{g.label}")
        else:
            lines = ax.errorbar(i + 0.1, g.delta, yerr=[[g.delta - low], [high - g.delta]], fmt="o", color=color,
                                ms=6.5, capsize=4, lw=1.6, zorder=4)
            for artist in lines.get_children():
                artist.set_gid(f"mean:{g.label}")
    ax.set_xticks(range(len(shown)), [t + "\n(baseline)" if g is base else t for t, g in zip(ticks, shown)],
                  fontsize=8)
    ax.set_xlim(-0.7, len(shown) - 0.3)
    side = "below" if direction == "min" else "above"
    ax.set(xlabel=axis_label, ylabel=f"Δ {labels.metric_label(metric)} vs baseline ({side} 0 is better)")
    fit_title(ax, f"Difference from the baseline: Welch 95 % interval where both have {INTERVAL_SEEDS}+ seeds, else "
                  "the difference alone (hollow); dots: shared seeds")


def curve_by_epoch(group: Group, key: str) -> tuple[list[int], list[float], list[float]]:
    """(epochs, mean, std) over the group's seeds, at the epochs every seed reached (so each point averages the same
    seeds); epochs count from 1, the first one trained (metrics.csv counts from 0)."""
    per_run = [{int(row["epoch"]): row[key] for row in r.curves if key in row} for r in group.runs]
    per_run = [p for p in per_run if p]
    if not per_run:
        return [], [], []
    epochs = sorted(set.intersection(*(set(p) for p in per_run)))
    means, stds = [], []
    for epoch in epochs:
        values = [p[epoch] for p in per_run]
        mean = sum(values) / len(values)
        means.append(mean)
        stds.append(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)
    return [e + 1 for e in epochs], means, stds


def curves_title(counts: list[int]) -> str:
    """What the learning curves are, for the groups' seed counts: a single run is not a mean over seeds."""
    if counts == [1]:
        return "Learning curves of a single run"
    if all(n == 1 for n in counts):
        return "Learning curves: a single run per group"
    single = "; a one-seed group: its single run" if 1 in counts else ""
    return f"Learning curves: each group's mean over its seeds, band ±1 std{single}"


def split_handles() -> list:
    """Legend entries for the line styles of the learning curves."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=NEUTRAL, ls=style, lw=1.8, label=name) for style, name in (
        ("-", "validation"), ("--", "train (eval mode)"))]


def figure_learning_curves(groups: list[Group], colors: dict[str, str]) -> Figure | None:
    """Accuracy and loss per epoch, side by side: validation solid, train in eval mode dashed, each group's mean
    over seeds with a ±1 std band (a one-seed group's single run, without a band)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels = (("acc", "accuracy"), ("loss", "loss"))
    fig = new_figure(12, 4.8)
    axes = fig.subplots(1, 2)
    drawn = set()
    for ax, (name, title) in zip(axes, panels):
        for g in groups:
            color = colors[g.label]
            for split, style in (("val", "-"), ("train_eval", "--")):
                epochs, mean, std = curve_by_epoch(g, f"{split}/{name}")
                if not epochs:
                    continue
                ax.plot(epochs, mean, style, color=color, lw=1.8, marker="o" if len(epochs) < 12 else None, ms=3.5,
                        gid=f"line:{g.label}")
                if len(g.runs) > 1:
                    ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                    color=color, alpha=0.15, linewidth=0, gid=f"band:{g.label}")
                drawn.add(g.label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epochs trained", ylabel=title)
        fit_title(ax, f"{title.capitalize()} per epoch: validation solid, train in eval mode dashed")
    if not drawn:
        return None
    fig.suptitle(curves_title([len(g.runs) for g in groups if g.label in drawn]), fontsize=11)
    bottom_legend(fig, [Line2D([], [], color=colors[g.label], lw=2.5, label=g.label) for g in groups
                        if g.label in drawn] + split_handles())
    return fig


def is_scale(key: str, xs: list[float]) -> bool:
    """A log x axis for a key whose values are a scale: all positive, and a known scale key or spanning 10x."""
    if not xs or min(xs) <= 0 or len(set(xs)) < 2:
        return False
    return key.rpartition(".")[2] in SCALE_KEYS or max(xs) / min(xs) >= 10


def figure_trend(groups: list[Group], key: str, metric: str, colors: dict[str, str], direction: str,
                 bounds: tuple[float, float]) -> Figure | None:
    """The metric against one numeric grouping key: each group's seeds and mean with its 95 % interval at its value
    of the key, in the group's colour; a grey line joins the groups that share the other keys' values."""
    shown = [g for g in groups if metric in g.stats]
    numbers = [dict(g.values).get(key) for g in shown]
    if not shown or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in numbers):
        return None
    xs = sorted({float(v) for v in numbers})
    log = is_scale(key, xs)
    # The seed dots sit just left of the mean: a fixed share of the axis, in log space on a log axis.
    span = (math.log(xs[-1]) - math.log(xs[0])) if log else (xs[-1] - xs[0])
    step = 0.035 * (span or 1.0)
    dots = (lambda x: x * math.exp(-step)) if log else (lambda x: x - step)
    fig = new_figure(8, 4.8)
    ax = fig.subplots()
    lines: dict[str, list[tuple[float, float]]] = {}
    for g in shown:
        x = float(dict(g.values)[key])
        values = values_by_seed(g, metric)
        draw_summary(ax, x, values, colors[g.label], g.label, [dots(x)] * len(values), bounds)
        rest = ", ".join(f"{k}={show_value(v)}" for k, v in g.values if k != key)
        lines.setdefault(rest, []).append((x, g.stats[metric].mean))
    styles = {}
    for (rest, points), style in zip(lines.items(), ("-", "--", ":", "-.") * len(lines)):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], style, color=NEUTRAL, lw=1, zorder=2)
        styles[rest] = style
    if log:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set(xlabel=key + (" (log scale)" if log else ""), ylabel=labels.axis_label(metric, direction))
    fit_title(ax, f"{labels.metric_label(metric)} vs {key}: {summary_legend(seed_counts(shown, metric))}")
    # A legend for each channel: the colours are the groups, the grey line styles join the groups that share the
    # other keys' values.
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[g.label], marker="o", lw=0, label=g.label) for g in shown]
    if len(styles) > 1:
        handles += [Line2D([], [], color=NEUTRAL, ls=style, lw=1, label=f"line: {rest}") for rest, style in
                    styles.items()]
    bottom_legend(fig, handles)
    return fig


def _class_order(name: str) -> tuple:
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def figure_per_class(groups: list[Group], colors: dict[str, str], most: int = MOST_CLASSES) -> Figure | None:
    """Test accuracy per class: for each class, each group's seeds and mean with its 95 % interval, side by side.
    With more than `most` classes, the `most` classes whose group means differ most."""
    shown = [g for g in groups if any(r.per_class for r in g.runs)]
    if not shown:
        return None
    classes = sorted({c for g in shown for r in g.runs for c in r.per_class}, key=_class_order)
    means = {(g.label, c): [r.per_class[c] for r in g.runs if c in r.per_class] for g in shown for c in classes}
    title = f"Test accuracy per class: {summary_legend(seed_counts(shown))}"
    if len(classes) > most:
        def spread(c: str) -> float:
            centres = [sum(v) / len(v) for g in shown if (v := means[(g.label, c)])]
            return max(centres) - min(centres)

        kept = set(sorted(classes, key=spread, reverse=True)[:most])
        title += f"; the {most} of {len(classes)} classes the groups differ most on"
        classes = [c for c in classes if c in kept]
    # At most SLOTS_PER_ROW (class, group) slots across the page; more classes continue on another row of panels.
    per_row = max(1, SLOTS_PER_ROW // len(shown))
    rows = [classes[i:i + per_row] for i in range(0, len(classes), per_row)]
    fig = new_figure(min(12.0, max(8.0, 0.3 * len(rows[0]) * len(shown) + 2)), 3.6 * len(rows) + 1.0)
    axes = fig.subplots(len(rows), 1, squeeze=False, sharey=True)[:, 0]
    slot = 0.8 / len(shown)
    for ax, row in zip(axes, rows):
        for j, g in enumerate(shown):
            for i, c in enumerate(row):
                values = means[(g.label, c)]
                if values:
                    centre = i - 0.4 + slot * (j + 0.5)
                    draw_summary(ax, centre + slot * 0.18, values, colors[g.label], g.label,
                                 seed_offsets(len(values), centre - slot * 0.2, slot * 0.3), (0.0, 1.0))
        for i in range(1, len(row)):
            ax.axvline(i - 0.5, color="#dddddd", lw=0.8, zorder=1)
        ax.set_xticks(range(len(row)), [c if len(c) <= 14 else c[:13] + "…" for c in row], fontsize=8,
                      rotation=0 if len(row) <= 12 else 45)
        ax.set_xlim(-0.5, max(len(row), len(rows[0])) - 0.5)  # a short last row keeps the others' spacing
        ax.set(ylabel="test accuracy")
    axes[-1].set_xlabel("class")
    fit_title(axes[0], title)
    group_legend(fig, shown, colors)
    return fig


def figure_performance_profile(groups: list[Group], metric: str, colors: dict[str, str],
                               direction: str) -> Figure | None:
    """rliable's performance profile: for each threshold τ over the values run, the share of a group's runs that
    score better than τ, as a step curve per group (a curve to the right, or left when lower is better, wins)."""
    shown = [g for g in groups if metric in g.stats]
    values = [r.metrics[metric] for g in shown for r in g.runs if metric in r.metrics]
    if not values:
        return None
    low, high = min(values), max(values)
    margin = 0.05 * ((high - low) or abs(high) or 1.0)
    taus = [low - margin + (high - low + 2 * margin) * i / 400 for i in range(401)]
    fig = new_figure(8, 4.8)
    ax = fig.subplots()
    for g in shown:
        share = performance_profile(values_by_seed(g, metric), taus, direction)
        ax.step(taus, share, where="post", color=colors[g.label], lw=1.8, gid=f"line:{g.label}")
    side = "above" if direction == "max" else "below"
    ax.set(xlabel=f"threshold τ of {labels.metric_label(metric)}", ylabel=f"share of runs {side} τ",
           ylim=(-0.03, 1.03))
    fit_title(ax, f"Performance profile: the share of each group's runs scoring {side} τ"
                  + (" (one seed: a single step)" if 1 in seed_counts(shown, metric) else ""))
    group_legend(fig, shown, colors, marker="")
    return fig


def group_legend(fig: Figure, groups: list[Group], colors: dict[str, str], marker: str = "o") -> None:
    from matplotlib.lines import Line2D

    bottom_legend(fig, [Line2D([], [], color=colors[g.label], marker=marker or None, lw=0 if marker else 2.5,
                               label=g.label) for g in groups])


def bottom_legend(fig: Figure, handles: list, size: float = 8) -> None:
    """A legend under the axes, in as many columns as fit the figure's width: long labels wrap, and take more rows
    rather than running off the figure."""
    room = int(fig.get_size_inches()[0] * 72 / (size * 0.6))  # characters across the figure
    for handle in handles:
        handle.set_label(wrap(handle.get_label(), min(70, room - 8)))
    widest = max(max(map(len, h.get_label().splitlines())) for h in handles) + 8  # the key and the spacing
    columns = max(1, min(len(handles), room // widest))
    fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize=size, frameon=False)


def robust_keys(groups: list[Group]) -> dict[str, list[tuple[int, str]]]:
    """corruption -> [(severity, metric key)] for the robust/<corruption>_s<severity> metrics the runs recorded."""
    found: dict[str, set[tuple[int, str]]] = {}
    for g in groups:
        for r in g.runs:
            for key in r.metrics:
                if match := ROBUST_KEY.match(key):
                    found.setdefault(match["corruption"], set()).add((int(match["severity"]), key))
    return {c: sorted(found[c]) for c in sorted(found)}


def figure_robustness(groups: list[Group], colors: dict[str, str]) -> Figure | None:
    """Accuracy under each corruption by severity, one panel per corruption, severity 0 being the clean test set
    (test/acc, predicted the same way): each group's seeds and mean with its 95 % interval, joined across severities."""
    corruptions = robust_keys(groups)
    shown = [g for g in groups if g.runs]
    if not corruptions or not shown:
        return None
    columns = min(4, len(corruptions))
    rows = math.ceil(len(corruptions) / columns)
    fig = new_figure(3.4 * columns + 0.6, 3.3 * rows + 0.7)
    axes = fig.subplots(rows, columns, squeeze=False, sharey=True)
    width = 0.6 / len(shown)
    for ax, (corruption, keys) in zip(axes.flat, corruptions.items()):
        levels = ([(0, "test/acc")] if any("test/acc" in r.metrics for g in shown for r in g.runs) else []) + keys
        for j, g in enumerate(shown):
            shift = -0.3 + width * (j + 0.5)
            points = []
            for severity, key in levels:
                values = values_by_seed(g, key)
                if values:
                    draw_summary(ax, severity + shift + width * 0.2, values, colors[g.label], g.label,
                                 [severity + shift - width * 0.15] * len(values), (0.0, 1.0))
                    points.append((severity + shift + width * 0.2, sum(values) / len(values)))
            ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[g.label], lw=1, alpha=0.6,
                    gid=f"line:{g.label}")
        ax.set_xticks([s for s, _ in levels], ["clean" if s == 0 else str(s) for s, _ in levels])
        ax.set(xlabel="severity")
        fit_title(ax, corruption.replace("_", " "))
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy")
    for ax in list(axes.flat)[len(corruptions):]:
        ax.set_visible(False)
    fig.suptitle(f"Accuracy under corruption: {summary_legend(seed_counts(shown))}", fontsize=11)
    group_legend(fig, shown, colors)
    return fig
