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


def weights_rows(metrics: dict[str, float], tested: dict[str, dict[str, Any]] | None) -> list[tuple[str, str]]:
    """Test and train accuracy and the gap of each set of weights the run tested, and the test loss and calibration of
    the compared ones. The weights the study compares (analysis.compared_weights) come first and unmarked; the other
    set, where it differs, follows as `…, <which>`: a study of the last epoch must not read the best checkpoint's train
    accuracy as its own."""
    if not tested:
        return [*accuracy_rows(metrics, "", ""), *loss_rows(metrics, "")]
    compared_last = tested["analysis"] == tested["final"] and tested["test"] != tested["final"]
    sets = [("final/", "last epoch"), ("", "best checkpoint")] if compared_last else [("", "best"), ("final/", "last epoch")]
    if tested["test"] == tested["final"]:
        sets = sets[:1]
    rows = [("compared weights", describe_weights(tested["analysis"]))]
    for number, (prefix, which) in enumerate(sets):
        rows += accuracy_rows(metrics, prefix, f", {which}" if number else "")
    return [*rows, *loss_rows(metrics, sets[0][0])]


def accuracy_rows(metrics: dict[str, float], prefix: str, suffix: str) -> list[tuple[str, str]]:
    """Test and train accuracy and the gap of one set of weights (`prefix`: "" or "final/"), named with `suffix`."""
    return [(f"test accuracy{suffix}", f"{metrics[f'{prefix}test/acc']:.4f}"),
            (f"train accuracy (eval mode){suffix}", f"{metrics[f'{prefix}train_eval/acc']:.4f}"),
            (f"generalization gap (train - test){suffix}", f"{metrics[f'{prefix}gap/acc']:+.4f}")]


def loss_rows(metrics: dict[str, float], prefix: str) -> list[tuple[str, str]]:
    return [("test loss", f"{metrics[f'{prefix}test/loss']:.4f}"),
            ("test calibration error (ECE)", f"{metrics[f'{prefix}test/ece']:.4f}")]


def print_summary(title: str, metrics: dict[str, float], record: dict[str, Any], run_dir: Path,
                  notes: list[str]) -> None:
    """Final metrics, data sizes, model size and cost and time in a table, then where the outputs went and `notes`
    (e.g. W&B sync), each on a line of its own that never wraps.

    `record` is the run's results.json (or eval.py's eval_results.json): its model entry (name, params, flops per
    image, one forward pass), data sizes, wall time and, a training run's, `tested` (which weights test/* and final/*
    describe) and torch_threads (how many torch threads trained, and why that many).
    """
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    model, data, threads = record["model"], record.get("data") or {}, record.get("torch_threads")
    rows = [
        *weights_rows(metrics, record.get("tested")),
        *([("accuracy under corruptions", f"{metrics['robust/acc_mean']:.4f}")] if "robust/acc_mean" in metrics else []),
        *([("images train / val / test", " / ".join(f"{data[f'{split}_size']:,}" for split in ("train", "val", "test")))]
          if "train_size" in data else []),
        ("model", model["name"]),
        ("parameters", f"{model['params']:,}"),
        ("FLOPs per image (forward)", format_flops(model["flops"])),
        ("wall time", f"{record['wall_time_s']:.1f} s"),
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
