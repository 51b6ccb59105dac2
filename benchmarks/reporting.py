"""What the benchmarks share: a torch thread setting for the measurement that the caller gets back, and the ending of
every run: the machine it ran on, a JSON report under benchmarks/results/, the Markdown table.

The benchmarks run as scripts (`python benchmarks/<name>.py`), so this folder is on sys.path and they import it as
`reporting`.
"""
from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).parent / "results"


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Measure with `threads` torch CPU threads, then give the caller (a test process, say) its own setting back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def machine(device: str) -> str:
    """The GPU's name, or the CPU's architecture and the torch threads the measurement used."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()}, {threads} thread{'s' if threads > 1 else ''}"


def publish(name: str, device: str, quick: bool, rows: list[dict], table: str, out: str | Path = RESULTS_DIR,
            **context) -> dict:
    """Write `<out>/<name>-<device>[-quick].json` (machine, versions, `context`, rows) and print the table under a
    line saying where it was measured. Call it while the measurement's thread setting is still in force."""
    report = {"device": machine(device), "torch": torch.__version__, **context, "quick": quick, "rows": rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-{device}{'-quick' if quick else ''}.json").write_text(json.dumps(report, indent=2))
    versions = ", ".join(f"{key} {value}" for key, value in report.items() if key not in ("device", "quick", "rows"))
    print(f"{report['device']}, {versions}\n\n{table}")
    return report
