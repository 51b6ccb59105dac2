"""Which generalization measure predicts the gap across a study (compare.py --measures): each measure's Kendall τ with
the generalization gap of the same weights, Jiang et al.'s granulated Ψ over the config keys that vary, and Dziugaite
et al.'s coupled sign error over pairs of runs that differ in exactly one key at the same seed."""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from genlab.analysis import figures
from genlab.analysis.runs import Run
from genlab.records import write_atomic

ALPHA = 0.05  # a τ whose two-sided p-value is at least this is called inconclusive
MEASURES_FIGURE = "measures.png"
LANDSCAPE_FIGURE = "landscape.png"


@dataclass
class MeasureRow:
    """One measure's agreement with the gap over a study's completed runs."""

    name: str
    runs: int
    tau: float  # nan when it cannot be computed (fewer than 3 runs, or a constant measure or gap)
    p_value: float
    psi: float  # nan when no key's slices can be ranked
    psi_by_key: dict[str, float]
    sign_error: float  # mean over coupled pairs; nan without pairs
    sign_error_by_key: dict[str, float]
    pairs: int

    @property
    def verdict(self) -> str:
        if math.isnan(self.tau):
            return "inconclusive (too few runs or no spread)"
        if self.p_value >= ALPHA:
            return f"inconclusive (p >= {ALPHA:g})"
        return "predicts a larger gap" if self.tau > 0 else "predicts a smaller gap"


