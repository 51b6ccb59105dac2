"""The comparison table in a terminal: it fits the terminal's width, wrapping cells and, where even wrapped cells do
not fit, leaving out the least needed columns (named in a line below it), never cutting a number to `0.94…`."""
from __future__ import annotations

from typing import TYPE_CHECKING

from genlab.analysis.figures import WRAP_AT, wrap

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# The table's columns: marker, group, n, failed, the measures, then Δ, Welch's p, the paired p and the power estimate.
FIRST_MEASURE = 4


def needed_width(cells: list[str]) -> int:
    """The narrowest a column can be with no number or name split: its longest piece between break points (spaces,
    and in labels after underscores and dots between names, as the figures wrap them)."""
    return max(len(piece.strip()) for cell in cells for piece in (WRAP_AT.split(cell) or [""]))


def column_widths(header: list[str], rows: list[list[str]], kept: list[int], width: int) -> list[int]:
    """Each kept column's width: its needed width, then the room left in `width` handed out, column by column, until
    each cell fits on one line (a header may still wrap between its words)."""
    widths = [needed_width([header[i], *(row[i] for row in rows)]) for i in kept]
    whole = [max([needed_width([header[i]]), *(len(row[i]) for row in rows)]) for i in kept]
    room = width - table_width(header, rows, kept)
    for j in range(len(kept)):
        grow = max(0, min(room, whole[j] - widths[j]))
        widths[j] += grow
        room -= grow
    return widths


def build(header: list[str], rows: list[list[str]], kept: list[int], width: int) -> Table:
    from rich.table import Table

    table = Table(title="genlab comparison", title_justify="left")
    widths = dict(zip(kept, column_widths(header, rows, kept, width)))
    for i in kept:
        # fold only if the terminal is narrower than even the needed widths: wrapped, never cut to an ellipsis
        table.add_column(wrap(header[i], widths[i]), width=widths[i], overflow="fold")
    for row in rows:
        table.add_row(*(wrap(row[i], widths[i]) for i in kept))
    return table


def table_width(header: list[str], rows: list[list[str]], kept: list[int]) -> int:
    """The narrowest the table can be drawn: each column's needed width, one space of padding on each side, and a
    border between and around the columns (rich's default box)."""
    return sum(needed_width([header[i], *(row[i] for row in rows)]) + 2 for i in kept) + len(kept) + 1


def drop_order(header: list[str]) -> list[int]:
    """Column indices in the order they are left out when the table is too wide: the power estimate, the paired test,
    the measures other than the ranking metric (right to left), then 'failed'. The marker, group, n, the ranking
    metric, its Δ and Welch's p always stay."""
    metric_column = header.index(header[-4].removeprefix("Δ "))  # the Δ column is titled after the ranking metric
    measures = [i for i in range(FIRST_MEASURE, len(header) - 4) if i != metric_column]
    return [len(header) - 1, len(header) - 2, *reversed(measures), FIRST_MEASURE - 1]


def fitted_table(console: Console, header: list[str], rows: list[list[str]]) -> tuple[Table, list[str]]:
    """The table, with as many columns as fit `console`'s width, and the titles of those left out."""
    kept = list(range(len(header)))
    dropped: list[str] = []
    for column in drop_order(header):
        if table_width(header, rows, kept) <= console.width:
            break
        kept.remove(column)
        dropped.append(header[column])
    return build(header, rows, kept, console.width), dropped
