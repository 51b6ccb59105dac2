"""A study's jobs one after another vs side by side, in one invocation: the same multirun with Hydra's basic launcher
(one process, the jobs in turn) and with `hydra/launcher=parallel` (Hydra's joblib launcher, `n_jobs` workers, each
job with cores // n_jobs torch threads); wall clock of the whole commands, from start to exit.

    python benchmarks/parallel.py              # 5 seeds of the default run and regularization_ablation_smoke, each
                                               # launcher twice, in turn (~8 min on 2 cores)
    python benchmarks/parallel.py --quick      # 2 seeds, 2 epochs: a check that it runs
    python benchmarks/parallel.py --with-submitit   # also submitit_local, one job per core (the launcher not chosen)

Writes benchmarks/results/parallel-cpu[-quick].json (`speedup`: basic / parallel) and prints the table (README,
"Jobs side by side").
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

from reporting import publish

REPO = Path(__file__).resolve().parents[1]
STUDIES = {
    "default_5_seeds": ["seed=1,2,3,4,5"],  # the default run (simple_cnn on digits, 30 epochs), 5 seeds
    "regularization_ablation_smoke": ["experiment=regularization_ablation_smoke"],  # 2 strategies x 2 seeds, 4 epochs
}
QUICK = {"default_5_seeds": ["seed=1,2", "trainer.max_epochs=2"],
         "regularization_ablation_smoke": ["experiment=regularization_ablation_smoke", "trainer.max_epochs=2"]}
LAUNCHERS = {"basic": [], "parallel": ["hydra/launcher=parallel"],
             "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1"]}


def timed_sweep(study: list[str], launcher: str, sweep_dir: Path) -> tuple[float, list[dict]]:
    """Seconds the whole `python train.py -m …` took, and its jobs' records."""
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # each launcher sets the threads it gives a job (genlab.threads)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "train.py"), "-m", *study, *LAUNCHERS[launcher],
                    f"hydra.sweep.dir={sweep_dir}"], cwd=sweep_dir.parent, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    return seconds, [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/results.json"))]


def compared_accuracy(records: list[dict]) -> float:
    """The mean test accuracy of the weights each job compares (analysis.compared_weights)."""
    return mean(r["metrics"]["final/test/acc" if r["tested"]["analysis"]["weights"] == "last" else "test/acc"]
                for r in records)


def measure(name: str, study: list[str], launchers: list[str], repeats: int) -> dict:
    """The best of `repeats` runs of each launcher, taken in turn (basic, parallel, basic, …) so that a shared
    machine's slow minutes fall on both."""
    row: dict = {"study": name, "command": " ".join(["python train.py -m", *study]), "repeats": repeats}
    times: dict[str, list[float]] = {launcher: [] for launcher in launchers}
    for attempt in range(repeats):
        for launcher in launchers:
            with tempfile.TemporaryDirectory() as folder:
                seconds, records = timed_sweep(study, launcher, Path(folder) / launcher)
            times[launcher].append(seconds)
            row.update({f"{launcher}_jobs": len(records),
                        f"{launcher}_threads": sorted({r["torch_threads"]["threads"] for r in records}),
                        f"{launcher}_test_acc": compared_accuracy(records)})
    for launcher, seconds in times.items():
        row[f"{launcher}_s"], row[f"{launcher}_all_s"] = min(seconds), seconds
    row["speedup"] = row["basic_s"] / row["parallel_s"]
    if "submitit_local_s" in row:
        row["submitit_local_speedup"] = row["basic_s"] / row["submitit_local_s"]
    return row


def table(rows: list[dict]) -> str:
    submitit = any("submitit_local_s" in r for r in rows)
    lines = ["| study | jobs | basic launcher, best of runs | parallel (2 jobs at once) | speedup | threads per job (basic, "
             "parallel) | mean test acc (basic, parallel) |" + (" submitit_local |" if submitit else ""),
             "|---|---|---|---|---|---|---|" + ("---|" if submitit else "")]
    for r in rows:
        line = (f"| {r['study']} | {r['basic_jobs']} | {r['basic_s']:.1f} s | {r['parallel_s']:.1f} s | "
                f"{r['speedup']:.2f}x | {r['basic_threads']}, {r['parallel_threads']} | "
                f"{r['basic_test_acc']:.4f}, {r['parallel_test_acc']:.4f} |")
        if submitit:
            line += f" {r['submitit_local_s']:.1f} s ({r['submitit_local_speedup']:.2f}x) |" if "submitit_local_s" in r else " |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), action="append")
    parser.add_argument("--quick", action="store_true", help="2 seeds or jobs of 2 epochs, once")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each launcher; the best counts")
    parser.add_argument("--with-submitit", action="store_true", help="also time hydra/launcher=submitit_local")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    launchers = ["basic", "parallel", *(["submitit_local"] if args.with_submitit else [])]
    studies = QUICK if args.quick else STUDIES
    repeats = 1 if args.quick else args.repeats
    rows = [measure(name, studies[name], launchers, repeats) for name in args.study or list(STUDIES)]
    return publish("parallel", "cpu", args.quick, rows, table(rows), out=args.out, cores=len(os.sched_getaffinity(0)))


if __name__ == "__main__":
    main()
