"""What the generalization measures cost a run: each case is a real `python train.py …` (a subprocess, as a user runs
it), and the cost is what the run itself timed around its measures (results.json `measures.seconds`) against the run's
wall time. A direct measurement: two whole runs with and without measures differ by more than the measures cost on a
shared machine (run-to-run noise of several seconds against a fraction of a second).

    python benchmarks/measures.py            # the default run (cheap), and the `all` set on simple_cnn/digits and
                                             # ResNet-20 at 32 px on a 2,000-image subset (synthetic images)
    python benchmarks/measures.py --quick    # one short run: checks the harness, not the cost
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reporting import RESULTS_DIR, publish

REPO = Path(__file__).resolve().parents[1]
QUIET = ["logger=csv", "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false"]
CASES = {
    "default run (cheap)": [],
    "simple_cnn, digits (all)": ["analysis/measures=all"],
    # 4,000 synthetic training images: val_size=2000 makes train_eval (the measures' subset) 2,000 images
    "resnet-20, 32 px, 2,000-image subset (all)": ["analysis/measures=all", "model=resnet", "model.depth=20",
                                                   "data=synthetic", "data.num_train=6000", "data.val_size=2000",
                                                   "trainer.max_epochs=2", "analysis.robustness=false"],
}
QUICK = {"simple_cnn, digits, 1 epoch (all, 2 HVPs, 1 noise draw)": [
    "analysis/measures=all", "trainer.max_epochs=1", "analysis.measures.hessian_iterations=2",
    "analysis.measures.flatness_samples=1", "analysis.robustness=false", "analysis.confusion_matrix=false"]}


def measure(name: str, overrides: list[str], run_dir: Path) -> dict:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "train.py"), *QUIET, *overrides, f"hydra.run.dir={run_dir}"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    process_s = time.perf_counter() - started
    record = json.loads((run_dir / "results.json").read_text())
    seconds = record["measures"]["seconds"]
    total = sum(seconds.values())
    return {"case": name, "command": " ".join(["python train.py", *overrides]), "subset": record["measures"]["subset"]["size"],
            "torch_threads": record["torch_threads"]["threads"], "run_wall_s": record["wall_time_s"], "process_s": process_s, "cheap_s": seconds["cheap"],
            "all_s": seconds.get("all"), "measures_share_of_run": total / record["wall_time_s"]}


def table(rows: list[dict]) -> str:
    lines = ["| case | subset | run wall time | cheap measures | sharpness + flatness | share of the run |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        costly = "–" if r["all_s"] is None else f"{r['all_s']:.1f} s"
        lines.append(f"| {r['case']} | {r['subset']:,} | {r['run_wall_s']:.1f} s | {r['cheap_s'] * 1000:.0f} ms | "
                     f"{costly} | {100 * r['measures_share_of_run']:.2f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short run: checks the harness, not the cost")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as root:  # each run sets and records its own torch threads
        for i, (name, overrides) in enumerate((QUICK if args.quick else CASES).items()):
            rows.append(measure(name, overrides, Path(root) / f"case{i}"))
            publish("measures", "cpu", args.quick, rows, table(rows), args.out)  # after each case: they take minutes
    return rows


if __name__ == "__main__":
    main()
