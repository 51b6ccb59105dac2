"""The benchmark harnesses run (in quick mode, or on a few images): correctness of the harness only, never a timing
assertion."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from conftest import REPO


@pytest.fixture
def load(monkeypatch):
    """Import a benchmark script the way `python benchmarks/<name>.py` runs it: with its folder on sys.path."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))

    def load_script(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)  # dataclasses resolve annotations through sys.modules
        spec.loader.exec_module(module)
        return module

    return load_script


def test_throughput_harness_measures_all_three_sides_and_writes_json(load, tmp_path):
    rows = load("throughput").main(["--quick", "--preset", "simple_cnn_digits", "--device", "cpu", "--out", str(tmp_path)])
    (row,) = rows
    assert row["genlab_steps_per_s"] > 0 and row["lightning_steps_per_s"] > 0 and row["raw_steps_per_s"] > 0
    assert row["ratio"] == row["genlab_steps_per_s"] / row["raw_steps_per_s"]
    assert row["genlab_vs_lightning"] == row["genlab_steps_per_s"] / row["lightning_steps_per_s"]
    saved = json.loads((tmp_path / "throughput-cpu-quick.json").read_text())
    assert saved["quick"] is True and saved["rows"][0]["preset"] == "simple_cnn_digits"
    assert saved["torch"] == torch.__version__ and saved["lightning"]


def test_optimizer_step_harness_times_every_implementation_and_writes_json(load, tmp_path):
    threads = torch.get_num_threads()
    rows = load("optimizer_step").main(["--quick", "--model", "resnet20", "--out", str(tmp_path)])
    assert [row["optimizer"] for row in rows] == ["sgd", "adamw"]
    assert all(row[f"{impl}_ms"] > 0 for row in rows for impl in ("for_loop", "foreach", "fused"))
    saved = json.loads((tmp_path / "optimizer-step-cpu-quick.json").read_text())
    assert saved["quick"] is True and saved["rows"][0]["model"] == "resnet20"
    assert saved["device"].endswith(", 1 thread")  # the measurement's setting, not the caller's
    assert torch.get_num_threads() == threads


def test_augmentation_harness_measures_every_preset_and_the_device_path_and_writes_json(load, tmp_path):
    threads = torch.get_num_threads()
    rows = load("augmentation_throughput").main(["--images", "64", "--batch-size", "32", "--repeats", "1",
                                                 "--out", str(tmp_path)])
    workers = [row for row in rows if row["path"] == "albumentations"]
    assert [row["preset"] for row in workers] == ["none", "standard", "strong", "randaugment", "trivialaugment", "custom"]
    assert all(row["in_process"] > 0 and row["one_worker"] > 0 for row in workers)
    on_cpu = [row for row in rows if row["path"] == "device cpu"]
    assert [row["preset"] for row in on_cpu] == ["none", "standard"] and all(row["in_process"] > 0 for row in on_cpu)
    saved = json.loads((tmp_path / "augmentation-cpu.json").read_text())
    assert saved["rows"] == rows and saved["images"] == 64 and saved["batch_size"] == 32
    assert torch.get_num_threads() == threads  # the benchmark's one thread does not leak into the caller


def test_parallel_harness_takes_the_best_of_alternating_runs_and_writes_json(load, tmp_path, monkeypatch):
    bench = load("parallel")
    calls, seconds = [], iter([10.0, 6.0, 8.0, 7.0])  # basic, parallel, basic, parallel
    record = {"metrics": {"test/acc": 0.5, "final/test/acc": 0.75}, "tested": {"analysis": {"weights": "last"}},
              "torch_threads": {"threads": 1}}
    monkeypatch.setattr(bench, "timed_sweep", lambda study, launcher, folder: (calls.append(launcher), (next(seconds), [record]))[1])
    (row,) = bench.main(["--study", "default_5_seeds", "--repeats", "2", "--out", str(tmp_path)])["rows"]
    assert calls == ["basic", "parallel", "basic", "parallel"]
    assert (row["basic_s"], row["parallel_s"], row["speedup"]) == (8.0, 6.0, 8.0 / 6.0)
    assert row["parallel_test_acc"] == 0.75  # the compared (last epoch's) weights
    saved = json.loads((tmp_path / "parallel-cpu.json").read_text())
    assert saved["rows"] == [row] and saved["cores"] >= 1
