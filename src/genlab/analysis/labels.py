"""The one table of metric key -> human label the report uses: its tables, its terminal table and every figure's axes,
titles and legends say "test acc, last epoch" where results.json says final/test/acc. Config keys (the groups'
key=value names) stay as written, since they are what --by and --baseline take."""
from __future__ import annotations

import re

# A measure of one set of weights; final/<key> is the same measure of the last epoch's weights.
MEASURES = {"test/acc": "test acc", "train_eval/acc": "train acc (eval)", "gap/acc": "gap", "test/ece": "ECE",
            "test/loss": "test loss", "train_eval/loss": "train loss (eval)", "gap/loss": "loss gap"}
WEIGHTS = {"": "best ckpt", "final/": "last epoch"}
# Metrics of the training run itself, not of one tested set of weights.
RUN_METRICS = {"val/acc": "val acc", "val/loss": "val loss", "val/acc_best": "best val acc",
               "robust/acc_mean": "robust acc", "train/acc": "train acc", "train/loss_epoch": "train loss"}
ROBUST = re.compile(r"^robust/(?P<corruption>.+)_s(?P<severity>\d+)$")


def metric_label(key: str) -> str:
    """The label of a metric key: the table's words for the known ones, the key itself for any other."""
    prefix = "final/" if key.startswith("final/") else ""
    measure = key[len(prefix):]
    if measure in MEASURES:
        return f"{MEASURES[measure]}, {WEIGHTS[prefix]}"
    if key in RUN_METRICS:
        return RUN_METRICS[key]
    if match := ROBUST.match(key):
        return f"acc under {match['corruption'].replace('_', ' ')}, severity {match['severity']}"
    return key


def is_gap(key: str) -> bool:
    """An accuracy gap (train_eval − test): 0 is no gap, and its sign matters."""
    return key.rpartition("/")[0].split("/")[-1].startswith("gap") and key.endswith("acc")


def axis_label(key: str, direction: str) -> str:
    """The axis label of a ranked metric; a gap says what it subtracts instead (0 is no gap, whatever is better)."""
    if is_gap(key):
        return f"{metric_label(key)} (train − test accuracy)"
    return f"{metric_label(key)} ({'lower' if direction == 'min' else 'higher'} is better)"
