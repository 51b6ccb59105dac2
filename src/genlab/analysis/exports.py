"""The report's table as files other tools read: report.csv (every number at full precision, one row per group) and
report.tex (a booktabs table for a paper: mean [95 % interval], the best mean in bold only when its lead is
significant)."""
from __future__ import annotations

import csv
import io
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genlab.analysis.report import Group
    from genlab.analysis.stats import Summary

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _number(value: float | None) -> str:
    """A CSV cell: the number in full (repr), empty where there is none (NaN, no test, a single seed)."""
    return "" if value is None or math.isnan(value) else repr(float(value))


def table_csv(groups: list[Group], columns: dict[str, str]) -> str:
    """One row per group: its flags, seeds, each measure's mean, std and interval, and the comparison with the
    baseline; the column names are the metric keys, so a script reads them without the labels."""
    header = ["group", "best", "baseline", "n", "failed"]
    for key in columns:
        header += [f"{key} {part}" for part in ("mean", "std", "ci_low", "ci_high")]
    header += ["delta", "p_welch_holm", "p_paired_holm", "paired_seeds", "seeds_for_power"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for g in groups:
        row = [g.label, int(g.best), int(g.baseline), len(g.runs), g.failed]
        for key in columns:
            s = g.stats.get(key)
            row += ["", "", "", ""] if s is None else [_number(s.mean), _number(s.std), _number(s.ci_low),
                                                       _number(s.ci_high)]
        row += [_number(g.delta), _number(g.p_value), _number(g.p_paired), g.paired_n or "",
                "" if g.seeds_needed is None else g.seeds_needed]
        writer.writerow(row)
    return out.getvalue()


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def lead_is_significant(groups: list[Group], metric: str, alpha: float) -> bool:
    """The best group's lead is significant: over the runner-up when it is the baseline, else over the baseline
    (the comparison the verdict makes), by the Holm-adjusted p-value of the table."""
    from genlab.analysis.report import headline_pair

    scored = [g for g in groups if metric in g.stats]
    if len(scored) < 2:
        return False
    row, _ = headline_pair(scored)
    return not math.isnan(row.p_value) and row.p_value < alpha


def _latex_cell(s: Summary | None, bold: bool = False) -> str:
    if s is None:
        return "--"
    mean = f"\\textbf{{{s.mean:.4f}}}" if bold else f"{s.mean:.4f}"
    if s.n == 1:  # one seed: a value, with no interval
        return mean
    return f"{mean} {{\\scriptsize [{s.ci_low:.4f}, {s.ci_high:.4f}]}}"


def table_latex(groups: list[Group], columns: dict[str, str], metric: str, alpha: float) -> str:
    """A booktabs tabular: group, seeds, each measure as mean [95 % t-interval], Δ and the Holm-adjusted Welch p; the
    best group's `metric` in bold only when `lead_is_significant`."""
    shown = [key for key in columns if any(key in g.stats for g in groups)]
    bold = lead_is_significant(groups, metric, alpha)
    header = ["group", "$n$", *(latex_escape(columns[key]) for key in shown),
              f"$\\Delta$ {latex_escape(columns[metric])}", "$p$ Welch (Holm)"]
    lines = [f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", "\\toprule", " & ".join(header) + " \\\\",
             "\\midrule"]
    for g in groups:
        cells = [latex_escape(g.label) + (" (baseline)" if g.baseline else ""), str(len(g.runs))]
        cells += [_latex_cell(g.stats.get(key), bold and g.best and key == metric) for key in shown]
        cells.append("--" if math.isnan(g.delta) else f"{g.delta:+.4f}")
        cells.append("--" if math.isnan(g.p_value) else f"{g.p_value:.3g}")
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    caption = (f"% mean [95 % t-interval] over seeds; a single seed has no interval. The best {columns[metric]} is "
               f"bold only when its lead is significant (Holm-adjusted Welch p < {alpha}). "
               "Needs \\usepackage{booktabs}.")
    return caption + "\n" + "\n".join(lines) + "\n"
