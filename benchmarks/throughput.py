"""Training throughput: genlab (Trainer.fit through the pipeline's pieces) vs a minimal raw PyTorch loop doing the
same work (same model, batch, precision, memory format, optimizer, data loader), interleaved in one process. A third
side, the same network in the least a LightningModule needs under the same Trainer, splits the gap into Lightning's
own per-step cost and genlab's.

    python benchmarks/throughput.py                       # the CPU table (simple_cnn on digits-sized data, …)
    python benchmarks/throughput.py --preset resnet18_bf16 --device cuda
    python benchmarks/throughput.py --quick               # a few steps: checks the harness, not the speed

Prints a Markdown table and writes benchmarks/results/throughput-<device>.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning.pytorch as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from genlab.data.datamodule import ArrayDataset, keep_batch  # noqa: E402
from genlab.training.module import ImageClassifier  # noqa: E402
from genlab.training.optim import build_optimizer  # noqa: E402
from reporting import RESULTS_DIR, publish  # noqa: E402


@dataclass(frozen=True)
class Preset:
    """One benchmark row: a model on data of a given shape."""

    model: dict
    channels: int
    image_size: int
    batch_size: int
    precision: str = "32-true"
    channels_last: bool = False


PRESETS = {
    "simple_cnn_digits": Preset({"name": "simple_cnn"}, 1, 8, 128),
    "simple_cnn_cifar": Preset({"name": "simple_cnn"}, 3, 32, 128),
    "resnet20_cifar": Preset({"name": "resnet", "depth": 20}, 3, 32, 128),
    "resnet18_bf16": Preset({"name": "resnet", "depth": 18}, 3, 32, 512, "bf16-mixed", True),
}
CPU_PRESETS = ["simple_cnn_digits", "simple_cnn_cifar", "resnet20_cifar"]
OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
             "decay_norm_and_bias": False}
MEAN, STD = 0.5, 0.25


def make_loader(preset: Preset, steps: int, seed: int = 0) -> DataLoader:
    """Random uint8 images of the preset's shape, served exactly as genlab serves a data set (whole-batch fetches)."""
    rng = np.random.default_rng(seed)
    n = preset.batch_size * steps
    images = rng.integers(0, 256, size=(n, preset.image_size, preset.image_size, preset.channels), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return DataLoader(ArrayDataset(images, labels), batch_size=preset.batch_size, shuffle=True, collate_fn=keep_batch,
                      drop_last=True, pin_memory=torch.cuda.is_available())


def normalize(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    x = (images.permute(0, 3, 1, 2).float() - MEAN * 255) / (STD * 255)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def make_module(preset: Preset) -> ImageClassifier:
    model = {**preset.model, "in_channels": preset.channels, "num_classes": 10, "image_size": preset.image_size}
    return ImageClassifier(model=model, optimizer=OPTIMIZER, scheduler={"name": "none"}, data={"name": "synthetic", "seed": 0},
                           channels_last=preset.channels_last)


class _BenchData(L.LightningDataModule):
    def __init__(self, loader: DataLoader, channels_last: bool):
        super().__init__()
        self.loader, self.channels_last = loader, channels_last

    def train_dataloader(self) -> DataLoader:
        return self.loader

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        return normalize(images, self.channels_last), labels


class _StepClock(L.Callback):
    """Wall time from the end of the warm-up steps to the end of the last step (synchronised on CUDA)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if batch_idx + 1 == self.warmup:
            self.start = time.perf_counter()
        elif batch_idx + 1 > self.warmup:
            self.end, self.steps = time.perf_counter(), self.steps + 1


class _LightningAlone(L.LightningModule):
    """The control: the preset's network and optimizer with only what a LightningModule needs (forward, cross-entropy;
    no metrics, no logging), so Lightning's own per-step cost shows apart from genlab's."""

    def __init__(self, preset: Preset):
        super().__init__()
        self.net = make_module(preset).net

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(self.net(images), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.net, OPTIMIZER)


def fit_steps_per_s(module: L.LightningModule, preset: Preset, steps: int, warmup: int, device: str) -> float:
    """Training steps per second of `module` under one Trainer.fit epoch (no validation, logger or checkpoints)."""
    clock = _StepClock(warmup)
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=preset.precision,
                        max_epochs=1, logger=False, callbacks=[clock], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=_BenchData(make_loader(preset, steps), preset.channels_last))
    return clock.steps / (clock.end - clock.start)


def raw_steps_per_s(preset: Preset, steps: int, warmup: int, device: str) -> float:
    """The same work without Lightning or genlab: fetch, transfer, normalise, forward, loss, backward, step."""
    module = make_module(preset).to(device)
    net = module.net.train()
    optimizer = build_optimizer(net, OPTIMIZER)
    dtype = torch.bfloat16 if preset.precision.startswith("bf16") else None
    start = 0.0
    for i, (images, labels) in enumerate(make_loader(preset, steps)):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(net(normalize(images, preset.channels_last)), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i + 1 == warmup:
            start = time.perf_counter()
    return (steps - warmup) / (time.perf_counter() - start)


def measure(name: str, steps: int, warmup: int, repeats: int, device: str) -> dict:
    """Alternate genlab, Lightning-alone and raw runs `repeats` times; report medians so drift hits all sides alike."""
    preset = PRESETS[name]
    genlab, lightning, raw = [], [], []
    for _ in range(repeats):
        genlab.append(fit_steps_per_s(make_module(preset), preset, steps, warmup, device))
        lightning.append(fit_steps_per_s(_LightningAlone(preset), preset, steps, warmup, device))
        raw.append(raw_steps_per_s(preset, steps, warmup, device))
    g, l, r = statistics.median(genlab), statistics.median(lightning), statistics.median(raw)
    return {"preset": name, **asdict(preset), "genlab_steps_per_s": g, "lightning_steps_per_s": l, "raw_steps_per_s": r,
            "ratio": g / r, "genlab_vs_lightning": g / l, "genlab_images_per_s": g * preset.batch_size,
            "lightning_images_per_s": l * preset.batch_size, "raw_images_per_s": r * preset.batch_size,
            "repeats": repeats, "steps": steps - warmup}


def table(rows: list[dict]) -> str:
    lines = ["| preset | batch | precision | genlab img/s | Lightning alone img/s | raw loop img/s | genlab / raw | "
             "genlab / Lightning alone |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['batch_size']} | {r['precision']} | {r['genlab_images_per_s']:,.0f} | "
                     f"{r['lightning_images_per_s']:,.0f} | {r['raw_images_per_s']:,.0f} | {r['ratio']:.2f} | "
                     f"{r['genlab_vs_lightning']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), help="repeatable; default: the CPU presets")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=60, help="steps per measured run, warm-up included")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="3 steps, 1 repeat: checks the harness, not the speed")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup, args.repeats = 4, 1, 1
    names = args.preset or (CPU_PRESETS if args.device == "cpu" else ["resnet18_bf16"])
    rows = [measure(name, args.steps, args.warmup, args.repeats, args.device) for name in names]
    publish("throughput", args.device, args.quick, rows, table(rows), args.out, lightning=L.__version__)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
