"""Optimizer step time by implementation (optimizer.implementation): torch's for-loop, foreach and fused kernels,
built by genlab's build_optimizer on real models' parameters, interleaved so they share the machine's state.

    python benchmarks/optimizer_step.py            # CPU, one thread
    python benchmarks/optimizer_step.py --device cuda
    python benchmarks/optimizer_step.py --quick    # a few steps: checks the harness, not the speed

Prints a Markdown table and writes benchmarks/results/optimizer-step-<device>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from genlab.models import build_model, count_parameters
from genlab.training.optim import build_optimizer
from reporting import RESULTS_DIR, publish, torch_threads

MODELS = {"simple_cnn": {"name": "simple_cnn"}, "resnet20": {"name": "resnet", "depth": 20},
          "resnet18": {"name": "resnet", "depth": 18}}
OPTIMIZERS = {  # conf/optimizer/sgd.yaml and adamw.yaml
    "sgd": {"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
    "adamw": {"_target_": "torch.optim.AdamW", "lr": 3e-3, "betas": (0.9, 0.999), "weight_decay": 5e-2},
}
IMPLEMENTATIONS = ("for_loop", "foreach", "fused")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_ms(optimizer: torch.optim.Optimizer, steps: int, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    sync(device)
    return (time.perf_counter() - start) / steps * 1e3


def measure(model_name: str, optimizer_name: str, steps: int, repeats: int, device: str) -> dict:
    net = build_model(in_channels=3, num_classes=10, image_size=32, **MODELS[model_name]).to(device)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    optimizers = {impl: build_optimizer(net, {**OPTIMIZERS[optimizer_name], "implementation": impl}) for impl in IMPLEMENTATIONS}
    times = {impl: [] for impl in IMPLEMENTATIONS}
    for impl, optimizer in optimizers.items():  # warm-up: state allocation, kernel caches
        step_ms(optimizer, 2, device)
    for _ in range(repeats):
        for impl, optimizer in optimizers.items():
            times[impl].append(step_ms(optimizer, steps, device))
    ms = {impl: statistics.median(t) for impl, t in times.items()}
    return {"model": model_name, "params": count_parameters(net), "tensors": len(list(net.parameters())),
            "optimizer": optimizer_name, **{f"{impl}_ms": v for impl, v in ms.items()},
            "fused_speedup": ms["for_loop"] / ms["fused"], "steps": steps, "repeats": repeats}


def table(rows: list[dict]) -> str:
    lines = ["| model | parameters | optimizer | for_loop ms | foreach ms | fused ms | fused vs for_loop |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['optimizer']} | {r['for_loop_ms']:.2f} | {r['foreach_ms']:.2f} | "
                     f"{r['fused_ms']:.2f} | {r['fused_speedup']:.1f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", action="append", choices=sorted(MODELS), help="repeatable; default: all")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: as on a data-parallel worker)")
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 repeat: checks the harness, not the speed")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 2, 1
    with torch_threads(args.threads):
        rows = [measure(m, o, args.steps, args.repeats, args.device) for m in (args.model or list(MODELS)) for o in OPTIMIZERS]
        publish("optimizer-step", args.device, args.quick, rows, table(rows), args.out)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