def kendall_tau(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Kendall's τ-b and its two-sided p-value (scipy's); (nan, nan) for fewer than 3 points or a constant side, where
    no ranking exists (2 points have a τ of ±1 that no test can tell from chance)."""
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan, math.nan
    result = stats.kendalltau(xs, ys)
    return float(result.statistic), float(result.pvalue)


def slice_tau(xs: list[float], ys: list[float]) -> float:
    """τ-b within one slice of Ψ (any size >= 2); nan where either side is constant."""
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return math.nan
    return float(stats.kendalltau(xs, ys).statistic)


def key_of(run: Run, keys: list[str]) -> tuple:
    return tuple(figures.show_value(run.config.get(k)) for k in keys)


def granulated_psi(runs: list[Run], measure: str, gap: str, axes: list[str]) -> tuple[float, dict[str, float]]:
    """Jiang et al.'s Ψ = mean over axes i of m_i, m_i the mean τ over the slices in which only key i varies (every
    other axis, and the seed, fixed). A slice that cannot be ranked (one run, a constant side) is left out; an axis
    with no rankable slice is left out of the mean."""
    per_axis = {}
    for axis in axes:
        fixed = [k for k in axes if k != axis] + ["seed"]
        slices: dict[tuple, list[Run]] = {}
        for run in runs:
            slices.setdefault(key_of(run, fixed), []).append(run)
        taus = [slice_tau([r.metrics[measure] for r in s], [r.metrics[gap] for r in s]) for s in slices.values()]
        taus = [t for t in taus if not math.isnan(t)]
        if taus:
            per_axis[axis] = sum(taus) / len(taus)
    return (sum(per_axis.values()) / len(per_axis) if per_axis else math.nan), per_axis


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


def coupled_pairs(runs: list[Run], axes: list[str]) -> list[tuple[str, Run, Run]]:
    """(key, run, run) for each pair of runs at the same seed whose axes differ in exactly that one key."""
    pairs = []
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            if a.seed != b.seed:
                continue
            differ = [k for k in axes if figures.show_value(a.config.get(k)) != figures.show_value(b.config.get(k))]
            if len(differ) == 1:
                pairs.append((differ[0], a, b))
    return pairs


def coupled_sign_error(pairs: list[tuple[str, Run, Run]], measure: str, gap: str) -> tuple[float, dict[str, float]]:
    """Dziugaite et al.'s sign error, ½(1 - sgn(Δmeasure)·sgn(Δgap)), averaged over the pairs, overall and per key
    (a tie on either side counts ½: it predicts nothing)."""
    errors: dict[str, list[float]] = {}
    for key, a, b in pairs:
        agreement = sign(a.metrics[measure] - b.metrics[measure]) * sign(a.metrics[gap] - b.metrics[gap])
        errors.setdefault(key, []).append((1 - agreement) / 2)
    every = [e for values in errors.values() for e in values]
    return ((sum(every) / len(every)) if every else math.nan), {k: sum(v) / len(v) for k, v in errors.items()}


def measure_names(runs: list[Run]) -> list[str]:
    return sorted({k for r in runs for k in r.metrics if k.startswith("measures/")})


def correlate(runs: list[Run], gap: str, axes: list[str]) -> list[MeasureRow]:
    """Every recorded measure against `gap`, over the completed runs that have both."""
    completed = [r for r in runs if r.status == "completed" and gap in r.metrics]
    axes = [k for k in axes if k != "seed"]
    rows = []
    for name in measure_names(completed):
        having = [r for r in completed if name in r.metrics]
        tau, p = kendall_tau([r.metrics[name] for r in having], [r.metrics[gap] for r in having])
        psi, psi_by_key = granulated_psi(having, name, gap, axes)
        pairs = coupled_pairs(having, axes)
        error, error_by_key = coupled_sign_error(pairs, name, gap)
        rows.append(MeasureRow(name.removeprefix("measures/"), len(having), tau, p, psi, psi_by_key, error,
                               error_by_key, len(pairs)))
    return rows


def _number(value: float, digits: int = 2) -> str:
    return "–" if math.isnan(value) else f"{value:+.{digits}f}"


def table(rows: list[MeasureRow]) -> tuple[list[str], list[list[str]]]:
    header = ["measure", "runs", "Kendall τ", "p", "verdict", "Ψ", "sign error", "coupled pairs"]
    body = [[r.name, str(r.runs), _number(r.tau), "–" if math.isnan(r.p_value) else f"{r.p_value:.3g}", r.verdict,
             _number(r.psi), "–" if math.isnan(r.sign_error) else f"{r.sign_error:.2f}", str(r.pairs)] for r in rows]
    return header, body


def figure_measures(runs: list[Run], rows: list[MeasureRow], gap: str, color_key: str | None, path: Path) -> Path | None:
    """Small multiples: each measure (x) against the gap (y), one dot per run, coloured by `color_key`'s value."""
    if not rows:
        return None
    completed = [r for r in runs if r.status == "completed" and gap in r.metrics]
    raw = {figures.show_value(r.config.get(color_key)): r.config.get(color_key) for r in completed} if color_key else {}
    values = sorted(raw, key=lambda shown: figures.sortable(raw[shown])) if color_key else ["all runs"]
    palette = dict(zip(values, figures.PALETTE * (len(values) // len(figures.PALETTE) + 1)))
    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    fig = figures.new_figure(3.0 * columns, 2.4 * lines + 0.6)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(lines, columns, i + 1)
        name = f"measures/{row.name}"
        for value in values:
            shown = [r for r in completed if name in r.metrics
                     and (not color_key or figures.show_value(r.config.get(color_key)) == value)]
            ax.scatter([r.metrics[name] for r in shown], [r.metrics[gap] for r in shown], s=14, color=palette[value],
                       label=value)
        ax.set_title(f"{row.name}  τ {_number(row.tau)}", fontsize=8.5)
        ax.tick_params(labelsize=7)
        if i % columns == 0:
            ax.set_ylabel(gap, fontsize=8)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, [f"{color_key}={v}" if color_key else v for v in labels], loc="outside lower center",
               ncol=min(len(labels), 5), fontsize=7.5, frameon=False)
    return figures.save(fig, path)


def recorded_landscape(run: Run) -> dict | None:
    """The run's 1-D landscapes (results.json measures.landscape, analysis.landscape=true); None for a W&B run or a
    run without them."""
    if run.source.startswith("wandb:") or run.status != "completed":
        return None
    try:
        record = json.loads((Path(run.source) / "results.json").read_text())
    except (OSError, ValueError):
        return None
    return (record.get("measures") or {}).get("landscape")


def figure_landscapes(runs: list[Run], axes: list[str], path: Path) -> Path | None:
    """The training loss along the init-to-trained line and along a random direction: one curve per group (the
    values of the varied keys), the mean over its seeds."""
    keys = [k for k in axes if k != "seed"]
    groups: dict[str, list[dict]] = {}
    order: dict[str, tuple] = {}
    for run in runs:
        curves = recorded_landscape(run)
        if curves:
            label = ", ".join(f"{k}={figures.show_value(run.config.get(k))}" for k in keys) or "all runs"
            groups.setdefault(label, []).append(curves)
            order[label] = tuple(figures.sortable(run.config.get(k)) for k in keys)
    if not groups:
        return None
    fig = figures.new_figure(10, 4.2)
    panels = fig.subplots(1, 2)
    titles = {"init_line": "from the initial (0) to the compared weights (1)",
              "random_direction": "along a filter-normalised random direction"}
    colours = figures.PALETTE * (len(groups) // len(figures.PALETTE) + 1)
    for ax, (line, title) in zip(panels, titles.items()):
        for colour, (label, members) in zip(colours, sorted(groups.items(), key=lambda group: order[group[0]])):
            having = [m[line] for m in members if line in m]
            if having:
                mean = [sum(losses) / len(having) for losses in zip(*(h["loss"] for h in having))]
                ax.plot(having[0]["alpha"], mean, color=colour, lw=1.4, label=label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("alpha", fontsize=8)
        ax.set_ylabel("train_eval loss", fontsize=8)
        ax.set_yscale("log")
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=7, frameon=False)
    return figures.save(fig, path)


def section_markdown(rows: list[MeasureRow], gap: str, axes: list[str], image: Path | None) -> str:
    """The report's "Which measure predicts the gap" section."""
    header, body = table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in body)]
    keys = ", ".join(k for k in axes if k != "seed") or "none"
    text = (f"## Which measure predicts the gap\n\nEach measure of the compared weights against {gap} (train - test "
            f"accuracy of the same weights), over the completed runs. Kendall τ-b with its two-sided p-value "
            f"(inconclusive at p >= {ALPHA:g}); granulated Ψ (Jiang et al. 2020) over the varied keys: {keys}, each "
            "slice at a fixed seed; sign error (Dziugaite et al. 2020): the mean of ½(1 - sgn Δmeasure · sgn Δgap) "
            "over pairs of runs at the same seed that differ in exactly one of those keys (0 = always right, 0.5 = "
            "chance). A measure ranks runs of this study; it is no causal explanation (a sharpness measure also "
            "tracks the learning rate, Andriushchenko et al. 2023).\n\n" + "\n".join(lines) + "\n\n")
    if image is not None:
        text += f"![measures]({image.name})\n\n"
    return text


def add_measures_section(runs: list[Run], axes: list[str], gap: str, out: Path) -> tuple[list[str], list[list[str]]]:
    """compare.py --measures: the section appended to report.md and report.html (already written), its figure in
    `out`; returns the table for the terminal."""
    rows = correlate(runs, gap, axes)
    color_key = next((k for k in axes if k != "seed"), None)
    image = figure_measures(runs, rows, gap, color_key, out / MEASURES_FIGURE)
    markdown = section_markdown(rows, gap, axes, image)
    landscape = figure_landscapes(runs, axes, out / LANDSCAPE_FIGURE)
    if landscape is not None:
        markdown += ("## Loss landscapes\n\nThe train_eval loss along the line from each run's initial to its compared "
                     "weights (Goodfellow et al. 2015) and along one filter-normalised random direction (Li et al. "
                     f"2018), mean over seeds per group.\n\n![landscape]({landscape.name})\n\n")
    report = out / "report.md"
    write_atomic(report, (report.read_text() + markdown).encode())
    page = out / "report.html"
    header, body = table(rows)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    picture = "".join(f'<img alt="{p.stem}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
                      for p in (image, landscape) if p is not None)
    section = (f"<section><h2>Which measure predicts the gap</h2><p class='caption'>{html.escape(markdown.split(chr(10))[2])}"
               f"</p><table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}</tr>{cells}</table>{picture}"
               "</section>")
    text = page.read_text()
    write_atomic(page, (text.replace("</body>", section + "</body>") if "</body>" in text else text + section).encode())
    return header, body


def gap_of(compared_metric: str) -> str:
    """The gap of the weights a study compares: gap/acc for test/acc (best checkpoint), final/gap/acc for the last."""
    return compared_metric.replace("test/acc", "gap/acc")

