"""Seed farm vs separate runs, side by side in one invocation: K seeds of one config trained as K sequential
`python train.py` processes, as one multirun with Hydra's basic launcher (`python train.py -m seed=1,…,K`: one
process, the jobs one after another through Lightning), and as one farm (`… -m hydra/launcher=farm seed=1,…,K`); wall
clock of the whole commands, start-up included.

    python benchmarks/farm.py                  # simple_cnn on digits, K=5, 30 epochs (the defaults): ~3 min on 2 cores
    python benchmarks/farm.py --quick          # 3 epochs, K=3: a check that it runs
    python benchmarks/farm.py --preset simple_cnn_digits --preset simple_cnn_digits_device_loader   # the README's rows
    python benchmarks/farm.py --preset resnet20_synthetic   # ResNet-20 at CIFAR size on synthetic data (slow on a CPU)

Writes benchmarks/results/farm-cpu[-quick].json and prints the table (README "Seed farm").
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reporting import publish

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    "simple_cnn_digits": ["model=simple_cnn", "data=digits"],
    # the same run with batched augmentation on the device (here the CPU) instead of albumentations per image:
    # less work per member, so the start-up the farm saves is a larger share
    "simple_cnn_digits_device_loader": ["model=simple_cnn", "data=digits", "data.loader=gpu"],
    "resnet20_synthetic": ["model=resnet", "model.depth=20", "data=synthetic", "data.image_size=32", "data.channels=3"],
}
QUIET = ["logger=csv", "callbacks.rich_progress_bar.enabled=false", "trainer.enable_progress_bar=false"]


def timed(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "WANDB_MODE": "offline", "NO_ALBUMENTATIONS_UPDATE": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "train.py"), *command], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def measure(preset: str, members: int, epochs: int) -> dict:
    config = [*PRESETS[preset], f"trainer.max_epochs={epochs}", *QUIET]
    seeds = list(range(1, members + 1))
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        separate = sum(timed([*config, f"seed={seed}", f"hydra.run.dir={cwd / 'alone' / str(seed)}"], cwd)
                       for seed in seeds)
        sweep = ["-m", *config, f"seed={','.join(map(str, seeds))}"]
        multirun = timed([*sweep, f"hydra.sweep.dir={cwd / 'multirun'}"], cwd)
        farm = timed([*sweep, "hydra/launcher=farm", f"hydra.sweep.dir={cwd / 'farm'}"], cwd)
    return {"preset": preset, "members": members, "epochs": epochs, "separate_runs_s": separate,
            "basic_multirun_s": multirun, "farm_s": farm, "speedup": separate / farm,
            "speedup_over_multirun": multirun / farm}


def table(rows: list[dict]) -> str:
    lines = ["| preset | members | epochs | K separate runs | basic multirun | farm | farm vs runs | farm vs multirun |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['preset']} | {r['members']} | {r['epochs']} | {r['separate_runs_s']:.1f} s | "
              f"{r['basic_multirun_s']:.1f} s | {r['farm_s']:.1f} s | {r['speedup']:.2f}x | "
              f"{r['speedup_over_multirun']:.2f}x |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), action="append")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="3 members, 3 epochs")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    members, epochs = (3, 3) if args.quick else (args.members, args.epochs)
    rows = [measure(preset, members, epochs) for preset in args.preset or ["simple_cnn_digits"]]
    return publish("farm", "cpu", args.quick, rows, table(rows), out=args.out, cores=len(os.sched_getaffinity(0)))


if __name__ == "__main__":
    main()
