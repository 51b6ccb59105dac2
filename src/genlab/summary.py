"""The table a user reads at the end of a run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from genlab.models import format_flops


def describe_weights(tested: dict[str, Any]) -> str:
    """'epoch 12, lowest val/loss' or 'epoch 29, the last', from a results.json `tested` entry."""
    averaged = tested.get("averaged")
    suffix = f", {averaged['kind'].upper()}-averaged weights" if averaged else ""
    if tested["weights"] == "best":
        return (f"epoch {tested['epoch']}, {'lowest' if tested['mode'] == 'min' else 'highest'} {tested['monitor']}"
                f"{suffix}")
    return f"epoch {tested['epoch']}, the last{suffix}"


def print_summary(title: str, metrics: dict[str, float], model: dict[str, Any], wall_time_s: float, run_dir: Path,
                  notes: list[str], tested: dict[str, dict[str, Any]] | None = None,
                  threads: dict[str, Any] | None = None) -> None:
    """Final metrics, model size and cost and time in a table, then where the outputs went and `notes` (e.g. W&B sync),
    each on a line of its own that never wraps.

    `model` is the run record's model entry: name, params and flops (per image, one forward pass). `tested` (a
    training run's) names the weights test/* and final/* describe; final/test/acc is shown beside test/acc.
    `threads` (the record's torch_threads) says how many torch threads trained, and why that many.
    """
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [
        *([("tested weights", describe_weights(tested["test"]))] if tested else []),
        ("test accuracy", f"{metrics['test/acc']:.4f}"),
        *([("test accuracy, last epoch", f"{metrics['final/test/acc']:.4f}")]
          if tested and tested["test"] != tested["final"] else []),
        ("train accuracy (eval mode)", f"{metrics['train_eval/acc']:.4f}"),
        ("generalization gap (train - test)", f"{metrics['gap/acc']:+.4f}"),
        ("test loss", f"{metrics['test/loss']:.4f}"),
        ("test calibration error (ECE)", f"{metrics['test/ece']:.4f}"),
        *([("accuracy under corruptions", f"{metrics['robust/acc_mean']:.4f}")] if "robust/acc_mean" in metrics else []),
        ("model", model["name"]),
        ("parameters", f"{model['params']:,}"),
        ("FLOPs per image (forward)", format_flops(model["flops"])),
        ("wall time", f"{wall_time_s:.1f} s"),
        *([("torch threads", f"{threads['threads']} ({threads['why']})")] if threads else []),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console()
    console.print(table)
    # Below the table, on a line of its own: a long path in a table cell wraps mid-name, and a log cuts it at 80 columns.
    console.print(f"outputs: {run_dir.resolve()}", soft_wrap=True, highlight=False)
    for note in notes:
        console.print(note, soft_wrap=True)
