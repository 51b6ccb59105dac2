"""The benchmark harnesses run (in quick mode): correctness of the harness only, never a timing assertion."""
from __future__ import annotations

import importlib.util
import json
import sys

from conftest import REPO


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_throughput_harness_measures_both_sides_and_writes_json(tmp_path):
    rows = load("throughput").main(["--quick", "--preset", "simple_cnn_digits", "--device", "cpu", "--out", str(tmp_path)])
    (row,) = rows
    assert row["genlab_steps_per_s"] > 0 and row["raw_steps_per_s"] > 0
    assert row["ratio"] == row["genlab_steps_per_s"] / row["raw_steps_per_s"]
    saved = json.loads((tmp_path / "throughput-cpu-quick.json").read_text())
    assert saved["quick"] is True and saved["rows"][0]["preset"] == "simple_cnn_digits"


def test_optimizer_step_harness_times_every_implementation_and_writes_json(tmp_path):
    rows = load("optimizer_step").main(["--quick", "--model", "resnet20", "--out", str(tmp_path)])
    assert [row["optimizer"] for row in rows] == ["sgd", "adamw"]
    assert all(row[f"{impl}_ms"] > 0 for row in rows for impl in ("for_loop", "foreach", "fused"))
    saved = json.loads((tmp_path / "optimizer-step-cpu-quick.json").read_text())
    assert saved["quick"] is True and saved["rows"][0]["model"] == "resnet20"
