"""The augmentation benchmark harness runs (on a few images): correctness only, never a timing assertion."""
from __future__ import annotations

import importlib.util
import sys

from conftest import REPO


def test_augmentation_throughput_harness_measures_every_preset_and_the_device_path():
    spec = importlib.util.spec_from_file_location("augmentation_throughput", REPO / "benchmarks" / "augmentation_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    rows = module.main(["--images", "64", "--batch-size", "32", "--repeats", "1"])
    workers = [row for row in rows if row["path"] == "albumentations"]
    assert [row["preset"] for row in workers] == ["none", "standard", "strong", "randaugment", "custom"]
    assert all(row["in_process"] > 0 and row["one_worker"] > 0 for row in workers)
    on_cpu = [row for row in rows if row["path"] == "device cpu"]
    assert [row["preset"] for row in on_cpu] == ["none", "standard"] and all(row["in_process"] > 0 for row in on_cpu)
